"""NetworkPolicy decisions (networking.k8s.io/v1), pure: which policies isolate a pod, and
which rule, peer and port admit a connection, or why none does.

One decision function serves the packet walk (the FORWARD hooks of `dataplane.netpol_hook`),
`dataplane explain` and the reachability matrix (`dataplane.matrix`), so that they can never
disagree.  The semantics are the Kubernetes documentation's ("Network Policies") and the API
reference's:

- A policy selects the pods of its own namespace that its `podSelector` matches (`{}`: every
  pod there); hostNetwork pods are never selected (their traffic is their node's).
- A pod is isolated for ingress (egress) when some policy selecting it has `Ingress`
  (`Egress`) in `policyTypes` (defaulted by `topology.normalize`: Ingress always, Egress when
  egress rules exist).  An isolated pod accepts what at least one rule of one of those
  policies admits (the union); a pod that is not isolated accepts everything.  A connection
  needs both the source's egress and the destination's ingress.
- A rule admits when one of its ports matches (no ports: every port and protocol) and one
  of its peers matches (no peers: every address).  A peer is an `ipBlock` (the address is in
  `cidr` and in no `except`; pod addresses included), a `podSelector` alone (pods of the
  policy's namespace), a `namespaceSelector` alone (every pod of the matching namespaces), or
  both in one peer (AND).  Selectors match pods only, never nodes or external hosts.
- A port matches on protocol (TCP when not given) and number, range (`port`..`endPort`) or
  name; a named port is resolved on the destination pod, for ingress and egress alike.
- Traffic between a pod and the node it runs on is always allowed.

Around NetworkPolicy stand the tiers of network-policy-api (`dataplane.netpol` is their
one decision too; docs/model.md, "Admin policy tiers"): per direction, the Admin tier
(AdminNetworkPolicy, ClusterNetworkPolicy `tier: Admin`) first, by priority then rule
order, the first matching rule deciding (Allow/Accept, Deny) or passing (Pass: the rest of
the tier is skipped); then NetworkPolicy, which decides for the pods it isolates; then
the Baseline tier (BaselineAdminNetworkPolicy, ClusterNetworkPolicy `tier: Baseline`);
then the default, allow.

Decisions record why a rule did not admit (`Decision.misses`) as small tuples; the prose is
written only when asked for (`dataplane.netpol_text`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from dataplane.netpol_index import (
    NO_RULES,
    PORTS_MISS,
    Direction,
    Party,
    PeerMiss,
    PolicyIndex,
    RuleMiss,
    Term,
    index_of,
    port_matches,
    rule_ports_match,
)
from topology.model import (
    AdminAction,
    AdminPolicy,
    AdminRule,
    Cluster,
    NetworkPolicy,
    Pod,
    PolicyRule,
    Protocol,
    Tier,
)

__all__ = [
    "AdminStep",
    "Decision",
    "Direction",
    "Party",
    "PeerMiss",
    "PolicyIndex",
    "RuleMiss",
    "Side",
    "Term",
    "TierVerdict",
    "decide",
    "egress_decision",
    "index_of",
    "ingress_decision",
    "judge",
    "port_matches",
    "prepare",
]


# One rule of an admin policy, in evaluation order: (policy, rule index, the rule to check
# against the peer or None, why it cannot match or None).
AdminStep = tuple[AdminPolicy, int, AdminRule | None, RuleMiss | None]


@dataclass(frozen=True, slots=True)
class TierVerdict:
    """What one tier (Admin or Baseline) said: the rule that matched (policy, rule index,
    peer index), or None, and why each rule checked before it did not match."""

    tier: Tier
    misses: tuple[tuple[AdminPolicy, int, RuleMiss], ...]
    match: tuple[AdminPolicy, int, int] | None = None
    direction: Direction = Direction.INGRESS

    @property
    def rule(self) -> AdminRule | None:
        """The rule that matched."""
        if self.match is None:
            return None
        pol, ri, _ = self.match
        return _rules(pol, self.direction)[ri]

    @property
    def action(self) -> AdminAction | None:
        """The action of the rule that matched (None: no rule of the tier did)."""
        rule = self.rule
        return None if rule is None else rule.action

    @property
    def decided(self) -> bool:
        """An Allow/Accept or Deny: no later tier is asked."""
        return self.action in (AdminAction.ALLOW, AdminAction.DENY)


def _rules(pol: AdminPolicy, direction: Direction) -> tuple[AdminRule, ...]:
    return pol.ingress if direction is Direction.INGRESS else pol.egress


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policies of `pod` say about a connection with `peer` in `direction`.

    `match` is (policy, rule index, peer index or None when the rule has no peers);
    `misses` holds, when nothing admitted, (policy, rule index or None, RuleMiss) for every
    rule of every isolating policy.
    """

    direction: Direction
    pod: Pod
    peer: Party
    dport: int | None
    protocol: Protocol | None
    isolating: tuple[NetworkPolicy, ...] = ()
    match: tuple[NetworkPolicy, int, int | None] | None = None
    misses: tuple[tuple[NetworkPolicy, int | None, RuleMiss], ...] = ()
    # the peer is the node the pod runs on: NetworkPolicy always allows it (an admin-tier
    # or baseline rule that selects the node still decides: upstream's *EgressNodePeers)
    own_node: bool = False
    admin: TierVerdict | None = None  # None: no Admin-tier rule selects the pod
    baseline: TierVerdict | None = None  # None: not reached, or no Baseline rule

    @property
    def allowed(self) -> bool:
        if self.admin is not None and self.admin.decided:
            return self.admin.action is AdminAction.ALLOW
        if self.own_node:
            return True
        if self.isolating:
            return self.match is not None
        return self.baseline is None or self.baseline.action is not AdminAction.DENY

    @property
    def tier(self) -> str | None:
        """Which tier decided: `Admin`, `NetworkPolicy`, `Baseline`, or None (the node's
        own traffic, or nothing selected the pod: the default, allow)."""
        if self.admin is not None and self.admin.decided:
            return Tier.ADMIN.value
        if self.own_node:
            return None
        if self.isolating:
            return "NetworkPolicy"
        if self.baseline is not None and self.baseline.decided:
            return Tier.BASELINE.value
        return None

    @property
    def isolated(self) -> bool:
        return bool(self.isolating)

    @property
    def policy(self) -> str | None:
        """The policy that decided: the admin policy whose rule decided, the
        NetworkPolicy that admitted, or the first that isolates."""
        tier = self.tier
        if tier in (Tier.ADMIN.value, Tier.BASELINE.value):
            verdict = self.admin if tier == Tier.ADMIN.value else self.baseline
            assert verdict is not None and verdict.match is not None
            return verdict.match[0].key
        if self.match is not None:
            return self.match[0].key
        if self.isolating and not self.allowed:
            return self.isolating[0].key
        return None

    @property
    def dst_pod(self) -> Pod | None:
        """The destination pod, on which named ports are resolved."""
        return self.pod if self.direction is Direction.INGRESS else self.peer.pod


# One step of a decision, in policy and rule order: (policy, rule index, the rule to check
# against the peer or None, why it cannot admit or None).
Step = tuple[NetworkPolicy, int | None, PolicyRule | None, RuleMiss | None]


@dataclass(frozen=True, slots=True)
class Side:
    """The half of a decision that does not depend on the peer: the policies isolating
    `pod` for `direction` and their rules, with (for ingress, where the destination is the
    pod itself) the rules whose ports cannot match already set aside."""

    direction: Direction
    pod: Pod
    dport: int | None
    protocol: Protocol | None
    isolating: tuple[NetworkPolicy, ...]
    steps: tuple[Step, ...]
    admin: tuple[AdminStep, ...] = ()  # the Admin tier's rules, in evaluation order
    baseline: tuple[AdminStep, ...] = ()  # the Baseline tier's

    @property
    def peer_matters(self) -> bool:
        """Whether the verdict may depend on the peer: some rule is left to check whose
        peers (or, for egress, whose ports, resolved on the destination) look at it."""
        egress = self.direction is Direction.EGRESS
        return any(
            r is not None for _, _, r, _ in (*self.admin, *self.baseline)
        ) or any(r is not None and (egress or r.peers) for _, _, r, _ in self.steps)


def prepare(
    index: PolicyIndex,
    direction: Direction,
    pod: Pod,
    dport: int | None,
    protocol: Protocol | None,
) -> Side:
    """The pod's side of a decision on `protocol`/`dport` (see `Side`)."""
    isolating = index.isolating(pod, direction)
    ingress = direction is Direction.INGRESS
    steps: list[Step] = []
    for pol in isolating:
        rules = pol.ingress if ingress else pol.egress
        if not rules:
            steps.append((pol, None, None, NO_RULES))
        for ri, rule in enumerate(rules):
            if ingress and not rule_ports_match(rule, dport, protocol, pod):
                steps.append((pol, ri, None, PORTS_MISS))
            else:
                steps.append((pol, ri, rule, None))
    tiers = (
        _admin_steps(index, t, direction, pod, dport, protocol)
        for t in (Tier.ADMIN, Tier.BASELINE)
    )
    return Side(direction, pod, dport, protocol, isolating, tuple(steps), *tiers)


def _admin_steps(
    index: PolicyIndex,
    tier: Tier,
    direction: Direction,
    pod: Pod,
    dport: int | None,
    protocol: Protocol | None,
) -> tuple[AdminStep, ...]:
    """The rules of `tier` that select `pod` for `direction`, in evaluation order, the
    rules whose ports cannot match set aside: ingress rules (as `prepare` does), and
    egress rules without a named port (only a named port looks at the destination)."""
    ingress = direction is Direction.INGRESS
    steps: list[AdminStep] = []
    for pol in index.subjects(pod, tier, direction):
        for ri, rule in enumerate(_rules(pol, direction)):
            settled = ingress or not any(isinstance(p.port, str) for p in rule.ports)
            if settled and not rule_ports_match(rule, dport, protocol, pod):
                steps.append((pol, ri, None, PORTS_MISS))
            else:
                steps.append((pol, ri, rule, None))
    return tuple(steps)


def _tier(
    index: PolicyIndex, side: Side, tier: Tier, peer: Party
) -> TierVerdict | None:
    """The first rule of `tier` (in evaluation order) matching `peer`, and why the rules
    before it did not: the first of its peers that matches decides."""
    steps = side.admin if tier is Tier.ADMIN else side.baseline
    if not steps:
        return None
    egress = side.direction is Direction.EGRESS
    misses: list[tuple[AdminPolicy, int, RuleMiss]] = []
    for pol, ri, rule, miss in steps:
        if rule is None:
            assert miss is not None
            misses.append((pol, ri, miss))
            continue
        if (
            egress
            and rule.ports
            and not rule_ports_match(rule, side.dport, side.protocol, peer.pod)
        ):
            misses.append((pol, ri, PORTS_MISS))
            continue
        why: list[PeerMiss] = []
        for pi, p in enumerate(rule.peers):
            peer_miss = index.admin_peer_miss(p, peer)
            if peer_miss is None:
                return TierVerdict(tier, tuple(misses), (pol, ri, pi), side.direction)
            why.append(peer_miss)
        misses.append((pol, ri, ("peers", tuple(why))))
    return TierVerdict(tier, tuple(misses), None, side.direction)


def judge(index: PolicyIndex, side: Side, peer: Party) -> Decision:
    """The other half: what do the tiers say of `peer`?  The Admin tier's first matching
    rule, unless it passes or none matches; then the NetworkPolicies isolating the pod,
    if any (the first rule, in policy and rule order, and the first of its peers that
    admit decide); else the Baseline tier's first matching rule; else allow.  The pod's
    own node is always admitted by NetworkPolicy (kubelet's probes), not by the tiers: the
    network-policy-api conformance tests deny it with a `nodes` peer like any node."""
    made = partial(Decision, side.direction, side.pod, peer, side.dport, side.protocol)
    own = peer.node is not None and peer.node == side.pod.node
    admin = _tier(index, side, Tier.ADMIN, peer)
    if admin is not None and admin.decided:
        return made(admin=admin)
    if not side.isolating:
        baseline = _tier(index, side, Tier.BASELINE, peer)
        if own and (baseline is None or not baseline.decided):
            return made(own_node=True, admin=admin)
        return made(admin=admin, baseline=baseline)
    if own:
        return made(own_node=True, admin=admin)
    match, misses = _network_policy(index, side, peer)
    return made(side.isolating, match, misses, admin=admin)


def _network_policy(
    index: PolicyIndex, side: Side, peer: Party
) -> tuple[
    tuple[NetworkPolicy, int, int | None] | None,
    tuple[tuple[NetworkPolicy, int | None, RuleMiss], ...],
]:
    """The NetworkPolicy rule and peer that admit `peer` (None: none), and why each
    rule before it did not."""
    egress = side.direction is Direction.EGRESS
    misses: list[tuple[NetworkPolicy, int | None, RuleMiss]] = []
    for pol, ri, rule, miss in side.steps:
        if rule is None:
            assert miss is not None
            misses.append((pol, ri, miss))
            continue
        assert ri is not None
        if egress and not rule_ports_match(rule, side.dport, side.protocol, peer.pod):
            misses.append((pol, ri, PORTS_MISS))
            continue
        if not rule.peers:
            return (pol, ri, None), tuple(misses)
        why: list[PeerMiss] = []
        for pi, p in enumerate(rule.peers):
            peer_miss = index.peer_miss(pol.namespace, p, peer)
            if peer_miss is None:
                return (pol, ri, pi), tuple(misses)
            why.append(peer_miss)
        misses.append((pol, ri, ("peers", tuple(why))))
    return None, tuple(misses)


def decide(
    index: PolicyIndex,
    direction: Direction,
    pod: Pod,
    peer: Party,
    dport: int | None,
    protocol: Protocol | None,
) -> Decision:
    """THE decision: may `pod` talk with `peer` in `direction` (ingress: `peer` is the
    source; egress: the destination) on `protocol`/`dport` (after DNAT)?

    The filter hooks, `dataplane explain` and the matrix all come here (the matrix calls
    the two halves, `prepare` once per class of pods and `judge` per class of peers).
    """
    return judge(index, prepare(index, direction, pod, dport, protocol), peer)


def ingress_decision(
    cluster: Cluster,
    dst: Pod,
    src: str | Party,
    dport: int | None,
    protocol: Protocol | None,
) -> Decision:
    """Does the ingress of pod `dst` admit a connection from address (or party) `src`?"""
    index = index_of(cluster)
    party = index.party(src) if isinstance(src, str) else src
    return decide(index, Direction.INGRESS, dst, party, dport, protocol)


def egress_decision(
    cluster: Cluster,
    src: Pod,
    dst: str | Party,
    dport: int | None,
    protocol: Protocol | None,
) -> Decision:
    """Does the egress of pod `src` admit a connection to address (or party) `dst`?"""
    index = index_of(cluster)
    party = index.party(dst) if isinstance(dst, str) else dst
    return decide(index, Direction.EGRESS, src, party, dport, protocol)
