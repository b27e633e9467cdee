"""Who is who to a NetworkPolicy, looked up once per cluster: the parties of a connection
(a pod, a node, an external host), the policies selecting each pod, selectors, ipBlocks and
ports, each answering *why not* as well as yes or no.

`index_of(cluster)` builds the `PolicyIndex` of a `Cluster` once (a Cluster is immutable, so
the index is kept by identity); `dataplane.netpol.decide` composes its answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network

from dataplane.dns_records import domain_networks
from topology.ipam import node_pod_addresses
from topology.model import (
    AdminPeer,
    AdminPolicy,
    AdminRule,
    Cluster,
    IPBlock,
    LabelSelector,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Protocol,
    Requirement,
    Tier,
)
from topology.selectors import matches, requirement_matches

__all__ = [
    "Direction",
    "Party",
    "PeerMiss",
    "PolicyIndex",
    "RuleMiss",
    "Term",
    "index_of",
    "port_matches",
    "rule_ports_match",
]


class Direction(StrEnum):
    INGRESS = "ingress"
    EGRESS = "egress"

    @property
    def policy_type(self) -> str:
        """The `policyTypes` word: `Ingress` or `Egress`."""
        return "Ingress" if self is Direction.INGRESS else "Egress"


# A selector term that did not hold: a `matchLabels` pair or a `matchExpressions` item.
Term = tuple[str, str] | Requirement
# Why a peer did not match, as data: ("not-pod",), ("namespace",), ("ns-label", term),
# ("pod-label", term), ("cidr",), ("except", network); for admin policies' peers also
# ("networks",), ("not-node",), ("node-label", term), ("domain-names",).
PeerMiss = tuple[object, ...]
# Why a rule did not admit: ("ports",), ("peers", (PeerMiss, ...)) or ("no-rules",).
RuleMiss = tuple[object, ...]
PORTS_MISS: RuleMiss = ("ports",)
NO_RULES: RuleMiss = ("no-rules",)


@dataclass(frozen=True, slots=True)
class Party:
    """One end of a connection as NetworkPolicy sees it: an address and what owns it."""

    ip: str
    ip_int: int
    pod: Pod | None = None  # a pod that is not hostNetwork
    node: str | None = None  # the node owning this address (hostNetwork pods included)
    external: str | None = None  # a `cluster.externals` host
    # the labels of the pod's namespace (what a namespaceSelector looks at)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.pod is not None:
            return f"{self.pod.key} ({self.ip})"
        if self.node is not None:
            return f"node {self.node} ({self.ip})"
        if self.external is not None:
            return f"external {self.external} ({self.ip})"
        return self.ip


def _ip_int(ip: str) -> int:
    return int(IPv4Address(ip))


def _labels_key(labels: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


class PolicyIndex:
    """What the decisions need of one cluster, looked up once (a `Cluster` is immutable).

    Caches which policies select each pod and the outcome of each selector on each label
    set, so that a probe costs a few dictionary lookups and a matrix reuses every answer.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.pods_by_ip: dict[str, Pod] = {
            str(p.ip): p for p in cluster.pods.values() if not p.host_network
        }
        self.node_of_ip: dict[str, str] = {}
        for n in cluster.nodes:
            self.node_of_ip[str(n.ip)] = n.name
            # the bridge's and the tunnel device's (flannel.1, tunl0, vxlan.calico)
            for ip in node_pod_addresses(cluster.config, n):
                self.node_of_ip[str(ip)] = n.name
        self.external_of_ip = {str(e.ip): e.name for e in cluster.config.externals}
        self.by_namespace: dict[str, list[NetworkPolicy]] = {}
        for pol in cluster.policies.values():
            self.by_namespace.setdefault(pol.namespace, []).append(pol)
        self.ns_keys = {
            name: _labels_key(ns.labels) for name, ns in cluster.namespaces.items()
        }
        self._isolating: dict[tuple[str, Direction], tuple[NetworkPolicy, ...]] = {}
        # Admin policies by tier, in evaluation order (`AdminPolicy.order`).
        ordered = sorted(cluster.admin_policies.values(), key=lambda p: p.order)
        self.tiers: dict[Tier, list[AdminPolicy]] = {
            t: [p for p in ordered if p.tier is t] for t in Tier
        }
        # `nodes` peers select "the IPs present in the node.Status.Addresses field"
        # (apis/v1alpha1 AdminNetworkPolicyEgressPeer.Nodes): the node's own address.
        self.node_labels = {str(n.ip): n.labels for n in cluster.nodes}
        self._subjects: dict[tuple[object, ...], tuple[AdminPolicy, ...]] = {}
        self._subject_ns: dict[Tier, dict[str, list[AdminPolicy]]] = {}
        self._networks: dict[int, tuple[tuple[int, int], ...]] = {}
        self._domains: dict[tuple[str, ...], tuple[IPv4Network, ...]] = {}
        self._terms: dict[tuple[int, frozenset[tuple[str, str]]], Term | None] = {}
        self._blocks: dict[int, tuple[int, int, tuple[tuple[int, int, str], ...]]] = {}
        self._parties: dict[str, Party] = {}
        self._pod_keys: dict[str, frozenset[tuple[str, str]]] = {}

    # -- who is who ------------------------------------------------------------------------
    def party(self, ip: str) -> Party:
        """The party owning address `ip` (a pod, a node, an external host or nobody)."""
        found = self._parties.get(ip)
        if found is None:
            pod = self.pods_by_ip.get(ip)
            if pod is not None:
                labels = self.namespace_labels(pod.namespace)
                found = Party(ip, _ip_int(ip), pod, namespace_labels=labels)
            else:
                node, ext = self.node_of_ip.get(ip), self.external_of_ip.get(ip)
                found = Party(ip, _ip_int(ip), None, node, ext)
            self._parties[ip] = found
        return found

    def labels_key(self, pod: Pod) -> frozenset[tuple[str, str]]:
        """The pod's labels as a hashable key (remembered per pod)."""
        key = self._pod_keys.get(pod.key)
        if key is None:
            key = self._pod_keys[pod.key] = _labels_key(pod.labels)
        return key

    def namespace_labels(self, name: str) -> Mapping[str, str]:
        ns = self.cluster.namespaces.get(name)
        return ns.labels if ns is not None else {}

    # -- selection -------------------------------------------------------------------------
    def isolating(self, pod: Pod, direction: Direction) -> tuple[NetworkPolicy, ...]:
        """The policies that select `pod` for `direction`, in creation order."""
        key = (pod.key, direction)
        found = self._isolating.get(key)
        if found is None:
            found = ()
            if not pod.host_network:
                labels = self.labels_key(pod)
                found = tuple(
                    pol
                    for pol in self.by_namespace.get(pod.namespace, ())
                    if direction.policy_type in pol.policy_types
                    and self.term_miss(pol.pod_selector, labels, pod.labels) is None
                )
            self._isolating[key] = found
        return found

    def subjects(
        self, pod: Pod, tier: Tier, direction: Direction
    ) -> tuple[AdminPolicy, ...]:
        """The admin policies of `tier` whose subject holds `pod` and that have rules for
        `direction` (one without does not affect that direction), in evaluation order.
        hostNetwork pods are never a subject (`AdminNetworkPolicySpec.Subject`)."""
        # what a subject looks at: the pod's namespace and labels (replicas share them)
        key = (pod.namespace, self.labels_key(pod), pod.host_network, tier, direction)
        found = self._subjects.get(key)
        if found is None:
            found = ()
            if not pod.host_network:
                ingress = direction is Direction.INGRESS
                found = tuple(
                    pol
                    for pol in self._namespace_subjects(tier, pod.namespace)
                    if (pol.ingress if ingress else pol.egress)
                    and self.selectors_miss(None, pol.subject.pod_selector, pod) is None
                )
            self._subjects[key] = found
        return found

    def _namespace_subjects(self, tier: Tier, namespace: str) -> list[AdminPolicy]:
        """The policies of `tier` (in order) whose subject's namespace selector takes
        `namespace`, for every namespace at once."""
        by_ns = self._subject_ns.get(tier)
        if by_ns is None:
            by_ns = self._subject_ns[tier] = {name: [] for name in self.ns_keys}
            for pol in self.tiers[tier]:
                sel = pol.subject.namespace_selector
                assert sel is not None
                for name in self.ns_keys:
                    if matches(sel, self.namespace_labels(name)):
                        by_ns[name].append(pol)
        return by_ns.get(namespace, [])

    def term_miss(
        self,
        selector: LabelSelector,
        key: frozenset[tuple[str, str]],
        labels: Mapping[str, str],
    ) -> Term | None:
        """The first term of `selector` that `labels` do not satisfy, or None (a match).

        Equals `topology.selectors.matches` (a test proves it); remembered per label set.
        """
        cache_key = (id(selector), key)
        if cache_key in self._terms:
            return self._terms[cache_key]
        miss: Term | None = None
        for k, v in selector.match_labels.items():
            if labels.get(k) != v:
                miss = (k, v)
                break
        else:
            for req in selector.match_expressions:
                if not requirement_matches(req, labels):
                    miss = req
                    break
        self._terms[cache_key] = miss
        return miss

    def block_miss(self, block: IPBlock, ip_int: int) -> PeerMiss | None:
        """Why an address is outside an ipBlock, or None when it is inside."""
        compiled = self._blocks.get(id(block))
        if compiled is None:
            net = block.cidr
            compiled = (
                int(net.network_address),
                int(net.netmask),
                tuple(
                    (int(x.network_address), int(x.netmask), str(x))
                    for x in block.except_
                ),
            )
            self._blocks[id(block)] = compiled
        base, mask, excepts = compiled
        if ip_int & mask != base:
            return ("cidr",)
        for xbase, xmask, text in excepts:
            if ip_int & xmask == xbase:
                return ("except", text)
        return None

    # -- rules -----------------------------------------------------------------------------
    def peer_miss(
        self, policy_ns: str, peer: PolicyPeer, party: Party
    ) -> PeerMiss | None:
        """Why `party` does not match `peer` of a policy in `policy_ns`, or None."""
        if peer.ip_block is not None:
            return self.block_miss(peer.ip_block, party.ip_int)
        pod = party.pod
        if pod is None:
            return ("not-pod",)
        if peer.namespace_selector is None and pod.namespace != policy_ns:
            return ("namespace",)
        return self.selectors_miss(peer.namespace_selector, peer.pod_selector, pod)

    def selectors_miss(
        self,
        namespace_selector: LabelSelector | None,
        pod_selector: LabelSelector | None,
        pod: Pod,
    ) -> PeerMiss | None:
        """Why `pod` fails a namespace selector or a pod selector (None: not given)."""
        if namespace_selector is not None:
            ns_key = self.ns_keys.get(pod.namespace, frozenset())
            term = self.term_miss(
                namespace_selector, ns_key, self.namespace_labels(pod.namespace)
            )
            if term is not None:
                return ("ns-label", term)
        if pod_selector is not None:
            term = self.term_miss(pod_selector, self.labels_key(pod), pod.labels)
            if term is not None:
                return ("pod-label", term)
        return None

    def address_networks(self, peer: AdminPeer) -> tuple[IPv4Network, ...]:
        """The IPv4 networks a `networks` or `domainNames` peer matches (the addresses
        the cluster's DNS answers for the names: `dataplane.dns_records`)."""
        if peer.domain_names:
            found = self._domains.get(peer.domain_names)
            if found is None:
                found = domain_networks(self.cluster, peer.domain_names)
                self._domains[peer.domain_names] = found
            return found
        return peer.ipv4_networks

    def admin_peer_miss(self, peer: AdminPeer, party: Party) -> PeerMiss | None:
        """Why `party` does not match a subject or peer of an admin policy, or None."""
        if peer.by_address:
            nets = self._networks.get(id(peer))
            if nets is None:
                nets = self._networks[id(peer)] = tuple(
                    (int(n.netmask), int(n.network_address))
                    for n in self.address_networks(peer)
                )
            ip = party.ip_int
            if any(ip & m == b for m, b in nets):
                return None
            return ("networks",) if peer.networks else ("domain-names",)
        if peer.node_selector is not None:
            labels = self.node_labels.get(party.ip)
            if labels is None:
                return ("not-node",)
            term = self.term_miss(peer.node_selector, _labels_key(labels), labels)
            return None if term is None else ("node-label", term)
        if party.pod is None:
            return ("not-pod",)
        return self.selectors_miss(
            peer.namespace_selector, peer.pod_selector, party.pod
        )


def port_matches(
    port: PolicyPort, dport: int | None, protocol: Protocol | None, dst: Pod | None
) -> bool:
    """Whether a rule's `ports` item admits `protocol`/`dport` to the pod `dst`.

    >>> port_matches(PolicyPort(Protocol.TCP, 80), 80, Protocol.TCP, None)
    True
    >>> port_matches(PolicyPort(Protocol.TCP, 8000, 8080), 8080, Protocol.TCP, None)
    True
    >>> port_matches(PolicyPort(Protocol.UDP, None), 53, Protocol.TCP, None)
    False
    """
    if protocol is not port.protocol or dport is None:
        return False
    if port.port is None:
        return True
    if isinstance(port.port, str):
        # A named port is resolved on the destination pod (for ingress and egress alike).
        return dst is not None and dst.named_port(port.port, port.protocol) == dport
    if port.end_port is None:
        return dport == port.port
    return port.port <= dport <= port.end_port


def rule_ports_match(
    rule: PolicyRule | AdminRule,
    dport: int | None,
    protocol: Protocol | None,
    dst: Pod | None,
) -> bool:
    """No ports: every port of every protocol; else one item must match."""
    return not rule.ports or any(
        port_matches(p, dport, protocol, dst) for p in rule.ports
    )


_INDEXES: dict[int, tuple[Cluster, PolicyIndex]] = {}
_INDEX_LIMIT = 8


def index_of(cluster: Cluster) -> PolicyIndex:
    """The index of `cluster`, built once per Cluster object (keyed by identity)."""
    hit = _INDEXES.get(id(cluster))
    if hit is not None and hit[0] is cluster:
        return hit[1]
    if len(_INDEXES) >= _INDEX_LIMIT:
        _INDEXES.pop(next(iter(_INDEXES)))
    index = PolicyIndex(cluster)
    _INDEXES[id(cluster)] = (cluster, index)  # the reference keeps the id valid
    return index
