"""IP for devices without Ethernet: SLIP framing, IPv4/UDP packets and the harness's SLIP bridge; a lossy UDP link for fault tests."""

from .bridge import BridgeStats, Flow, SlipBridge  # noqa: F401
from .endpoint import SlipEndpoint  # noqa: F401
from .ipv4 import PacketError, UdpDatagram, build_udp, parse_ipv4, parse_udp  # noqa: F401
from .lossy import LinkStats, LossyLink  # noqa: F401
from .links import (  # noqa: F401
    SerialLink,
    SlipLink,
    StreamLink,
    open_fd_link,
    open_serial_link,
    open_tcp_link,
)
from .slip import SlipDecoder, slip_encode  # noqa: F401
