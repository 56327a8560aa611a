"""The LwM2M registration interface: ``/rd`` on the gateway's CoAP server.

Register ``POST /rd?ep=..&lt=..&lwm2m=..&b=..`` (link-format payload) answers
2.01 with Location-Path ``rd/<id>``; Update ``POST /rd/<id>``; De-register
``DELETE /rd/<id>``. Every rejection carries a diagnostic payload saying what
was wrong, and never disturbs other registrations.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from typing import Any

from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.resource import PathCapable, Resource

from ..lwm2m.codecs import LINK
from ..lwm2m.link import Link, available_instances, parse_links
from ..lwm2m.model import LwM2MError
from .registry import Registration, Registry, root_path_of

DEFAULT_LIFETIME = 86400  # seconds, LwM2M default when the client gives no lt
_VERSION = re.compile(r"1\.[0-9]+")
_BINDING = re.compile(r"[UQSNT]+")


class Rejected(Exception):
    """A request the registration interface refuses; ``code`` is what the client gets."""

    def __init__(self, code: Code, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _bad(reason: str) -> Rejected:
    return Rejected(Code.BAD_REQUEST, reason)


def _unknown(registration_id: str) -> Rejected:
    return Rejected(Code.NOT_FOUND, f"registration /rd/{registration_id} is unknown (expired, de-registered or never made)")


def remote_address(remote: Any) -> tuple[str, int]:
    """(host, port) of an aiocoap remote, with IPv4-mapped IPv6 shown as plain IPv4."""
    sockaddr = getattr(remote, "sockaddr", None)
    if sockaddr:
        host = str(sockaddr[0]).split("%", 1)[0]
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            mapped = None
        return (str(mapped) if mapped else host, int(sockaddr[1]))
    host, _, port = str(remote.hostinfo).rpartition(":")
    return host.strip("[]"), int(port or 5683)


def parse_query(options: tuple[str, ...]) -> dict[str, str | None]:
    query: dict[str, str | None] = {}
    for item in options:
        name, eq, value = item.partition("=")
        query[name] = value if eq else None
    return query


def _lifetime(text: str | None) -> int:
    try:
        lifetime = int(text or "")
    except ValueError:
        lifetime = 0
    if lifetime <= 0:
        raise _bad(f"lt={text!r}: the lifetime must be a positive integer number of seconds")
    return lifetime


def _binding(text: str | None) -> str:
    if not text or not _BINDING.fullmatch(text):
        raise _bad(f"b={text!r}: binding must be made of the letters U, Q, S, N, T (e.g. b=U)")
    return text


def _links(request: Message, required: bool) -> list[Link] | None:
    fmt = request.opt.content_format
    if fmt is not None and int(fmt) != LINK:
        raise Rejected(
            Code.UNSUPPORTED_CONTENT_FORMAT,
            f"object links must be link format (content format 40), got content format {int(fmt)}",
        )
    if not request.payload:
        if required:
            raise _bad("register needs the object links as payload, e.g. </1/0>,</3/0>")
        return None
    try:
        links = parse_links(request.payload)
        available_instances(links)  # validates that every link is an /obj[/inst] path
    except LwM2MError as exc:
        raise _bad(f"bad link format in the object links: {exc}") from None
    return links


class RegistrationInterface(PathCapable, Resource):
    """Root resource of the gateway's CoAP site; serves ``/rd`` and ``/rd/<id>``."""

    def __init__(self, registry: Registry, log: logging.Logger, policy: Any = None):
        """``policy``: an object whose ``check(version, links)`` raises :class:`Rejected` (e.g. ``StrictRegistration``)."""
        super().__init__()
        self.registry = registry
        self.log = log
        self.policy = policy

    async def render(self, request: Message) -> Message:
        try:
            return self._dispatch(request)
        except Rejected as exc:
            self.log.warning(
                "%s %s from %s refused with %s: %s",
                request.code,
                "/" + "/".join(request.opt.uri_path),
                getattr(request.remote, "hostinfo", request.remote),
                exc.code,
                exc.reason,
            )
            return Message(code=exc.code, payload=exc.reason.encode("utf-8"))
        except Exception as exc:  # a bug here must not take the server down
            self.log.exception("registration interface failed on %s", request)
            return Message(code=Code.INTERNAL_SERVER_ERROR, payload=f"gateway error: {exc}".encode("utf-8"))

    def _dispatch(self, request: Message) -> Message:
        path = request.opt.uri_path
        if not path or path[0] != "rd" or len(path) > 2:
            raise Rejected(Code.NOT_FOUND, f"no resource at /{'/'.join(path)}; the registration interface is /rd")
        if len(path) == 1:
            if request.code != Code.POST:
                raise Rejected(Code.METHOD_NOT_ALLOWED, f"{request.code} is not allowed on /rd: register with POST")
            return self._register(request)
        if request.code == Code.POST:
            return self._update(request, path[1])
        if request.code == Code.DELETE:
            return self._deregister(path[1])
        raise Rejected(
            Code.METHOD_NOT_ALLOWED, f"{request.code} is not allowed on /rd/{path[1]}: update with POST, de-register with DELETE"
        )

    def _register(self, request: Message) -> Message:
        query = parse_query(request.opt.uri_query)
        endpoint = query.get("ep")
        if not endpoint:
            raise _bad("register needs an endpoint name: POST /rd?ep=NAME")
        lifetime = _lifetime(query["lt"]) if "lt" in query else DEFAULT_LIFETIME
        version = query.get("lwm2m") or "1.0"
        if not _VERSION.fullmatch(version):
            raise _bad(f"lwm2m={version!r}: expected an LwM2M version such as 1.0 or 1.1")
        binding = _binding(query["b"]) if "b" in query else "U"
        links = _links(request, required=True)
        assert links is not None
        if self.policy is not None:
            self.policy.check(version, links)
        now = time.time()
        reg = Registration(
            endpoint=endpoint,
            registration_id=self.registry.new_id(),
            address=remote_address(request.remote),
            lifetime=lifetime,
            lwm2m_version=version,
            binding=binding,
            object_links=links,
            registered_at=now,
            updated_at=now,
            root_path=root_path_of(links),
            queue_mode="Q" in query or "Q" in binding,
            sms_number=query.get("sms"),
            remote=request.remote,
        )
        self.registry.register(reg)
        return Message(code=Code.CREATED, location_path=("rd", reg.registration_id))

    def _update(self, request: Message, registration_id: str) -> Message:
        if self.registry.get_by_id(registration_id) is None:
            raise _unknown(registration_id)
        query = parse_query(request.opt.uri_query)
        changes: dict[str, Any] = {"remote": request.remote, "address": remote_address(request.remote)}
        if "lt" in query:
            changes["lifetime"] = _lifetime(query["lt"])
        if "b" in query:
            changes["binding"] = _binding(query["b"])
        if "b" in query or "Q" in query:
            changes["queue_mode"] = "Q" in query or "Q" in (query.get("b") or "")
        if "sms" in query:
            changes["sms_number"] = query["sms"]
        links = _links(request, required=False)
        if links is not None:
            if self.policy is not None:
                reg = self.registry.get_by_id(registration_id)
                self.policy.check(reg.lwm2m_version if reg else "1.0", links)
            changes["object_links"] = links
            changes["root_path"] = root_path_of(links)
        self.registry.update(registration_id, **changes)
        return Message(code=Code.CHANGED)

    def _deregister(self, registration_id: str) -> Message:
        if self.registry.deregister(registration_id) is None:
            raise _unknown(registration_id)
        return Message(code=Code.DELETED)
