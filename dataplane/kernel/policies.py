"""NetworkPolicy as nftables rules, generated from the cluster model, for one node.

The semantics are networking.k8s.io/v1's, as Kubernetes documents them (and as
`dataplane.netpol` decides them): a pod selected by a policy with `Ingress` (`Egress`) in
its `policyTypes` is isolated for that direction and accepts only what one rule of one such
policy admits; a rule admits when a port item matches (none: every port and protocol) and a
peer matches (none: every address); pod and namespace selectors match pods only (never
hostNetwork pods, nodes or external hosts), an ipBlock matches addresses; a named port is
resolved on the destination pod; a pod and its own node always talk.

Where: filter FORWARD, priority 0, of the node the pod runs on: the egress rules of the
source pod, then the ingress rules of the destination pod (br_netfilter brings bridged
same-node traffic here too).  Conntrack first: a packet of a known connection (ESTABLISHED,
or an ICMP error RELATED to one) is accepted before any policy, so replies pass.  Only the
first packet of a connection is judged, after kube-proxy's DNAT.

    chain netpol { type filter hook forward priority filter; policy accept;
        ct state established,related accept
        ip saddr vmap { 10.0.1.3 : jump egress-0, ... }     # isolated local pods
        ip daddr vmap { 10.0.1.4 : jump ingress-1, ... } }
    chain egress-0 { ip daddr { <own node> } return; <rule matches> return; drop }
    chain ingress-1 { ip saddr { <own node> } accept; <rule matches> accept; drop }
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address

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
from topology.errors import TopologyError
from topology.model import Cluster, NetworkPolicy, Pod, PolicyPeer, PolicyPort
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


def _peer_match(
    cluster: Cluster, pol: NetworkPolicy, peer: PolicyPeer, side: str
) -> list[Expr] | None:
    """Expressions matching the peer's address on `side` (saddr/daddr); None: nothing."""
    if peer.ip_block is not None:
        out = [match(field_("ip", side), addresses([peer.ip_block.cidr]))]
        if peer.ip_block.except_:
            out.append(
                match(field_("ip", side), addresses(list(peer.ip_block.except_)), "!=")
            )
        return out
    pods = peer_pods(cluster, pol.namespace, peer)
    if not pods:
        return None
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


def _named_egress(
    cluster: Cluster, pol: NetworkPolicy, peer: PolicyPeer | None, port: PolicyPort
) -> list[Expr] | None:
    """An egress port item with a named port: `ip daddr . th dport` over the destination
    pods the peer can reach that have that port (resolved on each)."""
    assert isinstance(port.port, str)
    if peer is None:
        candidates = policy_pods(cluster)
    elif peer.ip_block is not None:
        candidates = [p for p in policy_pods(cluster) if in_block(peer, p.ip)]
    else:
        candidates = peer_pods(cluster, pol.namespace, peer)
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


def _rule_matches(
    cluster: Cluster,
    pol: NetworkPolicy,
    peers: tuple[PolicyPeer, ...],
    ports: tuple[PolicyPort, ...],
    pod: Pod,
    egress: bool,
) -> Iterator[list[Expr]]:
    """Every (peer x port) match of one rule, as lists of expressions."""
    side = "daddr" if egress else "saddr"
    peer_list: list[PolicyPeer | None] = list(peers) or [None]
    port_list: list[PolicyPort | None] = list(ports) or [None]
    for peer in peer_list:
        peer_expr: list[Expr] = []
        if peer is not None:
            found = _peer_match(cluster, pol, peer, side)
            if found is None:
                continue
            peer_expr = found
        for port in port_list:
            if port is None:
                yield peer_expr
            elif egress and isinstance(port.port, str):
                named = _named_egress(cluster, pol, peer, port)
                if named is not None:
                    yield [*peer_expr, *named]
            else:
                port_expr = _port_match(port, None if egress else pod)
                if port_expr is not None:
                    yield [*peer_expr, *port_expr]


def add_policy_rules(rs: Ruleset, cluster: Cluster, node_ns: Netns) -> None:
    """The NetworkPolicy filter of node `node_ns.node` (see the module docstring)."""
    if cluster.admin_policies:
        # Not built as nftables rules yet: the kernel would allow what they deny.
        names = ", ".join(sorted(cluster.admin_policies))
        raise TopologyError(
            f"the kernel backend builds NetworkPolicy only; the admin tiers are not "
            f"built on the kernel (admin policies here: {names})"
        )
    rs.base_chain("netpol", "filter", "forward", 0)
    rs.add(
        "netpol",
        ct_state("established", "related"),
        ACCEPT,
        comment="conntrack: a packet of an admitted connection passes",
    )
    mine = node_ns.addresses()
    local = [p for p in policy_pods(cluster) if p.node == node_ns.node]
    for egress, policy_type in ((True, EGRESS), (False, INGRESS)):
        direction = "egress" if egress else "ingress"
        allow = RETURN if egress else ACCEPT
        jumps: list[tuple[object, Expr]] = []
        for pod in local:
            pols = isolating(cluster, pod, policy_type)
            if not pols:
                continue
            chain = rs.chain(f"{direction}-{pod.namespace}.{pod.name}")
            jumps.append((str(pod.ip), jump(chain)))
            side = "daddr" if egress else "saddr"
            rs.add(
                chain,
                match(field_("ip", side), addresses(mine)),
                allow,
                comment=f"{pod.key} and its own node always talk",
            )
            for pol in pols:
                rules = pol.egress if egress else pol.ingress
                for ri, rule in enumerate(rules):
                    for exprs in _rule_matches(
                        cluster, pol, rule.peers, rule.ports, pod, egress
                    ):
                        rs.add(
                            chain,
                            *exprs,
                            allow,
                            comment=f"netpol {pol.key} {direction} rule {ri}",
                        )
            names = ", ".join(p.key for p in pols)
            rs.add(
                chain, DROP, comment=f"{pod.key} is isolated for {direction} by {names}"
            )
        if jumps:
            side = "saddr" if egress else "daddr"
            rs.add(
                "netpol",
                verdict_map(field_("ip", side), jumps),
                comment=f"{direction} rules of the isolated pods of {node_ns.node}",
            )
