"""Content-format dispatch: encode/decode the flat ``{Path: value}`` content.

Formats (CoAP Content-Format numbers): text/plain 0, link-format 40,
opaque 42, SenML JSON 110, SenML CBOR 112, LwM2M TLV 11542 (and the
pre-registration 1542, accepted on input). LwM2M JSON 11543 (the 1.0-era
JSON) is known by number only.
"""

from __future__ import annotations

from typing import Callable

from .model import CodecError, Content, Path, ResourceType, resource_type

TEXT = 0
LINK = 40
OPAQUE = 42
SENML_JSON = 110
SENML_CBOR = 112
TLV = 11542
LWM2M_JSON = 11543
TLV_OLD = 1542

TypeLookup = Callable[[Path], ResourceType]


def encode(content: Content, base: Path | None, fmt: int) -> bytes:
    """Encode ``content`` (all paths at or below ``base``) as ``fmt``.

    TLV at an object base (``/3303``) wraps each instance in an Object
    Instance TLV; at an instance base it lists resources; at a resource base
    it is the resource (or its Multiple Resource TLV). Text and opaque need a
    single-resource (or resource-instance) base.
    """
    from . import senml, senml_cbor, text, tlv

    if base is None and fmt not in (SENML_JSON, SENML_CBOR):
        raise CodecError(f"content spanning several paths (composite, Send) is SenML, not content format {fmt}")
    if fmt == TLV:
        return tlv.encode_content(content, base)
    if fmt == SENML_JSON:
        return senml.encode_content(content, base)
    if fmt == SENML_CBOR:
        return senml_cbor.encode_content(content, base)
    if fmt == TEXT:
        return text.encode_content(content, base)
    if fmt == OPAQUE:
        return text.encode_opaque(content, base)
    raise CodecError(f"content format {fmt} is not supported for encoding")


def decode(payload: bytes, base: Path | None, fmt: int | None, types: TypeLookup = resource_type) -> Content:
    """Decode ``payload`` addressed to ``base`` into flat content.

    ``fmt`` None means the sender gave no Content-Format: TLV is assumed for
    instance/object bases and text for resource bases.
    ``types`` gives each resource's type (TLV and text carry none).
    """
    from . import senml, senml_cbor, text, tlv

    if base is None and fmt not in (SENML_JSON, SENML_CBOR):
        raise CodecError(f"content spanning several paths (composite, Send) is SenML, not content format {fmt}")
    if fmt is None:
        fmt = TEXT if base.res is not None else TLV
    if fmt in (TLV, TLV_OLD):
        return tlv.decode_content(payload, base, types)
    if fmt == SENML_JSON:
        return senml.decode_content(payload, base, types)
    if fmt == SENML_CBOR:
        return senml_cbor.decode_content(payload, base, types)
    if fmt == TEXT:
        return text.decode_content(payload, base, types)
    if fmt == OPAQUE:
        return text.decode_opaque(payload, base)
    raise CodecError(f"content format {fmt} is not supported for decoding")


SENML_FORMATS = (SENML_CBOR, SENML_JSON)  # the formats composite operations and Send use


def encode_paths(paths: list[Path], fmt: int) -> bytes:
    """A Read-/Observe-Composite request body naming ``paths`` in SenML ``fmt``."""
    from . import senml, senml_cbor

    if fmt == SENML_JSON:
        return senml.encode_paths(paths)
    if fmt == SENML_CBOR:
        return senml_cbor.encode_paths(paths)
    raise CodecError(f"composite requests are SenML (110 or 112), not content format {fmt}")


def decode_paths(payload: bytes, fmt: int | None) -> list[Path]:
    """The paths a composite request body in SenML ``fmt`` names."""
    from . import senml, senml_cbor

    if fmt == SENML_JSON:
        return senml.decode_paths(payload)
    if fmt == SENML_CBOR:
        return senml_cbor.decode_paths(payload)
    raise CodecError(f"composite requests are SenML (110 or 112), not content format {fmt}")
