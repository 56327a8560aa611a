"""In-memory OCI content: the embServe artifact, placeholder images, indexes."""

import gzip
import io
import json
import tarfile

import pytest
from conftest import FITA_SERVICE

from hil.faredge.oci import (
    ANNOTATION_CREATED,
    ANNOTATION_TITLE,
    EMBSERVE_LAYER,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR_GZIP,
    OCI_MANIFEST,
    DigestMismatch,
    SizeMismatch,
    build_artifact,
    build_placeholder_image,
    digest_of,
    parse_platform,
)
from hil.faredge.oci.client import parse_challenge
from hil.faredge.oci.content import verify
from hil.faredge.oci.images import build_multiplatform, config_bytes

FITA = FITA_SERVICE.parent  # FITA's temperature_sensor artifacts
SERVICE = b'{"name":"unit","version":1}'


def test_default_config_is_byte_identical_to_fitas_config_json():
    real = FITA / "config.json"
    if not real.exists():
        pytest.skip(f"FITA artifact not available at {real}")
    assert config_bytes(None) == real.read_bytes()


def test_artifact_manifest_has_the_shape_oras_push_gives():
    artifact = build_artifact(SERVICE, created="2025-01-02T03:04:05Z")
    doc = json.loads(artifact.body)
    assert doc == {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config_bytes(None)), "size": 70},
        "layers": [{
            "mediaType": EMBSERVE_LAYER,
            "digest": digest_of(SERVICE),
            "size": len(SERVICE),
            "annotations": {ANNOTATION_TITLE: "service.json"},
        }],
        "annotations": {ANNOTATION_CREATED: "2025-01-02T03:04:05Z"},
    }
    # compact, fields in image-spec order, as Go's encoder writes it
    assert artifact.body.startswith(
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":'
    )
    assert artifact.digest == digest_of(artifact.body)
    assert str(artifact.platform) == "zephyr/arm/v7"


def test_created_annotation_defaults_to_now_in_rfc3339_utc():
    created = json.loads(build_artifact(SERVICE).body)["annotations"][ANNOTATION_CREATED]
    assert len(created) == 20 and created.endswith("Z") and created[10] == "T"


def test_placeholder_image_is_a_real_reproducible_container_image():
    amd64 = parse_platform("linux/amd64")
    image = build_placeholder_image(amd64)
    assert image.digest == build_placeholder_image(amd64).digest
    blobs = dict(image.blobs)
    config = json.loads(blobs["linux/amd64 config"])
    layer = blobs["linux/amd64 layer"]
    assert image.document["layers"][0]["mediaType"] == OCI_LAYER_TAR_GZIP
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    tar_bytes = gzip.decompress(layer)
    assert config["rootfs"]["diff_ids"] == [digest_of(tar_bytes)]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        assert tar.getnames() == ["embserve-hil.txt"]


@pytest.mark.parametrize("nested", [False, True])
def test_multiplatform_index_lists_zephyr_after_the_others(nested):
    artifact = build_artifact(SERVICE, created="2025-01-02T03:04:05Z")
    top = build_multiplatform(artifact, [parse_platform("linux/amd64"), parse_platform("linux/arm64")], nested=nested)
    assert top.media_type == OCI_INDEX
    index = top
    if nested:
        (outer_entry,) = top.document["manifests"]
        assert outer_entry["mediaType"] == OCI_INDEX and "platform" not in outer_entry
        (index,) = top.children
        assert outer_entry["digest"] == index.digest and outer_entry["size"] == len(index.body)
    platforms = [e["platform"] for e in index.document["manifests"]]
    assert platforms == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
        {"architecture": "arm", "os": "zephyr", "variant": "v7"},
    ]
    assert index.document["manifests"][-1]["digest"] == artifact.digest


def test_verify_reports_expected_and_actual():
    with pytest.raises(DigestMismatch) as caught:
        verify(b"tampered", digest=digest_of(b"original"), size=8, what="blob x")
    assert caught.value.expected == digest_of(b"original")
    assert caught.value.actual == digest_of(b"tampered")
    assert "blob x" in str(caught.value) and caught.value.expected in str(caught.value)
    with pytest.raises(SizeMismatch, match="descriptor says 9 bytes, got 8"):
        verify(b"original", digest=digest_of(b"original"), size=9, what="blob x")


def test_www_authenticate_challenges_parse():
    scheme, params = parse_challenge(
        'Bearer realm="http://127.0.0.1:9/token",service="hil-registry",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "http://127.0.0.1:9/token",
        "service": "hil-registry",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge('Basic realm="embserve-hil"') == ("basic", {"realm": "embserve-hil"})
