"""Gateway registry, registration-interface helpers and errors, without a network."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace

import pytest

from hil.gateway.errors import (
    GatewayError,
    GatewayRequestError,
    GatewayTimeout,
    UnknownEndpoint,
    describe_endpoints,
)
from hil.gateway.rd import parse_query, remote_address
from hil.gateway.registry import Registration, Registry, root_path_of
from hil.gateway.server import resolve_format
from hil.lwm2m.link import parse_links


def make(endpoint: str = "ep", rid: str = "r1", lifetime: int = 60, links: str = "</1/0>,</3/0>") -> Registration:
    now = time.time()
    return Registration(endpoint, rid, ("127.0.0.1", 5000), lifetime, "1.1", "U", parse_links(links), now, now)


async def test_register_update_deregister_emit_events_in_order():
    registry = Registry(expiry_grace=0)
    seen: list[tuple[str, str]] = []
    registry.add_listener(lambda e: seen.append((e.kind, e.registration.registration_id)))
    registry.register(make())
    updated = registry.update("r1", lifetime=120)
    assert updated is not None and updated.lifetime == 120 and updated.updated_at >= updated.registered_at
    assert registry.by_endpoint["ep"] is updated
    assert registry.deregister("r1") is updated
    assert registry.update("r1") is None and registry.deregister("r1") is None
    assert seen == [("registered", "r1"), ("updated", "r1"), ("deregistered", "r1")]
    registry.close()


async def test_same_endpoint_replaces_with_a_deregistered_event():
    registry = Registry()
    async with registry.subscribe() as events:
        registry.register(make(rid="old"))
        registry.register(make(rid="new"))
        kinds = [(await events.get(1)).kind for _ in range(3)]
    assert kinds == ["registered", "deregistered", "registered"]
    assert events.seen[1].registration.registration_id == "old" and "replaced" in events.seen[1].reason
    assert registry.get_by_id("old") is None and registry.get_by_id("new") is not None
    registry.close()


async def test_update_rearms_the_expiry_timer():
    registry = Registry(expiry_grace=1)
    registry.register(make(lifetime=60))
    first_deadline = registry._timers["r1"].when()
    registry.update("r1", lifetime=600)
    assert registry._timers["r1"].when() > first_deadline + 500
    assert len(registry._timers) == 1
    registry.deregister("r1")
    assert not registry._timers
    registry.close()


async def test_expiry_drops_a_silent_registration():
    registry = Registry(expiry_grace=0.05)
    async with registry.subscribe() as events:
        registry.register(make(lifetime=0))
        assert (await events.get(1)).kind == "registered"
        expired = await events.get(2)
    assert expired.kind == "expired" and "lifetime of 0 s" in expired.reason
    assert len(registry) == 0
    registry.close()


async def test_a_failing_listener_does_not_stop_the_others(caplog):
    registry = Registry(log=logging.getLogger("test.gateway"))
    heard = []
    registry.add_listener(lambda e: 1 / 0)
    registry.add_listener(heard.append)
    with caplog.at_level(logging.ERROR):
        registry.register(make())
    assert len(heard) == 1 and "listener" in caplog.text
    registry.close()


async def test_wait_for_resolves_on_registration_and_times_out_with_the_known_list():
    registry = Registry()
    waiter = asyncio.create_task(registry.wait_for("late", timeout=2))
    await asyncio.sleep(0)
    registry.register(make("late"))
    assert (await waiter).endpoint == "late"
    with pytest.raises(GatewayTimeout, match="'never' did not register within 0.01 s; registered: 'late'"):
        await registry.wait_for("never", timeout=0.01)
    registry.close()


async def test_close_ends_subscriptions_and_fails_waiters():
    registry = Registry()
    sub = registry.subscribe()
    waiter = asyncio.create_task(registry.wait_for("x", timeout=2))
    await asyncio.sleep(0)
    registry.close()
    assert [e async for e in sub] == []
    with pytest.raises(GatewayError, match="closed while waiting for 'x'"):
        await waiter


async def test_subscription_get_timeout_lists_last_events():
    registry = Registry()
    sub = registry.subscribe()
    registry.register(make("a"))
    await sub.get(1)
    with pytest.raises(GatewayTimeout, match="last events seen: registered a"):
        await sub.get(0.01)
    registry.close()


def test_registration_views():
    reg = make(links='</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>,</lwm2m/9>,</lwm2m/3303/1>,</lwm2m/3303/0>')
    assert reg.available_instances == {3: [0], 9: [], 3303: [0, 1]}
    assert reg.object_paths == ["/3/0", "/9", "/3303/0", "/3303/1"]
    assert root_path_of(reg.object_links) == "/lwm2m"
    assert root_path_of(parse_links("</>;rt=oma.lwm2m,</3/0>")) == ""
    v6 = Registration("e", "r", ("::1", 5683), 1, "1.0", "U", [], 0.0, 0.0)
    assert v6.address_text == "[::1]:5683"


def test_parse_query_keeps_flags_and_values():
    assert parse_query(("ep=n1", "lt=30", "Q", "b=")) == {"ep": "n1", "lt": "30", "Q": None, "b": ""}


def test_remote_address_unmaps_ipv4_fake_remote():
    fake_remote = SimpleNamespace(sockaddr=("::ffff:10.0.0.7", 40000, 0, 0))
    assert remote_address(fake_remote) == ("10.0.0.7", 40000)
    fake_v6 = SimpleNamespace(sockaddr=("fe80::1%eth0", 5683, 0, 2))
    assert remote_address(fake_v6) == ("fe80::1", 5683)


def test_errors_name_what_failed():
    err = GatewayRequestError("n1", "/9/1000/4", "4.05 Method Not Allowed", "not executable", "execute", 133)
    assert str(err) == "n1: execute /9/1000/4 failed with 4.05 Method Not Allowed: not executable"
    assert err.code_class == 4 and err.code_number == 133
    many = [f"node{i}" for i in range(25)]
    assert describe_endpoints(many).endswith("and 15 more")
    assert describe_endpoints([]) == "none"
    assert "'ghost' is not registered; registered: 'node0'" in str(UnknownEndpoint("ghost", many))


def test_resolve_format_names_and_numbers():
    assert resolve_format("TLV") == 11542 and resolve_format("senml") == 110 and resolve_format("text") == 0
    assert resolve_format(1542) == 1542 and resolve_format(None) is None
    assert resolve_format("senml_cbor") == resolve_format("cbor") == 112
    with pytest.raises(ValueError, match="unknown content format 'exi'"):
        resolve_format("exi")
