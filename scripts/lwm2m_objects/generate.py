"""Generate hil/resources/lwm2m_objects.json from OMA LwM2M registry XML.

Usage (a checkout or export of github.com/OpenMobileAlliance/lwm2m-registry)::

    python scripts/lwm2m_objects/generate.py --registry DIR --commit SHA [--out FILE]

The objects the harness meets are listed in OBJECTS with the object version
taken for each: the core objects at the versions that belong to LwM2M 1.1
(the enabler version the simulated node registers with), everything else at
the registry's current version. The custom objects of embServe (35001 Data
Route, 35003 Software Package Monitoring) are not in the OMA registry; they
are written in the registry's own XML format next to this script, from the
facts of the embServe protocol, and read the same way.

Only facts are kept (id, name, instances, mandatory, operations, type, units);
the registry's descriptions are not copied.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parents[1] / "hil" / "resources" / "lwm2m_objects.json"
REGISTRY = "OpenMobileAlliance/lwm2m-registry"

# object id -> object version to take ("" = the registry's current file)
OBJECTS: dict[int, str] = {
    0: "1.1", 1: "1.1", 2: "", 3: "1.1", 4: "1.1", 5: "1.1", 6: "", 7: "",  # LwM2M core (1.1)
    9: "", 15: "",  # software management, device capabilities
    3300: "", 3301: "", 3302: "", 3303: "", 3304: "", 3313: "", 3314: "",  # IPSO sensors
    3308: "", 3315: "", 3323: "", 3324: "", 3334: "",  # 3308 Set Point: a writable service input
}
CUSTOM = (35001, 35003)  # embServe's own objects, XML next to this script


class DefinitionError(ValueError):
    """An XML definition that cannot be used; the message names the file."""


def _text(element: ET.Element, tag: str) -> str:
    return re.sub(r"\s+", " ", element.findtext(tag) or "").strip()


def read_object(path: Path) -> dict[str, object]:
    """The facts of one object definition file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DefinitionError(f"{path}: not well-formed XML: {exc}") from None
    obj = root.find("Object")
    if obj is None:
        raise DefinitionError(f"{path}: no <Object> element")
    resources = []
    for item in obj.find("Resources") or []:
        operations = _text(item, "Operations")
        if operations and not set(operations) <= set("RWE"):
            raise DefinitionError(f"{path}: resource {item.get('ID')} has operations {operations!r}")
        resources.append({
            "id": int(item.get("ID", "")),
            "name": _text(item, "Name"),
            "operations": operations,
            "multiple": _text(item, "MultipleInstances") == "Multiple",
            "mandatory": _text(item, "Mandatory") == "Mandatory",
            "type": _text(item, "Type"),  # "" for an executable
            "units": _text(item, "Units"),
        })
    return {
        "id": int(_text(obj, "ObjectID")),
        "name": _text(obj, "Name"),
        "version": _text(obj, "ObjectVersion") or "1.0",
        "urn": _text(obj, "ObjectURN"),
        "multiple": _text(obj, "MultipleInstances") == "Multiple",
        "mandatory": _text(obj, "Mandatory") == "Mandatory",
        "resources": sorted(resources, key=lambda r: r["id"]),
    }


def registry_file(registry: Path, oid: int, version: str) -> Path:
    current = registry / f"{oid}.xml"
    if not version:
        return current
    if current.is_file() and (read_object(current)["version"] == version):
        return current
    older = registry / "version_history" / f"{oid}-{version.replace('.', '_')}.xml"
    if not older.is_file():
        raise DefinitionError(f"object {oid} version {version}: neither {current} nor {older} holds it")
    return older


def generate(registry: Path, commit: str) -> dict[str, object]:
    objects = []
    for oid, version in sorted(OBJECTS.items()):
        path = registry_file(registry, oid, version)
        facts = read_object(path)
        if facts["id"] != oid:
            raise DefinitionError(f"{path} defines object {facts['id']}, expected {oid}")
        facts["source"] = path.relative_to(registry).as_posix()
        objects.append(facts)
    for oid in CUSTOM:
        path = HERE / f"{oid}.xml"
        facts = read_object(path)
        facts["source"] = f"scripts/lwm2m_objects/{path.name} (embServe protocol facts)"
        objects.append(facts)
    return {
        "source": {"registry": REGISTRY, "commit": commit, "generator": "scripts/lwm2m_objects/generate.py"},
        "objects": objects,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, required=True, help="directory holding the registry's XML files")
    parser.add_argument("--commit", required=True, help="the registry commit the files are from (recorded)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    try:
        data = generate(args.registry, args.commit)
    except (DefinitionError, OSError, ValueError) as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(data['objects'])} objects to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
