"""Image references and platforms, as Docker and the far-edge-kubelet read them.

``parse_reference`` follows the distribution reference grammar and Docker's
normalisation: a first path component is a registry only when it contains a
``.`` or ``:`` or is ``localhost``; otherwise the image is on Docker Hub
(``docker.io``), where one-component names live under ``library/``.

    temperature:1.0                 -> docker.io/library/temperature:1.0
    user/x                          -> docker.io/user/x:latest
    localhost:5000/x@sha256:<hex>   -> localhost:5000/x@sha256:<hex>
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from .errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    registry: str  # as written (normalised): "docker.io", "127.0.0.1:5000"
    repository: str  # "library/temperature"
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def host(self) -> str:
        """Registry host without port (IPv6 without brackets)."""
        return registry_host(self.registry)

    @property
    def api_host(self) -> str:
        """``host[:port]`` to send HTTP requests to (Docker Hub's API lives elsewhere)."""
        return DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    @property
    def is_loopback(self) -> bool:
        return is_loopback_registry(self.registry)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def registry_host(registry: str) -> str:
    """``host[:port]`` → host (``[::1]:5000`` → ``::1``)."""
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


def is_loopback_registry(registry: str) -> bool:
    """True for localhost and loopback addresses, where plain HTTP is the default."""
    host = registry_host(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_reference(text: str) -> Reference:
    """Parse and normalise an image reference; raise :class:`InvalidReference`."""
    if not isinstance(text, str) or not text:
        raise InvalidReference(f"invalid image reference {text!r}: empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference(f"invalid image reference {text!r}: contains whitespace")

    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise InvalidReference(
                f"invalid image reference {text!r}: {digest!r} is not a digest (algorithm:hex)"
            )
        algorithm, hexpart = digest.split(":", 1)
        expected = _HEX_LENGTHS.get(algorithm)
        if expected is None:
            raise InvalidReference(
                f"invalid image reference {text!r}: unsupported digest algorithm {algorithm!r}"
            )
        if len(hexpart) != expected or hexpart != hexpart.lower():
            raise InvalidReference(
                f"invalid image reference {text!r}: a {algorithm} digest is {expected} lowercase hex digits"
            )

    registry, path = _split_registry(rest, text)
    tag = None
    # a tag is what follows the last ':' after the last '/' (a ':' before it is a port)
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise InvalidReference(
                f"invalid image reference {text!r}: bad tag {tag!r} "
                "(letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
            )
    if not path:
        raise InvalidReference(f"invalid image reference {text!r}: no repository name")
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            problem = (
                "repository name must be lowercase"
                if _PATH_COMPONENT.fullmatch(component.lower())
                else f"bad path component {component!r}"
            )
            raise InvalidReference(f"invalid image reference {text!r}: {problem}")

    if registry is None or registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > _MAX_NAME:
        raise InvalidReference(f"invalid image reference {text!r}: name longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)


def _split_registry(name: str, text: str) -> tuple[str | None, str]:
    if "/" not in name:
        return None, name
    first, rest = name.split("/", 1)
    looks_like_host = "." in first or ":" in first or first == "localhost" or first != first.lower()
    if not looks_like_host:
        return None, name
    if not _DOMAIN.fullmatch(first):
        raise InvalidReference(f"invalid image reference {text!r}: bad registry host {first!r}")
    return first, rest


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def matches(self, descriptor_platform: dict) -> bool:
        """True when an index entry's ``platform`` object names this platform."""
        return (
            descriptor_platform.get("os") == self.os
            and descriptor_platform.get("architecture") == self.architecture
            and descriptor_platform.get("variant") == self.variant
        )

    def as_json(self) -> dict[str, str]:
        """The OCI ``platform`` object (field order as the image spec lists it)."""
        data = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            data["variant"] = self.variant
        return data

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


ZEPHYR_ARMV7 = Platform("zephyr", "arm", "v7")


def parse_platform(text: str | Platform) -> Platform:
    """``os/arch[/variant]`` → :class:`Platform`, e.g. ``zephyr/arm/v7``."""
    if isinstance(text, Platform):
        return text
    parts = text.split("/") if isinstance(text, str) else []
    if not 2 <= len(parts) <= 3 or not all(re.fullmatch(r"[a-z0-9._-]+", p) for p in parts):
        raise InvalidReference(f"invalid platform {text!r}: expected os/architecture[/variant], e.g. zephyr/arm/v7")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def describe_platform(platform: dict | None) -> str:
    """``os/arch[/variant]`` of an index entry's platform object, for messages."""
    if not platform:
        return "<no platform>"
    parts = [platform.get("os", "?"), platform.get("architecture", "?")]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(str(p) for p in parts)
