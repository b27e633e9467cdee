"""Every Kubernetes default and quirk in one place: validated manifests -> model drafts.

What the API server defaults is defaulted here (a port's protocol is TCP, a Service's type is
ClusterIP and its targetPort its port, a NetworkPolicy's policyTypes), what it rejects is an
error naming the field, and what it accepts with a warning is accepted with a warning (an
ipBlock CIDR with host bits set).  Nothing here depends on the cluster: scheduling, addresses
and references to other objects are `topology.change`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from topology import kubeschema as k
from topology import names
from topology.adminschema import AdminModel
from topology.fields import cidr_reason, parse_loose_cidr
from topology.manifest import KubeObject, Origin
from topology.model import (
    Container,
    ContainerPort,
    EndpointSlice,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Protocol,
    Requirement,
    SelectorOp,
    Service,
    ServiceType,
    SliceEndpoint,
    SlicePort,
)
from topology.selectors import format_selector, is_empty, matches
from topology.servicespec import (
    affinity_timeout,
    cluster_ip_text,
    external_ips,
    load_balancer_ingress,
    service_ports,
    source_ranges,
)
from topology.yamlsource import PathPart, format_path

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
Path = tuple[PathPart, ...]


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """What a pod is made of, before it is scheduled and addressed."""

    labels: Mapping[str, str]
    containers: tuple[Container, ...]
    host_network: bool = False
    node_name: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkloadDraft:
    selector: LabelSelector
    template: PodTemplate
    replicas: int | None  # None: one pod per eligible node (a DaemonSet)
    ordinal_start: int = 0


@dataclass(frozen=True, slots=True)
class ServiceDraft:
    """A Service before allocation: `service.cluster_ip` is None until IPAM fills it."""

    service: Service
    headless: bool
    requested_ip: IPv4Address | None


Draft = (
    Namespace
    | PodTemplate
    | WorkloadDraft
    | ServiceDraft
    | NetworkPolicy
    | EndpointSlice
)
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def draft(obj: KubeObject, warnings: list[str]) -> Draft:
    """The normalized form of a validated object (warnings are appended to `warnings`)."""
    m = obj.model
    if isinstance(m, k.NamespaceObject):
        return namespace(obj, warnings)
    if isinstance(m, k.PodObject):
        return pod_template(m.spec, m.metadata.labels, obj.origin, ("spec",), warnings)
    if isinstance(m, k.ServiceObject):
        return service(obj, m)
    if isinstance(m, k.NetworkPolicyObject):
        return network_policy(obj, m, warnings)
    if isinstance(m, k.EndpointSliceObject):
        return endpoint_slice(obj, m)
    assert not isinstance(m, AdminModel)  # topology.adminpolicy's (see the applier)
    return workload(obj, m, warnings)


def namespace(obj: KubeObject, warnings: list[str]) -> Namespace:
    """A Namespace; the `kubernetes.io/metadata.name` label always equals its name."""
    labels = dict(obj.model.metadata.labels)
    written = labels.get(NAMESPACE_NAME_LABEL)
    if written is not None and written != obj.name:
        warnings.append(
            obj.origin.warning(
                ("metadata", "labels", NAMESPACE_NAME_LABEL),
                f"{NAMESPACE_NAME_LABEL} is set by Kubernetes to {obj.name!r}"
                f" ({written!r} ignored)",
            )
        )
    labels[NAMESPACE_NAME_LABEL] = obj.name
    return Namespace(obj.name, labels, obj.origin.loc(()))


def selector(model: k.LabelSelectorSpec, origin: Origin, path: Path) -> LabelSelector:
    """A LabelSelector; `values` is required for In/NotIn and forbidden for (DoesNot)Exists."""
    reqs = []
    for index, expr in enumerate(model.match_expressions):
        op = SelectorOp(expr.operator)
        values = tuple(expr.values or ())
        where = (*path, "matchExpressions", index, "values")
        if op in (SelectorOp.IN, SelectorOp.NOT_IN) and not values:
            raise origin.error(where, f"values must be non-empty for operator {op}")
        if op in (SelectorOp.EXISTS, SelectorOp.DOES_NOT_EXIST) and values:
            raise origin.error(where, f"values must be empty for operator {op}")
        reqs.append(Requirement(expr.key, op, values))
    return LabelSelector(dict(model.match_labels), tuple(reqs))


def _host_port(
    p: k.ContainerPortSpec, host_network: bool, origin: Origin, path: Path
) -> tuple[int | None, IPv4Address | None]:
    """A containerPort's `hostPort` and `hostIP` as the API server validates them
    (ValidateContainerPorts; a hostNetwork pod's hostPort must equal its containerPort,
    and it is then the node's own socket: no portmap rule)."""
    host_port = p.host_port or None  # 0: unset
    host_ip: IPv4Address | None = None
    if p.host_ip not in (None, ""):
        try:
            host_ip = IPv4Address(str(p.host_ip))
        except ValueError:
            raise origin.error(
                (*path, "hostIP"),
                f"expected an IPv4 address like 10.100.0.2, got {p.host_ip!r}",
            ) from None
        if host_ip == IPv4Address("0.0.0.0"):
            host_ip = None  # every address, as if not given
    if host_network:
        if host_port is not None and host_port != p.container_port:
            raise origin.error(
                (*path, "hostPort"),
                f"{host_port}: must match containerPort {p.container_port} when"
                " hostNetwork is true",
            )
        return None, None
    return host_port, host_ip if host_port is not None else None


def pod_template(
    spec: k.PodSpec,
    labels: Mapping[str, str],
    origin: Origin,
    path: Path,
    warnings: list[str],
) -> PodTemplate:
    """Containers and their ports (protocol TCP by default), host network, placement."""
    containers: list[Container] = []
    seen_ports: dict[tuple[int, Protocol], Path] = {}
    container_names: set[str] = set()
    for ci, c in enumerate(spec.containers):
        cpath = (*path, "containers", ci)
        if c.name in container_names:
            raise origin.error((*cpath, "name"), f"duplicate container name {c.name!r}")
        container_names.add(c.name)
        ports: list[ContainerPort] = []
        port_names: set[str] = set()
        for pi, p in enumerate(c.ports):
            ppath = (*cpath, "ports", pi)
            if p.name is not None:
                if p.name in port_names:
                    raise origin.error(
                        (*ppath, "name"), f"duplicate port name {p.name!r}"
                    )
                port_names.add(p.name)
            proto = Protocol(p.protocol or "TCP")
            earlier = seen_ports.get((p.container_port, proto))
            if earlier is not None:
                warnings.append(
                    origin.warning(
                        ppath,
                        f"duplicate port definition {p.container_port}/{proto}"
                        f" (also at {format_path(earlier)})",
                    )
                )
            seen_ports.setdefault((p.container_port, proto), ppath)
            host_port, host_ip = _host_port(p, spec.host_network, origin, ppath)
            ports.append(
                ContainerPort(p.container_port, proto, p.name, host_port, host_ip)
            )
        containers.append(Container(c.name, tuple(ports)))
    if spec.node_name is not None:
        reason = names.dns1123_subdomain(spec.node_name)
        if reason is not None:
            raise origin.error((*path, "nodeName"), reason)
    return PodTemplate(
        dict(labels),
        tuple(containers),
        spec.host_network,
        spec.node_name,
        dict(spec.node_selector),
    )


def workload(obj: KubeObject, m: k.WorkloadModel, warnings: list[str]) -> WorkloadDraft:
    """A workload's selector (non-empty, matching its template) and pod template."""
    origin = obj.origin
    spec = m.spec
    sel = selector(spec.selector, origin, ("spec", "selector"))
    if is_empty(sel):
        raise origin.error(
            ("spec", "selector"), f"empty selector is invalid for a {obj.kind}"
        )
    labels = spec.template.metadata.labels
    if not matches(sel, labels):
        shown = ",".join(f"{k}={v}" for k, v in labels.items()) or "none"
        raise origin.error(
            ("spec", "template", "metadata", "labels"),
            f"selector does not match template labels (selector: {format_selector(sel)};"
            f" labels: {shown})",
        )
    template = pod_template(
        spec.template.spec, labels, origin, ("spec", "template", "spec"), warnings
    )
    if isinstance(spec, k.DaemonSetSpec):
        return WorkloadDraft(sel, template, None)
    start = 0
    if isinstance(spec, k.StatefulSetSpec) and spec.ordinals is not None:
        start = spec.ordinals.start
    return WorkloadDraft(sel, template, spec.replicas, start)


def service(obj: KubeObject, m: k.ServiceObject) -> ServiceDraft:
    """A Service with ClusterIP/NodePort/LoadBalancer defaults applied."""
    origin, spec = obj.origin, m.spec
    stype = ServiceType(spec.type or "ClusterIP")
    ip_text, ip_path = cluster_ip_text(spec, origin)
    headless = ip_text == "None"
    requested = None
    if ip_text not in (None, "", "None"):
        try:
            requested = IPv4Address(ip_text)
        except ValueError:
            raise origin.error(
                ip_path,
                f"{ip_text!r} is not a valid clusterIP (allowed: an IPv4 address inside"
                " serviceCIDR, 'None' for a headless Service, '' to allocate one)",
            ) from None
    if headless and stype is not ServiceType.CLUSTER_IP:
        raise origin.error(
            ("spec", "type"), f"a headless Service (clusterIP: None) may not be {stype}"
        )
    if not spec.ports and not headless:
        raise origin.error(
            ("spec", "ports"),
            "at least one port is required (only a headless Service may have none)",
        )
    ports = service_ports(spec, stype, origin)
    if spec.external_traffic_policy is not None and stype is ServiceType.CLUSTER_IP:
        raise origin.error(
            ("spec", "externalTrafficPolicy"),
            "may only be set when type is NodePort or LoadBalancer",
        )
    ingress = load_balancer_ingress(m, stype, origin)
    svc = Service(
        namespace=obj.namespace,
        name=obj.name,
        type=stype,
        cluster_ip=None,
        ports=ports,
        selector=dict(spec.selector) if spec.selector else None,
        external_traffic_policy=spec.external_traffic_policy or "Cluster",
        internal_traffic_policy=spec.internal_traffic_policy or "Cluster",
        session_affinity=spec.session_affinity or "None",
        session_affinity_timeout=affinity_timeout(spec, origin),
        publish_not_ready_addresses=bool(spec.publish_not_ready_addresses),
        traffic_distribution=spec.traffic_distribution,
        load_balancer_ingress=ingress,
        load_balancer_source_ranges=source_ranges(spec, stype, origin),
        external_ips=external_ips(spec, origin),
        loc=origin.loc(()),
    )
    return ServiceDraft(svc, headless, requested)


def network_policy(
    obj: KubeObject, m: k.NetworkPolicyObject, warnings: list[str]
) -> NetworkPolicy:
    """A NetworkPolicy with policyTypes, protocols and ipBlocks normalized."""
    spec, origin = m.spec, obj.origin
    pod_selector = selector(spec.pod_selector, origin, ("spec", "podSelector"))
    ingress = tuple(
        _rule(r.from_, r.ports, ("spec", "ingress", i), "from", origin, warnings)
        for i, r in enumerate(spec.ingress or ())
    )
    egress = tuple(
        _rule(r.to, r.ports, ("spec", "egress", i), "to", origin, warnings)
        for i, r in enumerate(spec.egress or ())
    )
    if spec.policy_types and len(spec.policy_types) > 2:
        # ValidateNetworkPolicySpec: field.TooMany(policyTypes, 2).
        raise origin.error(
            ("spec", "policyTypes"),
            f"may not specify more than two policyTypes (got {len(spec.policy_types)}; "
            "allowed: Ingress, Egress)",
        )
    if spec.policy_types:
        types = tuple(t for t in ("Ingress", "Egress") if t in spec.policy_types)
    else:
        # SetDefaults_NetworkPolicySpec: Ingress always, Egress when there are egress rules.
        types = ("Ingress", "Egress") if spec.egress else ("Ingress",)
    return NetworkPolicy(
        obj.namespace, obj.name, pod_selector, types, ingress, egress, origin.loc(())
    )


def _rule(
    peers: list[k.PeerSpec] | None,
    ports: list[k.PolicyPortSpec] | None,
    path: Path,
    peer_key: str,
    origin: Origin,
    warnings: list[str],
) -> PolicyRule:
    return PolicyRule(
        tuple(
            _peer(p, (*path, peer_key, i), origin, warnings)
            for i, p in enumerate(peers or ())
        ),
        tuple(_port(p, (*path, "ports", i), origin) for i, p in enumerate(ports or ())),
    )


def _peer(p: k.PeerSpec, path: Path, origin: Origin, warnings: list[str]) -> PolicyPeer:
    if p.ip_block is not None:
        if p.pod_selector is not None or p.namespace_selector is not None:
            raise origin.error(path, "may not specify both ipBlock and another peer")
        return PolicyPeer(
            ip_block=_ip_block(p.ip_block, (*path, "ipBlock"), origin, warnings)
        )
    if p.pod_selector is None and p.namespace_selector is None:
        raise origin.error(
            path,
            "must specify a peer (allowed: podSelector, namespaceSelector, ipBlock)",
        )
    pods = (
        None
        if p.pod_selector is None
        else selector(p.pod_selector, origin, (*path, "podSelector"))
    )
    namespaces = (
        None
        if p.namespace_selector is None
        else selector(p.namespace_selector, origin, (*path, "namespaceSelector"))
    )
    return PolicyPeer(pod_selector=pods, namespace_selector=namespaces)


def _ip_block(
    block: k.IPBlockSpec, path: Path, origin: Origin, warnings: list[str]
) -> IPBlock:
    cidr = _policy_cidr(block.cidr, (*path, "cidr"), origin, warnings)
    excepts = []
    for index, text in enumerate(block.except_):
        where = (*path, "except", index)
        sub = _policy_cidr(text, where, origin, warnings)
        if not sub.subnet_of(cidr) or sub == cidr:
            raise origin.error(where, f"{text} must be a strict subset of cidr {cidr}")
        excepts.append(sub)
    return IPBlock(cidr, tuple(excepts))


def _policy_cidr(
    text: str, path: Path, origin: Origin, warnings: list[str]
) -> IPv4Network:
    if _is_ipv6(text):
        raise origin.error(
            path, f"{text!r}: IPv6 is not supported (this cluster is IPv4-only)"
        )
    cidr = parse_loose_cidr(text)
    if cidr is None:
        raise origin.error(path, cidr_reason(text))
    if str(cidr) != text and cidr.network_address != IPv4Address(text.split("/")[0]):
        # The API server accepts this with a warning; the block is the masked network.
        warnings.append(
            origin.warning(path, f"{text} has host bits set; it means {cidr}")
        )
    return cidr


def _is_ipv6(text: str) -> bool:
    try:
        IPv6Network(text, strict=False)
    except ValueError:
        return False
    return True


def _port(p: k.PolicyPortSpec, path: Path, origin: Origin) -> PolicyPort:
    if p.end_port is not None:
        where = (*path, "endPort")
        if p.port is None:
            raise origin.error(where, "may not be given without port")
        if isinstance(p.port, str):
            raise origin.error(
                where, f"may not be given with a named port ({p.port!r})"
            )
        if p.end_port < p.port:
            raise origin.error(
                where, f"{p.end_port} is below port {p.port} (allowed: >= port)"
            )
    return PolicyPort(Protocol(p.protocol or "TCP"), p.port, p.end_port)


def endpoint_slice(obj: KubeObject, m: k.EndpointSliceObject) -> EndpointSlice:
    """An EndpointSlice as kube-proxy reads it (pkg/proxy/endpointslicecache.go): the
    Service it belongs to is its `kubernetes.io/service-name` label (required here: kube-proxy
    would ignore a slice without it); an endpoint's first address is used; `ready` unset is
    true, `serving` unset is `ready`, `terminating` unset is false; `zone` and the
    `hints` (forZones, forNodes) as written."""
    origin = obj.origin
    service = m.metadata.labels.get(SERVICE_NAME_LABEL)
    if not service:
        raise origin.error(
            ("metadata", "labels"),
            f"missing label {SERVICE_NAME_LABEL} (the Service this slice belongs to;"
            " kube-proxy ignores a slice without it)",
        )
    endpoints = []
    for e in m.endpoints:
        c = e.conditions
        ready = c.ready is None or c.ready
        serving = ready if c.serving is None else c.serving
        hints = e.hints
        endpoints.append(
            SliceEndpoint(
                e.addresses[0],
                ready,
                serving,
                bool(c.terminating),
                e.node_name,
                e.zone,
                None if hints is None else tuple(z.name for z in hints.for_zones),
                None if hints is None else tuple(n.name for n in hints.for_nodes),
            )
        )
    ports = []
    seen: set[tuple[str, Protocol]] = set()
    for index, p in enumerate(m.ports):
        proto = Protocol(p.protocol or "TCP")
        name = p.name or ""
        if (name, proto) in seen:
            raise origin.error(
                ("ports", index, "name"), f"duplicate port name {name!r} ({proto})"
            )
        seen.add((name, proto))
        ports.append(SlicePort(name, p.port, proto))
    return EndpointSlice(
        obj.namespace, obj.name, service, tuple(endpoints), tuple(ports), origin.loc(())
    )
