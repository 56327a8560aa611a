"""Secrets show as *** everywhere; records are redacted; registry credentials come in oras' order."""

import argparse
import base64
import json
import logging
import os
import stat
import textwrap
from pathlib import Path

import pytest

from hil.faredge.oci import Credentials
from hil.faredge.oci.credentials import PASSWORD_ENV, USERNAME_ENV, CredentialsError, find_credentials
from hil.secret import MASK, Secret, SecretFilter, new_token_file, read_token_file, redact, redact_text

PASSWORD = "correct-horse-battery-7"


def test_secret_never_shows_its_value():
    s = Secret(PASSWORD)
    shown = [repr(s), str(s), f"{s}", f"{s:>12}", "%s" % s, "%r" % (s,), str([s]), str({"p": s})]
    assert all(PASSWORD not in text for text in shown) and MASK in shown[1]
    assert s == PASSWORD and s == Secret(PASSWORD) and s != "other" and s.reveal() == PASSWORD
    with pytest.raises(TypeError):
        json.dumps({"password": s})  # never silently serialised


def test_credentials_repr_and_errors_hide_the_password():
    creds = Credentials("alice", PASSWORD)
    assert PASSWORD not in repr(creds) and PASSWORD not in str(creds)
    assert creds.basic_header() == "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    try:
        raise RuntimeError(f"push failed with {creds}")
    except RuntimeError as exc:
        assert PASSWORD not in str(exc)


def test_redact_options_for_records():
    args = argparse.Namespace(username="alice", password=PASSWORD, api_token_file="/tmp/t", psk="id:0011",
                              nested={"mqtt_password": "x" * 8, "keys": [Secret("k" * 8)], "public_key": "pk"}, port=5)
    out = redact(args)
    assert out == {"username": "alice", "password": MASK, "api_token_file": "/tmp/t", "psk": MASK,
                   "nested": {"mqtt_password": MASK, "keys": [MASK], "public_key": "pk"}, "port": 5}
    assert redact({"password": None}) == {"password": None}  # "none given" stays visible
    json.dumps(out)


def test_redact_text_and_log_filter(caplog):
    keep = Secret(PASSWORD)
    assert redact_text(f"login with {PASSWORD} failed") == f"login with {MASK} failed"
    logger = logging.getLogger("test.secret")
    caplog.handler.addFilter(SecretFilter())
    logger.warning("password is %s", keep.reveal())
    assert PASSWORD not in caplog.text and MASK in caplog.text


def test_token_files(tmp_path):
    token = new_token_file(tmp_path / "t")
    assert stat.S_IMODE(os.stat(tmp_path / "t").st_mode) == 0o600
    assert read_token_file(tmp_path / "t") == token
    (tmp_path / "open").write_text("abc\n")
    os.chmod(tmp_path / "open", 0o644)
    with pytest.raises(ValueError, match="can be read by others"):
        read_token_file(tmp_path / "open")


# --- where credentials come from ---------------------------------------------------

REGISTRY = "registry.example:5000"


def helper(bin_dir: Path, name: str, answers: dict[str, tuple[str, str]], log: Path) -> None:
    """A docker-credential-NAME script: `get` reads the server on stdin, answers JSON or 'not found'."""
    table = json.dumps({k: {"ServerURL": k, "Username": u, "Secret": p} for k, (u, p) in answers.items()})
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1" = get ] || exit 2
        read -r server
        echo "$server" >> {log}
        python3 -c 'import json,sys; t=json.loads(sys.argv[1]); s=sys.argv[2]
        print(json.dumps(t[s])) if s in t else (print("credentials not found in native keychain"), sys.exit(1))' '{table}' "$server"
        """))
    script.chmod(0o755)


def config(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return path


def test_precedence_stdin_then_environment_then_docker_config(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "helper.log"
    helper(bin_dir, "lab", {REGISTRY: ("helper-user", "helper-pw")}, log)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", PASSWORD_ENV: "env-pw", USERNAME_ENV: "env-user"}
    cfg = config(tmp_path, {"credHelpers": {REGISTRY: "lab"}})
    warnings: list[str] = []

    found = find_credentials(REGISTRY, username="u", password_stdin="stdin-pw\n", env=env, config_path=cfg)
    assert (found.username, found.password.reveal(), found.source) == ("u", "stdin-pw", "--password-stdin")
    found = find_credentials(REGISTRY, username="u", password="cli-pw", env=env, config_path=cfg, warn=warnings.append)
    assert found.password == "cli-pw" and "use --password-stdin" in warnings[0]
    found = find_credentials(REGISTRY, env=env, config_path=cfg)
    assert (found.username, found.password.reveal()) == ("env-user", "env-pw")
    del env[PASSWORD_ENV]
    found = find_credentials(REGISTRY, env=env, config_path=cfg)
    assert (found.username, found.password.reveal()) == ("helper-user", "helper-pw")
    assert log.read_text().split() == [REGISTRY]  # the registry went to the helper on stdin
    assert find_credentials("other.example", env=env, config_path=cfg) is None  # no helper for it: auths, none


def test_docker_config_order_helpers_store_auths(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "helper.log"
    helper(bin_dir, "store", {REGISTRY: ("store-user", "store-pw")}, log)
    helper(bin_dir, "named", {REGISTRY: ("named-user", "named-pw")}, log)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    auth = base64.b64encode(b"file-user:file-pw").decode()
    both = {"credHelpers": {f"https://{REGISTRY}": "named"}, "credsStore": "store", "auths": {REGISTRY: {"auth": auth}}}
    assert find_credentials(REGISTRY, env=env, config_path=config(tmp_path, both)).username == "named-user"
    del both["credHelpers"]
    assert find_credentials(REGISTRY, env=env, config_path=config(tmp_path, both)).username == "store-user"
    del both["credsStore"]
    found = find_credentials(REGISTRY, env=env, config_path=config(tmp_path, both))
    assert (found.username, found.password.reveal()) == ("file-user", "file-pw")
    # $DOCKER_CONFIG picks the file when no path is given
    (tmp_path / "dc").mkdir()
    (tmp_path / "dc" / "config.json").write_text(json.dumps(both))
    assert find_credentials(REGISTRY, env={**env, "DOCKER_CONFIG": str(tmp_path / "dc")}).username == "file-user"


def test_bad_sources_are_named(tmp_path):
    env = {"PATH": str(tmp_path)}
    with pytest.raises(CredentialsError, match="docker-credential-missing .* is not on PATH"):
        find_credentials(REGISTRY, env=env, config_path=config(tmp_path, {"credsStore": "missing"}))
    with pytest.raises(CredentialsError, match="identity token"):
        find_credentials(REGISTRY, env=env, config_path=config(tmp_path, {"auths": {REGISTRY: {"identitytoken": "x"}}}))
    with pytest.raises(CredentialsError, match="not base64"):
        find_credentials(REGISTRY, env=env, config_path=config(tmp_path, {"auths": {REGISTRY: {"auth": "%%%"}}}))
    with pytest.raises(CredentialsError, match="needs the user name"):
        find_credentials(REGISTRY, password_stdin="pw", env=env)
    with pytest.raises(CredentialsError, match="no such file"):
        find_credentials(REGISTRY, env=env, config_path=tmp_path / "absent.json")


def test_report_record_and_junit_properties_carry_no_secret(tmp_path):
    from hil.report.record import DeployRecord, Injection, RecordedTest

    token = Secret("tok-" + "9" * 20)
    recorded = RecordedTest(
        "tests/x.py::test", target=f"serial://user:{token.reveal()}@bench",
        deployments=[DeployRecord("n1", 1000, "svc", 1, f"reg.lab:5000/svc:1?auth={token.reveal()}", "sha256:ab", False, 1.0,
                                  {"resolve": 0.1})],
        injections=[Injection("n1", 1.0, "input", "api_key", token)],
    )
    text = recorded.write(tmp_path).read_text()
    properties = dict(recorded.junit_properties())
    assert token.reveal() not in text and token.reveal() not in str(properties)
    assert MASK in text and properties["target"] == f"serial://user:{MASK}@bench"
