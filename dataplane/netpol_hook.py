"""The NetworkPolicy filter: two hooks at FORWARD on every node, priority `filter` (0).

Where Kubernetes network plugins enforce policy: on the node of the source pod for its
egress rules, on the node of the destination pod for its ingress rules.  Routed traffic
meets them in FORWARD; traffic between two pods of one node is bridged, and `br_netfilter`
runs the same FORWARD hooks (`ctx.bridged`), so both checks happen there.  They see the
packet after kube-proxy's DNAT (the backend pod and its target port) and before masquerade.

Only NEW connections are judged: a packet of a known connection (ESTABLISHED, or an ICMP
error RELATED to one) passes at once, which is why replies of an admitted connection come
back.  Traffic from a node to its own pods never reaches FORWARD (it leaves by OUTPUT), and
hostNetwork pods are not pods to a policy, so both are always allowed.  The decision itself
is `dataplane.netpol.decide`, shared with `dataplane explain` and the matrix.
"""

from __future__ import annotations

from collections.abc import Callable

from dataplane import netpol_text
from dataplane.conntrack import CtDir, CtState
from dataplane.netfilter import (
    PRIORITY_FILTER,
    Accept,
    Drop,
    Hook,
    HookContext,
    HookPoint,
    HookResult,
)
from dataplane.netpol import Decision, Direction, PolicyIndex, decide, index_of
from dataplane.packet import (
    ICMP,
    IPPROTO_ICMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Packet,
)
from dataplane.trace import DropReason
from topology.model import Cluster, Pod, Protocol, Tier

NAME = "netpol"
MEMO_LIMIT = 4096  # verdicts kept per cluster (`_judge`), then forgotten at once
# Where a CNI says its filter sits, for the hop line: Felix's `cali-fw-caliXXX` for a
# pod's egress; None for the plain FORWARD filter.
ChainName = Callable[[Direction, Pod], str]
PROTOCOLS = {
    IPPROTO_TCP: Protocol.TCP,
    IPPROTO_UDP: Protocol.UDP,
    IPPROTO_SCTP: Protocol.SCTP,
    IPPROTO_ICMP: Protocol.ICMP,
}


def packet_query(pkt: Packet) -> tuple[int | None, Protocol | None]:
    """What a policy's `ports` look at: the destination port and the protocol (ICMP and
    other protocols have no port; only rules without `ports` admit them)."""
    assert pkt.ip is not None
    protocol = PROTOCOLS.get(pkt.ip.proto)
    if protocol is None or pkt.l4 is None or isinstance(pkt.l4, ICMP):
        return None, protocol
    return pkt.dport, protocol


def decision(
    index: PolicyIndex, direction: Direction, node: str, pkt: Packet
) -> Decision | None:
    """The decision the filter of `node` takes on a NEW packet for `direction`, or None
    when no pod of this node is on that end of it."""
    ip = pkt.ip
    assert ip is not None
    pod_ip, other_ip = (
        (ip.src, ip.dst) if direction is Direction.EGRESS else (ip.dst, ip.src)
    )
    pod = index.pods_by_ip.get(pod_ip)
    if pod is None or pod.node != node:
        return None
    dport, protocol = packet_query(pkt)
    return decide(index, direction, pod, index.party(other_ip), dport, protocol)


def decisions_at(cluster: Cluster, node: str, pkt: Packet) -> list[Decision]:
    """Both checks of the filter of `node` on a NEW packet: egress, then ingress."""
    index = index_of(cluster)
    found = (
        decision(index, d, node, pkt) for d in (Direction.EGRESS, Direction.INGRESS)
    )
    return [d for d in found if d is not None]


def _known(pkt: Packet, ctx: HookContext, index: PolicyIndex) -> HookResult:
    """A packet of a known connection: shown once (by the egress hook), never judged."""
    ip = pkt.ip
    assert ip is not None
    pods, node = index.pods_by_ip, ctx.node
    src, dst = pods.get(ip.src), pods.get(ip.dst)
    if (src is None or src.node != node) and (dst is None or dst.node != node):
        return None
    return _KNOWN[ctx.ct_state, ctx.ct_dir]


# `_known`'s answer for each conntrack state and direction, written once.
_KNOWN = {
    (state, d): Accept(
        f"{state.value} ({d.value} direction): a packet of an admitted connection is "
        "not filtered -> accept"
    )
    for state in CtState
    for d in CtDir
}


def _judge(
    pkt: Packet, ctx: HookContext, direction: Direction, chain: ChainName | None = None
) -> HookResult:
    if pkt.ip is None:
        return None
    index = index_of(ctx.cluster)
    # `ct state established,related accept`: a connection that has seen its reply (or an
    # ICMP error about it). A retransmitted first packet is still NEW and judged again.
    if ctx.ct_state is not CtState.NEW:
        return _known(pkt, ctx, index) if direction is Direction.EGRESS else None
    # The verdict depends on the addresses, the port and the protocol only (the cluster
    # is immutable): taken once per flow and filter, then read back.
    ip = pkt.ip
    key = (direction, chain, ctx.node, ip.src, ip.dst, ip.proto, *packet_query(pkt))
    memo = index.memo
    if key in memo:
        return memo[key]  # type: ignore[return-value]
    d = decision(index, direction, ctx.node, pkt)
    res = None if d is None else _verdict(d, chain)
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[key] = res
    return res


def _verdict(d: Decision, chain: ChainName | None = None) -> HookResult:
    """The hook's answer for a decision, its hop line naming `chain` if given."""
    where = "" if chain is None else f"{chain(d.direction, d.pod)}: "
    if d.allowed:
        return Accept(where + netpol_text.summary(d), policy=d.policy)
    code = (
        DropReason.POLICY_EGRESS
        if d.direction is Direction.EGRESS
        else DropReason.POLICY_INGRESS
    )
    return Drop(where + netpol_text.explain(d), code, policy=d.policy)


def judge(
    direction: Direction, chain: ChainName
) -> Callable[[Packet, HookContext], HookResult]:
    """The filter of one direction as a hook function whose hop lines name `chain`
    (a CNI that keeps policy in chains of its own: `dataplane.cni.calico`)."""

    def fn(pkt: Packet, ctx: HookContext) -> HookResult:
        return _judge(pkt, ctx, direction, chain)

    fn.__name__ = f"{direction.value}_in_chain"
    return fn


def egress(pkt: Packet, ctx: HookContext) -> HookResult:
    """The egress rules of a source pod that runs on this node."""
    return _judge(pkt, ctx, Direction.EGRESS)


def ingress(pkt: Packet, ctx: HookContext) -> HookResult:
    """The ingress rules of a destination pod that runs on this node."""
    return _judge(pkt, ctx, Direction.INGRESS)


def egress_to_host(pkt: Packet, ctx: HookContext) -> HookResult:
    """A local pod's NEW connection to this node itself (INPUT): NetworkPolicy always
    admits a pod's own node, so only an admin-tier or baseline rule that decides speaks
    here (a `nodes` or `networks` peer: upstream's *EgressNodePeers conformance tests deny
    the client's own node like any other); otherwise nothing is shown, as before."""
    if pkt.ip is None or ctx.ct_state is not CtState.NEW:
        return None
    d = decision(index_of(ctx.cluster), Direction.EGRESS, ctx.node, pkt)
    if d is None or d.tier not in (Tier.ADMIN.value, Tier.BASELINE.value):
        return None
    return _verdict(d)


def hooks() -> list[Hook]:
    """The filter's hooks (all named `netpol`): egress, then ingress in FORWARD; the
    admin tiers on a pod's traffic to its own node in INPUT."""
    return [
        Hook(HookPoint.FORWARD, PRIORITY_FILTER, NAME, egress),
        Hook(HookPoint.FORWARD, PRIORITY_FILTER, NAME, ingress),
        Hook(HookPoint.INPUT, PRIORITY_FILTER, NAME, egress_to_host),
    ]


def endpoint_hooks(chain: ChainName, to_host: ChainName | None = None) -> list[Hook]:
    """The filter of a CNI that keeps policy per endpoint (Calico's `cali-fw-`/`cali-tw-`
    chains, Cilium's endpoint programs), its hop lines naming `chain`: egress, then
    ingress in FORWARD, and in INPUT a pod's traffic to its own host judged by its
    egress rules like any other (`to_host` names that chain, if it differs)."""
    return [
        Hook(HookPoint.FORWARD, PRIORITY_FILTER, NAME, judge(Direction.EGRESS, chain)),
        Hook(HookPoint.FORWARD, PRIORITY_FILTER, NAME, judge(Direction.INGRESS, chain)),
        Hook(
            HookPoint.INPUT,
            PRIORITY_FILTER,
            NAME,
            judge(Direction.EGRESS, to_host or chain),
        ),
    ]
