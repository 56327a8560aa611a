"""DTLS with pre-shared keys on the gateway (LwM2M security mode 0), and who may register as whom.

The DTLS itself is tinydtls (Eclipse tinydtls, through PyPI's ``DTLSSocket``)
as aiocoap's ``tinydtls_server`` transport drives it: the gateway's aiocoap
context gets a second message interface on its own UDP socket (``coaps``),
beside the NoSec one. Three adaptations, made by subclassing (nothing
installed is modified):

* aiocoap binds that transport at *port + 1* (5683 → 5684); here it binds
  the port it is given (0: a free one), like the NoSec socket.
* aiocoap's DTLS server only answers; an LwM2M server also *sends* requests
  to its clients. A device's remote from its Register (one DTLS session) is
  recognised again, so every gateway request to a secured device goes over
  that device's own session.
* Decrypted datagrams are decoded here: one aiocoap cannot decode is logged
  and dropped (counted in ``refused``) rather than raised into the event
  loop, and every datagram tells reachability its sender is alive.

The NoSec socket keeps its own edge (:mod:`hil.gateway.transport`); DTLS
datagrams never reach it, and nothing undecrypted reaches aiocoap's CoAP
layer here (tinydtls drops what fails its MAC or handshake).

:class:`PskBinding` is the rule on top: an endpoint listed in the PSK table
registers only over DTLS with *its* identity; a Register for it over NoSec or
another identity is refused with 4.03 and any existing registration stays as
it was; an identity of the table registers no other endpoint; and an Update
or De-register must come over the security its registration was made with.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from aiocoap import Message
from aiocoap.credentials import DTLS, CredentialsMap
from aiocoap.numbers import COAP_PORT
from aiocoap.numbers.codes import Code

from ..lwm2m.security import PskTable
from .rd import Rejected
from .registry import Registration

try:  # the transport imports DTLSSocket lazily; aiocoap's module itself is pure Python
    from aiocoap.transports import tinydtls_server as _server
except ImportError as exc:  # pragma: no cover - depends on the aiocoap build
    _server = None
    _IMPORT_ERROR: Exception | None = exc
else:
    _IMPORT_ERROR = None

LABEL = ":psk:"
# RFC 5246 alerts a failed PSK handshake ends with: handshake_failure, decrypt_error, unknown_psk_identity
HANDSHAKE_ALERTS = {40, 51, 115}
LEVEL_WARNING = 1  # RFC 5246 alert level  # credentials-map label prefix; the rest is the endpoint name


class DtlsUnavailable(RuntimeError):
    """DTLS was asked for but DTLSSocket (tinydtls) is not installed; the message says how to get it."""


def require_dtls() -> None:
    problem = _IMPORT_ERROR
    if problem is None:
        try:
            import DTLSSocket.dtls  # noqa: F401  (the tinydtls binding the transport loads)
        except ImportError as exc:
            problem = exc
    if problem is not None:
        raise DtlsUnavailable(
            f"DTLS needs the DTLSSocket package (tinydtls): pip install DTLSSocket "
            f"(building it needs gcc, autoconf and automake) [{problem}]"
        )


def credentials_map(table: PskTable) -> CredentialsMap:
    creds = CredentialsMap()
    for endpoint, cred in table.by_endpoint.items():
        creds[LABEL + endpoint] = DTLS(psk=cred.key_bytes, client_identity=cred.identity_bytes)
    return creds


def identity_of(remote: Any, table: PskTable) -> str | None:
    """The PSK identity a remote's DTLS session was made with; None for NoSec."""
    for claim in getattr(remote, "authenticated_claims", None) or ():
        if isinstance(claim, str) and claim.startswith(LABEL):
            cred = table.by_endpoint.get(claim[len(LABEL):])
            if cred is not None:
                return cred.identity
    return None


class PskBinding:
    """Binds each secured endpoint's registration to its PSK identity (see the module docs)."""

    def __init__(self, table: PskTable):
        self.table = table
        self._endpoint_of = table.by_identity

    def check_register(self, endpoint: str, remote: Any) -> str | None:
        """The identity the Register came with (None: NoSec); :class:`Rejected` (4.03) when it may not register ``endpoint``."""
        identity = identity_of(remote, self.table)
        cred = self.table.by_endpoint.get(endpoint)
        if cred is not None and identity != cred.identity:
            came = "over NoSec" if identity is None else f"with PSK identity {identity!r}"
            raise Rejected(Code.FORBIDDEN, f"{endpoint} is a secured endpoint: it registers over DTLS with its own "
                                           f"PSK identity; this Register came {came}")
        if cred is None and identity is not None:
            raise Rejected(Code.FORBIDDEN, f"PSK identity {identity!r} belongs to {self._endpoint_of[identity]}, "
                                           f"not to {endpoint}")
        return identity

    def check_same(self, reg: Registration, remote: Any, operation: str) -> None:
        """An Update or De-register must come with the security its registration was made with."""
        identity = identity_of(remote, self.table)
        if identity != reg.psk_identity:
            want = "over NoSec" if reg.psk_identity is None else f"over DTLS with PSK identity {reg.psk_identity!r}"
            came = "over NoSec" if identity is None else f"with PSK identity {identity!r}"
            raise Rejected(Code.FORBIDDEN, f"{operation} for {reg.endpoint} must come {want}; it came {came}")


if _server is not None:

    class _DeviceSession(_server._AddressDTLS):
        """One device's DTLS session; ``sockaddr`` like the NoSec remotes, for addresses and reachability."""

        @property
        def sockaddr(self) -> Any:
            return self._underlying_address.address

        def _event(self, level: int, code: int) -> None:
            # called from inside tinydtls: nothing may raise out of here
            if level == _server.LEVEL_FATAL and code != _server.CODE_CLOSE_NOTIFY:
                self.log.warning("DTLS session with %s failed: fatal alert %s%s", self.hostinfo, code,
                                 " (wrong PSK key or identity?)" if code in HANDSHAKE_ALERTS else "")
            elif level == LEVEL_WARNING and code == _server.CODE_CLOSE_NOTIFY:
                self.log.debug("DTLS session with %s closed by the device", self.hostinfo)
                return
            super()._event(level, code)

    class _DtlsSocket(_server._DatagramServerSocketSimpleDTLS):
        _Address = _DeviceSession  # type: ignore[assignment]

    class GatewayDtlsInterface(_server.MessageInterfaceTinyDTLSServer):
        """aiocoap's tinydtls server interface, adapted for an LwM2M server (see the module docs)."""

        _default_port = COAP_PORT  # no +1: bind the port given
        _serversocket = _DtlsSocket
        on_heard: Callable[[Any], None] = staticmethod(lambda address: None)
        refused = 0

        async def recognize_remote(self, remote: Any) -> bool:
            return isinstance(remote, _DeviceSession) and remote._protocol is self._pool

        def _received_datagram(self, address: Any, datagram: bytes) -> None:
            # plaintext, after tinydtls decrypted and authenticated it
            try:
                message = Message.decode(datagram, remote=address)
            except Exception as exc:  # UnparsableMessage, or a string option that is not UTF-8
                self.refused += 1
                self._log.info("undecodable datagram in the DTLS session of %s (%d bytes): %s: %s",
                               address.hostinfo, len(datagram), type(exc).__name__, exc)
                return
            try:
                self.on_heard(address.sockaddr)
            except Exception:
                self._log.exception("heard-from listener failed for %s", address.hostinfo)
            if self._mman is not None:
                self._mman.dispatch_message(message)

        async def shutdown(self) -> None:
            # aiocoap's version reports every session's end through a message layer that is
            # already shut down (a warning per device); the pending requests fail with the context anyway
            for session in list(self._pool._connections.values()):
                session._retransmission_task.cancel()
            self._pool._connections.clear()
            await _server.simplesocketserver.MessageInterfaceSimpleServer.shutdown(self)

        @property
        def socket(self) -> Any:
            return self._pool._transport.get_extra_info("socket")

        @property
        def port(self) -> int:
            return int(self.socket.getsockname()[1])


async def attach(context: Any, bind: tuple[str, int], table: PskTable, log: logging.Logger,
                 on_heard: Callable[[Any], None]) -> Any:
    """Add the DTLS interface to ``context`` on ``bind``; returns it (``.port`` is the bound port)."""
    require_dtls()
    creds = credentials_map(table)
    await context._append_tokenmanaged_messagemanaged_transport(
        lambda mman: GatewayDtlsInterface.create_server(bind, mman, log=log, loop=context.loop, server_credentials=creds)
    )
    interface = context.request_interfaces[-1].token_interface.message_interface
    interface.on_heard = on_heard
    return interface
