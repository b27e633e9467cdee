"""Netfilter-style hook points with priorities, and the public hook API.

Each node namespace has the five hook points of netfilter.  A hook is a callable registered
at a point with a priority (lower runs first, as in nftables: conntrack -200, dnat -100,
filter 0, snat 100).  It receives the packet and a `HookContext` and returns `ACCEPT` (or
None), `Drop(...)`, or a rewritten packet.  kube-proxy, masquerade and the NetworkPolicy
filter are hooks like any user's.  A learner's hook, in five lines::

    from dataplane import ACCEPT, Drop

    def no_ping(pkt, ctx):
        if pkt.ip.proto == 1:
            return Drop("no ICMP on this cluster")
        return ACCEPT

    sim.add_hook("FORWARD", no_ping, name="no-ping")

Conntrack is built in: before the first hook of PREROUTING and OUTPUT the packet's
connection is looked up (`ctx.ct_state`), and packets of known connections get the
connection's NAT applied at -100 (destination) and 100 (source), so NAT hooks only ever see
NEW connections, as in Linux.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dataplane.affinity import AffinityTable
from dataplane.conntrack import ConntrackEntry, CtDir, CtState
from dataplane.packet import ICMP, ICMP_DEST_UNREACH, UNREACH_PORT, Packet
from dataplane.trace import DropReason, FieldDiff

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.netns import Netns
    from topology.model import Cluster


class HookPoint(StrEnum):
    PREROUTING = "PREROUTING"
    INPUT = "INPUT"
    FORWARD = "FORWARD"
    OUTPUT = "OUTPUT"
    POSTROUTING = "POSTROUTING"


# nftables' standard priorities (`nft describe`, "hook priority").
PRIORITY_CONNTRACK = -200
PRIORITY_DSTNAT = -100
PRIORITY_FILTER = 0
PRIORITY_SRCNAT = 100


@dataclass(frozen=True, slots=True)
class Accept:
    """Let the packet go on; `detail` (if any) is shown in the trace."""

    detail: str | None = None
    policy: str | None = None


ACCEPT = Accept()


@dataclass(frozen=True, slots=True)
class Drop:
    """Drop the packet; `reason` is shown in the trace and names why."""

    reason: str
    code: DropReason = DropReason.HOOK
    policy: str | None = None


@dataclass(frozen=True, slots=True)
class Reject(Drop):
    """Drop the packet and answer its sender with an ICMP error (iptables' REJECT; the
    default is `icmp-port-unreachable`)."""

    icmp_type: int = ICMP_DEST_UNREACH
    icmp_code: int = UNREACH_PORT


@dataclass(frozen=True, slots=True)
class Rewrite:
    """A rewritten packet with the diffs to show (what a NAT hook returns); `endpoint` is
    the Service backend (`NS/POD`) a DNAT chose, for `Trace.endpoint`."""

    packet: Packet
    detail: str
    diffs: tuple[FieldDiff, ...] = ()
    endpoint: str | None = None
    # The hook took the packet (NF_STOLEN) to send it on rewritten, as IPVS's
    # ip_vs_nat_xmit does from LOCAL_IN: the later hooks of this point do not run, the
    # connection is not confirmed here, and the packet is routed again and leaves by
    # LOCAL_OUT and POSTROUTING (`Stack.local_in`).
    xmit: bool = False
    # With `xmit`: the program whose socket took the connection and sends the packet as
    # its own (a userland proxy, docker-proxy: two connections in Linux, one rewritten
    # here), so it leaves by LOCAL_OUT with no TTL decrement; "" for IPVS's forwarding.
    sender: str = ""
    # With `sender`: its socket is bound to the wildcard address and answers by
    # `sendto()` (docker-proxy's UDP listener): the answer is a datagram of its own
    # from the route's source (ip_route_output: prefsrc or the device's primary
    # address) and the port asked, not the address its client asked.
    unbound: bool = False


HookResult = Accept | Drop | Rewrite | Packet | None
HookFn = Callable[[Packet, "HookContext"], HookResult]


@dataclass(frozen=True, slots=True)
class Hook:
    point: HookPoint
    priority: int
    name: str
    fn: HookFn
    # A hook of the `nat` table, or one whose rules all match `--ctstate NEW`: only the
    # first packet of a connection traverses it ("This table is consulted when a packet
    # that creates a new connection is encountered", iptables(8); later packets get the
    # connection's NAT from conntrack), so the chain of a known connection leaves it out.
    new_only: bool = False


@dataclass(slots=True)
class HookContext:
    """What a hook may look at: where the packet is and what conntrack knows of it."""

    netns: Netns
    point: HookPoint
    cluster: Cluster
    in_if: str | None = None
    out_if: str | None = None
    ct: ConntrackEntry | None = None
    ct_dir: CtDir = CtDir.ORIGINAL
    ct_state: CtState = CtState.NEW
    bridged: bool = False  # a frame bridged between two ports (br_netfilter)
    in_port: str | None = None  # the bridge port a bridged frame came in on
    out_port: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # the walk's sessionAffinity entries (None: a context outside a walk remembers none)
    affinity: AffinityTable | None = None
    # What hooks keep across the packets of one walk state (`WalkState.hook_memory`):
    # IPVS's round-robin position and persistence templates (dataplane.kubeproxy_ipvs).
    memory: dict[str, Any] = field(default_factory=dict)
    xmit: bool = False  # a hook stole the packet to send it on (`Rewrite.xmit`)
    sender: str = ""  # and the program that sends it (`Rewrite.sender`)
    unbound: bool = False  # from a wildcard-bound socket (`Rewrite.unbound`)

    @property
    def node(self) -> str:
        return self.netns.node

    @property
    def is_new(self) -> bool:
        """The first packet of a connection: NAT rules are consulted only for it (later
        packets get the connection's stored NAT from conntrack)."""
        return self.ct_state is CtState.NEW and (
            self.ct is None or not self.ct.confirmed
        )

    def dnat(self, pkt: Packet, ip: str, port: int | None, comment: str) -> Rewrite:
        """Rewrite the destination of a NEW connection and remember it in conntrack."""
        assert self.ct is not None and pkt.ip is not None
        new_port = pkt.dport if port is None else port
        self.ct.dnat = (ip, new_port)
        self.ct.tuple_reply = (pkt.ip.proto, ip, new_port, *self.ct.tuple_reply[3:])
        self.ct.nat_comment.append(comment)
        return rewrite_dst(pkt, ip, new_port, comment)

    def snat(self, pkt: Packet, ip: str, comment: str) -> Rewrite:
        """Rewrite the source of a NEW connection (masquerade keeps the port)."""
        assert self.ct is not None and pkt.ip is not None
        self.ct.snat = (ip, pkt.sport)
        t = self.ct.tuple_reply
        self.ct.tuple_reply = (t[0], t[1], t[2], ip, pkt.sport)
        self.ct.nat_comment.append(comment)
        return rewrite_src(pkt, ip, pkt.sport, comment)


def _with_ports(pkt: Packet, sport: int | None, dport: int | None) -> Packet:
    l4 = pkt.l4
    if l4 is None or isinstance(l4, ICMP):
        return pkt
    changes: dict[str, int] = {}
    if sport is not None:
        changes["sport"] = sport
    if dport is not None:
        changes["dport"] = dport
    return pkt.with_l4(**changes) if changes else pkt


def rewrite_dst(pkt: Packet, ip: str, port: int, detail: str) -> Rewrite:
    assert pkt.ip is not None
    diffs = [FieldDiff("ip.dst", pkt.ip.dst, ip)] if ip != pkt.ip.dst else []
    if port != pkt.dport and not isinstance(pkt.l4, ICMP):
        diffs.append(FieldDiff("dport", str(pkt.dport), str(port)))
    new = _with_ports(pkt.with_ip(dst=ip), None, port)
    return Rewrite(new, detail, tuple(diffs))


def rewrite_src(pkt: Packet, ip: str, port: int, detail: str) -> Rewrite:
    assert pkt.ip is not None
    diffs = [FieldDiff("ip.src", pkt.ip.src, ip)] if ip != pkt.ip.src else []
    if port != pkt.sport and not isinstance(pkt.l4, ICMP):
        diffs.append(FieldDiff("sport", str(pkt.sport), str(port)))
    new = _with_ports(pkt.with_ip(src=ip), port, None)
    return Rewrite(new, detail, tuple(diffs))


# Where the connection's own NAT (`nf_nat_packet`) runs at each point: before the first hook
# of a priority above destination NAT (PREROUTING, OUTPUT), above source NAT (INPUT,
# POSTROUTING); FORWARD has none.
NAT_PRIORITY: dict[HookPoint, int | None] = {
    HookPoint.PREROUTING: PRIORITY_DSTNAT,
    HookPoint.OUTPUT: PRIORITY_DSTNAT,
    HookPoint.INPUT: PRIORITY_SRCNAT,
    HookPoint.POSTROUTING: PRIORITY_SRCNAT,
    HookPoint.FORWARD: None,
}


@dataclass(frozen=True, slots=True)
class Chain:
    """One point's hooks compiled for the walk: those that run before the connection's NAT
    and those after (`nat` False: the point has no NAT step); `dst_nat`: the point looks
    the connection up and its NAT rewrites the destination (PREROUTING, OUTPUT);
    `confirms`: a new connection is confirmed as it leaves (INPUT, POSTROUTING:
    nf_conntrack_confirm)."""

    before: tuple[Hook, ...]
    after: tuple[Hook, ...]
    nat: bool
    dst_nat: bool = False
    confirms: bool = False

    def known(self) -> Chain:
        """The chain a packet of a known connection traverses: without `new_only` hooks."""
        return replace(
            self,
            before=tuple(h for h in self.before if not h.new_only),
            after=tuple(h for h in self.after if not h.new_only),
        )


@dataclass(slots=True)
class Netfilter:
    """The hooks of one namespace, kept sorted by priority per point, and compiled into
    a `Chain` per point whenever they change (never per packet): `compiled` for the first
    packet of a connection, `known` for the later ones (`Hook.new_only`)."""

    hooks: dict[HookPoint, list[Hook]] = field(
        default_factory=lambda: {p: [] for p in HookPoint}
    )
    compiled: dict[HookPoint, Chain] = field(default_factory=dict)
    known: dict[HookPoint, Chain] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.compile()

    def register(self, hook: Hook) -> None:
        chain = self.hooks[hook.point]
        chain.append(hook)
        chain.sort(
            key=lambda h: h.priority
        )  # stable: equal priorities keep their order
        self.compile()

    def unregister(self, name: str) -> None:
        for chain in self.hooks.values():
            chain[:] = [h for h in chain if h.name != name]
        self.compile()

    def compile(self) -> None:
        for point, hooks in self.hooks.items():
            prio = NAT_PRIORITY[point]
            dst_nat = point in (HookPoint.PREROUTING, HookPoint.OUTPUT)
            confirms = point in (HookPoint.INPUT, HookPoint.POSTROUTING)
            if prio is None:
                chain = Chain(tuple(hooks), (), False, dst_nat, confirms)
            else:
                before = tuple(h for h in hooks if h.priority <= prio)
                after = tuple(hooks[len(before) :])
                chain = Chain(before, after, True, dst_nat, confirms)
            self.compiled[point] = chain
            self.known[point] = chain.known()

    def chain(self, point: HookPoint) -> list[Hook]:
        return self.hooks[point]
