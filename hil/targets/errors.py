"""What goes wrong bringing a device up, for every backend."""

from __future__ import annotations


class TargetError(RuntimeError):
    """A device could not be brought up or driven; the message says why and where the log is."""


class TargetUnavailable(TargetError):
    """The backend cannot run on this machine (missing tool, missing board)."""
