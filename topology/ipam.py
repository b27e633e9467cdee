"""Deterministic address management: pod IPs, MACs, Service ClusterIPs and NodePorts.

Real clusters pick ClusterIPs at random; here every allocator hands out the LOWEST free value,
so the same scenario always gives the same addresses:
- a node's bridge takes the first host of its podCIDR (the `host-local` IPAM gateway), pods
  take the next free host after the last one handed out, from `.2` on and round the range
  again past its last host, as CNI host-local does (containernetworking/plugins
  plugins/ipam/host-local/backend/allocator: `GetIter` starts after the range's
  `last_reserved_ip`): a deleted pod's address is free again, but is handed out only
  once the search comes round to it;
- with Calico a node's podCIDR is its IPAM block: every address of it is usable (Calico's
  IPAM hands out the network and broadcast addresses of a block too); in ipip and vxlan
  mode the first (`.0` of the block) is the tunnel device's (calico-node allocates it
  before any pod, `node/pkg/allocateip`), pods take the lowest free from the next on;
- `.1` of serviceCIDR is `default/kubernetes`, `.10` is kube-dns (reserved even without DNS,
  so turning DNS off never shifts other ClusterIPs), others the lowest free from `.2`;
- NodePorts come from 30000-32767 (kube-apiserver `--service-node-port-range`), lowest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from itertools import chain

from topology.model import CalicoMode, ClusterConfig, Cni, NetworkMode, NodeSpec

NODE_PORT_RANGE = (30000, 32767)
KUBERNETES_OFFSET = 1
DNS_OFFSET = 10


def mac_for(ip: IPv4Address | str) -> str:
    """The MAC the CNI bridge plugin derives from an IPv4 address (`0a:58` + the 4 bytes).

    >>> mac_for(IPv4Address("10.0.1.3"))
    '0a:58:0a:00:01:03'
    >>> mac_for("10.0.2.1")
    '0a:58:0a:00:02:01'
    """
    packed = IPv4Address(ip).packed
    return "0a:58:" + ":".join(f"{b:02x}" for b in packed)


def host(network: IPv4Network, offset: int) -> IPv4Address:
    """The address `offset` hosts into a network.

    >>> host(IPv4Network("10.96.0.0/12"), 10)
    IPv4Address('10.96.0.10')
    """
    return network.network_address + offset


def kubernetes_ip(service_cidr: IPv4Network) -> IPv4Address:
    """ClusterIP of `default/kubernetes` (the first address of serviceCIDR)."""
    return host(service_cidr, KUBERNETES_OFFSET)


def dns_ip(service_cidr: IPv4Network) -> IPv4Address:
    """ClusterIP of `kube-system/kube-dns` (`.10`, kubelet's conventional `--cluster-dns`)."""
    return host(service_cidr, DNS_OFFSET)


class Pool:
    """The integers `first..last` minus those taken; hands out the lowest free one.

    A held value is skipped by `allocate` but may still be claimed explicitly (the
    reserved `.1` and `.10` of serviceCIDR, or a nodePort another object asks for by number).

    >>> pool = Pool(2, 5, taken=[3])
    >>> pool.hold(4)
    >>> pool.allocate(), pool.allocate(), pool.allocate()
    (2, 5, None)
    >>> pool.release(3)
    >>> pool.allocate(), pool.claim(4), pool.claim(4)
    (3, True, False)
    """

    __slots__ = ("first", "held", "last", "low", "taken")

    def __init__(self, first: int, last: int, taken: Iterable[int] = ()) -> None:
        self.first = first
        self.last = last
        self.taken = set(taken)
        self.held: set[int] = set()
        self.low = first  # every value below `low` is taken or held

    def allocate_after(self, start: int) -> int | None:
        """The first free value after `start`, round to `first` past `last`."""
        after = range(start + 1, self.last + 1)
        for value in chain(after, range(self.first, min(start, self.last) + 1)):
            if value not in self.taken and value not in self.held:
                self.taken.add(value)
                return value
        return None

    def allocate(self) -> int | None:
        value = self.low
        while value in self.taken or value in self.held:
            value += 1
        if value > self.last:
            self.low = value
            return None
        self.taken.add(value)
        self.low = value + 1
        return value

    def claim(self, value: int) -> bool:
        """Take a given value; False when it is outside the pool or already taken."""
        if not self.first <= value <= self.last or value in self.taken:
            return False
        self.taken.add(value)
        return True

    def hold(self, value: int) -> None:
        """Keep `value` from automatic allocation."""
        self.held.add(value)

    def release(self, value: int) -> None:
        self.taken.discard(value)
        self.low = min(self.low, value)

    def __len__(self) -> int:
        return len(self.taken)

    @property
    def size(self) -> int:
        return self.last - self.first + 1


# Cilium's default IPAM (Helm values `ipam.mode: cluster-pool`,
# `ipam.operator.clusterPoolIPv4PodCIDRList: ["10.0.0.0/8"]`,
# `clusterPoolIPv4MaskSize: 24`): the operator hands each node the next free /24 of the
# pool (its CIDR set allocates from the start of the pool, in the order nodes appear;
# here: node order).
CILIUM_POOL = IPv4Network("10.0.0.0/8")
CILIUM_MASK = 24


def cluster_pool_cidr(number: int) -> IPv4Network | None:
    """The podCIDR of the `number`th node (from 1) in Cilium's cluster-pool, or None.

    >>> cluster_pool_cidr(2)
    IPv4Network('10.0.1.0/24')
    """
    if number > 1 << (CILIUM_MASK - CILIUM_POOL.prefixlen):
        return None
    start = int(CILIUM_POOL.network_address) + (number - 1) * (1 << (32 - CILIUM_MASK))
    return IPv4Network((start, CILIUM_MASK))


def tunnel_ip(config: ClusterConfig, node: NodeSpec) -> IPv4Address | None:
    """The node's tunnel address inside its podCIDR: flannel.1's (vxlan), tunl0's or
    vxlan.calico's (Calico ipip, vxlan): the network address of the podCIDR or block."""
    net = config.network  # by identity: the modes of different CNIs compare equal
    encap = any(
        net is m for m in (NetworkMode.VXLAN, CalicoMode.IPIP, CalicoMode.VXLAN)
    )
    return node.pod_cidr.network_address if encap else None


def gateway_ip(config: ClusterConfig, node: NodeSpec) -> IPv4Address | None:
    """The pods' gateway on the node inside its podCIDR: the bridge's address (flannel),
    `cilium_host`'s router address (Cilium: the first host of the podCIDR); None with
    Calico (pods route to 169.254.1.1, which no device holds)."""
    return None if config.cni is Cni.CALICO else node.bridge_ip


def node_pod_addresses(config: ClusterConfig, node: NodeSpec) -> list[IPv4Address]:
    """The node's own addresses inside its podCIDR (bridge, tunnel device)."""
    found = (gateway_ip(config, node), tunnel_ip(config, node))
    return [ip for ip in found if ip is not None]


class PodAddresses:
    """Pod addresses of one node's podCIDR: `.2` up to the last host (`.1` is the bridge),
    handed out round-robin after `last` (flannel's host-local, see the module); with
    Calico every address of the block but the tunnel device's, and with Calico and Cilium
    the lowest free one (their IPAMs take the first free ordinal of the block or CIDR).

    >>> pool = PodAddresses(IPv4Network("10.0.1.0/24"))
    >>> a, b = pool.allocate(), pool.allocate()
    >>> pool.release(a)
    >>> str(pool.allocate()), str(pool.last_given)
    ('10.0.1.4', '10.0.1.4')
    """

    __slots__ = ("cidr", "last_given", "pool", "reserved", "round_robin")

    def __init__(
        self,
        cidr: IPv4Network,
        used: Iterable[IPv4Address] = (),
        config: ClusterConfig | None = None,
        last_given: IPv4Address | None = None,
    ) -> None:
        self.cidr = cidr
        self.round_robin = config is None or config.cni is Cni.FLANNEL
        self.last_given = (
            last_given
            if self.round_robin and last_given is not None and last_given in cidr
            else None
        )
        base = int(cidr.network_address)
        first, last = 2, cidr.num_addresses - 2
        self.reserved = {1: f"the bridge's address (the first host of podCIDR {cidr})"}
        if config is not None and config.cni is Cni.CILIUM:
            self.reserved = {
                1: f"cilium_host's router address (the first host of podCIDR {cidr})"
            }
        if config is not None and config.cni is Cni.CALICO:
            first, last = 0, cidr.num_addresses - 1
            self.reserved = {}
            if config.network is not CalicoMode.BGP:
                first = 1
                self.reserved = {
                    0: f"the tunnel device's address (the first of IPAM block {cidr})"
                }
        self.pool = Pool(first, last, (int(ip) - base for ip in used))

    def allocate(self) -> IPv4Address | None:
        if self.last_given is None:
            offset = self.pool.allocate()
        else:
            start = int(self.last_given) - int(self.cidr.network_address)
            offset = self.pool.allocate_after(start)
        if offset is None:
            return None
        ip = host(self.cidr, offset)
        if self.round_robin:
            self.last_given = ip
        return ip

    def release(self, ip: IPv4Address) -> None:
        self.pool.release(int(ip) - int(self.cidr.network_address))

    def hold(self, ip: IPv4Address) -> None:
        """Keep an address a later pod records (`status.podIP`) from allocation."""
        if ip in self.cidr:
            self.pool.hold(int(ip) - int(self.cidr.network_address))

    def claim(self, ip: IPv4Address) -> str | None:
        """Take a given address; the reason it cannot be taken, or None."""
        if ip not in self.cidr:
            return f"{ip} is outside podCIDR {self.cidr}"
        offset = int(ip) - int(self.cidr.network_address)
        if offset in self.reserved:
            return f"{ip} is {self.reserved[offset]}"
        if not self.pool.first <= offset <= self.pool.last:
            return f"{ip} is not a host address of podCIDR {self.cidr}"
        if not self.pool.claim(offset):
            return f"{ip} is already in use"
        return None

    @property
    def capacity(self) -> int:
        return self.pool.size

    @property
    def free(self) -> int:
        """Addresses not handed out yet."""
        return self.pool.size - len(self.pool)


class ServiceAddresses:
    """ClusterIPs of serviceCIDR; `.1` and `.10` are never handed out automatically."""

    __slots__ = ("cidr", "pool")

    def __init__(self, cidr: IPv4Network, used: Iterable[IPv4Address] = ()) -> None:
        self.cidr = cidr
        base = int(cidr.network_address)
        self.pool = Pool(1, cidr.num_addresses - 2, (int(ip) - base for ip in used))
        self.pool.hold(KUBERNETES_OFFSET)
        self.pool.hold(DNS_OFFSET)

    def allocate(self) -> IPv4Address | None:
        offset = self.pool.allocate()
        return None if offset is None else host(self.cidr, offset)

    def claim(self, ip: IPv4Address) -> str | None:
        """Take an explicit `clusterIP`; the reason it cannot be taken, or None."""
        if not self.is_usable(ip):
            return f"{ip} is not a usable address of serviceCIDR {self.cidr}"
        if not self.pool.claim(int(ip) - int(self.cidr.network_address)):
            return f"{ip} is already allocated"
        return None

    def hold(self, ip: IPv4Address) -> None:
        """Keep an address that a later object asks for from automatic allocation."""
        if self.is_usable(ip):
            self.pool.hold(int(ip) - int(self.cidr.network_address))

    def is_usable(self, ip: IPv4Address) -> bool:
        cidr = self.cidr
        return ip in cidr and ip not in (cidr.network_address, cidr.broadcast_address)

    def release(self, ip: IPv4Address) -> None:
        self.pool.release(int(ip) - int(self.cidr.network_address))


def node_ports(used: Iterable[int] = ()) -> Pool:
    """The NodePort allocator with the ports already in use."""
    return Pool(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1], used)
