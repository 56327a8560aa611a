"""The ``OciError`` family: every failure of push/resolve/pull is one of these."""

from __future__ import annotations


class OciError(Exception):
    """Base of every OCI push/resolve/pull failure."""


class InvalidReference(OciError, ValueError):
    """A string is not a valid image reference or platform."""


class RegistryUnreachable(OciError):
    """No HTTP answer from the registry (refused, timed out, TLS failure)."""


class RegistryError(OciError):
    """The registry answered with an error status.

    ``errors`` holds the registry's ``{"code", "message", "detail"}`` entries.
    """

    def __init__(self, message: str, *, status: int, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []

    @property
    def codes(self) -> list[str]:
        return [str(e.get("code")) for e in self.errors]


class AuthenticationError(RegistryError):
    """Credentials missing or refused, or no token could be obtained."""


class ManifestError(OciError):
    """A manifest or index is malformed or of an unsupported media type."""


class DigestMismatch(OciError):
    """Content does not hash to the digest that names it."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class SizeMismatch(OciError):
    """Content length differs from the size its descriptor declares."""

    def __init__(self, what: str, expected: int, actual: int) -> None:
        super().__init__(f"size mismatch for {what}: descriptor says {expected} bytes, got {actual}")
        self.expected = expected
        self.actual = actual


class PlatformNotFound(OciError):
    """An image index has no entry for the wanted platform."""

    def __init__(self, message: str, platforms: list[str]) -> None:
        super().__init__(message)
        self.platforms = platforms


class LayerNotFound(OciError):
    """A manifest has no layer of the embServe media type."""

    def __init__(self, message: str, layers: list[str]) -> None:
        super().__init__(message)
        self.layers = layers
