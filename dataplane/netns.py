"""Network namespaces and their interfaces: the static half of the dataplane.

A `Netns` is what `ip netns` would show: interfaces (name, MAC, MTU, addresses, the kind of
device and, for a veth, its peer; for a bridge port, its `master`), the main routing table,
permanent neighbour entries, whether it forwards (`net.ipv4.ip_forward`), its netfilter hooks
and its listening sockets.  Everything that a walk learns (neighbours, FDB entries, conntrack)
lives in `dataplane.state.WalkState`, so one fabric serves many independent walks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface

from dataplane.routing import RoutingTable
from topology.model import Pod, Protocol


class Kind(StrEnum):
    """Device kinds, as `ip -d link` names them."""

    VETH = "veth"
    BRIDGE = "bridge"
    VXLAN = "vxlan"
    GENEVE = "geneve"  # Cilium's cilium_geneve (collect-metadata), UDP 6081
    IPIP = "ipip"  # IP-in-IP (protocol 4), no link header: Calico's tunl0
    ETH = "eth"  # attached to an L2 segment (the underlay switch)
    LOOPBACK = "loopback"
    DUMMY = "dummy"  # no link: addresses only (kube-proxy's kube-ipvs0)


# The devices that carry an Ethernet frame in UDP: `dataplane.vxlan` encapsulates for both.
UDP_TUNNELS = frozenset({Kind.VXLAN, Kind.GENEVE})


class NetnsKind(StrEnum):
    POD = "pod"
    HOST = "host"
    EXTERNAL = "external"
    GATEWAY = "gateway"


@dataclass(slots=True)
class Interface:
    ifname: str
    kind: Kind
    mac: str
    mtu: int
    addrs: tuple[IPv4Interface, ...] = ()
    peer: tuple[str, str] | None = None  # (netns id, ifname) of a veth's other end
    master: str | None = None  # the bridge this port belongs to
    hairpin: bool = False  # bridge port flag: may send a frame back out of its ingress
    segment: str | None = (
        None  # the L2 segment (switch) an ETH interface is plugged into
    )
    vni: int = 0
    vxlan_port: int = 0  # a UDP tunnel's (VXLAN's or Geneve's) destination port
    vxlan_local: IPv4Address | None = None
    vxlan_dev: str = ""  # for VXLAN and Geneve: the underlay device
    # net.ipv4.conf.<if>.proxy_arp: answer ARP for any address routed out of another
    # device (arp_fwd_proxy), as Calico sets it on every `cali…` host end
    proxy_arp: bool = False
    # `addrs` as text, written when they change (`Netns.add_address`), read per packet
    texts: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.texts = tuple(str(a.ip) for a in self.addrs)

    def has_addr(self, ip: str) -> bool:
        return ip in self.texts

    @property
    def primary(self) -> IPv4Address | None:
        return self.addrs[0].ip if self.addrs else None


@dataclass(frozen=True, slots=True)
class Socket:
    """A listening socket: which container (or host program) owns it."""

    protocol: Protocol
    port: int
    owner: str  # container name, "coredns", "host", external name


@dataclass(slots=True)
class Netns:
    """One network namespace."""

    id: str  # unique: "node-1", "pod:default/a", "external:web", "gateway"
    kind: NetnsKind
    node: str  # where it is drawn: node name, "gateway", "external"
    label: str  # for the trace: "host", "pod default/a", "external web", "gateway"
    interfaces: dict[str, Interface] = field(default_factory=dict)
    routes: RoutingTable = field(default_factory=RoutingTable)
    permanent_neigh: dict[tuple[str, str], str] = field(default_factory=dict)
    forwarding: bool = False
    sockets: dict[tuple[Protocol, int], Socket] = field(default_factory=dict)
    pod: Pod | None = None
    hooks: object | None = None  # dataplane.netfilter.Netfilter for node namespaces
    _local: set[str] = field(default_factory=set)
    # the `broadcast` routes of the local table (fib_add_ifaddr(): the directed broadcast
    # of each address shorter than /31; loopback's are left out, as 127/8 is local)
    _broadcast: set[str] = field(default_factory=set)

    def add_interface(self, iface: Interface) -> Interface:
        self.interfaces[iface.ifname] = iface
        for a in iface.addrs:
            self._add_local(iface, a)
        return iface

    def add_address(self, ifname: str, addr: IPv4Interface) -> None:
        iface = self.interfaces[ifname]
        iface.addrs = (*iface.addrs, addr)
        iface.texts = (*iface.texts, str(addr.ip))
        self._add_local(iface, addr)

    def _add_local(self, iface: Interface, addr: IPv4Interface) -> None:
        self._local.add(str(addr.ip))
        if addr.network.prefixlen < 31 and iface.kind is not Kind.LOOPBACK:
            self._broadcast.add(str(addr.network.broadcast_address))

    def is_broadcast(self, ip: str) -> bool:
        """Whether `ip` is a directed broadcast of this namespace (a `broadcast` route)."""
        return ip in self._broadcast

    def is_local(self, ip: str) -> bool:
        """Whether `ip` is one of this namespace's addresses (the `local` table)."""
        return ip in self._local or ip.startswith("127.")

    def addresses(self) -> list[str]:
        """Every address of this namespace but loopback's, interface by interface."""
        return [
            str(a.ip)
            for i in self.interfaces.values()
            if i.kind is not Kind.LOOPBACK
            for a in i.addrs
        ]

    def source_for(self, oif: str, dst: str | None = None) -> str:
        """The source address the kernel picks for a packet leaving `oif`."""
        iface = self.interfaces[oif]
        if iface.texts:
            return iface.texts[0]
        for other in self.interfaces.values():
            if other.texts and other.kind is not Kind.LOOPBACK:
                return other.texts[0]
        return "0.0.0.0"

    def listen(self, protocol: Protocol, port: int, owner: str) -> None:
        self.sockets[(protocol, port)] = Socket(protocol, port, owner)
