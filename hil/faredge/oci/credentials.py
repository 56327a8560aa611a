"""Where registry credentials come from, in oras' order, without ever showing the password.

:func:`find_credentials` looks, first match wins:

1. **Given explicitly**: a user name with a password read from standard
   input (``--password-stdin``) or, discouraged, given as ``-p`` (it shows
   in ``ps`` and shell history; a warning says so, as oras does).
2. **The environment**: ``EMBSERVE_HIL_REGISTRY_PASSWORD``, with the user
   from ``-u`` or ``EMBSERVE_HIL_REGISTRY_USERNAME``.
3. **The Docker config file** (``--registry-config PATH``, else
   ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``: the file
   docker, oras and Kubernetes' ``dockerconfigjson`` pull secrets share),
   in the order oras-go's credential store uses: a helper named for this
   registry in ``credHelpers``, else the ``credsStore`` helper, else the
   ``auths`` entry (base64 ``auth`` = ``user:password``, or ``username`` and
   ``password``). A helper is the program ``docker-credential-<name>`` on
   ``PATH``, run as ``docker-credential-<name> get`` with the registry on its
   standard input; it answers JSON ``{"ServerURL", "Username", "Secret"}``
   (docker-credential-helpers' protocol), or "credentials not found".
4. Nothing: anonymous access.

Identity tokens (an ``identitytoken`` entry, or a helper answering the user
``<token>``) are OAuth2 refresh tokens for a token service; this client does
not speak that flow and says so rather than sending the token as a password.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ...secret import Secret, redact_text
from .client import Credentials
from .errors import AuthenticationError

PASSWORD_ENV = "EMBSERVE_HIL_REGISTRY_PASSWORD"
USERNAME_ENV = "EMBSERVE_HIL_REGISTRY_USERNAME"
HELPER_TIMEOUT = 20.0  # seconds a credential helper may take (a keychain may ask the user)
NOT_FOUND = "credentials not found in native keychain"  # docker-credential-helpers' own words
IDENTITY_TOKEN_USER = "<token>"


class CredentialsError(AuthenticationError):
    """Credentials were asked for but could not be read; the message names the source and what is wrong."""

    def __init__(self, message: str):
        super().__init__(message, status=0)


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if env is None else env
    directory = env.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def server_key(address: str) -> str:
    """What a config entry or a registry is known by: ``https://host:5000/v1/`` and ``host:5000`` are both ``host:5000``."""
    text = address.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme):]
    return text.split("/", 1)[0].lower()


def find_credentials(
    registry: str,
    *,
    username: str | None = None,
    password: str | Secret | None = None,
    password_stdin: str | Secret | None = None,
    env: Mapping[str, str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    warn: object = None,
) -> Credentials | None:
    """Credentials for ``registry`` (``host[:port]``) from the first source that has them (see the module docs).

    ``password_stdin`` is the text read from standard input (its line end is
    dropped). ``warn`` (a callable taking a message) hears about ``-p``.
    """
    env = os.environ if env is None else env
    if password is not None and password_stdin is not None:
        raise CredentialsError("give the password once: -p or --password-stdin, not both")
    explicit = password_stdin if password_stdin is not None else password
    if explicit is not None:
        where = "--password-stdin" if password_stdin is not None else "-p"
        value = Secret(explicit).reveal()
        if isinstance(value, str):
            value = value.removesuffix("\n").removesuffix("\r")
        if not value:
            raise CredentialsError(f"{where}: the password is empty")
        if not username:
            raise CredentialsError(f"{where} needs the user name: -u USER")
        if password is not None and callable(warn):
            warn("WARNING: -p puts the password on the command line, where ps and shell history keep it; "
                 f"use --password-stdin or ${PASSWORD_ENV}")
        return Credentials(username, Secret(value), source=where)
    if env.get(PASSWORD_ENV):
        user = username or env.get(USERNAME_ENV)
        if not user:
            raise CredentialsError(f"${PASSWORD_ENV} is set but no user name: give -u USER or set ${USERNAME_ENV}")
        return Credentials(user, Secret(env[PASSWORD_ENV]), source=f"${PASSWORD_ENV}")
    path = Path(config_path) if config_path is not None else docker_config_path(env)
    return from_docker_config(registry, path, env=env, explicit_path=config_path is not None)


def from_docker_config(registry: str, path: Path, *, env: Mapping[str, str] | None = None,
                       explicit_path: bool = False) -> Credentials | None:
    """Credentials for ``registry`` from a Docker config file: credHelpers, credsStore, auths (oras-go's order)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit_path:
            raise CredentialsError(f"registry config {path}: no such file") from None
        return None
    except OSError as exc:
        raise CredentialsError(f"registry config {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        config = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise CredentialsError(f"registry config {path}: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CredentialsError(f"registry config {path}: expected a JSON object")
    wanted = server_key(registry)
    helpers = config.get("credHelpers") or {}
    if not isinstance(helpers, dict):
        raise CredentialsError(f"registry config {path}: credHelpers must map registries to helper names")
    helper = next((name for key, name in helpers.items() if server_key(key) == wanted), None)
    if helper is None and config.get("credsStore"):
        helper = config["credsStore"]
    if helper is not None:
        if not isinstance(helper, str) or not helper:
            raise CredentialsError(f"registry config {path}: credential helper name for {registry} must be a non-empty string")
        return run_helper(helper, registry, env=env, config=path)
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        raise CredentialsError(f"registry config {path}: auths must map registries to entries")
    entry = next((value for key, value in auths.items() if server_key(key) == wanted), None)
    if entry is None:
        return None
    return _auths_entry(entry, registry, path)


def _auths_entry(entry: object, registry: str, path: Path) -> Credentials | None:
    where = f"registry config {path}: auths entry for {registry}"
    if not isinstance(entry, dict):
        raise CredentialsError(f"{where}: expected an object")
    if entry.get("identitytoken"):
        raise CredentialsError(f"{where} holds an identity token (OAuth2 refresh token), which embserve-hil "
                               "cannot use; log in with a user name and password")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"{where}: 'auth' is not base64 of 'user:password'") from None
        user, sep, secret = decoded.partition(":")
        if not sep or not user:
            raise CredentialsError(f"{where}: 'auth' decodes to no 'user:password' pair")
        return Credentials(user, Secret(secret), source=f"{path} (auths)")
    if entry.get("username") and entry.get("password"):
        return Credentials(str(entry["username"]), Secret(str(entry["password"])), source=f"{path} (auths)")
    return None


def run_helper(name: str, registry: str, *, env: Mapping[str, str] | None = None,
               config: Path | None = None) -> Credentials | None:
    """``docker-credential-NAME get`` with ``registry`` on stdin: its credentials, or None when it has none."""
    program = f"docker-credential-{name}"
    origin = f" (named in {config})" if config else ""
    env = dict(os.environ if env is None else env)
    found = shutil.which(program, path=env.get("PATH"))
    if found is None:
        raise CredentialsError(f"credential helper {program}{origin} is not on PATH")
    try:
        done = subprocess.run([found, "get"], input=registry.encode(), capture_output=True,
                              timeout=HELPER_TIMEOUT, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise CredentialsError(f"credential helper {program}{origin} did not answer within {HELPER_TIMEOUT:g} s") from None
    except OSError as exc:
        raise CredentialsError(f"credential helper {program}{origin} could not run: {exc.strerror or exc}") from None
    out = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        said = out or done.stderr.decode("utf-8", "replace").strip()
        if NOT_FOUND in said:
            return None
        raise CredentialsError(f"credential helper {program}{origin} failed for {registry} "
                               f"(exit {done.returncode}): {redact_text(said)[:200] or 'no message'}")
    try:
        answer = json.loads(out)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise CredentialsError(f"credential helper {program}{origin} answered for {registry} "
                               "without the JSON fields Username and Secret") from None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise CredentialsError(f"credential helper {program}{origin}: Username and Secret must be strings")
    if user == IDENTITY_TOKEN_USER:
        raise CredentialsError(f"credential helper {program}{origin} gave an identity token (OAuth2 refresh token) "
                               f"for {registry}, which embserve-hil cannot use; store a user name and password")
    if not secret:
        return None
    return Credentials(user, Secret(secret), source=f"credential helper {program}")
