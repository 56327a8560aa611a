"""Services on a simulated node, deployed over LwM2M (create, write, install, activate).

The node runs on a manual virtual clock, so periods are exact: the test moves
device time with ``clock.advance`` and every reading is stamped with the
device time at which its notification arrived. The gateway and the node talk
real CoAP over loopback.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path as FsPath

import pytest
from conftest import FITA_SERVICE, REPO

from hil.device.clock import VirtualClock
from hil.device.node import Node
from hil.gateway.errors import GatewayRequestError
from hil.gateway.server import Gateway
from hil.lwm2m import ObjLnk, Path, UpdateResult, UpdateState
from hil.sdk import build_service

TEST_SERVICES = REPO / "tests" / "data" / "services"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The project's own services, built from C once per module."""
    out = tmp_path_factory.mktemp("services")

    def build(name: str, src: FsPath | None = None) -> bytes:
        path = build_service(src or TEST_SERVICES / name, out / name)
        return path.read_bytes()

    return build


@pytest.fixture(scope="module")
def temperature_json(built) -> bytes:
    return built("temperature_sensor", REPO / "services" / "temperature_sensor")


def fita_json() -> bytes:
    if not FITA_SERVICE.is_file():
        pytest.skip(f"FITA's service binary is not here ({FITA_SERVICE}); ../shared is absent")
    return FITA_SERVICE.read_bytes()


@pytest.fixture
async def rig():
    clock = VirtualClock(realtime=False)
    async with Gateway() as gw:
        async with Node("svc1", clock=clock) as node:
            await node.connect(gw.uri)
            await gw.wait_for_registration("svc1", timeout=10)
            yield gw, node, clock


async def deploy(gw, inst: int, package: bytes) -> None:
    ep = "svc1"
    await gw.create(ep, "/9", instance_id=inst)
    await gw.write(ep, f"/9/{inst}/2", package)
    await gw.execute(ep, f"/9/{inst}/4")
    await gw.execute(ep, f"/9/{inst}/10")


async def state(gw, inst: int) -> dict[int, object]:
    content = await gw.read("svc1", f"/9/{inst}")
    return {p.res: v for p, v in content.items()}


async def monitor(gw) -> dict[ObjLnk, dict[int, object]]:
    content = await gw.read("svc1", "/35003")
    by_inst: dict[int, dict[int, object]] = {}
    for p, v in content.items():
        by_inst.setdefault(p.inst, {})[p.res] = v
    return {values[27400]: values for values in by_inst.values()}


class Readings:
    """Notifications of one resource, stamped with device time."""

    def __init__(self, obs, clock):
        self.items: list[tuple[float, float]] = []
        obs.add_listener(lambda n: self.items.append((clock.now(), n.value())))

    def values(self) -> list[float]:
        return [v for _, v in self.items]

    def times(self) -> list[float]:
        return [t for t, _ in self.items]


async def advance(clock, seconds: float, step: float = 1.0) -> None:
    """Move device time in steps, giving loopback CoAP a moment at each."""
    import asyncio

    done = 0.0
    while done < seconds:
        await clock.advance(min(step, seconds - done))
        done += step
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("which", ["project", "fita"])
async def test_readings_equal_injected_values_at_the_service_period(rig, temperature_json, which):
    gw, node, clock = rig
    package = temperature_json if which == "project" else fita_json()
    node.sensors["temperature"].set(22.5)
    await deploy(gw, 1000, package)
    assert (await state(gw, 1000))[12] is True
    obs = await gw.observe("svc1", "/3303/0/5700")
    readings = Readings(obs, clock)
    assert obs.latest.value() == pytest.approx(22.5)
    for value in (23.0, 19.75, -3.5):
        node.sensors["temperature"].set(value)
        await advance(clock, 30)
        assert readings.values()[-1] == pytest.approx(value)
    gaps = [b - a for a, b in zip(readings.times(), readings.times()[1:])]
    assert gaps and all(g == pytest.approx(30, abs=1.01) for g in gaps), readings.items
    obs.cancel()


@pytest.mark.parametrize("which", ["project", "fita"])
async def test_rate_input_changes_the_period_and_low_rates_are_refused(rig, temperature_json, which):
    gw, node, clock = rig
    await deploy(gw, 1000, temperature_json if which == "project" else fita_json())
    obs = await gw.observe("svc1", "/3303/0/5700")
    readings = Readings(obs, clock)
    out = await node.shell.run_line("embserve service input 1000 rate 5000")
    assert "delivered" in out
    await advance(clock, 30)  # the current 30 s sleep ends first
    start = len(readings.items)
    await advance(clock, 20)
    times = readings.times()[start - 1:]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 3 and all(g == pytest.approx(5, abs=1.01) for g in gaps), readings.items
    refused = await node.shell.run_line("embserve service input 1000 rate 500")
    assert "too low" in node.console.text.lower(), refused
    start = len(readings.items)
    await advance(clock, 20)
    assert 3 <= len(readings.items) - start <= 5, "period changed after a refused rate"
    obs.cancel()


async def test_deactivate_stops_readings_and_delete_frees_memory(rig, temperature_json):
    gw, node, clock = rig
    before = await monitor(gw)
    assert before[ObjLnk(3, 0)][27402] == "0"
    await deploy(gw, 1000, temperature_json)
    stats = await monitor(gw)
    assert int(stats[ObjLnk(9, 1000)][27402]) > 0
    assert int(stats[ObjLnk(3, 0)][27402]) == int(stats[ObjLnk(9, 1000)][27402])
    obs = await gw.observe("svc1", "/3303/0/5700")
    readings = Readings(obs, clock)
    await gw.execute("svc1", "/9/1000/11")
    assert (await state(gw, 1000))[12] is False
    count = len(readings.items)
    await advance(clock, 90)
    assert len(readings.items) == count, "readings after deactivate"
    await gw.delete("svc1", "/9/1000")
    after = await monitor(gw)
    assert ObjLnk(9, 1000) not in after
    assert after[ObjLnk(3, 0)][27402] == "0"
    obs.cancel()


async def test_two_services_run_side_by_side(rig, temperature_json, built):
    gw, node, clock = rig
    await deploy(gw, 1000, temperature_json)
    await deploy(gw, 1001, built("counter"))
    assert (await state(gw, 1000))[12] is True and (await state(gw, 1001))[12] is True
    for _ in range(50):
        if 3300 in gw.registration("svc1").available_instances:
            break
        await advance(clock, 0.1, 0.1)
    temperature = Readings(await gw.observe("svc1", "/3303/0/5700"), clock)
    counter = Readings(await gw.observe("svc1", "/3300/0/5700"), clock)
    node.sensors["temperature"].set(30.5)
    await advance(clock, 30)
    assert temperature.values()[-1] == pytest.approx(30.5)
    assert len(counter.items) >= 3, counter.items
    assert counter.values() == sorted(counter.values()), "the counter service should count up"
    stats = await monitor(gw)
    assert {ObjLnk(9, 1000), ObjLnk(9, 1001)} <= set(stats)


def _tampered(package: bytes, **changes) -> bytes:
    doc = json.loads(package)
    doc.update(changes)
    return json.dumps(doc).encode()


def _rate_mapped(package: bytes, mapping: str) -> bytes:
    return _tampered(package, inputs=[{"key": "rate", "type": 0, "data_model_mapping": [mapping]}])


def _module(package: bytes) -> bytes:
    return base64.b64decode(json.loads(package)["service"])


@pytest.mark.parametrize(
    "case, make, expected",
    [
        ("corrupted base64", lambda p: _tampered(p, service="@@not base64@@"), "base64"),
        ("wrong magic", lambda p: _tampered(p, service=base64.b64encode(b"MLDU" + _module(p)[4:]).decode()), "magic"),
        ("truncated module", lambda p: _tampered(p, service=base64.b64encode(_module(p)[:100]).decode()), "size"),
        ("sdk_api 99", lambda p: _tampered(p, dependencies={"sdk_api": 99}), "sdk_api"),
        ("not json", lambda p: b"{ this is not json", "JSON"),
        # an input mapped to what a server cannot write: refused before anything is loaded or claimed
        ("rate to a read-only resource", lambda p: _rate_mapped(p, "lwm2m:3303/x/5700"),
         "input 'rate': lwm2m:3303/x/5700 is not writable here (Sensor Value allows read)"),
        ("rate to a string", lambda p: _rate_mapped(p, "lwm2m:3308/x/5750"), "Application Type is a string"),
        ("rate to the node's Lifetime", lambda p: _rate_mapped(p, "lwm2m:1/x/1"), "object 1 (LwM2M Server) is the node's own"),
        ("rate to an unknown object", lambda p: _rate_mapped(p, "lwm2m:3311/x/5850"), "object 3311 has no definition"),
        ("rate to a missing resource", lambda p: _rate_mapped(p, "lwm2m:3308/x/5999"), "(Set Point) has no resource 5999"),
    ],
)
async def test_bad_packages_fail_install_with_a_precise_error(rig, temperature_json, case, make, expected):
    gw, node, clock = rig
    await gw.create("svc1", "/9", instance_id=1000)
    await gw.write("svc1", "/9/1000/2", make(temperature_json))
    await gw.execute("svc1", "/9/1000/4")
    st = await state(gw, 1000)
    assert st[9] == UpdateResult.UNSUPPORTED_PACKAGE, (case, st)
    assert st[7] != UpdateState.INSTALLED
    errors = [v[27404] for k, v in (await monitor(gw)).items() if k == ObjLnk(9, 1000)]
    assert errors and expected.lower() in errors[0].lower(), (case, errors)
    with pytest.raises(GatewayRequestError) as refused:
        await gw.execute("svc1", "/9/1000/10")
    assert refused.value.code.startswith("4.05")
    assert "embServe Node" in (await gw.read("svc1", "/3/0/17"))[Path(3, 0, 17)]
    assert not gw.registration("svc1").available_instances.get(3308), "an instance claimed for a refused service"


async def test_unknown_import_fails_install(rig, built):
    gw, node, clock = rig
    await gw.create("svc1", "/9", instance_id=1000)
    await gw.write("svc1", "/9/1000/2", built("unknown_import"))
    await gw.execute("svc1", "/9/1000/4")
    assert (await state(gw, 1000))[9] == UpdateResult.UNSUPPORTED_PACKAGE
    error = (await monitor(gw))[ObjLnk(9, 1000)][27404]
    assert "import" in error and "embserve" in error.lower(), error


@pytest.mark.parametrize("name", ["crash", "invalid_instruction", "busy"])
async def test_faulting_service_is_stopped_and_the_node_keeps_serving(rig, built, temperature_json, name):
    gw, node, clock = rig
    await deploy(gw, 1000, temperature_json)
    good = Readings(await gw.observe("svc1", "/3303/0/5700"), clock)
    await deploy(gw, 1001, built(name))
    await advance(clock, 2)
    st = await state(gw, 1001)
    assert st[12] is False and st[9] == UpdateResult.UPDATE_ERROR, st
    error = (await monitor(gw))[ObjLnk(9, 1001)][27404]
    assert error, "35003 Error is empty for a faulted service"
    assert any("stopped" in line and "/9/1001" in line for line in node.console.lines)
    count = len(good.items)
    await advance(clock, 60)
    assert len(good.items) >= count + 2, "the healthy service stopped reporting"
    assert (await state(gw, 1000))[12] is True
