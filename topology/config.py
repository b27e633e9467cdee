"""The `cluster` section: defaults filled in and the address plan checked.

A node written without `ip` takes the lowest free host of nodeCIDR after the previous node
(skipping the gateway and every address given explicitly); without `podCIDR` it takes
`10.0.N.0/24`, N its 1-based position.  Overlapping pod CIDRs, a pod CIDR inside nodeCIDR or
serviceCIDR, a node address outside nodeCIDR or used twice are errors at the offending line.
So are a serviceCIDR without room for `default/kubernetes` (`.1`) and kube-dns (`.10`) or
larger than kube-apiserver allows, ranges and addresses in special-purpose blocks (loopback,
multicast, ...: `topology.fields.SPECIAL_RANGES`), more than `MAX_NODES` nodes, and an
external host whose address is taken or is not a unicast host outside the cluster.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network

from topology.docker import check_cluster_keys
from topology.errors import TopologyError
from topology.fields import parse_loose_cidr, special_range
from topology.ipam import (
    CILIUM_MASK,
    CILIUM_POOL,
    DNS_OFFSET,
    KUBERNETES_OFFSET,
    cluster_pool_cidr,
)
from topology.live import NodeEntry
from topology.model import (
    CNI_NETWORKS,
    ENCAP_OVERHEAD,
    MODELLED_CNIS,
    NODE_PORT_PRIMARY,
    PLANNED_NETWORKS,
    CalicoConfig,
    ClusterConfig,
    Cni,
    External,
    GatewayRoute,
    KubeProxyConfig,
    Loc,
    Network,
    NetworkMode,
    NodeSpec,
    PortSpec,
    Protocol,
    ProxyMode,
)
from topology.proxyschema import IPVS_LOCALHOST, KubeProxyModel, scheduler_problem
from topology.runtime import Runtime
from topology.schema import CalicoModel, ClusterModel, NodeModel
from topology.yamlsource import PathPart, format_path

LocateFn = Callable[[Sequence[PathPart]], Loc]

_BASE: tuple[PathPart, ...] = ("cluster",)
DEFAULT_NODE_COUNT = 2
HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
VXLAN_OVERHEAD = ENCAP_OVERHEAD["vxlan"]
# The VXLAN port when `vxlanPort` is not written: flannel's (Linux's default), Felix's
# `vxlanPort` (IANA's), Cilium's `tunnel-port` for vxlan (pkg/defaults TunnelPortVXLAN).
DEFAULT_VXLAN_PORT = {Cni.FLANNEL: 8472, Cni.CALICO: 4789, Cni.CILIUM: 8472}
# A CNI with its own IPAM ignores a node's podCIDR (why, for the error).
OWN_IPAM = {
    Cni.CALICO: "Calico's IPAM gives each node a block of cluster.calico.ipPool",
    Cni.CILIUM: f"Cilium's cluster-pool IPAM gives each node a /{CILIUM_MASK} of"
    f" {CILIUM_POOL}",
}
DOCKER_HOSTS = "every Docker host has docker0 172.17.0.0/16 and its own networks"
ENCAP_NAMES = {"vxlan": "VXLAN", "ipip": "IP-in-IP", "geneve": "Geneve"}
MIN_MTU = 68  # RFC 791: every IPv4 link must carry 68 bytes
# kube-apiserver validateClusterIPFlags: "specified --service-cluster-ip-range is too large;
# for 32-bit addresses, the mask must be >= 12" (at most 2^20 ClusterIPs).
MAX_SERVICE_CIDR_BITS = 20
# kubernetes.io/docs/setup/best-practices/cluster-large: "No more than 5,000 nodes".
MAX_NODES = 5000


class _Plan:
    def __init__(
        self,
        model: ClusterModel,
        locate: LocateFn,
        node_objects: Sequence[NodeEntry] | None,
    ) -> None:
        self.model = model
        self.locate = locate
        self._pod_cidrs: list[tuple[int, int, int]] = []  # (first, last, node index)
        self.node_objects = node_objects

    def fail(self, parts: Sequence[PathPart], reason: str) -> TopologyError:
        full = (*_BASE, *parts)
        return TopologyError(reason, self.locate(full), None, format_path(full))

    def config(self) -> ClusterConfig:
        m = self.model
        self._check_ranges()
        self._check_gateway()
        self.runtime = runtime = Runtime(m.runtime)  # nodeCIDR may lie in serviceCIDR
        check_cluster_keys(runtime, m.model_fields_set, self.fail)  # topology.docker
        self.cni = cni = Cni(m.cni)
        self.own_ipam = ("runtime: docker", DOCKER_HOSTS) if runtime is Runtime.DOCKER else (f"cni: {cni}", OWN_IPAM.get(cni))  # fmt: skip
        self.network = network = self._network(cni)
        self._check_devices(network)
        self.calico = self._calico() if cni is Cni.CALICO else None
        nodes = self._nodes()
        return ClusterConfig(
            network=network,
            cni=cni,
            runtime=runtime,
            calico=self.calico,
            vxlan_port=m.vxlan_port or DEFAULT_VXLAN_PORT[cni],
            bridge=m.bridge or "cbr0",
            mtu=m.mtu,
            node_cidr=m.node_cidr,
            gateway=self._gateway(),
            service_cidr=m.service_cidr,
            cluster_domain=m.cluster_domain,
            dns=m.dns and runtime is Runtime.KUBERNETES,
            nodes=nodes,
            externals=self._externals(nodes),
            kube_proxy=self._kube_proxy(),
            gateway_routes=self._gateway_routes(nodes),
        )

    def _network(self, cni: Cni) -> Network:
        """`network`, checked against the CNI, and the keys the CNI does not use."""
        m = self.model
        if cni not in MODELLED_CNIS:
            raise self.fail(
                ("cni",),
                f"cni: {cni} is not modelled yet (allowed: "
                + ", ".join(c.value for c in MODELLED_CNIS)
                + ")",
            )
        allowed = CNI_NETWORKS[cni]
        if m.network is None:
            network = allowed[0]
        elif m.network not in allowed:
            scope = "" if cni is Cni.FLANNEL else f" with cni: {cni}"
            raise self.fail(
                ("network",),
                f"{m.network!r} is not allowed{scope} (allowed: "
                + ", ".join(n.value for n in allowed)
                + ")",
            )
        else:
            network = next(n for n in allowed if n.value == m.network)
        if (cni, network) in PLANNED_NETWORKS:
            raise self.fail(
                ("network",),
                f"network {network} with cni: {cni} is not modelled yet (allowed: "
                + ", ".join(
                    n.value for n in allowed if (cni, n) not in PLANNED_NETWORKS
                )
                + ")",
            )
        unused: list[tuple[str, str]] = []
        if cni is not Cni.CALICO and m.calico is not None:
            unused.append(("calico", "it configures cni: calico"))
        if cni is not Cni.FLANNEL:  # Calico, Cilium: routed veths, their own VXLAN
            if m.bridge is not None:
                unused.append(("bridge", f"{cni.value.capitalize()} builds no bridge"))
            if m.vxlan_port is not None and network.value != "vxlan":
                unused.append(("vxlanPort", f"network {network} has no VXLAN device"))
        if cni is Cni.CILIUM and m.kube_proxy != KubeProxyModel():
            unused.append(("kubeProxy", "Cilium replaces kube-proxy"))
        for key, why in unused:
            raise self.fail((key,), f"cni: {cni} does not use {key} ({why})")
        return network

    def _calico(self) -> CalicoConfig:
        """`cluster.calico`: the pool in the unicast space, outside the node and Service
        networks, with a block for every node."""
        c = self.model.calico or CalicoModel()
        pool, size = c.ip_pool, c.block_size
        what = special_range(pool)
        if what is not None:
            raise self.fail(
                ("calico", "ipPool"),
                f"{pool} overlaps the {what} range (allowed: unicast ranges)",
            )
        for key, other in (
            ("nodeCIDR", self.model.node_cidr),
            ("serviceCIDR", self.model.service_cidr),
        ):
            if pool.overlaps(other):
                raise self.fail(("calico", "ipPool"), f"{pool} overlaps {key} {other}")
        if size < pool.prefixlen:
            raise self.fail(
                ("calico", "blockSize"),
                f"/{size} blocks do not fit in ipPool {pool} (allowed: {pool.prefixlen}"
                "-32)",
            )
        return CalicoConfig(pool, size)

    def _kube_proxy(self) -> KubeProxyConfig:
        """`cluster.kubeProxy`; an option of another mode than `mode` set to anything but its
        default is an error (kube-proxy would ignore it; nothing written is ignored here)."""
        m = self.model.kube_proxy
        mode = ProxyMode(m.mode)
        if mode is ProxyMode.IPVS:
            bad = scheduler_problem(m.ipvs.scheduler)
            if bad is not None:
                raise self.fail(("kubeProxy", "ipvs", "scheduler"), bad)
        for section in ("iptables", "nftables", "ipvs"):
            options = getattr(m, section)
            if section == "iptables" and mode is ProxyMode.IPVS:
                # ipvs mode reads iptables.masqueradeAll (cmd/kube-proxy), not the rest
                if not options.localhost_node_ports:
                    raise self.fail(
                        ("kubeProxy", "iptables", "localhostNodePorts"), IPVS_LOCALHOST
                    )
                continue
            if section != mode.value and options != type(options)():
                raise self.fail(
                    ("kubeProxy", section),
                    f"{section} options apply to mode {section}, and mode is"
                    f" {mode.value} (allowed here: {mode.value}, or the defaults)",
                )
        masq = (
            m.nftables.masquerade_all
            if mode is ProxyMode.NFTABLES
            else m.iptables.masquerade_all
        )
        return KubeProxyConfig(
            mode=mode,
            node_port_addresses=self._node_port_addresses(mode),
            masquerade_all=masq,
            # nftables mode never accepts NodePorts on 127.0.0.1 (KEP-3866).
            localhost_node_ports=mode is ProxyMode.IPTABLES
            and m.iptables.localhost_node_ports,
            ipvs_scheduler=m.ipvs.scheduler,
        )

    def _node_port_addresses(self, mode: ProxyMode) -> tuple[str, ...]:
        """`nodePortAddresses`: "primary" alone, or CIDRs (validateKubeProxyNodePortAddress);
        unset, every local address, but in nftables mode the primary address (KEP-3866)."""
        given = self.model.kube_proxy.node_port_addresses
        if given is None:
            return (NODE_PORT_PRIMARY,) if mode is ProxyMode.NFTABLES else ()
        out: list[str] = []
        for index, text in enumerate(given):
            where = ("kubeProxy", "nodePortAddresses", index)
            if text == NODE_PORT_PRIMARY:
                if len(given) > 1:
                    raise self.fail(where, "'primary' may not be combined with CIDRs")
                out.append(text)
                continue
            cidr = parse_loose_cidr(text) if "/" in text else None
            if cidr is None or str(cidr) != text:
                raise self.fail(
                    where,
                    f"{text!r} is not a CIDR (allowed: 'primary', or CIDRs such as"
                    " 10.100.0.0/24)",
                )
            out.append(text)
        return tuple(out)

    def _gateway_routes(self, nodes: tuple[NodeSpec, ...]) -> tuple[GatewayRoute, ...]:
        """`cluster.gatewayRoutes`: each `via: node/NAME` of a node, each cidr once."""
        names = [n.name for n in nodes]
        out: list[GatewayRoute] = []
        for index, r in enumerate(self.model.gateway_routes):
            where = ("gatewayRoutes", index)
            kind, _, name = r.via.partition("/")
            if kind != "node" or name not in names:
                raise self.fail(
                    (*where, "via"),
                    f"{r.via!r} is not a node (allowed: node/NAME, one of "
                    + ", ".join(f"node/{n}" for n in names)
                    + ")",
                )
            if any(o.cidr == r.cidr for o in out):
                raise self.fail((*where, "cidr"), f"duplicate route to {r.cidr}")
            out.append(GatewayRoute(r.cidr, name, self.locate((*_BASE, *where))))
        return tuple(out)

    def _gateway(self) -> IPv4Address:
        return self.model.gateway or self.model.node_cidr.network_address + 1

    def _check_ranges(self) -> None:
        m = self.model
        for key, cidr in (("nodeCIDR", m.node_cidr), ("serviceCIDR", m.service_cidr)):
            what = special_range(cidr)
            if what is not None:
                raise self.fail(
                    (key,),
                    f"{cidr} overlaps the {what} range (allowed: unicast ranges)",
                )
        cidr = m.service_cidr
        if 32 - cidr.prefixlen > MAX_SERVICE_CIDR_BITS:
            raise self.fail(
                ("serviceCIDR",),
                f"{cidr} is too large (allowed: a prefix of /{32 - MAX_SERVICE_CIDR_BITS}"
                " or longer, as kube-apiserver's --service-cluster-ip-range)",
            )
        # The API server gives `default/kubernetes` the first address of the range; kube-dns
        # is `.10` here (kubelet's conventional --cluster-dns).  Both must be host addresses.
        need, why = KUBERNETES_OFFSET, "default/kubernetes takes its .1"
        if m.dns:
            need, why = (
                DNS_OFFSET,
                "kube-dns takes its .10 and default/kubernetes its .1",
            )
        if cidr.num_addresses - 2 < need:
            longest = 32 - (need + 1).bit_length()
            extra = "; or set dns: false" if m.dns else ""
            raise self.fail(
                ("serviceCIDR",),
                f"{cidr} is too small: {why} (allowed: a prefix of /{longest} or"
                f" shorter{extra})",
            )

    def _check_gateway(self) -> None:
        gateway, cidr = self._gateway(), self.model.node_cidr
        if cidr.prefixlen > 29:
            raise self.fail(
                ("nodeCIDR",),
                f"{cidr} is too small (allowed: a prefix of /29 or shorter)",
            )
        if not _is_host(gateway, cidr):
            raise self.fail(
                ("gateway",), f"{gateway} is not a host address of nodeCIDR {cidr}"
            )

    def _check_devices(self, network: Network) -> None:
        m = self.model
        taken = {"lo", "eth0"} | (
            {"flannel.1"} if network is NetworkMode.VXLAN else set()
        )
        if m.bridge in taken:
            raise self.fail(
                ("bridge",),
                f"{m.bridge!r} is already a device of every node ({', '.join(sorted(taken))})",
            )
        overhead = ENCAP_OVERHEAD.get(network, 0)
        if overhead and m.mtu - overhead < MIN_MTU:
            raise self.fail(
                ("mtu",),
                f"{m.mtu} leaves {m.mtu - overhead} bytes inside"
                f" {ENCAP_NAMES[network]} (allowed: at least {MIN_MTU + overhead} with"
                f" network {network})",
            )

    def _entries(self) -> list[NodeEntry]:
        """`cluster.nodes` (or the default nodes) as node entries."""
        m = self.model
        written = m.nodes is not None
        models = m.nodes or [
            NodeModel(name=f"node-{i}") for i in range(1, DEFAULT_NODE_COUNT + 1)
        ]
        out = []
        for index, n in enumerate(models):
            where: tuple[PathPart, ...] = ("nodes", index) if written else ()

            def fail(
                key: str, reason: str, where: tuple[PathPart, ...] = where
            ) -> TopologyError:
                return self.fail((*where, key) if key and where else where, reason)

            out.append(
                NodeEntry(
                    n.name,
                    n.ip,
                    n.pod_cidr,
                    n.labels,
                    self.locate((*_BASE, *where)),
                    fail,
                )
            )
        return out

    def _nodes(self) -> tuple[NodeSpec, ...]:
        m = self.model
        entries = self._entries() if self.node_objects is None else self.node_objects
        if len(entries) > MAX_NODES:
            raise self.fail(
                ("nodes",) if m.nodes is not None else (),
                f"{len(entries)} nodes (allowed: at most {MAX_NODES})",
            )
        gateway = self._gateway()
        explicit = {n.ip for n in entries if n.ip is not None}
        used: dict[IPv4Address, str] = {}
        names: set[str] = set()
        cursor = m.node_cidr.network_address
        nodes: list[NodeSpec] = []
        for index, n in enumerate(entries):
            if n.name in names:
                raise n.fail("name", f"duplicate node name {n.name!r}")
            names.add(n.name)
            if n.ip is None:
                ip = cursor + 1
                while ip in explicit or ip in used or ip == gateway:
                    ip += 1
                if not _is_host(ip, m.node_cidr):
                    raise n.fail(
                        "",
                        f"nodeCIDR {m.node_cidr} has no free address for node {n.name!r}",
                    )
            else:
                ip = n.ip
                self._check_node_ip(ip, n, used, gateway)
            used[ip] = n.name
            cursor = ip
            what, why = self.own_ipam
            if why is not None and n.pod_cidr is not None:
                raise n.fail("podCIDR", f"{what} does not use podCIDR ({why})")
            pod_cidr = n.pod_cidr or self._default_pod_cidr(index + 1, n)
            self._check_pod_cidr(n, pod_cidr, nodes)
            labels = {**n.labels, HOSTNAME_LABEL: n.name}
            labels.setdefault(OS_LABEL, "linux")
            nodes.append(NodeSpec(n.name, ip, pod_cidr, labels, n.loc))
        return tuple(nodes)

    def _check_node_ip(
        self,
        ip: IPv4Address,
        n: NodeEntry,
        used: dict[IPv4Address, str],
        gateway: IPv4Address,
    ) -> None:
        cidr = self.model.node_cidr
        if not _is_host(ip, cidr):
            raise n.fail("ip", f"{ip} is not a host address of nodeCIDR {cidr}")
        if ip == gateway:
            raise n.fail("ip", f"{ip} is the gateway's address")
        if ip in used:
            raise n.fail("ip", f"{ip} is already the address of node {used[ip]!r}")

    def _default_pod_cidr(self, number: int, n: NodeEntry) -> IPv4Network:
        if self.calico is not None:
            return self._block(number, n)
        if self.cni is Cni.CILIUM:
            return self._cluster_pool(number, n)
        if number > 255:
            raise n.fail(
                "", f"no default podCIDR for node number {number}; give podCIDR"
            )
        return IPv4Network(f"10.0.{number}.0/24")

    def _block(self, number: int, n: NodeEntry) -> IPv4Network:
        """The IPAM block of the `number`th node: blocks of the pool in node order (Calico
        claims a free block at random, `ipam.go` randomBlockGenerator; in order here, so
        the same scenario gives the same addresses)."""
        assert self.calico is not None
        pool, size = self.calico.ip_pool, self.calico.block_size
        count = 1 << (size - pool.prefixlen)
        if number > count:
            raise n.fail(
                "",
                f"ipPool {pool} has {count} blocks of /{size}, none left for node"
                f" {n.name!r} (allowed: a larger pool or a longer blockSize)",
            )
        start = int(pool.network_address) + (number - 1) * (1 << (32 - size))
        return IPv4Network((start, size))

    def _cluster_pool(self, number: int, n: NodeEntry) -> IPv4Network:
        """Cilium's cluster-pool: the `number`th /24 of 10.0.0.0/8 (node 1: 10.0.0.0/24)."""
        found = cluster_pool_cidr(number)
        if found is None:
            raise n.fail("", f"cluster-pool {CILIUM_POOL} has no /{CILIUM_MASK} left"
                         f" for node {n.name!r}")  # fmt: skip
        return found

    def _check_pod_cidr(
        self, n: NodeEntry, cidr: IPv4Network, earlier: list[NodeSpec]
    ) -> None:
        m = self.model
        name = n.name

        def fail(fallback: tuple[PathPart, ...], reason: str) -> TopologyError:
            if n.pod_cidr is not None:
                return n.fail("podCIDR", reason)
            return self.fail(fallback, reason) if fallback else n.fail("", reason)

        if cidr.prefixlen > 30 and self.calico is None:
            raise fail(
                (),
                f"podCIDR {cidr} of node {name!r} is too small (allowed: /30 or shorter)",
            )
        for other, other_path in (
            (m.node_cidr, ("nodeCIDR",)),
            (m.service_cidr, ("serviceCIDR",)),
        ):
            if cidr.overlaps(other):
                key = str(other_path[0])
                raise fail(
                    other_path,
                    f"podCIDR {cidr} of node {name!r} overlaps {key} {other}",
                )
        what = special_range(cidr)
        if what is not None:
            raise fail((), f"podCIDR {cidr} of node {name!r} overlaps the {what} range")
        # CIDRs overlap only when one holds the other: the earlier podCIDRs are kept sorted,
        # so only the neighbours of this one's place need a look (10,000 nodes stay fast).
        first, last = int(cidr.network_address), int(cidr.broadcast_address)
        at = bisect.bisect_left(self._pod_cidrs, (first, -1, -1))
        for index in self._pod_cidr_overlaps(first, last, at):
            node = earlier[index]
            raise fail(
                (),
                f"podCIDR {cidr} of node {name!r} overlaps podCIDR {node.pod_cidr}"
                f" of node {node.name!r}",
            )
        self._pod_cidrs.insert(at, (first, last, len(earlier)))

    def _pod_cidr_overlaps(self, first: int, last: int, at: int) -> list[int]:
        """The nodes (indices) whose podCIDR meets `first..last`; `at` is its sorted place."""
        spans = self._pod_cidrs
        return [
            spans[i][2]
            for i in (at - 1, at)
            if 0 <= i < len(spans) and spans[i][0] <= last and spans[i][1] >= first
        ]

    def _externals(self, nodes: tuple[NodeSpec, ...]) -> tuple[External, ...]:
        m = self.model
        out: list[External] = []
        names: set[str] = set()
        addresses: dict[IPv4Address, str] = {}
        for index, e in enumerate(m.externals):
            where = ("externals", index)
            if e.name in names:
                raise self.fail((*where, "name"), f"duplicate external name {e.name!r}")
            names.add(e.name)
            self._check_external_ip(e.ip, (*where, "ip"), nodes, addresses)
            addresses[e.ip] = e.name
            seen: set[tuple[int, str]] = set()
            ports = []
            for pindex, p in enumerate(e.ports):
                if (p.port, p.protocol) in seen:
                    raise self.fail(
                        (*where, "ports", pindex),
                        f"duplicate port {p.port}/{p.protocol}",
                    )
                seen.add((p.port, p.protocol))
                ports.append(PortSpec(p.port, Protocol(p.protocol)))
            out.append(
                External(e.name, e.ip, tuple(ports), self.locate((*_BASE, *where)))
            )
        return tuple(out)

    def _check_external_ip(
        self,
        ip: IPv4Address,
        path: tuple[PathPart, ...],
        nodes: tuple[NodeSpec, ...],
        taken: dict[IPv4Address, str],
    ) -> None:
        """An external host's address: unicast, unused, outside every cluster range."""
        m = self.model
        what = special_range(IPv4Network(ip))
        if what is not None:
            # ValidateNonSpecialIP (pkg/apis/core/validation) refuses these for external
            # IPs; a host on the underlay cannot have a multicast or broadcast address.
            raise self.fail(
                path, f"{ip} is in the {what} range (allowed: a unicast host address)"
            )
        if ip in taken:
            raise self.fail(
                path, f"{ip} is already the address of external {taken[ip]!r}"
            )
        inside = [("nodeCIDR", m.node_cidr), ("serviceCIDR", m.service_cidr)]
        if self.calico is not None:
            inside.append(("calico.ipPool", self.calico.ip_pool))
        value = int(ip)
        at = bisect.bisect_left(self._pod_cidrs, (value, -1, -1))
        for i in self._pod_cidr_overlaps(value, value, at):
            inside.append((f"podCIDR of node {nodes[i].name!r}", nodes[i].pod_cidr))
        for where, cidr in inside:
            if ip in cidr:
                raise self.fail(
                    path,
                    f"{ip} is inside {where} {cidr}"
                    " (an external host is outside the cluster)",
                )


def _is_host(ip: IPv4Address, cidr: IPv4Network) -> bool:
    return ip in cidr and ip not in (cidr.network_address, cidr.broadcast_address)


def cluster_config(
    model: ClusterModel,
    locate: LocateFn,
    node_objects: Sequence[NodeEntry] | None = None,
) -> ClusterConfig:
    """The ClusterConfig of a validated `cluster` section; `locate` maps paths to lines.

    `node_objects` (Node objects of the manifests) replace `cluster.nodes`."""
    return _Plan(model, locate, node_objects).config()


def default_config() -> ClusterConfig:
    """The configuration of a scenario without a `cluster` section."""
    return cluster_config(ClusterModel(), lambda _parts: Loc("<built-in>"))
