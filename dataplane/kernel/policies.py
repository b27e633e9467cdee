"""NetworkPolicy and the admin policy tiers as nftables rules, generated from the cluster
model, for one node.

The semantics are networking.k8s.io/v1's, as Kubernetes documents them (and as
`dataplane.netpol` decides them): a pod selected by a policy with `Ingress` (`Egress`) in
its `policyTypes` is isolated for that direction and accepts only what one rule of one such
policy admits; a rule admits when a port item matches (none: every port and protocol) and a
peer matches (none: every address); pod and namespace selectors match pods only (never
hostNetwork pods, nodes or external hosts), an ipBlock matches addresses; a named port is
resolved on the destination pod; a pod and its own node always talk.

Around NetworkPolicy stand the tiers of network-policy-api (AdminNetworkPolicy,
BaselineAdminNetworkPolicy, ClusterNetworkPolicy; docs/model.md, "Admin policy tiers"),
built the way OVN-Kubernetes builds them (docs/features/network-security-controls/
admin-network-policy.md: "Order of precedence: AdminNetworkPolicy (Tier1) > NetworkPolicy
(Tier2) > BaselineAdminNetworkPolicy (Tier3)", one ACL per rule and protocol, `pass`
going on to the next tier): per direction and pod, the Admin tier's rules of the policies
whose subject holds the pod, by priority (then name and kind, `AdminPolicy.order`) and
written order, Allow/Accept accepting, Deny dropping, Pass returning to the next tier;
then the NetworkPolicies that isolate the pod; where none does, the Baseline tier's rules
(Allow/Accept, Deny, Pass: the default, allow).  Peers are addresses: the pods a
`namespaces`/`pods` peer selects (never hostNetwork ones), the node address
(`node.Status.Addresses`) of the nodes a `nodes` peer selects, `networks` (IPv4; an IPv6
CIDR matches nothing here), the addresses the cluster's DNS answers for `domainNames`
(`dataplane.dns_records`, what `dataplane.kernel.dns` serves); ports as NetworkPolicy's,
a `namedPort` resolved on the destination pod whatever its protocol.

Where: filter FORWARD, priority 0, of the node the pod runs on, in two base chains (an
`accept` ends one base chain only, so a pod's egress Allow still meets the destination's
ingress): the egress of the source pod, the ingress of the destination pod (br_netfilter
brings bridged same-node traffic here too); and filter INPUT for a local pod's traffic to
its own node, where NetworkPolicy always admits but an admin or baseline rule decides (as
the simulator's `dataplane.netpol_hook.egress_to_host`; on Calico the pod's whole egress
policy, as Felix's `cali-wl-to-host` runs it).  Conntrack first: a packet of a
known connection (ESTABLISHED, or an ICMP error RELATED to one) is accepted before any
policy, so replies pass.  Only the first packet of a connection is judged, after
kube-proxy's DNAT.

    chain netpol-egress { type filter hook forward priority filter; policy accept;
        ct state established,related accept
        ip saddr vmap { 10.0.1.3 : jump admin-egress-NS.POD, ... }   # Admin tier
        ip saddr vmap { 10.0.1.3 : jump egress-NS.POD,               # isolated pods
                        10.0.1.5 : jump baseline-egress-NS.POD2, ... } }  # the others
    chain netpol-ingress { ...: the same with ip daddr and the ingress rules }
    chain netpol-host { type filter hook input priority filter; policy accept;
        ct state established,related accept
        ip saddr vmap { <admin-egress chains> }; ip saddr vmap { <baseline-egress chains> } }
    chain admin-egress-NS.POD { <rule matches> accept|drop|return; ... }
    chain egress-NS.POD { ip daddr { <own node> } accept; <rule matches> accept; drop }
    chain baseline-egress-NS.POD2 { <rule matches> accept|drop|return; ... }

What is derived from the model: which pods, namespaces and nodes a selector holds (with
the simulator's selector code, `topology.selectors.matches`), named ports (resolved on the
model's pods) and the DNS answers of `domainNames`; the verdicts are the kernel's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network, collapse_addresses

from dataplane.dns_records import domain_networks
from dataplane.kernel.nft import (
    ACCEPT,
    DROP,
    RETURN,
    Expr,
    Ruleset,
    addresses,
    concat,
    ct_state,
    dport,
    field_,
    jump,
    l4proto,
    match,
    verdict_map,
)
from dataplane.netns import Netns
from topology.model import (
    AdminAction,
    AdminPeer,
    AdminPolicy,
    Cluster,
    Cni,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyPort,
    Tier,
)
from topology.selectors import matches

INGRESS, EGRESS = "Ingress", "Egress"


def policy_pods(cluster: Cluster) -> list[Pod]:
    """The pods a policy can see: every pod that is not hostNetwork."""
    return [p for p in cluster.pods.values() if not p.host_network]


def isolating(cluster: Cluster, pod: Pod, policy_type: str) -> list[NetworkPolicy]:
    """The policies that select `pod` for `policy_type`, in creation order."""
    if pod.host_network:
        return []
    return [
        pol
        for pol in cluster.policies.values()
        if pol.namespace == pod.namespace
        and policy_type in pol.policy_types
        and matches(pol.pod_selector, pod.labels)
    ]


def peer_pods(cluster: Cluster, policy_ns: str, peer: PolicyPeer) -> list[Pod]:
    """The pods a selector peer matches (a peer with an ipBlock matches no pod by label)."""
    out = []
    for pod in policy_pods(cluster):
        if peer.namespace_selector is None:
            if pod.namespace != policy_ns:
                continue
        else:
            ns = cluster.namespaces.get(pod.namespace)
            labels = ns.labels if ns is not None else {}
            if not matches(peer.namespace_selector, labels):
                continue
        if peer.pod_selector is not None and not matches(peer.pod_selector, pod.labels):
            continue
        out.append(pod)
    return out


def in_block(peer: PolicyPeer, ip: IPv4Address) -> bool:
    block = peer.ip_block
    assert block is not None
    return ip in block.cidr and not any(ip in x for x in block.except_)


def _named_egress(candidates: Sequence[Pod], port: PolicyPort) -> list[Expr] | None:
    """An egress port item with a named port: `ip daddr . th dport` over the destination
    pods a peer holds (`candidates`) that have that port (resolved on each)."""
    assert isinstance(port.port, str)
    pairs = sorted(
        {
            (str(p.ip), n)
            for p in candidates
            if (n := p.named_port(port.port, port.protocol)) is not None
        }
    )
    if not pairs:
        return None
    key = concat(field_("ip", "daddr"), field_("th", "dport"))
    elems = [{"concat": [ip, n]} for ip, n in pairs]
    return [l4proto(port.protocol), match(key, {"set": elems})]


# One peer of a rule as nftables sees it: the expressions matching its address (empty:
# any address) and the pods it holds (where an egress named port is resolved).
PeerMatch = tuple[list[Expr], list[Pod]]


def _netpol_peers(
    cluster: Cluster, pol: NetworkPolicy, peers: tuple[PolicyPeer, ...], side: str
) -> list[PeerMatch]:
    """The peers of a NetworkPolicy rule (none: every address); one that can match
    nothing is left out."""
    if not peers:
        return [([], policy_pods(cluster))]
    out: list[PeerMatch] = []
    for peer in peers:
        if peer.ip_block is not None:
            exprs = [match(field_("ip", side), addresses([peer.ip_block.cidr]))]
            if peer.ip_block.except_:
                exprs.append(
                    match(
                        field_("ip", side),
                        addresses(list(peer.ip_block.except_)),
                        "!=",
                    )
                )
            inside = [p for p in policy_pods(cluster) if in_block(peer, p.ip)]
            out.append((exprs, inside))
            continue
        pods = peer_pods(cluster, pol.namespace, peer)
        if pods:
            out.append((_pod_addresses(pods, side), pods))
    return out


def _pod_addresses(pods: Sequence[Pod], side: str) -> list[Expr]:
    return [match(field_("ip", side), addresses(sorted({str(p.ip) for p in pods})))]


def _port_match(port: PolicyPort, dst: Pod | None) -> list[Expr] | None:
    """Expressions matching one `ports` item for destination pod `dst` (ingress: the pod
    itself; a named port is resolved on it); None: it can never match."""
    out = [l4proto(port.protocol)]
    if port.port is None:
        return out
    if isinstance(port.port, str):
        number = dst.named_port(port.port, port.protocol) if dst is not None else None
        if number is None:
            return None
        return [*out, dport(number)]
    return [*out, dport(port.port, port.end_port)]


def _rule_matches(
    peers: list[PeerMatch],
    ports: tuple[PolicyPort, ...],
    pod: Pod,
    egress: bool,
) -> Iterator[list[Expr]]:
    """Every (peer x port) match of one rule, as lists of expressions (no ports: every
    port and protocol, ICMP included)."""
    port_list: list[PolicyPort | None] = list(ports) or [None]
    for peer_expr, candidates in peers:
        for port in port_list:
            if port is None:
                yield peer_expr
            elif egress and isinstance(port.port, str):
                named = _named_egress(candidates, port)
                if named is not None:
                    yield [*peer_expr, *named]
            else:
                port_expr = _port_match(port, None if egress else pod)
                if port_expr is not None:
                    yield [*peer_expr, *port_expr]


# -- the admin tiers -------------------------------------------------------------------
# What a matching rule does in its tier's chain: Allow/Accept accepts in this base chain
# (the other direction's base chain still judges), Deny drops, Pass returns to the next
# tier (OVN-Kubernetes' ACL `pass`: "skip to the next tier").
TIER_VERDICT = {
    AdminAction.ALLOW: ACCEPT,
    AdminAction.DENY: DROP,
    AdminAction.PASS: RETURN,
}


def _holds(cluster: Cluster, sel: AdminPeer, pod: Pod) -> bool:
    """Whether a `namespaces` or `pods` subject or peer holds `pod` (never a hostNetwork
    pod: `AdminNetworkPolicySubject`, `AdminNetworkPolicyIngressPeer`)."""
    if pod.host_network:
        return False
    ns = cluster.namespaces.get(pod.namespace)
    ns_labels = ns.labels if ns is not None else {}
    if sel.namespace_selector is not None and not matches(
        sel.namespace_selector, ns_labels
    ):
        return False
    return sel.pod_selector is None or matches(sel.pod_selector, pod.labels)


def subjects(cluster: Cluster, tier: Tier, pod: Pod, egress: bool) -> list[AdminPolicy]:
    """The admin policies of `tier` whose subject holds `pod` and that have rules for the
    direction, in evaluation order (priority, then name and kind: `AdminPolicy.order`)."""
    found = [
        pol
        for pol in cluster.admin_policies.values()
        if pol.tier is tier
        and (pol.egress if egress else pol.ingress)
        and _holds(cluster, pol.subject, pod)
    ]
    return sorted(found, key=lambda pol: pol.order)


def _networks(nets: Sequence[IPv4Network], side: str) -> list[Expr]:
    """A match on any of `nets` (none for 0.0.0.0/0: every address)."""
    merged = list(collapse_addresses(nets))
    if any(n.prefixlen == 0 for n in merged):
        return []
    return [match(field_("ip", side), addresses(merged))]


def _admin_peer(cluster: Cluster, peer: AdminPeer, side: str) -> PeerMatch | None:
    """One `from`/`to` item of an admin rule as addresses; None: it matches nothing."""
    if peer.by_address:
        nets = (
            domain_networks(cluster, peer.domain_names)
            if peer.domain_names
            else peer.ipv4_networks
        )
        if not nets:
            return None
        inside = [p for p in policy_pods(cluster) if any(p.ip in net for net in nets)]
        return _networks(nets, side), inside
    if peer.node_selector is not None:
        # `nodes`: "the IPs present in the node.Status.Addresses field" (v1alpha1
        # AdminNetworkPolicyEgressPeer.Nodes): the node's own address.
        ips = sorted(
            str(n.ip) for n in cluster.nodes if matches(peer.node_selector, n.labels)
        )
        if not ips:
            return None
        return [match(field_("ip", side), addresses(ips))], []
    pods = [p for p in policy_pods(cluster) if _holds(cluster, peer, p)]
    if not pods:
        return None
    return _pod_addresses(pods, side), pods


# The peers compiled so far in one `add_policy_rules` (a peer does not depend on the pod
# it is a peer of): by the peer's identity and side.
PeerMemo = dict[tuple[int, str], PeerMatch | None]


def _tier_chain(
    rs: Ruleset, cluster: Cluster, tier: Tier, pod: Pod, egress: bool, memo: PeerMemo
) -> str | None:
    """The chain of `pod`'s rules of `tier` for one direction, in evaluation order;
    None: no rule of the tier can match here."""
    direction = "egress" if egress else "ingress"
    side = "daddr" if egress else "saddr"
    rules: list[tuple[list[Expr], Expr, str]] = []
    for pol in subjects(cluster, tier, pod, egress):
        for ri, rule in enumerate(pol.egress if egress else pol.ingress):
            peers: list[PeerMatch] = []
            for peer in rule.peers:
                key = (id(peer), side)
                if key not in memo:
                    memo[key] = _admin_peer(cluster, peer, side)
                if (found := memo[key]) is not None:
                    peers.append(found)
            name = f" {rule.name!r}" if rule.name else ""
            comment = (
                f"{pol.short} {direction} rule {ri}{name}: "
                f"{pol.action_word(rule.action)}"
            )
            for exprs in _rule_matches(peers, rule.ports, pod, egress):
                rules.append((exprs, TIER_VERDICT[rule.action], comment))
    if not rules:
        return None
    chain = rs.chain(f"{tier.value.lower()}-{direction}-{pod.namespace}.{pod.name}")
    for exprs, verdict, comment in rules:
        rs.add(chain, *exprs, verdict, comment=comment)
    return chain


# -- the filter ------------------------------------------------------------------------
def _netpol_chain(
    rs: Ruleset,
    cluster: Cluster,
    pod: Pod,
    pols: list[NetworkPolicy],
    egress: bool,
    mine: list[str],
) -> str:
    """The NetworkPolicy chain of a pod isolated for one direction by `pols`."""
    direction = "egress" if egress else "ingress"
    side = "daddr" if egress else "saddr"
    chain = rs.chain(f"{direction}-{pod.namespace}.{pod.name}")
    rs.add(
        chain,
        match(field_("ip", side), addresses(mine)),
        ACCEPT,
        comment=f"{pod.key} and its own node always talk",
    )
    for pol in pols:
        for ri, rule in enumerate(pol.egress if egress else pol.ingress):
            peers = _netpol_peers(cluster, pol, rule.peers, side)
            for exprs in _rule_matches(peers, rule.ports, pod, egress):
                rs.add(
                    chain,
                    *exprs,
                    ACCEPT,
                    comment=f"netpol {pol.key} {direction} rule {ri}",
                )
    names = ", ".join(p.key for p in pols)
    rs.add(chain, DROP, comment=f"{pod.key} is isolated for {direction} by {names}")
    return chain


def _base(rs: Ruleset, name: str, hook: str) -> None:
    rs.base_chain(name, "filter", hook, 0)
    rs.add(
        name,
        ct_state("established", "related"),
        ACCEPT,
        comment="conntrack: a packet of an admitted connection passes",
    )


Jumps = list[tuple[object, Expr]]


def add_policy_rules(rs: Ruleset, cluster: Cluster, node_ns: Netns) -> None:
    """The policy filter of node `node_ns.node` (see the module docstring)."""
    mine = node_ns.addresses()
    local = [p for p in policy_pods(cluster) if p.node == node_ns.node]
    node = node_ns.node
    memo: PeerMemo = {}
    for egress, policy_type in ((True, EGRESS), (False, INGRESS)):
        direction = "egress" if egress else "ingress"
        base = f"netpol-{direction}"
        _base(rs, base, "forward")
        admin: Jumps = []
        stage: Jumps = []
        baseline: Jumps = []
        for pod in local:
            ip = str(pod.ip)
            if (
                chain := _tier_chain(rs, cluster, Tier.ADMIN, pod, egress, memo)
            ) is not None:
                admin.append((ip, jump(chain)))
            pols = isolating(cluster, pod, policy_type)
            if pols:
                chain = _netpol_chain(rs, cluster, pod, pols, egress, mine)
                stage.append((ip, jump(chain)))
            elif (
                chain := _tier_chain(rs, cluster, Tier.BASELINE, pod, egress, memo)
            ) is not None:
                stage.append((ip, jump(chain)))
                baseline.append((ip, jump(chain)))
        key = field_("ip", "saddr" if egress else "daddr")
        if admin:
            rs.add(
                base,
                verdict_map(key, admin),
                comment=f"{direction}: the Admin tier of the pods of {node} it selects",
            )
        if stage:
            rs.add(
                base,
                verdict_map(key, stage),
                comment=f"{direction}: NetworkPolicy where it isolates a pod of "
                f"{node}, else the Baseline tier",
            )
        # A pod's traffic to its own node (INPUT): NetworkPolicy admits the node, the
        # tiers may not (upstream's *EgressNodePeers conformance tests).  Calico runs the
        # pod's whole egress policy there (Felix's `cali-wl-to-host` jumps to its
        # `cali-fw-` chain: felix/rules/static.go; `dataplane.netpol_hook.endpoint_hooks`).
        calico = cluster.config.cni is Cni.CALICO
        after = stage if calico else baseline
        if egress and (admin or after):
            _base(rs, "netpol-host", "input")
            then = (
                "NetworkPolicy or the Baseline tier" if calico else "the Baseline tier"
            )
            for jumps, what in ((admin, "the Admin tier"), (after, then)):
                if jumps:
                    rs.add(
                        "netpol-host",
                        verdict_map(key, jumps),
                        comment=f"egress to {node} itself: {what}",
                    )
