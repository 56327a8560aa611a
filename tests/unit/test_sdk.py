"""SDK builder: C service -> udynlink module -> service.json, and its CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hil.cli import main as cli_main
from hil.service.udlm import SymbolKind
from hil.service.manifest import parse_manifest
from hil.sdk import BuildError, build_service
from hil.sdk.exports import WRAPPER_SIZE

ROOT = Path(__file__).resolve().parents[2]
TEMPERATURE = ROOT / "services" / "temperature_sensor"
TEST_SERVICES = ROOT / "tests" / "data" / "services"
SDK_IMPORTS = {
    "embserve_printf_impl",
    "embserve_output_impl",
    "embserve_get_sensor_impl",
    "embserve_get_sensor_data_impl",
    "embserve_sleep_impl",
    "memcpy",
    "memset",
    "strcmp",
}

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sdk-builds")


def write_service(directory: Path, source: str, toml: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "service.c").write_text(source)
    (directory / "service.toml").write_text(
        toml if toml is not None else 'name = "probe"\nversion = 1\ninputs = []\noutputs = []\n'
    )
    return directory


MINIMAL = """
#include <embserve.h>
int setup(void) { return 0; }
void loop(void) { embserve_sleep(1000); }
"""


def test_temperature_service_builds_into_a_valid_manifest(build_dir):
    path = build_service(TEMPERATURE, build_dir / "temperature")
    manifest = parse_manifest(path.read_bytes())
    module = manifest.module
    assert manifest.name == module.name == "temperature_sensor"
    assert [(s.key, int(s.type), s.data_model_mapping) for s in manifest.inputs] == [("rate", 0, ())]
    assert [(s.key, int(s.type), s.data_model_mapping) for s in manifest.outputs] == [
        ("value", 1, ("lwm2m:3303/x/5700",))
    ]
    assert manifest.data_model == ("lwm2m:urn:oma:lwm2m:ext:3303",)
    assert manifest.sdk_api == 1
    assert set(module.imports) <= SDK_IMPORTS
    assert {"embserve_sleep_impl", "embserve_output_impl", "embserve_printf_impl"} <= set(module.imports)
    # wrappers first, 28 bytes each, in the SDK's order, entered in Thumb state
    assert module.exports == {"setup": 0x1, "loop": 0x1D, "on_input": 0x39, "on_quit": 0x55}
    assert (build_dir / "temperature" / "service.elf").is_file()


def test_export_wrapper_code_follows_the_udynlink_convention(build_dir):
    module = parse_manifest(build_service(TEMPERATURE, build_dir / "temperature").read_bytes()).module
    wrapper = module.code[:WRAPPER_SIZE]
    assert wrapper[:4] == bytes.fromhex("2de90042")  # push.w {r9, lr}
    assert wrapper[6:10] == bytes.fromhex("4ff02801")  # mov.w r1, #0x28: the lookup pointer
    assert wrapper[12:16] == bytes.fromhex("78468847")  # mov r0, pc; blx r1
    assert wrapper[16:18] == bytes.fromhex("8146")  # mov r9, r0
    assert wrapper[24:28] == bytes.fromhex("bde80082")  # pop.w {r9, pc}


def test_lot_entries_are_deduplicated_and_literal_pools_hold_lot_offsets(build_dir):
    module = parse_manifest(build_service(TEMPERATURE, build_dir / "temperature").read_bytes()).module
    lot_targets = [module.symbols[r.symbol] for r in module.relocations if r.slot < module.num_lot]
    keys = [(s.kind, s.in_code, s.value, s.name) for s in lot_targets]
    assert len(keys) == len(set(keys)) == module.num_lot
    # every LOT slot is filled exactly once
    assert sorted(r.slot for r in module.relocations if r.slot < module.num_lot) == list(range(module.num_lot))
    externs = [s.name for s in lot_targets if s.kind is SymbolKind.EXTERN]
    assert len(externs) == len(set(externs))


def test_initialised_pointers_become_data_relocations(build_dir):
    module = parse_manifest(build_service(TEST_SERVICES / "counter", build_dir / "counter").read_bytes()).module
    data_relocs = module.data_relocations
    assert len(data_relocs) == 2  # phases[] = {"even", "odd"}
    for rel in data_relocs:
        symbol = module.symbols[rel.symbol]
        assert symbol.kind is SymbolKind.LOCAL and symbol.in_code  # the strings live in .rodata (code)
        text = module.code[symbol.value : module.code.index(b"\0", symbol.value)]
        assert text in (b"even", b"odd")
        assert rel.slot - module.num_lot < len(module.data) // 4


def test_build_is_cached_until_an_input_changes(tmp_path):
    src = write_service(tmp_path / "probe", MINIMAL)
    out = tmp_path / "out"
    first = build_service(src, out)
    first_bytes = first.read_bytes()
    stamp = first.stat().st_mtime_ns
    elf_stamp = (out / "service.elf").stat().st_mtime_ns
    assert build_service(src, out).stat().st_mtime_ns == stamp
    assert (out / "service.elf").stat().st_mtime_ns == elf_stamp  # nothing was recompiled
    (src / "service.c").write_text(MINIMAL.replace("1000", "2000"))
    rebuilt = build_service(src, out)
    assert rebuilt.read_bytes() != first_bytes


def test_default_output_directory_is_build_inside_the_source(tmp_path):
    src = write_service(tmp_path / "probe", MINIMAL)
    assert build_service(src) == src / "build" / "service.json"


def test_missing_compiler_names_the_debian_package(tmp_path, monkeypatch):
    src = write_service(tmp_path / "probe", MINIMAL)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildError) as info:
        build_service(src, tmp_path / "out")
    assert "arm-none-eabi-gcc not found on PATH: install the Debian package gcc-arm-none-eabi" in str(info.value)


def test_compile_error_is_reported_with_the_compiler_message(tmp_path):
    src = write_service(tmp_path / "probe", MINIMAL + "\nint broken( {\n")
    with pytest.raises(BuildError) as info:
        build_service(src, tmp_path / "out")
    assert "compiling" in str(info.value) and "service.c" in str(info.value) and "error" in str(info.value)


def test_service_without_loop_is_refused(tmp_path):
    src = write_service(tmp_path / "probe", "#include <embserve.h>\nint setup(void) { return 0; }\n")
    with pytest.raises(BuildError, match=r"the sources define no loop\(\)"):
        build_service(src, tmp_path / "out")


def test_absolute_address_in_code_is_rejected(tmp_path):
    source = MINIMAL + '__asm__(".text\\n.balign 4\\n.word setup\\n");\n'
    src = write_service(tmp_path / "probe", source)
    with pytest.raises(BuildError) as info:
        build_service(src, tmp_path / "out")
    assert "relocation R_ARM_ABS32 against setup at .text+" in str(info.value)
    assert "absolute address in code" in str(info.value)


def test_direct_call_to_an_import_is_rejected(tmp_path):
    source = MINIMAL + "int helper(void) __attribute__((short_call));\nint use(void) { return helper(); }\n"
    src = write_service(tmp_path / "probe", source)
    with pytest.raises(BuildError, match="direct call to undefined function helper at .text"):
        build_service(src, tmp_path / "out")


@pytest.mark.parametrize(
    "toml, message",
    [
        ('name = "bad name"\nversion = 1\ninputs = []\noutputs = []\n', "name: expected 1-63 characters"),
        ('name = "probe"\nversion = 1\ninputs = [{key = "r", type = "double"}]\noutputs = []\n', "inputs[0].type: unknown type 'double'"),
        ('name = "probe"\nversion = 1\ninputs = []\noutputs = []\ncolour = 3\n', "unknown keys colour"),
        ('name = "probe"\nversion = \n', "service.toml: "),
        (
            'name = "probe"\nversion = 1\ninputs = []\n[[outputs]]\nkey = "v"\ntype = "float"\ndata_model_mapping = ["3303/5700"]\n',
            "service.toml: outputs[0].data_model_mapping[0]: '3303/5700' is not of the form lwm2m:<obj>/x/<res>",
        ),
        ('name = "probe"\ninputs = []\noutputs = []\n', "service.toml: version: expected an integer, got null"),
    ],
    ids=["name", "type", "unknown-key", "toml-syntax", "mapping", "version"],
)
def test_bad_service_toml_is_named(tmp_path, toml, message):
    src = write_service(tmp_path / "probe", MINIMAL, toml)
    with pytest.raises(BuildError) as info:
        build_service(src, tmp_path / "out")
    assert message in str(info.value)


def test_missing_service_toml(tmp_path):
    (tmp_path / "probe").mkdir()
    with pytest.raises(BuildError, match="no service.toml"):
        build_service(tmp_path / "probe", tmp_path / "out")


def test_cli_build_service_and_inspect(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["build-service", str(TEMPERATURE), "-o", str(out)]) == 0
    written = Path(capsys.readouterr().out.strip())
    assert written == out / "service.json" and written.is_file()

    assert cli_main(["inspect", str(written)]) == 0
    text = capsys.readouterr().out
    assert "service:    temperature_sensor version 1 (sdk_api 1)" in text
    assert "outputs:    value (float) -> lwm2m:3303/x/5700" in text
    assert "exports:    setup @ code+0x1, loop @ code+0x1d, on_input @ code+0x39, on_quit @ code+0x55" in text
    assert "embserve_sleep_impl" in text and "NOT provided" not in text

    assert cli_main(["inspect", "--json", "--symbols", str(written)]) == 0
    report = json.loads(capsys.readouterr().out)
    manifest = parse_manifest(written.read_bytes())
    assert report["manifest"]["name"] == "temperature_sensor"
    assert report["module"]["num_lot"] == manifest.module.num_lot
    assert report["module"]["ram_size"] == manifest.module.ram_size
    assert {e["name"] for e in report["exports"]} == {"setup", "loop", "on_input", "on_quit"}
    assert all(i["provided"] for i in report["imports"])
    assert report["symbols"][0] == {"index": 0, "kind": "module_name", "in_code": False, "value": 0, "name": "temperature_sensor"}


def test_cli_inspect_flags_unknown_imports_and_bad_files(tmp_path, capsys, build_dir):
    path = build_service(TEST_SERVICES / "unknown_import", build_dir / "unknown_import")
    assert cli_main(["inspect", str(path)]) == 0
    assert "frobnicate (NOT provided by the firmware)" in capsys.readouterr().out

    raw_module = tmp_path / "module.udlm"
    raw_module.write_bytes(parse_manifest(path.read_bytes()).service[:-4])
    assert cli_main(["inspect", str(raw_module)]) == 1
    assert "truncated" in capsys.readouterr().err

    broken = tmp_path / "service.json"
    broken.write_text('{"name": "x"')
    assert cli_main(["inspect", str(broken)]) == 1
    assert "invalid JSON at line 1" in capsys.readouterr().err


def test_cli_build_service_reports_errors(tmp_path, capsys):
    assert cli_main(["build-service", str(tmp_path)]) == 1
    assert "embserve-hil build-service: " in capsys.readouterr().err
