"""Push, resolve and pull against a real docker-registry (never a mock)."""

import asyncio
import base64
import gzip
import json
from pathlib import Path

import pytest
from conftest import FITA_SERVICE

from hil.cli import main as cli_main
from hil.faredge.oci import (
    ANNOTATION_CREATED,
    ANNOTATION_TITLE,
    DOCKER_MANIFEST_LIST,
    EMBSERVE_LAYER,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    DigestMismatch,
    Image,
    LayerNotFound,
    PlatformNotFound,
    RegistryClient,
    RegistryError,
    RegistryUnreachable,
    SizeMismatch,
    build_artifact,
    build_index,
    build_placeholder_image,
    digest_of,
    parse_platform,
    parse_reference,
    push_artifact,
    push_image,
    push_multiplatform,
    resolve,
)
from hil.faredge.oci.content import descriptor
from hil.infra import Registry, unused_port

FITA = FITA_SERVICE.parent  # FITA's temperature_sensor artifacts
CREATED = "2025-06-01T12:00:00Z"


def small_service(name: str = "hil_probe") -> bytes:
    """A valid-looking service.json (module bytes are a stub starting with UDLM)."""
    return json.dumps({
        "name": name,
        "version": 1,
        "data_model": ["lwm2m:urn:oma:lwm2m:ext:3303"],
        "service": base64.b64encode(b"UDLM" + bytes(60)).decode(),
        "dependencies": {"sdk_api": 1},
        "inputs": [{"key": "rate", "type": 0, "data_model_mapping": []}],
        "outputs": [{"key": "value", "type": 1, "data_model_mapping": ["lwm2m:3303/x/5700"]}],
    }, indent=4).encode()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with Registry(log_dir=tmp_path_factory.mktemp("registry-logs")) as reg:
        yield reg


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


async def test_pushed_artifact_resolves_to_the_same_bytes_and_digest(registry, cache):
    service = small_service()
    ref = f"{registry.address}/hil/temperature:1.0"
    pushed = await push_artifact(service, ref)
    found = await resolve(ref, cache_dir=cache)
    assert found.digest == pushed.digest
    assert found.service_json == service
    assert found.layer_digest == digest_of(service)
    assert (found.registry, found.repository) == (registry.address, "hil/temperature")
    assert found.path == cache / registry.address / "hil/temperature" / pushed.digest / "service.json"
    assert found.path.read_bytes() == service
    assert found.chain == (pushed.digest,)
    assert str(pushed.ref) == f"{ref}@{pushed.digest}"
    assert pushed.platforms == {"zephyr/arm/v7": pushed.digest}


async def test_manifest_is_what_oras_push_makes(registry):
    service = small_service()
    pushed = await push_artifact(service, f"{registry.address}/hil/shape:1")
    async with RegistryClient(registry.address) as client:
        served = await client.get_manifest("hil/shape", "1", (OCI_MANIFEST,), what="manifest")
    assert digest_of(served.body) == pushed.digest
    assert served.content_type == OCI_MANIFEST
    manifest = json.loads(served.body)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == EMBSERVE_LAYER
    assert layer["annotations"] == {ANNOTATION_TITLE: "service.json"}
    assert set(manifest["annotations"]) == {ANNOTATION_CREATED}
    async with RegistryClient(registry.address) as client:
        config = await client.get_blob("hil/shape", manifest["config"]["digest"], what="config")
    assert json.loads(config) == {"architecture": "arm", "os": "zephyr", "variant": "v7"}


def test_same_manifest_as_the_oras_sdk_and_interoperable_both_ways(registry, tmp_path, monkeypatch):
    """oras-py pushes the same files: same manifest; each side reads the other's push."""
    oras_provider = pytest.importorskip("oras.provider")
    service = small_service("oras_interop")
    (tmp_path / "service.json").write_bytes(service)
    platform = {"architecture": "arm", "os": "zephyr", "variant": "v7"}
    (tmp_path / "config.json").write_text(json.dumps(platform, indent=4))
    monkeypatch.chdir(tmp_path)  # oras-py only pushes files below the working directory
    oras = oras_provider.Registry(hostname=registry.address, insecure=True)
    response = oras.push(
        target=f"{registry.address}/hil/by-oras:1",
        files=[f"service.json:{EMBSERVE_LAYER}"],
        manifest_config=f"config.json:{OCI_CONFIG}",
        manifest_annotations={ANNOTATION_CREATED: CREATED},
        quiet=True,
    )
    assert response.status_code == 201
    by_oras = oras.get_manifest(f"{registry.address}/hil/by-oras:1")

    ours = asyncio.run(push_artifact(service, f"{registry.address}/hil/by-hil:1", created=CREATED))
    assert ours.manifest == by_oras

    found = asyncio.run(resolve(f"{registry.address}/hil/by-oras:1", cache_dir=tmp_path / "cache"))
    assert found.service_json == service
    pulled = oras.pull(target=f"{registry.address}/hil/by-hil:1", outdir=str(tmp_path / "pulled"))
    assert [Path(p).name for p in pulled] == ["service.json"]
    assert Path(pulled[0]).read_bytes() == service


async def test_fitas_real_artifact_round_trips(registry, cache):
    service_path, config_path = FITA / "service.json", FITA / "config.json"
    if not service_path.exists():
        pytest.skip(f"FITA artifact not available at {service_path}")
    pushed = await push_artifact(service_path, f"{registry.address}/fita/temperature_sensor:1", config=config_path)
    assert pushed.manifest["config"]["digest"] == digest_of(config_path.read_bytes())
    found = await resolve(f"{registry.address}/fita/temperature_sensor:1", cache_dir=cache)
    assert found.service_json == service_path.read_bytes()
    assert json.loads(found.service_json)["name"] == "temperature_sensor"


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
async def test_multiplatform_image_resolves_to_the_artifact(registry, cache, nested):
    service = small_service(f"multi_{nested}")
    ref = f"{registry.address}/hil/multi:{'nested' if nested else 'flat'}"
    pushed = await push_multiplatform(service, ref, nested=nested, created=CREATED)
    artifact_digest = build_artifact(service, created=CREATED).digest
    assert pushed.media_type == OCI_INDEX
    assert pushed.platforms["zephyr/arm/v7"] == artifact_digest
    assert set(pushed.platforms) == {"linux/amd64", "linux/arm64", "zephyr/arm/v7"}

    found = await resolve(ref, "zephyr/arm/v7", cache_dir=cache)
    assert found.digest == artifact_digest
    assert found.service_json == service
    assert found.chain[0] == pushed.digest and found.chain[-1] == artifact_digest
    assert len(found.chain) == (3 if nested else 2)


async def test_other_platform_entries_are_real_container_images(registry):
    pushed = await push_multiplatform(small_service(), f"{registry.address}/hil/multi:images")
    amd64 = pushed.platforms["linux/amd64"]
    async with RegistryClient(registry.address) as client:
        manifest = json.loads((await client.get_manifest("hil/multi", amd64, (OCI_MANIFEST,), what="m")).body)
        layer = await client.get_blob("hil/multi", manifest["layers"][0]["digest"], what="layer")
        config = json.loads(await client.get_blob("hil/multi", manifest["config"]["digest"], what="config"))
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["rootfs"]["diff_ids"] == [digest_of(gzip.decompress(layer))]


async def test_docker_manifest_lists_are_understood(registry, cache):
    service = small_service("docker_list")
    artifact = build_artifact(service, created=CREATED)
    amd64 = build_placeholder_image(parse_platform("linux/amd64"))
    index = build_index([(amd64, parse_platform("linux/amd64")), (artifact, parse_platform("zephyr/arm/v7"))])
    index.media_type = DOCKER_MANIFEST_LIST
    index.document["mediaType"] = DOCKER_MANIFEST_LIST
    await push_image(index, f"{registry.address}/hil/dockerlist:1")
    found = await resolve(f"{registry.address}/hil/dockerlist:1", cache_dir=cache)
    assert found.digest == artifact.digest and found.service_json == service


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
async def test_missing_platform_lists_the_platforms_the_image_has(registry, cache, nested):
    ref = f"{registry.address}/hil/multi:riscv-{nested}"
    await push_multiplatform(small_service(), ref, nested=nested)
    with pytest.raises(PlatformNotFound) as caught:
        await resolve(ref, "linux/riscv64", cache_dir=cache)
    assert caught.value.platforms == ["linux/amd64", "linux/arm64", "zephyr/arm/v7"]
    assert "no linux/riscv64 entry" in str(caught.value)
    assert "linux/amd64, linux/arm64, zephyr/arm/v7" in str(caught.value)


async def test_image_without_zephyr_entry_is_refused(registry, cache):
    linux = [parse_platform("linux/amd64"), parse_platform("linux/arm/v7")]
    index = build_index([(build_placeholder_image(p), p) for p in linux])
    await push_image(index, f"{registry.address}/hil/linux-only:1")
    with pytest.raises(PlatformNotFound, match=r"no zephyr/arm/v7 entry; its platforms: linux/amd64, linux/arm/v7"):
        await resolve(f"{registry.address}/hil/linux-only:1", cache_dir=cache)


async def test_wrong_layer_media_type_names_the_layers_it_has(registry, cache):
    service = small_service()
    config = json.dumps({"architecture": "arm", "os": "zephyr", "variant": "v7"}).encode()
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor("application/json", service, annotations={ANNOTATION_TITLE: "service.json"})],
    }
    image = Image(OCI_MANIFEST, document, blobs=[("config", config), ("service.json", service)])
    await push_image(image, f"{registry.address}/hil/wrongtype:1")
    with pytest.raises(LayerNotFound) as caught:
        await resolve(f"{registry.address}/hil/wrongtype:1", cache_dir=cache)
    assert caught.value.layers == ["application/json (service.json)"]
    assert EMBSERVE_LAYER in str(caught.value) and "application/json (service.json)" in str(caught.value)


async def test_tampered_blob_is_a_digest_mismatch(registry, cache):
    service = small_service("tampered_blob")
    ref = f"{registry.address}/hil/tamper:blob"
    await push_artifact(service, ref)
    blob = registry.blob_path(digest_of(service))
    tampered = service.replace(b"tampered_blob", b"TAMPERED_BLOB")
    assert len(tampered) == len(service)
    blob.write_bytes(tampered)
    with pytest.raises(DigestMismatch) as caught:
        await resolve(ref, cache_dir=cache)
    assert caught.value.expected == digest_of(service)
    assert caught.value.actual == digest_of(tampered)
    assert digest_of(service) in str(caught.value) and digest_of(tampered) in str(caught.value)
    assert not any(cache.rglob("service.json")), "a tampered blob must not be cached"


async def test_tampered_nested_index_is_a_digest_mismatch(registry, cache):
    ref = f"{registry.address}/hil/tamper:index"
    pushed = await push_multiplatform(small_service("tampered_index"), ref, nested=True)
    inner_digest = pushed.manifest["manifests"][0]["digest"]
    stored = registry.blob_path(inner_digest)
    original = stored.read_bytes()
    stored.write_bytes(original.replace(b"amd64", b"AMD64"))
    with pytest.raises(DigestMismatch) as caught:
        await resolve(ref, cache_dir=cache)
    assert caught.value.expected == inner_digest
    assert "manifest" in str(caught.value) and inner_digest in str(caught.value)


async def test_descriptor_lying_about_the_size_is_caught(registry, cache):
    service = small_service("size_lie")
    artifact = build_artifact(service, created=CREATED)
    artifact.document["layers"][0]["size"] = len(service) + 3
    await push_image(artifact, f"{registry.address}/hil/sizelie:1")
    with pytest.raises(SizeMismatch) as caught:
        await resolve(f"{registry.address}/hil/sizelie:1", cache_dir=cache)
    assert (caught.value.expected, caught.value.actual) == (len(service) + 3, len(service))


@pytest.mark.parametrize("ref_path", ["hil/no-such-repo:1.0", "hil/temperature:no-such-tag"])
async def test_unknown_repository_or_tag_reports_the_registrys_answer(registry, cache, ref_path):
    await push_artifact(small_service(), f"{registry.address}/hil/temperature:1.0")
    with pytest.raises(RegistryError) as caught:
        await resolve(f"{registry.address}/{ref_path}", cache_dir=cache)
    assert caught.value.status == 404
    assert caught.value.codes == ["MANIFEST_UNKNOWN"]
    assert "MANIFEST_UNKNOWN: manifest unknown" in str(caught.value)
    assert f"{registry.address}/{ref_path}" in str(caught.value)


async def test_unreachable_registry_fails_naming_its_address(cache):
    address = f"127.0.0.1:{unused_port()}"
    with pytest.raises(RegistryUnreachable, match=f"registry {address} unreachable"):
        await resolve(f"{address}/hil/x:1", cache_dir=cache)
    with pytest.raises(RegistryUnreachable, match=address):
        await push_artifact(small_service(), f"{address}/hil/x:1")


async def test_silent_registry_times_out_instead_of_hanging(cache):
    """A server that accepts and never answers: the read timeout ends the wait."""
    connections: list[asyncio.StreamWriter] = []

    async def never_answer(reader, writer):
        connections.append(writer)
        await reader.read()  # until the client gives up and closes

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        with pytest.raises(RegistryUnreachable, match=f"registry {address} .*timed out"):
            await resolve(f"{address}/hil/x:1", cache_dir=cache, read_timeout=0.5)
    finally:
        server.close()
        for writer in connections:
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()
    assert connections, "the client did connect; it was the answer that never came"


async def test_cache_hits_are_verified_and_bad_entries_replaced(registry, cache):
    service = small_service("cached")
    ref = f"{registry.address}/hil/cached:1"
    await push_artifact(service, ref)
    first = await resolve(ref, cache_dir=cache)
    second = await resolve(ref, cache_dir=cache)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.path == first.path and second.service_json == service

    first.path.write_bytes(b"corrupted cache entry")
    third = await resolve(ref, cache_dir=cache)
    assert third.cache_hit is False
    assert third.path.read_bytes() == service
    leftovers = [p.name for p in third.path.parent.iterdir()]
    assert leftovers == ["service.json"], "no temporary files left next to the cache entry"


async def test_resolve_by_digest_checks_the_manifest_bytes(registry, cache):
    pushed = await push_artifact(small_service("by_digest"), f"{registry.address}/hil/bydigest:1")
    found = await resolve(f"{registry.address}/hil/bydigest@{pushed.digest}", cache_dir=cache)
    assert found.digest == pushed.digest
    assert found.ref.digest == pushed.digest and found.ref.tag is None


def test_cli_push_and_pull(registry, tmp_path, capsys):
    service = small_service("cli")
    (tmp_path / "service.json").write_bytes(service)
    ref = f"{registry.address}/hil/cli:1"
    assert cli_main(["push", str(tmp_path / "service.json"), ref, "--multi-platform", "--nested"]) == 0
    index_digest = capsys.readouterr().out.strip()
    assert index_digest.startswith("sha256:") and len(index_digest) == 71

    out = tmp_path / "out.json"
    assert cli_main(["pull", ref, "--cache", str(tmp_path / "cache"), "-o", str(out)]) == 0
    digest, path = capsys.readouterr().out.split()
    assert out.read_bytes() == service
    assert Path(path) == tmp_path / "cache" / registry.address / "hil/cli" / digest / "service.json"
    assert parse_reference(f"{ref}@{digest}").digest == digest


def test_cli_reports_errors_without_a_traceback(registry, tmp_path, capsys):
    assert cli_main(["pull", f"{registry.address}/hil/cli:missing", "--cache", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: registry ") and "MANIFEST_UNKNOWN" in err
    assert "Traceback" not in err
    assert cli_main(["push", str(tmp_path / "absent.json"), f"{registry.address}/hil/cli:2"]) == 1
    assert "cannot read service.json" in capsys.readouterr().err
