"""A real OCI registry: Debian's ``docker-registry`` (CNCF distribution 2.x).

Runs ``docker-registry serve CONFIG.yml`` with a generated config: filesystem
storage in a temp dir, HTTP on a free loopback port, deletion enabled, no
debug/metrics listener. Optional htpasswd (basic) or token (bearer) auth and
TLS, so clients can be tested against each. Ready when ``GET /v2/`` answers
(200, or 401 when auth is on)::

    with Registry(log_dir=tmp_path) as reg:
        print(reg.url)          # http://127.0.0.1:PORT
    async with Registry() as reg: ...
"""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from .process import InfraError, ManagedProcess, NotReady


@dataclass(frozen=True)
class TokenAuth:
    """Bearer-token auth: the registry trusts tokens signed by a key whose
    certificate is in ``rootcertbundle``; clients get them from ``realm``."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


def bcrypt_hash(password: str, cost: int = 5) -> str:
    """A bcrypt hash for htpasswd (the only scheme distribution accepts).

    The registry checks the hash on every request, so test registries use a
    low cost: these are throwaway passwords on loopback, and cost 12 would
    add about 0.2 s to each request.
    """
    try:
        import bcrypt  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        out = subprocess.run(
            [htpasswd, "-nbB", "-C", str(cost), "user", password], check=True, capture_output=True, text=True
        ).stdout
        return out.strip().split(":", 1)[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # stdlib up to 3.12; libxcrypt does bcrypt
    except ImportError:
        crypt = None  # type: ignore[assignment]
    if crypt is not None and crypt.METHOD_BLOWFISH in crypt.methods:
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2**cost))
    raise InfraError(
        "cannot make a bcrypt hash for the registry's htpasswd file: "
        "install python3-bcrypt (pip install bcrypt) or apache2-utils"
    )


class Registry(ManagedProcess):
    name = "registry"
    apt_package = "docker-registry"
    binary_name = "docker-registry"
    binary_candidates = ("/usr/bin/docker-registry",)

    def __init__(
        self,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        storage_dir: str | os.PathLike[str] | None = None,
        users: Mapping[str, str] | None = None,
        token_auth: TokenAuth | None = None,
        tls: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
        port: int | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        """
        :param storage_dir: where blobs and manifests go; a temp dir removed at
            stop when not given.
        :param users: user → password; turns on htpasswd (basic) auth.
        :param token_auth: turns on bearer-token auth instead.
        :param tls: (certificate, key) PEM files; serves HTTPS.
        """
        super().__init__(log_dir=log_dir, port=port, ready_timeout=ready_timeout)
        if users and token_auth:
            raise ValueError("Registry: choose htpasswd users or token_auth, not both")
        self._own_storage = storage_dir is None
        self.storage_dir = Path(storage_dir) if storage_dir is not None else Path(
            tempfile.mkdtemp(prefix="embserve-hil-registry-data-")
        )
        self.users = dict(users or {})
        self.token_auth = token_auth
        self.tls = (Path(tls[0]), Path(tls[1])) if tls else None
        self.config_path = self.log_path.with_suffix(".yml")
        self.htpasswd_path = self.log_path.with_suffix(".htpasswd")

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.users or self.token_auth)

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (for tamper tests)."""
        algorithm, hexdigest = digest.split(":", 1)
        return (
            self.storage_dir / "docker/registry/v2/blobs" / algorithm / hexdigest[:2] / hexdigest / "data"
        )

    def config(self, port: int) -> dict:
        http_section: dict = {
            "addr": f"{self.host}:{port}",
            # a fixed secret silences the "generated random secret" warning
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if self.tls:
            http_section["tls"] = {"certificate": str(self.tls[0]), "key": str(self.tls[1])}
        config: dict = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                # no background upload purging thread touching the temp dir
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            # no "debug" section: distribution then opens no debug/prometheus port
            "http": http_section,
        }
        if self.users:
            config["auth"] = {"htpasswd": {"realm": "embserve-hil", "path": str(self.htpasswd_path)}}
        elif self.token_auth:
            t = self.token_auth
            config["auth"] = {
                "token": {
                    "realm": t.realm,
                    "service": t.service,
                    "issuer": t.issuer,
                    "rootcertbundle": str(t.rootcertbundle),
                }
            }
        return config

    def prepare(self, port: int) -> list[str]:
        binary = self.binary()
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        if self.users:
            self.htpasswd_path.write_text(
                "".join(f"{user}:{bcrypt_hash(password)}\n" for user, password in self.users.items())
            )
        self.config_path.write_text(yaml.safe_dump(self.config(port), sort_keys=False))
        return [binary, "serve", str(self.config_path)]

    def environment(self) -> dict[str, str]:
        # REGISTRY_* variables override the config file in distribution
        return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}

    def probe(self) -> None:
        conn: http.client.HTTPConnection
        if self.tls:
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=1.0, context=ssl._create_unverified_context()
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
        try:
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
        except OSError as exc:
            raise NotReady(f"GET {self.url}/v2/: {exc}") from None
        finally:
            conn.close()
        expected = {200, 401} if self.auth_enabled else {200}
        if status not in expected:
            raise NotReady(f"GET {self.url}/v2/ answered {status}")

    def cleanup(self) -> None:
        if self._own_storage:
            shutil.rmtree(self.storage_dir, ignore_errors=True)
