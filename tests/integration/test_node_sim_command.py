"""``embserve-hil sim`` as a user runs it: a separate process against the gateway."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from hil.gateway import Gateway

WAIT = 20.0


async def read_line(stream: asyncio.StreamReader, seen: list[str]) -> str:
    try:
        async with asyncio.timeout(WAIT):
            line = (await stream.readline()).decode()
    except TimeoutError:
        raise AssertionError(f"embserve-hil sim printed nothing more within {WAIT} s; so far: {seen}") from None
    if not line:
        raise AssertionError(f"embserve-hil sim closed its output; so far: {seen}")
    seen.append(line.rstrip("\n"))
    return line


async def test_sim_registers_nodes_and_deregisters_them_on_ctrl_c():
    async with Gateway() as gw:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hil.cli",
            "sim",
            "--server",
            gw.uri,
            "--nodes",
            "3",
            "--prefix",
            "dev",
            "--sensor",
            "temperature=wave:base=20,amplitude=2,period=30",
            "--lifetime",
            "60",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        seen: list[str] = []
        try:
            registered = set()
            while len(registered) < 3:
                line = await read_line(proc.stdout, seen)
                if " registered to " in line:
                    registered.add(line.split()[0])
            assert registered == {"dev1", "dev2", "dev3"}
            assert sorted(gw.registrations) == ["dev1", "dev2", "dev3"]
            assert gw.registration("dev2").lifetime == 60
            temperature = await gw.read("dev1", "/3303/0/5700")
            assert 18.0 <= next(iter(temperature.values())) <= 22.0
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(WAIT):
                out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert "stopped: 3 of 3 node(s) were registered and de-registered" in out.decode()
            assert gw.registrations == {}
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--server", "http://127.0.0.1:5683"], "scheme must be coap://"),
        (
            ["--server", "coap://127.0.0.1:5683", "--sensor", "temperature=hot"],
            "'hot' is not a number",
        ),
        (
            ["--server", "coap://127.0.0.1:5683", "--nodes", "0"],
            "--nodes must be at least 1",
        ),
    ],
)
async def test_sim_rejects_bad_arguments(args, words):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hil.cli",
        "sim",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT):
        _, err = await proc.communicate()
    assert proc.returncode == 2 and words in err.decode()
