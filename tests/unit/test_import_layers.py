"""The import direction of ``hil/``: lower layers never import higher ones, and no modules import each other.

Every module is read with ``ast`` (nothing is imported), and every import
counts: top-level, inside functions, under ``TYPE_CHECKING``. A module's unit
is its top-level part of ``hil`` (``hil.device.node`` is in ``device``);
:data:`LAYERS` orders the units from the bottom up, as docs/architecture.md
shows them. A unit may import units of lower layers only; within a unit,
modules may import each other as long as no circle forms.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import hil

# Bottom up; units on one line are independent of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hil",),  # the package root: its version
    ("resources", "cache", "progress", "secret", "metrics"),  # shipped files, the per-user cache; long waits told; secrets and their redaction; execution metrics (data only)
    ("lwm2m", "service", "console", "boards", "net", "report"),
    ("fita", "sdk", "infra", "readings", "reference_firmware", "faults", "fleet_file"),
    ("device", "gateway", "bundle"),
    ("faredge",),
    ("targets", "fleet_net"),
    ("fleet", "replay"),
    ("pytest_plugin", "pytest_report", "commands", "suites"),
    ("cli",),
)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported
    where: str  # file:line


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(root: Path) -> tuple[set[str], list[Import]]:
    """Every module of the package at ``root`` and every import among them."""
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    found: dict[Import, None] = {}  # one entry per import statement and module, in order
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # "from pkg import mod" imports the module pkg.mod; "from pkg import name" imports pkg
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:  # "import hil.x.y" of a name, not a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found[Import(name, target, where)] = None
    return set(files), list(found)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(imports: list[Import], layers: tuple[tuple[str, ...], ...]) -> list[str]:
    layer = {unit: i for i, units in enumerate(layers) for unit in units}
    problems = []
    for imp in imports:
        source, target = unit_of(imp.module), unit_of(imp.target)
        for unit in (source, target):
            if unit not in layer:
                problems.append(f"{imp.where}: unit {unit!r} has no layer: add it to LAYERS and docs/architecture.md")
        if source == target or source not in layer or target not in layer:
            continue
        if layer[target] >= layer[source]:
            how = "a higher" if layer[target] > layer[source] else "the same"
            problems.append(
                f"{imp.where}: {imp.module} imports {imp.target}: {source} (layer {layer[source]}) "
                f"must not import {target}, in {how} layer ({layer[target]})"
            )
    return problems


def circles(modules: set[str], imports: list[Import]) -> list[str]:
    """Every set of modules that import each other, with the imports that close the circle (Tarjan)."""
    edges: dict[str, list[Import]] = {m: [] for m in modules}
    for imp in imports:
        edges[imp.module].append(imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[str] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imp in edges[module]:
            if imp.target not in index:
                visit(imp.target)
                low[module] = min(low[module], low[imp.target])
            elif imp.target in on_stack:
                low[module] = min(low[module], index[imp.target])
        if low[module] == index[module]:
            members = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.add(member)
                if member == module:
                    break
            if len(members) > 1:
                inside = [f"{i.where}: {i.module} imports {i.target}" for m in sorted(members) for i in edges[m] if i.target in members]
                found.append(f"circle of {len(members)} modules:\n    " + "\n    ".join(inside))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def test_hil_imports_only_go_down_the_layers() -> None:
    modules, imports = imports_of(Path(hil.__file__).parent)
    assert len(modules) > 50 and len(imports) > 150, "the walk found too little: is it reading the package?"
    problems = layer_violations(imports, LAYERS)
    assert not problems, "imports against the layers of docs/architecture.md:\n" + "\n".join(problems)


def test_no_modules_of_hil_import_each_other() -> None:
    modules, imports = imports_of(Path(hil.__file__).parent)
    found = circles(modules, imports)
    assert not found, "modules of hil/ that import each other:\n" + "\n".join(found)


def test_the_check_names_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    root = tmp_path / "hil"
    for name, text in {
        "__init__.py": "",
        "lwm2m/__init__.py": "",
        "lwm2m/model.py": "def f():\n    from ..device import node\n",  # upward, and hidden in a function
        "device/__init__.py": "",
        "device/node.py": "from .shell import Shell\nfrom hil.lwm2m.model import f\n",
        "device/shell.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import node\n",
        "faredge/__init__.py": "",
        "faredge/labels.py": "from hil.device import node\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    modules, imports = imports_of(root)
    layers = (("hil",), ("lwm2m",), ("device",), ("faredge",))
    assert layer_violations(imports, layers) == [
        "hil/lwm2m/model.py:2: hil.lwm2m.model imports hil.device.node: lwm2m (layer 1) must not import device, "
        "in a higher layer (2)"
    ]
    (found,) = circles(modules, imports)
    assert "hil/device/node.py:1: hil.device.node imports hil.device.shell" in found
    assert "hil/device/shell.py:3: hil.device.shell imports hil.device.node" in found
    assert "lwm2m" in found  # the upward import closes a longer circle too: node -> model -> node
    unplaced = layer_violations(imports, (("hil",), ("lwm2m",), ("device",)))
    assert any("unit 'faredge' has no layer" in p for p in unplaced)
