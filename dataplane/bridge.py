"""Linux bridges (`cbr0` / `docker0`): a forwarding database that learns and floods.

A frame entering a port teaches the FDB its source MAC.  A frame for the bridge's own MAC
goes up to the node's IP layer; a known MAC leaves by its port (never back out of the port
it came in on unless that port is in hairpin mode); a broadcast or an unknown MAC floods.
An IPv4 frame bridged between two ports passes the node's netfilter hooks as with
`br_netfilter` (net.bridge.bridge-nf-call-iptables=1, which kube-proxy requires): this is
where the NetworkPolicy filter meets traffic between two pods of one node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dataplane.addrtype import is_multicast as is_group
from dataplane.emission import Emission, Rx, Unseen, Xmit
from dataplane.netfilter import HookContext, HookPoint, Netfilter
from dataplane.netns import Kind, Netns
from dataplane.packet import ARP_REQUEST, BROADCAST, ZERO_MAC, Packet
from dataplane.stack import fragment
from dataplane.trace import DropReason

BR_NF_FAKE_MTU = 1500  # the MTU metric of br_netfilter's fake rtable

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.walker import Walker


def is_multicast(mac: str) -> bool:
    """The group bit of the first octet (broadcast included).

    >>> is_multicast("ff:ff:ff:ff:ff:ff"), is_multicast("0a:58:0a:00:01:03")
    (True, False)
    """
    return bool(int(mac[:2], 16) & 1)


@dataclass(slots=True)
class Flood:
    """Which ports of a bridge can do anything with a flooded frame: the port whose peer
    has the MAC, or the address an ARP request asks for, and the ports whose peer is
    itself a bridge port (or no IP layer).  Every other peer drops a flood unseen (not
    its MAC, an ARP request for someone else: `Stack.receive`, `walker.ignores`), so the
    walk does not send it there: a walk without captures forgets those copies, one with
    captures records their frames only (`Unseen`)."""

    order: dict[str, int] = field(default_factory=dict)  # port -> its place
    by_mac: dict[str, list[str]] = field(default_factory=dict)
    by_ip: dict[str, list[str]] = field(default_factory=dict)
    always: list[str] = field(default_factory=list)
    peers: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # port -> copy

    def ports(self, pkt: Packet, skip: str | None) -> list[str]:
        """The ports that may act on `pkt`, in port order, `skip` left out."""
        eth = pkt.eth
        assert eth is not None
        arp = pkt.arp
        if eth.dst == BROADCAST and (
            arp is None or arp.op != ARP_REQUEST or arp.pdst.startswith("127.")
        ):
            return [p for p in self.order if p != skip]
        found = set(self.always)
        if eth.dst != BROADCAST:
            found.update(self.by_mac.get(eth.dst, ()))
        if arp is not None and arp.op == ARP_REQUEST:
            found.update(self.by_ip.get(arp.pdst, ()))
        found.discard(skip or "")
        return sorted(found, key=self.order.__getitem__)


class Bridges:
    """Every bridge of a walk; the FDBs live in the walk state."""

    def __init__(self, walker: Walker) -> None:
        self.w = walker

    def receive(
        self, ns: Netns, br: str, pkt: Packet, port: str | None
    ) -> list[Emission]:
        """A frame entering bridge `br` by `port` (None: sent by the node's own stack)."""

        w = self.w
        eth = pkt.eth
        assert eth is not None
        brif = ns.interfaces[br]
        if port is not None and (eth.src == ZERO_MAC or is_multicast(eth.src)):
            # br_handle_frame(): a frame whose source MAC is not a valid unicast address
            # is dropped before learning or forwarding.
            w.record(
                ns,
                br,
                "drop",
                f"invalid source MAC {eth.src}",
                pkt,
                reason=DropReason.BRIDGE,
            )
            return []
        fdb = w.state.fdb.setdefault((ns.id, br), {})
        if port is not None:
            fdb[eth.src] = port
        ports = w.fabric.bridge_ports.get((ns.id, br), [])
        if eth.dst == brif.mac:
            w.record(ns, br, "bridge", f"dst MAC is {br}'s own -> up to IP", pkt)
            return [Rx(pkt, ns.id, br, port)]
        out_port = fdb.get(eth.dst) if eth.dst != BROADCAST else None
        if out_port is None:
            flooded = len(ports) - (port in ports)
            what = "broadcast" if eth.dst == BROADCAST else f"unknown MAC {eth.dst}"
            up = port is not None and eth.dst == BROADCAST
            w.record(
                ns,
                br,
                "bridge",
                f"{what}: flood to {flooded} port(s)"
                + (f" and up to {br}" if up else ""),
                pkt,
            )
            if (
                port is not None
                and pkt.ip is not None
                and is_group(pkt.ip.dst)
                and isinstance(ns.hooks, Netfilter)
            ):
                # br_flood() -> __br_forward(): br_netfilter passes each copy of a
                # flooded IP frame through FORWARD and POSTROUTING for its own output
                # port, so a policy may drop some (seen on this kernel for a multicast
                # group).  Not modelled for an IP frame to an unknown unicast MAC,
                # which `flood` walks without hooks
                emissions = []
                for out_port in ports:
                    if out_port != port:
                        emissions += self.netfilter(ns, br, pkt, port, out_port)
            else:
                emissions = self.flood(ns, br, pkt, port)
            if up:
                emissions.append(Rx(pkt, ns.id, br))
            return emissions
        if out_port == port and not ns.interfaces[port].hairpin:
            w.record(
                ns,
                br,
                "drop",
                f"fdb {eth.dst} is on {port}, the port it came in on, "
                "and hairpin is off",
                pkt,
                reason=DropReason.BRIDGE,
            )
            return []
        hairpin = " (hairpin)" if out_port == port else ""
        w.record(ns, br, "bridge", f"fdb {eth.dst} -> port {out_port}{hairpin}", pkt)
        if port is not None and pkt.ip is not None:
            return self.netfilter(ns, br, pkt, port, out_port)
        return [Xmit(pkt, ns.id, out_port)]

    def flood(
        self, ns: Netns, br: str, pkt: Packet, port: str | None
    ) -> list[Emission]:
        """A flood out of every port but `port`, as Linux sends it (br_flood): a copy to
        each port whose peer may act on it (`Flood`) and, in a walk that records captures,
        the frames of the other copies in their place (`Unseen`): the same hops, frames
        and steps as a copy walked to every port, at a cost that does not grow with the
        number of pods on the bridge (but for the frames a capture must keep)."""
        w = self.w
        flood = w.fabric.floods.get((ns.id, br))
        if not isinstance(flood, Flood):
            ports = w.fabric.bridge_ports.get((ns.id, br), [])
            flood = w.fabric.floods[(ns.id, br)] = self.flood_of(ns, ports)
        active = flood.ports(pkt, port)
        if not w.capture:
            return [Xmit(pkt, ns.id, p) for p in active]
        if len(active) == len(flood.order) - (port in flood.order):
            return [Xmit(pkt, ns.id, p) for p in active]  # every port acts
        out: list[Emission] = []
        unseen: list[tuple[str, str, str]] = []
        acting = set(active)
        for p in flood.order:
            if p == port:
                continue
            if p in acting:
                if unseen:
                    out.append(Unseen(pkt, ns.id, tuple(unseen)))
                    unseen = []
                out.append(Xmit(pkt, ns.id, p))
            else:
                unseen.append(flood.peers[p])
        if unseen:
            out.append(Unseen(pkt, ns.id, tuple(unseen)))
        return out

    def flood_of(self, ns: Netns, ports: list[str]) -> Flood:
        flood = Flood({p: k for k, p in enumerate(ports)})
        for p in ports:
            peer = ns.interfaces[p].peer
            if peer is None:
                flood.always.append(p)
                continue
            peer_ns = self.w.fabric.netns[peer[0]]
            iface = peer_ns.interfaces[peer[1]]
            if iface.master is not None or iface.kind not in (Kind.VETH, Kind.ETH):
                flood.always.append(p)
                continue
            flood.peers[p] = (p, *peer)
            flood.by_mac.setdefault(iface.mac, []).append(p)
            for ip in {str(a.ip) for i in peer_ns.interfaces.values() for a in i.addrs}:
                flood.by_ip.setdefault(ip, []).append(p)
        return flood

    def forward_bridged(
        self, ns: Netns, br: str, pkt: Packet, in_port: str, ctx: HookContext
    ) -> list[Emission]:
        """Forward a frame that PREROUTING DNATed onto this bridge's own subnet
        (br_nf_pre_routing_finish_bridge): FDB, hairpin, then FORWARD and POSTROUTING
        with the connection it already has."""

        w = self.w
        eth = pkt.eth
        assert eth is not None
        out_port = w.state.fdb.setdefault((ns.id, br), {}).get(eth.dst)
        if out_port is None:
            ports = w.fabric.bridge_ports.get((ns.id, br), [])
            flooded = len(ports) - (in_port in ports)
            w.record(
                ns,
                br,
                "bridge",
                f"unknown MAC {eth.dst}: flood to {flooded} port(s)",
                pkt,
            )
            return self.flood(ns, br, pkt, in_port)
        if out_port == in_port and not ns.interfaces[in_port].hairpin:
            w.record(
                ns,
                br,
                "drop",
                f"fdb {eth.dst} is on {in_port}, the port the frame "
                "came in on, and hairpin is off",
                pkt,
                reason=DropReason.BRIDGE,
            )
            return []
        hairpin = (
            " (hairpin: back out of the port it came in on)"
            if out_port == in_port
            else ""
        )
        w.record(ns, br, "bridge", f"fdb {eth.dst} -> port {out_port}{hairpin}", pkt)
        points = (HookPoint.FORWARD, HookPoint.POSTROUTING)
        l3 = self.hooks(ns, br, points, pkt.l3(), ctx, in_port, out_port)
        if l3 is None:
            return []
        return self.queue_xmit(ns, br, out_port, l3, eth.src, eth.dst)

    def hooks(
        self,
        ns: Netns,
        br: str,
        points: tuple[HookPoint, ...],
        l3: Packet,
        ctx: HookContext | None,
        in_port: str,
        out_port: str,
    ) -> Packet | None:
        """br_netfilter's hook points for a frame bridged from `in_port` to `out_port`
        (its IP packet, as `points` leave it; None: dropped)."""
        if ctx is None:
            ctx = self.w.stack.context(ns, points[0])
        ctx.bridged, ctx.in_port, ctx.out_port = True, in_port, out_port
        out: Packet | None = l3
        for point in points:
            assert out is not None
            out, _ = self.w.stack.hooks(ns, point, out, ctx, in_if=br, out_if=br)
            if out is None:
                return None
        return out

    def netfilter(
        self, ns: Netns, br: str, pkt: Packet, in_port: str, out_port: str
    ) -> list[Emission]:
        """br_netfilter: PREROUTING, FORWARD and POSTROUTING for a frame bridged between
        two ports (the IP header only; the Ethernet header is kept)."""
        stack = self.w.stack
        eth = pkt.eth
        l3: Packet | None = pkt.l3()
        assert l3 is not None and eth is not None
        if isinstance(ns.hooks, Netfilter):
            # nf_defrag_ipv4 (priority -400 at PREROUTING, registered with conntrack)
            # reassembles a bridged datagram before conntrack and the policy see it:
            # they judge the whole datagram, never a fragment (ports 0 -> 0).
            l3 = stack.defrag(ns, l3)
            if l3 is None:
                return []
        points = (HookPoint.PREROUTING, HookPoint.FORWARD, HookPoint.POSTROUTING)
        l3 = self.hooks(ns, br, points, l3, None, in_port, out_port)
        if l3 is None:
            return []
        return self.queue_xmit(ns, br, out_port, l3, eth.src, eth.dst)

    def queue_xmit(
        self, ns: Netns, br: str, out_port: str, l3: Packet, src: str, dst: str
    ) -> list[Emission]:
        """br_nf_dev_queue_xmit(): a datagram that br_netfilter reassembled leaves the
        port in fragments again, no larger than its largest original fragment.  They
        are cut by br_nf_ip_fragment() on br_netfilter's fake route, whose MTU is fixed
        at 1500 (br_dst_default_metrics): fragments larger than that cannot be remade,
        and the datagram is dropped (IpFragFails in /proc/net/snmp), silently."""
        mtu = ns.interfaces[out_port].mtu
        if l3.frag_max:
            mtu = min(mtu, l3.frag_max)
        if l3.ip_len() <= mtu:
            return [Xmit(l3.with_eth(src, dst), ns.id, out_port)]
        if l3.frag_max > BR_NF_FAKE_MTU:
            self.w.record(
                ns,
                br,
                "drop",
                f"br_netfilter cannot refragment: fragments of up to {l3.frag_max} "
                f"bytes > its fake route's mtu {BR_NF_FAKE_MTU} (IpFragFails)",
                l3,
                reason=DropReason.FRAG_FAILED,
            )
            return []
        pieces = fragment(l3, mtu)
        self.w.record(
            ns,
            br,
            "fragment",
            f"br_netfilter: {l3.ip_len()} bytes refragmented at {mtu} "
            f"(the largest fragment it came in): {len(pieces)} fragments",
            l3,
        )
        return [Xmit(p.with_eth(src, dst), ns.id, out_port) for p in pieces]
