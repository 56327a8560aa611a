"""Faults between the gateway and its devices: loss, outages, dead and silent devices, garbage on the wire.

The gateway and simulated nodes run in this process; between them, where a
test needs it, the project's seeded :class:`hil.net.LossyLink`. CoAP timers
are short (ACK_TIMEOUT 20-50 ms: loopback answers within a millisecond), so a
full retransmission series costs about a second instead of 93 s.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from contextlib import AsyncExitStack

import pytest
from conftest import wait_until

from benchmarks.bench_independence import independence_run
from benchmarks.bench_loss import deploy_rounds, instances, sim_stack
from hil.device.node import Node
from hil.faredge.deployer import Deployer
from hil.gateway.errors import GatewayTimeout, GatewayTransportError
from hil.gateway.server import Gateway
from hil.lwm2m.transmission import TransmissionParameters
from hil.net.lossy import LossyLink

pytestmark = [pytest.mark.sim]

FAST = TransmissionParameters(ack_timeout=0.02)


@pytest.fixture(scope="module")
def service_json(temperature_service_json) -> bytes:
    return temperature_service_json.read_bytes()


async def test_deploys_survive_10_and_30_percent_loss_each_way(service_json: bytes) -> None:
    async with AsyncExitStack() as stack:
        gateway, link = await sim_stack(stack, loss_seed=12, params=FAST)
        baseline = await instances(gateway, "lossy")
        runs = [await deploy_rounds(gateway, link, "lossy", service_json, loss=loss, rounds=20, baseline=baseline)
                for loss in (0.1, 0.3)]
    ten, thirty = runs
    assert ten.completed == 20, f"{ten.summary()}\n{ten.failures}"
    assert thirty.completed >= 18, f"{thirty.summary()}\n{thirty.failures}"
    assert max(ten.times + thirty.times) <= 60.0, [r.summary() for r in runs]
    for run in runs:
        assert not any(run.orphans.values()), run.summary()
        for failure in run.failures:  # one clear error: the step, the device and the cause
            assert "lossy: " in failure and " failed: " in failure, failure
    assert link.stats.downlink.dropped > 0  # the 30 % run really lost datagrams


async def test_a_create_whose_answer_is_lost_is_found_and_used(service_json: bytes) -> None:
    lost: list[bytes] = []

    def lose_created(direction: str, datagram: bytes) -> bool:
        # every copy of the first 2.01 Created going back to the gateway: the whole exchange fails
        if direction == "downlink" and len(datagram) > 1 and datagram[1] == 0x41 and len(lost) < FAST.transmissions:
            lost.append(datagram)
            return True
        return False

    async with Gateway(transmission=FAST) as gateway, LossyLink(("127.0.0.1", gateway.port), rule=lose_created) as link, \
            Node("creator", transmission=FAST) as node:
        await node.connect(link.uri)
        await gateway.wait_for_registration("creator")
        async with Deployer(gateway) as deployer:
            deployment = await deployer.deploy(service_json, "creator")
            assert lost, "the rule never dropped a 2.01"
            assert (deployment.instance, await deployer.channel.instances("creator")) == (1000, [1000])
            await deployer.remove("creator", deployment)
            assert await deployer.channel.instances("creator") == []


async def test_an_abandoned_request_is_not_sent_again_and_the_device_is_back_at_once() -> None:
    async with Gateway(transmission=TransmissionParameters(ack_timeout=0.2)) as gateway, \
            LossyLink(("127.0.0.1", gateway.port)) as link, Node("flaky") as node:
        await node.connect(link.uri)
        await gateway.wait_for_registration("flaky")
        link.cut()
        with pytest.raises(GatewayTimeout, match="flaky: read /3/0/0 got no answer within 0.5 s"):
            await gateway.read("flaky", "/3/0/0", timeout=0.5)
        queued = asyncio.ensure_future(gateway.read("flaky", "/3/0/1", timeout=0.5))  # would queue behind it
        with pytest.raises(GatewayTimeout):
            await queued
        await asyncio.sleep(1.0)  # aiocoap would still retransmit both for seconds
        sent_while_cut = link.stats.downlink.dropped
        await asyncio.sleep(1.0)
        assert link.stats.downlink.dropped == sent_while_cut, "an abandoned request was retransmitted"
        link.restore()
        started = time.monotonic()
        assert await gateway.read("flaky", "/3/0/17")
        assert time.monotonic() - started < 2.0
        assert link.stats.downlink.passed == 2  # the answer to the Register, and the new read: nothing abandoned
        assert gateway.exchanges is not None and gateway.exchanges.abandoned >= 2


async def test_dead_silent_and_flooding_devices_do_not_touch_a_live_one() -> None:
    # How long the live reads take is a benchmark figure (python -m benchmarks independence);
    # here, what shows they never wait for the others: every live read succeeds, and each
    # finishes while the silent node's read started just before it is still waiting out its
    # retransmissions (about a second), so it was not queued behind it.
    run = await independence_run(rounds=60)
    assert run.overtook == len(run.dead), run.summary()
    assert all(isinstance(e, GatewayTransportError) and "ICMP port unreachable" in str(e) for e in run.dead), run.dead[:3]
    assert all(isinstance(e, GatewayTimeout) for e in run.silent), run.silent[:3]
    assert ("unreachable", "dead") in run.events and ("unreachable", "live") not in run.events, run.events


async def test_silent_device_is_marked_unreachable_long_before_its_lifetime_ends() -> None:
    async with Gateway(transmission=FAST) as gateway, LossyLink(("127.0.0.1", gateway.port)) as link, \
            Node("quiet", transmission=FAST, lifetime=300) as node:
        await node.connect(link.uri)
        await gateway.wait_for_registration("quiet")
        link.cut()
        with pytest.raises(GatewayTimeout, match=r"no acknowledgement after 5 transmissions"):
            await gateway.read("quiet", "/3/0/0")
        reg = gateway.registration("quiet")
        assert not reg.reachable and "no answer" in reg.unreachable_reason
        link.restore()
        await gateway.read("quiet", "/3/0/0")
        await wait_until(lambda: gateway.registration("quiet").reachable, "the node to count as reachable again")


def _con_request(mid: int, token: bytes, options: bytes) -> bytes:
    return bytes([0x40 | len(token), 0x01, mid >> 8, mid & 0xFF]) + token + options


async def test_garbage_datagrams_are_answered_or_dropped_and_the_gateway_goes_on() -> None:
    loop = asyncio.get_running_loop()
    escaped: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))
    try:
        async with Gateway(transmission=FAST) as gateway:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                # a confirmable GET whose Uri-Path is not UTF-8: 4.02 Bad Option naming it (RFC 7252 5.4.1)
                sock.sendto(_con_request(0x1234, b"\x0a\x0b", bytes([0xB2, 0xFF, 0xFE])), ("127.0.0.1", gateway.port))
                answer = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
                assert answer[:6] == bytes([0x62, 0x82, 0x12, 0x34, 0x0A, 0x0B]), answer  # ACK, 4.02, same MID and token
                assert b"Uri-Path" in answer
                rng = random.Random(12)
                # valid requests to mutate: GET /rd?ep=x, and one to a device path with Accept
                seeds = [_con_request(7, b"\x01", b"\xb2rd\x44ep=x"), _con_request(8, b"\x01\x02", b"\xb13\x010\x61\x28")]
                for i in range(10_000):
                    if i % 2:
                        datagram = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
                    else:
                        base = bytearray(rng.choice(seeds))
                        for _ in range(rng.randint(1, 4)):
                            base[rng.randrange(len(base))] = rng.getrandbits(8)
                        datagram = bytes(base)
                    sock.sendto(datagram, ("127.0.0.1", gateway.port))
                    if i % 200 == 0:
                        await asyncio.sleep(0.01)  # let the gateway keep up: the receive buffer is finite
            finally:
                sock.close()
            await asyncio.sleep(0.2)
            async with Node("after", transmission=FAST) as node:  # it still serves
                await node.connect(gateway.uri)
                await gateway.wait_for_registration("after")
                assert await gateway.read("after", "/3/0/17")
            assert gateway.datagrams is not None and gateway.datagrams.refused > 0
    finally:
        loop.set_exception_handler(previous)
    assert escaped == [], escaped[:3]
