"""Errors raised by the gateway's device-management API.

Each one names the endpoint and the LwM2M path it concerns, so a failing
deployment step says which device refused what.
"""

from __future__ import annotations

from typing import Iterable


class GatewayError(Exception):
    """Base of every error the gateway raises."""


class UnknownEndpoint(GatewayError, LookupError):
    """No registration for this endpoint name."""

    def __init__(self, endpoint: str, known: Iterable[str]):
        self.endpoint = endpoint
        self.known = sorted(known)
        super().__init__(f"endpoint {endpoint!r} is not registered; registered: {describe_endpoints(self.known)}")


class GatewayRequestError(GatewayError):
    """The device answered a request with a non-2.xx code."""

    def __init__(
        self,
        endpoint: str,
        path: str,
        code: str,
        diagnostic: str = "",
        operation: str = "",
        code_number: int | None = None,
    ):
        self.endpoint = endpoint
        self.path = path
        self.code = code  # e.g. "4.04 Not Found"
        self.code_number = code_number  # e.g. 132, as NextGenGW reports response_code
        self.diagnostic = diagnostic
        self.operation = operation
        what = f"{operation} {path}" if operation else path
        message = f"{endpoint}: {what} failed with {code}"
        if diagnostic:
            message += f": {diagnostic}"
        super().__init__(message)

    @property
    def code_class(self) -> int:
        """4 for client errors, 5 for server errors."""
        return int(self.code.split(".", 1)[0])


class GatewayTimeout(GatewayError, TimeoutError):
    """A request or wait did not finish in time."""

    def __init__(self, message: str, endpoint: str = "", path: str = "", timeout: float = 0.0):
        self.endpoint = endpoint
        self.path = path
        self.timeout = timeout
        super().__init__(message)


class GatewayTransportError(GatewayError):
    """The request could not be delivered (network error, peer gone)."""

    def __init__(self, endpoint: str, path: str, reason: str, operation: str = ""):
        self.endpoint = endpoint
        self.path = path
        self.reason = reason
        what = f"{operation} {path}" if operation else path
        super().__init__(f"{endpoint}: {what} could not be delivered: {reason}")


class GatewayDecodeError(GatewayError):
    """The device answered with a payload the codecs could not decode."""

    def __init__(self, endpoint: str, path: str, content_format: int | None, reason: str):
        self.endpoint = endpoint
        self.path = path
        self.content_format = content_format
        self.reason = reason
        super().__init__(
            f"{endpoint}: answer to {path} (content format {content_format}) could not be decoded: {reason}"
        )


def describe_endpoints(names: Iterable[str], limit: int = 10) -> str:
    """``'a', 'b' and 3 more`` — endpoint lists in errors stay short with 1,000 nodes."""
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return shown
