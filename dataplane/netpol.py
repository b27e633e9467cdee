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

Decisions record why a rule did not admit (`Decision.misses`) as small tuples; the prose is
written only when asked for (`dataplane.netpol_text`).
"""

from __future__ import annotations

from dataclasses import dataclass

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
from topology.model import Cluster, NetworkPolicy, Pod, PolicyRule, Protocol

__all__ = [
    "Decision",
    "Direction",
    "Party",
    "PeerMiss",
    "PolicyIndex",
    "RuleMiss",
    "Side",
    "Term",
    "decide",
    "egress_decision",
    "index_of",
    "ingress_decision",
    "judge",
    "port_matches",
    "prepare",
]


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
    own_node: bool = False  # the peer is the node the pod runs on: always allowed

    @property
    def allowed(self) -> bool:
        return self.own_node or not self.isolating or self.match is not None

    @property
    def isolated(self) -> bool:
        return bool(self.isolating)

    @property
    def policy(self) -> str | None:
        """The policy that decided: the one that admitted, or the first that isolates."""
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

    @property
    def peer_matters(self) -> bool:
        """Whether the verdict may depend on the peer: some rule is left to check whose
        peers (or, for egress, whose ports, resolved on the destination) look at it."""
        egress = self.direction is Direction.EGRESS
        return any(r is not None and (egress or r.peers) for _, _, r, _ in self.steps)


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
    return Side(direction, pod, dport, protocol, isolating, tuple(steps))


def judge(index: PolicyIndex, side: Side, peer: Party) -> Decision:
    """The other half: does some remaining rule admit `peer`?  The first rule (in policy
    and rule order) and the first of its peers that admit decide."""
    pod, direction, dport, protocol = (
        side.pod,
        side.direction,
        side.dport,
        side.protocol,
    )
    if peer.node is not None and peer.node == pod.node:
        return Decision(direction, pod, peer, dport, protocol, own_node=True)
    if not side.isolating:
        return Decision(direction, pod, peer, dport, protocol)
    egress = direction is Direction.EGRESS
    misses: list[tuple[NetworkPolicy, int | None, RuleMiss]] = []
    for pol, ri, rule, miss in side.steps:
        if rule is None:
            assert miss is not None
            misses.append((pol, ri, miss))
            continue
        assert ri is not None
        if egress and not rule_ports_match(rule, dport, protocol, peer.pod):
            misses.append((pol, ri, PORTS_MISS))
            continue
        match: tuple[NetworkPolicy, int, int | None] = (pol, ri, None)
        if not rule.peers:
            return Decision(
                direction, pod, peer, dport, protocol, side.isolating, match
            )
        why: list[PeerMiss] = []
        for pi, p in enumerate(rule.peers):
            peer_miss = index.peer_miss(pol.namespace, p, peer)
            if peer_miss is None:
                match = (pol, ri, pi)
                return Decision(
                    direction, pod, peer, dport, protocol, side.isolating, match
                )
            why.append(peer_miss)
        misses.append((pol, ri, ("peers", tuple(why))))
    return Decision(
        direction, pod, peer, dport, protocol, side.isolating, None, tuple(misses)
    )


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
