"""A crafted packet sent from inside a namespace, and its answer sniffed there.

The packet is the one the simulator walks (`dataplane.craft` builds it from the scenario's
scapy layers; `dataplane.packet.to_bytes` gives its exact bytes).  Without an Ethernet
header it goes through the sender's IP layer as the simulator's `send` does: a raw socket
(`IPPROTO_RAW`, so `IP_HDRINCL`) lets the kernel route it, resolve the next hop and fill the
link header; an unset source address is the kernel's own choice for the route (asked
first, so that the transport checksum covers it).  A raw socket never fragments: a packet
larger than the route's MTU without DF is cut into fragments here, as the kernel would for
one of its sockets (`dataplane.stack.fragment`, ip_fragment()'s 8-byte units); with DF the
kernel refuses it (EMSGSIZE).  With an Ethernet header it leaves `eth0` as it is, through
a packet socket.

The answer: raw sockets of the packet's protocol and of ICMP, opened in the same namespace
before sending, see every packet delivered there (reassembled); the first that answers the
crafted one (the reply with addresses and ports swapped, an echo reply with its id, or an
ICMP error quoting it) gives the verdict, as for a probe.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
from dataclasses import dataclass, replace

from dataplane.kernel import netns
from dataplane.kernel.probe import (
    ICMP_NAMES,
    IP_RECVERR,
    Job,
    has_sctp,
    read_errqueue,
    source_address,
    verdict_of_errno,
    verdict_of_icmp,
)
from dataplane.packet import (
    ICMP,
    IPPROTO_ICMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Packet,
    to_bytes,
)
from topology.scenario import Verdict

ETH_P_ALL = 0x0003


@dataclass(frozen=True, slots=True)
class Seen:
    """The fields of a received IP packet that matter for matching it to what was sent."""

    src: str
    dst: str
    proto: int
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    sctp_chunk: int = -1
    icmp_type: int = -1
    icmp_code: int = -1
    icmp_id: int = -1
    quote: Seen | None = None
    ttl: int = 0  # on arrival


def parse(raw: bytes, quoted: bool = False) -> Seen | None:
    """The headers of an IPv4 packet (a quote may be cut after 8 bytes of transport).

    >>> p = parse(bytes.fromhex("4500001c0001000040010000" "0a000103" "0a000202" "0800f7fe00010000"))
    >>> p.src, p.dst, p.proto, p.icmp_type, p.icmp_id
    ('10.0.1.3', '10.0.2.2', 1, 8, 1)
    """
    if len(raw) < 20 or raw[0] >> 4 != 4:
        return None
    ihl = (raw[0] & 0x0F) * 4
    proto = raw[9]
    src, dst = socket.inet_ntoa(raw[12:16]), socket.inet_ntoa(raw[16:20])
    frag = struct.unpack("!H", raw[6:8])[0] & 0x1FFF
    l4 = raw[ihl:]
    seen = _parse_l4(src, dst, proto, l4, quoted) if not frag else Seen(src, dst, proto)
    return replace(seen, ttl=raw[8])


def _parse_l4(src: str, dst: str, proto: int, l4: bytes, quoted: bool) -> Seen:
    """The transport fields of a first fragment or a whole packet."""
    if proto in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP) and len(l4) >= 4:
        sport, dport = struct.unpack("!HH", l4[:4])
        flags = l4[13] if proto == IPPROTO_TCP and len(l4) >= 14 else 0
        chunk = l4[12] if proto == IPPROTO_SCTP and len(l4) >= 13 else -1
        return Seen(src, dst, proto, sport, dport, tcp_flags=flags, sctp_chunk=chunk)
    if proto == IPPROTO_ICMP and len(l4) >= 8:
        type_, code = l4[0], l4[1]
        ident = struct.unpack("!H", l4[4:6])[0]
        quote = None
        if type_ in (3, 11, 12) and not quoted:
            quote = parse(l4[8:], quoted=True)
        return Seen(
            src, dst, proto, icmp_type=type_, icmp_code=code, icmp_id=ident, quote=quote
        )
    return Seen(src, dst, proto)


class Sender(Job):
    """One crafted packet from `kernel_ns`, and what comes back for it."""

    def __init__(
        self, kernel_ns: str, pkt: Packet, sniff_ns: str | None = None
    ) -> None:
        """Send `pkt` from `kernel_ns`; listen for its answer there, or in `sniff_ns` (a
        VXLAN packet's answer goes to its inner source)."""
        self.kernel_ns = kernel_ns
        self.pkt = pkt
        self.sniffers: list[socket.socket] = []
        self.out: socket.socket | None = None
        self.frames: list[bytes] = []
        ip = pkt.ip
        if ip is None:
            self.finish(None, "not comparable: only IPv4 packets are sent")
            return
        inner = (
            pkt.inner.l3()
            if pkt.inner is not None and pkt.inner.ip is not None
            else None
        )
        self.match = inner or pkt
        if (
            self.match.ip is not None
            and self.match.ip.proto == IPPROTO_SCTP
            and not has_sctp()
        ):
            self.finish(
                None,
                "not comparable: this kernel has no SCTP (it would answer "
                "ICMP protocol unreachable)",
            )
            return
        mtu = 65535
        if pkt.eth is None:
            found = source_address(kernel_ns, ip.dst)
            if found is None:
                self.finish(Verdict.NO_ROUTE, "local error ENETUNREACH (no route)")
                return
            src, mtu = found
            if ip.src in ("", "0.0.0.0"):
                pkt = self.pkt = pkt.with_ip(src=src)
                if inner is None:
                    self.match = pkt
        assert self.match.ip is not None
        self.sport = self.match.sport  # the peer port its server sees
        protos = {IPPROTO_ICMP, self.match.ip.proto}
        with netns.inside(sniff_ns or kernel_ns):
            for proto in sorted(protos):
                self.sniffers.append(
                    socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
                )
        with netns.inside(kernel_ns):
            if pkt.eth is not None:
                self.out = socket.socket(
                    socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)
                )
            else:
                self.out = socket.socket(
                    socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW
                )
        for s in self.sniffers:
            s.setblocking(False)
        if pkt.eth is not None:
            self.out.bind(("eth0", 0))
            self.frames = [to_bytes(pkt)]
        else:
            self.out.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            self.frames = self._pieces(pkt, mtu)

    @staticmethod
    def _pieces(pkt: Packet, mtu: int) -> list[bytes]:
        from dataplane.stack import fragment

        ip = pkt.ip
        assert ip is not None
        if pkt.ip_len() <= mtu or ip.df:
            return [to_bytes(pkt)]
        return [to_bytes(piece) for piece in fragment(pkt.l3(), mtu)]

    def flow(self) -> tuple[str, str, int, str, int] | None:
        """The crafted connection (saddr, l4proto, sport, daddr, dport), for a pin."""
        ip = self.match.ip
        names = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_SCTP: "sctp"}
        if self.result is not None or ip is None or ip.proto not in names:
            return None
        return (ip.src, names[ip.proto], self.match.sport, ip.dst, self.match.dport)

    def fds(self) -> list[tuple[int, int]]:
        if self.result is not None:
            return []
        return [(s.fileno(), select.POLLIN) for s in self.sniffers]

    def start(self) -> None:
        super().start()
        if self.result is not None or self.out is None:
            return
        for sniffer in self.sniffers:  # forget what arrived before this packet left
            with contextlib.suppress(BlockingIOError):
                while sniffer.recv(65535):
                    pass
        ip = self.pkt.ip
        assert ip is not None
        try:
            for frame in self.frames:
                if self.pkt.eth is not None:
                    self.out.send(frame)
                else:
                    self.out.sendto(frame, (ip.dst, 0))
        except OSError as err:
            code = err.errno or 0
            queued = read_errqueue(self.out)
            if queued is not None:
                v = queued.verdict()
                self.finish(v.verdict, v.detail)
                return
            name = errno.errorcode.get(code, str(code))
            self.finish(
                verdict_of_errno(code), f"local error {name} ({os.strerror(code)})"
            )

    def on_event(self, fd: int, events: int) -> None:
        sock = next(s for s in self.sniffers if s.fileno() == fd)
        while self.result is None:
            try:
                raw = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            seen = parse(raw)
            if seen is not None:
                self._judge(seen)

    def _judge(self, seen: Seen) -> None:
        pkt, ip = self.match, self.match.ip
        assert ip is not None
        l4 = pkt.l4
        echo_id = l4.id if isinstance(l4, ICMP) else -1
        if seen.proto == IPPROTO_ICMP and seen.icmp_type == 0:
            if isinstance(l4, ICMP) and seen.icmp_id == echo_id and seen.src == ip.dst:
                self.finish(
                    Verdict.DELIVERED, f"echo reply from {seen.src}", seen.src, seen.ttl
                )
            return
        q = seen.quote
        if seen.proto == IPPROTO_ICMP and q is not None:
            same = q.src == ip.src and q.dst == ip.dst and q.proto == ip.proto
            if same and q.proto in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP):
                same = q.sport == pkt.sport and q.dport == pkt.dport
            elif same and q.proto == IPPROTO_ICMP:
                same = q.icmp_id == echo_id
            if same:
                key = (seen.icmp_type, seen.icmp_code)
                name = ICMP_NAMES.get(key, f"type {key[0]} code {key[1]}")
                self.finish(
                    verdict_of_icmp(*key),
                    f"ICMP {name} from {seen.src}",
                    seen.src,
                    seen.ttl,
                )
            return
        if seen.proto != ip.proto or seen.src != ip.dst or seen.proto == IPPROTO_ICMP:
            return
        if seen.dst != ip.src or seen.sport != pkt.dport or seen.dport != pkt.sport:
            return
        if seen.proto == IPPROTO_TCP:
            if seen.tcp_flags & 0x04:
                self.finish(
                    Verdict.REFUSED,
                    f"RST from {seen.src}:{seen.sport}",
                    seen.src,
                    seen.ttl,
                )
            else:
                flags = (
                    "SYN-ACK"
                    if seen.tcp_flags & 0x12 == 0x12
                    else f"flags {seen.tcp_flags:#x}"
                )
                self.finish(
                    Verdict.DELIVERED,
                    f"{flags} from {seen.src}:{seen.sport}",
                    seen.src,
                    seen.ttl,
                )
            return
        if seen.proto == IPPROTO_SCTP and seen.sctp_chunk == 6:
            self.finish(Verdict.REFUSED, f"SCTP ABORT from {seen.src}:{seen.sport}")
            return
        self.finish(
            Verdict.DELIVERED, f"reply from {seen.src}:{seen.sport}", seen.src, seen.ttl
        )

    def close(self) -> None:
        for s in self.sniffers:
            s.close()
        self.sniffers.clear()
        if self.out is not None:
            self.out.close()
            self.out = None


__all__ = ["Seen", "Sender", "parse"]
