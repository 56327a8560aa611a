"""A real registry with htpasswd auth, driven through the CLI as a user would: the password goes in by
--password-stdin and through a Docker config file's credential helper, and never comes out again."""

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hil.infra import Registry

SERVICE = json.dumps({"name": "cred_probe", "version": 1, "service": "VURMTQ=="}).encode()


def cli(args: list[str], *, cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hil.cli", "-vv", *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=60)


def test_password_used_but_never_shown(tmp_path):
    password = "pw-" + secrets.token_urlsafe(16)
    run = tmp_path / "run"  # where a run's records (logs, bundles, reports) would be written
    bin_dir = tmp_path / "bin"
    docker = tmp_path / "docker"
    for d in (run, bin_dir, docker):
        d.mkdir()
    (run / "service.json").write_bytes(SERVICE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBSERVE_HIL_REGISTRY", "DOCKER_CONFIG"))}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(run / "cache"), PATH=f"{bin_dir}:{env['PATH']}")
    with Registry(log_dir=run, users={"alice": password}) as reg:
        ref = f"{reg.address}/hil/private:1"
        outputs = []

        anonymous = cli(["pull", ref], cwd=run, env=env)
        outputs.append(anonymous)
        assert anonymous.returncode == 1 and "needs a username and password" in anonymous.stderr

        pushed = cli(["push", "service.json", ref, "-u", "alice", "--password-stdin"], cwd=run, env=env, stdin=password + "\n")
        outputs.append(pushed)
        assert pushed.returncode == 0, pushed.stderr
        digest = pushed.stdout.split()[0]

        # the Docker config names a credential helper for this registry; the helper is a script of ours
        calls = tmp_path / "helper-calls"
        (bin_dir / "docker-credential-hilprobe").write_text(textwrap.dedent(f"""\
            #!/bin/sh
            read -r server
            echo "$1 $server" >> {calls}
            printf '{{"ServerURL": "%s", "Username": "alice", "Secret": "%s"}}\\n' "$server" '{password}'
            """))
        (bin_dir / "docker-credential-hilprobe").chmod(0o755)
        (docker / "config.json").write_text(json.dumps({"credHelpers": {reg.address: "hilprobe"}}))
        pulled = cli(["pull", ref, "-o", "pulled.json"], cwd=run, env={**env, "DOCKER_CONFIG": str(docker)})
        outputs.append(pulled)
        assert pulled.returncode == 0, pulled.stderr
        assert pulled.stdout.split()[0] == digest and (run / "pulled.json").read_bytes() == SERVICE
        assert calls.read_text().split() == ["get", reg.address]

        wrong = cli(["pull", ref], cwd=run, env={**env, "EMBSERVE_HIL_REGISTRY_PASSWORD": password[::-1],
                                                  "EMBSERVE_HIL_REGISTRY_USERNAME": "alice"})
        outputs.append(wrong)
        assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
    # the password was used: the registry logged alice's authenticated requests
    assert 'auth.user.name="alice"' in reg.log_path.read_text() or "auth.user.name=alice" in reg.log_path.read_text()
    # ...and nothing the run wrote or printed holds it
    texts = [o.stdout + o.stderr for o in outputs]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in run.rglob("*") if p.is_file()]
    assert sum(t.count(password) for t in texts) == 0
    assert sum(t.count(password[::-1]) for t in texts) == 0
    assert any("DEBUG" in t for t in texts)  # -vv: the most talkative logs were searched
