"""The fabric: every namespace and L2 segment of a cluster, built by its CNI.

`build_fabric` asks the cluster's CNI (`dataplane.cni`: flannel, calico) to build each
node's host namespace with its devices and routes and each pod's interfaces; the shared
pieces (a node's `lo` and `eth0` on the underlay, a pod's namespace and sockets, the
`gateway` router on the underlay and one namespace per external host, each linked to the
gateway by a veth `ext<i>`) are `dataplane.cni.common`.  A `hostNetwork` pod shares its
node's namespace.  Nothing here learns: neighbour caches, bridge FDBs and conntrack are per
walk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dataplane import cloudlb, kubeproxy_ipvs
from dataplane.cni import common, plugin_of
from dataplane.cni.common import (
    GATEWAY,
    LOOPBACK,
    UNDERLAY,
    mac_from_name,
    pod_netns_id,
)
from dataplane.netfilter import Hook, Netfilter
from dataplane.netns import Netns, NetnsKind
from dataplane.packet import Packet
from topology.graph import veth_name
from topology.ipam import mac_for
from topology.model import Cluster, Protocol, ProxyMode
from topology.nogc import no_gc


@dataclass(slots=True)
class Segment:
    """An L2 segment (the underlay switch): which namespace's interface is plugged in."""

    name: str
    ports: dict[str, str] = field(default_factory=dict)  # netns id -> ifname


@dataclass(slots=True)
class Fabric:
    """Every namespace and segment of a cluster, built once per pod/node layout."""

    cluster: Cluster
    netns: dict[str, Netns] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    owner_of_ip: dict[str, str] = field(default_factory=dict)  # IP -> netns id
    vxlan_fdb: dict[tuple[str, str], str] = field(
        default_factory=dict
    )  # (ns, MAC) -> IP
    bridge_ports: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # (ns, bridge) -> who answers a flood there; built by `dataplane.bridge` on first use
    floods: dict[tuple[str, str], object] = field(default_factory=dict)
    user_hooks: list[tuple[Hook, str | None]] = field(default_factory=list)
    # A CNI whose VXLAN device is in collect-metadata mode sets the VNI per packet
    # (Cilium: the source's security identity); None: the device's own VNI.
    vni_of: Callable[[Packet], int] | None = None

    def add(self, ns: Netns) -> Netns:
        self.netns[ns.id] = ns
        return ns

    def node_ns(self, name: str) -> Netns:
        return self.netns[name]

    def add_hook(self, hook: Hook, node: str | None = None) -> None:
        """Register a hook on every node (or one node's) namespace."""
        self.user_hooks.append((hook, node))
        for ns in self.netns.values():
            if ns.kind is NetnsKind.HOST and node in (None, ns.node):
                assert isinstance(ns.hooks, Netfilter)
                ns.hooks.register(hook)

    def remove_hook(self, name: str) -> None:
        self.user_hooks = [(h, n) for h, n in self.user_hooks if h.name != name]
        for ns in self.netns.values():
            if isinstance(ns.hooks, Netfilter):
                ns.hooks.unregister(name)


def _add_cloud_lb(gw: Netns, cluster: Cluster) -> None:
    """The gateway's routes to LoadBalancer and external addresses and
    `cluster.gatewayRoutes`, and the proxying load balancer's hooks (`dataplane.cloudlb`)."""
    for route in cloudlb.gateway_routes(cluster):
        gw.routes.add(route)
    proxy = cloudlb.hooks(cluster)
    if proxy:
        nf = gw.hooks = Netfilter()
        for hook in proxy:
            nf.register(hook)


def build_fabric(
    cluster: Cluster, user_hooks: Sequence[tuple[Hook, str | None]] = ()
) -> Fabric:
    """Build every namespace, device and route of `cluster` with its CNI
    (`dataplane.cni`), with the system hooks (masquerade, kube-proxy, NetworkPolicy) and
    any user hooks registered (without the cyclic GC: `topology.nogc`)."""
    with no_gc():
        return _build_fabric(cluster, user_hooks)


def _build_fabric(
    cluster: Cluster, user_hooks: Sequence[tuple[Hook, str | None]]
) -> Fabric:
    from dataplane import system_hooks

    cni = plugin_of(cluster)
    fab = Fabric(cluster)
    fab.segments[UNDERLAY] = Segment(UNDERLAY)
    for node in cluster.config.nodes:
        cni.node(fab, node)
        if cluster.config.kube_proxy.mode is ProxyMode.IPVS:
            mac = common.mac_from_name(f"{node.name}/{kubeproxy_ipvs.DUMMY_DEVICE}")
            kubeproxy_ipvs.add_dummy(cluster, fab.netns[node.name], mac)
    for pod in cluster.pods.values():
        ns = common.pod_namespace(fab, pod)
        if not pod.host_network:
            cni.pod(fab, pod, ns)
        common.listen(ns, pod)
    gw = common.gateway(fab)
    cni.gateway_routes(fab, gw)
    _add_cloud_lb(gw, cluster)
    common.externals(fab, gw)
    for ns in fab.netns.values():
        if ns.kind is NetnsKind.HOST:
            assert isinstance(ns.hooks, Netfilter)
            for hook in system_hooks.for_node(cluster, ns):
                ns.hooks.register(hook)
    for hook, on_node in user_hooks:
        fab.add_hook(hook, on_node)
    return fab


def layout_of(cluster: Cluster) -> tuple[object, ...]:
    """What the devices depend on: a fabric can be kept while this is unchanged."""
    pods = tuple(
        (
            p.key,
            p.node,
            str(p.ip),
            p.host_network,
            tuple((x.protocol, x.port) for x in p.ports()),
        )
        for p in cluster.pods.values()
    )
    return (
        cluster.config,
        pods,
        cloudlb.layout(cluster),
        kubeproxy_ipvs.layout(cluster),
    )


__all__ = [
    "GATEWAY",
    "LOOPBACK",
    "UNDERLAY",
    "Fabric",
    "Protocol",
    "build_fabric",
    "layout_of",
    "mac_for",
    "mac_from_name",
    "pod_netns_id",
    "veth_name",
]
