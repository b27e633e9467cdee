"""flannel: a bridge per node, one podCIDR per node, three ways across nodes.

What it builds (names as `ip link` would show them), as flannel's daemon and the CNI
`bridge` plugin (with `host-local` IPAM) program them:
- per node: the pod bridge (`cbr0` by default, the first host of the podCIDR, MTU of the
  pods), a `veth…` port per pod (hairpin on), and in `vxlan` mode `flannel.1` (address
  `10.0.N.0/32`, VNI 1) with a permanent neighbour and FDB entry per other node
  (flannel's `backend/vxlan`); in `host-gw` mode `podCIDR via nodeIP dev eth0` per other
  node; in `routed` mode nothing: the gateway router holds one route per podCIDR;
- per pod: `eth0` with the podCIDR's connected route and `default via <bridge IP>`.
NetworkPolicy sits in FORWARD (`dataplane.netpol_hook`), as a policy agent beside flannel
(kube-router, Calico's policy-only mode) enforces it; bridged traffic meets it through
`br_netfilter`.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING

from dataplane import netpol_hook
from dataplane.cni.common import (
    DEFAULT,
    CniPlugin,
    default_route,
    host_namespace,
    mac_from_name,
)
from dataplane.netns import Interface, Kind, Netns
from dataplane.routing import Route
from topology.graph import veth_name
from topology.ipam import mac_for, tunnel_ip
from topology.model import Cni, NetworkMode, NodeSpec, Pod

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.fabric import Fabric

VTEP = "flannel.1"


def vtep_ip(node: NodeSpec) -> IPv4Address:
    """flannel.1's address: the network address of the node's podCIDR (`10.0.1.0`)."""
    return node.pod_cidr.network_address


def build_node(fab: Fabric, node: NodeSpec) -> Netns:
    cfg = fab.cluster.config
    ns, _ = host_namespace(fab, node)
    br_if = IPv4Interface(f"{node.bridge_ip}/{node.pod_cidr.prefixlen}")
    ns.add_interface(
        Interface(
            cfg.bridge, Kind.BRIDGE, mac_for(node.bridge_ip), cfg.pod_mtu, (br_if,)
        )
    )
    ns.routes.add(Route(br_if.network, cfg.bridge, src=node.bridge_ip, proto="kernel"))
    default_route(fab, ns)
    fab.owner_of_ip[str(node.bridge_ip)] = ns.id
    vtep = tunnel_ip(cfg, node)
    if vtep is not None:
        ns.add_interface(
            Interface(
                VTEP,
                Kind.VXLAN,
                mac_for(vtep),
                cfg.mtu - 50,
                (IPv4Interface(f"{vtep}/32"),),
                vni=1,
                vxlan_port=cfg.vxlan_port,
                vxlan_local=node.ip,
                vxlan_dev="eth0",
            )
        )
        fab.owner_of_ip[str(vtep)] = ns.id
    for other in cfg.nodes:
        if other.name == node.name:
            continue
        if cfg.network is NetworkMode.VXLAN:
            # flannel: `10.0.2.0/24 via 10.0.2.0 dev flannel.1 onlink`, a permanent
            # neighbour for 10.0.2.0 and an FDB entry for its MAC (docs/model.md, "Reference walks").
            ns.routes.add(Route(other.pod_cidr, VTEP, via=vtep_ip(other), onlink=True))
            remote_mac = mac_for(vtep_ip(other))
            ns.permanent_neigh[(VTEP, str(vtep_ip(other)))] = remote_mac
            fab.vxlan_fdb[(ns.id, remote_mac)] = str(other.ip)
        elif cfg.network is NetworkMode.HOST_GW:
            ns.routes.add(Route(other.pod_cidr, "eth0", via=other.ip))
        # routed: the default route to the gateway carries it.
    return ns


def build_pod(fab: Fabric, pod: Pod, ns: Netns) -> None:
    """`eth0` in the pod with the connected podCIDR and `default via <bridge IP>`; its
    peer `veth…` a hairpin port of the bridge."""
    cfg = fab.cluster.config
    node = fab.cluster.node(pod.node)
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
    ns.routes.add(Route(DEFAULT, "eth0", via=node.bridge_ip))
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


def gateway_routes(fab: Fabric, gw: Netns) -> None:
    """`routed`: the cloud-route picture, one route per podCIDR to its node."""
    if fab.cluster.config.network is NetworkMode.ROUTED:
        for node in fab.cluster.config.nodes:
            gw.routes.add(Route(node.pod_cidr, "eth0", via=node.ip))


PLUGIN = CniPlugin(
    Cni.FLANNEL, build_node, build_pod, gateway_routes, netpol_hook.hooks
)
