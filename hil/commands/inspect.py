"""``embserve-hil inspect FILE [--json]``: show a service.json (or a bare UDLM module)."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from hil.service import sdk_api
from hil.service.udlm import MAGIC, Module, ModuleFormatError, parse_module
from hil.service.manifest import Manifest, ManifestError, parse_manifest


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="show the manifest, module header, exports and imports of a service.json",
        description="Validate and describe a service.json or a raw udynlink module.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="service.json or a .udlm module")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--symbols", action="store_true", help="also list every symbol and relocation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        print(f"embserve-hil inspect: {exc}", file=sys.stderr)
        return 1
    try:
        if raw.startswith(MAGIC):
            manifest, module = None, parse_module(raw)
        else:
            manifest = parse_manifest(raw, source=str(args.file))
            module = manifest.module
    except ManifestError as exc:  # names the file already
        print(f"embserve-hil inspect: {exc}", file=sys.stderr)
        return 1
    except ModuleFormatError as exc:
        print(f"embserve-hil inspect: {args.file}: {exc}", file=sys.stderr)
        return 1
    report = describe(manifest, module, raw if manifest is None else manifest.service, args.symbols)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def describe(manifest: Manifest | None, module: Module | None, blob: bytes, symbols: bool = False) -> dict[str, Any]:
    if module is None:
        module = parse_module(blob)
    out: dict[str, Any] = {}
    if manifest is not None:
        out["manifest"] = {
            "name": manifest.name,
            "version": manifest.version,
            "sdk_api": manifest.sdk_api,
            "data_model": list(manifest.data_model or []),
            "inputs": [spec.to_dict() for spec in manifest.inputs],
            "outputs": [spec.to_dict() for spec in manifest.outputs],
        }
    out["module"] = {
        "name": module.name,
        "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "num_lot": module.num_lot,
        "num_relocations": len(module.relocations),
        "data_relocations": len(module.data_relocations),
        "num_symbols": len(module.symbols),
        "code_size": len(module.code),
        "data_size": len(module.data),
        "bss_size": module.bss_size,
        "ram_size": module.ram_size,
    }
    out["exports"] = [{"name": name, "offset": value} for name, value in module.exports.items()]
    out["imports"] = [{"name": name, "provided": name in sdk_api.IMPORTS} for name in module.imports]
    if symbols:
        out["symbols"] = [
            {"index": i, "kind": s.kind.name.lower(), "in_code": s.in_code, "value": s.value, "name": s.name}
            for i, s in enumerate(module.symbols)
        ]
        out["relocations"] = [{"slot": r.slot, "symbol": r.symbol} for r in module.relocations]
    return out


def _types(specs: list[dict[str, Any]]) -> str:
    names = {0: "int", 1: "float"}
    parts = []
    for spec in specs:
        text = f"{spec['key']} ({names.get(spec['type'], spec['type'])})"
        if spec.get("data_model_mapping"):
            text += " -> " + ", ".join(spec["data_model_mapping"])
        parts.append(text)
    return "; ".join(parts) or "none"


def render(report: dict[str, Any]) -> str:
    lines = []
    manifest = report.get("manifest")
    if manifest is not None:
        lines.append(f"service:    {manifest['name']} version {manifest['version']} (sdk_api {manifest['sdk_api']})")
        lines.append(f"data model: {', '.join(manifest['data_model']) or 'none'}")
        lines.append(f"inputs:     {_types(manifest['inputs'])}")
        lines.append(f"outputs:    {_types(manifest['outputs'])}")
    m = report["module"]
    lines.append(f"module:     UDLM {m['name']!r}, {m['size']} bytes, sha256 {m['sha256'][:16]}...")
    lines.append(
        f"header:     code {m['code_size']}, data {m['data_size']}, bss {m['bss_size']} bytes; "
        f"LOT {m['num_lot']} entries; {m['num_relocations']} relocations ({m['data_relocations']} in data); "
        f"{m['num_symbols']} symbols"
    )
    parts = f"LOT {4 * m['num_lot']} + data {m['data_size']} + bss {m['bss_size']}"
    lines.append(f"RAM:        {m['ram_size']} bytes ({parts})")
    lines.append("exports:    " + ", ".join(f"{e['name']} @ code+{e['offset']:#x}" for e in report["exports"]))
    imports = [i["name"] + ("" if i["provided"] else " (NOT provided by the firmware)") for i in report["imports"]]
    lines.append("imports:    " + (", ".join(imports) or "none"))
    for sym in report.get("symbols", []):
        where = "code" if sym["in_code"] else "data"
        lines.append(f"  symbol {sym['index']:3} {sym['kind']:<11} {where} {sym['value']:#07x} {sym['name']}")
    for rel in report.get("relocations", []):
        lines.append(f"  reloc  slot {rel['slot']:3} <- symbol {rel['symbol']}")
    return "\n".join(lines)
