"""NetworkPolicy decisions in prose: the rule that admitted a connection, or, for a drop,
which policies isolate the pod and why each of their rules does not admit the packet
(the label that did not match, the port, the CIDR).

Written for a learner reading a trace: `allowed by default/test-np ingress rule 0 peer 1
(podSelector role=frontend)`, `denied: default/web is isolated for ingress by
default/test-np, and no rule admits default/pod1 on TCP 80: ...`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dataplane.netpol import (
    Decision,
    Direction,
    Party,
    PeerMiss,
    RuleMiss,
    Term,
    TierVerdict,
)
from topology.model import (
    AdminAction,
    AdminPeer,
    AdminPolicy,
    AdminRule,
    LabelSelector,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Protocol,
    Requirement,
    SelectorOp,
    Tier,
)
from topology.selectors import format_selector


def selector_text(selector: LabelSelector) -> str:
    """kubectl's form of a selector; `{}` for the empty one (it selects everything).

    >>> selector_text(LabelSelector({"role": "frontend"})), selector_text(LabelSelector())
    ('role=frontend', '{}')
    """
    text = format_selector(selector)
    return "{}" if text == "<all>" else text


def peer_text(peer: PolicyPeer) -> str:
    """A `from`/`to` item as a learner reads it.

    >>> peer_text(PolicyPeer(pod_selector=LabelSelector({"role": "frontend"})))
    'podSelector role=frontend'
    """
    if peer.ip_block is not None:
        block = f"ipBlock {peer.ip_block.cidr}"
        if peer.ip_block.except_:
            block += " except " + ", ".join(str(x) for x in peer.ip_block.except_)
        return block
    parts = []
    if peer.namespace_selector is not None:
        parts.append(f"namespaceSelector {selector_text(peer.namespace_selector)}")
    if peer.pod_selector is not None:
        parts.append(f"podSelector {selector_text(peer.pod_selector)}")
    return " and ".join(parts)


def port_text(port: PolicyPort) -> str:
    """One `ports` item: `TCP 80`, `TCP 8000-8080`, `TCP 'http'`, `every UDP port`.

    >>> port_text(PolicyPort(Protocol.TCP, 8000, 8080))
    'TCP 8000-8080'
    """
    proto = port.protocol.value
    if port.port is None:
        return f"every {proto} port"
    if isinstance(port.port, str):
        return f"{proto} {port.port!r}"
    if port.end_port is not None:
        return f"{proto} {port.port}-{port.end_port}"
    return f"{proto} {port.port}"


def query_text(dport: int | None, protocol: Protocol | None) -> str:
    if protocol is None:
        return "a packet of another protocol"
    if dport is None:
        return protocol.value
    return f"{protocol.value} {dport}"


def rule_ports_text(rule: PolicyRule, dst: Pod | None) -> str:
    """The rule's ports, each named port with what it means on the destination."""
    out = []
    for p in rule.ports:
        text = port_text(p)
        if isinstance(p.port, str):
            if dst is None:
                text += " (a named port matches pods only)"
            else:
                number = dst.named_port(p.port, p.protocol)
                text += (
                    f" (= {number} on {dst.key})"
                    if number is not None
                    else f" (not a {p.protocol.value} port of {dst.key})"
                )
        out.append(text)
    return ", ".join(out)


def term_text(subject: str, term: Term, labels: Mapping[str, str]) -> str:
    """Why `subject` (with `labels`) fails one selector term."""
    if isinstance(term, tuple):
        key, want = term
        if key not in labels:
            return f"{subject} has no label {key} (wants {key}={want})"
        return f"{subject} has {key}={labels[key]}, not {key}={want}"
    req: Requirement = term
    key, values = req.key, ",".join(req.values)
    have = labels.get(key)
    if req.operator is SelectorOp.IN:
        if have is None:
            return f"{subject} has no label {key} (wants {key} in ({values}))"
        return f"{subject} has {key}={have}, not in ({values})"
    if req.operator is SelectorOp.NOT_IN:
        return f"{subject} has {key}={have}, which is in ({values}) (wants {key} notin)"
    if req.operator is SelectorOp.EXISTS:
        return f"{subject} has no label {key} (wants {key} to exist)"
    return f"{subject} has label {key}={have} (wants no {key})"


def peer_miss_text(
    miss: PeerMiss, peer: PolicyPeer, party: Party, pol: NetworkPolicy
) -> str:
    kind = miss[0]
    pod = party.pod
    if kind == "cidr":
        assert peer.ip_block is not None
        return f"{party.ip} is not in {peer.ip_block.cidr}"
    if kind == "except":
        assert peer.ip_block is not None
        return f"{party.ip} is in {peer.ip_block.cidr} but also in except {miss[1]}"
    if kind == "not-pod":
        host = " (hostNetwork pods count as their node)" if party.node else ""
        return f"{party} is not a pod{host}; selectors match pods only"
    assert pod is not None
    if kind == "namespace":
        return (
            f"{pod.key} is in namespace {pod.namespace}; a podSelector alone selects "
            f"pods of {pol.namespace} only"
        )
    term = miss[1]
    assert isinstance(term, tuple | Requirement)
    if kind == "ns-label":
        return term_text(f"namespace {pod.namespace}", term, party.namespace_labels)
    return term_text(pod.key, term, pod.labels)


def rule_miss_text(
    d: Decision, pol: NetworkPolicy, ri: int | None, miss: RuleMiss, multiline: bool
) -> str:
    direction = d.direction.value
    if ri is None:
        return f"{pol.key} has no {direction} rules (it admits nothing)"
    rules = pol.ingress if d.direction is Direction.INGRESS else pol.egress
    rule = rules[ri]

    def peer(pi: int, m: PeerMiss) -> str:
        p = rule.peers[pi]
        return f"peer {pi} ({peer_text(p)}): " + peer_miss_text(m, p, d.peer, pol)

    ports = rule_ports_text(rule, d.dst_pod)
    return _rule_miss(
        d, f"{pol.key} {direction} rule {ri}", miss, ports, peer, multiline
    )


def _rule_miss(
    d: Decision,
    head: str,
    miss: RuleMiss,
    ports: str,
    peer: Callable[[int, PeerMiss], str],
    multiline: bool,
) -> str:
    """`HEAD: <why>`: the port is not among the rule's `ports`, or each of its peers and
    why it does not match (`peer(index, miss)`)."""
    if miss[0] == "ports":
        return f"{head}: {query_text(d.dport, d.protocol)} is not among its ports ({ports})"
    reasons = miss[1]
    assert isinstance(reasons, tuple)
    parts = [peer(pi, m) for pi, m in enumerate(reasons)]
    if multiline:
        return head + ":\n      " + "\n      ".join(parts)
    return f"{head}: " + "; ".join(parts)


def _who(d: Decision) -> tuple[str, str]:
    """(the pod, the other end) as the sentence needs them."""
    return d.pod.key, (d.peer.pod.key if d.peer.pod is not None else str(d.peer))


# -- the admin tiers (network-policy-api) -------------------------------------------------
def admin_peer_text(peer: AdminPeer) -> str:
    """A subject or peer of an admin policy, in its own field names.

    >>> admin_peer_text(AdminPeer(namespace_selector=LabelSelector({"team": "x"})))
    'namespaces team=x'
    """
    if peer.networks:
        return "networks " + ", ".join(str(n) for n in peer.networks)
    if peer.domain_names:
        return "domainNames " + ", ".join(peer.domain_names)
    if peer.node_selector is not None:
        return f"nodes {selector_text(peer.node_selector)}"
    assert peer.namespace_selector is not None
    ns = selector_text(peer.namespace_selector)
    if peer.pod_selector is None:
        return f"namespaces {ns}"
    return (
        f"pods (namespaceSelector {ns}, podSelector {selector_text(peer.pod_selector)})"
    )


def admin_ports_text(rule: AdminRule, dst: Pod | None) -> str:
    """An admin rule's ports; a named port (held once per protocol) shown once, with
    what it means on the destination."""
    out: list[str] = []
    for p in rule.ports:
        if not isinstance(p.port, str):
            out.append(port_text(p))
            continue
        text = f"namedPort {p.port!r}"
        if text in out or any(o.startswith(text + " ") for o in out):
            continue
        if dst is None:
            text += " (a named port matches pods only)"
        else:
            found = next((c for c in dst.ports() if c.name == p.port), None)
            text += (
                f" (= {found.protocol.value} {found.port} on {dst.key})"
                if found is not None
                else f" (not a port of {dst.key})"
            )
        out.append(text)
    return ", ".join(out)


def admin_rule_text(pol: AdminPolicy, direction: Direction, ri: int) -> str:
    """`ANP 'a' (priority 5) ingress rule 2 'deny-all'`."""
    rule = (pol.ingress if direction is Direction.INGRESS else pol.egress)[ri]
    name = f" {rule.name!r}" if rule.name else ""
    return f"{pol.short} {direction.value} rule {ri}{name}"


def admin_miss_text(miss: PeerMiss, peer: AdminPeer, party: Party) -> str:
    """Why `party` is not a peer of an admin rule."""
    kind = miss[0]
    if kind == "networks":
        return f"{party.ip} is not in {', '.join(str(n) for n in peer.networks)}"
    if kind == "domain-names":
        return (
            f"{party.ip} is not an address the cluster's DNS answers for "
            f"{', '.join(peer.domain_names)}"
        )
    if kind == "not-node":
        return f"{party} is not a node's address"
    if kind == "not-pod":
        host = " (hostNetwork pods count as their node)" if party.node else ""
        return f"{party} is not a pod{host}; namespaces and pods peers match pods only"
    term = miss[1]
    assert isinstance(term, tuple | Requirement)
    if kind == "node-label":
        return term_text(f"node {party.node}", term, {})
    pod = party.pod
    assert pod is not None
    if kind == "ns-label":
        return term_text(f"namespace {pod.namespace}", term, party.namespace_labels)
    return term_text(pod.key, term, pod.labels)


def admin_rule_miss_text(d: Decision, pol: AdminPolicy, ri: int, miss: RuleMiss) -> str:
    """`ANP 'a' (priority 5) ingress rule 2 'deny-all' did not match: ...`."""
    rules = pol.ingress if d.direction is Direction.INGRESS else pol.egress
    rule = rules[ri]

    def peer(pi: int, m: PeerMiss) -> str:
        p = rule.peers[pi]
        return f"peer {pi} ({admin_peer_text(p)}): " + admin_miss_text(m, p, d.peer)

    head = f"{admin_rule_text(pol, d.direction, ri)} did not match"
    return _rule_miss(
        d, head, miss, admin_ports_text(rule, d.dst_pod), peer, multiline=False
    )


def tier_match_text(d: Decision, verdict: TierVerdict) -> str:
    """The rule of a tier that matched: `ANP 'a' (priority 5) ingress rule 0 'x' (Deny)
    peer 0 (namespaces {}), ports TCP 80`."""
    assert verdict.match is not None
    pol, ri, pi = verdict.match
    rule = (pol.ingress if d.direction is Direction.INGRESS else pol.egress)[ri]
    ports = f", ports {admin_ports_text(rule, d.dst_pod)}" if rule.ports else ""
    return (
        f"{admin_rule_text(pol, d.direction, ri)} ({pol.action_word(rule.action)}) "
        f"peer {pi} ({admin_peer_text(rule.peers[pi])}){ports}"
    )


def tier_misses_text(
    d: Decision, verdict: TierVerdict | None, multiline: bool
) -> list[str]:
    """Why each rule of the tier checked before the one that matched did not match."""
    if verdict is None:
        return []
    return [admin_rule_miss_text(d, pol, ri, m) for pol, ri, m in verdict.misses]


def _tier_name(tier: Tier) -> str:
    return "admin tier" if tier is Tier.ADMIN else "baseline tier"


def _preamble(d: Decision, multiline: bool) -> str:
    """What the Admin tier said when it did not decide: its rules did not match, or one
    passed (to NetworkPolicy, then the Baseline tier)."""
    parts: list[str] = []
    for verdict in (d.admin, d.baseline):
        if verdict is None or verdict.decided:
            continue
        misses = tier_misses_text(d, verdict, multiline)
        if verdict.match is not None:  # Pass
            after = "NetworkPolicy" if verdict.tier is Tier.ADMIN else "the default"
            parts.append(f"{tier_match_text(d, verdict)} passes to {after}")
        elif misses:
            parts.append(f"no {_tier_name(verdict.tier)} rule matched")
        if misses:
            parts[-1] += " (" + "; ".join(misses) + ")"
    return "".join(p + "; " for p in parts)


def _tier_text(d: Decision, verdict: TierVerdict, multiline: bool) -> str:
    """The decision of an Admin- or Baseline-tier rule (Allow/Accept or Deny)."""
    pod, _ = _who(d)
    word = "allowed" if verdict.action is AdminAction.ALLOW else "denied"
    head = f"{word} by {tier_match_text(d, verdict)}"
    misses = tier_misses_text(d, verdict, multiline)
    if verdict.tier is Tier.BASELINE:
        head += f" ({pod} is not isolated by any NetworkPolicy for {d.direction.value})"
    if not misses:
        return _preamble(d, multiline) + head
    if multiline:
        return (
            _preamble(d, multiline)
            + head
            + ":\n  - "
            + "\n  - ".join(f"before it, {m}" for m in misses)
        )
    return _preamble(d, multiline) + head + "; before it, " + "; ".join(misses)


def allowed_text(d: Decision, multiline: bool = False) -> str:
    pod, other = _who(d)
    direction = d.direction.value
    if d.own_node:
        return (
            f"{other} is the node {pod} runs on: traffic between a pod and its node is "
            "always allowed"
        )
    for verdict in (d.admin, d.baseline):
        if verdict is not None and verdict.decided:
            return _tier_text(d, verdict, multiline)
    if not d.isolating:
        types = d.direction.policy_type
        return _preamble(d, multiline) + (
            f"{pod} is not isolated for {direction} "
            f"(no NetworkPolicy selects it for {types})"
        )
    assert d.match is not None
    pol, ri, pi = d.match
    rules = pol.ingress if d.direction is Direction.INGRESS else pol.egress
    rule = rules[ri]
    what = (
        f"peer {pi} ({peer_text(rule.peers[pi])})"
        if pi is not None
        else f"(every {'source' if d.direction is Direction.INGRESS else 'destination'})"
    )
    ports = f", ports {rule_ports_text(rule, d.dst_pod)}" if rule.ports else ""
    return (
        _preamble(d, multiline)
        + f"allowed by {pol.key} {direction} rule {ri} {what}{ports}"
    )


def denied_text(d: Decision, multiline: bool) -> str:
    for verdict in (d.admin, d.baseline):
        if verdict is not None and verdict.decided:
            return _tier_text(d, verdict, multiline)
    pod, other = _who(d)
    names = ", ".join(p.key for p in d.isolating)
    to_from = "from" if d.direction is Direction.INGRESS else "to"
    head = _preamble(d, multiline) + (
        f"denied: {pod} is isolated for {d.direction.value} by {names}, and no rule "
        f"admits traffic {to_from} {other} on {query_text(d.dport, d.protocol)}"
    )
    parts = [rule_miss_text(d, pol, ri, m, multiline) for pol, ri, m in d.misses]
    if multiline:
        return head + ":\n  - " + "\n  - ".join(parts)
    return f"{head}: " + "; ".join(parts)


def explain(d: Decision, multiline: bool = False) -> str:
    """The decision in prose (one line for a trace hop, or indented lines)."""
    return allowed_text(d, multiline) if d.allowed else denied_text(d, multiline)


def summary(d: Decision) -> str:
    """The hop line of an admitted connection: short when no policy of any tier
    selects the pod."""
    pod, _ = _who(d)
    if d.own_node:
        return f"{d.direction.value} of {pod}: " + allowed_text(d) + " -> accept"
    if not d.isolating and d.admin is None and d.baseline is None:
        return f"{pod} not isolated for {d.direction.value} -> accept"
    return f"{d.direction.value} of {pod}: {allowed_text(d)} -> accept"
