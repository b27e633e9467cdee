"""Cilium as its Helm chart installs it with `kubeProxyReplacement: true` (and the
chart's defaults `ipam.mode: cluster-pool`, `routingMode: tunnel`, `tunnelProtocol:
vxlan`): no bridge, one `lxc…` veth per pod, the BPF datapath at each end, Services
translated by Cilium's programs instead of kube-proxy (`dataplane.cni.cilium_lb`).

What it builds (names as `ip link` / `ip route` would show them):
- per node: the `cilium_host`/`cilium_net` veth pair (pkg/datapath/loader `cilium_host`,
  the node's router address: the first host of its podCIDR here; Cilium's IPAM hands out
  any free one), `<router IP> dev cilium_host scope link`; the podCIDR is the node's /24
  of the cluster-pool 10.0.0.0/8 in node order (`topology.config`, CILIUM_POOL);
- per pod (plugins/cilium-cni `cmdAdd`, connector `SetupVeth`): `eth0` with the pod's
  address as a /32, `<router IP> dev eth0 scope link` and `default via <router IP> dev
  eth0` (the CNI's `interfaceAdd` routes); the host end `lxc` + 12 hex digits of sha256
  (`topology.graph.lxc_name`).  The pod's ARP for the router address is answered by
  bpf_lxc.c's ARP responder (`tail_handle_arp`, `arp_respond` with the lxc's own MAC),
  modelled as proxy ARP on the lxc; the endpoint map (`lookup_ip4_endpoint`, local
  delivery) as `<pod IP> dev lxc…` with a permanent neighbour;
- between nodes, `vxlan`: `cilium_vxlan` (collect-metadata, UDP 8472: Cilium's
  `tunnel-port` default for vxlan) with each other node's podCIDR behind it.  Cilium
  routes those via `cilium_host` and bpf_host's encapsulation picks the remote node from
  its tunnel map (`cilium_tunnel_map`: podCIDR -> node IP); here the same lookup is a
  route `via <remote router IP> dev cilium_vxlan onlink` with a permanent neighbour and an
  FDB entry, the walker's VXLAN device.  MTU: the pods' `mtu - 50` (pkg/mtu
  TunnelOverhead; Cilium keeps the device at the underlay's and lowers the route MTU, the
  same limit for a pod's packets).  `geneve` (`tunnelProtocol: geneve`): the same with
  `cilium_geneve` (collect-metadata, UDP 6081: Cilium's `tunnel-port` default for geneve,
  pkg/defaults TunnelPortGeneve), the 8-byte Geneve header without options in place of
  VXLAN's, the same overhead (pkg/mtu: TunnelOverhead covers both).  `native` (`routingMode: native` with
  `autoDirectNodeRoutes: true`): `<podCIDR> via <node IP> dev eth0`, no encapsulation;
- NetworkPolicy at the endpoints: a pod's egress rules in `cil_from_container` (bpf_lxc.c,
  tc ingress of its lxc: the packet leaving the pod), its ingress rules in
  `cil_lxc_policy` (bpf_lxc.c, tail-called by `ipv4_local_delivery` of bpf_lxc,
  bpf_overlay or bpf_host: the packet entering the pod), as Hubble shows the verdict
  (`dataplane.hubble`: policy-verdict ALLOWED/DENIED, DROPPED "Policy denied").  The decision is the shared one
  (`dataplane.netpol`); here it sits at the node's filter hooks of the same packets.
  From a pod to its own host the pod's egress is checked too; from the host to its pods
  nothing (Cilium's `allow-localhost` default: policy always admits the local host).
- the security identity of each pod (`identity`): a number from 256 upward per distinct
  set of identity labels (pkg/identity `MinimalAllocationIdentity` = 256; the agent
  leases a free ID at random from the pool, here in the order pods are first met, so the
  same scenario gives the same numbers), carried in the VNI of `cilium_vxlan` and
  `cilium_geneve` packets
  (the source's identity, as bpf_lxc/bpf_host encapsulate it; `fab.vni_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import IPv4Interface
from typing import TYPE_CHECKING

from dataplane.cni import cilium_lb
from dataplane.cni.common import (
    CniPlugin,
    default_route,
    host_namespace,
    mac_from_name,
    routed_pod,
)
from dataplane.netfilter import Hook
from dataplane.netns import Interface, Kind, Netns
from dataplane.netpol import Direction
from dataplane.netpol_hook import NAME, endpoint_hooks
from dataplane.packet import GENEVE_PORT, Packet
from dataplane.routing import Route
from dataplane.trace import Hop
from topology.graph import lxc_name
from topology.model import CiliumMode, Cluster, Cni, NodeSpec, Pod

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.fabric import Fabric

CILIUM_HOST = "cilium_host"
CILIUM_NET = "cilium_net"
VXLAN_DEV = "cilium_vxlan"
GENEVE_DEV = "cilium_geneve"
# Each tunnel protocol's device, its kind and its port (`tunnel-port`, pkg/defaults).
TUNNELS: Mapping[CiliumMode, tuple[str, Kind]] = {
    CiliumMode.VXLAN: (VXLAN_DEV, Kind.VXLAN),
    CiliumMode.GENEVE: (GENEVE_DEV, Kind.GENEVE),
}
# pkg/identity/numericidentity.go: MinimalAllocationIdentity, the first ID the agent
# allocates for a label set (below it: the reserved identities, host = 1, world = 2, ...).
FIRST_IDENTITY = 256
# pkg/identity: the reserved identities of the node's own host namespace and of any
# address outside the cluster.
HOST_IDENTITY = 1
WORLD_IDENTITY = 2
# The label Cilium adds to every endpoint's identity labels (pkg/k8s/apis/cilium.io
# PodNamespaceLabel), with the `k8s:` source prefix Hubble prints.
NAMESPACE_LABEL = "io.kubernetes.pod.namespace"


def router_ip(node: NodeSpec) -> IPv4Interface:
    """`cilium_host`'s address: the first host of the node's podCIDR, as a /32."""
    return IPv4Interface(f"{node.bridge_ip}/32")


def vtep_mac(node: NodeSpec, dev: str = VXLAN_DEV) -> str:
    """The tunnel device's MAC (the kernel's random one, made stable)."""
    return mac_from_name(f"{node.name}/{dev}")


def identity_labels(pod: Pod) -> tuple[str, ...]:
    """The labels a pod's identity is made of, as Hubble prints them: `k8s:` + each pod
    label, and the namespace label (pkg/labels, pkg/k8s: `k8s:io.kubernetes.pod
    .namespace=NS`), sorted."""
    found = [f"k8s:{k}={v}" for k, v in pod.labels.items()]
    found.append(f"k8s:{NAMESPACE_LABEL}={pod.namespace}")
    return tuple(sorted(found))


def identities(cluster: Cluster) -> Mapping[tuple[str, ...], int]:
    """Every identity label set of the cluster's pods with its number, from 256 in the
    order the pods are listed (hostNetwork pods have the host's identity, 1)."""
    numbers: dict[tuple[str, ...], int] = {}
    for pod in cluster.pods.values():
        if not pod.host_network:
            numbers.setdefault(identity_labels(pod), FIRST_IDENTITY + len(numbers))
    return numbers


def identity(cluster: Cluster, pod: Pod) -> int:
    """The security identity of `pod`."""
    if pod.host_network:
        return HOST_IDENTITY
    return identities(cluster)[identity_labels(pod)]


def source_identity(cluster: Cluster) -> Callable[[Packet], int]:
    """The identity bpf_lxc/bpf_host put in the VNI of an encapsulated packet
    (`__encap_with_nodeid` with `seclabel`): its source pod's, the host's (1) for a
    node's own packets, world's (2) for any other source (pkg/identity reserved IDs)."""
    numbers = identities(cluster)
    by_ip = {
        str(p.ip): numbers[identity_labels(p)]
        for p in cluster.pods.values()
        if not p.host_network
    }

    for n in cluster.nodes:  # a node's own addresses: the host's identity
        by_ip.setdefault(str(n.ip), HOST_IDENTITY)
        by_ip.setdefault(str(n.bridge_ip), HOST_IDENTITY)

    def vni(pkt: Packet) -> int:
        src = pkt.ip.src if pkt.ip is not None else ""
        return by_ip.get(src, WORLD_IDENTITY)

    return vni


def build_node(fab: Fabric, node: NodeSpec) -> Netns:
    cfg = fab.cluster.config
    tunnel = TUNNELS.get(CiliumMode(cfg.network))
    if fab.vni_of is None and tunnel is not None:
        fab.vni_of = source_identity(fab.cluster)
    ns, _ = host_namespace(fab, node)
    default_route(fab, ns)
    router = router_ip(node)
    ns.add_interface(
        Interface(
            CILIUM_HOST,
            Kind.VETH,
            mac_from_name(f"{node.name}/{CILIUM_HOST}"),
            cfg.mtu,
            (router,),
            peer=(ns.id, CILIUM_NET),
        )
    )
    ns.add_interface(
        Interface(
            CILIUM_NET,
            Kind.VETH,
            mac_from_name(f"{node.name}/{CILIUM_NET}"),
            cfg.mtu,
            peer=(ns.id, CILIUM_HOST),
        )
    )
    ns.routes.add(Route(router.network, CILIUM_HOST, proto="kernel"))
    fab.owner_of_ip[str(router.ip)] = ns.id
    if tunnel is not None:
        dev, kind = tunnel
        ns.add_interface(
            Interface(
                dev,
                kind,
                vtep_mac(node, dev),
                cfg.pod_mtu,
                vni=0,
                vxlan_port=GENEVE_PORT if kind is Kind.GENEVE else cfg.vxlan_port,
                vxlan_local=node.ip,
                vxlan_dev="eth0",
            )
        )
    for other in cfg.nodes:
        if other.name == node.name:
            continue
        if tunnel is not None:
            dev = tunnel[0]
            remote = router_ip(other).ip
            ns.routes.add(Route(other.pod_cidr, dev, via=remote, onlink=True))
            ns.permanent_neigh[(dev, str(remote))] = vtep_mac(other, dev)
            fab.vxlan_fdb[(ns.id, vtep_mac(other, dev))] = str(other.ip)
        else:
            ns.routes.add(Route(other.pod_cidr, "eth0", via=other.ip))
    return ns


def build_pod(fab: Fabric, pod: Pod, ns: Netns) -> None:
    router = router_ip(fab.cluster.node(pod.node)).ip
    lxc = lxc_name(pod.key)
    macs = (mac_from_name(f"{pod.key}/eth0"), mac_from_name(lxc))
    routed_pod(fab, pod, ns, lxc, macs, router)


def gateway_routes(fab: Fabric, gw: Netns) -> None:
    """The underlay router learns no podCIDR (no BGP): pod traffic that leaves the
    cluster is masqueraded to the node's address (`enableIPv4Masquerade`)."""


FROM_CONTAINER = "cil_from_container"  # bpf_lxc.c: tc ingress of the lxc (from the pod)
LXC_POLICY = "cil_lxc_policy"  # bpf_lxc.c: the endpoint's ingress policy, tail-called
# by ipv4_local_delivery of bpf_lxc, bpf_overlay or bpf_host
FROM_OVERLAY = "cil_from_overlay"  # bpf_overlay.c: tc ingress of cilium_vxlan/_geneve
TUNNEL_DEVS = (VXLAN_DEV, GENEVE_DEV)
FROM_NETDEV = "cil_from_netdev"  # bpf_host.c: tc ingress of eth0
FROM_HOST = "cil_from_host"  # bpf_host.c: tc egress of cilium_host (the host's packets)


def endpoint_program(direction: Direction, pod: Pod) -> str:
    """The BPF program that holds a pod's policy and its lxc, for hop lines."""
    program = FROM_CONTAINER if direction is Direction.EGRESS else LXC_POLICY
    return f"{program} ({lxc_name(pod.key)}, {direction.value} of {pod.key})"


def policy_hooks() -> list[Hook]:
    """The endpoints' policy: egress as the packet leaves the source pod, ingress as it
    enters the destination pod, and a pod's egress towards its own host."""
    return endpoint_hooks(endpoint_program)


def _point(hop: Hop, after_endpoint: bool) -> tuple[str, str]:
    """The observation point (pkg/monitor/api/types.go, as Hubble's flow API names it)
    and program of one hop of a node's host namespace, or ("", "")."""
    dev, event = hop.device, hop.event
    if dev.startswith("lxc"):
        if event == "recv":
            return "FROM_ENDPOINT", FROM_CONTAINER
        if event == "xmit":
            return "TO_ENDPOINT", LXC_POLICY
    if dev in TUNNEL_DEVS and event == "encap":
        # bpf_lxc encapsulates its pod's packets itself (encap_and_redirect_lxc), the
        # host's go through cilium_host (bpf_host's encap_and_redirect_with_nodeid).
        return "TO_OVERLAY", FROM_CONTAINER if after_endpoint else FROM_HOST
    if dev in TUNNEL_DEVS and event == "decap":
        return "FROM_OVERLAY", FROM_OVERLAY
    if dev == "eth0" and event == "recv" and hop.packet and hop.packet.tunnel is None:
        return "FROM_NETWORK", FROM_NETDEV
    if event in ("FORWARD", "INPUT") and hop.detail.startswith(f"{NAME}: cil_"):
        program = hop.detail.removeprefix(f"{NAME}: ").split(" ", 1)[0]
        return "POLICY_VERDICT", program
    local = " dev lxc" in hop.detail or any(
        f"dev {d}" in hop.detail for d in TUNNEL_DEVS
    )
    if after_endpoint and event == "route" and dev == "" and not local:
        # bpf_lxc passes a packet for neither a local endpoint nor the tunnel to the
        # stack (CTX_ACT_OK with TRACE_TO_STACK).
        return "TO_STACK", FROM_CONTAINER
    return "", ""


def observe(hops: list[Hop]) -> list[Hop]:
    """The hops with Cilium's observation points named (each hop once: a walk that goes
    on after an earlier one keeps the points already named).  ARP has none: bpf_lxc
    answers it without a trace event."""
    out: list[Hop] = []
    after_endpoint = False  # the packet last came out of a pod's lxc
    for hop in hops:
        if hop.netns != "host":
            after_endpoint = False
        if hop.netns != "host" or hop.packet is None or hop.packet.arp is not None:
            out.append(hop)
            continue
        point, program = _point(hop, after_endpoint)
        if hop.point:
            point, program = hop.point, hop.program
        elif point:
            hop = hop._replace(
                point=point,
                program=program,
                detail=f"{point} {program}: {hop.detail}",
            )
        if point == "FROM_ENDPOINT":
            after_endpoint = True
        elif point in ("TO_STACK", "TO_OVERLAY", "TO_ENDPOINT"):
            after_endpoint = False
        out.append(hop)
    return out


PLUGIN = CniPlugin(
    Cni.CILIUM,
    build_node,
    build_pod,
    gateway_routes,
    policy_hooks,
    observe,
    cilium_lb.hooks,
    cilium_lb.translate_connect,
)
