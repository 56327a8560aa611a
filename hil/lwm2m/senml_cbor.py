"""SenML CBOR (content format 112) as LwM2M 1.1 uses it.

The same records as SenML JSON (:mod:`hil.lwm2m.senml`) in CBOR (RFC 8949,
through the cbor2 library): a definite-length array of maps whose keys are
the integer labels of RFC 8428 section 6 (bn -2, bt -3, bv -5, n 0, v 2,
vs 3, vb 4, t 6, vd 8); ``vd`` is a byte string, and the object link value,
which SenML has no label for, keeps the text key ``vlo`` as LwM2M writes it.
"""

from __future__ import annotations

from typing import Any

import cbor2

from .model import CodecError, Content, Path, resource_type
from .senml import TypeLookup, content_of, encode_records, paths_of

LABELS = {"bver": -1, "bn": -2, "bt": -3, "bu": -4, "bv": -5, "bs": -6, "n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4,
          "s": 5, "t": 6, "ut": 7, "vd": 8, "vlo": "vlo"}
NAMES = {label: name for name, label in LABELS.items()}


def encode_content(content: Content, base: Path) -> bytes:
    records = [{LABELS[name]: value for name, value in record.items()} for record in encode_records(content, base)]
    return cbor2.dumps(records)


def encode_paths(paths: list[Path]) -> bytes:
    """The request payload of Read-/Observe-Composite: one record naming each path."""
    return cbor2.dumps([{LABELS["n"]: str(Path.parse(p))} for p in paths])


def _records(payload: bytes) -> list[tuple[int, Any]]:
    try:
        pack = cbor2.loads(bytes(payload))
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
        raise CodecError(f"SenML CBOR is not well-formed CBOR: {exc}") from None
    if not isinstance(pack, list):
        raise CodecError(f"SenML CBOR pack must be a CBOR array, got {type(pack).__name__}", 0)
    out: list[tuple[int, Any]] = []
    for index, record in enumerate(pack):
        if isinstance(record, dict):
            unknown = [k for k in record if k not in NAMES]
            if unknown:
                raise CodecError(f"record {index}: unknown SenML CBOR label(s) {', '.join(map(repr, unknown))}")
            record = {NAMES[k]: v for k, v in record.items()}
        out.append((index, record))
    return out


def _fail(index: Any, message: str) -> CodecError:
    # cbor2 gives no offsets per item: the message names the record instead
    return CodecError(message)


def decode_content(payload: bytes, base: Path | None, types: TypeLookup = resource_type) -> Content:
    """Flat content of a SenML CBOR pack; every record must lie below ``base`` (None: any path)."""
    return content_of(_records(payload), base, types, _fail, "CBOR map")


def decode_paths(payload: bytes) -> list[Path]:
    """The paths a Read-/Observe-Composite request in SenML CBOR names."""
    return paths_of(_records(payload), _fail, "CBOR map")
