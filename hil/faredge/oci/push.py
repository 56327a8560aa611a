"""Push the embServe artifact, alone or inside a multi-platform image index."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import AuthLike, RegistryClient, TransportOptions
from .content import digest_of
from .errors import DigestMismatch, InvalidReference
from .images import (
    BytesSource,
    Image,
    build_artifact,
    build_multiplatform,
    config_bytes,
    read_source,
)
from .reference import Reference, parse_platform, parse_reference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    digest: str  # of the tagged manifest or index
    ref: Reference  # the tag pushed to, pinned with ``digest``
    manifest: dict[str, Any]  # the tagged document as pushed
    media_type: str
    size: int
    platforms: dict[str, str]  # "zephyr/arm/v7" → digest of that platform's manifest


async def push_artifact(
    service_json: BytesSource,
    ref: str | Reference,
    *,
    config: dict[str, Any] | BytesSource | None = None,
    title: str = "service.json",
    created: str | None = None,
    annotations: dict[str, str] | None = None,
    auth: AuthLike = None,
    plain_http: bool | None = None,
    insecure: bool = False,
    ca_file: str | Path | None = None,
    connect_timeout: float = 3.0,
) -> PushResult:
    """Push ``service_json`` as an embServe artifact tagged ``ref``.

    ``created`` fixes the ``org.opencontainers.image.created`` annotation
    (default: now), which makes the digest reproducible.
    """
    artifact = build_artifact(
        read_source(service_json, "service.json"),
        config=config_bytes(config),
        title=title,
        created=created,
        annotations=annotations,
    )
    transport = TransportOptions(
        plain_http=plain_http, insecure=insecure, ca_file=ca_file, connect_timeout=connect_timeout
    )
    return await push_image(artifact, ref, auth=auth, transport=transport)


async def push_multiplatform(
    service_json: BytesSource,
    ref: str | Reference,
    *,
    nested: bool = False,
    other_platforms: tuple[str, ...] | list[str] = ("linux/amd64", "linux/arm64"),
    config: dict[str, Any] | BytesSource | None = None,
    created: str | None = None,
    auth: AuthLike = None,
    plain_http: bool | None = None,
    insecure: bool = False,
    ca_file: str | Path | None = None,
    connect_timeout: float = 3.0,
) -> PushResult:
    """Push an image index: placeholder container images for ``other_platforms``
    plus the embServe artifact as ``zephyr/arm/v7``; ``nested`` puts that index
    inside an outer one (FITA's helper layout)."""
    artifact = build_artifact(
        read_source(service_json, "service.json"), config=config_bytes(config), created=created
    )
    platforms = [parse_platform(p) for p in other_platforms]
    image = build_multiplatform(artifact, platforms, nested=nested)
    transport = TransportOptions(
        plain_http=plain_http, insecure=insecure, ca_file=ca_file, connect_timeout=connect_timeout
    )
    return await push_image(image, ref, auth=auth, transport=transport)


async def push_image(
    image: Image,
    ref: str | Reference,
    *,
    auth: AuthLike = None,
    transport: TransportOptions | None = None,
) -> PushResult:
    """Push ``image`` with all it references (children by digest), then tag it."""
    target = parse_reference(ref) if isinstance(ref, str) else ref
    if target.digest and not target.tag:
        raise InvalidReference(f"cannot push to {target}: give a tag, not only a digest")
    async with RegistryClient.for_reference(target, auth=auth, transport=transport) as client:
        await _push_tree(client, target, image, tag=target.tag)
    log.info("pushed %s (%s)", target, image.digest)
    return PushResult(
        digest=image.digest,
        ref=target.with_digest(image.digest),
        manifest=image.document,
        media_type=image.media_type,
        size=len(image.body),
        platforms={str(i.platform): i.digest for i in image.walk() if i.platform},
    )


async def _push_tree(client: RegistryClient, target: Reference, image: Image, tag: str | None) -> None:
    for child in image.children:
        await _push_tree(client, target, child, tag=None)
    for what, data in image.blobs:
        await client.push_blob(target.repository, data, digest_of(data), what=f"blob {what} of {target}")
    reference = tag or image.digest
    name = f"{target.registry}/{target.repository}{':' if tag else '@'}{reference}"
    answered = await client.put_manifest(
        target.repository, reference, image.body, image.media_type, what=f"{image.media_type} {name}"
    )
    if answered and answered != image.digest:
        raise DigestMismatch(f"manifest pushed to {target}", image.digest, answered)
