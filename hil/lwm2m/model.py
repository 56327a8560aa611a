"""LwM2M object/resource model shared by the simulated node and the gateway.

Two layers:

* definitions (:class:`ObjectDef`, :class:`ResourceDef`): what an object looks
  like (types, operations, multiplicity), keyed by object id in
  :data:`DEFINITIONS`;
* content: a flat mapping ``{Path: value}`` of resource (or resource-instance)
  paths to typed Python values. Every codec encodes from and decodes to this
  flat form, so TLV, SenML and text all meet in one shape.

Python value per type: STRING -> str, INTEGER -> int, FLOAT -> float,
BOOLEAN -> bool, OPAQUE -> bytes, TIME -> int (seconds since epoch),
OBJLNK -> :class:`ObjLnk`, NONE (executable) -> no value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple


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
    sdf_name: str = ""  # name used by the SDF/MQTT bridge, when FITA has one

    def resource(self, rid: int) -> ResourceDef | None:
        return self.resources.get(rid)


def _obj(oid: int, name: str, multiple: bool, res: Iterable[ResourceDef], sdf_name: str = "") -> ObjectDef:
    return ObjectDef(oid, name, multiple, {r.id: r for r in res}, sdf_name)


S, I, F, B, O, T, L, N = (
    ResourceType.STRING,
    ResourceType.INTEGER,
    ResourceType.FLOAT,
    ResourceType.BOOLEAN,
    ResourceType.OPAQUE,
    ResourceType.TIME,
    ResourceType.OBJLNK,
    ResourceType.NONE,
)
R = ResourceDef

DEFINITIONS: dict[int, ObjectDef] = {
    o.id: o
    for o in [
        _obj(1, "LwM2M Server", True, [
            R(0, "Short Server ID", I, "R", mandatory=True),
            R(1, "Lifetime", I, "RW", mandatory=True),
            R(2, "Default Minimum Period", I, "RW"),
            R(3, "Default Maximum Period", I, "RW"),
            R(4, "Disable", N, "E"),
            R(6, "Notification Storing", B, "RW", mandatory=True),
            R(7, "Binding", S, "RW", mandatory=True),
            R(8, "Registration Update Trigger", N, "E", mandatory=True),
        ]),
        _obj(3, "Device", False, [
            R(0, "Manufacturer", S, "R"),
            R(1, "Model Number", S, "R"),
            R(2, "Serial Number", S, "R"),
            R(3, "Firmware Version", S, "R"),
            R(4, "Reboot", N, "E", mandatory=True),
            R(5, "Factory Reset", N, "E"),
            R(9, "Battery Level", I, "R"),
            R(11, "Error Code", I, "R", multiple=True, mandatory=True),
            R(13, "Current Time", T, "RW"),
            R(14, "UTC Offset", S, "RW"),
            R(15, "Timezone", S, "RW"),
            R(16, "Supported Binding and Modes", S, "R", mandatory=True),
            R(17, "Device Type", S, "R"),
            R(18, "Hardware Version", S, "R"),
            R(19, "Software Version", S, "R"),
            R(21, "Memory Total", I, "R", units="kB"),
        ], sdf_name="Device"),
        _obj(4, "Connectivity Monitoring", False, [
            R(0, "Network Bearer", I, "R", mandatory=True),
            R(1, "Available Network Bearer", I, "R", multiple=True, mandatory=True),
            R(2, "Radio Signal Strength", I, "R", mandatory=True),
            R(4, "IP Addresses", S, "R", multiple=True, mandatory=True),
            R(5, "Router IP Addresses", S, "R", multiple=True),
        ], sdf_name="Connectivity_Monitoring"),
        _obj(9, "LWM2M Software Management", True, [
            R(0, "PkgName", S, "R", mandatory=True),
            R(1, "PkgVersion", S, "R", mandatory=True),
            R(2, "Package", O, "W"),
            R(3, "Package URI", S, "W"),
            R(4, "Install", N, "E", mandatory=True),
            R(6, "Uninstall", N, "E", mandatory=True),
            R(7, "Update State", I, "R", mandatory=True),
            R(9, "Update Result", I, "R", mandatory=True),
            R(10, "Activate", N, "E", mandatory=True),
            R(11, "Deactivate", N, "E", mandatory=True),
            R(12, "Activation State", B, "R", mandatory=True),
        ], sdf_name="LWM2M_Software_Management"),
        _obj(15, "DevCapMgmt", True, [
            R(0, "Property", S, "R", mandatory=True),
            R(1, "Group", I, "R", mandatory=True),
            R(2, "Description", S, "R"),
            R(3, "Attached", B, "R"),
            R(4, "Enabled", B, "R", mandatory=True),
        ], sdf_name="DevCapMgmt"),
        _obj(3303, "Temperature", True, [
            R(5700, "Sensor Value", F, "R", mandatory=True),
            R(5701, "Sensor Units", S, "R"),
            R(5601, "Min Measured Value", F, "R"),
            R(5602, "Max Measured Value", F, "R"),
            R(5750, "Application Type", S, "RW"),
        ], sdf_name="Temperature"),
        _obj(3300, "Generic Sensor", True, [
            R(5700, "Sensor Value", F, "R", mandatory=True),
            R(5701, "Sensor Units", S, "R"),
            R(5750, "Application Type", S, "RW"),
        ], sdf_name="Generic_Sensor"),
        _obj(35001, "Data Route", True, [
            R(0, "Origin_URI", S, "RW", mandatory=True),
            R(1, "Destination_URI", S, "RW", mandatory=True),
        ], sdf_name="Data_Route"),
        _obj(35003, "Software Package Monitoring", True, [
            R(27400, "Software Package", L, "R", mandatory=True),
            R(27401, "CPU Usage", S, "R"),
            R(27402, "Memory Usage", S, "R"),
            R(27403, "Uptime", S, "R"),
            R(27404, "Error", S, "R"),
        ], sdf_name="Software_Package_Monitoring"),
    ]
}


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
