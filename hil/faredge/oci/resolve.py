"""Resolve an image reference to ``service.json`` the way the far-edge-kubelet does.

Tag → manifest or index; in an index pick the entry for the platform
(``zephyr/arm/v7``), descending through nested indexes; in the artifact
manifest take the ``application/vnd.embserve.v1+json`` layer; fetch it. Every
manifest and blob is checked against its digest and size. The blob is cached
as ``<cache>/<registry>/<repository>/<manifest digest>/service.json``
(written atomically; a cached copy is re-verified before use).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...cache import user_cache_dir
from .client import AuthLike, RegistryClient, TransportOptions
from .content import (
    ACCEPT_ANY_MANIFEST,
    ANNOTATION_TITLE,
    EMBSERVE_LAYER,
    INDEX_TYPES,
    digest_of,
    media_type_of,
    verify,
)
from .errors import DigestMismatch, LayerNotFound, ManifestError, OciError, PlatformNotFound, SizeMismatch
from .reference import Platform, Reference, describe_platform, parse_platform, parse_reference

log = logging.getLogger(__name__)

MAX_INDEX_DEPTH = 4
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


@dataclass(frozen=True)
class Resolved:
    digest: str  # the platform's artifact manifest: names the cache directory
    registry: str
    repository: str
    service_json: bytes
    path: Path  # the cached service.json
    layer_digest: str
    platform: Platform
    ref: Reference  # what was asked for, normalised
    chain: tuple[str, ...]  # digests walked from the tag to the artifact manifest
    cache_hit: bool


@dataclass(frozen=True)
class _Document:
    digest: str
    media_type: str
    content: dict[str, Any]
    name: str  # for messages: registry/repository@digest (or :tag)


def default_cache_dir() -> Path:
    return user_cache_dir("oci")


def cache_path(cache_dir: str | os.PathLike[str], registry: str, repository: str, digest: str) -> Path:
    return Path(cache_dir) / registry / repository / digest / "service.json"


async def resolve(
    ref: str | Reference,
    platform: str | Platform = "zephyr/arm/v7",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    auth: AuthLike = None,
    plain_http: bool | None = None,
    insecure: bool = False,
    ca_file: str | Path | None = None,
    connect_timeout: float = 3.0,
    read_timeout: float = 30.0,
) -> Resolved:
    """Find, fetch, verify and cache the ``service.json`` of ``ref`` for ``platform``."""
    target = parse_reference(ref) if isinstance(ref, str) else ref
    wanted = parse_platform(platform)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    transport = TransportOptions(
        plain_http=plain_http, insecure=insecure, ca_file=ca_file,
        connect_timeout=connect_timeout, read_timeout=read_timeout,
    )
    async with RegistryClient.for_reference(target, auth=auth, transport=transport) as client:
        top = await _fetch(client, target, target.reference, size=None)
        chain: list[str] = []
        manifest = await _select(client, target, top, wanted, chain)
        layer = _embserve_layer(manifest)
        layer_digest, layer_size = _descriptor_fields(layer, manifest.name)
        path = cache_path(cache_root, target.registry, target.repository, manifest.digest)
        data = _cached(path, layer_digest, layer_size)
        cache_hit = data is not None
        if data is None:
            what = f"service.json blob {layer_digest} of {manifest.name}"
            data = await client.get_blob(target.repository, layer_digest, what=what)
            verify(data, digest=layer_digest, size=layer_size, what=what)
            _write_atomically(path, data)
    return Resolved(
        digest=manifest.digest,
        registry=target.registry,
        repository=target.repository,
        service_json=data,
        path=path,
        layer_digest=layer_digest,
        platform=wanted,
        ref=target,
        chain=tuple(chain),
        cache_hit=cache_hit,
    )


async def _fetch(client: RegistryClient, target: Reference, reference: str, size: int | None) -> _Document:
    by_digest = bool(_DIGEST.match(reference))
    name = f"{target.registry}/{target.repository}{'@' if by_digest else ':'}{reference}"
    fetched = await client.get_manifest(
        target.repository, reference, ACCEPT_ANY_MANIFEST, what=f"manifest {name}"
    )
    if by_digest:
        verify(fetched.body, digest=reference, size=size, what=f"manifest {name}")
        digest = reference
    else:
        digest = digest_of(fetched.body)
        header = fetched.digest_header
        if header and header.split(":", 1)[0] == "sha256" and header != digest:
            raise DigestMismatch(f"manifest {name} (Docker-Content-Digest header)", header, digest)
    try:
        content = json.loads(fetched.body)
    except ValueError as exc:
        raise ManifestError(f"manifest {name} is not JSON: {exc}") from None
    if not isinstance(content, dict):
        raise ManifestError(f"manifest {name} is not a JSON object")
    return _Document(digest, media_type_of(content, fetched.content_type), content, name)


async def _select(client: RegistryClient, target: Reference, doc: _Document,
                  wanted: Platform, chain: list[str]) -> _Document:
    chain.append(doc.digest)
    if doc.media_type not in INDEX_TYPES:
        return doc  # a single-platform artifact: nothing to choose
    seen: list[str] = []
    found = await _search_index(client, target, doc, wanted, chain, seen, depth=0)
    if found is None:
        listed = ", ".join(seen) if seen else "none"
        raise PlatformNotFound(f"{doc.name} has no {wanted} entry; its platforms: {listed}", seen)
    return found


async def _search_index(client: RegistryClient, target: Reference, index: _Document, wanted: Platform,
                        chain: list[str], seen: list[str], depth: int) -> _Document | None:
    """Depth-first: an entry for ``wanted`` wins; otherwise look inside nested
    indexes (entries that are indexes without a platform of their own)."""
    if depth > MAX_INDEX_DEPTH:
        raise ManifestError(f"{index.name}: image indexes nested deeper than {MAX_INDEX_DEPTH}")
    entries = index.content.get("manifests")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ManifestError(f"image index {index.name} has no valid 'manifests' list")

    matching = [e for e in entries if isinstance(e.get("platform"), dict) and wanted.matches(e["platform"])]
    nested = [e for e in entries if e.get("mediaType") in INDEX_TYPES and not e.get("platform")]
    seen.extend(describe_platform(e.get("platform")) for e in entries if e not in matching and e not in nested)

    for entry in matching + nested:
        child = await _fetch_entry(client, target, entry, index)
        chain.append(child.digest)
        if child.media_type not in INDEX_TYPES:
            if entry in matching:
                return child
        else:
            found = await _search_index(client, target, child, wanted, chain, seen, depth + 1)
            if found is not None:
                return found
        chain.pop()
    return None


async def _fetch_entry(client: RegistryClient, target: Reference, entry: dict, index: _Document) -> _Document:
    digest, size = _descriptor_fields(entry, index.name)
    return await _fetch(client, target, digest, size)


def _descriptor_fields(desc: dict, where: str) -> tuple[str, int]:
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ManifestError(f"{where}: descriptor with invalid digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where}: descriptor {digest} has invalid size {size!r}")
    return digest, size


def _embserve_layer(manifest: _Document) -> dict:
    layers = manifest.content.get("layers")
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise ManifestError(f"manifest {manifest.name} has no valid 'layers' list")
    matching = [layer for layer in layers if layer.get("mediaType") == EMBSERVE_LAYER]
    if not matching:
        described = [_describe_layer(layer) for layer in layers]
        raise LayerNotFound(
            f"manifest {manifest.name} has no {EMBSERVE_LAYER} layer; its layers: "
            f"{', '.join(described) if described else 'none'}",
            described,
        )
    titled = [layer for layer in matching if _title(layer) == "service.json"]
    return (titled or matching)[0]


def _title(layer: dict) -> str | None:
    annotations = layer.get("annotations")
    return annotations.get(ANNOTATION_TITLE) if isinstance(annotations, dict) else None


def _describe_layer(layer: dict) -> str:
    title = _title(layer)
    media_type = layer.get("mediaType", "<no mediaType>")
    return f"{media_type} ({title})" if title else str(media_type)


def _cached(path: Path, digest: str, size: int) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cache entry %s unreadable (%s); fetching again", path, exc)
        return None
    try:
        verify(data, digest=digest, size=size, what=f"cached {path}")
    except (DigestMismatch, SizeMismatch) as exc:
        log.warning("%s; fetching again", exc)
        return None
    return data


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".service.json.", suffix=".tmp")
    except OSError as exc:
        raise OciError(f"cannot write cache entry {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

