"""Build OCI content in memory: the embServe artifact, placeholder container
images for other platforms, and (nested) image indexes.

The artifact is what ``oras push --config config.json:application/vnd.oci.image.config.v1+json
service.json:application/vnd.embserve.v1+json`` makes: an image manifest whose
config is the platform JSON and whose single layer is ``service.json``,
titled by file name, with the ``created`` annotation on the manifest. JSON is
written compactly with fields in the image spec's order, as oras does.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from .content import (
    ANNOTATION_CREATED,
    ANNOTATION_TITLE,
    EMBSERVE_LAYER,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR_GZIP,
    OCI_MANIFEST,
    canonical_json,
    descriptor,
    digest_of,
)
from .errors import OciError
from .reference import ZEPHYR_ARMV7, Platform

#: config of the embServe artifact; serialised like FITA's config.json (same bytes)
DEFAULT_ARTIFACT_CONFIG: dict[str, str] = {"architecture": "arm", "os": "zephyr", "variant": "v7"}

BytesSource = bytes | str | os.PathLike[str]


@dataclass
class Image:
    """A manifest or index plus everything it references, ready to push."""

    media_type: str
    document: dict[str, Any]
    blobs: list[tuple[str, bytes]] = field(default_factory=list)  # (what, bytes)
    children: list[Image] = field(default_factory=list)
    platform: Platform | None = None  # what this manifest is for, when known

    @cached_property
    def body(self) -> bytes:
        return canonical_json(self.document)

    @property
    def digest(self) -> str:
        return digest_of(self.body)

    def descriptor(self, platform: Platform | None = None) -> dict[str, Any]:
        return descriptor(self.media_type, self.body, platform=platform.as_json() if platform else None)

    def walk(self) -> list[Image]:
        """This image and every image below it, depth first."""
        found = [self]
        for child in self.children:
            found.extend(child.walk())
        return found


def read_source(source: BytesSource, what: str) -> bytes:
    """Bytes given directly, or read from a path."""
    if isinstance(source, bytes):
        return source
    path = Path(source)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OciError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def config_bytes(config: dict[str, Any] | BytesSource | None) -> bytes:
    """The artifact's config blob; a dict is written like FITA's config.json."""
    if config is None:
        config = DEFAULT_ARTIFACT_CONFIG
    if isinstance(config, dict):
        return json.dumps(config, indent=4).encode()
    return read_source(config, "config")


def created_now() -> str:
    """RFC 3339 UTC to the second, as oras writes ``org.opencontainers.image.created``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_artifact(
    service_json: bytes,
    *,
    config: bytes | None = None,
    title: str = "service.json",
    created: str | None = None,
    annotations: dict[str, str] | None = None,
) -> Image:
    """The single-platform embServe artifact manifest."""
    config = config_bytes(None) if config is None else config
    manifest_annotations = {ANNOTATION_CREATED: created or created_now(), **(annotations or {})}
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(EMBSERVE_LAYER, service_json, annotations={ANNOTATION_TITLE: title})],
        "annotations": manifest_annotations,
    }
    return Image(
        OCI_MANIFEST,
        document,
        blobs=[("config", config), (title, service_json)],
        platform=ZEPHYR_ARMV7,
    )


def build_placeholder_image(platform: Platform) -> Image:
    """A small but real container image for ``platform`` (one tar.gz layer).

    Byte-for-byte reproducible, so pushing it twice reuses the blobs.
    """
    text = (
        f"Placeholder {platform} image made by embserve-hil. The embServe "
        f"service of this image is in its {ZEPHYR_ARMV7} entry.\n"
    ).encode()
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("embserve-hil.txt")
        info.size = len(text)
        info.mode = 0o644
        info.mtime = 0
        tar.addfile(info, io.BytesIO(text))
    layer_tar = tar_buffer.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = canonical_json(
        {
            **platform.as_json(),
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(layer_tar)]},
            "history": [{"created_by": "embserve-hil placeholder"}],
        }
    )
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER_TAR_GZIP, layer)],
    }
    return Image(
        OCI_MANIFEST,
        document,
        blobs=[(f"{platform} config", config), (f"{platform} layer", layer)],
        platform=platform,
    )


def build_index(entries: list[tuple[Image, Platform | None]]) -> Image:
    """An OCI image index over ``entries`` (a ``None`` platform: entry without one)."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.descriptor(platform) for image, platform in entries],
    }
    return Image(OCI_INDEX, document, children=[image for image, _ in entries])


def build_multiplatform(
    artifact: Image, other_platforms: list[Platform], *, nested: bool
) -> Image:
    """Index with the other platforms first and the embServe artifact last;
    ``nested`` wraps it in an outer index, as FITA's helper script does."""
    entries: list[tuple[Image, Platform | None]] = [
        (build_placeholder_image(p), p) for p in other_platforms
    ]
    entries.append((artifact, ZEPHYR_ARMV7))
    index = build_index(entries)
    return build_index([(index, None)]) if nested else index
