"""kube-proxy as netfilter hooks on every node: the semantics of its iptables mode.

The chains it writes, and where they live here:

- nat `PREROUTING` (traffic arriving, from pods or from outside) and nat `OUTPUT` (traffic the
  node sends itself) jump to `KUBE-SERVICES`: a NEW connection to a ClusterIP:port, to a
  LoadBalancer address:port, or to a nodePort on any address of this node (`KUBE-NODEPORTS`,
  `--dst-type LOCAL`, 127.0.0.1 included as with `--iptables-localhost-nodeports`) is DNATed
  to one ready endpoint (`KUBE-SEP-…`).
  Conntrack rewrites every later packet of the connection and un-DNATs the replies.
- `KUBE-MARK-MASQ` is set where kube-proxy sets it: traffic to a ClusterIP from an address
  outside every podCIDR (`! -s clusterCIDR`, so the node's own traffic), an endpoint reaching
  itself through its Service (hairpin, `-s <endpoint IP>` in `KUBE-SEP-…`), and external
  traffic with `externalTrafficPolicy: Cluster`.  The MASQUERADE itself is done in nat
  `POSTROUTING` by `dataplane.masquerade` (`KUBE-POSTROUTING`).
- filter `INPUT`, `FORWARD`, `OUTPUT` (`KUBE-SERVICES`, `KUBE-EXTERNAL-SERVICES`): a Service
  port without any ready endpoint is REJECTed (ICMP port unreachable: the client sees
  "connection refused"); one whose traffic policy is `Local` and that has no endpoint on this
  node is DROPped.

Traffic policies (KEP-1669 and its predecessors):
- ClusterIP traffic uses every ready endpoint; with `internalTrafficPolicy: Local` only
  those on the node the traffic enters (no endpoint there: DROP).  Either way the node's own
  traffic is masqueraded.
- NodePort and LoadBalancer traffic (`KUBE-EXT-…`) with `externalTrafficPolicy: Cluster` is
  masqueraded and may go to any node's endpoint; with `Local` it keeps the client's address and
  only uses endpoints on this node (none there: DROP), except that pod traffic short-circuits
  to the cluster-wide chain and the node's own traffic is masqueraded and goes cluster-wide
  too.

Endpoints (the EndpointSlice controller, `dataplane.kubeproxy_endpoints`): the pods of the
Service's namespace whose labels match its selector (a Service without selector has none),
with their conditions (ready, serving, terminating) and topology (zone, hints), each with
the port its `targetPort` names: a number as it is, a name resolved per pod among that pod's
containerPorts of the same protocol (a pod without that port is no endpoint of that Service
port).  The Cluster-policy candidates on a node are the ready ones, narrowed by topology
hints, else the serving-terminating ones; the Local-policy ones the node's own.

The endpoint choice.  kube-proxy's iptables mode picks with a cascade of
`-m statistic --mode random --probability 1/(n-i)` rules (nftables mode: `numgen random mod
n`), a uniform choice among the n candidates.  This simulator is deterministic instead: the
candidates are sorted by pod key (`NS/NAME`) and the index is

    int(blake2b(b"<proto> <src> <sport> <dst> <dport>", key=b"kube-proxy",
                digest_size=8)) % len(candidates)

over the packet's flow as kube-proxy sees it (`<proto>` the IP protocol number, e.g.
`6 10.0.1.3 40000 10.96.0.11 80`).  With `sessionAffinity: ClientIP` a client the node
remembers within the timeout goes to its endpoint again (`dataplane.affinity`).  A keyed cryptographic hash mixes well: neighbouring client addresses or ports land on
independent endpoints (a CRC-32 of the flow, used before, sent 16 adjacent clients to one).
The trace names the pick, "a choice among n", and the formula
(`dataplane.flowhash.pick_index`).
`chosen_by_kernel(...)` overrides the pick with the endpoint a real kube-proxy chose
(`dataplane verify` reads it from the kernel's conntrack), when it is a candidate.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network

from dataplane.flowhash import flow_of, pick_index
from dataplane.kubeproxy_endpoints import (
    ZONE_LABEL,
    Topology,
    cluster_endpoints,
    usable,
)
from dataplane.kubeproxy_endpoints import Backend as Backend
from dataplane.kubeproxy_endpoints import endpoints as endpoints
from dataplane.kubeproxy_endpoints import selected_pods as selected_pods
from dataplane.kubeproxy_names import ChainNames, chain_names
from dataplane.masquerade import in_pod_cidr, mark_masq
from dataplane.netfilter import (
    PRIORITY_DSTNAT,
    PRIORITY_FILTER,
    Drop,
    Hook,
    HookContext,
    HookPoint,
    HookResult,
    Reject,
)
from dataplane.packet import Packet
from dataplane.percluster import once_per_cluster
from dataplane.sockets import PROTOCOL_OF
from dataplane.trace import DropReason
from topology.model import (
    NODE_PORT_PRIMARY,
    Cluster,
    ProxyMode,
    Service,
    ServicePort,
)

NAME = "kube-proxy"
FILTER_NAME = "kube-proxy-filter"
# kube-proxy inserts its filter chains at the top of INPUT/FORWARD/OUTPUT: just before the
# NetworkPolicy filter (priority 0).
PRIORITY_KUBE_FILTER = PRIORITY_FILTER - 1


class Frontend(StrEnum):
    """How a packet addressed a Service port."""

    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_IP = "externalIP"


@dataclass(frozen=True, slots=True)
class ServicePortRule:
    """One Service port with its endpoints (kube-proxy's `svcPortName`): `endpoints` the
    cluster-wide usable ones, `every` all of them whatever their conditions."""

    service: Service
    port: ServicePort
    endpoints: tuple[Backend, ...]
    chains: ChainNames
    every: tuple[Backend, ...] = ()

    @property
    def name(self) -> str:
        """`NS/NAME:PORT`, PORT the port's name (or number), as kube-proxy's comments."""
        return f"{self.service.key}:{self.port.name or self.port.port}"

    def local(self, node: str) -> tuple[Backend, ...]:
        """The usable endpoints on `node` (ready, else serving-terminating, there)."""
        return usable(tuple(b for b in self.every if b.node == node))

    def cluster(self, ctx: HookContext) -> Topology:
        """The Cluster-policy endpoints on the node of `ctx`, topology hints applied
        (`dataplane.kubeproxy_endpoints.cluster_endpoints`), worked out once per node."""
        near = table_for(ctx.cluster).near
        hit = near.get((self.name, ctx.node))
        if hit is None:
            node = ctx.cluster.node(ctx.node)
            zone = node.labels.get(ZONE_LABEL, "")
            hit = near[(self.name, ctx.node)] = cluster_endpoints(
                self.every, node.name, zone
            )
        return hit


@dataclass(frozen=True, slots=True)
class Plan:
    """Which endpoints a NEW connection may use, and whether it is marked for masquerade."""

    candidates: tuple[Backend, ...]
    scope: str  # "cluster-wide" or "local to node-1"
    masq: str | None = None  # why KUBE-MARK-MASQ applies, or None
    local: bool = False  # the Local-policy chain (KUBE-SVL-…) rather than KUBE-SVC-…


def port_rule(cluster: Cluster, svc: Service, sp: ServicePort) -> ServicePortRule:
    """Service port `sp` with its endpoints and its chains in the cluster's proxy mode."""
    mode = cluster.config.kube_proxy.mode
    every = endpoints(cluster, svc, sp)
    return ServicePortRule(svc, sp, usable(every), chain_names(mode, svc, sp), every)


class ServiceTable:
    """Every Service port of a cluster by the addresses that reach it (kube-proxy's
    `KUBE-SERVICES` / nftables `@service-ips` and `@service-nodeports`)."""

    def __init__(self, cluster: Cluster) -> None:
        self.config = cluster.config.kube_proxy
        self.mode = self.config.mode
        self.service_cidr = cluster.config.service_cidr
        self.node_cidr = cluster.config.node_cidr
        self.virtual: dict[tuple[int, str, int], tuple[ServicePortRule, Frontend]] = {}
        self.node_ports: dict[tuple[int, int], ServicePortRule] = {}
        self.cluster_ips: set[str] = set()  # nftables `@cluster-ips`
        # (Service port, node) -> its Cluster-policy endpoints there (`rule.cluster`)
        self.near: dict[tuple[str, str], Topology] = {}
        self.node_ips = {n.name: str(n.ip) for n in cluster.config.nodes}
        self.node_port_cidrs = tuple(
            IPv4Network(c) for c in self.config.node_port_addresses if "/" in c
        )
        numbers = {proto: num for num, proto in PROTOCOL_OF.items()}
        for svc in cluster.services.values():
            if svc.cluster_ip is not None:
                self.cluster_ips.add(str(svc.cluster_ip))
            for sp in svc.ports:
                rule = port_rule(cluster, svc, sp)
                proto = numbers[sp.protocol]
                if svc.cluster_ip is not None:
                    key = (proto, str(svc.cluster_ip), sp.port)
                    self.virtual[key] = (rule, Frontend.CLUSTER_IP)
                for ext in svc.external_ips:
                    self.virtual[(proto, str(ext), sp.port)] = (
                        rule,
                        Frontend.EXTERNAL_IP,
                    )
                for vip in svc.load_balancer_vips():
                    key = (proto, str(vip), sp.port)
                    self.virtual[key] = (rule, Frontend.LOAD_BALANCER)
                if sp.node_port is not None:
                    self.node_ports[(proto, sp.node_port)] = rule

    def lookup(
        self, ctx: HookContext, pkt: Packet
    ) -> tuple[ServicePortRule, Frontend] | None:
        """The Service port a packet is addressed to, as seen in namespace `ctx.netns`."""
        ip = pkt.ip
        if ip is None or ip.proto not in PROTOCOL_OF:
            return None
        hit = self.virtual.get((ip.proto, ip.dst, pkt.dport))
        if hit is not None:
            return hit
        if self.node_ports:
            rule = self.node_ports.get((ip.proto, pkt.dport))
            if rule is not None and self.is_node_port_address(ctx, ip.dst):
                return rule, Frontend.NODE_PORT
        return None

    def is_node_port_address(self, ctx: HookContext, dst: str) -> bool:
        """Whether NodePorts answer on `dst` of this node.

        Every local address by default (`-m addrtype --dst-type LOCAL`), 127.0.0.0/8 only
        with `iptables.localhostNodePorts` (true by default in iptables mode; nftables mode
        never: KEP-3866); `nodePortAddresses: [primary]` the node's own address; CIDRs the
        local addresses inside them (`GetNodeIPs`)."""
        if not ctx.netns.is_local(dst):
            return False
        loopback = dst.startswith("127.")
        if loopback and not self.config.localhost_node_ports:
            return False
        wanted = self.config.node_port_addresses
        if not wanted:
            return True
        if wanted == (NODE_PORT_PRIMARY,):
            return dst == self.node_ips.get(ctx.node)
        addr = IPv4Address(dst)
        return any(addr in cidr for cidr in self.node_port_cidrs)

    def unallocated(self, pkt: Packet) -> str | None:
        """nftables mode's `cluster-ips-check` chain: why a packet to the service CIDR that
        no Service port captured is refused, or None."""
        ip = pkt.ip
        if self.mode is not ProxyMode.NFTABLES or ip is None:
            return None
        if ip.dst in self.cluster_ips:
            return "reject"
        addr = IPv4Address(ip.dst)
        # The default nodeCIDR (10.100.0.0/24) lies inside the default serviceCIDR
        # (10.96.0.0/12), which no real cluster does: node addresses are spared, or
        # nftables mode would drop the nodes' own traffic (docs/model.md).
        if addr in self.service_cidr and addr not in self.node_cidr:
            return "drop"
        return None


_tables: dict[int, tuple[Cluster, ServiceTable]] = {}


def table_for(cluster: Cluster) -> ServiceTable:
    """The Service table of `cluster`, built once per cluster object."""
    return once_per_cluster(_tables, cluster, ServiceTable)


def plan(
    rule: ServicePortRule, frontend: Frontend, pkt: Packet, ctx: HookContext
) -> Plan:
    """The traffic policy's choice of candidates for a NEW connection (module docstring)."""
    assert pkt.ip is not None
    src, node, svc = pkt.ip.src, ctx.node, rule.service
    from_pod = in_pod_cidr(ctx.cluster, src)
    local = Plan(rule.local(node), f"local to {node}", local=True)
    if frontend is Frontend.CLUSTER_IP:
        masq = None if from_pod else f"{src} is not a pod address (! -s clusterCIDR)"
        if ctx.cluster.config.kube_proxy.masquerade_all:
            masq = "masqueradeAll: every connection to a ClusterIP"
        if svc.internal_traffic_policy == "Local":
            return replace(local, masq=masq)
        near = rule.cluster(ctx)
        return Plan(near.endpoints, near.why, masq)
    near = rule.cluster(ctx)
    if svc.external_traffic_policy == "Local":
        if from_pod:
            return Plan(near.endpoints, f"{near.why}: pod traffic short-circuits")
        if ctx.netns.is_local(src):
            why = "traffic from the node itself (--src-type LOCAL)"
            return Plan(near.endpoints, near.why, why)
        return local
    why = f"externalTrafficPolicy Cluster: {frontend.value} traffic leaves as the node"
    return Plan(near.endpoints, near.why, why)


# Service port (`NS/NAME:PORT`) -> the endpoint pod another kube-proxy chose for it.
_CHOSEN: ContextVar[Mapping[str, str] | None] = ContextVar(
    "kernel_choice", default=None
)


@contextmanager
def chosen_by_kernel(choice: Mapping[str, str]) -> Iterator[None]:
    """Walks inside the block pick, for each Service port named, the endpoint the kernel's
    kube-proxy chose (when it is one of the candidates this walk may use)."""
    token = _CHOSEN.set(choice)
    try:
        yield
    finally:
        _CHOSEN.reset(token)


def firewall(
    rule: ServicePortRule, frontend: Frontend, pkt: Packet, ctx: HookContext
) -> str | None:
    """`KUBE-FW-…` (`loadBalancerSourceRanges`): why a LoadBalancer connection from this
    source is not accepted, or None.  A range that holds the node's own address also
    admits the LoadBalancer addresses as sources (a VIP looped back on the node)."""
    ranges = rule.service.load_balancer_source_ranges
    if frontend is not Frontend.LOAD_BALANCER or not ranges or pkt.ip is None:
        return None
    src = IPv4Address(pkt.ip.src)
    if any(src in cidr for cidr in ranges):
        return None
    node_ip = ctx.cluster.node(ctx.node).ip
    if src in rule.service.load_balancer_vips() and any(node_ip in c for c in ranges):
        return None
    shown = ", ".join(str(c) for c in ranges)
    return f"{src} is outside loadBalancerSourceRanges ({shown})"


def choose(
    rule: ServicePortRule,
    candidates: tuple[Backend, ...],
    pkt: Packet,
    ctx: HookContext | None = None,
) -> tuple[Backend, str]:
    """The endpoint for a NEW connection and how it was picked (module docstring): the one
    `sessionAffinity: ClientIP` remembers for the client on this node, else the flow hash's;
    a ClientIP pick is remembered (`dataplane.affinity`)."""
    ip = pkt.ip
    assert ip is not None and candidates
    n = len(candidates)
    table = None if ctx is None else ctx.affinity
    sticky = rule.service.session_affinity == "ClientIP"
    timeout = rule.service.session_affinity_timeout
    forced = (_CHOSEN.get() or {}).get(rule.name)
    picked: Backend | None = None
    for backend in candidates if forced is not None else ():
        if backend.key == forced:
            picked = backend
            how = f"the endpoint the kernel's kube-proxy chose, one of {n}"
    seen = None
    if picked is None and sticky and table is not None and ctx is not None:
        seen = table.recall(ctx.netns.id, rule.name, ip.src, timeout)
    for backend in candidates if seen is not None else ():
        if seen is not None and backend.key == seen.endpoint:
            picked = backend
            how = (
                f"sessionAffinity ClientIP: {ip.src} last chose it {seen.age:g} s ago,"
                f" within timeoutSeconds {timeout}"
                f" ({_affinity_match(rule, backend, timeout)})"
            )
    if picked is None:
        key = flow_of(pkt)
        index = pick_index(key, n)
        picked, how = candidates[index], f"blake2b({key!r}) % {n} = {index}"
        if sticky:
            how = (
                f"sessionAffinity ClientIP: no choice of {ip.src} within"
                f" timeoutSeconds {timeout}, so {how}"
            )
    if sticky and table is not None and ctx is not None:
        table.remember(ctx.netns.id, rule.name, ip.src, picked.key)
    return picked, how


def _affinity_match(rule: ServicePortRule, backend: Backend, timeout: int) -> str:
    """The rule that kept the client on its endpoint, as kube-proxy writes it."""
    chain = rule.chains.endpoint(backend.ip, backend.port)
    if rule.chains.mode is ProxyMode.NFTABLES:
        return (
            f"ip saddr @{rule.chains.affinity(backend.ip, backend.port)} goto {chain}"
        )
    return f"-m recent --name {chain} --rcheck --seconds {timeout} --reap -j {chain}"


def dnat(pkt: Packet, ctx: HookContext) -> HookResult:
    """nat PREROUTING / OUTPUT: KUBE-SERVICES -> KUBE-SVC / KUBE-EXT -> KUBE-SEP DNAT
    (nftables: `services` -> `service-…` / `external-…` -> `endpoint-…`)."""
    ip = pkt.ip
    if ip is None or not ctx.is_new or ctx.bridged:
        return None
    hit = table_for(ctx.cluster).lookup(ctx, pkt)
    if hit is None:
        return None
    rule, frontend = hit
    if firewall(rule, frontend, pkt, ctx) is not None:
        return None  # falls off KUBE-FW undnatted; KUBE-PROXY-FIREWALL drops it
    p = plan(rule, frontend, pkt, ctx)
    if not p.candidates:
        return None  # no DNAT; the filter chain rejects or drops it
    backend, how = choose(rule, p.candidates, pkt, ctx)
    masq = p.masq
    if backend.ip == ip.src:
        # KUBE-SEP: `-s <endpoint IP> -j KUBE-MARK-MASQ`. The pod is its own backend: the
        # frame is bridged back out of its own port (hairpin mode, see dataplane.bridge)
        # and masqueraded, so that the reply comes back through conntrack.
        masq = f"hairpin: {backend.key} reaches itself through its Service"
    if masq is not None:
        mark_masq(ctx, masq)
    n = len(p.candidates)
    pick = p.candidates.index(backend) + 1
    detail = (
        f"{NAME}: {frontend.value} {ip.dst}:{pkt.dport} ({rule.name}): "
        f"{chain_path(rule, frontend, p)} -> "
        f"{rule.chains.endpoint(backend.ip, backend.port)} {backend.key} "
        f"{backend.ip}:{backend.port} "
        f"(endpoint {pick} of {n}: a choice among {n} {p.scope}"
        + ("" if backend.ready else ", serving and terminating: no endpoint is ready")
        + f"; {how})"
        + (f"; KUBE-MARK-MASQ: {masq}" if masq else "")
    )
    return replace(
        ctx.dnat(pkt, backend.ip, backend.port, detail), endpoint=backend.key
    )


def chain_path(rule: ServicePortRule, frontend: Frontend, p: Plan) -> str:
    """The chains a NEW connection jumps through to its endpoint chain, by mode."""
    c = rule.chains
    nft = c.mode is ProxyMode.NFTABLES
    policy = c.local if p.local else c.cluster
    if frontend is Frontend.CLUSTER_IP:
        head = ["services @service-ips"] if nft else ["KUBE-SERVICES"]
        return " -> ".join([*head, policy])
    if frontend is Frontend.NODE_PORT:
        head = (
            ["services", "nodeports @service-nodeports"]
            if nft
            else ["KUBE-SERVICES", "KUBE-NODEPORTS"]
        )
    else:
        head = ["services @service-ips"] if nft else ["KUBE-SERVICES"]
        if (
            frontend is Frontend.LOAD_BALANCER
            and rule.service.load_balancer_source_ranges
        ):
            head.append(c.firewall)
    return " -> ".join([*head, c.external, policy])


def reject(pkt: Packet, ctx: HookContext) -> HookResult:
    """filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES / KUBE-PROXY-FIREWALL: Service
    ports nobody serves, sources a LoadBalancer does not accept; nftables mode's
    `cluster-ips-check` too."""
    if pkt.ip is None or not ctx.is_new or ctx.bridged:
        return None
    table = table_for(ctx.cluster)
    hit = table.lookup(ctx, pkt)
    if hit is None:
        return _cluster_ips_check(table, pkt)
    rule, frontend = hit
    nft = table.mode is ProxyMode.NFTABLES
    if not rule.endpoints:
        where = "no-endpoint-services: goto reject-chain" if nft else "REJECT"
        return Reject(
            f"{rule.name} has no endpoints -> {where} (icmp-port-unreachable)",
            code=DropReason.NO_ENDPOINTS,
        )
    refused = firewall(rule, frontend, pkt, ctx)
    if refused is not None:
        if nft:
            return Drop(
                f"firewall-check @firewall-ips: {rule.chains.firewall}: {refused} -> drop"
            )
        return Drop(
            f"KUBE-PROXY-FIREWALL: {rule.name} traffic not accepted by "
            f"{rule.chains.firewall}: {refused} -> DROP"
        )
    p = plan(rule, frontend, pkt, ctx)
    if not p.candidates:
        return Drop(f"{rule.name} has no local endpoints on {ctx.node} -> DROP")
    return None


def _cluster_ips_check(table: ServiceTable, pkt: Packet) -> HookResult:
    """nftables mode (pkg/proxy/nftables, `cluster-ips-check`): "Reject traffic to invalid
    ports of ClusterIPs", "Drop traffic to unallocated ClusterIPs"."""
    verdict = table.unallocated(pkt)
    if verdict is None:
        return None
    assert pkt.ip is not None
    if verdict == "reject":
        return Reject(
            f"cluster-ips-check: {pkt.ip.dst} is a ClusterIP (@cluster-ips) without"
            f" {'this protocol' if pkt.ip.proto == 1 else f'port {pkt.dport}'}"
            " -> reject (icmp-port-unreachable)",
            code=DropReason.NO_ENDPOINTS,
        )
    return Drop(
        f"cluster-ips-check: {pkt.ip.dst} is in the service CIDR {table.service_cidr}"
        " but no Service's ClusterIP -> drop"
    )


def hooks() -> list[Hook]:
    """kube-proxy's hooks for one node namespace."""
    return [
        Hook(HookPoint.PREROUTING, PRIORITY_DSTNAT, NAME, dnat, new_only=True),
        Hook(HookPoint.OUTPUT, PRIORITY_DSTNAT, NAME, dnat, new_only=True),
        *(
            Hook(point, PRIORITY_KUBE_FILTER, FILTER_NAME, reject, new_only=True)
            for point in (HookPoint.INPUT, HookPoint.FORWARD, HookPoint.OUTPUT)
        ),
    ]
