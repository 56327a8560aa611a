"""The board catalog: shipped boards, the search path, and board files with bad fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil.boards import BoardError, catalog, get_board, load_board_file, search_path
from hil.resources import boards_dir
from hil.cli import main as cli_main

SHIPPED = ("sim", "mps2_an385", "stm32f4_discovery", "nrf52840dk", "frdm_k64f")

GOOD = """\
name = "{name}"
arch = "armv7e-m"
backends = ["serial"]
"""


@pytest.fixture(autouse=True)
def isolated_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ./boards of the current directory is on the path: run from an empty one.
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("EMBSERVE_HIL_BOARDS", raising=False)


def write_board(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


def test_shipped_catalog_has_the_reference_boards() -> None:
    boards = catalog()
    assert set(SHIPPED) <= set(boards)
    assert boards["stm32f4_discovery"].backends == ("renode",)
    assert boards["stm32f4_discovery"].renode_console == "sysbus.usart2"
    assert boards["stm32f4_discovery"].renode_ethernet == "sysbus.ethernet"
    assert set(boards["nrf52840dk"].backends) == {"renode", "serial"}
    assert boards["nrf52840dk"].renode_console == "sysbus.uart0"
    assert boards["frdm_k64f"].backends == ("serial",)
    assert "{firmware}" in (boards["frdm_k64f"].flash or "")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_board_says_how_to_reach_its_shell(name: str) -> None:
    board = get_board(name)
    assert board.arch.startswith("armv7")
    assert board.prompt.strip() and board.baudrate > 0 and board.sensors
    if board.supports("serial") and name != "mps2_an385":
        assert board.reset == "command" and board.reset_command, "a real board needs a way to be reset"


def test_renode_boards_name_platform_files_that_exist() -> None:
    for board in catalog().values():
        if not board.supports("renode"):
            continue
        assert board.renode_platform, board.name
        if not board.renode_platform.startswith("@"):
            assert board.resolve_path(board.renode_platform).is_file(), board.name
        assert board.renode_script and board.resolve_path(board.renode_script).is_file(), board.name


def test_mps2_renode_platform_matches_qemu_layout() -> None:
    repl = get_board("mps2_an385").resolve_path("renode/mps2_an385.repl").read_text()
    assert "UART.CMSDK_APB_UART @ sysbus 0x40004000" in repl
    assert "UART.CMSDK_APB_UART @ sysbus 0x40005000" in repl
    assert 'cpuType: "cortex-m3"' in repl and "IRQControllers.NVIC @ sysbus 0xE000E000" in repl
    # UART n: RX on IRQ 2n, TX on 2n+1, as QEMU wires it
    assert "RxInterrupt -> nvic@2" in repl and "TxInterrupt -> nvic@3" in repl
    assert repl.count("frequency: 25000000") == 2


def test_user_directory_comes_first_and_adds_boards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "lab-boards"
    write_board(mine, "bench_k64f", GOOD.format(name="bench_k64f"))
    write_board(mine, "frdm_k64f", GOOD.format(name="frdm_k64f") + 'description = "our patched one"\n')
    monkeypatch.setenv("EMBSERVE_HIL_BOARDS", f"{mine}:{tmp_path / 'missing'}")
    assert search_path()[0] == mine and search_path()[-1] == boards_dir()
    assert get_board("bench_k64f").source == mine / "bench_k64f.toml"
    assert get_board("frdm_k64f").description == "our patched one"


def test_project_boards_directory_is_searched(tmp_path: Path) -> None:
    write_board(Path.cwd() / "boards", "project_board", GOOD.format(name="project_board"))
    assert get_board("project_board").backends == ("serial",)


def test_unknown_board_lists_the_known_ones() -> None:
    with pytest.raises(BoardError) as info:
        get_board("stm32f9_nonexistent")
    message = str(info.value)
    assert "unknown board 'stm32f9_nonexistent'" in message
    for name in SHIPPED:
        assert name in message
    assert str(boards_dir()) in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('arch = "armv7-m"\nbackends = ["serial"]\n', "missing field 'name'"),
        ('name = "b"\nbackends = ["serial"]\n', "missing field 'arch'"),
        ('name = "b"\narch = "armv7-m"\n', "missing field 'backends'"),
        (GOOD.format(name="b") + "baudrate = \"115200\"\n", "field 'baudrate' must be int, got str '115200'"),
        (GOOD.format(name="b") + "baudrate = 0\n", "field 'baudrate' must be positive"),
        (GOOD.format(name="b") + "baud = 115200\n", "unknown field 'baud'"),
        (GOOD.format(name="b") + "boot_timeout = true\n", "field 'boot_timeout' must be number, got bool"),
        (GOOD.format(name="b") + "boot_timeout = -1\n", "field 'boot_timeout' must be positive"),
        (GOOD.format(name="b") + 'sensors = "temperature"\n', "field 'sensors' must be list"),
        (GOOD.format(name="b") + "sensors = [1]\n", "field 'sensors' must list strings"),
        ('name = "b"\narch = "armv7-m"\nbackends = ["jtag"]\n', "field 'backends' has ['jtag']"),
        ('name = "b"\narch = "armv7-m"\nbackends = []\n', "field 'backends' has nothing"),
        (GOOD.format(name="other"), "field 'name' is 'other' but the file is named 'b'"),
        (GOOD.format(name="b") + 'reset = "nrfjprog --reset"\n', "field 'reset' is 'nrfjprog --reset'"),
        (GOOD.format(name="b") + 'reset = "command"\n', "field 'reset_command' is missing"),
        (GOOD.format(name="b") + 'flash = "pyocd flash {elf}"\n', "field 'flash' uses unknown placeholder {elf}"),
        (GOOD.format(name="b") + 'reset_command = "reset {firmware}"\n', "field 'reset_command' uses unknown placeholder {firmware}"),
        (GOOD.format(name="b") + 'flash = "pyocd flash {firmware"\n', "field 'flash' is not a valid command template"),
        (GOOD.format(name="b") + 'prompt = "  "\n', "field 'prompt' is empty"),
        ("name = ", "not valid TOML"),
    ],
)
def test_bad_board_file_names_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write_board(tmp_path, "b", text)
    with pytest.raises(BoardError) as info:
        load_board_file(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_board_table_form_and_defaults(tmp_path: Path) -> None:
    path = write_board(tmp_path, "t", '[board]\nname = "t"\narch = "armv7-m"\nbackends = ["serial", "renode"]\n'
                       'reset_command = "reset-it {port}"\nboot_timeout = 3\nconsole = "usart1"\n')
    board = load_board_file(path)
    assert board.reset == "command"  # implied by reset_command
    assert board.boot_timeout == 3.0 and isinstance(board.boot_timeout, float)
    assert board.baudrate == 115200 and board.prompt == "uart:~$ "
    assert board.renode_console == "sysbus.usart1"


def test_relative_paths_resolve_next_to_the_board_file_or_one_up(tmp_path: Path) -> None:
    path = write_board(tmp_path / "proj" / "boards", "r", GOOD.format(name="r"))
    (tmp_path / "proj" / "renode").mkdir()
    (tmp_path / "proj" / "renode" / "r.repl").write_text("")
    (tmp_path / "proj" / "boards" / "local.repl").write_text("")
    board = load_board_file(path)
    assert board.resolve_path("renode/r.repl") == tmp_path / "proj" / "renode" / "r.repl"
    assert board.resolve_path("local.repl") == tmp_path / "proj" / "boards" / "local.repl"
    assert board.resolve_path("/abs/x.elf") == Path("/abs/x.elf")


def test_shipped_boards_paths_resolve_inside_the_package() -> None:
    board = get_board("mps2_an385")
    assert board.uses_reference_firmware
    assert board.existing_file("renode_platform") == boards_dir().parent / "renode" / "mps2_an385.repl"


def test_reference_firmware_names_the_boards_own_build_or_another_boards(tmp_path: Path) -> None:
    assert {name: get_board(name).reference_firmware_board for name in ("mps2_an385", "nrf52840dk", "stm32f4_discovery")} == {
        "mps2_an385": "mps2_an385", "nrf52840dk": "nrf52840dk", "stm32f4_discovery": "stm32f4_discovery"}
    assert get_board("frdm_k64f").reference_firmware_board is None and not get_board("frdm_k64f").uses_reference_firmware
    mine = load_board_file(write_board(tmp_path, "bench_nrf", GOOD.format(name="bench_nrf") + 'firmware = "reference:nrf52840dk"\n'))
    assert mine.reference_firmware_board == "nrf52840dk" and mine.uses_reference_firmware
    path = write_board(tmp_path, "half", GOOD.format(name="half") + 'firmware = "reference:"\n')
    with pytest.raises(BoardError, match=r"field 'firmware' is 'reference:': name the board after 'reference:'"):
        load_board_file(path)


@pytest.mark.parametrize(("field", "value"), [("renode_platform", "renode/lab.repl"), ("firmware", "build/lab.elf")])
def test_user_board_naming_a_missing_file_names_the_board_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    mine = tmp_path / "lab"
    path = write_board(mine, "lab", 'name = "lab"\narch = "armv7-m"\nbackends = ["renode"]\n' f'{field} = "{value}"\n')
    monkeypatch.setenv("EMBSERVE_HIL_BOARDS", str(mine))
    with pytest.raises(BoardError) as info:
        get_board("lab").existing_file(field)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"board file {path}: field '{field}' names '{value}', which does not exist")
    assert str(mine / value) in message and str(tmp_path / value) in message


def test_broken_file_elsewhere_does_not_hide_a_good_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "lab"
    write_board(mine, "broken", GOOD.format(name="broken") + "colour = 1\n")
    write_board(mine, "fine", GOOD.format(name="fine"))
    monkeypatch.setenv("EMBSERVE_HIL_BOARDS", str(mine))
    assert get_board("fine").name == "fine"
    with pytest.raises(BoardError, match="unknown field 'colour'"):
        get_board("broken")
    with pytest.raises(BoardError, match="broken.toml"):
        catalog()


def test_cli_lists_boards_and_shows_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["boards"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert cli_main(["boards", "nrf52840dk"]) == 0
    out = capsys.readouterr().out
    assert "reset_command" in out and "nrfjprog" in out
    assert cli_main(["boards", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {b["name"] for b in data} >= set(SHIPPED)


def test_cli_unknown_board_exits_2_listing_known(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["boards", "nope"]) == 2
    out = capsys.readouterr().out
    assert "unknown board 'nope'" in out and "frdm_k64f" in out


def test_cli_lists_good_boards_and_reports_broken_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "lab"
    write_board(mine, "broken", 'name = "broken"\narch = "armv7-m"\n')
    monkeypatch.setenv("EMBSERVE_HIL_BOARDS", str(mine))
    assert cli_main(["boards"]) == 1
    captured = capsys.readouterr()
    assert "frdm_k64f" in captured.out
    assert "missing field 'backends'" in captured.err
