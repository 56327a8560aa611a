"""A node that reboots in the middle of a deploy (issue 6, bad input).

The deploy goes through the real deployer and the real LwM2M channel; the
only addition is :class:`InterruptAfterWrite`, which (once) types ``kernel
reboot`` on the node's console as soon as the package write has been
answered, and holds the write step until the node has de-registered
(``while_away``: Install then finds no registration) or registered again
(``once_back``: Install reaches a node that lost /9, which lives in RAM).
Either way the deployer must fail naming the step, leave nothing
half-deployed, and work again for the next deploy.

Runs on QEMU (the reference firmware; QEMU exits on the reset and the target
powers it up again and repeats the bootstrap) and on the simulator. One more
simulator test powers the node off instead: the rollback cannot check
anything, and the error says the node may still hold the instance.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path as FsPath
from typing import Any

import pytest
from conftest import REPO, firmware_elf

from hil.faredge.channels import DeployChannel, LwM2MChannel
from hil.faredge.deployer import Deployer, DeployError
from hil.gateway.server import Gateway
from hil.lwm2m import ObjLnk, Path
from hil.readings import ReadingCollector
from hil.targets.base import Target, TargetConfig, get_target_class

EP = "rebooter"
WAIT = 20.0  # s: a QEMU power cycle and registration take ~1 s; generous for loaded CI hosts


class InterruptAfterWrite(DeployChannel):
    """The LwM2M channel, with ``interrupt()`` run once right after the package write is answered."""

    name = "lwm2m"

    def __init__(self, gateway: Gateway, interrupt: Callable[[], Awaitable[None]]):
        self.inner = LwM2MChannel(gateway)
        self.interrupt: Callable[[], Awaitable[None]] | None = interrupt

    async def write_package(self, endpoint: str, instance: int, service_json: bytes) -> None:
        await self.inner.write_package(endpoint, instance, service_json)
        interrupt, self.interrupt = self.interrupt, None
        if interrupt is not None:
            await interrupt()

    async def instances(self, endpoint: str) -> list[int]:
        return await self.inner.instances(endpoint)

    async def create(self, endpoint: str, instance: int) -> None:
        await self.inner.create(endpoint, instance)

    async def install(self, endpoint: str, instance: int) -> None:
        await self.inner.install(endpoint, instance)

    async def activate(self, endpoint: str, instance: int) -> None:
        await self.inner.activate(endpoint, instance)

    async def delete(self, endpoint: str, instance: int) -> None:
        await self.inner.delete(endpoint, instance)

    async def read_instance(self, endpoint: str, instance: int) -> dict[int, Any]:
        return await self.inner.read_instance(endpoint, instance)


async def until_events(gateway: Gateway, action: Callable[[], Awaitable[object]], last: str) -> list[str]:
    """Run ``action``, then collect the node's registration events up to the first ``last``."""
    kinds: list[str] = []
    async with gateway.subscribe() as events:
        await action()
        while last not in kinds:
            event = await events.get(timeout=WAIT)  # a timeout lists the events seen
            if event.endpoint == EP:
                kinds.append(event.kind)
    return kinds


@pytest.fixture(scope="module")
def service_json(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from hil.sdk import build_service

    return build_service(REPO / "services" / "temperature_sensor", tmp_path_factory.mktemp("service")).read_bytes()


@pytest.fixture(params=["sim", pytest.param("qemu", marks=pytest.mark.emulation)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    if request.param == "qemu":
        return "qemu", {"firmware": firmware_elf(tmp_path_factory)}  # skips without the tools
    return "sim", {}


@contextlib.asynccontextmanager
async def registered_node(backend: tuple[str, dict[str, Any]], gateway: Gateway, log_dir: FsPath) -> AsyncIterator[Target]:
    name, extra = backend
    config = TargetConfig(endpoint=EP, log_dir=log_dir, **extra)
    async with get_target_class(name)(config) as target:
        await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
        await gateway.wait_for_registration(EP, timeout=WAIT)
        yield target


def service_lines(target: Target) -> list[str]:
    """What the service printed; the simulator may print it after a prompt on the same line."""
    return [line.text[line.text.index("[temperature_sensor]"):] for line in target.console.history
            if "[temperature_sensor]" in line.text]


def device_links(monitors: dict[Path, object]) -> list[object]:
    """What each /35003 instance monitors (27400): ``3:0`` for the device, ``9:id`` per package."""
    return sorted((value for path, value in monitors.items() if path.res == 27400), key=str)


@pytest.mark.parametrize("install_reaches", ["while_away", "once_back"])
async def test_reboot_between_write_and_install_fails_cleanly_and_the_node_comes_back_clean(
    backend: tuple[str, dict[str, Any]], install_reaches: str, service_json: bytes, tmp_path: FsPath
) -> None:
    async with Gateway(host="127.0.0.1", port=0) as gateway, registered_node(backend, gateway, tmp_path) as target:
        seen: list[str] = []

        async def reboot() -> None:
            last = "deregistered" if install_reaches == "while_away" else "registered"
            seen.extend(await until_events(gateway, lambda: target.console.send_line("kernel reboot"), last))

        async with Deployer(gateway, channel=InterruptAfterWrite(gateway, reboot)) as deployer:
            with pytest.raises(DeployError) as failed:
                await deployer.deploy(service_json, EP)
            message = str(failed.value)
            # An update the node sent for /9/1000 before the reboot may arrive first.
            assert [k for k in seen if k != "updated"][0] == "deregistered", seen
            # The step is named, with what the gateway or the node answered, then the rollback's outcome.
            answer = f"endpoint '{EP}' is not registered" if install_reaches == "while_away" else "4.04 Not Found"
            assert f"{EP}: install /9/1000/4 failed: " in message and answer in message, message
            assert message.endswith(f"nothing is left: {EP} no longer has /9/1000 (a reboot clears it)"), message

            # Back, registered and clean: no /9 instance, only the device in 35003, no service output.
            registration = await gateway.wait_for_registration(EP, timeout=WAIT)
            assert registration.available_instances.get(9, []) == [], registration.object_paths
            assert device_links(await gateway.read(EP, "/35003")) == [ObjLnk(3, 0)]
            assert service_lines(target) == [], "the service ran although it was never installed"

            # The same deployer deploys to the rebooted node (whose RAM lost the sensor value too).
            await target.set_sensor("temperature", 21.5)
            deployment = await deployer.deploy(service_json, EP)
            assert deployment.instance == 1000 and not deployment.reused
            async with ReadingCollector(gateway, EP, "/3303/0/5700", include_initial=True) as readings:
                first = await readings.wait(1, timeout=WAIT)
            assert first[0].value == pytest.approx(21.5), readings.summary()
            assert (await deployer.channel.read_instance(EP, 1000))[12] is True
            assert device_links(await gateway.read(EP, "/35003")) == [ObjLnk(3, 0), ObjLnk(9, 1000)]
            assert service_lines(target)[:2] == ["[temperature_sensor] temperature_sensor started!",
                                                 "[temperature_sensor] Loop"]
    if backend[0] == "qemu":
        assert target.restarts == 1  # one power cycle: the reboot


async def test_a_node_that_stays_away_is_reported_as_possibly_holding_the_instance(
    service_json: bytes, tmp_path: FsPath
) -> None:
    async with Gateway(host="127.0.0.1", port=0) as gateway, registered_node(("sim", {}), gateway, tmp_path) as target:
        channel = InterruptAfterWrite(gateway, lambda: until_events(gateway, target.stop, "deregistered"))
        async with Deployer(gateway, channel=channel, rollback_timeout=0.5) as deployer:
            with pytest.raises(DeployError) as failed:
                await deployer.deploy(service_json, EP)
    message = str(failed.value)
    assert f"{EP}: install /9/1000/4 failed: endpoint '{EP}' is not registered" in message, message
    assert "rolling back /9/1000 failed within 0.5 s" in message and message.endswith(f"{EP} may still hold it"), message


@pytest.mark.emulation
async def test_qemu_target_reboot_returns_once_the_board_is_up_and_bootstrapped_again(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: FsPath
) -> None:
    backend = ("qemu", {"firmware": firmware_elf(tmp_path_factory)})
    async with Gateway(host="127.0.0.1", port=0) as gateway, registered_node(backend, gateway, tmp_path) as target:
        before = gateway.registration(EP).registration_id
        await target.reboot()
        lines = [line.text for line in target.console.history]
        assert sum("*** Booting embServe reference firmware" in line for line in lines) == 2, target.console.tail(40)
        assert sum(f"server_add coap://10.0.2.2:{gateway.port} {EP}" in line for line in lines) == 2, lines[-40:]
        assert target.restarts == 1
        after = await gateway.wait_for_registration(EP, timeout=WAIT)
        assert after.registration_id != before
        assert (await gateway.read(EP, "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"
