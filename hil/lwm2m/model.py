"""LwM2M object/resource model shared by the simulated node and the gateway.

Two layers:

* definitions (:class:`ObjectDef`, :class:`ResourceDef`): what an object looks
  like (types, operations, multiplicity, mandatory resources), keyed by object
  id in :data:`DEFINITIONS`, which is loaded from the data file generated from
  the OMA LwM2M registry (``hil/resources/lwm2m_objects.json``);
* content: a flat mapping ``{Path: value}`` of resource (or resource-instance)
  paths to typed Python values. Every codec encodes from and decodes to this
  flat form, so TLV, SenML and text all meet in one shape.

Python value per type: STRING -> str, INTEGER -> int, FLOAT -> float,
BOOLEAN -> bool, OPAQUE -> bytes, TIME -> int (seconds since epoch),
OBJLNK -> :class:`ObjLnk`, NONE (executable) -> no value.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class LwM2MError(Exception):
    """Base of every error raised by the LwM2M layer."""


class CodecError(LwM2MError):
    """Malformed payload; the message names the offset and what was expected."""

    def __init__(self, message: str, offset: int | None = None):
        if offset is not None:
            message = f"at offset {offset}: {message}"
        super().__init__(message)
        self.offset = offset


class ResourceType(enum.Enum):
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    OPAQUE = "opaque"
    TIME = "time"
    OBJLNK = "objlnk"
    NONE = "none"  # executable resources carry no value


class ObjLnk(NamedTuple):
    """Object link ``obj:inst`` (e.g. 35003/27400 -> ``9:1000``)."""

    obj: int
    inst: int

    def __str__(self) -> str:
        return f"{self.obj}:{self.inst}"

    @classmethod
    def parse(cls, text: str) -> "ObjLnk":
        try:
            obj, inst = text.split(":")
            return cls(int(obj), int(inst))
        except ValueError:
            raise LwM2MError(f"bad object link {text!r}: expected 'OBJ:INST'") from None


class Path(NamedTuple):
    """An LwM2M path: /obj, /obj/inst, /obj/inst/res or /obj/inst/res/ri."""

    obj: int
    inst: int | None = None
    res: int | None = None
    ri: int | None = None

    @classmethod
    def parse(cls, text: str | "Path") -> "Path":
        if isinstance(text, Path):
            return text
        parts = [p for p in str(text).strip("/").split("/") if p != ""]
        if not 1 <= len(parts) <= 4:
            raise LwM2MError(f"bad LwM2M path {text!r}: expected /obj[/inst[/res[/ri]]]")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise LwM2MError(f"bad LwM2M path {text!r}: every segment must be a number") from None
        if any(n < 0 or n > 65535 for n in nums):
            raise LwM2MError(f"bad LwM2M path {text!r}: segments must be 0..65535")
        return cls(*nums)

    @property
    def depth(self) -> int:
        return sum(1 for p in self if p is not None)

    def segments(self) -> list[str]:
        return [str(p) for p in self if p is not None]

    def child(self, n: int) -> "Path":
        vals = [p for p in self if p is not None] + [n]
        return Path(*vals)

    def contains(self, other: "Path") -> bool:
        """True when ``other`` is this path or below it."""
        mine = [p for p in self if p is not None]
        theirs = [p for p in other if p is not None]
        return theirs[: len(mine)] == mine

    def __str__(self) -> str:
        return "/" + "/".join(self.segments())


# The flat content shape every codec speaks.
Content = dict[Path, Any]


@dataclass(frozen=True)
class ResourceDef:
    id: int
    name: str
    type: ResourceType
    ops: str = "R"  # any of "R", "W", "E"
    multiple: bool = False
    mandatory: bool = False
    units: str = ""

    @property
    def readable(self) -> bool:
        return "R" in self.ops

    @property
    def writable(self) -> bool:
        return "W" in self.ops

    @property
    def executable(self) -> bool:
        return "E" in self.ops


@dataclass(frozen=True)
class ObjectDef:
    id: int
    name: str
    multiple: bool
    resources: dict[int, ResourceDef] = field(default_factory=dict)
    version: str = "1.0"  # the object version the definition describes
    mandatory: bool = False

    def resource(self, rid: int) -> ResourceDef | None:
        return self.resources.get(rid)

    @property
    def mandatory_resources(self) -> list[ResourceDef]:
        return [rd for rd in self.resources.values() if rd.mandatory]


# OMA registry type names -> the types the codecs speak. Unsigned Integer
# travels as an Integer in every format; a Corelnk is its link-format text.
_OMA_TYPES: dict[str, ResourceType] = {
    "String": ResourceType.STRING,
    "Integer": ResourceType.INTEGER,
    "Unsigned Integer": ResourceType.INTEGER,
    "Float": ResourceType.FLOAT,
    "Boolean": ResourceType.BOOLEAN,
    "Opaque": ResourceType.OPAQUE,
    "Time": ResourceType.TIME,
    "Objlnk": ResourceType.OBJLNK,
    "Corelnk": ResourceType.STRING,
    "": ResourceType.NONE,
}


def load_definitions(data: dict[str, Any], source: str = "the object definitions") -> dict[int, ObjectDef]:
    """Object definitions from the shape ``scripts/lwm2m_objects/generate.py`` writes."""
    out: dict[int, ObjectDef] = {}
    try:
        for obj in data["objects"]:
            resources = {}
            for res in obj["resources"]:
                if res["type"] not in _OMA_TYPES:
                    raise LwM2MError(f"{source}: /{obj['id']}/{res['id']} has unknown type {res['type']!r}")
                resources[res["id"]] = ResourceDef(
                    res["id"], res["name"], _OMA_TYPES[res["type"]], res["operations"],
                    multiple=res["multiple"], mandatory=res["mandatory"], units=res["units"],
                )
            out[obj["id"]] = ObjectDef(obj["id"], obj["name"], obj["multiple"], resources, obj["version"], obj["mandatory"])
    except (KeyError, TypeError) as exc:
        raise LwM2MError(f"{source}: malformed object definition data ({type(exc).__name__}: {exc})") from None
    return out


def _shipped_definitions() -> tuple[dict[int, ObjectDef], dict[str, Any]]:
    from ..resources import lwm2m_objects

    path = lwm2m_objects()
    data = json.loads(path.read_text(encoding="utf-8"))
    return load_definitions(data, str(path)), data["source"]


#: Every object the harness knows, generated from the OMA LwM2M registry (see
#: ``scripts/lwm2m_objects``); DEFINITIONS_SOURCE names the registry commit.
DEFINITIONS, DEFINITIONS_SOURCE = _shipped_definitions()


def value_type(value: Any) -> ResourceType | None:
    """The type a decoded value carries itself (for resources no definition knows)."""
    if isinstance(value, bool):
        return ResourceType.BOOLEAN
    if isinstance(value, ObjLnk):
        return ResourceType.OBJLNK
    if isinstance(value, int):
        return ResourceType.INTEGER
    if isinstance(value, float):
        return ResourceType.FLOAT
    if isinstance(value, str):
        return ResourceType.STRING
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ResourceType.OPAQUE
    return None


def resource_def(path: Path) -> ResourceDef | None:
    """Definition of the resource a path points at, or None when unknown."""
    od = DEFINITIONS.get(path.obj)
    if od is None or path.res is None:
        return None
    return od.resources.get(path.res)


def resource_type(path: Path) -> ResourceType:
    """Type used to decode a value at ``path``; unknown resources decode as opaque."""
    rd = resource_def(path)
    return rd.type if rd else ResourceType.OPAQUE


# Update State (/9/x/7) and Update Result (/9/x/9), OMA object 9.
class UpdateState(enum.IntEnum):
    INITIAL = 0
    DOWNLOAD_STARTED = 1
    DOWNLOADED = 2
    DELIVERED = 3
    INSTALLED = 4


class UpdateResult(enum.IntEnum):
    INITIAL = 0
    DOWNLOADING = 1
    INSTALLED = 2
    DOWNLOADED_VERIFIED = 3
    NOT_ENOUGH_STORAGE = 50
    OUT_OF_MEMORY = 51
    CONNECTION_LOST = 52
    INTEGRITY_CHECK_FAILED = 53
    UNSUPPORTED_PACKAGE = 54
    INVALID_URI = 56
    UPDATE_ERROR = 57
    INSTALLATION_FAILURE = 58
    UNINSTALLATION_FAILURE = 59
