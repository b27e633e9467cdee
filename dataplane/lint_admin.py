"""`dataplane lint` for the admin policy tiers (AdminNetworkPolicy,
BaselineAdminNetworkPolicy, ClusterNetworkPolicy): the checks of `dataplane.lint` that
apply to them, worded for their semantics, and those only tiers need.

- `selector-matches-nothing`: a subject's or peer's `namespaces`, `pods` or `nodes`
  selector that selects no namespace, pod or node today, with the closest labels;
- `port-not-served`: an ingress rule's port or named port that no subject pod serves; an
  egress rule's that no pod of its `namespaces`/`pods` peers serves;
- `admin-rule-shadowed`: a rule that can never decide, because a rule checked before it
  in the same tier (earlier in the policy, or in a policy of lower priority number whose
  subject holds every pod of this one's) matches all it matches: the first matching rule
  of a tier decides or passes (apis/v1alpha1 "rules ... evaluated in order", priorities
  lower first);
- `admin-priority-tie`: two policies of one tier with the same priority whose subjects
  share pods: upstream leaves their order undefined ("the implementation can apply any
  of the matching policies"); the simulator checks them by name;
- `networks-covers-pods` / `networks-covers-nodes`: a `networks` CIDR over a podCIDR or
  the node network: unlike an ipBlock it is meant to match cluster traffic too ("that
  will allow or deny all IPv4 pod-to-pod traffic as well");
- `networks-ipv6`: an IPv6 CIDR, which matches nothing in the IPv4-only cluster;
- `domain-name-unresolved`: a `domainNames` name for which the cluster's DNS answers no
  address a policy sees (`dataplane.dns_records`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from ipaddress import IPv4Network
from typing import Protocol

from dataplane.dns_records import domain_networks
from dataplane.finding import Severity, closest, labels_of, ports_cover
from dataplane.netpol_index import Direction
from dataplane.netpol_text import admin_rule_text
from topology.model import (
    AdminPeer,
    AdminPolicy,
    AdminRule,
    Cluster,
    LabelSelector,
    Loc,
    Pod,
    PolicyPort,
    Tier,
)
from topology.selectors import format_selector, matches

ADMIN_RULES: dict[str, tuple[Severity, str]] = {
    "admin-rule-shadowed": (
        Severity.WARNING,
        "An admin policy rule never decides: a rule checked before it matches all it does.",
    ),
    "admin-priority-tie": (
        Severity.WARNING,
        "Two admin policies of one tier share a priority and pods: upstream's order is "
        "undefined.",
    ),
    "networks-covers-pods": (
        Severity.WARNING,
        "A networks CIDR overlaps a podCIDR: the rule matches pod traffic too.",
    ),
    "networks-covers-nodes": (
        Severity.NOTE,
        "A networks CIDR overlaps the node network: the rule matches node addresses.",
    ),
    "networks-ipv6": (
        Severity.WARNING,
        "An IPv6 networks CIDR matches nothing in the IPv4-only cluster.",
    ),
    "domain-name-unresolved": (
        Severity.WARNING,
        "A domainNames name has no address a policy sees in the cluster's DNS.",
    ),
}


class Linter(Protocol):
    """What these checks use of `dataplane.lint`'s linter."""

    cluster: Cluster
    pods: list[Pod]

    def add(self, rule: str, obj: str, field: str, message: str, loc: Loc) -> None: ...

    def check_ports(
        self,
        obj: str,
        loc: Loc,
        ports: Sequence[PolicyPort],
        servers: list[Pod],
        base: str,
        who: str,
        key: str = "ports",
        at: Sequence[int] = (),
        any_protocol: bool = False,
    ) -> None: ...


def _object(pol: AdminPolicy) -> str:
    return f"{pol.kind.lower()}/{pol.name}"


def _written_ports(rule: AdminRule) -> Iterator[tuple[int, PolicyPort]]:
    """The rule's ports with their index as written: a named port is held once per
    protocol (`topology.adminpolicy._named`), and is one item of the manifest."""
    k, i = 0, 0
    while i < len(rule.ports):
        pp = rule.ports[i]
        yield k, pp
        i += 3 if isinstance(pp.port, str) else 1
        k += 1


class AdminChecks:
    """The checks of one cluster's admin policies (`check(linter)`)."""

    def __init__(self, linter: Linter) -> None:
        self.linter = linter
        self.cluster = linter.cluster
        self._subjects: dict[str, frozenset[str]] = {}

    # -- who a selector holds -------------------------------------------------------------
    def namespaces_of(self, sel: LabelSelector) -> list[str]:
        return [
            n for n, ns in self.cluster.namespaces.items() if matches(sel, ns.labels)
        ]

    def pods_of(self, peer: AdminPeer) -> list[Pod]:
        """The pods (not hostNetwork) a `namespaces` or `pods` peer or subject holds."""
        assert peer.namespace_selector is not None
        spaces = set(self.namespaces_of(peer.namespace_selector))
        sel = peer.pod_selector or LabelSelector()
        return [
            p
            for p in self.linter.pods
            if p.namespace in spaces and matches(sel, p.labels)
        ]

    def subject(self, pol: AdminPolicy) -> frozenset[str]:
        found = self._subjects.get(pol.key)
        if found is None:
            found = self._subjects[pol.key] = frozenset(
                p.key for p in self.pods_of(pol.subject)
            )
        return found

    def check_selection(
        self, pol: AdminPolicy, peer: AdminPeer, field: str, subject: bool
    ) -> None:
        """`selector-matches-nothing` for a subject or a namespaces/pods/nodes peer."""
        add, obj = self.linter.add, _object(pol)
        effect = ", so the policy has no effect" if subject else ""
        if peer.node_selector is not None:
            nodes = self.cluster.nodes
            if not any(matches(peer.node_selector, n.labels) for n in nodes):
                add(
                    "selector-matches-nothing", obj, field + ".nodes",
                    f"nodes {format_selector(peer.node_selector)} selects no node "
                    f"({closest(peer.node_selector, labels_of(list(nodes)))})",
                    pol.loc,
                )  # fmt: skip
            return
        if peer.namespace_selector is None:
            return  # networks, domainNames
        if peer.pod_selector is None:
            where, sel = field + ".namespaces", peer.namespace_selector
        else:
            where, sel = field + ".pods.namespaceSelector", peer.namespace_selector
        if not self.namespaces_of(sel):
            known = labels_of(list(self.cluster.namespaces.values()))
            add(
                "selector-matches-nothing", obj, where,
                f"namespaceSelector {format_selector(sel)} selects no namespace"
                f"{effect} ({closest(sel, known)})",
                pol.loc,
            )  # fmt: skip
            return
        if peer.pod_selector is not None and not self.pods_of(peer):
            spaces = set(self.namespaces_of(peer.namespace_selector))
            scope = [p for p in self.linter.pods if p.namespace in spaces]
            add(
                "selector-matches-nothing", obj, field + ".pods.podSelector",
                f"podSelector {format_selector(peer.pod_selector)} selects no pod in "
                f"the namespaces its namespaceSelector selects{effect} "
                f"({closest(peer.pod_selector, labels_of(scope))})",
                pol.loc,
            )  # fmt: skip

    # -- addresses --------------------------------------------------------------------
    def check_networks(self, pol: AdminPolicy, peer: AdminPeer, field: str) -> None:
        add, obj, cfg = self.linter.add, _object(pol), self.cluster.config
        for k, net in enumerate(peer.networks):
            where = f"{field}.networks[{k}]"
            if not isinstance(net, IPv4Network):
                add(
                    "networks-ipv6", obj, where,
                    f"{net} is an IPv6 CIDR: the simulated cluster is IPv4-only, so it "
                    "matches no address here (it would on a dual-stack or IPv6 cluster)",
                    pol.loc,
                )  # fmt: skip
                continue
            pods = [str(n.pod_cidr) for n in cfg.nodes if net.overlaps(n.pod_cidr)]
            if pods:
                add(
                    "networks-covers-pods", obj, where,
                    f"{net} overlaps the podCIDR(s) {', '.join(pods)}: this rule also "
                    "matches traffic to and from those pods (the API: \"cluster-internal "
                    "traffic will be checked against the rule as well\"); a Pass rule "
                    "for pods before it keeps pod traffic out of it",
                    pol.loc,
                )  # fmt: skip
            if net.overlaps(cfg.node_cidr):
                add(
                    "networks-covers-nodes", obj, where,
                    f"{net} overlaps the node network {cfg.node_cidr}: this rule also "
                    "matches the nodes' own addresses (host-network pods' included) "
                    "and, unlike NetworkPolicy, a pod's traffic to its own node",
                    pol.loc,
                )  # fmt: skip

    def check_domains(self, pol: AdminPolicy, peer: AdminPeer, field: str) -> None:
        service_cidr = self.cluster.config.service_cidr
        for k, name in enumerate(peer.domain_names):
            nets = domain_networks(self.cluster, (name,))
            if not nets:
                why = (
                    "the cluster's DNS has no record for it (CoreDNS here has no "
                    "upstream resolver: it answers the cluster domain's Service and pod "
                    "names only)"
                )
            elif all(n.subnet_of(service_cidr) for n in nets):
                why = (
                    "the cluster's DNS answers it with a ClusterIP, which no policy "
                    "sees (policies judge the connection after kube-proxy's DNAT)"
                )
            else:
                continue
            self.linter.add(
                "domain-name-unresolved", _object(pol), f"{field}.domainNames[{k}]",
                f"{name!r}: {why}, so it matches no address", pol.loc,
            )  # fmt: skip

    # -- rules --------------------------------------------------------------------------
    def check_policy(self, pol: AdminPolicy) -> None:
        self.check_selection(pol, pol.subject, "spec.subject", subject=True)
        subject = [p for p in self.linter.pods if p.key in self.subject(pol)]
        ports_key = "protocols" if pol.kind == "ClusterNetworkPolicy" else "ports"
        for key, rules, peers_word in (
            ("ingress", pol.ingress, "from"),
            ("egress", pol.egress, "to"),
        ):
            for i, rule in enumerate(rules):
                base = f"spec.{key}[{i}]"
                for j, peer in enumerate(rule.peers):
                    field = f"{base}.{peers_word}[{j}]"
                    self.check_selection(pol, peer, field, subject=False)
                    self.check_networks(pol, peer, field)
                    self.check_domains(pol, peer, field)
                if key == "ingress":
                    servers, who = subject, "pod of the policy's subject"
                elif all(p.namespace_selector is not None for p in rule.peers):
                    servers = [s for p in rule.peers for s in self.pods_of(p)]
                    who = "pod of the rule's peers"
                else:
                    continue  # nodes, networks, domainNames: what they serve is unknown
                written = list(_written_ports(rule))
                if servers and written:
                    self.linter.check_ports(
                        _object(pol), pol.loc, [pp for _, pp in written], servers,
                        base, who, key=ports_key, at=[k for k, _ in written],
                        any_protocol=True,
                    )  # fmt: skip

    def check_tier(self, tier: Tier, policies: list[AdminPolicy]) -> None:
        """`admin-priority-tie` and `admin-rule-shadowed` in one tier's order."""
        ordered = sorted((p for p in policies if p.tier is tier), key=lambda p: p.order)
        for n, pol in enumerate(ordered):
            for other in ordered[:n]:
                if (
                    pol.priority is not None
                    and other.priority == pol.priority
                    and self.subject(pol) & self.subject(other)
                ):
                    self.linter.add(
                        "admin-priority-tie", _object(pol), "spec.priority",
                        f"priority {pol.priority} is also that of {other.short}, and both "
                        "select some pods: upstream leaves the order of equal "
                        "priorities undefined (\"the implementation can apply any of "
                        f"the matching policies\"); this simulator checks {other.short} "
                        "first (by name)",
                        pol.loc,
                    )  # fmt: skip
        for direction in Direction:
            self.check_shadowed(ordered, direction)

    def check_shadowed(self, ordered: list[AdminPolicy], direction: Direction) -> None:
        key = "ingress" if direction is Direction.INGRESS else "egress"
        seen: list[tuple[AdminPolicy, int, AdminRule]] = []
        for pol in ordered:
            rules = pol.ingress if direction is Direction.INGRESS else pol.egress
            mine = self.subject(pol)
            for ri, rule in enumerate(rules):
                for other, oi, orule in seen:
                    if not _covers(orule, rule):
                        continue
                    if other is not pol and not (mine and mine <= self.subject(other)):
                        continue
                    self.linter.add(
                        "admin-rule-shadowed", _object(pol), f"spec.{key}[{ri}]",
                        f"this rule never decides: "
                        f"{admin_rule_text(other, direction, oi)} ({orule.action.value}) "
                        "is checked before it, for the same pods, and matches "
                        "everything it matches (the first matching rule of a tier "
                        "decides or passes)",
                        pol.loc,
                    )  # fmt: skip
                    break
                seen.append((pol, ri, rule))


def _covers(big: AdminRule, small: AdminRule) -> bool:
    """Whether admin rule `big` matches everything `small` matches (a sound subset:
    peers and ports compared as written, no ports meaning all)."""
    if not all(p in big.peers for p in small.peers):
        return False
    return ports_cover(big.ports, small.ports)


def check(linter: Linter) -> None:
    """Every admin-policy finding of the linter's cluster, policy by policy (by kind and
    name), then each tier's order."""
    checks = AdminChecks(linter)
    policies = sorted(linter.cluster.admin_policies.values(), key=lambda p: p.key)
    for pol in policies:
        checks.check_policy(pol)
    for tier in Tier:
        checks.check_tier(tier, policies)


__all__ = ["ADMIN_RULES", "check"]
