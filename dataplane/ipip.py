"""The IP-in-IP device (`tunl0`, protocol 4, RFC 2003): encapsulation and decapsulation.

Calico's `tunl0` is the ipip module's fallback device (`ip -d link`: `ipip any remote any
local any ttl inherit nopmtudisc`): it has no fixed endpoints, so `ip_tunnel_xmit()` takes
the outer destination from the route the inner packet took (`rt_nexthop`: `192.168.0.64/26
via 10.100.0.3 dev tunl0 onlink` -> 10.100.0.3) and the outer source from the route to
that address (the node's `eth0` address); with `ttl inherit` the outer TTL is the inner
one, and the inner packet's DF bit is copied.  The outer header costs 20 bytes, hence
Calico's MTU 1480 on a 1500-byte underlay.  The outer packet leaves through the node's
OUTPUT and POSTROUTING like any local packet (iptunnel_xmit -> ip_local_out).  On receive,
`ipip_rcv()` takes any protocol-4 packet for a local address and hands the inner packet
up on `tunl0`, as if it had arrived there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataplane.emission import Emission, Out, Rx
from dataplane.netns import Interface, Netns
from dataplane.packet import IP, IPPROTO_IPIP, Packet
from dataplane.trace import DropReason

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.walker import Walker


def encapsulate(
    w: Walker, ns: Netns, iface: Interface, inner: Packet
) -> list[Emission]:
    ip = inner.ip
    assert ip is not None
    route = ns.routes.lookup(ip.dst)
    remote = str(route.via) if route is not None and route.via is not None else None
    under = ns.routes.lookup(remote) if remote is not None else None
    if remote is None or under is None:
        w.record(
            ns,
            iface.ifname,
            "drop",
            f"no tunnel endpoint for {ip.dst} on {iface.ifname} (NBMA tunnel without"
            " a gateway)",
            inner,
            reason=DropReason.NO_ROUTE,
        )
        return []
    local = str(under.src) if under.src is not None else ns.source_for(under.oif)
    outer = Packet(
        ip=IP(local, remote, IPPROTO_IPIP, ttl=ip.ttl, id=w.state.ip_id(), df=ip.df),
        inner=inner.l3(),
    )
    w.record(
        ns,
        iface.ifname,
        "encap",
        f"IP-in-IP, {local} -> {remote} proto 4 (nexthop of the route; ttl inherit:"
        f" outer ttl {ip.ttl}); {inner.ip_len()}-byte inner packet",
        outer,
    )
    return [Out(outer, ns.id)]


def decapsulate(
    w: Walker, ns: Netns, iface: Interface, outer: Packet
) -> list[Emission]:
    inner = outer.inner
    if inner is None or inner.ip is None:
        w.record(
            ns,
            iface.ifname,
            "drop",
            "protocol 4 without an inner IPv4 packet",
            outer,
            reason=DropReason.NO_SOCKET,
        )
        return []
    w.record(
        ns,
        iface.ifname,
        "decap",
        f"IP-in-IP from {outer.ip.src if outer.ip else '?'} -> inner packet on"
        f" {iface.ifname}",
        inner,
    )
    return [Rx(inner, ns.id, iface.ifname)]
