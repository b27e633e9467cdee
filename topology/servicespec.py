"""A Service's spec as the API server defaults and validates it: the ClusterIP text,
ports (protocol TCP, targetPort its port, nodePorts in range), the LoadBalancer ingress
addresses, `loadBalancerSourceRanges`, `externalIPs` and the session affinity timeout
(`topology.normalize.service` builds the Service from them)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from topology import kubeschema as k
from topology.fields import cidr_reason, parse_loose_cidr, special_range
from topology.ipam import NODE_PORT_RANGE
from topology.manifest import Origin
from topology.model import LoadBalancerIngress, Protocol, ServicePort, ServiceType
from topology.yamlsource import PathPart

Path = tuple[PathPart, ...]


MAX_AFFINITY_SECONDS = 86400  # core.MaxClientIPServiceAffinitySeconds
DEFAULT_AFFINITY_SECONDS = 10800  # core.DefaultClientIPServiceAffinitySeconds


def affinity_timeout(spec: k.ServiceSpec, origin: Origin) -> int:
    """`sessionAffinityConfig.clientIP.timeoutSeconds` as the API server defaults and
    validates it (pkg/apis/core/validation, validateClientIPAffinityConfig): 10800 when
    unset, 1-86400, and no config at all unless sessionAffinity is ClientIP."""
    config = spec.session_affinity_config
    if config is None:
        return DEFAULT_AFFINITY_SECONDS
    if spec.session_affinity != "ClientIP":
        raise origin.error(
            ("spec", "sessionAffinityConfig"),
            "must not be set when session affinity is None"
            " (allowed with sessionAffinity: ClientIP)",
        )
    client = config.client_ip
    if client is None or client.timeout_seconds is None:
        return DEFAULT_AFFINITY_SECONDS
    seconds = client.timeout_seconds
    if not 0 < seconds <= MAX_AFFINITY_SECONDS:
        raise origin.error(
            ("spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"),
            f"{seconds}: must be greater than 0 and at most {MAX_AFFINITY_SECONDS}",
        )
    return seconds


def load_balancer_ingress(
    m: k.ServiceObject, stype: ServiceType, origin: Origin
) -> tuple[LoadBalancerIngress, ...]:
    """Every `status.loadBalancer.ingress` address with its ipMode (VIP by default, as
    the API server defaults it, KEP-1860); `spec.loadBalancerIP` when the status has none."""
    if stype is not ServiceType.LOAD_BALANCER:
        return ()
    out: list[LoadBalancerIngress] = []
    for index, item in enumerate(m.status.load_balancer.ingress):
        if item.ip is None:
            if item.ip_mode is not None:
                # ValidateLoadBalancerStatus: "must be specified when `ip` is set"; an
                # ipMode without an ip is refused the same way.
                raise origin.error(
                    ("status", "loadBalancer", "ingress", index, "ipMode"),
                    "may not be set without ip",
                )
            continue
        out.append(LoadBalancerIngress(item.ip, item.ip_mode or "VIP"))
    if not out and m.spec.load_balancer_ip is not None:
        out.append(LoadBalancerIngress(m.spec.load_balancer_ip))
    return tuple(out)


def source_ranges(
    spec: k.ServiceSpec, stype: ServiceType, origin: Origin
) -> tuple[IPv4Network, ...]:
    """`loadBalancerSourceRanges` (ValidateService: LoadBalancer only, each a CIDR,
    space padding allowed "due to a historical accident")."""
    ranges = spec.load_balancer_source_ranges
    if not ranges:
        return ()
    if stype is not ServiceType.LOAD_BALANCER:
        raise origin.error(
            ("spec", "loadBalancerSourceRanges"),
            "may only be used when type is LoadBalancer",
        )
    out: list[IPv4Network] = []
    for index, text in enumerate(ranges):
        cidr = parse_loose_cidr(text.strip())
        if cidr is None:
            raise origin.error(
                ("spec", "loadBalancerSourceRanges", index), cidr_reason(text.strip())
            )
        out.append(cidr)
    return tuple(out)


def external_ips(spec: k.ServiceSpec, origin: Origin) -> tuple[IPv4Address, ...]:
    """`externalIPs`: unicast addresses (ValidateNonSpecialIP refuses loopback,
    link-local, multicast and 0.0.0.0), each once."""
    out: list[IPv4Address] = []
    for index, ip in enumerate(spec.external_ips or ()):
        where = ("spec", "externalIPs", index)
        what = special_range(IPv4Network(ip))
        if what is not None:
            raise origin.error(
                where, f"{ip} is in the {what} range (allowed: a unicast address)"
            )
        if ip in out:
            raise origin.error(where, f"duplicate external IP {ip}")
        out.append(ip)
    return tuple(out)


def cluster_ip_text(spec: k.ServiceSpec, origin: Origin) -> tuple[str | None, Path]:
    text = spec.cluster_ip
    path: Path = ("spec", "clusterIP")
    if spec.cluster_ips:
        if len(spec.cluster_ips) > 1:
            raise origin.error(
                ("spec", "clusterIPs"),
                "dual-stack Services are not supported (IPv4 only)",
            )
        if text not in (None, "") and text != spec.cluster_ips[0]:
            raise origin.error(("spec", "clusterIPs", 0), "must equal clusterIP")
        if text in (None, ""):
            text, path = spec.cluster_ips[0], ("spec", "clusterIPs", 0)
    return text, path


def service_ports(
    spec: k.ServiceSpec, stype: ServiceType, origin: Origin
) -> tuple[ServicePort, ...]:
    out: list[ServicePort] = []
    low, high = NODE_PORT_RANGE
    names_seen: set[str] = set()
    ports_seen: set[tuple[int, Protocol]] = set()
    node_ports_seen: set[tuple[int, Protocol]] = set()
    for index, p in enumerate(spec.ports):
        path = ("spec", "ports", index)
        if p.name is None and len(spec.ports) > 1:
            raise origin.error(
                path,
                "missing required key 'name' (every port of a multi-port Service needs one)",
            )
        if p.name is not None:
            if p.name in names_seen:
                raise origin.error((*path, "name"), f"duplicate port name {p.name!r}")
            names_seen.add(p.name)
        proto = Protocol(p.protocol or "TCP")
        if (p.port, proto) in ports_seen:
            raise origin.error((*path, "port"), f"duplicate port {p.port}/{proto}")
        ports_seen.add((p.port, proto))
        if p.node_port is not None:
            if (p.node_port, proto) in node_ports_seen:
                raise origin.error(
                    (*path, "nodePort"), f"duplicate nodePort {p.node_port}/{proto}"
                )
            node_ports_seen.add((p.node_port, proto))
            if stype is ServiceType.CLUSTER_IP:
                raise origin.error(
                    (*path, "nodePort"), "may not be used when type is ClusterIP"
                )
            if not low <= p.node_port <= high:
                raise origin.error(
                    (*path, "nodePort"),
                    f"{p.node_port} is out of range (allowed: {low}-{high})",
                )
        target = p.target_port if p.target_port is not None else p.port
        out.append(ServicePort(p.port, target, proto, p.name, p.node_port))
    return tuple(out)
