"""Content-format dispatch: encode/decode the flat ``{Path: value}`` content.

Formats (CoAP Content-Format numbers): text/plain 0, link-format 40,
opaque 42, SenML JSON 110, LwM2M TLV 11542 (and the pre-registration 1542,
accepted on input).
"""

from __future__ import annotations

from typing import Callable

from .model import CodecError, Content, Path, ResourceType, resource_type

TEXT = 0
LINK = 40
OPAQUE = 42
SENML_JSON = 110
TLV = 11542
TLV_OLD = 1542

TypeLookup = Callable[[Path], ResourceType]


def encode(content: Content, base: Path, fmt: int) -> bytes:
    """Encode ``content`` (all paths at or below ``base``) as ``fmt``.

    TLV at an object base (``/3303``) wraps each instance in an Object
    Instance TLV; at an instance base it lists resources; at a resource base
    it is the resource (or its Multiple Resource TLV). Text and opaque need a
    single-resource (or resource-instance) base.
    """
    from . import senml, text, tlv

    if fmt == TLV:
        return tlv.encode_content(content, base)
    if fmt == SENML_JSON:
        return senml.encode_content(content, base)
    if fmt == TEXT:
        return text.encode_content(content, base)
    if fmt == OPAQUE:
        return text.encode_opaque(content, base)
    raise CodecError(f"content format {fmt} is not supported for encoding")


def decode(payload: bytes, base: Path, fmt: int | None, types: TypeLookup = resource_type) -> Content:
    """Decode ``payload`` addressed to ``base`` into flat content.

    ``fmt`` None means the sender gave no Content-Format: TLV is assumed for
    instance/object bases and text for resource bases.
    ``types`` gives each resource's type (TLV and text carry none).
    """
    from . import senml, text, tlv

    if fmt is None:
        fmt = TEXT if base.res is not None else TLV
    if fmt in (TLV, TLV_OLD):
        return tlv.decode_content(payload, base, types)
    if fmt == SENML_JSON:
        return senml.decode_content(payload, base, types)
    if fmt == TEXT:
        return text.decode_content(payload, base, types)
    if fmt == OPAQUE:
        return text.decode_opaque(payload, base)
    raise CodecError(f"content format {fmt} is not supported for decoding")
