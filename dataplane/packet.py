"""Packets as the walk carries them, and their exact conversion to and from scapy.

scapy is exact but slow (hundreds of microseconds to build one packet), so the walk carries
small frozen header records (`Ether`, `ARP`, `IP`, `TCP`, `UDP`, `SCTP`, `ICMP`, `VXLAN`,
`Geneve`)
and rewrites them with `dataclasses.replace`; a hop keeps the packet as it was, and the scapy
packet (for display, pcap and tshark) is rebuilt on demand by `to_scapy`.  This is the only
module that imports scapy (besides `dataplane.craft` and `dataplane.dns`, which build their
packets with it), and only inside the functions that need it: it never sets an address
from the host's tables and never calls `send`, `sr` or `route`, so scapy is told not to read
them (`scapy_ready`).

Lengths follow the wire: `frame_len` of an 84-byte echo request in VXLAN is 148 bytes
(14 + 20 + 8 + 8 + 14 + 84), as docs/model.md (reference walks) records from a real kernel.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, replace
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from scapy.packet import Packet as ScapyPacket

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"

IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_SCTP = 132
PROTO_NAMES = {
    IPPROTO_ICMP: "icmp",
    IPPROTO_TCP: "tcp",
    IPPROTO_UDP: "udp",
    132: "sctp",
}

# ICMP types and codes (RFC 792) the walk produces.
ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_REDIRECT = 5
REDIRECT_HOST = 1  # ICMP_REDIR_HOST: the only code Linux sends (ip_rt_send_redirect)
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
UNREACH_NET = 0
UNREACH_HOST = 1
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4
UNREACH_ADMIN = 13

ARP_REQUEST = 1
ARP_REPLY = 2

IP_HLEN = 20
ETH_HLEN = 14
VXLAN_HLEN = 8
GENEVE_HLEN = 8  # RFC 8926 3.4: the fixed header; Cilium sends no options
ETH_P_TEB = 0x6558  # Transparent Ethernet Bridging: Geneve's Protocol Type for a frame
GENEVE_PORT = 6081  # IANA's; the geneve module's and Cilium's tunnel-port default
UDP_HLEN = 8
TCP_HLEN = 20
ICMP_HLEN = 8
# An ICMP error quotes as much of the offending packet as fits in 576 bytes (RFC 1812
# 4.3.2.3; Linux icmp_send()).
ICMP_ERROR_MAX = 576


@dataclass(frozen=True, slots=True)
class Ether:
    src: str
    dst: str
    type: int = ETH_P_IP


@dataclass(frozen=True, slots=True)
class ARP:
    op: int
    hwsrc: str
    psrc: str
    hwdst: str
    pdst: str


@dataclass(frozen=True, slots=True)
class IP:
    src: str
    dst: str
    proto: int
    ttl: int = 64
    id: int = 1
    df: bool = False
    mf: bool = False
    frag: int = 0  # fragment offset in 8-byte units
    tos: int = 0


_IP_FIELDS = ("src", "dst", "proto", "ttl", "id", "df", "mf", "frag", "tos")
assert tuple(f.name for f in fields(IP)) == _IP_FIELDS, "with_ip, with_ttl copy each"


@dataclass(frozen=True, slots=True)
class TCP:
    sport: int
    dport: int
    flags: str = "S"
    seq: int = 0
    ack: int = 0
    window: int = 64240


@dataclass(frozen=True, slots=True)
class UDP:
    sport: int
    dport: int


# SCTP chunks the walk uses: INIT (1), INIT ACK (2), ABORT (6).
SCTP_CHUNK_LEN = {"INIT": 20, "INIT-ACK": 20, "ABORT": 4}


@dataclass(frozen=True, slots=True)
class SCTP:
    sport: int
    dport: int
    chunk: str = "INIT"
    tag: int = 0


@dataclass(frozen=True, slots=True)
class ICMP:
    type: int
    code: int = 0
    id: int = 0
    seq: int = 0
    mtu: int = 0  # next-hop MTU of "fragmentation needed" (RFC 1191)
    gateway: str = ""  # the better first hop a redirect names (RFC 792, type 5)
    quote: Packet | None = None  # the offending packet (from its IP header on)


@dataclass(frozen=True, slots=True)
class VXLAN:
    vni: int = 1


@dataclass(frozen=True, slots=True)
class Geneve:
    """A Geneve header (RFC 8926) without options, carrying an Ethernet frame."""

    vni: int = 0
    protocol: int = ETH_P_TEB


Tunnel = VXLAN | Geneve  # the UDP tunnel headers: what `Packet.tunnel` may hold
TUNNEL_NAMES: dict[type, str] = {VXLAN: "VXLAN", Geneve: "Geneve"}


L4 = TCP | UDP | SCTP | ICMP


@dataclass(frozen=True, slots=True)
class Packet:
    """One packet or frame: headers outermost first, the payload as bytes.

    `eth` is None while a packet is inside the IP layer (before the neighbour lookup gives
    it a link header).  A VXLAN or Geneve packet is `ip`/`l4` UDP/`tunnel` with the inner
    frame in `inner`; an IP-in-IP packet is `ip` (protocol 4) with the inner packet (no link
    header) in `inner` and no `l4`.  A fragment other than the first has no `l4`; `whole` keeps the datagram the
    fragment was cut from and `frag_len` its share of the IP payload.
    """

    eth: Ether | None = None
    arp: ARP | None = None
    ip: IP | None = None
    l4: L4 | None = None
    tunnel: Tunnel | None = None
    inner: Packet | None = None
    data: bytes = b""
    whole: Packet | None = None
    frag_len: int = 0
    app: Any = None  # an application message above l4 (a DNS message), or None
    # A reassembled datagram: its largest fragment's IP length (IPCB(skb)->frag_max_size,
    # set by ip_defrag()); output refragments it at that size.  0: not reassembled.
    frag_max: int = 0

    # -- lengths -------------------------------------------------------------------------
    def l4_len(self) -> int:
        """Length of the transport header (and, for ICMP errors, the quote)."""
        l4 = self.l4
        if l4 is None:
            return 0
        if isinstance(l4, TCP):
            return TCP_HLEN
        if isinstance(l4, UDP):
            return UDP_HLEN
        if isinstance(l4, SCTP):
            return 12 + SCTP_CHUNK_LEN[l4.chunk]
        if l4.quote is not None:
            return ICMP_HLEN + min(
                l4.quote.ip_len(), ICMP_ERROR_MAX - IP_HLEN - ICMP_HLEN
            )
        return ICMP_HLEN

    def payload_len(self) -> int:
        """Bytes above the transport header (the tunnel header plus the inner frame, or
        data)."""
        if self.inner is not None:
            if self.tunnel is not None:
                hlen = VXLAN_HLEN if type(self.tunnel) is VXLAN else GENEVE_HLEN
                return hlen + self.inner.frame_len()
            return self.inner.ip_len()  # IP-in-IP
        if self.app is not None:
            return len(app_bytes(self.app))
        return len(self.data)

    def ip_len(self) -> int:
        """The IP total length."""
        if self.whole is not None:
            return IP_HLEN + self.frag_len
        # the walk asks this of most packets it forwards: TCP and UDP without the calls
        l4 = self.l4
        fixed = _FIXED_HLEN.get(type(l4))
        head = IP_HLEN + (fixed if fixed is not None else self.l4_len())
        if self.inner is None and self.app is None:
            return head + len(self.data)
        return head + self.payload_len()

    def frame_len(self) -> int:
        """Length on the wire without FCS, as tcpdump reports it."""
        if self.arp is not None:
            return ETH_HLEN + 28
        return ETH_HLEN + self.ip_len()

    # -- rewriting -----------------------------------------------------------------------
    def with_ip(self, **changes: Any) -> Packet:
        ip = self.ip
        assert ip is not None
        values: dict[str, Any] = {
            "src": ip.src, "dst": ip.dst, "proto": ip.proto, "ttl": ip.ttl,
            "id": ip.id, "df": ip.df, "mf": ip.mf, "frag": ip.frag, "tos": ip.tos,
        }  # fmt: skip
        values.update(changes)
        return self._with(self.eth, IP(**values))

    def with_ttl(self, ttl: int) -> Packet:
        """This packet with another TTL (a router's decrement, once per forwarded
        packet: the header built in one call, without `with_ip`'s keywords)."""
        ip = self.ip
        assert ip is not None
        return self._with(
            self.eth,
            IP(ip.src, ip.dst, ip.proto, ttl, ip.id, ip.df, ip.mf, ip.frag, ip.tos),
        )

    def with_l4(self, **changes: Any) -> Packet:
        assert self.l4 is not None
        return replace(self, l4=replace(self.l4, **changes))

    def with_eth(self, src: str, dst: str) -> Packet:
        etype = ETH_P_ARP if self.arp is not None else ETH_P_IP
        return self._with(Ether(src, dst, etype), self.ip)

    def l3(self) -> Packet:
        """The packet without its link header."""
        return self._with(None, self.ip) if self.eth is not None else self

    def _with(self, eth: Ether | None, ip: IP | None) -> Packet:
        """This packet with another link and IP header (the walk's most common copies,
        spelled out: `dataclasses.replace` costs three times as much)."""
        return Packet(
            eth, self.arp, ip, self.l4, self.tunnel, self.inner, self.data,
            self.whole, self.frag_len, self.app, self.frag_max,
        )  # fmt: skip

    # -- flows ---------------------------------------------------------------------------
    @property
    def sport(self) -> int:
        if self.l4 is None and self.whole is not None and self.ip and self.ip.frag == 0:
            return self.whole.sport  # a first fragment carries the transport header
        l4 = self.l4
        if isinstance(l4, ICMP):
            return l4.id
        return l4.sport if l4 is not None else 0

    @property
    def dport(self) -> int:
        if self.l4 is None and self.whole is not None and self.ip and self.ip.frag == 0:
            return self.whole.dport
        l4 = self.l4
        if isinstance(l4, ICMP):
            return l4.id
        return l4.dport if l4 is not None else 0

    def summary(self) -> str:
        return summarize(self)


_FIXED_HLEN: dict[type, int] = {TCP: TCP_HLEN, UDP: UDP_HLEN}  # `Packet.ip_len`


def fast_init(*classes: type) -> None:
    """Give frozen, slotted dataclasses an `__init__` that costs what a plain class's does.

    A frozen dataclass's `__init__` writes each field through `object.__setattr__`, a
    generic call several times dearer than a plain store, and a walk builds dozens of
    packets and headers per probe.  This `__init__` (same parameters, same defaults)
    writes each slot through its own descriptor instead.  The records stay frozen
    (`__setattr__` still refuses); `replace`, equality and hashing are the dataclass's.
    """
    for cls in classes:
        scope: dict[str, Any] = {}
        params, body = [], []
        for f in fields(cls):
            scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
            if f.default is MISSING:
                params.append(f.name)
            else:
                scope[f"_default_{f.name}"] = f.default
                params.append(f"{f.name}=_default_{f.name}")
            body.append(f"\n    _set_{f.name}(self, {f.name})")
        exec(f"def __init__(self, {', '.join(params)}):{''.join(body)}", scope)
        init = scope["__init__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = init  # type: ignore[misc]


fast_init(Ether, ARP, IP, TCP, UDP, SCTP, ICMP, VXLAN, Geneve, Packet)


def app_bytes(app: Any) -> bytes:
    """The wire bytes of an application message (objects with `to_bytes()`)."""
    data: bytes = app.to_bytes()
    return data


# -- display --------------------------------------------------------------------------------

ICMP_NAMES = {
    (0, None): "echo-reply",
    (8, None): "echo-request",
    (11, None): "time-exceeded",
    (3, 0): "net-unreachable",
    (3, 1): "host-unreachable",
    (3, 3): "port-unreachable",
    (3, 4): "frag-needed",
    (3, 13): "admin-prohibited",
    (5, 1): "redirect-host",
}


def icmp_name(icmp: ICMP) -> str:
    return (
        ICMP_NAMES.get((icmp.type, None))
        or ICMP_NAMES.get((icmp.type, icmp.code))
        or f"type {icmp.type} code {icmp.code}"
    )


def short_mac(mac: str) -> str:
    """`0a:58:0a:00:01:03` -> `0a:..:03`, for hop tables."""
    return f"{mac[:2]}:..:{mac[-2:]}"


def summarize(
    pkt: Packet, macs: bool = True, mac: Callable[[str], str] = short_mac
) -> str:
    """One line: `Ether a > b / IP 10.0.1.3 > 10.0.2.2 ttl 64 / TCP 40000 > 80 S`
    (`mac` shortens each MAC address)."""
    parts: list[str] = []
    if pkt.eth is not None and macs:
        parts.append(f"Ether {mac(pkt.eth.src)} > {mac(pkt.eth.dst)}")
    if pkt.arp is not None:
        a = pkt.arp
        if a.op == ARP_REQUEST:
            parts.append(f"ARP who-has {a.pdst} tell {a.psrc}")
        else:
            parts.append(f"ARP {a.psrc} is-at {a.hwsrc}")
        return " / ".join(parts)
    ip = pkt.ip
    if ip is None:
        return " / ".join(parts) or "(empty)"
    flags = "".join(f for f, on in (("DF", ip.df), ("MF", ip.mf)) if on)
    frag = f" frag {ip.frag * 8}" if ip.frag or ip.mf else ""
    parts.append(
        f"IP {ip.src} > {ip.dst} ttl {ip.ttl} len {pkt.ip_len()}"
        + (f" {flags}" if flags else "")
        + frag
    )
    l4 = pkt.l4
    if isinstance(l4, TCP):
        parts.append(f"TCP {l4.sport} > {l4.dport} {l4.flags}")
    elif isinstance(l4, UDP):
        parts.append(f"UDP {l4.sport} > {l4.dport}")
    elif isinstance(l4, SCTP):
        parts.append(f"SCTP {l4.sport} > {l4.dport} {l4.chunk}")
    elif isinstance(l4, ICMP):
        extra = f" mtu {l4.mtu}" if l4.mtu else ""
        extra += f" gateway {l4.gateway}" if l4.gateway else ""
        parts.append(f"ICMP {icmp_name(l4)}{extra}")
    if pkt.tunnel is not None and pkt.inner is not None:
        parts.append(f"{TUNNEL_NAMES[type(pkt.tunnel)]} vni {pkt.tunnel.vni}")
        parts.append(summarize(pkt.inner, macs, mac))
    elif pkt.inner is not None:
        parts.append("IPIP")
        parts.append(summarize(pkt.inner, macs, mac))
    elif pkt.app is not None:
        parts.append(str(pkt.app))
    return " / ".join(parts)


# -- scapy conversion -------------------------------------------------------------------------


@cache
def scapy_ready() -> None:
    """Called before this project imports a scapy layer (`to_scapy`, `from_scapy`,
    `dataplane.craft`, `dataplane.dns`, `dataplane.suite.preload`).  The simulator never
    asks this machine's routing tables (see above), so scapy does not read them when its
    layers load (`conf.route_autoload`, `conf.route6_autoload`, scapy/config.py; reading
    them over netlink was 40% of importing the layers).  A program that wants scapy's
    routes as well calls `scapy.config.conf.route.resync()`; one that imported
    `scapy.route` first keeps them."""
    from scapy.config import conf

    conf.route_autoload = False
    conf.route6_autoload = False


def to_scapy(pkt: Packet) -> ScapyPacket:
    """The exact scapy packet (checksums and lengths computed by scapy)."""
    scapy_ready()
    from scapy.layers.l2 import ARP as SARP
    from scapy.layers.l2 import Ether as SEther
    from scapy.packet import Raw

    layers: ScapyPacket | None = None
    if pkt.eth is not None:
        layers = SEther(src=pkt.eth.src, dst=pkt.eth.dst, type=pkt.eth.type)
    if pkt.arp is not None:
        a = pkt.arp
        arp = SARP(op=a.op, hwsrc=a.hwsrc, psrc=a.psrc, hwdst=a.hwdst, pdst=a.pdst)
        return arp if layers is None else layers / arp
    ip = pkt.ip
    assert ip is not None
    if pkt.whole is not None:
        # A fragment: the bytes of the whole datagram's payload, cut at the offset.
        payload = bytes(to_scapy(pkt.whole.l3()))[IP_HLEN:]
        chunk = payload[ip.frag * 8 : ip.frag * 8 + pkt.frag_len]
        sip = _scapy_ip(ip) / Raw(chunk)
    elif pkt.inner is not None and pkt.l4 is None:
        sip = _scapy_ip(ip) / to_scapy(pkt.inner)  # IP-in-IP
    else:
        sip = _scapy_ip(ip) / _scapy_l4(pkt)
    return sip if layers is None else layers / sip


def to_bytes(pkt: Packet) -> bytes:
    return bytes(to_scapy(pkt))


def _scapy_ip(ip: IP) -> ScapyPacket:
    from scapy.layers.inet import IP as SIP

    flags = (2 if ip.df else 0) | (1 if ip.mf else 0)
    return SIP(
        src=ip.src,
        dst=ip.dst,
        ttl=ip.ttl,
        proto=ip.proto,
        id=ip.id,
        flags=flags,
        frag=ip.frag,
        tos=ip.tos,
    )


def _scapy_tunnel(tunnel: Tunnel) -> ScapyPacket:
    if isinstance(tunnel, VXLAN):
        from scapy.layers.vxlan import VXLAN as SVXLAN

        return SVXLAN(vni=tunnel.vni, flags=0x08)
    from scapy.contrib.geneve import GENEVE

    return GENEVE(vni=tunnel.vni, proto=tunnel.protocol)


def _scapy_l4(pkt: Packet) -> ScapyPacket:
    from scapy.layers.inet import ICMP as SICMP
    from scapy.layers.inet import TCP as STCP
    from scapy.layers.inet import UDP as SUDP
    from scapy.layers.sctp import SCTP as SSCTP
    from scapy.layers.sctp import (
        SCTPChunkAbort,
        SCTPChunkInit,
        SCTPChunkInitAck,
    )
    from scapy.packet import NoPayload, Raw

    l4 = pkt.l4
    payload: ScapyPacket = Raw(pkt.data) if pkt.data else NoPayload()
    if pkt.app is not None:
        payload = Raw(app_bytes(pkt.app))
    if isinstance(l4, TCP):
        return (
            STCP(
                sport=l4.sport,
                dport=l4.dport,
                flags=l4.flags,
                seq=l4.seq,
                ack=l4.ack,
                window=l4.window,
            )
            / payload
        )
    if isinstance(l4, UDP):
        udp = SUDP(sport=l4.sport, dport=l4.dport)
        if pkt.tunnel is not None and pkt.inner is not None:
            return udp / _scapy_tunnel(pkt.tunnel) / to_scapy(pkt.inner)
        return udp / payload
    if isinstance(l4, SCTP):
        chunk: ScapyPacket
        if l4.chunk == "INIT":
            chunk = SCTPChunkInit(
                init_tag=l4.tag or 1, a_rwnd=106496, n_out_streams=10,
                n_in_streams=65535, init_tsn=1,
            )  # fmt: skip
        elif l4.chunk == "INIT-ACK":
            chunk = SCTPChunkInitAck(
                init_tag=l4.tag or 1, a_rwnd=106496, n_out_streams=10,
                n_in_streams=10, init_tsn=1,
            )  # fmt: skip
        else:
            chunk = SCTPChunkAbort()
        return SSCTP(sport=l4.sport, dport=l4.dport, tag=l4.tag) / chunk
    assert isinstance(l4, ICMP)
    if l4.quote is not None:
        room = ICMP_ERROR_MAX - IP_HLEN - ICMP_HLEN
        quoted = bytes(to_scapy(l4.quote.l3()))[:room]
        if l4.type == ICMP_DEST_UNREACH and l4.code == UNREACH_FRAG_NEEDED:
            # RFC 1191: the next-hop MTU in the low 16 bits of the unused word.
            return SICMP(type=l4.type, code=l4.code, nexthopmtu=l4.mtu) / Raw(quoted)
        if l4.type == ICMP_REDIRECT:
            return SICMP(type=l4.type, code=l4.code, gw=l4.gateway) / Raw(quoted)
        return SICMP(type=l4.type, code=l4.code) / Raw(quoted)
    return SICMP(type=l4.type, code=l4.code, id=l4.id, seq=l4.seq) / payload


def from_scapy(spkt: ScapyPacket) -> Packet:
    """Convert a scapy packet (from Ether or IP on) into a walk packet.

    Raises ValueError naming the layer when it holds something the walk cannot carry.
    """
    scapy_ready()
    from scapy.layers.inet import ICMP as SICMP
    from scapy.layers.inet import IP as SIP
    from scapy.layers.inet import TCP as STCP
    from scapy.layers.inet import UDP as SUDP
    from scapy.layers.l2 import ARP as SARP
    from scapy.layers.l2 import Ether as SEther
    from scapy.layers.sctp import SCTP as SSCTP

    eth: Ether | None = None
    layer = spkt
    if isinstance(layer, SEther):
        eth = Ether(layer.src, layer.dst, layer.type)
        layer = layer.payload
    if isinstance(layer, SARP):
        arp = ARP(layer.op, layer.hwsrc, layer.psrc, layer.hwdst, layer.pdst)
        return Packet(eth=eth, arp=arp)
    if not isinstance(layer, SIP):
        raise ValueError(f"not an IPv4 packet: {layer.summary()}")
    flags = int(layer.flags)
    ip = IP(
        src=layer.src,
        dst=layer.dst,
        proto=layer.proto,
        ttl=layer.ttl,
        id=layer.id,
        df=bool(flags & 2),
        mf=bool(flags & 1),
        frag=layer.frag,
        tos=layer.tos,
    )
    body = layer.payload
    l4: L4 | None = None
    data = b""
    if ip.frag or ip.mf:
        raise ValueError("IP fragments cannot be sent on their own")
    if layer.options:
        raise ValueError("IP options are not supported")
    if isinstance(body, STCP):
        if body.options:
            raise ValueError(
                "TCP options are not supported (the walk keeps 20-byte headers)"
            )
        l4 = TCP(
            body.sport, body.dport, str(body.flags), body.seq, body.ack, body.window
        )
        data = bytes(body.payload)
    elif isinstance(body, SUDP):
        l4 = UDP(body.sport, body.dport)
        data = bytes(body.payload)
    elif isinstance(body, SSCTP):
        name = body.payload.__class__.__name__
        chunk = {
            "SCTPChunkInit": "INIT",
            "SCTPChunkInitAck": "INIT-ACK",
            "SCTPChunkAbort": "ABORT",
        }.get(name)
        if chunk is None:
            raise ValueError(
                f"SCTP chunk {name} is not supported (INIT, INIT-ACK, ABORT)"
            )
        l4 = SCTP(body.sport, body.dport, chunk, body.tag)
    elif isinstance(body, SICMP):
        if body.type in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
            l4 = ICMP(body.type, body.code, body.id, body.seq)
            data = bytes(body.payload)
        else:
            raise ValueError("only ICMP echo requests and replies can be sent")
    else:
        data = bytes(body)
        raise ValueError(
            f"IP protocol {ip.proto} is not supported (tcp, udp, sctp, icmp)"
        )
    return Packet(eth=eth, ip=ip, l4=l4, data=data)


def checksum_ok(raw: bytes) -> bool:
    """Whether an IPv4 header's checksum holds (for tests of `to_bytes`)."""
    hdr = raw[:IP_HLEN]
    total: int = sum(struct.unpack("!10H", hdr))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF
