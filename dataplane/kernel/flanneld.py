"""What flanneld's backends program on a node, from the node leases (issue 13).

flanneld is not packaged by Debian, so its backends' netlink calls are made here, from
the subnet leases flanneld reads (each node's name, public IP, podCIDR and, for vxlan,
its VTEP MAC), not from the simulator's fabric (`dataplane.cni.flannel`): the kernel
side of `verify` then checks the simulator's overlay against flannel's own rules.

- vxlan (flannel pkg/backend/vxlan): `newVXLANDevice` makes `flannel.1` (VNI 1, the
  configured UDP port, local address the node's public IP, `VtepDevIndex` its external
  interface, learning off, MTU that interface's minus 50) with the lease's subnet address
  as a /32; for every other node's lease (`handleSubnetEvents`, EventAdded): `AddARP`
  (a PERMANENT neighbour for the remote subnet's address with the remote VTEP MAC),
  `AddFDB` (a PERMANENT, NTF_SELF FDB entry: that MAC at the remote public IP) and
  `RouteReplace` of `<subnet> via <subnet address> dev flannel.1 onlink`;
- host-gw (pkg/backend/hostgw, pkg/backend/route_network.go): for every other lease
  `RouteReplace` of `<subnet> via <public IP> dev <external interface>`.
A lease's VTEP MAC is published by the node that made its device (flanneld makes a random
one and keeps it in the Node annotation `flannel.alpha.coreos.com/backend-data`); here it
is the model's (`topology.ipam.mac_for` of the VTEP address), so that both sides match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from topology.ipam import mac_for
from topology.model import ClusterConfig, Cni, NetworkMode

VTEP = "flannel.1"
VNI = 1
VXLAN_OVERHEAD = 50
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 4
# vishvananda/netlink's RouteReplace sends RTPROT_BOOT unless told (nl.NewRtMsg), which
# `ip route` does not print: flannel's routes read `... dev flannel.1 onlink`
RTPROT_BOOT = 3
EXTERNAL = "eth0"  # the node's interface on the underlay (`--iface`)


@dataclass(frozen=True, slots=True)
class Lease:
    """A node's subnet lease, as flanneld's kube subnet manager reads it from a Node."""

    node: str
    public_ip: IPv4Address
    subnet: IPv4Network
    vtep_mac: str


def programs(config: ClusterConfig) -> bool:
    """Whether flanneld's backend programs the nodes (vxlan, host-gw); `routed` has no
    node routes (the gateway holds them)."""
    return config.cni is Cni.FLANNEL and config.network in (
        NetworkMode.VXLAN,
        NetworkMode.HOST_GW,
    )


def leases(config: ClusterConfig) -> list[Lease]:
    return [
        Lease(n.name, n.ip, n.pod_cidr, mac_for(n.pod_cidr.network_address))
        for n in config.nodes
    ]


def overlay_routes(config: ClusterConfig, node: str) -> set[IPv4Network]:
    """The destinations flanneld routes on `node`: every other lease's subnet."""
    return {lease.subnet for lease in leases(config) if lease.node != node}


def program(
    ipr: Any,
    index_of: Callable[[str], int],
    config: ClusterConfig,
    node: str,
) -> None:
    """Program `node` (its namespace's IPRoute `ipr`) as flanneld's backend does."""
    own = next(lease for lease in leases(config) if lease.node == node)
    others = [lease for lease in leases(config) if lease.node != node]
    ext = index_of(EXTERNAL)
    if config.network is NetworkMode.HOST_GW:
        for lease in others:
            ipr.route(
                "replace",
                dst=str(lease.subnet),
                gateway=str(lease.public_ip),
                oif=ext,
                proto=RTPROT_BOOT,
            )
        return
    (link,) = ipr.get_links(ext)
    ipr.link(
        "add",
        ifname=VTEP,
        kind="vxlan",
        address=own.vtep_mac,
        mtu=int(link.get_attr("IFLA_MTU")) - VXLAN_OVERHEAD,
        vxlan_id=VNI,
        vxlan_port=config.vxlan_port,
        vxlan_local=str(own.public_ip),
        vxlan_link=ext,
        vxlan_learning=0,
    )
    vtep = index_of(VTEP)
    ipr.addr("add", index=vtep, address=str(own.subnet.network_address), prefixlen=32)
    ipr.link("set", index=vtep, state="up")
    for lease in others:
        gateway = str(lease.subnet.network_address)
        ipr.neigh(
            "replace",
            dst=gateway,
            lladdr=lease.vtep_mac,
            ifindex=vtep,
            state=NUD_PERMANENT,
        )
        ipr.fdb(
            "replace",
            ifindex=vtep,
            lladdr=lease.vtep_mac,
            dst=str(lease.public_ip),
            state=NUD_PERMANENT,
            flags=NTF_SELF,
        )
        ipr.route(
            "replace",
            dst=str(lease.subnet),
            gateway=gateway,
            oif=vtep,
            flags=RTNH_F_ONLINK,
            proto=RTPROT_BOOT,
        )
