"""The devices a probe's first packet crossed on the kernel side, against the simulator's
pcaps (issue 13: "the devices crossed").

The kernel side: one packet socket per device of every namespace the fabric has but the
bridges (what `tcpdump -i DEVICE` opens: `AF_PACKET`, `ETH_P_ALL`, promiscuous), drained
after each batch.  A bridge is left out on both sides: a promiscuous bridge also passes
every frame it forwards up to its own IP layer (br_handle_frame_finish: IFF_PROMISC ->
local_rcv), and there br_netfilter's DNAT routes a second copy of a bridged-DNAT packet
(seen on this kernel: the endpoint got the request twice, with TTL 64 and 63); its ports
(the veths) show the path.  The
probes of a batch run at once, so each client marks its packets with its own TOS byte
(`IP_TOS`, `mark_of`): forwarding, NAT and the inner header of VXLAN and IP-in-IP keep it,
so a frame is a probe's by its (inner) TOS.  Marks stay below 0xC0: an ICMP error's TOS is
`(tos & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL` (icmp_send), 0xC0 or more, so no
error passes for a probe's packet.  A server's reply carries the server's TOS (0), but the
kernel reflects the TOS in an echo reply (icmp_reply) and in a RST (tcp_v4_send_reset):
so only the probe's first packet is compared, a TCP SYN, an ICMP echo request or a UDP
datagram (and its fragments), on both sides (`first_packet`): the devices it crossed, and
its TTL on arrival at each (the inner header's, for a tunnel's outer frame).

The simulator's side: its captures (`Trace.frames`) of request hops.  Outer VXLAN and
IP-in-IP frames count by their inner packet.  Compared where both sides mark a probe:
a `Client` job (DNS lookups, crafted sends and replays are not marked).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable

from dataplane.kernel import netns
from dataplane.packet import (
    ICMP,
    ICMP_ECHO_REQUEST,
    IP,
    IPPROTO_ICMP,
    IPPROTO_IPIP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP,
    Packet,
)
from dataplane.trace import Trace

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772  # link types with an Ethernet header
VXLAN_PORTS = frozenset({4789, 8472})  # IANA's and the Linux default flannel keeps
TCP_SYN, TCP_ACK = 0x02, 0x10
MARKS = 47  # TOS 0x04 .. 0xBC, in steps of 4 (the ECN bits stay 0)
BUFFER = 1 << 20

Where = tuple[str, str]  # the simulator's namespace id, the device
Crossing = tuple[str, str, int]  # ... and the TTL the packet had there


def mark_of(index: int) -> int:
    """The TOS byte of the `index`-th marked probe of a batch (0 <= index < MARKS).

    >>> mark_of(0), mark_of(46)
    (4, 188)
    """
    return (index + 1) << 2


def first_packet(data: bytes) -> tuple[int, bool, int] | None:
    """An IPv4 packet's TOS, whether it is a probe's first packet (a SYN, an echo
    request, a UDP datagram or a fragment of one), and its TTL; the inner packet of
    VXLAN (UDP to 4789 or 8472) and IP-in-IP; None for what is not IPv4.

    >>> syn = bytes([0x45, 8, 0, 40]) + bytes(5) + bytes([6]) + bytes(10) + (
    ...     bytes(13) + bytes([0x02]) + bytes(6))
    >>> first_packet(syn)
    (8, True, 0)
    """
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    tos, ttl, proto = data[1], data[8], data[9]
    offset = struct.unpack_from("!H", data, 6)[0] & 0x1FFF
    body = data[ihl:]
    if proto == IPPROTO_IPIP:
        return first_packet(body)
    if offset:  # a later fragment: no transport header
        return tos, proto == IPPROTO_UDP, ttl
    if proto == IPPROTO_UDP and len(body) >= 8:
        if struct.unpack_from("!H", body, 2)[0] in VXLAN_PORTS:
            inner = body[16:]
            if len(inner) >= 14 and struct.unpack_from("!H", inner, 12)[0] == ETH_P_IP:
                return first_packet(inner[14:])
        return tos, True, ttl
    if proto == IPPROTO_TCP and len(body) >= 14:
        flags = body[13]
        return tos, bool(flags & TCP_SYN) and not flags & TCP_ACK, ttl
    if proto == IPPROTO_ICMP and body:
        return tos, body[0] == ICMP_ECHO_REQUEST, ttl
    return tos, False, ttl


class Captures:
    """Packet sockets on every device of the given namespaces (see the module text)."""

    def __init__(self, devices: Iterable[tuple[str, str, Where]]) -> None:
        """`devices`: (kernel namespace, device, where the simulator names it)."""
        self.sockets: list[tuple[socket.socket, Where]] = []
        try:
            for kernel_ns, ifname, where in devices:
                with netns.inside(kernel_ns):
                    s = socket.socket(
                        socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)
                    )
                    self.sockets.append((s, where))
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
                    s.bind((ifname, 0))
                    index = socket.if_nametoindex(ifname)  # in this namespace
                mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
                s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
                s.setblocking(False)
        except BaseException:
            self.close()
            raise

    def clear(self) -> None:
        """Forget what the devices saw so far."""
        for s, _where in self.sockets:
            for _ in _drain(s):
                pass

    def take(self) -> dict[int, set[Crossing]]:
        """Per TOS mark, the devices that saw a probe's first packet since `clear`, with
        its TTL there."""
        out: dict[int, set[Crossing]] = {}
        for s, where in self.sockets:
            for data, hatype in _drain(s):
                if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
                    if (
                        len(data) < 14
                        or struct.unpack_from("!H", data, 12)[0] != ETH_P_IP
                    ):
                        continue
                    data = data[14:]
                seen = first_packet(data)
                if seen is not None and seen[1]:
                    out.setdefault(seen[0], set()).add((*where, seen[2]))
        return out

    def close(self) -> None:
        for s, _where in self.sockets:
            s.close()
        self.sockets.clear()


def _drain(s: socket.socket) -> Iterable[tuple[bytes, int]]:
    while True:
        try:
            data, addr = s.recvfrom(65535)
        except BlockingIOError:
            return
        yield data, addr[3]


def sim_devices(trace: Trace) -> set[Crossing]:
    """The devices the simulator's captures saw the probe's first packet on, with its
    TTL there: request hops, a TCP SYN, an echo request, a UDP datagram or fragment
    (the inner packet of a tunnel); bridges left out (see the module text)."""
    out: set[Crossing] = set()
    bridges = {hop.device for hop in trace.hops if hop.event == "bridge"}
    for frame in trace.frames:
        hop = trace.hops[frame.seq - 1] if 0 < frame.seq <= len(trace.hops) else None
        if hop is None or hop.direction != "request" or frame.device in bridges:
            continue
        ip = _first(frame.packet)
        if ip is not None:
            out.add((frame.netns, frame.device, ip.ttl))
    return out


def _first(pkt: Packet) -> IP | None:
    """The IP header of a probe's first packet (innermost), or None."""
    while pkt.inner is not None:
        pkt = pkt.inner
    ip = pkt.ip
    if ip is None:
        return None
    l4 = pkt.l4
    if ip.frag or l4 is None:
        first = ip.proto == IPPROTO_UDP
    elif isinstance(l4, TCP):
        first = "S" in l4.flags and "A" not in l4.flags
    elif isinstance(l4, ICMP):
        first = l4.type == ICMP_ECHO_REQUEST
    else:
        first = ip.proto == IPPROTO_UDP
    return ip if first else None
