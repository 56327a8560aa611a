"""The time-skipping rule (hil.targets.virtual_time) against a fake emulator clock.

FakeMonitorClock stands in for an emulator's monitor: it records every
switch the governor makes, can refuse to start skipping (a message from the
device still unaccounted for), and reports messages leaving the device. The
exchanges are the gateway's real counter (hil.gateway.in_flight), driven by
hand. The real clocks run in tests/integration (QEMU) and, with Renode
installed, tests/integration/test_renode_*.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hil.gateway.in_flight import InFlight
from hil.targets.virtual_time import (
    TimeGovernor,
    TxLog,
    classify_packet,
    coap_key,
    expects_answer,
    wait_device_time,
)
from hil.net.ipv4 import build_udp

SETTLE = 0.05


class FakeMonitorClock:
    """An emulator clock as far as the governor sees one; every switch is recorded."""

    def __init__(self) -> None:
        self.on_sent: Callable[[], None] | None = None
        self.skipping = False
        self.switches: list[bool] = []
        self.pending_message = False  # a message left while the clock was being switched
        self.time = 0.0

    def set_skipping(self, on: bool) -> bool:
        self.switches.append(on)
        if on and self.pending_message:
            self.pending_message = False
            self.skipping = False
            assert self.on_sent is not None
            self.on_sent()
            return False
        self.skipping = on
        return on

    def message_leaves(self) -> None:
        """What a clock does when a message that starts an exchange leaves the device: keep pace, say so."""
        self.skipping = False
        assert self.on_sent is not None
        self.on_sent()

    async def device_time(self) -> float:
        self.time += 1.0 if self.skipping else 0.01
        return self.time

    def message_time(self, key: tuple[int, bytes]) -> float | None:
        return None


@pytest.fixture
def clock() -> FakeMonitorClock:
    return FakeMonitorClock()


async def settled() -> None:
    await asyncio.sleep(SETTLE * 2)


async def test_no_skipping_without_exchanges_to_watch_with_fake_monitor(clock: FakeMonitorClock) -> None:
    governor = TimeGovernor(clock, "node1", settle=SETTLE)
    await settled()
    assert not clock.skipping and clock.switches == []
    governor.close()


async def test_skips_once_nothing_is_in_flight_with_fake_monitor(clock: FakeMonitorClock) -> None:
    exchanges = InFlight()
    governor = TimeGovernor(clock, "node1", settle=SETTLE)
    governor.watch(exchanges)
    assert clock.skipping and governor.skipping  # nothing in flight, nothing sent: at once
    governor.close()
    assert not clock.skipping, "closing the governor brings the device back to the host's pace"


async def test_no_skip_while_an_exchange_is_in_flight_with_fake_monitor(clock: FakeMonitorClock) -> None:
    exchanges = InFlight()
    governor = TimeGovernor(clock, "node1", settle=SETTLE)
    governor.watch(exchanges)
    assert clock.skipping
    with exchanges.track("node1"):
        # Switched off synchronously, inside track(): before the request could reach the device.
        assert not clock.skipping
        await settled()
        assert not clock.skipping, "no skipping however long the exchange takes"
        with exchanges.track("node1"):  # a second one, overlapping
            pass
        await settled()
        assert not clock.skipping, "the first exchange is still in flight"
    assert clock.skipping, "skipping again as soon as the last exchange ended"
    governor.close()


async def test_another_devices_exchange_does_not_hold_this_one_with_fake_monitor(clock: FakeMonitorClock) -> None:
    exchanges = InFlight()
    governor = TimeGovernor(clock, "node1", settle=SETTLE)
    governor.watch(exchanges)
    with exchanges.track("node2"):
        await settled()
        assert clock.skipping
    governor.close()


async def test_message_from_the_device_holds_skipping_until_settled_with_fake_monitor(clock: FakeMonitorClock) -> None:
    exchanges = InFlight()
    governor = TimeGovernor(clock, "node1", settle=SETTLE)
    governor.watch(exchanges)
    clock.message_leaves()
    assert not clock.skipping and governor.messages == 1
    await asyncio.sleep(SETTLE / 5)
    assert not clock.skipping, "the message has not had its settle time yet"
    await settled()
    assert clock.skipping, "skipping again once the message had its settle time"
    # A message, then an exchange begins and ends within the settle time: still no skipping until settled.
    clock.message_leaves()
    with exchanges.track("node1"):
        pass
    assert not clock.skipping
    await settled()
    assert clock.skipping
    governor.close()


async def test_clock_refusing_to_skip_is_asked_again_after_the_settle_time_with_fake_monitor(
    clock: FakeMonitorClock,
) -> None:
    exchanges = InFlight()
    governor = TimeGovernor(clock, "node1", settle=SETTLE)
    clock.pending_message = True  # it left just as the governor wanted to skip
    governor.watch(exchanges)
    assert clock.switches == [True] and not clock.skipping and not governor.skipping
    await settled()
    assert clock.skipping and clock.switches == [True, True]
    governor.close()


async def test_clock_failure_never_reaches_the_gateway_with_fake_monitor(clock: FakeMonitorClock) -> None:
    def broken(on: bool) -> bool:
        raise ConnectionError("the emulator went away")

    exchanges = InFlight()
    governor = TimeGovernor(clock, "node1", settle=SETTLE)
    governor.watch(exchanges)
    clock.set_skipping = broken  # type: ignore[method-assign]
    with exchanges.track("node1"):  # the gateway's request goes on
        pass
    assert isinstance(governor.error, ConnectionError)
    governor.close()


async def test_wait_device_time_counts_device_seconds_with_fake_monitor(clock: FakeMonitorClock) -> None:
    clock.skipping = True
    start = clock.time
    now = await wait_device_time(clock, 5.0, poll=0)
    assert now - start >= 5.0
    clock.skipping = False
    with pytest.raises(TimeoutError, match=r"device time moved 0\.\d+ s of 100 s in 0\.05 s .*halted in a debugger"):
        await wait_device_time(clock, 100.0, timeout=0.05, poll=0.01)


def test_coap_messages_that_start_an_exchange() -> None:
    con_post = bytes([0x40 | 2, 0x02, 0x12, 0x34, 0xAA, 0xBB]) + b"\xff"  # CON POST, token aabb
    non_205 = bytes([0x50 | 1, 0x45, 0x00, 0x07, 0x01])  # NON 2.05 (a notification), token 01
    non_get = bytes([0x50, 0x01, 0x00, 0x08])  # NON GET: a request, answered
    ack = bytes([0x60, 0x44, 0x00, 0x09])  # ACK 2.04
    empty_con = bytes([0x40, 0x00, 0x00, 0x0A])  # CoAP ping
    assert coap_key(con_post) == (0x1234, b"\xaa\xbb") and coap_key(non_205) == (7, b"\x01")
    assert expects_answer(con_post) and expects_answer(non_get) and expects_answer(empty_con)
    assert not expects_answer(non_205) and not expects_answer(ack)
    assert coap_key(b"\x80\x01\x00\x00") is None and expects_answer(b"not coap at all")
    packet = build_udp("192.0.2.2", 56830, "192.0.2.1", 5683, non_205)
    assert classify_packet(packet) == ((7, b"\x01"), False)
    assert classify_packet(b"\x45" + bytes(30)) == (None, True)


def test_tx_log_keeps_the_latest_times() -> None:
    log = TxLog(keep=2)
    log.record((1, b""), 1.0)
    log.record((2, b"t"), 2.0)
    log.record((1, b""), 3.0)  # the same message ID and token again (a reboot): the latest wins
    log.record((3, b""), 4.0)
    assert log.device_time((1, b"")) == 3.0 and log.device_time((2, b"t")) is None and len(log) == 2
