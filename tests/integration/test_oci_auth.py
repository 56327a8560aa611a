"""Registry authentication (htpasswd basic, bearer tokens) and TLS, against a
real docker-registry configured for each."""

import base64
import datetime
import ipaddress
import json
import secrets
import time
from pathlib import Path

import pytest
from aiohttp import web

from hil.faredge.oci import AuthenticationError, Credentials, RegistryError, RegistryUnreachable, push_artifact, resolve
from hil.infra import Registry, TokenAuth

USERS = {"alice": "wonderland"}
SERVICE = json.dumps({"name": "auth_probe", "version": 1, "service": "VURMTQ=="}).encode()


async def test_basic_auth_with_htpasswd(tmp_path):
    async with Registry(log_dir=tmp_path, users=USERS) as reg:
        assert reg.htpasswd_path.read_text().startswith("alice:$2")  # bcrypt, the only scheme it takes
        ref = f"{reg.address}/hil/private:1"
        pushed = await push_artifact(SERVICE, ref, auth=("alice", "wonderland"))
        found = await resolve(ref, cache_dir=tmp_path / "cache", auth=Credentials("alice", "wonderland"))
        assert found.digest == pushed.digest and found.service_json == SERVICE

        with pytest.raises(AuthenticationError, match=f"registry {reg.address} needs a username and password"):
            await resolve(ref, cache_dir=tmp_path / "cache")
        with pytest.raises(AuthenticationError) as caught:
            await resolve(ref, cache_dir=tmp_path / "cache", auth=("alice", "wrong"))
        assert caught.value.status == 401 and "UNAUTHORIZED" in str(caught.value)


# --- bearer tokens ---------------------------------------------------------

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.x509.oid import NameOID
except ImportError:  # pragma: no cover - depends on the machine
    x509 = None

needs_cryptography = pytest.mark.skipif(
    x509 is None, reason="signing tokens and making TLS certificates needs the 'cryptography' package"
)


def self_signed(common_name: str, *, ip: str | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return key, builder.sign(key, hashes.SHA256())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """A token issuer as distribution expects: ES256 JWTs with the signing
    certificate in ``x5c``; checks basic credentials; grants what is asked."""

    def __init__(self, tmp_path: Path, service: str, issuer: str) -> None:
        self.key, self.cert = self_signed("hil-token-issuer")
        self.bundle = tmp_path / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.service, self.issuer = service, issuer
        self.scopes_asked: list[str] = []

    def jwt(self, subject: str, access: list[dict]) -> str:
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    async def handle(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Basic "):
            return web.json_response({"details": "credentials required"}, status=401)
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        if USERS.get(user) != password:
            return web.json_response({"details": "bad credentials"}, status=401)
        access = []
        for scope in request.query.getall("scope", []):
            self.scopes_asked.append(scope)
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        token = self.jwt(user, access)
        return web.json_response({"token": token, "access_token": token, "expires_in": 300})


@needs_cryptography
async def test_bearer_token_auth(tmp_path):
    tokens = TokenService(tmp_path, service="hil-registry", issuer="hil-token-issuer")
    app = web.Application()
    app.router.add_get("/token", tokens.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        auth = TokenAuth(realm=f"http://127.0.0.1:{port}/token", service="hil-registry",
                         issuer="hil-token-issuer", rootcertbundle=tokens.bundle)
        async with Registry(log_dir=tmp_path, token_auth=auth) as reg:
            ref = f"{reg.address}/hil/tokened:1"
            pushed = await push_artifact(SERVICE, ref, auth=("alice", "wonderland"))
            found = await resolve(ref, cache_dir=tmp_path / "cache", auth=("alice", "wonderland"))
            assert found.digest == pushed.digest and found.service_json == SERVICE
            asked = {(scope.rsplit(":", 1)[0], frozenset(scope.rsplit(":", 1)[1].split(",")))
                     for scope in tokens.scopes_asked}
            assert asked == {("repository:hil/tokened", frozenset({"pull", "push"})),
                             ("repository:hil/tokened", frozenset({"pull"}))}

            with pytest.raises(AuthenticationError, match=r"token service .* refused a token .* HTTP 401"):
                await resolve(ref, cache_dir=tmp_path / "cache", auth=("alice", "wrong"))
    finally:
        await runner.cleanup()


# --- TLS -------------------------------------------------------------------

@pytest.fixture
def tls_files(tmp_path) -> tuple[Path, Path]:
    key, cert = self_signed("127.0.0.1", ip="127.0.0.1")
    cert_path, key_path = tmp_path / "registry.crt", tmp_path / "registry.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return cert_path, key_path


@needs_cryptography
async def test_tls_registry_with_trusted_ca_insecure_switch_and_plain_http_default(tmp_path, tls_files):
    cert_path, _ = tls_files
    async with Registry(log_dir=tmp_path, tls=tls_files) as reg:
        assert reg.url.startswith("https://")
        ref = f"{reg.address}/hil/tls:1"
        pushed = await push_artifact(SERVICE, ref, plain_http=False, ca_file=cert_path)
        found = await resolve(ref, cache_dir=tmp_path / "cache", plain_http=False, insecure=True)
        assert found.digest == pushed.digest

        untrusted = f"registry {reg.address}: TLS certificate not trusted.*--insecure"
        with pytest.raises(RegistryUnreachable, match=untrusted):
            await resolve(ref, cache_dir=tmp_path / "cache", plain_http=False)
        # loopback defaults to plain HTTP, which a TLS registry refuses
        with pytest.raises(RegistryError, match="HTTP 400"):
            await resolve(ref, cache_dir=tmp_path / "cache")
