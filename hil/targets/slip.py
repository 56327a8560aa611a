"""A node's network over a serial line: the SLIP bridge at the host end of its second UART.

Boards without an Ethernet model (the reference firmware on Renode) and
real boards without a network join the gateway the same way: their second
UART carries SLIP, the harness holds the other end of that wire (a Renode
socket terminal, a second serial port) and runs :class:`hil.net.SlipBridge`
over it. The node is told the gateway is at the link's peer address,
192.0.2.1 in the reference firmware's addressing (device 192.0.2.2/24 on
``sl0``), and the bridge relays what it sends there to the gateway's real
address on the host.

:class:`SlipUplink` is that plumbing for one node: it takes the line when
the target has opened it, brings ``sl0`` up through the shell after each
boot, builds the server URI, and starts the bridge once the gateway's
address is known. The bridge's log is ``<endpoint>.slip.log``.

With ``tun_fd`` (a TUN device in a fleet's network namespace) the line is
relayed to that TUN instead (:class:`hil.net.tun.SlipTunRelay`): the node is
at its own address on that network, is told the gateway's real address, and
nothing is rewritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ..console import Shell
from ..net import SlipBridge
from ..net.links import SlipLink
from ..net.tun import SlipTunRelay
from .errors import TargetError

#: the SLIP peer in the reference firmware's default addressing (device 192.0.2.2/24)
SLIP_PEER = "192.0.2.1"
IFACE_COMMAND = "net iface slip"


class SlipUplink:
    """One node's SLIP line and bridge; see the module docs.

    ``peer`` is the gateway address the node is told (default
    :data:`SLIP_PEER`); the bridge answers as that address.
    """

    def __init__(self, endpoint: str, log_dir: Path, peer: str | None = None, *, tun_fd: int | None = None):
        self.endpoint = endpoint
        self.log_path = log_dir / f"{endpoint}.slip.log"
        self.peer = peer or SLIP_PEER
        self.tun_fd = tun_fd
        self.link: SlipLink | None = None
        self.bridge: SlipBridge | None = None
        self.relay: SlipTunRelay | None = None  # with tun_fd
        self.gateway: tuple[str, int] | None = None  # where the bridge relays to
        self._log: logging.Logger | None = None
        #: ``(source, destination, payload)`` sink for the line's datagrams (a packet capture), set before the bridge starts
        self.capture: Callable[[tuple[str, int], tuple[str, int], bytes], None] | None = None

    def attach(self, link: SlipLink) -> None:
        """The opened line; bytes on it wait unread until the bridge starts (SLIP skips them as noise)."""
        self.link = link

    def server_uri(self, gateway_host: str, gateway_port: int) -> str:
        """The URI the node is told for a gateway listening at host:port (remembered for the bridge)."""
        self.gateway = (gateway_host, gateway_port)
        if self.tun_fd is not None:
            return f"coap://{gateway_host}:{gateway_port}"  # the node is on the gateway's network
        return f"coap://{self.peer}:{gateway_port}"

    async def bring_up_interface(self, shell: Shell, timeout: float = 10.0) -> None:
        """``net iface slip`` on the node: ``sl0`` up, the other interfaces down."""
        out = await shell.exec(IFACE_COMMAND, timeout)
        if not any("is up" in line for line in out):
            said = "\n".join(out) or "(nothing)"
            raise TargetError(f"{self.endpoint}: {IFACE_COMMAND!r} did not bring sl0 up; the node said:\n{said}")

    async def start_relay(self) -> SlipTunRelay:
        """Relay the line to the TUN device (with ``tun_fd``), once."""
        if self.relay is not None:
            return self.relay
        if self.link is None or self.tun_fd is None:
            raise TargetError(f"{self.endpoint}: the SLIP line is not open" if self.link is None
                              else f"{self.endpoint}: no TUN device to relay the SLIP line to")
        relay = SlipTunRelay(self.link, self.tun_fd, log=self._logger())
        await relay.start()
        self.relay, self.link = relay, None
        return relay

    async def start_bridge(self, server_uri: str | None = None) -> SlipBridge | SlipTunRelay:
        """Start the bridge (or the TUN relay), once; without a known gateway, the one on this host at the URI's port."""
        if self.tun_fd is not None:
            return await self.start_relay()
        if self.bridge is not None:
            return self.bridge
        if self.link is None:
            raise TargetError(f"{self.endpoint}: the SLIP line is not open")
        if self.gateway is None:
            port = urlsplit(server_uri).port if server_uri else None
            self.gateway = ("127.0.0.1", port or 5683)
        bridge = SlipBridge(self.link, gateway=self.gateway, device_gateway_ip=self.peer, log=self._logger())
        bridge.capture = self.capture
        await bridge.start()
        self.bridge, self.link = bridge, None  # the bridge owns the line now and closes it
        return bridge

    async def close(self) -> None:
        """Stop the bridge and close the line; safe to call twice."""
        bridge, self.bridge = self.bridge, None
        relay, self.relay = self.relay, None
        link, self.link = self.link, None
        if relay is not None:
            await relay.close()
        if bridge is not None:
            await bridge.close()
        elif link is not None:
            await link.close()
        if self._log is not None:
            for handler in list(self._log.handlers):
                self._log.removeHandler(handler)
                handler.close()
            self._log = None

    def _logger(self) -> logging.Logger:
        if self._log is None:
            # A logger of its own, outside the logging tree: one file per node, nothing left behind.
            self._log = logging.Logger(f"hil.targets.slip.{self.endpoint}", logging.DEBUG)
            handler = logging.FileHandler(self.log_path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            self._log.addHandler(handler)
        return self._log
