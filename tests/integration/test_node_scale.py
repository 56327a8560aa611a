"""Many simulated nodes in one process, registering to one gateway."""

from __future__ import annotations

import asyncio

from hil.device.clock import VirtualClock
from hil.device.node import Node
from hil.gateway import Gateway

NODES = 100
WAIT = 30.0


async def test_hundred_nodes_register_are_listed_and_deregister():
    async with Gateway() as gw:
        clock = VirtualClock()  # one clock for all: timers, not tasks, per node
        nodes = [Node(f"node{i}", clock=clock) for i in range(1, NODES + 1)]
        started: list[Node] = []
        try:
            for node in nodes:
                await node.start()
                started.append(node)
                node.console.write_input(f"embserve connector lwm2m server_add {gw.uri} {node.endpoint}\n")
            async with asyncio.timeout(WAIT):
                await asyncio.gather(*(node.wait_registered(WAIT) for node in nodes))
            assert sorted(gw.registrations) == sorted(node.endpoint for node in nodes)
            addresses = {gw.registration(node.endpoint).address for node in nodes}
            assert addresses == {node.address for node in nodes} and len(addresses) == NODES  # a port each
            assert all(node.client.registrations == 1 for node in nodes)  # no retries were needed
        finally:
            await asyncio.gather(*(node.aclose() for node in started))
        assert gw.registrations == {}
