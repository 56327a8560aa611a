"""``service.toml``: what a service source directory declares about itself.

::

    name = "temperature_sensor"          # also the module name and EMBSERVE_SERVICE_NAME
    version = 1
    data_model = ["lwm2m:urn:oma:lwm2m:ext:3303"]   # optional
    sources = ["service.c"]              # optional: default every *.c and *.S in the directory

    [[inputs]]
    key = "rate"
    type = "int"                         # "int" / "float" (or 0 / 1)
    data_model_mapping = []              # optional

    [[outputs]]
    key = "value"
    type = "float"
    data_model_mapping = ["lwm2m:3303/x/5700"]

Everything but ``sources`` goes into service.json, where the manifest checker
validates it (naming this file in its errors).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_NAME = "service.toml"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,63}")
_TYPES = {"int": 0, "float": 1}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServiceConfig:
    path: Path
    name: str
    sources: tuple[Path, ...]
    manifest_fields: dict[str, Any]  # everything of service.json but `service`


def load_config(src_dir: Path) -> ServiceConfig:
    path = src_dir / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{src_dir}: no {CONFIG_NAME} (it declares the service's name, version, inputs and outputs)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{path}: name: expected 1-63 characters of A-Z a-z 0-9 _ . -, got {name!r}")
    fields: dict[str, Any] = {"name": name, "version": raw.get("version")}
    if "data_model" in raw:
        fields["data_model"] = raw["data_model"]
    fields["dependencies"] = {"sdk_api": raw.get("sdk_api", 1)}
    for direction in ("inputs", "outputs"):
        items = raw.get(direction, [])
        if not isinstance(items, list):
            raise ConfigError(f"{path}: {direction}: expected an array of tables ([[{direction}]])")
        fields[direction] = [_io(path, f"{direction}[{i}]", item) for i, item in enumerate(items)]
    unknown = set(raw) - {"name", "version", "data_model", "sdk_api", "inputs", "outputs", "sources"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    return ServiceConfig(path, name, _sources(path, src_dir, raw.get("sources")), fields)


def _io(path: Path, where: str, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ConfigError(f"{path}: {where}: expected a table")
    out = dict(item)
    type_ = out.get("type")
    if isinstance(type_, str):
        if type_ not in _TYPES:
            raise ConfigError(f"{path}: {where}.type: unknown type {type_!r} (int or float)")
        out["type"] = _TYPES[type_]
    return out


def _sources(path: Path, src_dir: Path, listed: Any) -> tuple[Path, ...]:
    if listed is None:
        found = sorted(p for pattern in ("*.c", "*.S") for p in src_dir.glob(pattern))
        if not found:
            raise ConfigError(f"{src_dir}: no *.c or *.S sources")
        return tuple(found)
    if not isinstance(listed, list) or not all(isinstance(s, str) for s in listed) or not listed:
        raise ConfigError(f"{path}: sources: expected a non-empty array of file names")
    sources = tuple(src_dir / s for s in listed)
    for source in sources:
        if not source.is_file():
            raise ConfigError(f"{path}: sources: {source} does not exist")
    return sources
