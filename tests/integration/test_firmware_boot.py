"""The reference firmware's platform under QEMU mps2-an385: boot, shell, network.

Builds ``firmware/`` once per session into a private directory (qemu_helpers)
and boots a fresh QEMU per test. Network paths are checked two ways: through QEMU user
networking against a host UDP socket (what the gateway will see), and at
frame level over a datagram netdev where the test itself is the Ethernet peer
(ARP, ICMP echo, UDP echo, malformed frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import firmware_elf as build_firmware
from conftest import skip_without_qemu_tools
from qemu_helpers import FirmwareNode as Node
from qemu_helpers import booted as booted_firmware

from hil.console import Console
from hil.infra.qemu import QemuMachine

pytestmark = pytest.mark.emulation

GUEST_MAC = bytes.fromhex("525400123456")  # QEMU's default -nic MAC, loaded into the LAN9118 at reset
GUEST_IP = socket.inet_aton("10.0.2.15")
PEER_MAC = bytes.fromhex("020000000001")
PEER_IP = socket.inet_aton("10.0.2.2")


@pytest.fixture(scope="session")
def firmware_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    skip_without_qemu_tools()
    specs = subprocess.run(
        ["arm-none-eabi-gcc", "-print-file-name=picolibc.specs"], check=False, capture_output=True, text=True
    ).stdout.strip()
    if not os.path.isabs(specs):
        pytest.skip("picolibc for arm-none-eabi is not installed (apt-get install picolibc-arm-none-eabi)")
    return build_firmware(tmp_path_factory)


def booted(elf: Path, log_dir: Path, **qemu_options: object) -> contextlib.AbstractAsyncContextManager[Node]:
    """QEMU running the firmware, its console fed into a Console, past the first prompt."""
    return booted_firmware(
        elf, log_dir, Console("firmware console", log_dir / "console.log"), name="firmware", **qemu_options
    )


@pytest.fixture
async def node(firmware_elf: Path, tmp_path: Path) -> AsyncIterator[Node]:
    async with booted(firmware_elf, tmp_path) as n:
        yield n


# --- boot and shell -------------------------------------------------------------


async def test_boots_to_the_prompt_after_the_banner(node: Node) -> None:
    lines = [line.text for line in node.console.history]
    banner = [i for i, text in enumerate(lines) if re.search(r"\*\*\* Booting embServe reference firmware v\d+\.\d+\.\d+ \*\*\*", text)]
    prompt = [i for i, text in enumerate(lines) if text.startswith("uart:~$")]
    assert banner, f"no boot banner in {lines}"
    assert not prompt or prompt[0] > banner[0], f"prompt before the banner: {lines}"
    assert node.qemu.running


async def test_help_lists_every_top_level_command(node: Node) -> None:
    out = await node.shell.exec("help")
    listed = {m.group(1) for line in out if (m := re.match(r"\s+(\S+)\s+:", line))}
    assert {"embserve", "help", "kernel", "net", "sensor"} <= listed, out


async def test_help_for_a_command_group_lists_its_subcommands(node: Node) -> None:
    out = await node.shell.exec("help embserve connector lwm2m")
    assert any("server_add" in line for line in out), out


async def test_embserve_version(node: Node) -> None:
    out = await node.shell.exec("embserve version")
    assert any(re.fullmatch(r"embServe reference firmware v\d+\.\d+\.\d+ \(SDK API 1\)", line) for line in out), out


async def test_sensor_set_then_get_returns_the_value(node: Node) -> None:
    assert await node.shell.exec("sensor set temperature 31.25") == ["temperature = 31.250"]
    assert await node.shell.exec("sensor get temperature") == ["temperature = 31.250"]
    assert await node.shell.exec("sensor set temperature -4.5") == ["temperature = -4.500"]
    assert await node.shell.exec("sensor get temperature") == ["temperature = -4.500"]


async def test_sensor_set_rejects_bad_values_and_names(node: Node) -> None:
    out = await node.shell.exec("sensor set temperature warm")
    assert out == ["sensor set: invalid value 'warm' (expected a number such as 21.5)"]
    out = await node.shell.exec("sensor set humidity 40")
    assert out and "unknown sensor 'humidity'" in out[0] and "temperature" in out[0], out
    # the rejected commands left the value alone
    assert await node.shell.exec("sensor get temperature") == ["temperature = 22.500"]


async def test_unknown_command_is_answered_like_zephyr(node: Node) -> None:
    assert await node.shell.exec("frobnicate now") == ["frobnicate: command not found"]


async def test_wrong_argument_count_prints_usage(node: Node) -> None:
    assert await node.shell.exec("sensor set temperature") == [
        "sensor set: wrong parameter count",
        "Usage: sensor set <sensor> <value>",
    ]
    out = await node.shell.exec("embserve connector lwm2m server_add coap://10.0.2.2:5683")
    assert out[0] == "embserve connector lwm2m server_add: wrong parameter count", out


async def test_server_add_rejects_a_bad_uri_naming_it(node: Node) -> None:
    assert await node.shell.exec("embserve connector lwm2m server_add http://10.0.2.2:5683 node1") == [
        "server_add: invalid server URI 'http://10.0.2.2:5683' (expected coap://HOST:PORT)"
    ]


async def test_backspace_and_crlf_editing(node: Node) -> None:
    # "sensor gex" + 2 backspaces + "et temperature", then CR LF: one command, not two
    await node.console.write(b"sensor gex\b\x7fet temperature\r\n")
    await node.console.expect("temperature = 22.500", timeout=5)
    await node.console.expect_prompt(timeout=5)
    assert await node.shell.exec("embserve version")  # the LF after CR did not run an empty second line into it
    assert not any("command not found" in line.text for line in node.console.history)


async def test_input_sent_in_one_burst_loses_no_byte(node: Node) -> None:
    # 20 commands in one write while the shell is busy echoing: the RX ring must keep every byte
    values = [f"{i}.{'0' * 150}{i}" for i in range(1, 21)]
    await node.console.write("".join(f"sensor set temperature {v}\r\n" for v in values).encode())
    for i in range(1, 21):
        await node.console.expect(re.compile(rf"^temperature = {i}\.000$"), timeout=10)
    assert await node.shell.exec("sensor get temperature") == ["temperature = 20.000"]


async def test_garbage_on_the_console_does_not_hang_the_shell(node: Node) -> None:
    rng = random.Random(6)
    garbage = bytes(range(256)) + bytes(rng.randrange(256) for _ in range(2048)) + b"\x1b[" + b"x" * 400
    await node.console.write(garbage)
    await node.console.write(b"\x03")  # Ctrl-C: drop whatever half line the garbage left
    out = await node.shell.exec("embserve version", timeout=10)
    assert any(line.startswith("embServe reference firmware v") for line in out), out
    assert node.qemu.running


# --- network --------------------------------------------------------------------


async def test_net_iface_shows_the_static_address(node: Node) -> None:
    out = "\n".join(await node.shell.exec("net iface"))
    assert re.search(r"IPv4 address : 10\.0\.2\.15$", out, re.MULTILINE), out
    assert re.search(r"IPv4 netmask : 255\.255\.255\.0$", out, re.MULTILINE), out
    assert re.search(r"IPv4 gateway : 10\.0\.2\.2$", out, re.MULTILINE), out
    assert "Link addr : 52:54:00:12:34:56" in out


async def test_net_ipv4_set_overrides_the_address(node: Node) -> None:
    assert await node.shell.exec("net ipv4 set 192.168.7.20/16 192.168.1.1") == [
        "eth0: address 192.168.7.20 netmask 255.255.0.0 gateway 192.168.1.1"
    ]
    out = "\n".join(await node.shell.exec("net iface"))
    assert "IPv4 address : 192.168.7.20" in out and "IPv4 gateway : 192.168.1.1" in out, out
    out = await node.shell.exec("net ipv4 set 10.0.2.300/24")
    assert out == ["net ipv4 set: invalid address '10.0.2.300' (expected ADDR/PREFIX, e.g. 10.0.2.15/24)"]


async def test_udp_round_trip_through_qemu_user_networking(node: Node) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host:
        host.bind(("127.0.0.1", 0))
        host.setblocking(False)
        port = host.getsockname()[1]
        out = await node.shell.exec(f"net udp send 10.0.2.2 {port} hello-host")
        assert out == [f"net udp: sent 10 bytes to 10.0.2.2:{port} from port 49999"]
        # slirp delivers the first datagram of a new flow with up to ~1 s delay
        data, peer = await asyncio.wait_for(loop.sock_recvfrom(host, 2048), 5)
        assert data == b"hello-host"
        assert peer[0] == "127.0.0.1"
        await loop.sock_sendto(host, b"hello-guest", peer)
        await node.console.expect(f"net udp: received 11 bytes from 10.0.2.2:{port}: hello-guest", timeout=5)


# --- frame level: the test is the firmware's only Ethernet peer --------------------


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(ethertype: int, payload: bytes, dst: bytes = GUEST_MAC) -> bytes:
    return dst + PEER_MAC + struct.pack("!H", ethertype) + payload


def arp_request(target_ip: bytes) -> bytes:
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + PEER_MAC + PEER_IP + bytes(6) + target_ip
    return ethernet(0x0806, arp, dst=b"\xff" * 6)


def is_arp_request_for(frame: bytes, ip: bytes) -> bool:
    return frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01" and frame[38:42] == ip


def arp_reply_to(request: bytes) -> bytes:
    asker_mac, asker_ip = request[22:28], request[28:32]
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + PEER_MAC + PEER_IP + asker_mac + asker_ip
    return ethernet(0x0806, arp, dst=asker_mac)


def ipv4(proto: int, payload: bytes, *, src: bytes = PEER_IP, dst: bytes = GUEST_IP) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 7, 0, 64, proto, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def icmp_echo(ident: int, seq: int, data: bytes) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def udp(src_port: int, dst_port: int, data: bytes) -> bytes:
    length = 8 + len(data)
    pseudo = PEER_IP + GUEST_IP + struct.pack("!BBH", 0, 17, length)
    segment = struct.pack("!HHHH", src_port, dst_port, length, 0) + data
    return segment[:6] + struct.pack("!H", checksum(pseudo + segment) or 0xFFFF) + segment[8:]


@dataclass
class EthernetPeer:
    sock: socket.socket
    qemu_path: str
    seen: list[bytes]
    answers_arp: bool = True  # like a real host: the firmware must resolve us before it can reply

    async def send(self, frame: bytes) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, frame, self.qemu_path)

    async def expect(self, what: str, match: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                frame = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), max(remaining, 0))
            except TimeoutError:
                raise AssertionError(
                    f"no {what} within {timeout:g} s; frames seen: {[f.hex() for f in self.seen[-10:]]}"
                ) from None
            self.seen.append(frame)
            if match(frame):
                return frame
            if self.answers_arp and is_arp_request_for(frame, PEER_IP):
                await self.send(arp_reply_to(frame))


@pytest.fixture
async def wired(firmware_elf: Path, tmp_path: Path) -> AsyncIterator[tuple[Node, EthernetPeer]]:
    # Unix datagram sockets: no ports to choose, and QEMU passes raw frames through.
    with tempfile.TemporaryDirectory(prefix="fw-eth-") as sock_dir, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        peer_path, qemu_path = os.path.join(sock_dir, "peer"), os.path.join(sock_dir, "qemu")
        sock.bind(peer_path)
        sock.setblocking(False)
        netdev = f"dgram,id=net0,local.type=unix,local.path={qemu_path},remote.type=unix,remote.path={peer_path}"
        extra = ["-netdev", netdev, "-net", "nic,model=lan9118,netdev=net0"]
        async with booted(firmware_elf, tmp_path, nic=None, extra_args=extra) as n:
            yield n, EthernetPeer(sock, qemu_path, [])


async def test_arp_request_for_our_address_gets_a_reply(wired: tuple[Node, EthernetPeer]) -> None:
    _, peer = wired
    await peer.send(arp_request(GUEST_IP))
    frame = await peer.expect("ARP reply", lambda f: f[12:14] == b"\x08\x06")
    assert frame[:6] == PEER_MAC and frame[6:12] == GUEST_MAC
    op, sender_mac, sender_ip, target_mac, target_ip = struct.unpack("!6xH6s4s6s4s", frame[14:42])
    assert (op, sender_mac, sender_ip, target_mac, target_ip) == (2, GUEST_MAC, GUEST_IP, PEER_MAC, PEER_IP)
    assert len(frame) >= 60, "short frames must be padded to the Ethernet minimum"


async def test_icmp_echo_request_gets_a_correct_reply(wired: tuple[Node, EthernetPeer]) -> None:
    _, peer = wired
    payload = bytes(range(200))
    await peer.send(ethernet(0x0800, ipv4(1, icmp_echo(0x1234, 7, payload))))
    frame = await peer.expect("ICMP echo reply", lambda f: f[12:14] == b"\x08\x00" and f[23] == 1)
    ip = frame[14:]
    assert checksum(ip[:20]) == 0 and ip[12:16] == GUEST_IP and ip[16:20] == PEER_IP
    total = struct.unpack("!H", ip[2:4])[0]
    icmp = ip[20:total]
    assert checksum(icmp) == 0
    assert icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (0x1234, 7) and icmp[8:] == payload


async def test_udp_echo_port_returns_the_datagram(wired: tuple[Node, EthernetPeer]) -> None:
    _, peer = wired
    await peer.send(ethernet(0x0800, ipv4(17, udp(40000, 7, b"echo me, please"))))
    frame = await peer.expect("UDP echo", lambda f: f[12:14] == b"\x08\x00" and f[23] == 17)
    ip = frame[14:]
    total = struct.unpack("!H", ip[2:4])[0]
    segment = ip[20:total]
    src_port, dst_port, length, _ = struct.unpack("!HHHH", segment[:8])
    assert (src_port, dst_port, length) == (7, 40000, 8 + 15)
    pseudo = GUEST_IP + PEER_IP + struct.pack("!BBH", 0, 17, length)
    assert checksum(pseudo + segment) == 0
    assert segment[8:] == b"echo me, please"


async def test_malformed_frames_are_dropped_and_the_node_keeps_answering(wired: tuple[Node, EthernetPeer]) -> None:
    node, peer = wired
    good_udp = ipv4(17, udp(40000, 7, b"x"))
    bad_ip_checksum = good_udp[:10] + b"\xde\xad" + good_udp[12:]
    bad_udp_checksum = good_udp[:26] + b"\x00\x01" + good_udp[28:]
    length_beyond_frame = good_udp[:2] + struct.pack("!H", 900) + good_udp[4:]
    for junk in (
        b"\x00" * 10,                                           # shorter than an Ethernet header
        ethernet(0x0800, b"\x45\x00"),                          # truncated IPv4 header
        ethernet(0x0800, bad_ip_checksum),
        ethernet(0x0800, bad_udp_checksum),
        ethernet(0x0800, length_beyond_frame),
        ethernet(0x0800, ipv4(17, udp(40000, 9999, b"nobody listens"))),
        ethernet(0x0800, ipv4(1, icmp_echo(1, 1, b"not for us"), dst=socket.inet_aton("10.0.2.99"))),
        arp_request(socket.inet_aton("10.0.2.99")),             # someone else's address
        ethernet(0x86DD, bytes(60)),                            # IPv6: not spoken here
    ):
        await peer.send(junk)
    await peer.send(ethernet(0x0800, ipv4(1, icmp_echo(0x4242, 1, b"still alive?"))))
    frame = await peer.expect("any reply but ARP", lambda f: not is_arp_request_for(f, PEER_IP))
    assert frame[12:14] == b"\x08\x00" and frame[23] == 1, f"first reply should be the echo reply, got {frame.hex()}"
    out = "\n".join(await node.shell.exec("net iface"))
    assert "rx dropped" in out


# --- reboot -----------------------------------------------------------------------


async def test_kernel_reboot_makes_qemu_exit_cleanly(node: Node) -> None:
    await node.console.send_line("kernel reboot")
    await node.console.expect("Rebooting", timeout=5)
    assert await node.qemu.wait_exit(timeout=10) == 0


# --- the QEMU process manager itself ---------------------------------------------------


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_qemu_is_stopped_when_the_body_fails(firmware_elf: Path, tmp_path: Path) -> None:
    machine = QemuMachine(firmware_elf, log_dir=tmp_path)
    with pytest.raises(RuntimeError, match="test body failed"):
        async with machine:
            pid = machine.pid
            assert pid is not None and process_alive(pid)
            raise RuntimeError("test body failed")
    assert not process_alive(pid)
    assert machine.returncode is not None


async def test_qemu_that_dies_after_start_reports_its_exit_code_and_why(firmware_elf: Path, tmp_path: Path) -> None:
    # QEMU connects the console before it parses the network options, so this start succeeds
    machine = QemuMachine(firmware_elf, log_dir=tmp_path, nic=None, extra_args=["-netdev", "bogus,id=n0"])
    async with machine:
        assert await machine.wait_exit(timeout=10) != 0
        assert machine.reader is not None
        assert await asyncio.wait_for(machine.reader.read(), 5) == b""
    assert "bogus" in machine.log_path.read_text()


def test_sync_use_reads_the_banner_from_the_console_socket(firmware_elf: Path, tmp_path: Path) -> None:
    with QemuMachine(firmware_elf, log_dir=tmp_path) as machine:
        sock = machine.console_socket
        assert sock is not None
        sock.settimeout(10)
        received = b""
        while b"uart:~$ " not in received:
            chunk = sock.recv(4096)
            assert chunk, f"console closed; got {received!r}"
            received += chunk
        assert b"*** Booting embServe reference firmware" in received
        pid = machine.pid
    assert pid is not None and not process_alive(pid)


async def test_machine_boots_again_after_the_guest_reset_it(firmware_elf: Path, tmp_path: Path) -> None:
    async def read_until(machine: QemuMachine, marker: bytes) -> bytes:
        assert machine.reader is not None
        received = b""
        while marker not in received:
            chunk = await asyncio.wait_for(machine.reader.read(4096), 10)
            assert chunk, f"console closed before {marker!r}; got {received!r}"
            received += chunk
        return received

    machine = QemuMachine(firmware_elf, log_dir=tmp_path)
    async with machine:
        await read_until(machine, b"uart:~$ ")
        assert machine.writer is not None
        machine.writer.write(b"kernel reboot\r")
        assert await machine.wait_exit(timeout=10) == 0
        first_pid = machine.pid
        await machine.stop_async()
        await machine.start_async()  # what a harness does to bring the node back
        assert machine.pid != first_pid and machine.poll() is None
        assert b"*** Booting embServe reference firmware" in await read_until(machine, b"uart:~$ ")
    assert machine.log_path.read_text().count("start: ") == 2, "both runs log to the same file"
