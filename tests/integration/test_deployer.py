"""The far-edge deployer against a real registry, the gateway and simulated nodes.

Every failure case checks two things: the error says what is wrong, and the
node is left with no /9 instance (nothing half-deployed).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from conftest import FITA

from hil.device.node import Node
from hil.faredge import oci
from hil.faredge.deployer import DeployError, load_pod_spec
from hil.infra.ports import free_port

pytestmark = [pytest.mark.sim]

FITA_POD = FITA / "examples" / "temperature-deployment.yaml"


@pytest.fixture
def hil_target_name() -> str:
    return "sim"


async def no_instances(deployer, endpoint: str) -> None:
    assert await deployer.channel.instances(endpoint) == []
    assert await deployer.gateway.read(endpoint, "/9") == {}


async def test_deploy_then_redeploy_is_idempotent(deployer, node, temperature_service):
    first = await deployer.deploy(temperature_service, node.endpoint)
    again = await deployer.deploy(temperature_service, node.endpoint)
    assert not first.reused and again.reused
    assert again.instance == first.instance == 1000
    assert await deployer.channel.instances(node.endpoint) == [1000]
    assert {"fetch", "validate", "create", "write", "install", "activate"} <= set(first.steps)
    await deployer.remove(node.endpoint, "temperature_sensor")
    await no_instances(deployer, node.endpoint)


async def test_multi_platform_nested_index_deploys(deployer, node, registry, temperature_service_json):
    ref = f"{registry.address}/embserve/temperature_multi:1"
    await oci.push_multiplatform(temperature_service_json, ref, nested=True)
    deployment = await deployer.deploy(ref, node.endpoint)
    assert deployment.digest and deployment.name == "temperature_sensor"


async def test_unknown_tag_is_the_registrys_answer(deployer, node, registry):
    with pytest.raises(DeployError) as e:
        await deployer.deploy(f"{registry.address}/embserve/temperature_sensor:nope", node.endpoint)
    assert "MANIFEST_UNKNOWN" in str(e.value) or "unknown" in str(e.value).lower()
    await no_instances(deployer, node.endpoint)


async def test_image_without_zephyr_platform_lists_what_it_has(deployer, node, registry):
    amd64 = oci.build_placeholder_image(oci.parse_platform("linux/amd64"))
    arm64 = oci.build_placeholder_image(oci.parse_platform("linux/arm64"))
    index = oci.build_index([(amd64, oci.parse_platform("linux/amd64")), (arm64, oci.parse_platform("linux/arm64"))])
    ref = f"{registry.address}/embserve/linux_only:1"
    await oci.push_image(index, ref)
    with pytest.raises(DeployError) as e:
        await deployer.deploy(ref, node.endpoint)
    assert "linux/amd64" in str(e.value) and "linux/arm64" in str(e.value)
    await no_instances(deployer, node.endpoint)


async def test_tampered_blob_is_a_digest_mismatch(deployer, node, registry, temperature_service_json):
    ref = f"{registry.address}/embserve/tampered:1"
    # A blob of its own: blobs are shared by digest, and other tests use the plain service.
    doc = json.loads(temperature_service_json.read_bytes())
    doc["tamper_test"] = True
    data = json.dumps(doc).encode()
    await oci.push_artifact(data, ref)
    blob = registry.blob_path(oci.digest_of(data))
    blob.write_bytes(data.replace(b"temperature_sensor", b"temperature_sensoX", 1))
    with pytest.raises(DeployError) as e:
        await deployer.deploy(ref, node.endpoint)
    assert "digest" in str(e.value).lower()
    await no_instances(deployer, node.endpoint)


async def test_registry_down_fails_within_seconds_naming_it(deployer, node):
    address = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(DeployError) as e:
        await deployer.deploy(f"{address}/embserve/temperature_sensor:1", node.endpoint)
    assert address in str(e.value)
    assert time.monotonic() - t0 < 15
    await no_instances(deployer, node.endpoint)


async def test_bad_manifest_never_reaches_the_device(deployer, node, registry, temperature_service_json):
    doc = json.loads(temperature_service_json.read_bytes())
    doc["dependencies"]["sdk_api"] = 99
    ref = f"{registry.address}/embserve/bad_sdk:1"
    await oci.push_artifact(json.dumps(doc).encode(), ref)
    with pytest.raises(DeployError) as e:
        await deployer.deploy(ref, node.endpoint)
    assert "sdk_api" in str(e.value) and "refusing" in str(e.value)
    await no_instances(deployer, node.endpoint)
    assert not any("embserve" in line.text and "install" in line.text for line in node.console.history)


async def test_failed_install_is_rolled_back(deployer, node, registry, temperature_service_json):
    doc = json.loads(temperature_service_json.read_bytes())
    module = bytearray(base64.b64decode(doc["service"]))
    name = b"embserve_sleep_impl"
    at = module.find(name)
    assert at > 0
    module[at : at + len(name)] = b"embserve_nope_impl\x00"[: len(name)].ljust(len(name), b"\x00")
    doc["service"] = base64.b64encode(bytes(module)).decode()
    ref = f"{registry.address}/embserve/unknown_import:1"
    await oci.push_artifact(json.dumps(doc).encode(), ref)
    with pytest.raises(DeployError) as e:
        await deployer.deploy(ref, node.endpoint)
    message = str(e.value)
    assert "install" in message and "removed" in message, message
    await no_instances(deployer, node.endpoint)


def write_pod(tmp_path: Path, image: str, selector: dict[str, str], toleration: bool = True) -> Path:
    spec = {
        "containers": [{"name": "temperature", "image": image}],
        "nodeSelector": selector,
    }
    if toleration:
        spec["tolerations"] = [{"key": "fita.fhp.pt/type", "operator": "Equal", "value": "far-edge", "effect": "NoSchedule"}]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "temperature"}, "spec": spec}
    path = tmp_path / "pod.yaml"
    path.write_text(json.dumps(pod))  # JSON is YAML
    return path


async def test_pod_yaml_deploys_when_the_node_matches(deployer, node, temperature_service, tmp_path):
    pod = write_pod(tmp_path, temperature_service,
                    {"extra.resources.fhp/embserve": "true", "extra.resources.fhp/temperature_sensor": "true"})
    deployment = await deployer.deploy_pod(pod, node.endpoint)
    assert deployment.name == "temperature_sensor"


async def test_pod_yaml_mismatch_is_explained(deployer, node, temperature_service, tmp_path):
    pod = write_pod(tmp_path, temperature_service, {"extra.resources.fhp/microphone": "true"})
    with pytest.raises(DeployError) as e:
        await deployer.deploy_pod(pod, node.endpoint)
    assert "microphone" in str(e.value) and "extra.resources.fhp/temperature_sensor=true" in str(e.value)
    untolerated = write_pod(tmp_path, temperature_service, {}, toleration=False)
    with pytest.raises(DeployError) as e:
        await deployer.deploy_pod(untolerated, node.endpoint)
    assert "fita.fhp.pt/type=far-edge:NoSchedule" in str(e.value)
    await no_instances(deployer, node.endpoint)


def test_fita_example_deployment_is_read():
    if not FITA_POD.is_file():
        pytest.skip(f"FITA's example deployment is not here ({FITA_POD}); ../shared is absent")
    spec = load_pod_spec(FITA_POD)
    assert spec.image.endswith("temperature_sensor:0.1.0")
    assert spec.node_selector == {"extra.resources.fhp/embserve": "true"}
    assert spec.tolerations and spec.tolerations[0]["value"] == "far-edge"


async def test_node_without_temperature_sensor_is_refused(deployer, gateway, temperature_service):
    async with Node("humid1", sensors={"humidity": 40.0}) as other:
        await other.connect(gateway.uri)
        await gateway.wait_for_registration("humid1", timeout=10)
        with pytest.raises(DeployError) as e:
            await deployer.deploy(temperature_service, "humid1")
        assert "temperature_sensor" in str(e.value) and "humid1" in str(e.value)
        await no_instances(deployer, "humid1")
