"""Calico as its manifests install it (calico.yaml: calico-node with BIRD and Felix,
calico-ipam, kube-proxy in iptables mode): no bridge, one routed veth per pod.

What it builds (names as `ip link` / `ip route` would show them):
- per pod (cni-plugin `pkg/dataplane/linux/dataplane_linux.go`, DoNetworking): `eth0`
  with the pod's address as a /32, `169.254.1.1 dev eth0 scope link` and `default via
  169.254.1.1 dev eth0`; the host end `cali` + 11 hex digits of SHA-1(`NS.POD`)
  (libcalico-go `VethNameForWorkload`) with MAC `ee:ee:ee:ee:ee:ee`, `proxy_arp=1` and
  `proxy_delay=0` (configureSysctls), so it answers the pod's ARP for 169.254.1.1 with its
  own MAC; on the host `<pod IP> dev cali… scope link` (SetupRoutes) and a static ARP
  entry for the pod's MAC (Felix's route table programs one per workload route);
- per node: its IPAM block (`topology.config`: blocks of the IP pool in node order) as
  `blackhole <block> proto bird` (BIRD's export of the local block; `proto 80`, Felix's,
  in vxlan mode, where Felix programs the routes), and per other node's block:
  `via <node IP> dev tunl0 proto bird onlink` (ipip: `tunl0`, the fallback IP-in-IP
  device, MTU 1480, the block's first address), `via <its vxlan.calico address> dev
  vxlan.calico proto 80 onlink` with a permanent neighbour and an FDB entry (vxlan:
  `vxlan.calico`, VNI 4096, UDP 4789, MTU 1450, Felix's `vxlan_mgr.go`) or `via <node IP>
  dev eth0 proto bird` (bgp: no encapsulation, the nodes peer in a full mesh on one L2);
- NetworkPolicy in Felix's per-endpoint chains (`felix/rules/dispatch.go`,
  `endpoints.go`): traffic from a pod passes `cali-FORWARD` -> `cali-from-wl-dispatch`
  -> `cali-fw-<its cali…>` (its egress policy), traffic to a pod `cali-to-wl-dispatch` ->
  `cali-tw-<its cali…>` (its ingress policy).  From a pod to its own host `cali-INPUT` ->
  `cali-wl-to-host` runs the pod's `cali-fw-…` too, then DefaultEndpointToHostAction
  ACCEPT (calico.yaml sets FELIX_DEFAULTENDPOINTTOHOSTACTION=ACCEPT); from the host to
  its pods nothing is checked (`felix/rules/static.go`, StaticFilterOutputChains: "We
  don't currently police host -> endpoint").  The decision is the shared one
  (`dataplane.netpol`); only where it sits and how a hop names it are Calico's.
- Felix's rules against encapsulation (`felix/rules/endpoints.go`, `static.go`): every
  `cali-fw-…` drops a NEW packet from its workload that is IP-in-IP or UDP to Felix's
  `vxlanPort` (4789), whatever the encapsulation mode ("Drop VXLAN encapped packets
  originating in workloads", "Drop IPinIP encapped packets originating in workloads":
  FelixConfiguration `allowVXLANPacketsFromWorkloads`/`allowIPIPPacketsFromWorkloads`
  default false), before any policy; `cali-INPUT` drops IP-in-IP (ipip mode) and VXLAN to
  a local address (vxlan mode) whose source is not one of the cluster's hosts ("Drop IPIP
  packets from non-Calico hosts", "Drop IPv4 VXLAN packets from non-allowed hosts": the
  ipsets `cali40all-hosts-net`, `cali40all-vxlan-net`).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING

from dataplane.cni.common import (
    CniPlugin,
    default_route,
    host_namespace,
    mac_from_name,
    routed_pod,
)
from dataplane.conntrack import CtState
from dataplane.netfilter import (
    PRIORITY_FILTER,
    Drop,
    Hook,
    HookContext,
    HookPoint,
    HookResult,
)
from dataplane.netns import Interface, Kind, Netns
from dataplane.netpol import Direction
from dataplane.netpol_hook import endpoint_hooks
from dataplane.packet import IPPROTO_IPIP, UDP, Packet
from dataplane.percluster import once_per_cluster
from dataplane.routing import Route
from topology.graph import cali_name
from topology.ipam import tunnel_ip
from topology.model import ENCAP_OVERHEAD, CalicoMode, Cluster, Cni, NodeSpec, Pod

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.fabric import Fabric

TUNL0 = "tunl0"
VXLAN_DEV = "vxlan.calico"
VXLAN_VNI = 4096  # Felix's vxlanVNI default
HOST_END_MAC = "ee:ee:ee:ee:ee:ee"  # cni-plugin: the host side of every workload veth
GATEWAY = IPv4Address("169.254.1.1")  # the pods' dummy next hop
BIRD = "bird"
FELIX = "80"  # Felix's own routes (vxlan mode, no BIRD)


def veth_name(pod: Pod) -> str:
    """The host end of a pod's veth (`topology.graph.cali_name`).

    >>> veth_name(Pod("default", "a", "node-1", IPv4Address("192.168.0.1")))
    'caliacd53aa4120'
    """
    return cali_name(pod.key)


def pod_mac(pod: Pod) -> str:
    """The pod's `eth0` MAC (the kernel's random one, made stable)."""
    return mac_from_name(f"{pod.key}/eth0")


def vtep_mac(node: NodeSpec) -> str:
    """vxlan.calico's MAC (calico-node generates one and stores it on the Node)."""
    return mac_from_name(f"{node.name}/{VXLAN_DEV}")


def build_node(fab: Fabric, node: NodeSpec) -> Netns:
    cfg = fab.cluster.config
    ns, _ = host_namespace(fab, node)
    default_route(fab, ns)
    tunnel = tunnel_ip(cfg, node)
    mtu = cfg.mtu - ENCAP_OVERHEAD.get(cfg.network, 0)
    if tunnel is not None:
        addr = (IPv4Interface(f"{tunnel}/32"),)
        if cfg.network is CalicoMode.IPIP:
            ns.add_interface(
                Interface(TUNL0, Kind.IPIP, "00:00:00:00:00:00", mtu, addr)
            )
        else:
            ns.add_interface(
                Interface(
                    VXLAN_DEV,
                    Kind.VXLAN,
                    vtep_mac(node),
                    mtu,
                    addr,
                    vni=VXLAN_VNI,
                    vxlan_port=cfg.vxlan_port,
                    vxlan_local=node.ip,
                    vxlan_dev="eth0",
                )
            )
        fab.owner_of_ip[str(tunnel)] = ns.id
    proto = FELIX if cfg.network is CalicoMode.VXLAN else BIRD
    ns.routes.add(Route(node.pod_cidr, "", proto=proto, blackhole=True))
    for other in cfg.nodes:
        if other.name == node.name:
            continue
        block = other.pod_cidr
        if cfg.network is CalicoMode.IPIP:
            ns.routes.add(Route(block, TUNL0, via=other.ip, onlink=True, proto=BIRD))
        elif cfg.network is CalicoMode.VXLAN:
            remote = tunnel_ip(cfg, other)
            assert remote is not None
            ns.routes.add(Route(block, VXLAN_DEV, via=remote, onlink=True, proto=FELIX))
            ns.permanent_neigh[(VXLAN_DEV, str(remote))] = vtep_mac(other)
            fab.vxlan_fdb[(ns.id, vtep_mac(other))] = str(other.ip)
        else:
            ns.routes.add(Route(block, "eth0", via=other.ip, proto=BIRD))
    return ns


def build_pod(fab: Fabric, pod: Pod, ns: Netns) -> None:
    routed_pod(fab, pod, ns, veth_name(pod), (pod_mac(pod), HOST_END_MAC), GATEWAY)


def gateway_routes(fab: Fabric, gw: Netns) -> None:
    """The underlay router does not peer with BIRD (no route reflector, no ToR peering
    configured): it learns no block, pod traffic that leaves is natOutgoing'd."""


def endpoint_chain(direction: Direction, pod: Pod) -> str:
    """Felix's chain for a pod's policy: `cali-fw-<if>` (from the workload: egress),
    `cali-tw-<if>` (to the workload: ingress)."""
    side = "fw" if direction is Direction.EGRESS else "tw"
    return f"cali-{side}-{veth_name(pod)} ({direction.value} of {pod.key})"


def to_host_chain(direction: Direction, pod: Pod) -> str:
    """From a workload to its own host: `cali-wl-to-host` runs its `cali-fw-<if>`."""
    return "cali-wl-to-host -> " + endpoint_chain(direction, pod)


FELIX_RULES = "felix"  # the hook name of Felix's own rules (not a NetworkPolicy's)


def _encapsulated(pkt: Packet, ctx: HookContext) -> str:
    """ "VXLAN" or "IPinIP" when `pkt` is what Felix's encapsulation rules match."""
    if pkt.ip is not None and pkt.ip.proto == IPPROTO_IPIP:
        return "IPinIP"
    if isinstance(pkt.l4, UDP) and pkt.l4.dport == ctx.cluster.config.vxlan_port:
        return "VXLAN"
    return ""


def from_workload(pkt: Packet, ctx: HookContext) -> HookResult:
    """`cali-fw-<if>`, after its conntrack ACCEPT of RELATED,ESTABLISHED and before the
    policy: encapsulated packets that a workload sends are dropped."""
    if ctx.in_if is None or not ctx.in_if.startswith("cali"):
        return None
    if ctx.ct_state is not CtState.NEW:
        return None
    what = _encapsulated(pkt, ctx)
    if not what:
        return None
    return Drop(
        f"cali-fw-{ctx.in_if}: Drop {what} encapped packets originating in workloads"
        " (allow" + ("VXLAN" if what == "VXLAN" else "IPIP") + "PacketsFromWorkloads:"
        " false)"
    )


_hosts: dict[int, tuple[Cluster, frozenset[str]]] = {}


def _host_addresses(cluster: Cluster) -> frozenset[str]:
    """The members of Felix's `cali40all-hosts-net` (and `all-vxlan-net`): the nodes."""
    return frozenset(str(n.ip) for n in cluster.config.nodes)


def to_host(pkt: Packet, ctx: HookContext) -> HookResult:
    """`cali-INPUT`'s first rules: the tunnel's packets only from the cluster's hosts."""
    mode = ctx.cluster.config.network
    what = _encapsulated(pkt, ctx)
    if pkt.ip is None or not what:
        return None
    hosts = once_per_cluster(_hosts, ctx.cluster, _host_addresses)
    if what == "IPinIP" and mode is CalicoMode.IPIP and pkt.ip.src not in hosts:
        return Drop(
            f"cali-INPUT: Drop IPIP packets from non-Calico hosts ({pkt.ip.src} is not"
            " in cali40all-hosts-net)"
        )
    if what == "VXLAN" and mode is CalicoMode.VXLAN and pkt.ip.src not in hosts:
        return Drop(
            f"cali-INPUT: Drop IPv4 VXLAN packets from non-allowed hosts ({pkt.ip.src}"
            " is not in cali40all-vxlan-net)"
        )
    return None


def policy_hooks() -> list[Hook]:
    """Felix's filter: cali-FORWARD's from-/to-workload dispatch, and cali-INPUT's
    workload-to-host chain (all named `netpol`, the filter's hook name), each after
    Felix's rules against encapsulation (named `felix`)."""
    return [
        Hook(HookPoint.FORWARD, PRIORITY_FILTER, FELIX_RULES, from_workload),
        Hook(HookPoint.INPUT, PRIORITY_FILTER, FELIX_RULES, to_host),
        Hook(HookPoint.INPUT, PRIORITY_FILTER, FELIX_RULES, from_workload),
        *endpoint_hooks(endpoint_chain, to_host_chain),
    ]


PLUGIN = CniPlugin(Cni.CALICO, build_node, build_pod, gateway_routes, policy_hooks)
