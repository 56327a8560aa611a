"""The reference firmware's per-user cache: built once, reused, never used half-written.

Real builds of the shipped sources with the Debian toolchain (about a second
each here), into a cache directory of the test's own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil import resources
from hil.cli import main as cli_main
from hil.reference_firmware import (
    ELF_NAME,
    MANIFEST_NAME,
    FirmwareError,
    build_key,
    check_toolchain,
    entry_is_complete,
    firmware_boards,
    reference_firmware,
)

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None,
    reason="needs make and gcc-arm-none-eabi (with picolibc-arm-none-eabi) to build the reference firmware",
)


def build(cache: Path, net: str = "eth") -> tuple[Path, list[str]]:
    said: list[str] = []
    return reference_firmware(net, cache_dir=cache, announce=said.append), said


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir())


@pytest.fixture(scope="module")
def first_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A build into an empty cache: (the ELF, what was announced)."""
    return build(tmp_path_factory.mktemp("first") / "cache")


def copy_of(entry: Path, tmp_path: Path) -> Path:
    """A cache holding a copy of ``entry``; the entry's ELF in it."""
    cache = tmp_path / "cache"
    shutil.copytree(entry, cache / entry.name)
    return cache / entry.name / ELF_NAME


def test_first_use_builds_then_reuses(first_build: tuple[Path, list[str]]) -> None:
    elf, said = first_build
    cache = elf.parent.parent
    assert elf.name == ELF_NAME
    assert said[0].startswith(f"embserve-hil: building the reference firmware (BOARD=mps2_an385 NET=eth) into {elf.parent}")
    assert elf.read_bytes()[:4] == b"\x7fELF" and entry_is_complete(elf.parent, elf.parent.name)
    assert entries(cache) == [elf.parent.name], "nothing but the entry is left behind"
    assert sorted(p.name for p in elf.parent.iterdir()) == sorted([ELF_NAME, MANIFEST_NAME, "embserve.map"])

    again, said = build(cache)
    assert again == elf and said == [f"embserve-hil: reusing the reference firmware (BOARD=mps2_an385 NET=eth) {elf}"]


def test_key_follows_sources_flags_and_compiler(tmp_path: Path) -> None:
    src = tmp_path / "firmware"
    shutil.copytree(resources.firmware_dir(), src, ignore=shutil.ignore_patterns("build", "__pycache__"))
    compiler = check_toolchain()
    key = build_key(src, {"NET": "eth"}, compiler)
    assert key == build_key(src, {"NET": "eth"}, compiler)
    assert key != build_key(src, {"NET": "slip"}, compiler)
    assert key != build_key(src, {"NET": "eth"}, compiler + " (another release)")
    (src / "src" / "runtime" / "fmt.c").write_text((src / "src" / "runtime" / "fmt.c").read_text() + "\n/* changed */\n")
    assert key != build_key(src, {"NET": "eth"}, compiler)
    (src / "src" / "notes.txt").write_text("not a source")
    changed = build_key(src, {"NET": "eth"}, compiler)
    (src / "src" / "notes.txt").unlink()
    assert changed == build_key(src, {"NET": "eth"}, compiler), "only what the build reads counts"


def test_key_is_per_board_and_follows_that_boards_files(tmp_path: Path) -> None:
    src = tmp_path / "firmware"
    shutil.copytree(resources.firmware_dir(), src, ignore=shutil.ignore_patterns("build", "__pycache__"))
    assert firmware_boards(src) == ["mps2_an385", "nrf52840dk", "stm32f4_discovery"]
    compiler = check_toolchain()

    def keys() -> dict[str, str]:
        return {board: build_key(src, {"BOARD": board, "NET": "eth"}, compiler) for board in firmware_boards(src)}

    before = keys()
    assert len(set(before.values())) == 3, "one entry per board"
    assert before["mps2_an385"] == build_key(src, {"BOARD": "mps2_an385", "NET": "eth"}, compiler)
    (src / "sections.ld").write_text((src / "sections.ld").read_text() + "\n/* changed */\n")
    after_sections = keys()
    assert all(after_sections[b] != before[b] for b in before), "sections.ld is in every board's link"
    link = src / "src" / "boards" / "nrf52840dk" / "link.ld"
    link.write_text(link.read_text() + "\n/* changed */\n")
    after_link = keys()
    assert after_link["nrf52840dk"] != after_sections["nrf52840dk"]
    assert {b: after_link[b] for b in ("mps2_an385", "stm32f4_discovery")} == {
        b: after_sections[b] for b in ("mps2_an385", "stm32f4_discovery")}, "another board's files do not count"
    mk = src / "src" / "boards" / "stm32f4_discovery" / "board.mk"
    mk.write_text(mk.read_text() + "\n# changed\n")
    assert keys()["stm32f4_discovery"] != after_link["stm32f4_discovery"]


def test_each_board_gets_its_own_build(tmp_path: Path) -> None:
    said: list[str] = []
    elf = reference_firmware("slip", board="nrf52840dk", cache_dir=tmp_path, announce=said.append)
    assert said[0].startswith("embserve-hil: building the reference firmware (BOARD=nrf52840dk NET=slip)")
    header = elf.read_bytes()
    assert header[:4] == b"\x7fELF" and header[18:20] == (40).to_bytes(2, "little"), "an ARM ELF"
    manifest = json.loads((elf.parent / MANIFEST_NAME).read_text())
    assert (manifest["board"], manifest["net"]) == ("nrf52840dk", "slip")
    assert b"nrf52840dk\0" in header and b"mps2-an385\0" not in header, "built from the nRF52840's board directory"
    with pytest.raises(FirmwareError, match=r"board 'esp32': the reference firmware is built for mps2_an385, nrf52840dk,"
                                            r" stm32f4_discovery, not for it"):
        reference_firmware(board="esp32", cache_dir=tmp_path, announce=said.append)


@pytest.mark.parametrize("damage", ["truncated ELF", "no manifest", "manifest of another build"])
def test_half_written_entry_is_rebuilt_never_used(first_build: tuple[Path, list[str]], tmp_path: Path, damage: str) -> None:
    elf = copy_of(first_build[0].parent, tmp_path)
    cache = elf.parent.parent
    good = elf.read_bytes()
    if damage == "truncated ELF":
        elf.write_bytes(good[: len(good) // 2])
    elif damage == "no manifest":
        (elf.parent / MANIFEST_NAME).unlink()
    else:
        (elf.parent / MANIFEST_NAME).write_text('{"key": "0123", "sha256": "00"}')

    again, said = build(cache)
    assert again == elf
    assert said[0] == f"embserve-hil: {elf.parent} is an incomplete build; removing it"
    assert "building" in said[1]
    assert again.read_bytes() == good and entry_is_complete(elf.parent, elf.parent.name)
    assert entries(cache) == [elf.parent.name]


def test_interrupted_build_leaves_no_entry_and_is_cleaned_up(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    code = f"from hil.reference_firmware import reference_firmware; reference_firmware(cache_dir={str(cache)!r})"
    builder = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list(cache.glob(".building-*")):
            assert builder.poll() is None, f"the build ended before it could be interrupted: {builder.stderr.read()}"
            assert time.monotonic() < deadline, "no .building-* directory appeared within 60 s"
            time.sleep(0.005)
    finally:
        os.killpg(builder.pid, signal.SIGKILL)  # make and the compilers with it
        builder.wait()
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [], "an interrupted build made an entry"
    left = list(cache.glob(".building-*"))
    assert left, "the interrupted build's directory should still be there"

    busy = cache / f".building-{os.getpid()}-otherkey-0000"  # a build of a process that is alive: left alone
    busy.mkdir()
    elf, said = build(cache)
    assert "building" in said[0] and entry_is_complete(elf.parent, elf.parent.name)
    assert entries(cache) == sorted([busy.name, elf.parent.name]), "the abandoned build directory was removed"


def test_missing_toolchain_names_the_debian_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").symlink_to(shutil.which("make"))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(FirmwareError) as info:
        build(tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message
    assert "arm-none-eabi-gcc is not installed" in message
    assert "gcc-arm-none-eabi picolibc-arm-none-eabi libnewlib-arm-none-eabi" in message
    assert not (tmp_path / "cache").exists()


def test_firmware_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli_main(["firmware", "--net", "slip", "--print-path"]) == 0
    captured = capsys.readouterr()
    elf = Path(captured.out.strip())
    assert elf.is_file() and elf.is_relative_to(tmp_path / "embserve-hil" / "firmware")
    assert "building the reference firmware (BOARD=mps2_an385 NET=slip)" in captured.err

    assert cli_main(["firmware", "--net", "slip"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"embserve-hil: reusing the reference firmware (BOARD=mps2_an385 NET=slip) {elf}", str(elf)]
