"""A network namespace of our own, with what a fleet's emulated networks need in it.

An IoTNetEMU ``linux-br`` network is a Linux bridge; here it lives inside a
namespace this module creates (``ip netns add ehil-<pid>-<n>``), so a fleet
never touches the host's interfaces or routes, two fleets with the same
addresses can run side by side, and deleting the namespace removes
everything in it. Root (CAP_SYS_ADMIN and CAP_NET_ADMIN) is needed;
:func:`unavailable_reason` says why it cannot be done here.

What goes into a namespace:

* bridges with the host's address on them (:meth:`NetworkNamespace.add_bridge`);
* TAP devices, enslaved to a bridge, for emulated Ethernet NICs
  (:meth:`~NetworkNamespace.open_tap`): opened here, inside the namespace,
  and handed to the emulator as a file descriptor (QEMU ``-nic tap,fd=N``),
  so the emulator itself stays in the host's namespace with its console and
  monitor sockets on the host's loopback. A TAP opened this way is not
  persistent: it disappears when the last descriptor (ours, the emulator's)
  closes;
* TUN devices with a host route, for nodes whose network is a serial (SLIP)
  line: the harness relays the line's IP packets to and from the TUN
  (:meth:`~NetworkNamespace.open_tun`), so the node is at its own address;
* UDP sockets bound to an address in the namespace
  (:meth:`~NetworkNamespace.udp_socket`), e.g. the gateway's, so nodes reach
  it at the address their bootstrap commands name. A socket stays in the
  namespace it was created in; this process stays in the host's;
* processes (:class:`NamespaceProcess`), e.g. an IoTNetEMU ``native``
  application, started with ``ip netns exec``.

Descriptors and sockets are created by one worker thread that has entered
the namespace (``setns``); the rest of the process never leaves the host's
namespace. Clean-up: :meth:`NetworkNamespace.close` (the ``async with``
exit) stops the processes, closes the descriptors and deletes the
namespace; an ``atexit`` hook does the same for a namespace still open at
interpreter exit, and :func:`sweep_stale` removes namespaces left by a
process that was killed outright (their names carry its pid).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import itertools
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

from .process import InfraError, ManagedProcess, NotReady, StartupError, log_tail

log = logging.getLogger("hil.infra.netns")

PREFIX = "ehil-"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_TAP, IFF_NO_PI = 0x0001, 0x0002, 0x1000
IFNAMSIZ = 16  # with the terminating NUL
IP_TIMEOUT = 10.0  # seconds one ``ip`` command may take
_STALE = re.compile(rf"^{PREFIX}(\d+)-\d+$")

_counter = itertools.count(1)
_open: set[NetworkNamespace] = set()
_open_lock = threading.Lock()


class NamespaceError(InfraError):
    """A namespace, bridge, device or socket in it could not be made."""


CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


def effective_capabilities() -> int:
    """This process's effective capability set (a bit mask; 0 when it cannot be read)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def unavailable_reason() -> str | None:
    """Why this process cannot make network namespaces, or None when it can."""
    caps = effective_capabilities()
    missing = [name for name, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN), ("CAP_SYS_ADMIN", CAP_SYS_ADMIN)) if not caps >> bit & 1]
    if missing:
        who = "not running as root" if os.geteuid() != 0 else "root without " + " and ".join(missing)
        return f"{who}, and network namespaces, bridges and TAP devices need CAP_NET_ADMIN and CAP_SYS_ADMIN"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed (apt-get install iproute2)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist (no TUN/TAP support)"
    return None


def ip_command(*args: str, timeout: float = IP_TIMEOUT) -> str:
    """Run ``ip ARGS``; its output, or :class:`NamespaceError` with what ip said."""
    argv = ["ip", *args]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NamespaceError(f"{shlex.join(argv)}: {exc}") from None
    if run.returncode != 0:
        raise NamespaceError(f"{shlex.join(argv)} failed: {(run.stderr or run.stdout).strip()}")
    return run.stdout


def namespaces() -> list[str]:
    """Names of the network namespaces ``ip netns`` knows."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except OSError:
        return []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_processes_in(name: str) -> None:
    with contextlib.suppress(NamespaceError):
        for pid in ip_command("netns", "pids", name).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


def sweep_stale() -> list[str]:
    """Delete the namespaces (and kill the processes in them) that a dead process of ours left; their names."""
    removed = []
    for name in namespaces():
        m = _STALE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _kill_processes_in(name)
            with contextlib.suppress(NamespaceError):
                ip_command("netns", "delete", name)
                removed.append(name)
    if removed:
        log.warning("removed network namespaces left by processes that no longer run: %s", ", ".join(removed))
    return removed


def _enter(fd: int) -> None:
    """Move the calling thread into the network namespace open at ``fd``."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _ipv6_off() -> None:
    """In the calling thread's namespace: no IPv6 on devices made from now on (/proc/sys/net is per namespace)."""
    for which in ("default", "all"):
        with contextlib.suppress(OSError):  # a kernel without IPv6
            Path(f"/proc/sys/net/ipv6/conf/{which}/disable_ipv6").write_text("1\n")


def _open_tun_device(name: str, flags: int) -> int:
    if not 0 < len(name.encode()) < IFNAMSIZ:
        raise OSError(errno.EINVAL, f"an interface name has 1 to {IFNAMSIZ - 1} bytes, {name!r} has {len(name.encode())}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def _bound_udp(host: str, port: int) -> socket.socket:
    # IPv6 with v4-mapped addresses, as aiocoap's udp6 transport expects its sockets
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address = ipaddress.ip_address(host)
        sock.bind((f"::ffff:{address}" if address.version == 4 else host, port))
    except OSError:
        sock.close()
        raise
    return sock


class NetworkNamespace:
    """One namespace and what was made in it; see the module docs.

    ``async with NetworkNamespace() as ns:`` creates it (sweeping stale ones
    first) and deletes it with everything in it on the way out.
    """

    def __init__(self, name: str | None = None):
        self.name = name or f"{PREFIX}{os.getpid()}-{next(_counter)}"
        if len(self.name) >= IFNAMSIZ * 4 or "/" in self.name:
            raise NamespaceError(f"namespace name {self.name!r} is not usable")
        self._fd: int | None = None
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._fds: set[int] = set()
        self._processes: list[ManagedProcess] = []
        self.created = False

    # --- lifetime ----------------------------------------------------------

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.create)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    def create(self) -> Self:
        reason = unavailable_reason()
        if reason:
            raise NamespaceError(f"cannot create network namespace {self.name}: {reason}")
        sweep_stale()
        ip_command("netns", "add", self.name)
        self.created = True
        with _open_lock:
            _open.add(self)
        try:
            ip_command("-n", self.name, "link", "set", "lo", "up")
            self._fd = os.open(NETNS_DIR / self.name, os.O_RDONLY | os.O_CLOEXEC)
            self._worker = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"netns {self.name}", initializer=_enter, initargs=(self._fd,)
            )
            # setns failures show here; IPv6 off: the emulated nodes speak IPv4, and a new device's router
            # solicitations would only be noise on their links
            self._worker.submit(_ipv6_off).result(timeout=IP_TIMEOUT)
        except BaseException as exc:
            self.close()
            if isinstance(exc, concurrent.futures.BrokenExecutor):
                raise NamespaceError(f"cannot enter network namespace {self.name}: {exc}") from None
            raise
        log.info("network namespace %s created", self.name)
        return self

    def close(self) -> None:
        """Stop the processes, close the descriptors, delete the namespace; safe to call twice."""
        processes, self._processes = self._processes, []
        for proc in processes:
            proc.stop()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=True)
        fds, self._fds = self._fds, set()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self.created:
            self.created = False
            _kill_processes_in(self.name)  # anything started inside that outlived its manager
            try:
                ip_command("netns", "delete", self.name)
            except NamespaceError as exc:
                log.error("could not delete network namespace %s: %s", self.name, exc)
            else:
                log.info("network namespace %s deleted", self.name)
        with _open_lock:
            _open.discard(self)

    # --- what goes in ---------------------------------------------------------

    def ip(self, *args: str) -> str:
        """``ip -n NAME ARGS`` (blocking)."""
        return ip_command("-n", self.name, *args)

    async def add_bridge(self, name: str, address: ipaddress.IPv4Interface | None = None) -> None:
        """A bridge named ``name``, up, with ``address`` (e.g. 10.10.12.254/24) on it."""
        await asyncio.to_thread(self._add_bridge, name, address)

    def _add_bridge(self, name: str, address: ipaddress.IPv4Interface | None) -> None:
        self.ip("link", "add", name, "type", "bridge")
        # no STP and no forwarding delay: a node's first frames must not wait 15 s
        self.ip("link", "set", name, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        if address is not None:
            self.ip("addr", "add", str(address), "dev", name)
        self.ip("link", "set", name, "up")

    async def add_local_address(self, address: ipaddress.IPv4Address, device: str = "lo") -> None:
        """``address`` as a local address of the namespace, on ``device``, for sockets bound to it.

        On the bridge the address belongs to, not on ``lo``: aiocoap answers
        with the arriving packet's interface (IPV6_PKTINFO), and an address on
        ``lo`` then has its answers sent out of the bridge, where no one has it.
        """
        await asyncio.to_thread(self.ip, "addr", "add", f"{address}/32", "dev", device)

    async def open_tap(self, name: str, bridge: str) -> int:
        """A TAP device ``name`` in the namespace, enslaved to ``bridge`` and up; its descriptor (owned here)."""
        fd = await self._in_namespace(_open_tun_device, name, IFF_TAP, what=f"TAP device {name}")
        try:
            await asyncio.to_thread(self.ip, "link", "set", name, "master", bridge, "up")
        except BaseException:
            self.release(fd)
            raise
        return fd

    async def open_tun(self, name: str, peer: ipaddress.IPv4Address) -> int:
        """A TUN device ``name`` (bare IPv4 packets, no header) with a host route to ``peer``; its descriptor."""
        fd = await self._in_namespace(_open_tun_device, name, IFF_TUN, what=f"TUN device {name}")
        try:
            await asyncio.to_thread(self._route_to, name, peer)
        except BaseException:
            self.release(fd)
            raise
        return fd

    def _route_to(self, name: str, peer: ipaddress.IPv4Address) -> None:
        self.ip("link", "set", name, "up")
        self.ip("route", "add", f"{peer}/32", "dev", name)

    async def udp_socket(self, host: str, port: int = 0) -> socket.socket:
        """A UDP socket bound to ``host:port`` inside the namespace (IPv6, v4-mapped), non-blocking."""
        sock = await self._in_namespace(_bound_udp, host, port, what=f"UDP socket on {host}:{port}", track=False)
        sock.setblocking(False)
        return sock

    def release(self, fd: int) -> None:
        """Close a descriptor :meth:`open_tap` or :meth:`open_tun` gave out (a TAP/TUN goes with its last one)."""
        if fd in self._fds:
            self._fds.discard(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def start_process(self, name: str, command: str, *, log_dir: str | os.PathLike[str] | None = None) -> NamespaceProcess:
        """Start ``command`` (a shell-style command line) inside the namespace; stopped on :meth:`close`."""
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise NamespaceError(f"command {command!r}: {exc}") from None
        proc = NamespaceProcess(self.name, name, argv, log_dir=log_dir)
        try:
            proc.start()
        except StartupError:
            said = [line for line in log_tail(proc.log_path).splitlines() if line and not line.startswith("=== ")]
            raise NamespaceError(f"command {command!r} ended at once: {said[-1] if said else 'it printed nothing'}"
                                 f" (log {proc.log_path})") from None
        self._processes.append(proc)
        return proc

    async def _in_namespace(self, fn, *args, what: str, track: bool = True):
        if self._worker is None:
            raise NamespaceError(f"network namespace {self.name} is not open")
        try:
            result = await asyncio.wrap_future(self._worker.submit(fn, *args))
        except OSError as exc:
            raise NamespaceError(f"{what} in network namespace {self.name}: {exc.strerror or exc}") from None
        if track:
            self._fds.add(result)
        return result

    def __repr__(self) -> str:
        return f"<NetworkNamespace {self.name} {'open' if self.created else 'closed'}>"


class NamespaceProcess(ManagedProcess):
    """A command running inside a namespace (``ip netns exec``), with the usual lifetime and log file."""

    apt_package = "iproute2"
    binary_name = "ip"
    binary_candidates = ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")
    #: a command that is still running this long after its start counts as started
    settle = 0.3

    def __init__(self, namespace: str, name: str, argv: list[str], *, log_dir: str | os.PathLike[str] | None = None):
        if not argv:
            raise NamespaceError(f"{name}: empty command")
        self.name = name
        super().__init__(log_dir=log_dir, ready_timeout=5.0, term_timeout=3.0)
        self.namespace = namespace
        self.argv = argv
        self._started = 0.0

    def prepare(self, port: int) -> list[str]:
        self._started = time.monotonic()
        return [self.binary(), "netns", "exec", self.namespace, *self.argv]

    def probe(self) -> None:
        # No port to probe: a command that fails at once (not found, bad arguments) has exited by now.
        if time.monotonic() - self._started < self.settle:
            raise NotReady(f"{shlex.join(self.argv)} started {time.monotonic() - self._started:.2f} s ago")


def _close_all_at_exit() -> None:
    with _open_lock:
        leftovers = list(_open)
    for ns in leftovers:
        ns.close()


atexit.register(_close_all_at_exit)
