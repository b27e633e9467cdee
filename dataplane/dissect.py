"""Captured bytes as walk packets, dissected strictly: a malformed header is named, never
walked as if it were valid.

The checks and their words are Wireshark's dissectors' (epan/dissectors/packet-ip.c,
packet-tcp.c, packet-udp.c), so a packet this module calls malformed is one Wireshark marks
so too: `Bogus IP length (16, less than header length 20)`, `Bad length value 3 < 8`.  A
header that is well formed but holds what the walk does not carry (IP or TCP options, a
fragment, an ICMP error, another IP protocol) is a plain ValueError.  Plain `struct` reads,
no scapy: a replay dissects every packet of a capture, and building a scapy packet costs
more than walking one.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import replace

from dataplane.packet import (
    ARP,
    ETH_HLEN,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_TEB,
    GENEVE_HLEN,
    GENEVE_PORT,
    ICMP,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_HLEN,
    IP,
    IP_HLEN,
    IPPROTO_ICMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SCTP,
    TCP,
    TCP_HLEN,
    UDP,
    UDP_HLEN,
    VXLAN,
    VXLAN_HLEN,
    Ether,
    Geneve,
    Packet,
)

TCP_FLAGS = "FSRPAUECN"  # the 9 flag bits, lowest first, as scapy names them
SCTP_CHUNKS = {1: "INIT", 2: "INIT-ACK", 6: "ABORT"}
SCTP_HLEN = 12
VXLAN_FLAG_I = 0x08  # RFC 7348: the VNI is valid
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBH")
_UDP = struct.Struct("!HHH")
_ICMP = struct.Struct("!BBHHH")
_SCTP = struct.Struct("!HHI")


class Malformed(ValueError):
    """A header Wireshark would mark malformed; the message is its reason."""


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def _tcp_flags(bits: int) -> str:
    return "".join(f for i, f in enumerate(TCP_FLAGS) if bits >> i & 1)


def _need(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise Malformed(f"truncated {what} ({len(data)} of {n} bytes)")


def dissect_ip(
    data: bytes, vxlan_ports: tuple[int, ...] = (), snapped: bool = False
) -> Packet:
    """An IPv4 packet from its first byte; `snapped`: the capture's snaplen cut it, so
    bytes missing at the end are zeros (the headers are what the walk needs).  UDP to one
    of `vxlan_ports` with the VXLAN I flag keeps its inner frame, as does Geneve to its IANA
    port 6081 (version 0, no options, an Ethernet frame inside: RFC 8926)."""
    _need(data, IP_HLEN, "IPv4 header")
    vhl, tos, total, ident, frag, ttl, proto, _sum, src, dst = _IP.unpack_from(data)
    version, hlen = vhl >> 4, (vhl & 0x0F) * 4
    if version != 4:
        raise Malformed(f"Bogus IPv4 version ({version}, must be 4)")
    if hlen < IP_HLEN:
        raise Malformed(f"Bogus IP header length ({hlen}, must be at least {IP_HLEN})")
    if total < hlen:
        raise Malformed(f"Bogus IP length ({total}, less than header length {hlen})")
    if total > len(data):
        if not snapped:
            raise Malformed(
                f"IPv4 total length exceeds packet length ({len(data)} bytes)"
            )
        data += bytes(total - len(data))
    if hlen > IP_HLEN:
        raise ValueError("IP options are not supported")
    ip = IP(
        src=socket.inet_ntoa(src),
        dst=socket.inet_ntoa(dst),
        proto=proto,
        ttl=ttl,
        id=ident,
        df=bool(frag & 0x4000),
        mf=bool(frag & 0x2000),
        frag=frag & 0x1FFF,
        tos=tos,
    )
    if ip.mf or ip.frag:
        raise ValueError("IP fragments cannot be sent on their own")
    body = data[hlen:total]  # beyond the total length: link padding, not the packet's
    if proto == IPPROTO_TCP:
        return _tcp(ip, body)
    if proto == IPPROTO_UDP:
        return _udp(ip, body, vxlan_ports)
    if proto == IPPROTO_ICMP:
        return _icmp(ip, body)
    if proto == IPPROTO_SCTP:
        return _sctp(ip, body)
    raise ValueError(f"IP protocol {proto} is not supported (tcp, udp, sctp, icmp)")


def _tcp(ip: IP, body: bytes) -> Packet:
    _need(body, TCP_HLEN, "TCP header")
    sport, dport, seq, ack, off, flags, window = _TCP.unpack_from(body)
    hlen = (off >> 4) * 4
    if hlen < TCP_HLEN:
        raise Malformed(
            f"Bogus TCP header length ({hlen}, must be at least {TCP_HLEN})"
        )
    _need(body, hlen, "TCP header")
    if hlen > TCP_HLEN:
        raise ValueError(
            "TCP options are not supported (the walk keeps 20-byte headers)"
        )
    l4 = TCP(sport, dport, _tcp_flags((off & 1) << 8 | flags), seq, ack, window)
    return Packet(ip=ip, l4=l4, data=body[hlen:])


def _udp(ip: IP, body: bytes, vxlan_ports: tuple[int, ...]) -> Packet:
    _need(body, UDP_HLEN, "UDP header")
    sport, dport, length = _UDP.unpack_from(body)
    if length < UDP_HLEN:
        raise Malformed(f"Bad length value {length} < {UDP_HLEN}")
    if length > len(body):
        raise Malformed(f"Bad length value {length} > IP payload length")
    data = body[UDP_HLEN:length]  # bytes past the UDP length are not the datagram's
    pkt = Packet(ip=ip, l4=UDP(sport, dport), data=data)
    if (
        dport in vxlan_ports
        and len(data) >= VXLAN_HLEN + ETH_HLEN
        and data[0] & VXLAN_FLAG_I
    ):
        vni = int.from_bytes(data[4:7], "big")
        inner = dissect_frame(data[VXLAN_HLEN:])
        pkt = replace(pkt, tunnel=VXLAN(vni), inner=inner, data=b"")
    elif dport == GENEVE_PORT and len(data) >= GENEVE_HLEN + ETH_HLEN:
        # options would be lost on the way out: such a datagram stays opaque UDP data
        version, optlen = data[0] >> 6, data[0] & 0x3F
        protocol = int.from_bytes(data[2:4], "big")
        if version == 0 and optlen == 0 and protocol == ETH_P_TEB:
            vni = int.from_bytes(data[4:7], "big")
            inner = dissect_frame(data[GENEVE_HLEN:])
            pkt = replace(pkt, tunnel=Geneve(vni), inner=inner, data=b"")
    return pkt


def _icmp(ip: IP, body: bytes) -> Packet:
    _need(body, ICMP_HLEN, "ICMP header")
    itype, code, _sum, ident, seq = _ICMP.unpack_from(body)
    if itype not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
        raise ValueError("only ICMP echo requests and replies can be sent")
    return Packet(ip=ip, l4=ICMP(itype, code, ident, seq), data=body[ICMP_HLEN:])


def _sctp(ip: IP, body: bytes) -> Packet:
    _need(body, SCTP_HLEN, "SCTP common header")
    sport, dport, tag = _SCTP.unpack_from(body)
    chunk = body[SCTP_HLEN:]
    _need(chunk, 4, "SCTP chunk header")
    length = int.from_bytes(chunk[2:4], "big")
    if length < 4:
        raise Malformed(f"Bogus SCTP chunk length ({length}, must be at least 4)")
    name = SCTP_CHUNKS.get(chunk[0])
    if name is None:
        raise ValueError(
            f"SCTP chunk type {chunk[0]} is not supported (INIT, INIT-ACK, ABORT)"
        )
    return Packet(ip=ip, l4=SCTP(sport, dport, name, tag))


def dissect_frame(data: bytes) -> Packet:
    """An Ethernet frame carrying IPv4 or ARP (the inner frame of VXLAN)."""
    _need(data, ETH_HLEN, "Ethernet header")
    eth = Ether(_mac(data[6:12]), _mac(data[0:6]), int.from_bytes(data[12:14], "big"))
    if eth.type == ETH_P_ARP:
        arp = data[ETH_HLEN:]
        _need(arp, 28, "ARP packet")
        op = int.from_bytes(arp[6:8], "big")
        return Packet(
            eth=eth,
            arp=ARP(op, _mac(arp[8:14]), socket.inet_ntoa(arp[14:18]),
                    _mac(arp[18:24]), socket.inet_ntoa(arp[24:28])),
        )  # fmt: skip
    if eth.type != ETH_P_IP:
        raise ValueError(f"not an IPv4 packet: ethertype 0x{eth.type:04x}")
    return replace(dissect_ip(data[ETH_HLEN:]), eth=eth)


__all__ = ["Malformed", "dissect_frame", "dissect_ip"]
