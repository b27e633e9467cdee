"""The UDP tunnel devices: VXLAN (`flannel.1`, `vxlan.calico`, `cilium_vxlan`) and Geneve
(`cilium_geneve`): encapsulation on transmit, decapsulation on receive.

On transmit the inner frame's destination MAC is looked up in the device's FDB (flannel
installs `<remote VTEP MAC> dst <remote node IP>`), and the frame leaves inside outer
IP/UDP/VXLAN headers from the node's own address, through the node's OUTPUT and POSTROUTING
like any locally generated packet (udp_tunnel_xmit_skb -> ip_local_out).  The UDP source
port is a hash of the inner flow in the local port range, as `udp_flow_src_port()` picks it.
A Geneve device (drivers/net/geneve.c, geneve_xmit_skb) does the same with the 8-byte Geneve
header of RFC 8926 (no options, protocol 0x6558) in place of VXLAN's: same overhead, same path.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from dataplane.emission import Emission, Out, Rx
from dataplane.netns import Interface, Kind, Netns
from dataplane.packet import IP, IPPROTO_UDP, TUNNEL_NAMES, UDP, VXLAN, Geneve, Packet
from dataplane.trace import DropReason

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.walker import Walker

PORT_MIN, PORT_MAX = 32768, 60999  # net.ipv4.ip_local_port_range


def source_port(inner: Packet) -> int:
    """Deterministic flow hash of the inner packet into the local port range."""
    ip = inner.ip
    key = f"{ip.src}>{ip.dst}/{ip.proto}/{inner.sport}/{inner.dport}" if ip else "arp"
    return PORT_MIN + zlib.crc32(key.encode()) % (PORT_MAX - PORT_MIN + 1)


def encapsulate(
    w: Walker, ns: Netns, iface: Interface, inner: Packet
) -> list[Emission]:

    assert inner.eth is not None and iface.vxlan_local is not None
    remote = w.fabric.vxlan_fdb.get((ns.id, inner.eth.dst))
    if remote is None:
        w.record(
            ns,
            iface.ifname,
            "drop",
            f"no FDB entry for {inner.eth.dst} on {iface.ifname}",
            inner,
            reason=DropReason.NO_ROUTE,
        )
        return []
    vni_of = w.fabric.vni_of
    vni = iface.vni if vni_of is None else vni_of(inner)
    local = str(iface.vxlan_local)
    header = Geneve(vni) if iface.kind is Kind.GENEVE else VXLAN(vni)
    outer = Packet(
        ip=IP(local, remote, IPPROTO_UDP, ttl=64, id=w.state.ip_id()),
        l4=UDP(source_port(inner), iface.vxlan_port),
        tunnel=header,
        inner=inner,
    )
    ttl = inner.ip.ttl if inner.ip else 0
    w.record(
        ns,
        iface.ifname,
        "encap",
        f"{TUNNEL_NAMES[type(header)]} vni {vni}, {local} -> "
        f"{remote} udp/{iface.vxlan_port} (fdb {inner.eth.dst} dst {remote}); inner "
        f"ttl {ttl}, {inner.frame_len()}-byte inner frame",
        outer,
    )
    return [Out(outer, ns.id)]


def decapsulate(
    w: Walker, ns: Netns, iface: Interface, outer: Packet
) -> list[Emission]:

    inner = outer.inner
    metadata = w.fabric.vni_of is not None  # collect-metadata: any VNI is taken
    header = outer.tunnel
    want = Geneve if iface.kind is Kind.GENEVE else VXLAN
    if (
        inner is None
        or type(header) is not want
        or (header.vni != iface.vni and not metadata)
    ):
        w.record(
            ns,
            iface.ifname,
            "drop",
            f"not a {TUNNEL_NAMES[want]} packet of this VNI",
            outer,
            reason=DropReason.NO_SOCKET,
        )
        return []
    w.record(
        ns,
        iface.ifname,
        "decap",
        f"udp/{iface.vxlan_port} vni {header.vni} from "
        f"{outer.ip.src if outer.ip else '?'} -> inner frame on {iface.ifname}",
        inner,
    )
    return [Rx(inner, ns.id, iface.ifname)]
