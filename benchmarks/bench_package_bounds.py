"""Issue 12: how long a service install holds the simulated node's event loop.

A node (256 kB) and a gateway in this process; a loop-lag probe (a task
asking to wake every 5 ms) runs while packages are installed straight
through object 9 (create, write, install, read back, delete): the
temperature service as built, and seeded mutations of it (header sizes,
bytes, truncation, manifest fields). The probe counts the CPU time this
thread spent between two of its wake-ups, which is what the event loop was
busy with; wall-clock lateness also counts time the OS gave other processes
(both are printed). Objects that exist when the probe starts are frozen out
of garbage collection meanwhile: a full collection of a big process alone
takes 30-80 ms and is not the node's doing. Aim: no install holds the loop
for more than 50 ms.

    python -m benchmarks package_bounds
    BENCH_MUTATIONS=1000 python -m benchmarks package_bounds
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import random
import struct
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path as FsPath
from typing import AsyncIterator

from hil.device.node import Node
from hil.gateway.server import Gateway
from hil.lwm2m.model import Path, UpdateResult
from hil.resources import service_dir
from hil.sdk import build_service


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


async def main() -> None:
    mutations = int(os.environ.get("BENCH_MUTATIONS", "300"))
    with tempfile.TemporaryDirectory() as tmp:
        service_json = build_service(service_dir("temperature_sensor"), FsPath(tmp)).read_bytes()
    rng = random.Random(2012)
    installed = refused = 0
    async with node_and_gateway("bench") as (gateway, node), LoopLag().running() as lag:
        for i in range(mutations):
            state = await install_directly(gateway, "bench", service_json if i % 10 == 0 else mutate(service_json, rng))
            if int(state[9]) == UpdateResult.INSTALLED:
                installed += 1
            else:
                refused += 1
    print(f"{mutations} installs ({installed} installed, {refused} refused): event loop busy at most "
          f"{lag.worst * 1000:.1f} ms (CPU), late at most {lag.worst_wall * 1000:.1f} ms (wall)")
