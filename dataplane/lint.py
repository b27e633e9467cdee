"""`dataplane lint`: what in a cluster's policies and Services is probably not what its
author meant.

Each check reads the cluster as the scenario defines it before its first step, and says
what it found, on which object (with the file and line it was written at), how sure it
is (`error`, `warning`, `note`: the SARIF levels), and what would be valid:

- `selector-matches-nothing`: a policy's `podSelector`, a peer's `podSelector` or
  `namespaceSelector`, a Service's `selector` that selects no pod or namespace today, with
  the closest labels that exist (a typo such as `role=cleint`);
- `isolates-admits-nothing`: a policy that isolates its pods for a direction and has no
  rule for it (a deny-all: often meant, so a note);
- `rule-shadowed`: a rule that admits nothing another rule of the same pods does not
  admit already (the same peers, or all peers, and the same ports or all ports);
- `port-not-served`: an ingress rule's port, or named port, that no pod the policy
  selects listens on; an egress rule's port that no pod of its pod peers listens on;
- `ipblock-covers-pods` / `ipblock-covers-nodes`: an ipBlock overlapping a podCIDR (pod
  addresses are the selectors' business; the NetworkPolicy documentation leaves ipBlock
  on pod traffic to the implementation) or the node network (a pod's own node is always
  allowed; with VXLAN another node's traffic arrives from its `flannel.1` address);
- `service-selects-nothing`, `target-port-not-served`: a Service without endpoints, a
  `targetPort` (number or name) that no selected pod serves;
- the admin policy tiers' checks, in `dataplane.lint_admin`.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network
from typing import Any

from dataplane import lint_admin
from dataplane.finding import Finding, Severity, closest, labels_of, ports_cover
from dataplane.lint_admin import ADMIN_RULES
from topology.model import (
    Cluster,
    IPBlock,
    LabelSelector,
    Loc,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Service,
)
from topology.selectors import format_selector, matches, matches_map

# Every check: its id, its severity and a one-line description (SARIF `rules`).
RULES: dict[str, tuple[Severity, str]] = {
    "selector-matches-nothing": (
        Severity.WARNING,
        "A label selector selects no pod or namespace of the cluster.",
    ),
    "isolates-admits-nothing": (
        Severity.NOTE,
        "A policy isolates its pods for a direction and admits nothing (deny-all).",
    ),
    "rule-shadowed": (
        Severity.NOTE,
        "A rule admits nothing that another rule for the same pods does not admit.",
    ),
    "port-not-served": (
        Severity.WARNING,
        "A rule's port or named port is served by none of the pods it concerns.",
    ),
    "ipblock-covers-pods": (
        Severity.WARNING,
        "An ipBlock overlaps a podCIDR: pod traffic is what selectors are for.",
    ),
    "ipblock-covers-nodes": (
        Severity.NOTE,
        "An ipBlock overlaps the node network.",
    ),
    "service-selects-nothing": (
        Severity.WARNING,
        "A Service's selector selects no pod: it has no endpoints.",
    ),
    "target-port-not-served": (
        Severity.WARNING,
        "A Service's targetPort is served by none of the pods it selects.",
    ),
    **ADMIN_RULES,  # the admin policy tiers' (`dataplane.lint_admin`)
}


class _Linter:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.findings: list[Finding] = []
        self.pods = [p for p in cluster.pods.values() if not p.host_network]

    def add(self, rule: str, obj: str, field: str, message: str, loc: Loc) -> None:
        self.findings.append(Finding(rule, RULES[rule][0], obj, field, message, loc))

    # -- selectors ---------------------------------------------------------------------
    def namespaces_of(self, sel: LabelSelector) -> list[str]:
        return [
            n.name for n in self.cluster.namespaces.values() if matches(sel, n.labels)
        ]

    def peer_pods(self, pol: NetworkPolicy, peer: PolicyPeer) -> list[Pod] | None:
        """The pods a peer selects (None for an ipBlock peer)."""
        if peer.ip_block is not None:
            return None
        if peer.namespace_selector is None:
            spaces = [pol.namespace]
        else:
            spaces = self.namespaces_of(peer.namespace_selector)
        pod_sel = peer.pod_selector or LabelSelector()
        return [
            p for p in self.pods if p.namespace in spaces and matches(pod_sel, p.labels)
        ]

    def check_peer(self, pol: NetworkPolicy, peer: PolicyPeer, field: str) -> None:
        obj = f"networkpolicy/{pol.key}"
        if peer.ip_block is not None:
            self.check_ip_block(pol, peer.ip_block, field + ".ipBlock")
            return
        if peer.namespace_selector is not None and not self.namespaces_of(
            peer.namespace_selector
        ):
            known = labels_of(list(self.cluster.namespaces.values()))
            self.add(
                "selector-matches-nothing", obj, field + ".namespaceSelector",
                f"namespaceSelector {format_selector(peer.namespace_selector)} selects "
                f"no namespace ({closest(peer.namespace_selector, known)})",
                pol.loc,
            )  # fmt: skip
            return
        if peer.pod_selector is not None and not self.peer_pods(pol, peer):
            if peer.namespace_selector is None:
                scope = [p for p in self.pods if p.namespace == pol.namespace]
                where = f"namespace {pol.namespace}"
            else:
                spaces = self.namespaces_of(peer.namespace_selector)
                scope = [p for p in self.pods if p.namespace in spaces]
                where = "the namespaces its namespaceSelector selects"
            self.add(
                "selector-matches-nothing", obj, field + ".podSelector",
                f"podSelector {format_selector(peer.pod_selector)} selects no pod in "
                f"{where} ({closest(peer.pod_selector, labels_of(scope))})",
                pol.loc,
            )  # fmt: skip

    def check_ip_block(self, pol: NetworkPolicy, block: IPBlock, field: str) -> None:
        obj = f"networkpolicy/{pol.key}"
        cfg = self.cluster.config

        def uncovered(net: IPv4Network) -> bool:
            return not any(net.subnet_of(e) for e in block.except_ if e.version == 4)

        pods = [
            str(n.pod_cidr) for n in cfg.nodes
            if block.cidr.overlaps(n.pod_cidr) and uncovered(n.pod_cidr)
        ]  # fmt: skip
        if pods:
            self.add(
                "ipblock-covers-pods", obj, field,
                f"cidr {block.cidr} overlaps the podCIDR(s) {', '.join(pods)}: pods are "
                "chosen by podSelector and namespaceSelector; whether an ipBlock applies "
                "to pod addresses is left to the implementation by the NetworkPolicy "
                "documentation (this simulator matches it on the packet's address, after "
                "kube-proxy's DNAT and before masquerade)",
                pol.loc,
            )  # fmt: skip
        if block.cidr.overlaps(cfg.node_cidr) and uncovered(cfg.node_cidr):
            self.add(
                "ipblock-covers-nodes", obj, field,
                f"cidr {block.cidr} overlaps the node network {cfg.node_cidr}: traffic "
                "between a pod and its own node is always allowed whatever the policy, "
                "and with VXLAN another node's own traffic comes from its flannel.1 "
                "address (the first address of its podCIDR), not from this range",
                pol.loc,
            )  # fmt: skip

    # -- policies ----------------------------------------------------------------------
    def check_policy(self, pol: NetworkPolicy) -> None:
        obj = f"networkpolicy/{pol.key}"
        selected = [
            p for p in self.pods
            if p.namespace == pol.namespace and matches(pol.pod_selector, p.labels)
        ]  # fmt: skip
        if not selected:
            scope = [p for p in self.pods if p.namespace == pol.namespace]
            self.add(
                "selector-matches-nothing", obj, "spec.podSelector",
                f"podSelector {format_selector(pol.pod_selector)} selects no pod in "
                f"namespace {pol.namespace}, so the policy has no effect "
                f"({closest(pol.pod_selector, labels_of(scope))})",
                pol.loc,
            )  # fmt: skip
        for direction, rules, key in (
            ("Ingress", pol.ingress, "ingress"),
            ("Egress", pol.egress, "egress"),
        ):
            if direction not in pol.policy_types:
                continue
            if not rules:
                self.add(
                    "isolates-admits-nothing", obj, f"spec.{key}",
                    f"isolates {len(selected)} pod(s) for {key} and has no {key} rule: "
                    f"it admits nothing (a deny-all for {key}; other policies selecting "
                    "the same pods can still admit)",
                    pol.loc,
                )  # fmt: skip
            peers_word = "from" if key == "ingress" else "to"
            for i, rule in enumerate(rules):
                base = f"spec.{key}[{i}]"
                for j, peer in enumerate(rule.peers):
                    self.check_peer(pol, peer, f"{base}.{peers_word}[{j}]")
                if key == "ingress":
                    servers = selected
                else:
                    found = [self.peer_pods(pol, p) for p in rule.peers]
                    servers = (
                        [p for group in found if group is not None for p in group]
                        if rule.peers and all(g is not None for g in found)
                        else []
                    )
                    if not rule.peers:
                        servers = []  # any destination: cannot tell what it serves
                if servers:
                    who = (
                        "pod the policy selects"
                        if key == "ingress"
                        else "pod of the rule's peers"
                    )
                    self.check_ports(obj, pol.loc, rule.ports, servers, base, who)
            self.check_shadowed(pol, rules, key)

    def check_ports(
        self, obj: str, loc: Loc, ports: Sequence[PolicyPort], servers: list[Pod],
        base: str, who: str, key: str = "ports", at: Sequence[int] = (),
        any_protocol: bool = False,
    ) -> None:  # fmt: skip
        """`port-not-served` for each of `ports` (`base.key[k]`, k its position or
        `at[position]`) that no pod of `servers` listens on (a named port: has no
        containerPort of that name; of any protocol with `any_protocol`, as an admin
        policy's `namedPort` means)."""
        for pos, pp in enumerate(ports):
            k = at[pos] if at else pos
            if pp.port is None:
                continue
            if isinstance(pp.port, str):
                proto = None if any_protocol else pp.protocol
                served = any(p.named_port(pp.port, proto) for p in servers)
                what = f"named port {pp.port!r}" + (
                    "" if proto is None else f"/{pp.protocol.value}"
                )
                names = sorted({c.name for p in servers for c in p.ports() if c.name})
                valid = f"(named ports there: {', '.join(names) or 'none'})"
            else:
                last = pp.end_port or pp.port
                served = any(
                    c.protocol is pp.protocol and pp.port <= c.port <= last
                    for p in servers for c in p.ports()
                )  # fmt: skip
                span = f"{pp.port}-{last}" if last != pp.port else str(pp.port)
                what = f"port {span}/{pp.protocol.value}"
                nums = sorted(
                    {f"{c.port}/{c.protocol.value}" for p in servers for c in p.ports()}
                )
                valid = f"(ports there: {', '.join(nums) or 'none'})"
            if not served:
                self.add(
                    "port-not-served", obj, f"{base}.{key}[{k}]",
                    f"{what} is served by no {who} {valid}", loc,
                )  # fmt: skip

    def check_shadowed(
        self, pol: NetworkPolicy, rules: tuple[PolicyRule, ...], key: str
    ) -> None:
        """A rule wholly inside another rule of the same policy: its peers are the
        other's (or the other admits all peers) and so are its ports."""
        for i, rule in enumerate(rules):
            for j, other in enumerate(rules):
                if (
                    i == j
                    or not _covers(other, rule)
                    or (_covers(rule, other) and j > i)
                ):
                    continue  # two equal rules: the later one is reported
                self.add(
                    "rule-shadowed", f"networkpolicy/{pol.key}", f"spec.{key}[{i}]",
                    f"everything this rule admits, rule {key}[{j}] admits already "
                    "(rules are a union: this one can go, or was meant to say more)",
                    pol.loc,
                )  # fmt: skip
                break

    # -- Services ----------------------------------------------------------------------
    def check_service(self, svc: Service) -> None:
        if svc.selector is None:
            return  # endpoints managed by hand (or by an EndpointSlice)
        obj = f"service/{svc.key}"
        scope = [p for p in self.cluster.pods.values() if p.namespace == svc.namespace]
        selected = [p for p in scope if matches_map(svc.selector, p.labels)]
        if not selected:
            sel = ",".join(f"{k}={v}" for k, v in svc.selector.items()) or "<none>"
            self.add(
                "service-selects-nothing", obj, "spec.selector",
                f"selector {sel} selects no pod in namespace {svc.namespace}: the Service "
                f"has no endpoints ({closest(LabelSelector(dict(svc.selector)), labels_of(scope))})",
                svc.loc,
            )  # fmt: skip
            return
        for k, sp in enumerate(svc.ports):
            if isinstance(sp.target_port, str):
                served = any(
                    p.named_port(sp.target_port, sp.protocol) for p in selected
                )
            else:
                served = any(
                    p.container_of(sp.target_port, sp.protocol) for p in selected
                ) or any(p.host_network for p in selected)
            if not served:
                self.add(
                    "target-port-not-served", obj, f"spec.ports[{k}].targetPort",
                    f"targetPort {sp.target_port!r}/{sp.protocol.value} is served by "
                    f"none of the {len(selected)} pod(s) the Service selects (their "
                    f"ports: {_ports_of(selected)})",
                    svc.loc,
                )  # fmt: skip


def _ports_of(pods: list[Pod]) -> str:
    found = sorted(
        {f"{c.port}/{c.protocol.value}" + (f" ({c.name})" if c.name else "")
         for p in pods for c in p.ports()}
    )  # fmt: skip
    return ", ".join(found) or "none"


def _covers(big: PolicyRule, small: PolicyRule) -> bool:
    """Whether rule `big` admits everything rule `small` admits (a sound subset: peers
    and ports compared as written, `[]` meaning all)."""
    peers = not big.peers or (
        bool(small.peers) and all(p in big.peers for p in small.peers)
    )
    if not peers:
        return False
    return ports_cover(big.ports, small.ports)


def lint(cluster: Cluster) -> list[Finding]:
    """Every finding about `cluster`, by object then check order."""
    linter = _Linter(cluster)
    for pol in sorted(cluster.policies.values(), key=lambda p: p.key):
        linter.check_policy(pol)
    lint_admin.check(linter)
    for svc in sorted(cluster.services.values(), key=lambda s: s.key):
        linter.check_service(svc)
    return linter.findings


def sarif(findings: list[Finding], version: str) -> dict[str, Any]:
    """The findings as a SARIF 2.1.0 log (what code-scanning pages read)."""
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "dataplane lint",
                        "version": version,
                        "rules": [
                            {
                                "id": rid,
                                "shortDescription": {"text": text},
                                "defaultConfiguration": {"level": sev.value},
                            }
                            for rid, (sev, text) in RULES.items()
                        ],
                    }
                },
                "results": [
                    {
                        "ruleId": f.rule,
                        "level": f.severity.value,
                        "message": {"text": f"{f.obj} {f.field}: {f.message}"},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": f.loc.file},
                                    "region": {"startLine": max(f.loc.line, 1)},
                                },
                                "logicalLocations": [{"fullyQualifiedName": f.obj}],
                            }
                        ],
                    }
                    for f in findings
                ],
            }
        ],
    }


__all__ = ["RULES", "Finding", "Severity", "lint", "sarif"]
