"""The service manifest, ``service.json``.

:func:`parse_manifest` turns the bytes (or text, or an already decoded JSON
object) into a :class:`Manifest` and checks every field, including the
udynlink module carried base64-encoded in ``service``. Errors are
:class:`ManifestError` naming the source, the field as a JSON path (e.g.
``outputs[0].data_model_mapping[0]``) and what is wrong with it.

:meth:`Manifest.to_json` writes it back; fields this model does not know are
kept and written back unchanged.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .sdk_api import KEY_SIZE, REQUIRED_EXPORTS, SDK_API_LEVEL, ValueType
from .udlm import Module, ModuleFormatError, parse_module

SUPPORTED_SDK_APIS = (SDK_API_LEVEL,)
KEY_MAX_BYTES = KEY_SIZE - 1  # the io struct holds a NUL-terminated char[32]
_MAPPING = re.compile(r"lwm2m:(\d+)/x/(\d+)")
_KNOWN_FIELDS = ("name", "version", "data_model", "service", "dependencies", "inputs", "outputs")


class ManifestError(ValueError):
    def __init__(self, source: str, path: str, problem: str):
        super().__init__(f"{source}: {path}: {problem}" if path else f"{source}: {problem}")
        self.source = source
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Mapping:
    """``lwm2m:<obj>/x/<res>``: the resource ``res`` of an instance of ``obj`` chosen on the device."""

    obj: int
    res: int

    def __str__(self) -> str:
        return f"lwm2m:{self.obj}/x/{self.res}"


@dataclass(frozen=True)
class IOSpec:
    key: str
    type: ValueType
    data_model_mapping: tuple[str, ...] | None = None  # None: the field is absent

    @property
    def mappings(self) -> list[Mapping]:
        return [_parse_mapping(text) for text in self.data_model_mapping or ()]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "type": int(self.type)}
        if self.data_model_mapping is not None:
            out["data_model_mapping"] = list(self.data_model_mapping)
        return out


@dataclass(frozen=True)
class Manifest:
    name: str
    version: int
    service: bytes  # the udynlink module
    sdk_api: int
    inputs: tuple[IOSpec, ...] = ()
    outputs: tuple[IOSpec, ...] = ()
    data_model: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # unknown top-level fields, kept for the round trip
    module: Module | None = field(default=None, compare=False, repr=False)

    def input(self, key: str) -> IOSpec | None:
        return next((spec for spec in self.inputs if spec.key == key), None)

    def output(self, key: str) -> IOSpec | None:
        return next((spec for spec in self.outputs if spec.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.data_model is not None:
            out["data_model"] = list(self.data_model)
        out["service"] = base64.b64encode(self.service).decode("ascii")
        out["dependencies"] = {"sdk_api": self.sdk_api}
        out["inputs"] = [spec.to_dict() for spec in self.inputs]
        out["outputs"] = [spec.to_dict() for spec in self.outputs]
        out.update(self.extra)
        return out

    def to_json(self, indent: int | None = 4) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def parse_manifest(data: bytes | str | dict, source: str = "service.json") -> Manifest:
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(source, "", f"not UTF-8 text (byte {exc.start})") from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            problem = f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            raise ManifestError(source, "", problem) from None
    return _Checker(source).manifest(data)


def _parse_mapping(text: str) -> Mapping:
    match = _MAPPING.fullmatch(text)
    if match is None:
        raise ValueError(text)
    return Mapping(int(match[1]), int(match[2]))


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, problem: str) -> ManifestError:
        return ManifestError(self.source, path, problem)

    def field(self, obj: dict, key: str, kind: type | tuple[type, ...], path: str, required: bool = True) -> Any:
        where = f"{path}.{key}" if path else key
        if key not in obj:
            if required:
                raise self.fail(where, "missing")
            return None
        value = obj[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(where, f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.fail(where, f"expected {_kind_name(kind)}, got {_json_type(value)}")
        return value

    def manifest(self, obj: Any) -> Manifest:
        if not isinstance(obj, dict):
            raise self.fail("", f"expected a JSON object at the top level, got {_json_type(obj)}")
        name = self.field(obj, "name", str, "")
        if not name:
            raise self.fail("name", "must not be empty")
        version = self.field(obj, "version", int, "")
        if version < 0:
            raise self.fail("version", f"must be >= 0, got {version}")
        data_model = self.strings(obj, "data_model", "", required=False)
        deps = self.field(obj, "dependencies", dict, "")
        sdk_api = self.field(deps, "sdk_api", int, "dependencies")
        if sdk_api not in SUPPORTED_SDK_APIS:
            provided = ", ".join(map(str, SUPPORTED_SDK_APIS))
            problem = f"sdk_api {sdk_api} is not supported (this runtime provides {provided})"
            raise self.fail("dependencies.sdk_api", problem)
        inputs = self.io_list(obj, "inputs")
        outputs = self.io_list(obj, "outputs")
        blob, module = self.module(obj)
        return Manifest(
            name=name,
            version=version,
            service=blob,
            sdk_api=sdk_api,
            inputs=inputs,
            outputs=outputs,
            data_model=data_model,
            extra={k: v for k, v in obj.items() if k not in _KNOWN_FIELDS},
            module=module,
        )

    def strings(self, obj: dict, key: str, path: str, required: bool = True) -> tuple[str, ...] | None:
        items = self.field(obj, key, list, path, required)
        if items is None:
            return None
        where = f"{path}.{key}" if path else key
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.fail(f"{where}[{i}]", f"expected a string, got {_json_type(item)}")
        return tuple(items)

    def io_list(self, obj: dict, key: str) -> tuple[IOSpec, ...]:
        items = self.field(obj, key, list, "")
        specs = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            path = f"{key}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(path, f"expected an object, got {_json_type(item)}")
            io_key = self.field(item, "key", str, path)
            if not io_key:
                raise self.fail(f"{path}.key", "must not be empty")
            if len(io_key.encode("utf-8")) > KEY_MAX_BYTES:
                raise self.fail(f"{path}.key", f"{io_key!r} is longer than {KEY_MAX_BYTES} bytes")
            if io_key in seen:
                raise self.fail(f"{path}.key", f"duplicate key {io_key!r}")
            seen.add(io_key)
            type_code = self.field(item, "type", int, path)
            if type_code not in tuple(ValueType):
                raise self.fail(f"{path}.type", f"unknown type {type_code} (0 = int, 1 = float)")
            mapping = self.strings(item, "data_model_mapping", path, required=False)
            for j, text in enumerate(mapping or ()):
                try:
                    _parse_mapping(text)
                except ValueError:
                    raise self.fail(
                        f"{path}.data_model_mapping[{j}]", f"{text!r} is not of the form lwm2m:<obj>/x/<res>"
                    ) from None
            specs.append(IOSpec(io_key, ValueType(type_code), mapping))
        return tuple(specs)

    def module(self, obj: dict) -> tuple[bytes, Module]:
        text = self.field(obj, "service", str, "")
        try:
            blob = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.fail("service", f"not valid base64 ({exc})") from None
        try:
            module = parse_module(blob)
        except ModuleFormatError as exc:
            raise self.fail("service", f"bad udynlink module: {exc}") from None
        exports = module.exports
        for name in REQUIRED_EXPORTS:
            if name not in exports:
                listed = ", ".join(exports) or "none"
                raise self.fail("service", f"module exports no {name!r} function (exports: {listed})")
        return blob, module


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        list: "a list",
        dict: "an object",
        float: "a number",
        bool: "a boolean",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return _kind_name(type(value)) if type(value) in (str, int, list, dict, float) else type(value).__name__
