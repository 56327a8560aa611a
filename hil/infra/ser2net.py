"""Debian's ``ser2net`` serving one serial device over RFC 2217 on a free loopback port.

This is what a labgrid exporter does for each serial port it publishes: the
port becomes a ``NetworkSerialPort`` (host, port, speed) that a client opens
as ``rfc2217://host:port``. The configuration is ser2net 4's YAML, one
connection::

    connection: &console
      accepter: telnet(rfc2217),tcp,127.0.0.1,PORT
      connector: serialdev(nouucplock=true),/dev/pts/N,115200n81,local

ser2net opens the device when a client connects and closes it when the
client leaves, so the device path may be a symlink that is re-pointed while
nobody is connected (a bench whose emulator restarts gets a new pty). One
client at a time: a second one is turned away, as on a lab's exporter.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .process import ManagedProcess, NotReady


class Ser2net(ManagedProcess):
    name = "ser2net"
    apt_package = "ser2net"
    binary_name = "ser2net"
    binary_candidates = ("/usr/sbin/ser2net",)

    def __init__(
        self,
        device: str | os.PathLike[str],
        *,
        speed: int = 115200,
        log_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        ready_timeout: float = 10.0,
    ) -> None:
        if name:
            self.name = name  # per instance: names the log and config files
        super().__init__(log_dir=log_dir, ready_timeout=ready_timeout)
        self.device = Path(device)
        self.speed = speed
        self.config_path = self.log_path.with_suffix(".yaml")

    @property
    def url(self) -> str:
        """The port as pyserial opens it (labgrid adds ``?ign_set_control``: a pty has no modem lines)."""
        return f"rfc2217://{self.address}"

    def config(self, port: int) -> str:
        return "\n".join([
            "%YAML 1.1",
            "---",
            "connection: &console",
            f"  accepter: telnet(rfc2217),tcp,{self.host},{port}",
            # uucp locks live in /var/lock, which a pty (or a user without rights there) does not need
            f"  connector: serialdev(nouucplock=true),{self.device},{self.speed}n81,local",
            "  options:",
            "    kickolduser: false",  # a second client is turned away, never steals the console
            "    max-connections: 1",
            "",
        ])

    def prepare(self, port: int) -> list[str]:
        self.config_path.write_text(self.config(port))
        # -n: stay in the foreground; -d: log to stderr (our log file); no mDNS on loopback
        return [self.binary(), "-n", "-d", "-c", str(self.config_path), "-P", str(self.log_path.with_suffix(".pid"))]

    def probe(self) -> None:
        # ser2net listens once its configuration is read; a connection it accepts
        # opens the device, so the probe only checks the listening socket.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((self.host, self.port)) != 0:
                raise NotReady(f"nothing listens on {self.address} yet")
