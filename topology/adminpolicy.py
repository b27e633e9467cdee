"""Validated AdminNetworkPolicy, BaselineAdminNetworkPolicy and ClusterNetworkPolicy
manifests -> `topology.model.AdminPolicy`, with the CRDs' rules that a schema cannot say.

From network-policy-api (`apis/v1alpha1/*.go`, `apis/v1alpha2/clusternetworkpolicy_types.go`
and the CRD `config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml`):
- a subject, a peer, a port and a CNP protocol set exactly one field
  (`MinProperties=1`, `MaxProperties=1`);
- a port range needs `start < end` (CEL `self.start < self.end`, "Start port must be less
  than End port");
- an egress rule with a `networks`, `nodes` or `domainNames` peer may not use a named port
  (CEL: "networks/nodes/domainNames peer cannot be set with namedPorts since there are no
  namedPorts for networks/nodes/domainNames");
- a `networks` item is a CIDR (`isCIDR(self)`: "Invalid CIDR format provided"), IPv4 or
  IPv6 (an IPv6 one matches nothing in the IPv4-only simulated cluster);
- the BaselineAdminNetworkPolicy is a singleton named `default` (CEL
  `self.metadata.name == 'default'`).
`domainNames` peers are validated here (the CRD's pattern) and match, at decision time,
the addresses the cluster's DNS answers for the names (`dataplane.dns_records`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network, IPv6Network

from topology import adminschema as a
from topology.fields import parse_loose_cidr, parse_loose_cidr6
from topology.kubeschema import LabelSelectorSpec
from topology.manifest import KubeObject, Origin
from topology.model import (
    ADMIN_KINDS,
    AdminAction,
    AdminPeer,
    AdminPolicy,
    AdminRule,
    LabelSelector,
    PolicyPort,
    Protocol,
    Tier,
)
from topology.normalize import Draft, draft, selector
from topology.yamlsource import PathPart

Path = tuple[PathPart, ...]
NAMED_PROTOCOLS = (Protocol.TCP, Protocol.UDP, Protocol.SCTP)
# The CRD's DomainName pattern (its `a-zA-z` typo kept: it is what the API server runs).
DOMAIN_PATTERN = re.compile(
    r"^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+"
    r"[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$"
)
_ACTIONS = {
    "Allow": AdminAction.ALLOW,
    "Accept": AdminAction.ALLOW,
    "Deny": AdminAction.DENY,
    "Pass": AdminAction.PASS,
}


def _one_of(origin: Origin, path: Path, given: Mapping[str, object]) -> str:
    """The one field of `given` that is set, or the CRD's error."""
    present = [k for k, v in given.items() if v is not None]
    if len(present) != 1:
        got = ", ".join(present) if present else "none"
        raise origin.error(
            path,
            f"exactly one of {', '.join(given)} must be set (got {got})",
        )
    return present[0]


def any_draft(obj: KubeObject, warnings: list[str]) -> Draft | AdminPolicy:
    """The normalized form of any validated object: an admin policy's here, the other
    kinds' `topology.normalize.draft`."""
    if obj.kind in ADMIN_KINDS:
        return admin_policy(obj, warnings)
    return draft(obj, warnings)


def admin_policy(obj: KubeObject, warnings: list[str]) -> AdminPolicy:
    """The model of a validated admin policy manifest (warnings appended)."""
    m, origin = obj.model, obj.origin
    if m.metadata.namespace is not None:
        warnings.append(
            origin.warning(
                ("metadata", "namespace"),
                f"{obj.kind} is cluster-scoped; metadata.namespace "
                f"{m.metadata.namespace!r} is ignored",
            )
        )
    spec = ("spec",)
    priority: int | None
    if isinstance(m, a.ClusterNetworkPolicyObject):
        s = m.spec
        tier = Tier(s.tier)
        priority = s.priority
        subject = _subject(s.subject, origin, (*spec, "subject"))
        ingress = _rules(s.ingress, "from", origin, (*spec, "ingress"), warnings)
        egress = _rules(s.egress, "to", origin, (*spec, "egress"), warnings)
    elif isinstance(m, a.AdminNetworkPolicyObject | a.BaselineAdminNetworkPolicyObject):
        baseline = isinstance(m, a.BaselineAdminNetworkPolicyObject)
        if baseline and obj.name != "default":
            raise origin.error(
                ("metadata", "name"),
                f"{obj.name!r}: Only one baseline admin network policy with "
                'metadata.name="default" can be created in the cluster',
            )
        tier = Tier.BASELINE if baseline else Tier.ADMIN
        priority = (
            None
            if isinstance(m, a.BaselineAdminNetworkPolicyObject)
            else (m.spec.priority)
        )
        subject = _subject(m.spec.subject, origin, (*spec, "subject"))
        ingress = _rules(m.spec.ingress, "from", origin, (*spec, "ingress"), warnings)
        egress = _rules(m.spec.egress, "to", origin, (*spec, "egress"), warnings)
    else:  # pragma: no cover - parse_manifest only gives these kinds here
        raise AssertionError(obj.kind)
    return AdminPolicy(
        obj.kind, obj.name, tier, priority, subject, ingress, egress, origin.loc(())
    )


def _sel(spec: LabelSelectorSpec, origin: Origin, path: Path) -> LabelSelector:
    return selector(spec, origin, path)


def _subject(
    s: a.SubjectSpec | a.CNPSubjectSpec, origin: Origin, path: Path
) -> AdminPeer:
    field = _one_of(origin, path, {"namespaces": s.namespaces, "pods": s.pods})
    if field == "namespaces":
        assert s.namespaces is not None
        return AdminPeer(namespace_selector=_sel(s.namespaces, origin, (*path, field)))
    assert s.pods is not None
    return _pods(s.pods, origin, (*path, field))


def _pods(
    p: a.NamespacedPodSpec | a.NamespacedPodV2, origin: Origin, path: Path
) -> AdminPeer:
    return AdminPeer(
        namespace_selector=_sel(
            p.namespace_selector, origin, (*path, "namespaceSelector")
        ),
        pod_selector=_sel(p.pod_selector, origin, (*path, "podSelector")),
    )


PeerSpec = (
    a.IngressPeerSpec
    | a.BaselineEgressPeerSpec
    | a.EgressPeerSpec
    | a.CNPIngressPeerSpec
    | a.CNPEgressPeerSpec
)


def _peer(p: PeerSpec, origin: Origin, path: Path) -> AdminPeer:
    given: dict[str, object] = {"namespaces": p.namespaces, "pods": p.pods}
    if isinstance(p, a.BaselineEgressPeerSpec | a.CNPEgressPeerSpec):
        given |= {"nodes": p.nodes, "networks": p.networks}
    if isinstance(p, a.EgressPeerSpec | a.CNPEgressPeerSpec):
        given["domainNames"] = p.domain_names
    field = _one_of(origin, path, given)
    where = (*path, field)
    if field == "namespaces":
        assert p.namespaces is not None
        return AdminPeer(namespace_selector=_sel(p.namespaces, origin, where))
    if field == "pods":
        assert p.pods is not None
        return _pods(p.pods, origin, where)
    assert isinstance(p, a.BaselineEgressPeerSpec | a.CNPEgressPeerSpec)
    if field == "nodes":
        assert p.nodes is not None
        return AdminPeer(node_selector=_sel(p.nodes, origin, where))
    if field == "networks":
        assert p.networks is not None
        return AdminPeer(networks=_networks(p.networks, origin, where))
    assert isinstance(p, a.EgressPeerSpec | a.CNPEgressPeerSpec)
    assert p.domain_names is not None
    for i, name in enumerate(p.domain_names):
        if not DOMAIN_PATTERN.match(name):
            raise origin.error(
                (*where, i),
                f"{name!r} is not a domain name (an exact name, or *. and a name)",
            )
    return AdminPeer(domain_names=tuple(p.domain_names))


def _networks(
    texts: Sequence[str], origin: Origin, path: Path
) -> tuple[IPv4Network | IPv6Network, ...]:
    """The CIDRs of a `networks` peer, IPv4 or IPv6 (the CRD's `CIDR`: "10.0.0.0/8" or
    "fd00::/8").  An IPv6 one is kept: it matches nothing in this IPv4-only cluster, and
    `dataplane lint` says so (upstream's own manifests write `::/0` beside `0.0.0.0/0`)."""
    out: list[IPv4Network | IPv6Network] = []
    for i, text in enumerate(texts):
        net: IPv4Network | IPv6Network | None = None
        if "/" in text:
            net = parse_loose_cidr(text) or parse_loose_cidr6(text)
        if net is None:
            raise origin.error(
                (*path, i),
                f"{text!r}: Invalid CIDR format provided (an IPv4 or IPv6 CIDR such "
                "as 10.0.0.0/8 or fd00::/8)",
            )
        out.append(net)
    return tuple(out)


def _check_named(
    peers: tuple[AdminPeer, ...],
    ports: tuple[PolicyPort, ...],
    origin: Origin,
    path: Path,
    key: str,
) -> None:
    """The CEL rule of egress rules: no named port with a networks/nodes/domainNames peer."""
    if any(isinstance(p.port, str) for p in ports) and any(
        p.networks or p.node_selector is not None or p.domain_names for p in peers
    ):
        raise origin.error(
            (*path, key),
            "networks/nodes/domainNames peer cannot be set with namedPorts since "
            "there are no namedPorts for networks/nodes/domainNames",
        )


def _named(name: str) -> tuple[PolicyPort, ...]:
    """A named port, whatever its protocol (see `AdminRule`)."""
    return tuple(PolicyPort(proto, name) for proto in NAMED_PROTOCOLS)


def _range(start: int, end: int, origin: Origin, path: Path) -> None:
    if not start < end:
        raise origin.error(
            path, f"Start port must be less than End port (start {start}, end {end})"
        )


def _anp_ports(
    ports: Sequence[a.AdminPortSpec], origin: Origin, path: Path
) -> tuple[PolicyPort, ...]:
    out: list[PolicyPort] = []
    for i, p in enumerate(ports):
        where = (*path, i)
        given = {
            "portNumber": p.port_number,
            "namedPort": p.named_port,
            "portRange": p.port_range,
        }
        field = _one_of(origin, where, given)
        if p.port_number is not None:
            out.append(PolicyPort(Protocol(p.port_number.protocol), p.port_number.port))
        elif p.named_port is not None:
            out.extend(_named(p.named_port))
        else:
            r = p.port_range
            assert r is not None
            _range(r.start, r.end, origin, (*where, field))
            out.append(PolicyPort(Protocol(r.protocol), r.start, r.end))
    return tuple(out)


def _cnp_ports(
    protocols: Sequence[a.CNPProtocolSpec], origin: Origin, path: Path
) -> tuple[PolicyPort, ...]:
    out: list[PolicyPort] = []
    for i, p in enumerate(protocols):
        where = (*path, i)
        given = {
            "tcp": p.tcp,
            "udp": p.udp,
            "sctp": p.sctp,
            "destinationNamedPort": p.destination_named_port,
        }
        field = _one_of(origin, where, given)
        if p.destination_named_port is not None:
            out.extend(_named(p.destination_named_port))
            continue
        spec = given[field]
        assert isinstance(spec, a.CNPProtocolPortSpec)
        proto = Protocol(field.upper())
        if spec.destination_port is None:  # MinProperties=1 on the protocol's struct
            raise origin.error(
                (*where, field), "missing required key 'destinationPort'"
            )
        dp = spec.destination_port
        dwhere = (*where, field, "destinationPort")
        _one_of(origin, dwhere, {"number": dp.number, "range": dp.range})
        if dp.number is not None:
            out.append(PolicyPort(proto, dp.number))
        else:
            assert dp.range is not None
            _range(dp.range.start, dp.range.end, origin, (*dwhere, "range"))
            out.append(PolicyPort(proto, dp.range.start, dp.range.end))
    return tuple(out)


RuleSpec = (
    a.ANPIngressRuleSpec
    | a.ANPEgressRuleSpec
    | a.BANPIngressRuleSpec
    | a.BANPEgressRuleSpec
    | a.CNPIngressRuleSpec
    | a.CNPEgressRuleSpec
)
_EGRESS_RULES = (a.ANPEgressRuleSpec, a.BANPEgressRuleSpec, a.CNPEgressRuleSpec)


def _rules(
    rules: Sequence[RuleSpec] | None,
    key: str,
    origin: Origin,
    path: Path,
    warnings: list[str],
) -> tuple[AdminRule, ...]:
    """The rules of one direction (`key`: `from` or `to`), in their written order."""
    out = []
    for i, r in enumerate(rules or ()):
        where = (*path, i)
        specs: Sequence[PeerSpec] = r.to if isinstance(r, _EGRESS_RULES) else r.from_
        peers = tuple(_peer(p, origin, (*where, key, j)) for j, p in enumerate(specs))
        if isinstance(r, a.CNPIngressRuleSpec | a.CNPEgressRuleSpec):
            ports = _cnp_ports(r.protocols or (), origin, (*where, "protocols"))
        else:
            ports = _anp_ports(r.ports or (), origin, (*where, "ports"))
        _check_named(peers, ports, origin, where, key)
        out.append(AdminRule(_ACTIONS[r.action], peers, ports, r.name))
    return tuple(out)
