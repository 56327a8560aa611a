"""Image reference and platform parsing (Docker's normalisation rules)."""

import pytest

from hil.faredge.oci import InvalidReference, OciError, Platform, parse_platform, parse_reference

SHA = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("temperature:1.0", "docker.io", "library/temperature", "1.0", None),
        ("temperature", "docker.io", "library/temperature", "latest", None),
        ("user/x", "docker.io", "user/x", "latest", None),
        ("docker.io/temperature:2", "docker.io", "library/temperature", "2", None),
        ("index.docker.io/user/x:1", "docker.io", "user/x", "1", None),
        ("localhost/x", "localhost", "x", "latest", None),
        ("localhost:5000/x@" + SHA, "localhost:5000", "x", None, SHA),
        ("127.0.0.1:40001/hil/temperature:1.0", "127.0.0.1:40001", "hil/temperature", "1.0", None),
        ("ghcr.io/fita-project/services/temperature_sensor:v1", "ghcr.io",
         "fita-project/services/temperature_sensor", "v1", None),
        ("registry.example:443/a/b:c@" + SHA, "registry.example:443", "a/b", "c", SHA),
        ("[::1]:5000/x:1", "[::1]:5000", "x", "1", None),
        ("my-registry/x", "docker.io", "my-registry/x", "latest", None),
        ("a__b/c.d-e:_tag-1.2", "docker.io", "a__b/c.d-e", "_tag-1.2", None),
    ],
)
def test_references_normalise_like_docker(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


def test_digest_wins_over_tag_when_asking_the_registry():
    ref = parse_reference(f"localhost:5000/x:1.0@{SHA}")
    assert ref.reference == SHA
    assert str(ref) == f"localhost:5000/x:1.0@{SHA}"


def test_docker_hub_requests_go_to_its_api_host_but_keep_the_name():
    ref = parse_reference("temperature:1.0")
    assert ref.api_host == "registry-1.docker.io"
    assert str(ref) == "docker.io/library/temperature:1.0"


@pytest.mark.parametrize(
    ("text", "loopback"),
    [("127.0.0.1:5000/x", True), ("localhost:5000/x", True), ("[::1]:5000/x", True),
     ("ghcr.io/x", False), ("x", False), ("10.0.0.1:5000/x", False)],
)
def test_loopback_registries_are_recognised(text, loopback):
    assert parse_reference(text).is_loopback is loopback


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("Temperature:1.0", "lowercase"),
        ("localhost:5000/Temp", "lowercase"),
        ("x:", "bad tag"),
        ("x:.hidden", "bad tag"),
        ("x@sha256:1234", "not a digest"),
        ("x@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("x@sha256:" + "a" * 63, "64 lowercase hex"),
        ("x@sha256:" + "A" * 64, "64 lowercase hex"),
        ("localhost:5000/", "no repository"),
        ("a//b", "bad path component"),
        ("a/-b", "bad path component"),
        ("has space:1", "whitespace"),
        ("bad_host.:5000/x", "bad registry host"),
        ("x/" + "a" * 260, "longer than 255"),
    ],
)
def test_malformed_references_say_what_is_wrong(text, complaint):
    with pytest.raises(InvalidReference) as caught:
        parse_reference(text)
    message = str(caught.value)
    assert complaint in message
    assert repr(text) in message
    assert isinstance(caught.value, OciError) and isinstance(caught.value, ValueError)


def test_platforms_parse_and_match_index_entries():
    zephyr = parse_platform("zephyr/arm/v7")
    assert zephyr == Platform("zephyr", "arm", "v7")
    assert str(zephyr) == "zephyr/arm/v7"
    assert zephyr.as_json() == {"architecture": "arm", "os": "zephyr", "variant": "v7"}
    assert zephyr.matches({"architecture": "arm", "os": "zephyr", "variant": "v7"})
    assert not zephyr.matches({"architecture": "arm", "os": "linux", "variant": "v7"})
    assert not zephyr.matches({"architecture": "arm", "os": "zephyr"})
    amd64 = parse_platform("linux/amd64")
    assert amd64.variant is None and amd64.as_json() == {"architecture": "amd64", "os": "linux"}


@pytest.mark.parametrize("text", ["zephyr", "zephyr/arm/v7/x", "Zephyr/arm", "linux//amd64"])
def test_malformed_platforms_are_rejected(text):
    with pytest.raises(InvalidReference, match="os/architecture"):
        parse_platform(text)
