"""Build a C service directory into ``service.json``.

``build_service(src_dir)`` compiles the sources listed by ``service.toml``
against the SDK header, generates and assembles the export wrappers, links
with libgcc and the SDK link script, packs the ELF into a udynlink module and
writes ``service.json`` (checked by the manifest parser before it is written).

Output goes to ``src_dir/build`` unless ``out_dir`` is given; the directory
also keeps ``service.elf``, the linked module with its debug information
(for ``objdump``, ``gdb`` and symbolized faults), and files it in the
per-user symbol store under the digest of the module it packs to
(:func:`hil.service.symbols.store_service_elf`). A build is skipped when nothing
that goes into it (sources, config, header, link script, tools, this SDK)
changed since the last one.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import sys
from pathlib import Path

from elftools.elf.elffile import ELFFile

from .. import resources
from ..service import sdk_api, symbols, udlm
from ..service.manifest import ManifestError, parse_manifest
from . import config as service_config
from . import exports, packer, toolchain
from .config import ConfigError, load_config

OUTPUT_NAME = "service.json"
ELF_NAME = "service.elf"
_KEY_NAME = "build.key"


class BuildError(RuntimeError):
    pass


def build_service(src_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    src_dir = Path(src_dir)
    out_dir = Path(out_dir) if out_dir is not None else src_dir / "build"
    try:
        config = load_config(src_dir)
        gcc = toolchain.find_gcc()
    except (ConfigError, toolchain.ToolchainError) as exc:
        raise BuildError(str(exc)) from None
    output = out_dir / OUTPUT_NAME
    key = _build_key(config.path, config.sources, toolchain.version(gcc))
    key_file = out_dir / _KEY_NAME
    if output.is_file() and key_file.is_file() and key_file.read_text() == key:
        _file_symbols(output, out_dir / ELF_NAME)
        return output
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        module = _compile_and_pack(gcc, config.name, config.sources, out_dir)
    except (toolchain.ToolchainError, packer.PackError) as exc:
        raise BuildError(f"{config.name}: {exc}") from None
    fields = dict(config.manifest_fields, service=base64.b64encode(module.pack()).decode("ascii"))
    try:
        manifest = parse_manifest(fields, source=str(config.path))
    except ManifestError as exc:
        raise BuildError(str(exc)) from None
    output.write_text(manifest.to_json() + "\n")
    key_file.write_text(key)
    symbols.store_service_elf(manifest.service, out_dir / ELF_NAME)
    return output


def _file_symbols(service_json: Path, elf: Path) -> None:
    """A build that was skipped still has its ELF in the symbol store (the cache may have been cleared)."""
    try:
        module = parse_manifest(service_json.read_bytes(), source=str(service_json)).service
    except ManifestError:
        return
    if elf.is_file() and symbols.service_elf_for(module) is None:
        symbols.store_service_elf(module, elf)


def _compile_and_pack(gcc: str, name: str, sources: tuple[Path, ...], out_dir: Path):
    defines = [f"-I{resources.sdk_include_dir()}", f'-DEMBSERVE_SERVICE_NAME="{name}"']
    objects = []
    for source in sources:
        obj = out_dir / (source.name + ".o")
        toolchain.run([gcc, *toolchain.CFLAGS, *defines, "-c", str(source), "-o", str(obj)], f"compiling {source}")
        objects.append(obj)
    names = _exported_functions(objects)
    missing = [n for n in sdk_api.REQUIRED_EXPORTS if n not in names]
    if missing:
        raise BuildError(f"{name}: the sources define no {' or '.join(missing)}() (a service needs setup() and loop())")
    wrappers = out_dir / "exports.S"
    wrappers.write_text(exports.wrappers_assembly(names))
    wrappers_obj = out_dir / "exports.o"
    toolchain.run([gcc, *toolchain.CFLAGS, "-c", str(wrappers), "-o", str(wrappers_obj)], "assembling export wrappers")
    elf = out_dir / ELF_NAME
    toolchain.run(
        [gcc, *toolchain.CFLAGS, *toolchain.ldflags(), "-o", str(elf), str(wrappers_obj), *map(str, objects)]
        + toolchain.LIBS,
        "linking",
    )
    return packer.pack_elf(elf, name, names)


def _exported_functions(objects: list[Path]) -> list[str]:
    """The exportable entry points the objects define, in the SDK's order."""
    defined: set[str] = set()
    for obj in objects:
        with open(obj, "rb") as f:
            symtab = ELFFile(f).get_section_by_name(".symtab")
            for sym in symtab.iter_symbols() if symtab is not None else ():
                if (
                    sym["st_info"]["bind"] == "STB_GLOBAL"
                    and sym["st_info"]["type"] == "STT_FUNC"
                    and sym["st_shndx"] != "SHN_UNDEF"
                ):
                    defined.add(sym.name)
    return [n for n in sdk_api.EXPORTABLE if n in defined]


def _build_key(config: Path, sources: tuple[Path, ...], compiler: str) -> str:
    digest = hashlib.sha256(compiler.encode())
    local_headers = sorted(config.parent.glob("*.h"))
    inputs = [config, *sources, *local_headers, resources.sdk_link_script()]
    inputs += sorted(resources.sdk_include_dir().glob("*.h"))
    for path in inputs:
        digest.update(str(path.name).encode() + b"\0" + path.read_bytes() + b"\0")
    # The SDK's own code, down to the module format the packer writes and the ABI it builds against.
    code = [sys.modules[__package__], sys.modules[__name__], service_config, exports, packer, toolchain]
    for module in [*code, udlm, sdk_api]:
        digest.update(module.__name__.encode() + b"\0" + inspect.getsource(module).encode() + b"\0")
    return digest.hexdigest()
