"""The cluster model: frozen records of what a scenario describes, and nothing about packets.

`topology.loader` builds these from YAML; `dataplane` reads them.  Every record that came from
a file carries its `Loc` so that a later error can still name the file and the line.  Mappings
inside frozen records are never mutated after construction; a change to the cluster (an
`apply`, `delete` or `label` step) produces a new `Cluster` (see `topology.change`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import TYPE_CHECKING

# The CNIs and their network modes live in `topology.cni_modes`; re-exported here.
from topology.cni_modes import CNI_NETWORKS as CNI_NETWORKS
from topology.cni_modes import MODELLED_CNIS as MODELLED_CNIS
from topology.cni_modes import PLANNED_NETWORKS as PLANNED_NETWORKS
from topology.cni_modes import CalicoMode as CalicoMode
from topology.cni_modes import CiliumMode as CiliumMode
from topology.cni_modes import Cni as Cni
from topology.cni_modes import Network as Network
from topology.cni_modes import NetworkMode as NetworkMode
from topology.runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover (the Docker model: topology.docker)
    from topology.docker import DockerRuntime
    from topology.dockeruser import UserRule


@dataclass(frozen=True, slots=True)
class Loc:
    """Where an object or a value was written: file and 1-based line (0 when unknown)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


BUILTIN = Loc("<built-in>")


# Header bytes an encapsulation adds before the inner IP packet (by mode name): VXLAN's and
# Geneve's (no options) outer Ethernet 14 + IP 20 + UDP 8 + 8, IP-in-IP's outer IP 20 (RFC
# 2003).  Pod MTU = underlay MTU - overhead (Calico's veth_mtu, flannel's subnet.env).
ENCAP_OVERHEAD: Mapping[str, int] = {"vxlan": 50, "ipip": 20, "geneve": 50}


class Protocol(StrEnum):
    """Transport protocols of Kubernetes ports (`ICMP` only for probes)."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"
    ICMP = "ICMP"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node: its underlay address, the pod CIDR its bridge serves (Calico: its block)."""

    name: str
    ip: IPv4Address
    pod_cidr: IPv4Network
    labels: Mapping[str, str] = field(default_factory=dict)
    loc: Loc = BUILTIN
    # runtime docker: the host's DOCKER-USER chain (`topology.dockeruser`)
    docker_user: tuple[UserRule, ...] = ()

    @property
    def bridge_ip(self) -> IPv4Address:
        """The first host of the pod CIDR: the bridge's address and the pods' gateway."""
        return self.pod_cidr.network_address + 1


@dataclass(frozen=True, slots=True)
class PortSpec:
    """A listening port of an external host."""

    port: int
    protocol: Protocol = Protocol.TCP


@dataclass(frozen=True, slots=True)
class External:
    """A host outside the cluster, behind the underlay gateway."""

    name: str
    ip: IPv4Address
    ports: tuple[PortSpec, ...] = ()
    loc: Loc = BUILTIN


_DEFAULT_IP_POOL = IPv4Network("192.168.0.0/16")


@dataclass(frozen=True, slots=True)
class CalicoConfig:
    """`cluster.calico`: the IP pool Calico's IPAM splits into one block per node."""

    ip_pool: IPv4Network = _DEFAULT_IP_POOL  # CALICO_IPV4POOL_CIDR
    block_size: int = 26  # CALICO_IPV4POOL_BLOCK_SIZE


class ProxyMode(StrEnum):
    """kube-proxy's `mode` (KubeProxyConfiguration)."""

    IPTABLES = "iptables"
    NFTABLES = "nftables"
    IPVS = "ipvs"


NODE_PORT_PRIMARY = "primary"
# The IPVS schedulers modelled (`cluster.kubeProxy.ipvs.scheduler`, dataplane.kubeproxy_ipvs)
IPVS_SCHEDULERS = ("rr", "wrr")


@dataclass(frozen=True, slots=True)
class KubeProxyConfig:
    """KubeProxyConfiguration's dataplane fields, defaults in: `node_port_addresses` ()
    every local address, ("primary",) the node's own, else CIDRs (`masquerade_all`: the
    option of the mode in use)."""

    mode: ProxyMode = ProxyMode.IPTABLES
    node_port_addresses: tuple[str, ...] = ()
    masquerade_all: bool = False
    localhost_node_ports: bool = True
    ipvs_scheduler: str = "rr"


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    """A route of `cluster.gatewayRoutes`: `cidr` via the address of node `node`."""

    cidr: IPv4Network
    node: str
    loc: Loc = BUILTIN


_DEFAULT_NODE_CIDR = IPv4Network("10.100.0.0/24")
_DEFAULT_GATEWAY = IPv4Address("10.100.0.1")
_DEFAULT_SERVICE_CIDR = IPv4Network("10.96.0.0/12")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The `cluster` section of a scenario, every default filled in."""

    network: Network = NetworkMode.VXLAN
    cni: Cni = Cni.FLANNEL
    runtime: Runtime = Runtime.KUBERNETES
    calico: CalicoConfig | None = None  # set when cni is calico
    vxlan_port: int = 8472
    bridge: str = "cbr0"
    mtu: int = 1500
    node_cidr: IPv4Network = _DEFAULT_NODE_CIDR
    gateway: IPv4Address = _DEFAULT_GATEWAY
    service_cidr: IPv4Network = _DEFAULT_SERVICE_CIDR
    cluster_domain: str = "cluster.local"
    dns: bool = True
    nodes: tuple[NodeSpec, ...] = ()
    externals: tuple[External, ...] = ()
    kube_proxy: KubeProxyConfig = KubeProxyConfig()
    gateway_routes: tuple[GatewayRoute, ...] = ()

    @property
    def pod_mtu(self) -> int:
        """Pod and bridge MTU: the underlay's minus the encapsulation's headers."""
        return self.mtu - ENCAP_OVERHEAD.get(self.network, 0)


@dataclass(frozen=True, slots=True)
class Namespace:
    """A Kubernetes namespace; `labels` include `kubernetes.io/metadata.name`."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    loc: Loc = BUILTIN


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """A listening socket in the pod's namespace; `hostPort`: see dataplane.portmap."""

    port: int
    protocol: Protocol = Protocol.TCP
    name: str | None = None
    host_port: int | None = None  # never on a hostNetwork pod
    host_ip: IPv4Address | None = None  # the hostPort's address; None: every one


@dataclass(frozen=True, slots=True)
class Container:
    """One container of a pod; all containers share the pod's network namespace."""

    name: str
    ports: tuple[ContainerPort, ...] = ()


@dataclass(frozen=True, slots=True)
class Pod:
    """A scheduled pod with its address (the node's address when `host_network`)."""

    namespace: str
    name: str
    node: str
    ip: IPv4Address
    labels: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[Container, ...] = ()
    host_network: bool = False
    ready: bool = True  # its `Ready` condition (status.conditions); none written: ready
    terminating: bool = False  # metadata.deletionTimestamp is set
    owner: str | None = None  # "Deployment/httpd" for workload pods
    loc: Loc = BUILTIN

    @property
    def key(self) -> str:
        """`NS/NAME`, the form endpoints and traces use."""
        return f"{self.namespace}/{self.name}"

    def ports(self) -> tuple[ContainerPort, ...]:
        """Every containerPort of every container, in order."""
        return tuple(p for c in self.containers for p in c.ports)

    def container_of(self, port: int, protocol: Protocol) -> str | None:
        """The container listening on `port`/`protocol`, or None."""
        for c in self.containers:
            for p in c.ports:
                if p.port == port and p.protocol is protocol:
                    return c.name
        return None

    def named_port(self, name: str, protocol: Protocol | None = None) -> int | None:
        """Resolve a named containerPort (optionally of one protocol) to its number."""
        for p in self.ports():
            if p.name == name and (protocol is None or p.protocol is protocol):
                return p.port
        return None


class SelectorOp(StrEnum):
    """`matchExpressions` operators of a label selector."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One `matchExpressions` item."""

    key: str
    operator: SelectorOp
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A label selector; the empty selector matches everything."""

    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[Requirement, ...] = ()


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of a Service; `target_port` is a number or a containerPort name."""

    port: int
    target_port: int | str
    protocol: Protocol = Protocol.TCP
    name: str | None = None
    node_port: int | None = None


@dataclass(frozen=True, slots=True)
class LoadBalancerIngress:
    """One `status.loadBalancer.ingress` address; `ip_mode` VIP or Proxy (KEP-1860)."""

    ip: IPv4Address
    ip_mode: str = "VIP"


class ServiceType(StrEnum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


@dataclass(frozen=True, slots=True)
class Service:
    """A Service; `cluster_ip` is None for a headless Service (`clusterIP: None`)."""

    namespace: str
    name: str
    type: ServiceType
    cluster_ip: IPv4Address | None
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str] | None = None
    external_traffic_policy: str = "Cluster"  # Cluster | Local
    internal_traffic_policy: str = "Cluster"  # Cluster | Local
    session_affinity: str = "None"  # None | ClientIP
    session_affinity_timeout: int = 10800  # sessionAffinityConfig...timeoutSeconds
    publish_not_ready_addresses: bool = False
    traffic_distribution: str | None = None  # PreferClose, PreferSame{Zone,Node}
    load_balancer_ingress: tuple[LoadBalancerIngress, ...] = ()
    load_balancer_source_ranges: tuple[IPv4Network, ...] = ()
    external_ips: tuple[IPv4Address, ...] = ()
    loc: Loc = BUILTIN

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def load_balancer_ip(self) -> IPv4Address | None:
        """The first LoadBalancer address, or None."""
        ingress = self.load_balancer_ingress
        return ingress[0].ip if ingress else None

    def load_balancer_vips(self) -> tuple[IPv4Address, ...]:
        """The ingress addresses kube-proxy captures: those of ipMode VIP
        (`LoadBalancerVIPs()`, pkg/proxy/serviceport.go)."""
        return tuple(i.ip for i in self.load_balancer_ingress if i.ip_mode == "VIP")


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    """An EndpointSlice endpoint as kube-proxy reads it (endpointslicecache.go)."""

    ip: IPv4Address
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node: str | None = None
    zone: str | None = None
    for_zones: tuple[str, ...] | None = None  # hints.forZones (None: no hints)
    for_nodes: tuple[str, ...] | None = None  # hints.forNodes


@dataclass(frozen=True, slots=True)
class SlicePort:
    """One port of an EndpointSlice: `name` is the Service port's ('' unnamed)."""

    name: str
    port: int
    protocol: Protocol = Protocol.TCP


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    """An EndpointSlice of Service `service` (its kubernetes.io/service-name label)."""

    namespace: str
    name: str
    service: str
    endpoints: tuple[SliceEndpoint, ...] = ()
    ports: tuple[SlicePort, ...] = ()
    loc: Loc = BUILTIN

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class IPBlock:
    """`ipBlock`: `cidr` minus every `except` range."""

    cidr: IPv4Network
    except_: tuple[IPv4Network, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyPeer:
    """One `from`/`to` item; `pod_selector` and `namespace_selector` together are an AND."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class PolicyPort:
    """One `ports` item; `port` None means every port of the protocol."""

    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """An ingress or egress rule; `peers`/`ports` empty means all (absent or `[]`)."""

    peers: tuple[PolicyPeer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """A networking.k8s.io/v1 NetworkPolicy, defaults applied (`policy_types` always set)."""

    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: tuple[str, ...]  # subset of ("Ingress", "Egress")
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()
    loc: Loc = BUILTIN

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class Tier(StrEnum):
    """The tiers of cluster-wide policy (network-policy-api `apis/v1alpha2`
    `ClusterNetworkPolicySpec.tier`): Admin before NetworkPolicy, Baseline after it."""

    ADMIN = "Admin"
    BASELINE = "Baseline"


class AdminAction(StrEnum):
    """What an admin-tier or baseline rule does with the traffic it matches
    (`AdminNetworkPolicyRuleAction`; ClusterNetworkPolicy's `Accept` is `ALLOW`)."""

    ALLOW = "Allow"
    DENY = "Deny"
    PASS = "Pass"


@dataclass(frozen=True, slots=True)
class AdminPeer:
    """One `subject`, `from` or `to` item of an admin policy; exactly one field is set.

    `namespaces: S` is `namespace_selector=S` (every pod there); `pods: {namespaceSelector,
    podSelector}` sets both (AND); `nodes` selects node addresses by node labels;
    `networks` are CIDRs (any address, pods' included; IPv6 ones match nothing here);
    `domain_names` match the addresses the DNS answers for them (`dataplane.dns_records`).
    """

    namespace_selector: LabelSelector | None = None
    pod_selector: LabelSelector | None = None
    node_selector: LabelSelector | None = None
    networks: tuple[IPv4Network | IPv6Network, ...] = ()
    domain_names: tuple[str, ...] = ()

    @property
    def by_address(self) -> bool:
        """A `networks` or `domainNames` peer: it matches addresses, pods' included."""
        return bool(self.networks or self.domain_names)

    @property
    def ipv4_networks(self) -> tuple[IPv4Network, ...]:
        """The IPv4 `networks`: the only ones an address of the cluster can be in."""
        return tuple(n for n in self.networks if isinstance(n, IPv4Network))


@dataclass(frozen=True, slots=True)
class AdminRule:
    """An ingress or egress rule of an admin policy: an action, its peers (at least one)
    and its ports (`ports` empty: every port and protocol).

    A `namedPort` (or CNP `destinationNamedPort`), which names a containerPort whatever its
    protocol, is held as one named `PolicyPort` per protocol (container port names are
    unique in a pod, so at most one of them can match)."""

    action: AdminAction
    peers: tuple[AdminPeer, ...]
    ports: tuple[PolicyPort, ...] = ()
    name: str = ""


ADMIN_KINDS = (
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
    "ClusterNetworkPolicy",
)


@dataclass(frozen=True, slots=True)
class AdminPolicy:
    """An AdminNetworkPolicy, BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1)
    or ClusterNetworkPolicy (v1alpha2): cluster-scoped, in a `tier`, with a `priority`
    (0-1000, lower first; a BaselineAdminNetworkPolicy has none) and a `subject`."""

    kind: str  # one of ADMIN_KINDS
    name: str
    tier: Tier
    priority: int | None
    subject: AdminPeer  # namespace_selector and maybe pod_selector
    ingress: tuple[AdminRule, ...] = ()
    egress: tuple[AdminRule, ...] = ()
    loc: Loc = BUILTIN

    @property
    def key(self) -> str:
        """`Kind/name`: the kinds are cluster-scoped and may share names."""
        return f"{self.kind}/{self.name}"

    @property
    def order(self) -> tuple[int, str, str]:
        """The evaluation order in its tier: priority (lower first), then name, then kind
        (upstream leaves equal priorities undefined; a BaselineAdminNetworkPolicy, which
        has no priority, comes after every Baseline ClusterNetworkPolicy)."""
        return (1001 if self.priority is None else self.priority, self.name, self.kind)

    @property
    def short(self) -> str:
        """How a trace names it: `ANP 'a' (priority 5)`, `BANP 'default'`."""
        if self.kind == "BaselineAdminNetworkPolicy":
            return f"BANP {self.name!r}"
        if self.kind == "AdminNetworkPolicy":
            return f"ANP {self.name!r} (priority {self.priority})"
        return f"CNP {self.name!r} ({self.tier.value} tier, priority {self.priority})"

    def action_word(self, action: AdminAction) -> str:
        """The action as this kind writes it (a ClusterNetworkPolicy says `Accept`)."""
        if self.kind == "ClusterNetworkPolicy" and action is AdminAction.ALLOW:
            return "Accept"
        return action.value


@dataclass(frozen=True, slots=True)
class Workload:
    """A Deployment, ReplicaSet, StatefulSet or DaemonSet (its pods live in `Cluster.pods`)."""

    kind: str
    namespace: str
    name: str
    replicas: int
    loc: Loc = BUILTIN
    selector: LabelSelector = field(
        default_factory=LabelSelector
    )  # immutable once created

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Cluster:
    """The cluster now: its config and objects by `NS/NAME` in creation order (IPAM and
    scheduling use it); `last_pod_ips`: flannel's host-local cursor per node (ipam)."""

    config: ClusterConfig
    namespaces: Mapping[str, Namespace]
    pods: Mapping[str, Pod]
    services: Mapping[str, Service] = field(default_factory=dict)
    policies: Mapping[str, NetworkPolicy] = field(default_factory=dict)
    workloads: Mapping[str, Workload] = field(default_factory=dict)
    endpoint_slices: Mapping[str, EndpointSlice] = field(default_factory=dict)
    admin_policies: Mapping[str, AdminPolicy] = field(default_factory=dict)  # by key
    docker: DockerRuntime | None = None  # runtime docker: topology.docker's model
    last_pod_ips: Mapping[str, IPv4Address] = field(default_factory=dict)

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return self.config.nodes

    def node(self, name: str) -> NodeSpec:
        for n in self.config.nodes:
            if n.name == name:
                return n
        raise KeyError(name)
