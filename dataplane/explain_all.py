"""`dataplane explain --all`: the NetworkPolicy decision of every pair of pods on one port
at once, each with the rule that decided, on whole sets of pods.

The decision code's own halves are used (`dataplane.netpol.prepare`: a pod's isolating
policies and its rules in order), once per class of pods that the decision cannot tell
apart (namespace, labels, and for ingress the named ports).  The peers are then sets
(`dataplane.netpol_matrix.Sets`), and `judge`'s order becomes a partition: the first rule,
and the first of its peers, that holds a pod takes it; what no rule takes is denied.  For
egress a rule also needs its `ports` to match on the destination (named ports resolved
there), which is asked of `rule_ports_match` once per class of named ports.  A pair's
verdict is its egress group and then, if egress admits it, its ingress group: the result is
kept as blocks (sources x destinations sharing both reasons), and pairs are expanded only
for output.  A pod's traffic to itself stays in the pod and is not listed; hostNetwork pods
are their node's, not a pod's, and are left out.

A cluster with admin policies (the Admin and Baseline tiers) is decided by
`dataplane.explain_tiers` instead: per pair of classes, with the walk's own decision code
and texts; this partition models NetworkPolicy alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dataplane.explain_tiers import TierDecisions, TierPair, decide_tiers, tier_word
from dataplane.explain_tiers import texts as tier_texts
from dataplane.netpol import Direction, Step, index_of, prepare
from dataplane.netpol_index import rule_ports_match
from dataplane.netpol_matrix import Sets, bits_of, members
from dataplane.netpol_text import peer_text, port_text
from topology.model import NetworkPolicy, Pod, PolicyRule, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from topology.model import Cluster

# Why one direction admits or not: not isolated; admitted by (policy, rule, peer or None
# for a rule without peers); denied by the isolating policies.
Reason = tuple[str, tuple[NetworkPolicy, ...], int | None, int | None]
OPEN = "open"
RULE = "rule"
DENIED = "denied"


@dataclass(frozen=True, slots=True)
class PairBlock:
    """Every source in `sources` x every destination in `targets` (bitsets over
    `Sets.pods`, a pod's own pair left out) has this egress and ingress reason
    (`ingress` is None when egress denies: the ingress check is never reached)."""

    sources: int
    targets: int
    egress: Reason
    ingress: Reason | None

    @property
    def verdict(self) -> str:
        if self.egress[0] == DENIED:
            return "denied-egress"
        assert self.ingress is not None
        return "denied-ingress" if self.ingress[0] == DENIED else "allowed"


@dataclass(slots=True)
class AllDecisions:
    sets: Sets
    dport: int | None
    protocol: Protocol
    blocks: list[PairBlock]

    def counts(self) -> dict[str, int]:
        out = {"allowed": 0, "denied-egress": 0, "denied-ingress": 0}
        for b in self.blocks:
            n = (
                b.sources.bit_count() * b.targets.bit_count()
                - (b.sources & b.targets).bit_count()
            )
            out[b.verdict] += n
        return out

    def pairs(self) -> Iterator[tuple[Pod, Pod, PairBlock]]:
        """Every pair, sorted by source then destination (pod keys)."""
        pods = self.sets.pods
        order = sorted(range(len(pods)), key=lambda u: pods[u].key)
        rank = [0] * len(pods)
        for i, u in enumerate(order):
            rank[u] = i
        by_source: dict[int, list[PairBlock]] = {}
        for b in self.blocks:
            for u in members(b.sources):
                by_source.setdefault(u, []).append(b)
        targets: dict[int, list[int]] = {}  # per block: its destinations' ranks
        for u in order:
            row: list[PairBlock | None] = [None] * len(pods)
            for b in by_source.get(u, ()):
                ranks = targets.get(id(b))
                if ranks is None:
                    ranks = targets[id(b)] = [rank[v] for v in members(b.targets)]
                for r in ranks:
                    row[r] = b
            row[rank[u]] = None  # a pod's traffic to itself stays in the pod
            src = pods[u]
            for r, cell in enumerate(row):
                if cell is not None:
                    yield src, pods[order[r]], cell


def _groups(
    sets: Sets, side_steps: tuple[Step, ...], isolating: tuple[NetworkPolicy, ...],
    ports_bits: Callable[[PolicyRule], int] | None = None,
) -> list[tuple[Reason, int]]:  # fmt: skip
    """`judge`'s order as a partition of every pod: (reason, the pods it takes)."""
    if not isolating:
        return [((OPEN, (), None, None), sets.all)]
    out: list[tuple[Reason, int]] = []
    remaining = sets.all
    for pol, ri, rule, _ in side_steps:
        if rule is None or not remaining:
            continue
        allowed = remaining if ports_bits is None else remaining & ports_bits(rule)
        if not rule.peers:
            if allowed:
                out.append(((RULE, (pol,), ri, None), allowed))
                remaining &= ~allowed
            continue
        for pi, peer in enumerate(rule.peers):
            hit = allowed & sets.peer(pol.namespace, peer)
            if hit:
                out.append(((RULE, (pol,), ri, pi), hit))
                remaining &= ~hit
                allowed &= ~hit
    if remaining:
        out.append(((DENIED, isolating, None, None), remaining))
    return out


Groups = list[tuple[Reason, int]]


def _merged(classes: Iterable[tuple[int, Groups]]) -> list[tuple[int, Groups]]:
    """Classes of pods with equal partitions joined into one (their pods united)."""
    out: dict[tuple[object, ...], tuple[int, Groups]] = {}
    for bits, groups in classes:
        key = tuple(
            (kind, tuple(p.key for p in pols), ri, pi, taken)
            for (kind, pols, ri, pi), taken in groups
        )
        had = out.get(key)
        out[key] = (bits | had[0], groups) if had is not None else (bits, groups)
    return list(out.values())


def _named(pod: Pod) -> tuple[tuple[str, str, int], ...]:
    return tuple(
        sorted((p.name, p.protocol.value, p.port) for p in pod.ports() if p.name)
    )


def decide_all(
    cluster: Cluster, dport: int | None, protocol: Protocol
) -> AllDecisions | TierDecisions:
    """The decision of every pair of pods (not hostNetwork) on `protocol`/`dport`."""
    if cluster.admin_policies:
        # this partition knows NetworkPolicy's rules only: the tiers' own decisions
        return decide_tiers(cluster, dport, protocol)
    pods = [p for p in cluster.pods.values() if not p.host_network]
    ns_labels = {name: ns.labels for name, ns in cluster.namespaces.items()}
    sets = Sets(pods, ns_labels, list(cluster.policies.values()))
    index = index_of(cluster)
    # destinations by named ports: what a rule's `ports` look at
    port_class: dict[tuple[tuple[str, str, int], ...], list[int]] = {}
    for u, p in enumerate(pods):
        port_class.setdefault(_named(p), []).append(u)
    class_bits = [(pods[us[0]], bits_of(us, sets.n)) for us in port_class.values()]
    rule_bits: dict[int, int] = {}

    def ports_bits(rule: PolicyRule) -> int:
        found = rule_bits.get(id(rule))
        if found is None:
            found = sum(
                bits
                for rep, bits in class_bits
                if rule_ports_match(rule, dport, protocol, rep)
            )
            rule_bits[id(rule)] = found
        return found

    def classes(key: Any) -> dict[Any, tuple[Pod, int]]:
        out: dict[Any, list[int]] = {}
        for u, p in enumerate(pods):
            out.setdefault(key(p), []).append(u)
        return {k: (pods[us[0]], bits_of(us, sets.n)) for k, us in out.items()}

    def labels(p: Pod) -> Any:
        return (p.namespace, tuple(sorted(p.labels.items())))

    # classes whose partitions are equal are one (labels no policy looks at)
    egress = _merged(
        (bits, _groups(sets, side.steps, side.isolating, ports_bits))
        for rep, bits in classes(labels).values()
        for side in [prepare(index, Direction.EGRESS, rep, dport, protocol)]
    )
    ingress = _merged(
        (bits, _groups(sets, side.steps, side.isolating))
        for rep, bits in classes(lambda p: (*labels(p), _named(p))).values()
        for side in [prepare(index, Direction.INGRESS, rep, dport, protocol)]
    )
    blocks: list[PairBlock] = []
    for sources, out_groups in egress:
        for e_reason, targets in out_groups:
            if e_reason[0] == DENIED:
                blocks.append(PairBlock(sources, targets, e_reason, None))
                continue
            for dsts, in_groups in ingress:
                t = targets & dsts
                if not t:
                    continue
                for i_reason, admitted in in_groups:
                    s = sources & admitted
                    if s:
                        blocks.append(PairBlock(s, t, e_reason, i_reason))
    return AllDecisions(sets, dport, protocol, blocks)


def reason_text(reason: Reason, direction: str) -> str:
    """`egress: not isolated`, `ingress: default/np rule 0 peer 0 (podSelector a=b), ports
    TCP 80`, `ingress: isolated by default/deny-all, no rule admits it`."""
    kind, policies, ri, pi = reason
    if kind == OPEN:
        return f"{direction}: not isolated"
    if kind == DENIED:
        names = ", ".join(p.key for p in policies)
        return f"{direction}: isolated by {names}, no rule admits it"
    (pol,) = policies
    assert ri is not None
    rule = (pol.ingress if direction == "ingress" else pol.egress)[ri]
    if pi is None:
        who = f"(every {'source' if direction == 'ingress' else 'destination'})"
    else:
        who = f"peer {pi} ({peer_text(rule.peers[pi])})"
    ports = (
        f", ports {', '.join(port_text(p) for p in rule.ports)}" if rule.ports else ""
    )
    return f"{direction}: {pol.key} {direction} rule {ri} {who}{ports}"


def deciding_policy(block: PairBlock) -> str | None:
    """The policy that decided (as `Decision.policy`): the one that denied, else the
    ingress's (or the egress's) that admitted by a rule."""
    reasons = [r for r in (block.ingress, block.egress) if r is not None]
    for kind in (DENIED, RULE):
        for reason in reasons:
            if reason[0] == kind:
                return reason[1][0].key
    return None


def _texts(block: PairBlock) -> tuple[str, str | None]:
    ingress = block.ingress
    return (
        reason_text(block.egress, "egress"),
        reason_text(ingress, "ingress") if ingress is not None else None,
    )


def pair_dicts(
    pairs: Iterable[tuple[Pod, Pod, PairBlock | TierPair]],
) -> Iterator[dict[str, Any]]:
    """Each pair as the `explain-all` document holds it, each block's text written once
    (with the tiers: each pair's, and the tier that decided)."""
    texts: dict[int, tuple[str | None, str, str | None]] = {}
    for src, dst, block in pairs:
        if isinstance(block, TierPair):
            e_text, i_text = tier_texts(block)
            yield {"src": src.key, "dst": dst.key, "verdict": block.verdict,
                   "policy": block.deciding.policy, "tier": tier_word(block.deciding),
                   "egress": e_text, "ingress": i_text}  # fmt: skip
            continue
        found = texts.get(id(block))
        if found is None:
            found = texts[id(block)] = (deciding_policy(block), *_texts(block))
        policy, egress, ingress = found
        yield {"src": src.key, "dst": dst.key, "verdict": block.verdict,
               "policy": policy, "egress": egress, "ingress": ingress}  # fmt: skip


def pair_lines(
    pairs: Iterable[tuple[Pod, Pod, PairBlock | TierPair]],
) -> Iterator[str]:
    """`SRC -> DST: VERDICT (egress: ...; ingress: ...)`, each block's text written once;
    with the tiers `SRC -> DST: VERDICT [TIER] (egress: ...; ingress: ...)`, each pair's
    text as single-pair `explain` writes it."""
    texts: dict[int, str] = {}
    for src, dst, block in pairs:
        if isinstance(block, TierPair):
            parts = [t for t in tier_texts(block) if t is not None]
            tier = tier_word(block.deciding)
            yield f"{src.key} -> {dst.key}: {block.verdict} [{tier}] ({'; '.join(parts)})"
            continue
        text = texts.get(id(block))
        if text is None:
            parts = [t for t in _texts(block) if t is not None]
            text = texts[id(block)] = f"{block.verdict} ({'; '.join(parts)})"
        yield f"{src.key} -> {dst.key}: {text}"


__all__ = [
    "AllDecisions",
    "PairBlock",
    "decide_all",
    "pair_dicts",
    "pair_lines",
    "reason_text",
]
