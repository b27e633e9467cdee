"""The `cluster` section: defaults filled in and the address plan checked.

A node written without `ip` takes the lowest free host of nodeCIDR after the previous node
(skipping the gateway and every address given explicitly); without `podCIDR` it takes
`10.0.N.0/24`, N its 1-based position.  Overlapping pod CIDRs, a pod CIDR inside nodeCIDR or
serviceCIDR, a node address outside nodeCIDR or used twice are errors at the offending line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network

from topology.errors import TopologyError
from topology.live import NodeEntry
from topology.model import (
    ClusterConfig,
    External,
    Loc,
    NetworkMode,
    NodeSpec,
    PortSpec,
    Protocol,
)
from topology.schema import ClusterModel, NodeModel
from topology.yamlsource import PathPart, format_path

LocateFn = Callable[[Sequence[PathPart]], Loc]

_BASE: tuple[PathPart, ...] = ("cluster",)
DEFAULT_NODE_COUNT = 2
HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8
MIN_MTU = 68  # RFC 791: every IPv4 link must carry 68 bytes


class _Plan:
    def __init__(
        self,
        model: ClusterModel,
        locate: LocateFn,
        node_objects: Sequence[NodeEntry] | None,
    ) -> None:
        self.model = model
        self.locate = locate
        self.node_objects = node_objects

    def fail(self, parts: Sequence[PathPart], reason: str) -> TopologyError:
        full = (*_BASE, *parts)
        return TopologyError(reason, self.locate(full), None, format_path(full))

    def config(self) -> ClusterConfig:
        m = self.model
        self._check_gateway()
        # nodeCIDR may lie inside serviceCIDR: the defaults do (10.100.0.0/24 in 10.96.0.0/12).
        network = NetworkMode(m.network)
        self._check_devices(network)
        nodes = self._nodes()
        return ClusterConfig(
            network=network,
            vxlan_port=m.vxlan_port,
            bridge=m.bridge,
            mtu=m.mtu,
            node_cidr=m.node_cidr,
            gateway=self._gateway(),
            service_cidr=m.service_cidr,
            cluster_domain=m.cluster_domain,
            dns=m.dns,
            nodes=nodes,
            externals=self._externals(nodes),
        )

    def _gateway(self) -> IPv4Address:
        return self.model.gateway or self.model.node_cidr.network_address + 1

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

    def _check_devices(self, network: NetworkMode) -> None:
        m = self.model
        taken = {"lo", "eth0"} | (
            {"flannel.1"} if network is NetworkMode.VXLAN else set()
        )
        if m.bridge in taken:
            raise self.fail(
                ("bridge",),
                f"{m.bridge!r} is already a device of every node ({', '.join(sorted(taken))})",
            )
        if network is NetworkMode.VXLAN and m.mtu - VXLAN_OVERHEAD < MIN_MTU:
            raise self.fail(
                ("mtu",),
                f"{m.mtu} leaves {m.mtu - VXLAN_OVERHEAD} bytes inside VXLAN"
                f" (allowed: at least {MIN_MTU + VXLAN_OVERHEAD} with network vxlan)",
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
        if number > 255:
            raise n.fail(
                "", f"no default podCIDR for node number {number}; give podCIDR"
            )
        return IPv4Network(f"10.0.{number}.0/24")

    def _check_pod_cidr(
        self, n: NodeEntry, cidr: IPv4Network, earlier: list[NodeSpec]
    ) -> None:
        m = self.model
        name = n.name

        def fail(fallback: tuple[PathPart, ...], reason: str) -> TopologyError:
            if n.pod_cidr is not None:
                return n.fail("podCIDR", reason)
            return self.fail(fallback, reason) if fallback else n.fail("", reason)

        if cidr.prefixlen > 30:
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
        for node in earlier:
            if cidr.overlaps(node.pod_cidr):
                raise fail(
                    (),
                    f"podCIDR {cidr} of node {name!r} overlaps podCIDR {node.pod_cidr}"
                    f" of node {node.name!r}",
                )

    def _externals(self, nodes: tuple[NodeSpec, ...]) -> tuple[External, ...]:
        m = self.model
        out: list[External] = []
        for index, e in enumerate(m.externals):
            where = ("externals", index)
            if any(x.name == e.name for x in out):
                raise self.fail((*where, "name"), f"duplicate external name {e.name!r}")
            inside = [("nodeCIDR", m.node_cidr), ("serviceCIDR", m.service_cidr)]
            inside += [(f"podCIDR of node {n.name!r}", n.pod_cidr) for n in nodes]
            for what, cidr in inside:
                if e.ip in cidr:
                    raise self.fail(
                        (*where, "ip"),
                        f"{e.ip} is inside {what} {cidr}"
                        " (an external host is outside the cluster)",
                    )
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
