"""What answers a packet delivered to a namespace: the kernel itself and listening sockets.

- ICMP echo request: the kernel answers with an echo reply.
- TCP SYN: a listening socket answers SYN-ACK; no socket: RST (tcp_v4_send_reset).
- UDP: a listening socket's program answers with a datagram (an application hook such as
  kube-dns may build the answer); no socket: ICMP port unreachable.
- SCTP INIT: INIT-ACK; no socket: ABORT.
- UDP to the VXLAN port of a namespace with a VXLAN device: decapsulation.
- Anything coming back to the probing client ends the walk with its verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dataplane import ipip, pmtu, vxlan
from dataplane.addrtype import ANY
from dataplane.emission import Emission, Out
from dataplane.netns import UDP_TUNNELS, Kind, Netns, Socket
from dataplane.packet import (
    ICMP,
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_REDIRECT,
    ICMP_TIME_EXCEEDED,
    IP,
    IPPROTO_IPIP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SCTP,
    TCP,
    UDP,
    UNREACH_FRAG_NEEDED,
    UNREACH_HOST,
    UNREACH_NET,
    UNREACH_PORT,
    Packet,
    icmp_name,
)
from dataplane.trace import DropReason, Verdict
from topology.model import Protocol

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.walker import Walker

# What an ICMP error means to the socket that receives it (verdict, errno text).
ICMP_VERDICTS = {
    (ICMP_DEST_UNREACH, UNREACH_NET): (Verdict.NO_ROUTE, "ENETUNREACH"),
    (ICMP_DEST_UNREACH, UNREACH_HOST): (Verdict.UNREACHABLE, "EHOSTUNREACH"),
    (ICMP_DEST_UNREACH, 3): (Verdict.REFUSED, "ECONNREFUSED"),
    (ICMP_DEST_UNREACH, UNREACH_FRAG_NEEDED): (Verdict.TOO_BIG, "EMSGSIZE"),
    (ICMP_DEST_UNREACH, 13): (
        Verdict.REFUSED,
        "EHOSTUNREACH (administratively prohibited)",
    ),
    (ICMP_TIME_EXCEEDED, 0): (Verdict.TTL_EXCEEDED, "time to live exceeded"),
}


PROTOCOL_OF = {
    IPPROTO_TCP: Protocol.TCP,
    IPPROTO_UDP: Protocol.UDP,
    IPPROTO_SCTP: Protocol.SCTP,
}

# An application behind a UDP/TCP socket: given the request, the reply payload object
# (`Packet.app`) or None to answer with the request's own bytes.
App = Callable[["Walker", Netns, Socket, Packet], Any]
APPS: dict[str, App] = {}  # Socket.owner -> application


def reply_to(
    w: Walker, pkt: Packet, l4: Any, data: bytes = b"", app: Any = None
) -> Packet:
    """A reply from the address the request was sent to, back to its sender."""
    ip = pkt.ip
    assert ip is not None
    return Packet(
        ip=IP(ip.dst, ip.src, ip.proto, id=w.state.ip_id()), l4=l4, data=data, app=app
    )


def reset_for(seg: TCP, data_len: int) -> TCP:
    """The RST answering a segment (RFC 793, tcp_v4_send_reset): with ACK set, the RST takes
    its sequence number from the segment's ack; without, it acknowledges the segment."""
    if "A" in seg.flags:
        return TCP(seg.dport, seg.sport, "R", seg.ack, 0)
    length = data_len + ("S" in seg.flags) + ("F" in seg.flags)
    return TCP(seg.dport, seg.sport, "RA", 0, seg.seq + length)


def deliver(w: Walker, ns: Netns, ifname: str, pkt: Packet) -> list[Emission]:

    ip, l4 = pkt.ip, pkt.l4
    assert ip is not None
    if isinstance(l4, UDP):
        for iface in ns.interfaces.values():
            if iface.kind in UDP_TUNNELS and iface.vxlan_port == l4.dport:
                return vxlan.decapsulate(w, ns, iface, pkt)
    if ip.proto == IPPROTO_IPIP:  # ipip_rcv(): the tunnel device takes it
        for iface in ns.interfaces.values():
            if iface.kind is Kind.IPIP:
                return ipip.decapsulate(w, ns, iface, pkt)
    if isinstance(l4, ICMP) and l4.type == ICMP_REDIRECT:
        redirected(w, ns, ifname, pkt, l4)
        return []
    if to_client(w, ns, pkt):
        return []
    sock: Socket | None = None
    if isinstance(l4, ICMP):
        if l4.type == ICMP_ECHO_REQUEST:
            w.record(
                ns,
                ifname,
                "deliver",
                "ICMP echo request -> echo reply (the kernel)",
                pkt,
            )
            w.delivered_to = f"{ns.label} (kernel)"
            w.direction = "reply"
            reply = reply_to(w, pkt, ICMP(ICMP_ECHO_REPLY, 0, l4.id, l4.seq), pkt.data)
            return [Out(reply, ns.id)]
        w.record(
            ns,
            ifname,
            "deliver",
            f"ICMP {icmp_name(l4)} to {ns.label}: no socket waits for it",
            pkt,
        )
        return []
    proto = PROTOCOL_OF.get(ip.proto)
    if proto is None or l4 is None:
        w.record(
            ns,
            ifname,
            "drop",
            f"IP protocol {ip.proto}: nothing handles it",
            pkt,
            reason=DropReason.NO_SOCKET,
        )
        return []
    sock = ns.sockets.get((proto, pkt.dport))
    if sock is not None and sock.bound is not None and sock.bound != ip.dst:
        sock = None  # bound to another address of the namespace
    where = f"{proto.value.lower()}/{pkt.dport}"
    if isinstance(l4, TCP):
        if "R" in l4.flags:
            w.record(ns, ifname, "deliver", f"RST to {where}: dropped", pkt)
            return []
        if sock is None:
            w.record(
                ns,
                ifname,
                "deliver",
                f"no socket listens on {where} -> RST",
                pkt,
                reason=DropReason.PORT_CLOSED,
            )
            w.direction = "reply"
            return [Out(reply_to(w, pkt, reset_for(l4, len(pkt.data))), ns.id)]
        conn = (ns.id, ip.dst, l4.dport, ip.src, l4.sport)
        if l4.flags != "S":
            if conn not in w.state.tcp_conns and "A" in l4.flags:
                # tcp_rcv_state_process(), LISTEN: an ACK for no connection is reset.
                w.record(
                    ns,
                    ifname,
                    "deliver",
                    f"socket {where} ({sock.owner}) has no "
                    f"connection from {ip.src}:{l4.sport} -> RST",
                    pkt,
                    reason=DropReason.PORT_CLOSED,
                )
                w.direction = "reply"
                return [Out(reply_to(w, pkt, reset_for(l4, len(pkt.data))), ns.id)]
            w.record(
                ns,
                ifname,
                "deliver",
                f"socket {where} ({sock.owner}) takes the segment ({l4.flags})",
                pkt,
            )
            return []
        w.state.tcp_conns.add(conn)
        w.record(
            ns,
            ifname,
            "deliver",
            f"socket {where} (container {sock.owner}) -> SYN-ACK",
            pkt,
        )
        w.delivered_to = f"{ns.label} {where} ({sock.owner})"
        w.direction = "reply"
        synack = TCP(l4.dport, l4.sport, "SA", 1000, l4.seq + 1)
        return [Out(reply_to(w, pkt, synack), ns.id)]
    if isinstance(l4, UDP):
        if sock is None:
            w.record(
                ns,
                ifname,
                "deliver",
                f"no socket on {where} -> ICMP port unreachable",
                pkt,
                reason=DropReason.PORT_CLOSED,
            )
            return w.stack.icmp_error(ns, pkt, ICMP_DEST_UNREACH, UNREACH_PORT)
        app = APPS.get(sock.owner)
        answer = app(w, ns, sock, pkt) if app is not None else None
        w.record(
            ns,
            ifname,
            "deliver",
            f"socket {where} ({sock.owner}) -> reply datagram",
            pkt,
        )
        w.delivered_to = f"{ns.label} {where} ({sock.owner})"
        w.direction = "reply"
        data = b"" if answer is not None else pkt.data
        reply = reply_to(w, pkt, UDP(l4.dport, l4.sport), data, answer)
        # The servers are bound to the wildcard address (agnhost netexec's
        # `net.ListenUDP("udp", ":PORT")`, as Kubernetes e2e runs them): `sendto()` of
        # the reply leaves the source to the route back (ip_route_output, the route's
        # prefsrc or its device's primary address, Stack.output), not the address the
        # request was sent to; a node asked on eth0 answers its pods from cbr0's.
        # A server bound to one address (Docker's embedded DNS on 127.0.0.11) answers
        # from it.
        return [Out(reply.with_ip(src=sock.bound or ANY), ns.id)]
    assert isinstance(l4, SCTP)
    if l4.chunk != "INIT":
        w.record(ns, ifname, "deliver", f"SCTP {l4.chunk} to {where}", pkt)
        return []
    if sock is None:
        w.record(
            ns,
            ifname,
            "deliver",
            f"no socket on {where} -> ABORT",
            pkt,
            reason=DropReason.PORT_CLOSED,
        )
        w.direction = "reply"
        return [Out(reply_to(w, pkt, SCTP(l4.dport, l4.sport, "ABORT", l4.tag)), ns.id)]
    w.record(
        ns,
        ifname,
        "deliver",
        f"socket {where} (container {sock.owner}) -> INIT-ACK",
        pkt,
    )
    w.delivered_to = f"{ns.label} {where} ({sock.owner})"
    w.direction = "reply"
    return [Out(reply_to(w, pkt, SCTP(l4.dport, l4.sport, "INIT-ACK", l4.tag)), ns.id)]


def redirected(w: Walker, ns: Netns, ifname: str, pkt: Packet, l4: ICMP) -> None:
    """An ICMP redirect arrives: no socket hears an error (tcp_v4_err and __udp4_lib_err
    only update the route on ICMP_REDIRECT).  A forwarding namespace ignores it: setting
    net.ipv4.ip_forward=1 turns conf.all.accept_redirects off (inet_forward_change), and a
    forwarding interface needs both on (IN_DEV_RX_REDIRECTS)."""
    assert pkt.ip is not None
    quoted = l4.quote.ip.dst if l4.quote is not None and l4.quote.ip else "?"
    if ns.forwarding:
        fate = (
            "ignored: ip_forward=1 turned net.ipv4.conf.all.accept_redirects off "
            "(inet_forward_change)"
        )
    else:
        # not modelled: the next-hop exception __ip_do_redirect() learns (later packets
        # of this walk still follow the route)
        fate = (
            f"accepted (accept_redirects=1): a next-hop exception for {quoted} via "
            f"{l4.gateway} (__ip_do_redirect; later packets here still take the route)"
        )
    w.record(
        ns,
        ifname,
        "redirect",
        f"ICMP redirect from {pkt.ip.src} for {quoted}: {fate}; no socket gets an error",
        pkt,
    )


def to_client(w: Walker, ns: Netns, pkt: Packet) -> bool:
    """If `pkt` answers the probing client, record the client's verdict and say so."""
    c = w.client
    ip, l4 = pkt.ip, pkt.l4
    if c is None or c.netns != ns.id or ip is None or l4 is None:
        return False
    if isinstance(l4, ICMP):
        if l4.type == ICMP_ECHO_REPLY and c.proto == 1 and l4.id == c.sport:
            w.record(
                ns, "", "deliver", f"echo reply from {ip.src}: reply returned", pkt
            )
            w.finish(Verdict.DELIVERED, f"echo reply from {ip.src}")
            return True
        q = l4.quote
        if q is None or q.ip is None or q.ip.proto != c.proto or q.sport != c.sport:
            return False
        verdict, errno = ICMP_VERDICTS.get(
            (l4.type, l4.code if l4.type == 3 else 0),
            (Verdict.DROPPED, "an ICMP error"),
        )
        reason = {
            Verdict.NO_ROUTE: DropReason.NO_ROUTE,
            Verdict.UNREACHABLE: DropReason.NEIGH_FAILED,
            Verdict.REFUSED: DropReason.PORT_CLOSED,
            Verdict.TOO_BIG: DropReason.MTU,
            Verdict.TTL_EXCEEDED: DropReason.TTL,
        }.get(verdict, DropReason.HOOK)
        text = f"ICMP {icmp_name(l4)} from {ip.src}: the socket gets {errno}"
        known = pmtu.learn(w.state.pmtu, ns.id, l4)
        if known is not None:
            text += f"; path MTU {known} to {q.ip.dst} learned (ipv4_sk_update_pmtu)"
        w.record(ns, "", "deliver", text, pkt)
        w.finish(verdict, text, reason)
        return True
    if ip.proto != c.proto or pkt.dport != c.sport:
        return False
    if isinstance(l4, UDP) and (ip.src, l4.sport) != (c.dst, c.dport):
        # A connected UDP socket takes datagrams from its peer only (udp4_lib_lookup:
        # a connected socket scores only when saddr and sport match): a reply from
        # another address finds no socket, and the client's kernel answers it with
        # ICMP port unreachable.
        w.record(
            ns,
            "",
            "drop",
            f"datagram from {ip.src}:{l4.sport}: the socket is connected to "
            f"{c.dst}:{c.dport} and does not take it -> ICMP port unreachable",
            pkt,
            reason=DropReason.NO_SOCKET,
        )
        w.emit(w.stack.icmp_error(ns, pkt, ICMP_DEST_UNREACH, UNREACH_PORT))
        return True
    if isinstance(l4, TCP):
        if "R" in l4.flags:
            text = f"RST from {ip.src}:{l4.sport}: connection refused (ECONNREFUSED)"
            w.record(ns, "", "deliver", text, pkt)
            w.finish(Verdict.REFUSED, text, DropReason.PORT_CLOSED)
        else:
            text = (
                f"{l4.flags} from {ip.src}:{l4.sport}: reply returned, connection open"
            )
            w.record(ns, "", "deliver", text, pkt)
            w.finish(Verdict.DELIVERED, text)
        return True
    if isinstance(l4, SCTP):
        if l4.chunk == "ABORT":
            text = f"ABORT from {ip.src}:{l4.sport}: connection refused"
            w.record(ns, "", "deliver", text, pkt)
            w.finish(Verdict.REFUSED, text, DropReason.PORT_CLOSED)
        else:
            text = f"{l4.chunk} from {ip.src}:{l4.sport}: reply returned"
            w.record(ns, "", "deliver", text, pkt)
            w.finish(Verdict.DELIVERED, text)
        return True
    text = f"datagram from {ip.src}:{pkt.sport}: reply returned"
    w.record(ns, "", "deliver", text, pkt)
    w.finish(Verdict.DELIVERED, text)
    return True
