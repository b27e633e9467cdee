"""Build the dataplane from the cluster model: namespaces, devices, routes and links.

What gets built (names as `ip link` would show them):
- per node: the host namespace with `lo`, `eth0` on the underlay (node IP), the pod bridge
  (`cbr0` by default, first host of the podCIDR, MTU of the pods), a `veth…` port per pod,
  and in `vxlan` mode `flannel.1` (address `10.0.N.0/32`, VNI 1) with a permanent neighbour
  and FDB entry per other node, exactly as flannel programs them;
- per pod: a namespace (the pause container's) with `lo` and `eth0`, routes
  `default via <bridge IP> dev eth0` and the connected podCIDR; a `hostNetwork` pod shares its
  node's namespace;
- the `gateway` router on the underlay, and one namespace per external host, each linked to
  the gateway by a veth (`ext<i>` on the gateway, `eth0` on the host) with /32 routes.
Nothing here learns: neighbour caches, bridge FDBs and conntrack are per walk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from dataplane import cloudlb
from dataplane.netfilter import Hook, Netfilter
from dataplane.netns import Interface, Kind, Netns, NetnsKind
from dataplane.routing import Route
from topology.graph import veth_name
from topology.ipam import mac_for
from topology.model import Cluster, NetworkMode, NodeSpec, Pod, Protocol

UNDERLAY = "underlay"
GATEWAY = "gateway"
LOOPBACK = IPv4Interface("127.0.0.1/8")


def mac_from_name(name: str) -> str:
    """A stable locally administered MAC for an interface without an address.

    >>> mac_from_name("veth0a1b2c3d")[:3]
    '02:'
    """
    h = hashlib.sha1(name.encode()).digest()
    return "02:" + ":".join(f"{x:02x}" for x in h[:5])


def pod_netns_id(pod: Pod) -> str:
    return pod.node if pod.host_network else f"pod:{pod.key}"


def vtep_ip(node: NodeSpec) -> IPv4Address:
    """flannel.1's address: the network address of the node's podCIDR (`10.0.1.0`)."""
    return node.pod_cidr.network_address


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


def _loopback() -> Interface:
    return Interface("lo", Kind.LOOPBACK, "00:00:00:00:00:00", 65536, (LOOPBACK,))


def _build_node(fab: Fabric, node: NodeSpec) -> Netns:
    cfg = fab.cluster.config
    ns = fab.add(Netns(node.name, NetnsKind.HOST, node.name, "host", forwarding=True))
    ns.hooks = Netfilter()
    ns.add_interface(_loopback())
    node_if = IPv4Interface(f"{node.ip}/{cfg.node_cidr.prefixlen}")
    ns.add_interface(
        Interface(
            "eth0", Kind.ETH, mac_for(node.ip), cfg.mtu, (node_if,), segment=UNDERLAY
        )
    )
    fab.segments[UNDERLAY].ports[ns.id] = "eth0"
    br_if = IPv4Interface(f"{node.bridge_ip}/{node.pod_cidr.prefixlen}")
    ns.add_interface(
        Interface(
            cfg.bridge, Kind.BRIDGE, mac_for(node.bridge_ip), cfg.pod_mtu, (br_if,)
        )
    )
    ns.routes.add(Route(node_if.network, "eth0", src=node.ip, proto="kernel"))
    ns.routes.add(Route(br_if.network, cfg.bridge, src=node.bridge_ip, proto="kernel"))
    ns.routes.add(Route(IPv4Network("0.0.0.0/0"), "eth0", via=cfg.gateway))
    fab.owner_of_ip[str(node.ip)] = ns.id
    fab.owner_of_ip[str(node.bridge_ip)] = ns.id
    if cfg.network is NetworkMode.VXLAN:
        vtep = IPv4Interface(f"{vtep_ip(node)}/32")
        ns.add_interface(
            Interface(
                "flannel.1",
                Kind.VXLAN,
                mac_for(vtep.ip),
                cfg.mtu - 50,
                (vtep,),
                vni=1,
                vxlan_port=cfg.vxlan_port,
                vxlan_local=node.ip,
                vxlan_dev="eth0",
            )
        )
        fab.owner_of_ip[str(vtep.ip)] = ns.id
    for other in cfg.nodes:
        if other.name == node.name:
            continue
        if cfg.network is NetworkMode.VXLAN:
            # flannel: `10.0.2.0/24 via 10.0.2.0 dev flannel.1 onlink`, a permanent
            # neighbour for 10.0.2.0 and an FDB entry for its MAC (docs/model.md, "Reference walks").
            ns.routes.add(
                Route(other.pod_cidr, "flannel.1", via=vtep_ip(other), onlink=True)
            )
            remote_mac = mac_for(vtep_ip(other))
            ns.permanent_neigh[("flannel.1", str(vtep_ip(other)))] = remote_mac
            fab.vxlan_fdb[(ns.id, remote_mac)] = str(other.ip)
        elif cfg.network is NetworkMode.HOST_GW:
            ns.routes.add(Route(other.pod_cidr, "eth0", via=other.ip))
        # routed: the default route to the gateway carries it.
    return ns


def _build_pod(fab: Fabric, pod: Pod) -> Netns:
    cfg = fab.cluster.config
    node = fab.cluster.node(pod.node)
    if pod.host_network:
        ns = fab.netns[pod.node]
    else:
        ns = fab.add(
            Netns(pod_netns_id(pod), NetnsKind.POD, pod.node, f"pod {pod.key}", pod=pod)
        )
        ns.add_interface(_loopback())
        addr = IPv4Interface(f"{pod.ip}/{node.pod_cidr.prefixlen}")
        veth = veth_name(pod.key)
        ns.add_interface(
            Interface(
                "eth0",
                Kind.VETH,
                mac_for(pod.ip),
                cfg.pod_mtu,
                (addr,),
                peer=(node.name, veth),
            )
        )
        ns.routes.add(Route(addr.network, "eth0", src=pod.ip, proto="kernel"))
        ns.routes.add(Route(IPv4Network("0.0.0.0/0"), "eth0", via=node.bridge_ip))
        host = fab.netns[node.name]
        host.add_interface(
            Interface(
                veth,
                Kind.VETH,
                mac_from_name(veth),
                cfg.pod_mtu,
                peer=(ns.id, "eth0"),
                master=cfg.bridge,
                hairpin=True,
            )
        )
        fab.bridge_ports.setdefault((host.id, cfg.bridge), []).append(veth)
        fab.owner_of_ip[str(pod.ip)] = ns.id
    for c in pod.containers:
        for p in c.ports:
            ns.listen(
                p.protocol,
                p.port,
                f"{pod.key}/{c.name}" if pod.host_network else c.name,
            )
    return ns


def _build_gateway(fab: Fabric) -> None:
    cfg = fab.cluster.config
    gw = fab.add(Netns(GATEWAY, NetnsKind.GATEWAY, GATEWAY, "router", forwarding=True))
    gw.add_interface(_loopback())
    gw_if = IPv4Interface(f"{cfg.gateway}/{cfg.node_cidr.prefixlen}")
    gw.add_interface(
        Interface(
            "eth0", Kind.ETH, mac_for(cfg.gateway), cfg.mtu, (gw_if,), segment=UNDERLAY
        )
    )
    fab.segments[UNDERLAY].ports[gw.id] = "eth0"
    gw.routes.add(Route(gw_if.network, "eth0", src=cfg.gateway, proto="kernel"))
    fab.owner_of_ip[str(cfg.gateway)] = gw.id
    if cfg.network is NetworkMode.ROUTED:
        # The cloud-route picture: one route per podCIDR to its node.
        for node in cfg.nodes:
            gw.routes.add(Route(node.pod_cidr, "eth0", via=node.ip))
    _add_cloud_lb(gw, fab.cluster)
    for i, ext in enumerate(cfg.externals):
        ifname = f"ext{i}"
        host_id = f"external:{ext.name}"
        gw.add_interface(
            Interface(
                ifname,
                Kind.VETH,
                mac_from_name(f"gw-{ifname}"),
                cfg.mtu,
                (IPv4Interface(f"{cfg.gateway}/32"),),
                peer=(host_id, "eth0"),
            )
        )
        gw.routes.add(Route(IPv4Network(f"{ext.ip}/32"), ifname, src=cfg.gateway))
        host = fab.add(
            Netns(host_id, NetnsKind.EXTERNAL, "external", f"external {ext.name}")
        )
        host.add_interface(_loopback())
        host.add_interface(
            Interface(
                "eth0",
                Kind.VETH,
                mac_for(ext.ip),
                cfg.mtu,
                (IPv4Interface(f"{ext.ip}/32"),),
                peer=(gw.id, ifname),
            )
        )
        host.routes.add(Route(IPv4Network(f"{cfg.gateway}/32"), "eth0", src=ext.ip))
        host.routes.add(Route(IPv4Network("0.0.0.0/0"), "eth0", via=cfg.gateway))
        for p in ext.ports:
            host.listen(p.protocol, p.port, ext.name)
        fab.owner_of_ip[str(ext.ip)] = host.id


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
    """Build every namespace, device and route of `cluster`, with the system hooks
    (masquerade, kube-proxy, NetworkPolicy) and any user hooks registered."""
    from dataplane import system_hooks

    fab = Fabric(cluster)
    fab.segments[UNDERLAY] = Segment(UNDERLAY)
    for node in cluster.config.nodes:
        _build_node(fab, node)
    for pod in cluster.pods.values():
        _build_pod(fab, pod)
    _build_gateway(fab)
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
    return (cluster.config, pods, cloudlb.layout(cluster))


__all__ = [
    "GATEWAY",
    "UNDERLAY",
    "Fabric",
    "Protocol",
    "build_fabric",
    "layout_of",
    "mac_for",
    "veth_name",
]
