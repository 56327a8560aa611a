"""OCI content: media types, digests, descriptors and JSON as oras writes it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import DigestMismatch, InvalidReference, SizeMismatch

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
EMBSERVE_LAYER = "application/vnd.embserve.v1+json"

INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
#: what a resolver accepts when it asks for a tag
ACCEPT_ANY_MANIFEST = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)

ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_CREATED = "org.opencontainers.image.created"

_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{_HASHES[algorithm](data).hexdigest()}"


def verify(data: bytes, *, digest: str, size: int | None, what: str) -> None:
    """Raise :class:`SizeMismatch` / :class:`DigestMismatch` unless ``data`` is what its descriptor says."""
    if size is not None and len(data) != size:
        raise SizeMismatch(what, size, len(data))
    algorithm = digest.split(":", 1)[0]
    if algorithm not in _HASHES:
        raise InvalidReference(f"{what}: unsupported digest algorithm in {digest!r}")
    actual = digest_of(data, algorithm)
    if actual != digest:
        raise DigestMismatch(what, digest, actual)


def canonical_json(value: Any) -> bytes:
    """Compact JSON in insertion order, the way Go's encoder (and so oras) writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def descriptor(
    media_type: str,
    data: bytes,
    *,
    annotations: dict[str, str] | None = None,
    platform: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An OCI descriptor for ``data`` (fields in the image spec's order)."""
    desc: dict[str, Any] = {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}
    if annotations:
        desc["annotations"] = annotations
    if platform:
        desc["platform"] = platform
    return desc


def media_type_of(document: dict, content_type: str | None) -> str:
    """A manifest's media type: its own field, else the HTTP Content-Type, else its shape."""
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if content_type:
        base = content_type.split(";", 1)[0].strip()
        if base in ACCEPT_ANY_MANIFEST:
            return base
    if "manifests" in document:
        return OCI_INDEX
    return OCI_MANIFEST
