"""Hostile service packages on a simulated node: bounded memory, a responsive event loop, the device's reasons.

A loop-lag probe (a task asking to wake every 5 ms) runs throughout: no
install may hold the event loop, and with it every other node in the
process, for more than 50 ms. It counts the CPU time this thread spent
between two of its wake-ups, which is what the event loop was busy with;
wall-clock lateness would also count the time the OS gave other processes on
a loaded machine (it is recorded too, for the report). The objects that exist when
the probe starts (pytest's, the test's) are frozen out of garbage
collection meanwhile: a full collection of a pytest process alone takes
30-80 ms here, and it is not the node's doing.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import random
import struct
import time
from contextlib import asynccontextmanager
from pathlib import Path as FsPath
from typing import AsyncIterator

import pytest
from conftest import REPO

from hil.device.node import Node
from hil.faredge.deployer import DeployError, Deployer
from hil.gateway.server import Gateway
from hil.lwm2m.model import Path, UpdateResult
from hil.sdk import build_service

pytestmark = [pytest.mark.sim]

LAG_LIMIT = 0.050  # s
MUTATIONS = 300  # bounded fuzz: seconds, not minutes


class LoopLag:
    """The longest the event loop kept a task waiting that asked to wake every ``period`` seconds.

    ``worst``: CPU time of this thread between two wake-ups (the loop's own work);
    ``worst_wall``: wall-clock lateness, which includes time the OS gave other processes.
    """

    def __init__(self, period: float = 0.005):
        self.period = period
        self.worst = 0.0
        self.worst_wall = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            asked, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(self.period)
            self.worst_wall = max(self.worst_wall, time.perf_counter() - asked - self.period)
            self.worst = max(self.worst, time.thread_time() - cpu)

    @asynccontextmanager
    async def running(self) -> AsyncIterator["LoopLag"]:
        gc.freeze()
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            gc.unfreeze()


@pytest.fixture(scope="module")
def service_json(temperature_service_json: FsPath) -> bytes:
    return temperature_service_json.read_bytes()


def with_module_header(service_json: bytes, **fields: int) -> bytes:
    """service.json whose module header says other sizes (``bss_size=...``)."""
    doc = json.loads(service_json)
    module = bytearray(base64.b64decode(doc["service"]))
    names = ("num_lot", "num_rels", "symt_size", "code_size", "data_size", "bss_size")
    values = dict(zip(names, struct.unpack_from("<HHIIII", module, 4)))
    values.update(fields)
    struct.pack_into("<HHIIII", module, 4, *(values[n] for n in names))
    doc["service"] = base64.b64encode(bytes(module)).decode()
    return json.dumps(doc).encode()


@asynccontextmanager
async def node_and_gateway(name: str) -> AsyncIterator[tuple[Gateway, Node]]:
    async with Gateway() as gateway, Node(name, memory_kb=256) as node:
        await node.connect(gateway.uri)
        await gateway.wait_for_registration(name)
        yield gateway, node


async def install_directly(gateway: Gateway, endpoint: str, package: bytes, inst: int = 1000) -> dict[int, object]:
    """create, write, install without the deployer's checks; returns /9/{inst} and removes it again."""
    await gateway.create(endpoint, "/9", instance_id=inst)
    try:
        await gateway.write(endpoint, f"/9/{inst}/2", package)
        await gateway.execute(endpoint, f"/9/{inst}/4")
        content = await gateway.read(endpoint, f"/9/{inst}")
        result = {p.res: v for p, v in content.items() if p.res is not None}
        monitor = await gateway.read(endpoint, "/35003")
        result["error"] = next((monitor.get(Path(35003, p.inst, 27404)) for p, v in monitor.items()
                                if p.res == 27400 and tuple(v) == (9, inst)), None)
        return result
    finally:
        await gateway.delete(endpoint, f"/9/{inst}")


async def test_a_module_larger_than_the_node_is_refused_before_anything_is_sent(service_json: bytes) -> None:
    huge = with_module_header(service_json, bss_size=1 << 30)
    async with node_and_gateway("small") as (gateway, node), Deployer(gateway) as deployer, LoopLag().running() as lag:
        with pytest.raises(DeployError) as refused:
            await deployer.deploy(huge, "small")
        assert await deployer.channel.instances("small") == []  # nothing was created
        message = str(refused.value)
        assert "bss 1073741824" in message and "262144 bytes" in message and "small" in message, message

        # Sent anyway, around the deployer: the node itself refuses before allocating anything.
        for bss in (1 << 30, 0xFFFFFFFF, 300 * 1024):
            state = await install_directly(gateway, "small", with_module_header(service_json, bss_size=bss))
            assert state[9] == UpdateResult.NOT_ENOUGH_STORAGE, state
            assert f"bss {bss}" in str(state["error"]) and "of 262144" in str(state["error"]), state
    assert lag.worst <= LAG_LIMIT, f"the event loop was busy for {lag.worst * 1000:.1f} ms (wall: {lag.worst_wall * 1000:.1f} ms)"


async def test_the_devices_reason_reaches_the_deployers_exception(tmp_path: FsPath) -> None:
    package = build_service(REPO / "tests" / "data" / "services" / "unknown_import", tmp_path).read_bytes()
    async with node_and_gateway("picky") as (gateway, node), Deployer(gateway) as deployer:
        with pytest.raises(DeployError) as refused:
            await deployer.deploy(package, "picky")
        message = str(refused.value)
        assert "install /9/1000/4" in message and "Update Result 54 (unsupported package)" in message, message
        assert "unknown import" in message, message  # the node's own words, from 35003 Error
        assert message.endswith("the instance was removed"), message
        assert await deployer.channel.instances("picky") == []


def mutate(service_json: bytes, rng: random.Random) -> bytes:
    doc = json.loads(service_json)
    module = bytearray(base64.b64decode(doc["service"]))
    kind = rng.randrange(4)
    if kind == 0:  # a header size field: tiny, huge or random
        at = rng.choice((4, 6, 8, 12, 16, 20, 24 - 4))
        width = 2 if at < 8 else 4
        value = rng.choice((0, 1, 0xFFFF if width == 2 else 0xFFFFFFFF, rng.getrandbits(8 * width)))
        module[at:at + width] = value.to_bytes(width, "little")
    elif kind == 1:  # bytes anywhere in the module
        for _ in range(rng.randint(1, 8)):
            module[rng.randrange(len(module))] = rng.getrandbits(8)
    elif kind == 2:  # truncated or padded
        module = module[: rng.randrange(len(module))] if rng.random() < 0.5 else module + bytes(rng.randint(1, 64))
    else:  # a manifest field
        key = rng.choice(("name", "version", "inputs", "outputs", "dependencies", "data_model"))
        doc[key] = rng.choice((None, 0, -1, "", "x" * 300, [], {}, [{"key": "k", "type": 9}], 2**40))
    doc["service"] = base64.b64encode(bytes(module)).decode()
    return json.dumps(doc).encode()


async def test_mutated_packages_are_refused_precisely_without_stalling_the_node(service_json: bytes) -> None:
    rng = random.Random(2012)
    outcomes: dict[int, int] = {}
    async with node_and_gateway("fuzzed") as (gateway, node), LoopLag().running() as lag:
        for _ in range(MUTATIONS):
            state = await install_directly(gateway, "fuzzed", mutate(service_json, rng))
            result = int(state[9])
            outcomes[result] = outcomes.get(result, 0) + 1
            if result != UpdateResult.INSTALLED:
                assert result in (50, 54, 58) and state["error"], state  # a precise refusal, with the node's reason
        assert await gateway.read("fuzzed", "/3/0/17")  # still serving
        assert node.services is not None and node.services.packages == {}
    assert lag.worst <= LAG_LIMIT, f"the event loop was busy for {lag.worst * 1000:.1f} ms (wall: {lag.worst_wall * 1000:.1f} ms)"
    assert outcomes.get(54, 0) > MUTATIONS // 4, outcomes  # most mutations are caught as bad packages
