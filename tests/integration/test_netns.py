"""Network namespaces of our own: a bridge with the host's address, TAP and TUN devices, sockets inside, all gone after.

Real kernel objects through iproute2 and /dev/net/tun; skipped without the
privileges they need.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess

import pytest

from hil.infra.netns import NamespaceError, NetworkNamespace, ip_command, namespaces, sweep_stale, unavailable_reason


@pytest.fixture(autouse=True)
def _need_namespaces():
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"needs network namespaces: {reason}")


async def test_a_namespace_holds_a_bridge_devices_sockets_and_processes_and_goes_with_all_of_them(tmp_path):
    async with NetworkNamespace() as ns:
        name = ns.name
        assert name in namespaces()
        await ns.add_bridge("lnxbr-0", ipaddress.IPv4Interface("10.10.12.254/24"))
        tap = await ns.open_tap("tap1", "lnxbr-0")
        tun = await ns.open_tun("sl1", ipaddress.IPv4Address("10.10.12.9"))
        assert "master lnxbr-0" in ns.ip("-o", "link", "show", "tap1")
        assert "10.10.12.9 dev sl1" in ns.ip("route")
        # the host's namespace has none of it
        assert "lnxbr-0" not in ip_command("-o", "link") and "10.10.12.254" not in ip_command("-o", "addr")

        server = await ns.udp_socket("10.10.12.254", 5683)
        client = await ns.udp_socket("10.10.12.254", 0)
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(client, b"ping", ("::ffff:10.10.12.254", 5683))
        data, sender = await asyncio.wait_for(loop.sock_recvfrom(server, 100), 5)
        assert data == b"ping" and sender[0] == "::ffff:10.10.12.254"
        # a packet routed to the TUN's peer comes out of the TUN descriptor, as the node's SLIP line would get it
        await loop.sock_sendto(client, b"to the node", ("::ffff:10.10.12.9", 7000))
        os.set_blocking(tun, True)
        packet = await asyncio.wait_for(asyncio.to_thread(os.read, tun, 2000), 5)
        assert packet[0] >> 4 == 4 and packet[16:20] == ipaddress.IPv4Address("10.10.12.9").packed
        assert packet.endswith(b"to the node")
        for sock in (server, client):
            sock.close()

        sleeper = ns.start_process("sleeper", "sleep 60", log_dir=tmp_path)
        assert str(sleeper.pid) in ip_command("netns", "pids", name).split()
        ns.release(tap)
        assert "tap1" not in ns.ip("-o", "link")  # a TAP goes with its last descriptor
    assert name not in namespaces()
    assert not sleeper.running


async def test_a_command_that_fails_at_once_is_an_error_with_its_log(tmp_path):
    async with NetworkNamespace() as ns:
        with pytest.raises(NamespaceError) as err:
            ns.start_process("broken", "no-such-command-here --flag", log_dir=tmp_path)
        message = str(err.value)
        assert message.startswith("command 'no-such-command-here --flag' ended at once: ") and "\n" not in message
        assert "no-such-command-here" in message.split(": ", 1)[1] and str(tmp_path) in message


async def test_a_device_that_cannot_be_made_is_an_error_naming_it():
    async with NetworkNamespace() as ns:
        await ns.add_bridge("lnxbr-0")
        with pytest.raises(NamespaceError, match="TAP device name-far-too-long-for-linux"):
            await ns.open_tap("name-far-too-long-for-linux", "lnxbr-0")
        with pytest.raises(NamespaceError, match="UDP socket on 192.0.2.7:5683"):
            await ns.udp_socket("192.0.2.7", 5683)  # no such address in the namespace


def test_namespaces_left_by_a_killed_process_are_swept():
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"ehil-{dead.pid}-1"
    ip_command("netns", "add", stale)
    try:
        assert stale in sweep_stale()
        assert stale not in namespaces()
    finally:
        if stale in namespaces():
            ip_command("netns", "delete", stale)


def test_udp_socket_is_ipv6_with_v4_mapped_addresses():
    async def made() -> socket.socket:
        async with NetworkNamespace() as ns:
            return await ns.udp_socket("127.0.0.1", 0)

    sock = asyncio.run(made())
    try:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        assert sock.getsockname()[0] == "::ffff:127.0.0.1"
    finally:
        sock.close()


async def test_a_slip_line_relayed_to_a_tun_puts_its_node_at_its_own_address():
    """The Renode node's path into a fleet's network, with the line's far end played by a socket pair."""
    from hil.net import SlipDecoder, StreamLink, build_udp, parse_ipv4, parse_udp, slip_encode
    from hil.net.tun import SlipTunRelay

    node_end, harness_end = socket.socketpair()
    async with NetworkNamespace() as ns:
        await ns.add_bridge("lnxbr-0", ipaddress.IPv4Interface("10.10.12.254/24"))
        tun = await ns.open_tun("sl3", ipaddress.IPv4Address("10.10.12.3"))
        gateway = await ns.udp_socket("10.10.12.254", 5683)
        relay = SlipTunRelay(StreamLink(*await asyncio.open_connection(sock=harness_end), name="line"), tun)
        node_reader, node_writer = await asyncio.open_connection(sock=node_end)
        async with relay:
            node_writer.write(slip_encode(build_udp("10.10.12.3", 40000, "10.10.12.254", 5683, b"register")))
            loop = asyncio.get_running_loop()
            data, sender = await asyncio.wait_for(loop.sock_recvfrom(gateway, 100), 5)
            assert (data, sender[:2]) == (b"register", ("::ffff:10.10.12.3", 40000))  # from the node's own address
            await loop.sock_sendto(gateway, b"created", sender)
            decoder, frames = SlipDecoder(), []
            while not frames:
                frames = decoder.feed(await asyncio.wait_for(node_reader.read(2000), 5))
            answer = parse_udp(parse_ipv4(frames[0]))
            assert (str(answer.src), answer.src_port, answer.dst_port, answer.payload) == ("10.10.12.254", 5683, 40000, b"created")
            assert (relay.stats.to_network, relay.stats.to_node) == (1, 1)
        node_writer.close()
        gateway.close()
