"""The node's Zephyr-style shell and console: parsing, messages, every node command."""

from __future__ import annotations

import asyncio

import pytest

from hil.device.clock import VirtualClock
from hil.device.console import Console, ConsoleTimeout
from hil.device.node import Node
from hil.device.shell import PROMPT, Command, Shell, ShellError
from hil.lwm2m.model import Path

# ---------------------------------------------------------------------- console


def test_console_splits_lines_and_keeps_the_pending_prompt():
    console = Console("n1")
    raw: list[str] = []
    lines: list[str] = []
    console.add_listener(raw.append)
    console.add_line_listener(lines.append)
    console.write("*** Booting ***\r\nembServe 1\r\n" + PROMPT)
    assert lines == ["*** Booting ***", "embServe 1"] and console.pending == PROMPT
    console.write("\r[00:00:01.000,000] <inf> x: redrawn\r\n")
    assert lines[-1] == "[00:00:01.000,000] <inf> x: redrawn"  # the carriage return replaced the prompt
    assert "".join(raw).startswith("*** Booting")


async def test_console_wait_for_sees_history_and_new_lines_and_times_out_with_the_tail():
    console = Console("n1")
    console.print("old line")
    mark = console.mark()
    assert (await console.wait_for("old", 0.1)).group(0) == "old"
    asyncio.get_running_loop().call_soon(console.print, "Registration Done (EP='n1')")
    match = await console.wait_for(r"EP='(\w+)'", 1.0, since=mark)
    assert match.group(1) == "n1"
    with pytest.raises(
        ConsoleTimeout,
        match=r"no line matching 'nothing' within 0.05 s; last lines:\n.*old line",
    ):
        await console.wait_for("nothing", 0.05)


def test_console_input_is_handed_over_by_line():
    console = Console()
    got: list[str] = []
    console.attach_input(got.append)
    console.write_input("hel")
    console.write_input("p\r\nsensor get temperature\n\n")
    assert got == ["help", "sensor get temperature", ""]


# ---------------------------------------------------------------------- shell mechanics (own command tree)


def make_shell() -> tuple[Shell, list[list[str]]]:
    calls: list[list[str]] = []

    def record(shell: Shell, args: list[str]) -> int:
        calls.append(args)
        shell.print(f"ran {' '.join(args)}")
        return 0

    def refuse(shell: Shell, args: list[str]) -> int:
        raise ShellError(f"{args[0]}: value {args[1]!r} is not a number")

    group = Command("demo", "Demo commands").add(
        Command("one", "Takes one argument", record, 2),
        Command("opt", "Takes one or two", record, 2, 1),
        Command("bad", "Always refuses", refuse, 2),
    )
    shell = Shell(Console("t"), [group])
    return shell, calls


async def test_echo_output_and_prompt_like_a_uart():
    shell, calls = make_shell()
    out = await shell.run_line("demo one x")
    assert out == "ran one x" and calls == [["one", "x"]]
    assert list(shell.console.lines)[-2:] == [PROMPT + "demo one x", "ran one x"]
    assert shell.console.pending == PROMPT and shell.last_status == 0


async def test_unknown_command_is_not_found():
    shell, _ = make_shell()
    assert await shell.run_line("frobnicate now") == "frobnicate: command not found"
    assert shell.last_status < 0


async def test_wrong_parameter_count_prints_the_message_and_the_help():
    shell, calls = make_shell()
    out = await shell.run_line("demo one")
    assert out.splitlines() == [
        "one: wrong parameter count",
        "one - Takes one argument",
    ]
    assert await shell.run_line("demo opt a b") == "ran opt a b"
    assert (await shell.run_line("demo opt a b c")).startswith("opt: wrong parameter count")
    assert calls == [["opt", "a", "b"]] and shell.last_status == -22


async def test_groups_print_help_and_reject_unknown_subcommands():
    shell, _ = make_shell()
    out = await shell.run_line("demo")
    assert out.splitlines()[:2] == ["demo - Demo commands", "Subcommands:"]
    assert "  one  :Takes one argument" in out.splitlines()
    assert await shell.run_line("demo zap") == "demo: unknown parameter: zap"
    assert (await shell.run_line("demo one --help")).startswith("one - Takes one argument")


async def test_handler_errors_print_errno_name_and_status():
    shell, _ = make_shell()
    assert await shell.run_line("demo bad x") == "bad: value 'x' is not a number (-EINVAL)"
    assert shell.last_status == -22


async def test_empty_lines_and_unbalanced_quotes():
    shell, _ = make_shell()
    assert await shell.run_line("") == ""
    assert "No closing quotation" in await shell.run_line('demo one "x')


async def test_help_lists_commands():
    shell, _ = make_shell()
    out = await shell.run_line("help")
    assert "Available commands:" in out and "  demo  :Demo commands" in out.splitlines()
    assert (await shell.run_line("help me")).startswith("help: wrong parameter count")


async def test_lines_fed_from_the_console_run_in_order():
    shell, calls = make_shell()
    shell.console.write_input("demo one a\ndemo one b\n")
    await asyncio.wait_for(shell.console.wait_for("ran one b"), 2)
    assert calls == [["one", "a"], ["one", "b"]]
    await shell.close()


# ---------------------------------------------------------------------- the node's commands (a real node, no server)


@pytest.fixture
async def node():
    async with Node(
        "shell1",
        clock=VirtualClock(realtime=False),
        sensors={"temperature": 21.5, "humidity": 40},
        seed=5,
    ) as n:
        yield n


async def test_boot_banner_and_prompt(node):
    lines = list(node.console.lines)
    assert lines[0] == "*** Booting Zephyr OS build v3.5.0 ***"
    assert lines[1] == f"embServe {node.firmware_version}" and node.console.pending == PROMPT


async def test_embserve_and_kernel_version_and_uptime(node):
    assert await node.shell.run_line("embserve version") == f"embServe {node.firmware_version}"
    assert await node.shell.run_line("kernel version") == "Zephyr version 3.5.0"
    await node.clock.advance(2.5)
    assert await node.shell.run_line("kernel uptime") == "Uptime: 2500 ms"


async def test_sensor_set_get_list_source(node):
    assert await node.shell.run_line("sensor set temperature 25.5") == "temperature = 25.5 Cel"
    assert node.objects.get(Path(3303, 0, 5700)) == 25.5  # published at once
    assert await node.shell.run_line("sensor get temperature") == "temperature = 25.5 Cel"
    assert await node.shell.run_line("sensor get humidity") == "humidity = 40 %RH"
    out = await node.shell.run_line("sensor list")
    assert out.splitlines() == [
        "temperature (id 2): fixed 25.5",
        "humidity (id 136): fixed 40",
    ]
    assert await node.shell.run_line("sensor source temperature wave:base=20,amplitude=1,period=4") == (
        "temperature: wave base=20 amplitude=1 period=4 noise=0 seed=5"
    )
    await node.clock.advance(1.0)  # sampled once per second on the virtual clock
    assert node.objects.get(Path(3303, 0, 5700)) == pytest.approx(21.0)


async def test_sensor_bad_arguments(node):
    assert await node.shell.run_line("sensor set temperature hot") == (
        "sensor set: value 'hot' for temperature is not a number (-EINVAL)"
    )
    assert node.shell.last_status == -22
    out = await node.shell.run_line("sensor get sonar")
    assert out == "sensor: no sensor named 'sonar' on this node (sensors: temperature, humidity) (-ENODEV)"
    assert (await node.shell.run_line("sensor set temperature")).startswith("set: wrong parameter count")
    assert "is not a number, 'wave:" in await node.shell.run_line("sensor source temperature hot")
    assert node.objects.get(Path(3303, 0, 5700)) == 21.5


async def test_server_add_bad_arguments_do_not_connect(node):
    cases = {
        "embserve connector lwm2m server_add http://127.0.0.1:5683 n1": "scheme must be coap://",
        "embserve connector lwm2m server_add coap://127.0.0.1:99999 n1": "port is not a number",
        "embserve connector lwm2m server_add coap://127.0.0.1:5683/rd n1": "without path or query",
        "embserve connector lwm2m server_add coap://127.0.0.1:5683 a&b": "bad endpoint name 'a&b'",
    }
    for line, words in cases.items():
        out = await node.shell.run_line(line)
        assert words in out and out.endswith("(-EINVAL)"), out
    assert (await node.shell.run_line("embserve connector lwm2m server_add coap://h:1")).startswith(
        "server_add: wrong parameter count"
    )
    assert (
        node.server is None
        and await node.shell.run_line("embserve connector lwm2m status") == "no LwM2M server configured"
    )


async def test_unknown_and_group_commands(node):
    assert await node.shell.run_line("reboot") == "reboot: command not found"
    assert (await node.shell.run_line("embserve")).splitlines()[0] == "embserve - embServe commands"
    assert await node.shell.run_line("embserve connector mqtt") == "embserve connector: unknown parameter: mqtt"
    assert (await node.shell.run_line("kernel reboot now")).startswith("reboot: wrong parameter count")


async def test_kernel_reboot_without_server_boots_again(node):
    node.objects.set(Path(3303, 0, 5700), 30.0)
    mark = node.console.mark()
    await node.shell.run_line("kernel reboot cold")
    await node.console.wait_for(r"^\*\*\* Booting Zephyr OS", 1, since=mark)
    assert node.boots == 2 and node.console.pending == PROMPT
    assert node.objects.get(Path(3303, 0, 5700)) == 21.5  # RAM state gone, the sensor is read afresh
