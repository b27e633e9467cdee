"""The device code every CNI shares: a node's host namespace on the underlay, a pod's
namespace and sockets, the gateway router with the external hosts.

A CNI module (`dataplane.cni.flannel`, `dataplane.cni.calico`) adds what is its own: the pod
interfaces and their host ends, the bridge or the per-pod routes, the tunnel devices and
the routes to other nodes.  Nothing here knows a CNI's device names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import TYPE_CHECKING

from dataplane.netfilter import Hook, HookContext, Netfilter
from dataplane.netns import Interface, Kind, Netns, NetnsKind
from dataplane.routing import Route
from topology.ipam import mac_for
from topology.model import Cluster, Cni, NodeSpec, Pod
from topology.runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.fabric import Fabric
    from dataplane.packet import Packet
    from dataplane.trace import FieldDiff, Hop

UNDERLAY = "underlay"
GATEWAY = "gateway"
LOOPBACK = IPv4Interface("127.0.0.1/8")
DEFAULT = IPv4Network("0.0.0.0/0")


def mac_from_name(name: str) -> str:
    """A stable locally administered MAC for an interface without an address.

    >>> mac_from_name("veth0a1b2c3d")[:3]
    '02:'
    """
    h = hashlib.sha1(name.encode()).digest()
    return "02:" + ":".join(f"{x:02x}" for x in h[:5])


def pod_netns_id(pod: Pod) -> str:
    return pod.node if pod.host_network else f"pod:{pod.key}"


def loopback() -> Interface:
    return Interface("lo", Kind.LOOPBACK, "00:00:00:00:00:00", 65536, (LOOPBACK,))


def host_namespace(fab: Fabric, node: NodeSpec) -> tuple[Netns, IPv4Interface]:
    """A node's namespace: `lo`, `eth0` on the underlay with the node IP and its
    connected route; forwarding on, netfilter hooks ready."""
    cfg = fab.cluster.config
    ns = fab.add(Netns(node.name, NetnsKind.HOST, node.name, "host", forwarding=True))
    ns.hooks = Netfilter()
    ns.add_interface(loopback())
    node_if = IPv4Interface(f"{node.ip}/{cfg.node_cidr.prefixlen}")
    ns.add_interface(
        Interface(
            "eth0", Kind.ETH, mac_for(node.ip), cfg.mtu, (node_if,), segment=UNDERLAY
        )
    )
    fab.segments[UNDERLAY].ports[ns.id] = "eth0"
    ns.routes.add(Route(node_if.network, "eth0", src=node.ip, proto="kernel"))
    fab.owner_of_ip[str(node.ip)] = ns.id
    return ns, node_if


def default_route(fab: Fabric, ns: Netns) -> None:
    """`default via <gateway> dev eth0`: the underlay router."""
    ns.routes.add(Route(DEFAULT, "eth0", via=fab.cluster.config.gateway))


def pod_namespace(fab: Fabric, pod: Pod) -> Netns:
    """The pause container's namespace with `lo` (its node's, for a hostNetwork pod)."""
    if pod.host_network:
        return fab.netns[pod.node]
    ns = fab.add(
        Netns(pod_netns_id(pod), NetnsKind.POD, pod.node, f"pod {pod.key}", pod=pod)
    )
    ns.add_interface(loopback())
    return ns


def listen(ns: Netns, pod: Pod) -> None:
    """Every containerPort of the pod as a listening socket of its namespace."""
    for c in pod.containers:
        for p in c.ports:
            ns.listen(
                p.protocol,
                p.port,
                f"{pod.key}/{c.name}" if pod.host_network else c.name,
            )


def routed_pod(
    fab: Fabric,
    pod: Pod,
    ns: Netns,
    host_end: str,
    macs: tuple[str, str],
    router: IPv4Address,
) -> None:
    """A pod wired without a bridge (Calico, Cilium): `eth0` holds the pod's /32 with
    `ROUTER dev eth0 scope link` and `default via ROUTER`; the host end `host_end` answers
    the pod's ARP for the router (proxy ARP), and the host routes the /32 to it with a
    permanent neighbour entry.  `macs` are the pod's and the host end's MACs."""
    pod_mac, host_mac = macs
    mtu = fab.cluster.config.pod_mtu
    ns.add_interface(
        Interface(
            "eth0",
            Kind.VETH,
            pod_mac,
            mtu,
            (IPv4Interface(f"{pod.ip}/32"),),
            peer=(pod.node, host_end),
        )
    )
    ns.routes.add(Route(IPv4Network(f"{router}/32"), "eth0"))
    ns.routes.add(Route(DEFAULT, "eth0", via=router))
    host = fab.netns[pod.node]
    host.add_interface(
        Interface(
            host_end, Kind.VETH, host_mac, mtu, peer=(ns.id, "eth0"), proxy_arp=True
        )
    )
    host.routes.add(Route(IPv4Network(f"{pod.ip}/32"), host_end))
    host.permanent_neigh[(host_end, str(pod.ip))] = pod_mac
    fab.owner_of_ip[str(pod.ip)] = ns.id


def gateway(fab: Fabric) -> Netns:
    """The underlay router with its connected route (the externals come later)."""
    cfg = fab.cluster.config
    gw = fab.add(Netns(GATEWAY, NetnsKind.GATEWAY, GATEWAY, "router", forwarding=True))
    gw.add_interface(loopback())
    gw_if = IPv4Interface(f"{cfg.gateway}/{cfg.node_cidr.prefixlen}")
    gw.add_interface(
        Interface(
            "eth0", Kind.ETH, mac_for(cfg.gateway), cfg.mtu, (gw_if,), segment=UNDERLAY
        )
    )
    fab.segments[UNDERLAY].ports[gw.id] = "eth0"
    gw.routes.add(Route(gw_if.network, "eth0", src=cfg.gateway, proto="kernel"))
    fab.owner_of_ip[str(cfg.gateway)] = gw.id
    return gw


def externals(fab: Fabric, gw: Netns) -> None:
    """One namespace per external host, linked to the gateway by a veth (`ext<i>` on the
    gateway, `eth0` on the host) with /32 routes."""
    cfg = fab.cluster.config
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
        host.add_interface(loopback())
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
        host.routes.add(Route(DEFAULT, "eth0", via=cfg.gateway))
        for p in ext.ports:
            host.listen(p.protocol, p.port, ext.name)
        fab.owner_of_ip[str(ext.ip)] = host.id


@dataclass(frozen=True, slots=True)
class CniPlugin:
    """What a CNI builds, called by `dataplane.fabric.build_fabric` in this order: every
    node (`node`: its host namespace with the CNI's devices and routes), every pod that
    is not hostNetwork (`pod`: its interfaces, given its fresh namespace), the gateway's
    routes to pods (`gateway_routes`), and the hooks where its NetworkPolicy sits
    (`policy_hooks`, beside kube-proxy's and masquerade's: `dataplane.system_hooks`).
    `observe`, if the CNI has observation points of its own (Cilium's), names them on
    the hops of each finished walk (`dataplane.sim.Simulator.walk`); `service_hooks` and
    `connect` are a kube-proxy replacement's; `system_hooks` a runtime's own rules."""

    name: Cni | Runtime
    node: Callable[[Fabric, NodeSpec], Netns]
    pod: Callable[[Fabric, Pod, Netns], None]
    gateway_routes: Callable[[Fabric, Netns], None]
    policy_hooks: Callable[[], list[Hook]]
    observe: Callable[[list[Hop]], list[Hop]] | None = None
    # A CNI that replaces kube-proxy: its hooks for Services (None: kube-proxy's), and
    # the translation of a probe's connect() in the client's socket (Cilium's socket-LB,
    # called by `dataplane.sim.Simulator.probe`).
    service_hooks: Callable[[], list[Hook]] | None = None
    connect: (
        Callable[
            [Netns, Packet, HookContext],
            tuple[Packet, str, tuple[FieldDiff, ...], str] | None,
        ]
        | None
    ) = None
    # A runtime whose host rules replace kube-proxy's, masquerade's and NetworkPolicy's
    # (Docker's iptables): the hooks of a node namespace (`dataplane.system_hooks`).
    system_hooks: Callable[[Cluster, Netns], list[Hook]] | None = None
