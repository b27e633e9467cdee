"""`dataplane explain --all` on a cluster with admin policies (network-policy-api's Admin
and Baseline tiers around NetworkPolicy): every pair's decision by the shared decision code.

Each pair is decided by `dataplane.netpol.prepare` + `judge`, the code the walk's filter
hooks and single-pair `dataplane explain` use, but once per pair of *classes* of pods
that no policy of any tier can tell apart: same namespace (so the same namespace labels),
same values of the label keys the pod selectors use, same ports of the names the rules
use, and the same membership in every CIDR a policy names (`ipBlock`, `networks`: they
match pod addresses too).  A pair's verdict is, as the walk
meets the hooks, the source's egress and then, if it admits, the destination's ingress.
Classes are expanded only for output: the class decision is re-addressed to the pair's
own pods (`dataclasses.replace`), so that `dataplane.netpol_text.explain` writes the very
line single-pair `explain -o json` writes for it (its pods, addresses, named ports).
A pod's own pair is left out; hostNetwork pods are their node's and are left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

from dataplane import netpol_text
from dataplane.netpol import (
    Decision,
    Direction,
    PolicyIndex,
    Side,
    index_of,
    judge,
    prepare,
)
from topology.model import LabelSelector, Pod, PolicyPort, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from topology.model import Cluster


@dataclass(frozen=True, slots=True)
class TierPair:
    """The decisions of one pair of classes: the source's egress and, when it admits,
    the destination's ingress (None: never reached), on the classes' first pods."""

    egress: Decision
    ingress: Decision | None

    @property
    def verdict(self) -> str:
        if not self.egress.allowed:
            return "denied-egress"
        assert self.ingress is not None
        return "allowed" if self.ingress.allowed else "denied-ingress"

    @property
    def deciding(self) -> Decision:
        """The decision the walk reports (`Trace.policy`): the one that denied, else the
        first that admitted with a policy (egress, then ingress: `dataplane.stack`)."""
        if self.ingress is None or not self.egress.allowed:
            return self.egress
        if not self.ingress.allowed or self.egress.policy is None:
            return self.ingress
        return self.egress


@dataclass(slots=True)
class _LookedAt:
    """What the policies of every tier look at in a pod: the label keys of their pod
    selectors, the port names of their rules and the CIDRs of their peers."""

    keys: set[str]
    names: set[str]
    cidrs: set[IPv4Network]

    def selector(self, sel: LabelSelector | None) -> None:
        if sel is not None:
            self.keys |= set(sel.match_labels)
            self.keys |= {r.key for r in sel.match_expressions}

    def ports(self, ports: tuple[PolicyPort, ...]) -> None:
        self.names |= {p.port for p in ports if isinstance(p.port, str)}


def _looked_at(cluster: Cluster) -> _LookedAt:
    index = index_of(cluster)
    out = _LookedAt(set(), set(), set())
    for pol in cluster.policies.values():
        out.selector(pol.pod_selector)
        for rule in (*pol.ingress, *pol.egress):
            out.ports(rule.ports)
            for peer in rule.peers:
                out.selector(peer.pod_selector)
                if peer.ip_block is not None:
                    out.cidrs |= {peer.ip_block.cidr, *peer.ip_block.except_}
    for apol in cluster.admin_policies.values():
        out.selector(apol.subject.pod_selector)
        for arule in (*apol.ingress, *apol.egress):
            out.ports(arule.ports)
            for apeer in arule.peers:
                out.selector(apeer.pod_selector)
                out.cidrs |= set(index.address_networks(apeer))
    return out


@dataclass(slots=True)
class TierDecisions:
    """The decision of every pair of classes (`decisions[(i, j)]`, i the source's)."""

    index: PolicyIndex
    pods: list[Pod]
    classes: list[list[int]]  # pods' indices, per class
    class_of: list[int]  # per pod
    decisions: dict[tuple[int, int], TierPair]

    def counts(self) -> dict[str, int]:
        out = {"allowed": 0, "denied-egress": 0, "denied-ingress": 0}
        for (i, j), pair in self.decisions.items():
            n = len(self.classes[i]) * len(self.classes[j])
            out[pair.verdict] += n - (len(self.classes[i]) if i == j else 0)
        return out

    def pairs(self) -> Iterator[tuple[Pod, Pod, TierPair]]:
        """Every pair, sorted by source then destination (pod keys)."""
        order = sorted(range(len(self.pods)), key=lambda u: self.pods[u].key)
        for u in order:
            for v in order:
                if u != v:
                    src, dst = self.pods[u], self.pods[v]
                    found = self.decisions[self.class_of[u], self.class_of[v]]
                    yield src, dst, self._addressed(src, dst, found)

    def _addressed(self, src: Pod, dst: Pod, pair: TierPair) -> TierPair:
        """The class's decisions re-addressed to `src` and `dst` (its pods, addresses
        and named ports in the text; the verdicts are the class's)."""
        party = self.index.party
        egress = pair.egress
        if egress.pod is not src or egress.peer.pod is not dst:
            egress = replace(egress, pod=src, peer=party(str(dst.ip)))
        ingress = pair.ingress
        if ingress is not None and (
            ingress.pod is not dst or ingress.peer.pod is not src
        ):
            ingress = replace(ingress, pod=dst, peer=party(str(src.ip)))
        return TierPair(egress, ingress)


def decide_tiers(
    cluster: Cluster, dport: int | None, protocol: Protocol
) -> TierDecisions:
    """Every pair of pods (not hostNetwork) on `protocol`/`dport`, all tiers included."""
    pods = [p for p in cluster.pods.values() if not p.host_network]
    index = index_of(cluster)
    seen = _looked_at(cluster)
    cidrs = sorted(seen.cidrs)

    def key(p: Pod) -> tuple[Any, ...]:
        """What tells pods apart: their namespace, and what the policies look at."""
        ip = IPv4Address(str(p.ip))
        labels = sorted((k, v) for k, v in p.labels.items() if k in seen.keys)
        named = sorted(
            (c.name, c.protocol.value, c.port)
            for c in p.ports()
            if c.name in seen.names
        )
        return (p.namespace, tuple(labels), tuple(named),
                tuple(ip in n for n in cidrs))  # fmt: skip

    by_key: dict[tuple[Any, ...], list[int]] = {}
    for u, p in enumerate(pods):
        by_key.setdefault(key(p), []).append(u)
    classes = list(by_key.values())
    class_of = [0] * len(pods)
    for i, us in enumerate(classes):
        for u in us:
            class_of[u] = i
    decisions: dict[tuple[int, int], TierPair] = {}
    sides: dict[int, Side] = {}  # the ingress half of each destination class's pod
    for i, srcs in enumerate(classes):
        src = pods[srcs[0]]
        out = prepare(index, Direction.EGRESS, src, dport, protocol)
        src_party = index.party(str(src.ip))
        for j, dsts in enumerate(classes):
            if i == j and len(srcs) == 1:
                continue  # a pod's traffic to itself stays in the pod
            dst = pods[dsts[1] if i == j else dsts[0]]
            egress = judge(index, out, index.party(str(dst.ip)))
            ingress = None
            if egress.allowed:
                side = sides.get(id(dst))
                if side is None:
                    side = prepare(index, Direction.INGRESS, dst, dport, protocol)
                    sides[id(dst)] = side
                ingress = judge(index, side, src_party)
            decisions[i, j] = TierPair(egress, ingress)
    return TierDecisions(index, pods, classes, class_of, decisions)


def tier_word(d: Decision) -> str:
    """The tier that decided, as the line and the document name it."""
    return d.tier or "default"


def texts(pair: TierPair) -> tuple[str, str | None]:
    """The egress and ingress text, `netpol_text.explain`'s single line."""
    ingress = pair.ingress
    return (
        f"egress: {netpol_text.explain(pair.egress)}",
        f"ingress: {netpol_text.explain(ingress)}" if ingress is not None else None,
    )


__all__ = ["TierDecisions", "TierPair", "decide_tiers", "texts", "tier_word"]
