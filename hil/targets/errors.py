"""What goes wrong bringing a device up, for every backend."""

from __future__ import annotations


class TargetError(RuntimeError):
    """A device could not be brought up or driven; the message says why and where the log is."""


class TargetUnavailable(TargetError):
    """The backend cannot run on this machine (missing tool, missing board)."""


class TargetConfigError(TargetError):
    """The configuration cannot work (no firmware, a board the backend cannot drive): every device of the
    session would fail the same way, so the pytest plugin stops the session with this one line."""


class CapabilityMissing(TargetError):
    """The board cannot do what was asked (set a sensor, write a service input); its board file says so.

    The pytest plugin turns it into a skip with this message: a test needing
    what the bench lacks is skipped, never failed.
    """


class BootstrapRefused(TargetError):
    """The node's shell did not take a bootstrap (or set-up) command; says which and what the node answered."""

    def __init__(self, command: str, answer: str):
        super().__init__(f"the node refused {command!r}: {answer}")
        self.command = command
        self.answer = answer
