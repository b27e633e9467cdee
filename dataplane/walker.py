"""The walk: follow a packet from device to device until nothing is left to do.

Devices (`dataplane.stack`, `dataplane.bridge`, `dataplane.vxlan`, the underlay segment)
return emissions and never call one another; only the walker follows links, counts hops,
stops loops and records hops.  An emission is a packet leaving an interface (`Xmit`),
arriving at one (`Rx`), or handed to a namespace's IP layer by a local sender (`Out`).
The queue is first-in first-out, so ARP requests, replies and the packets that waited for
them come in the order Linux would send them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from dataplane import ipip
from dataplane.affinity import AffinityTable
from dataplane.bridge import Bridges
from dataplane.conntrack import Conntrack
from dataplane.emission import Bridged, Emission, Out, Rx, Unseen, Xmit
from dataplane.fabric import Fabric
from dataplane.netns import Interface, Kind, Netns
from dataplane.packet import ARP_REQUEST, BROADCAST, Packet
from dataplane.stack import Stack
from dataplane.trace import DropReason, FieldDiff, Frame, Hop, Trace, Verdict
from dataplane.vxlan import encapsulate
from topology.model import Cluster


@dataclass(frozen=True, slots=True)
class Client:
    """The probing socket: what it sent, so that what comes back can be recognised."""

    netns: str
    proto: int
    sport: int
    dst: str
    dport: int


@dataclass(slots=True)
class WalkState:
    """Everything a walk learns; a fresh state means cold caches and no connections."""

    neigh: dict[tuple[str, str, str], str] = field(default_factory=dict)
    fdb: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    conntrack: dict[str, Conntrack] = field(default_factory=dict)
    pending: dict[tuple[str, str, str], list[tuple[Packet, bool, Bridged | None]]] = (
        field(default_factory=dict)
    )
    frags: dict[tuple[str, str, str, int, int], list[Packet]] = field(
        default_factory=dict
    )
    next_ip_id: int = 1
    # TCP connections a listening socket accepted (ns, local ip, port, peer ip, port).
    tcp_conns: set[tuple[str, str, int, str, int]] = field(default_factory=set)
    # ICMP error tokens left per (namespace, destination) (dataplane.icmp_limit)
    icmp_tokens: dict[tuple[str, str], int] = field(default_factory=dict)
    # ICMP redirects asked for per (router namespace, sender) (icmp_limit.redirect_allowed)
    redirects: dict[tuple[str, str], int] = field(default_factory=dict)
    # path MTU exceptions per (namespace, destination) (dataplane.pmtu)
    pmtu: dict[tuple[str, str], int] = field(default_factory=dict)
    # sessionAffinity ClientIP entries and the clock (dataplane.affinity)
    affinity: AffinityTable = field(default_factory=AffinityTable)
    # what hooks remember between packets (`HookContext.memory`): IPVS's schedulers
    hook_memory: dict[str, Any] = field(default_factory=dict)

    def ct(self, ns: str) -> Conntrack:
        table = self.conntrack.get(ns)
        if table is None:
            table = self.conntrack[ns] = Conntrack()
        return table

    def ip_id(self) -> int:
        self.next_ip_id += 1
        return self.next_ip_id - 1


@dataclass(slots=True)
class Outcome:
    verdict: Verdict
    explanation: str
    reason: DropReason | None = None


def wants(ns: Netns, ifname: str, pkt: Packet) -> bool:
    """Whether a frame arriving at `ns`/`ifname` is worth a hop in the trace.

    Floods reach every port; the namespaces that silently ignore them (not their MAC, an
    ARP request for someone else) are left out of the trace to keep it readable.
    """
    iface = ns.interfaces[ifname]
    eth = pkt.eth
    if iface.master is not None or eth is None or eth.dst == iface.mac:
        return True
    return (
        pkt.arp is not None
        and pkt.arp.op == 1
        and (iface.proxy_arp or ns.is_local(pkt.arp.pdst))
    )


# A trace record (`Hop`, `Frame`) from all its fields in order: `tuple.__new__` without the
# named tuple's own `__new__` (a Python function, one call more for each of ~100 a probe).
_new_record = tuple.__new__
assert Hop._fields[10:] == ("point", "program"), "Walker.record writes every field"

_STACK_KINDS = (Kind.VETH, Kind.ETH)
# devices that hand a decapsulated packet up
_TUNNEL_KINDS = (Kind.VXLAN, Kind.GENEVE, Kind.IPIP)
_VETH_DETAILS: dict[
    int, tuple[Interface, str]
] = {}  # `Walker.veth_detail`  # devices whose frames go to `Stack.receive`


def ignores(ns: Netns, ifname: str, pkt: Packet) -> bool:
    """Whether a frame arriving at `ns`/`ifname` is dropped at once by its IP layer
    (`Stack.receive`: not its MAC, an ARP request for an address it does not have, an
    ARP reply that is not its own), so that it need not be handed over."""
    iface = ns.interfaces[ifname]
    eth = pkt.eth
    if iface.master is not None or iface.kind not in _STACK_KINDS or eth is None:
        return False
    if eth.dst == iface.mac:
        return False
    if eth.dst != BROADCAST:
        return True
    arp = pkt.arp
    return arp is not None and not (
        arp.op == ARP_REQUEST and (iface.proxy_arp or ns.is_local(arp.pdst))
    )


class Walker:
    """Runs one walk over a fabric and records it into a trace.

    `capture=False`: no frames are kept for pcap (`Trace.frames` stays empty); the hops
    are the same.  Either way a flood is walked only to the ports that can act on it
    (`dataplane.bridge.Flood`); with captures, the copies to the others leave their frames
    (`Unseen`), as Linux sends them.

    The hop limit (a forwarding loop's end) counts the steps that reach a device that acts
    on the frame: a flooded copy that its receiver drops unseen (`ignores`) is not one, so
    a bridge with thousands of ports does not look like a loop, with or without captures.
    """

    def __init__(
        self,
        fabric: Fabric,
        cluster: Cluster,
        trace: Trace,
        state: WalkState | None = None,
        client: Client | None = None,
        hop_limit: int = 4000,
        capture: bool = True,
    ) -> None:
        self.fabric = fabric
        self.cluster = cluster
        self.trace = trace
        self.state = state if state is not None else WalkState()
        self.client = client
        self.hop_limit = hop_limit
        self.capture = capture
        # each emission with the direction of the walk that emitted it: a request
        # fragment queued before an ICMP error answered its first fragment is still a
        # request when it is walked on
        self.queue: deque[tuple[Emission, str]] = deque()
        self.outcome: Outcome | None = None
        self.first_drop: Hop | None = None
        self.direction = "request"
        self.delivered_to: str | None = None  # the socket the request reached
        self.stack = Stack(self)
        self.bridges = Bridges(self)
        self.steps = 0
        # what each kind of emission is handed to (`dispatch`): by type, not a chain
        # of isinstance tests, as the walk dispatches dozens of them per probe
        self.handlers: dict[type, Callable[[Any], None]] = {
            Xmit: self.on_xmit,
            Rx: self.on_rx,
            Out: self.on_out,
            Unseen: self.unseen,
            Bridged: self.on_bridged,
        }

    # -- recording -------------------------------------------------------------------------
    def record(
        self,
        ns: Netns | str,
        device: str,
        event: str,
        detail: str,
        pkt: Packet | None = None,
        diffs: tuple[FieldDiff, ...] = (),
        reason: DropReason | None = None,
    ) -> Hop:
        if ns.__class__ is str:
            node, label = ns, ""
        else:
            node, label = ns.node, ns.label  # type: ignore[union-attr]
        hops = self.trace.hops
        hop = _new_record(Hop, (len(hops) + 1, node, label, device, event, detail, pkt,
                                diffs, reason, self.direction, "", ""))  # fmt: skip
        hops.append(hop)
        if reason is not None and self.first_drop is None:
            self.first_drop = hop
        return hop

    def wire(self, ns: Netns, device: str, pkt: Packet) -> None:
        """A frame seen by `tcpdump -i device` in `ns` (for `dataplane.pcap`); it takes
        the number of the last hop recorded."""
        if not self.capture:
            return
        self.trace.frames.append(
            _new_record(Frame, (len(self.trace.hops), ns.node, ns.id, device, pkt))
        )

    def finish(
        self, verdict: Verdict, explanation: str, reason: DropReason | None = None
    ) -> None:
        """The client learned the result (a reply, an error, a local failure)."""
        if self.outcome is None:
            self.outcome = Outcome(verdict, explanation, reason)

    def emit(self, emissions: list[Emission] | tuple[Emission, ...]) -> None:
        self.queue.extend(zip(emissions, repeat(self.direction)))

    # -- the loop --------------------------------------------------------------------------
    def run(self, first: Emission | list[Emission]) -> Trace:
        self.emit(first if isinstance(first, list) else [first])
        queue, limit, handlers = self.queue, self.hop_limit, self.handlers
        # straight to the handlers, unless a subclass watches `dispatch`
        dispatch = None if type(self).dispatch is Walker.dispatch else self.dispatch
        while True:
            while queue:
                self.steps += 1
                if self.steps > limit:
                    break
                em, self.direction = queue.popleft()
                if dispatch is None:
                    handlers[em.__class__](em)
                else:
                    dispatch(em)
            if self.steps > self.hop_limit:
                self.record(
                    "walker",
                    "",
                    "drop",
                    f"hop limit {self.hop_limit} reached (a forwarding loop?)",
                    reason=DropReason.HOP_LIMIT,
                )
                self.queue.clear()
            # ARP that nobody answered: the kernel gives up after its retries and answers
            # the waiting packets with ICMP host unreachable (or EHOSTUNREACH locally).
            if not self.state.pending or self.steps > self.hop_limit:
                break
            self.emit(self.stack.neigh_failed())
        self.conclude()
        return self.trace

    def dispatch(self, em: Emission) -> None:
        self.handlers[em.__class__](em)

    def on_rx(self, em: Rx) -> None:
        ns = self.fabric.netns[em.netns]
        iface = ns.interfaces[em.ifname]
        pkt = em.pkt
        if iface.master is not None:
            # tcpdump puts the bridge in promiscuous mode: it sees every frame
            # entering a port (br_handle_frame_finish -> br_pass_frame_up).
            self.wire(ns, iface.master, pkt)
            self.emit(self.bridges.receive(ns, iface.master, pkt, em.ifname))
            return
        if iface.kind in _TUNNEL_KINDS:
            self.wire(ns, em.ifname, pkt)  # the decapsulated inner frame
        self.emit(self.stack.receive(ns, em.ifname, pkt, em.port))

    def on_xmit(self, em: Xmit) -> None:
        ns = self.fabric.netns[em.netns]
        self.xmit(ns, ns.interfaces[em.ifname], em.pkt)

    def on_out(self, em: Out) -> None:
        self.emit(self.stack.output(self.fabric.netns[em.netns], em.pkt, em.raw))

    def on_bridged(self, em: Bridged) -> None:
        ns = self.fabric.netns[em.netns]
        self.emit(
            self.bridges.forward_bridged(ns, em.bridge, em.pkt, em.in_port, em.ctx)
        )

    def xmit(self, ns: Netns, iface: Interface, pkt: Packet) -> None:
        """The packet leaves `iface`; follow the link."""
        emit = self.emit
        kind = iface.kind
        if kind is Kind.VETH:
            assert iface.peer is not None
            peer_id, peer_if = iface.peer
            peer_ns = self.fabric.netns[peer_id]
            if iface.master is None:  # bridge ports are recorded by the bridge
                self.record(
                    ns, iface.ifname, "xmit", f"{pkt.frame_len()}-byte frame", pkt
                )
            self.wire(ns, iface.ifname, pkt)
            if wants(peer_ns, peer_if, pkt):
                detail = self.veth_detail(peer_ns, peer_if)
                self.record(peer_ns, peer_if, "recv", detail, pkt)
            self.wire(peer_ns, peer_if, pkt)
            if ignores(peer_ns, peer_if, pkt):
                self.steps -= 1  # a copy that nobody acts on is not a step
            else:
                emit((Rx(pkt, peer_id, peer_if),))
        elif kind is Kind.BRIDGE:
            self.wire(ns, iface.ifname, pkt)
            emit(self.bridges.receive(ns, iface.ifname, pkt, None))
        elif kind is Kind.VXLAN or kind is Kind.GENEVE:
            self.wire(ns, iface.ifname, pkt)  # the inner frame, before encapsulation
            emit(encapsulate(self, ns, iface, pkt))
        elif kind is Kind.IPIP:
            self.wire(ns, iface.ifname, pkt)  # the inner packet, before encapsulation
            emit(ipip.encapsulate(self, ns, iface, pkt))
        elif kind is Kind.ETH:
            self.record(
                ns,
                iface.ifname,
                "xmit",
                f"{pkt.frame_len()}-byte frame onto the {iface.segment}",
                pkt,
            )
            self.wire(ns, iface.ifname, pkt)
            emit(self.segment_forward(ns, iface.ifname, pkt))
        elif kind is Kind.LOOPBACK:
            self.record(ns, "lo", "xmit", "loopback: back into this namespace", pkt)
            self.wire(ns, "lo", pkt)
            emit((Rx(pkt, ns.id, "lo"),))

    def unseen(self, em: Unseen) -> None:
        """Flooded copies nobody acts on (`dataplane.bridge.Flood`): what tcpdump sees
        of each, leaving its bridge port and arriving at the peer, as a veth `Xmit` to
        an `ignores` peer would record; like those copies, no step of the walk."""
        self.steps -= 1
        if not self.capture:
            return
        ns = self.fabric.netns[em.netns]
        netns, frames, pkt = self.fabric.netns, self.trace.frames, em.pkt
        seq = len(self.trace.hops)
        for port, peer_id, peer_if in em.copies:
            frames.append(Frame(seq, ns.node, ns.id, port, pkt))
            frames.append(Frame(seq, netns[peer_id].node, peer_id, peer_if, pkt))

    def veth_detail(self, ns: Netns, ifname: str) -> str:
        iface = ns.interfaces[ifname]
        hit = _VETH_DETAILS.get(id(iface))  # by identity: a device's text, written once
        if hit is not None and hit[0] is iface:
            return hit[1]
        if len(_VETH_DETAILS) > 65536:
            _VETH_DETAILS.clear()
        detail = self.veth_text(ns, iface)
        _VETH_DETAILS[id(iface)] = (iface, detail)
        return detail

    def veth_text(self, ns: Netns, iface: Interface) -> str:
        assert iface.peer is not None
        peer = self.fabric.netns[iface.peer[0]]
        what = peer.label if peer.kind.value != "host" else f"{peer.node}"
        master = f", port of {iface.master}" if iface.master else ""
        return f"veth peer of {what} {iface.peer[1]}{master}"

    def segment_forward(self, ns: Netns, ifname: str, pkt: Packet) -> list[Emission]:
        """The underlay switch: learn the source MAC, forward or flood."""
        seg = self.fabric.segments[ns.interfaces[ifname].segment or ""]
        assert pkt.eth is not None
        fdb = self.state.fdb.setdefault((seg.name, ""), {})
        fdb[pkt.eth.src] = ns.id
        dst = fdb.get(pkt.eth.dst)
        if dst is not None:
            targets = [dst] if dst != ns.id else []
        else:
            targets = [n for n in seg.ports if n != ns.id]
        out: list[Emission] = []
        for t in targets:
            peer = self.fabric.netns[t]
            port = seg.ports[t]
            if wants(peer, port, pkt):
                self.record(
                    peer, port, "recv", f"from the {seg.name} ({ns.node} {ifname})", pkt
                )
            self.wire(peer, port, pkt)
            if not ignores(peer, port, pkt):
                out.append(Rx(pkt, t, port))
        return out

    # -- the result ------------------------------------------------------------------------
    def conclude(self) -> None:
        t = self.trace
        if self.outcome is not None:
            t.verdict = self.outcome.verdict
            t.reason = self.outcome.reason
            t.explanation = self.outcome.explanation
        elif self.first_drop is not None and self.first_drop.reason is not None:
            t.verdict = self.first_drop.reason.verdict
            t.reason = self.first_drop.reason
            t.explanation = (
                f"dropped at {self.first_drop.where}: {self.first_drop.detail}"
            )
        elif self.client is None and self.delivered_to is not None:
            t.verdict = Verdict.DELIVERED
            t.explanation = f"delivered to {self.delivered_to}"
        else:
            t.verdict = Verdict.DROPPED
            t.reason = DropReason.NO_SOCKET
            t.explanation = "nothing came back and nothing recorded a drop"
