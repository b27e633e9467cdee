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

Endpoints (the EndpointSlice controller): the ready pods of the Service's namespace whose
labels match its selector (a Service without selector has none), each with the port its
`targetPort` names: a number as it is, a name resolved per pod among that pod's containerPorts
of the same protocol (a pod without that port is no endpoint of that Service port).

The endpoint choice.  kube-proxy picks with `-m statistic --mode random`; this simulator is
deterministic instead.  The candidates are sorted by pod key (`NS/NAME`) and the index is

    zlib.crc32(b"<proto> <src> <sport> <dst> <dport>") % len(candidates)

over the packet's flow as kube-proxy sees it (`<proto>` the IP protocol number, e.g.
`6 10.0.1.3 40000 10.96.0.11 80`), or, with `sessionAffinity: ClientIP`,
`zlib.crc32(b"<src>") % len(candidates)`.  The trace names the pick and the formula.
`chosen_by_kernel(...)` overrides the pick with the endpoint a real kube-proxy chose
(`dataplane verify` reads it from the kernel's conntrack), when it is a candidate.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from enum import StrEnum

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
from dataplane.sockets import PROTOCOL_OF
from dataplane.trace import DropReason
from topology.model import Cluster, Pod, Service, ServicePort
from topology.selectors import matches_map

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


@dataclass(frozen=True, slots=True)
class Backend:
    """One endpoint of a Service port: a ready pod and the port its targetPort names."""

    pod: Pod
    port: int

    @property
    def ip(self) -> str:
        return str(self.pod.ip)


@dataclass(frozen=True, slots=True)
class ServicePortRule:
    """One Service port with its endpoints (kube-proxy's `svcPortName`)."""

    service: Service
    port: ServicePort
    endpoints: tuple[Backend, ...]

    @property
    def name(self) -> str:
        """`NS/NAME:PORT`, PORT the port's name (or number), as kube-proxy's comments."""
        return f"{self.service.key}:{self.port.name or self.port.port}"

    def local(self, node: str) -> tuple[Backend, ...]:
        return tuple(b for b in self.endpoints if b.pod.node == node)


@dataclass(frozen=True, slots=True)
class Plan:
    """Which endpoints a NEW connection may use, and whether it is marked for masquerade."""

    candidates: tuple[Backend, ...]
    scope: str  # "cluster-wide" or "local to node-1"
    masq: str | None = None  # why KUBE-MARK-MASQ applies, or None


def selected_pods(cluster: Cluster, service: Service) -> tuple[Pod, ...]:
    """The ready pods a Service selects, sorted by pod key (none without a selector)."""
    selector = service.selector
    if selector is None:
        return ()
    found = (
        pod
        for pod in cluster.pods.values()
        if pod.namespace == service.namespace
        and pod.ready
        and matches_map(selector, pod.labels)
    )
    return tuple(sorted(found, key=lambda p: p.key))


def endpoints(
    cluster: Cluster, service: Service, port: ServicePort
) -> tuple[Backend, ...]:
    """The endpoints of one Service port, sorted by pod key (see the module docstring)."""
    out: list[Backend] = []
    for pod in selected_pods(cluster, service):
        if isinstance(port.target_port, str):
            number = pod.named_port(port.target_port, port.protocol)
            if number is None:
                continue  # this pod has no containerPort of that name
        else:
            number = port.target_port
        out.append(Backend(pod, number))
    return tuple(out)


class ServiceTable:
    """Every Service port of a cluster by the addresses that reach it."""

    def __init__(self, cluster: Cluster) -> None:
        self.virtual: dict[tuple[int, str, int], tuple[ServicePortRule, Frontend]] = {}
        self.node_ports: dict[tuple[int, int], ServicePortRule] = {}
        numbers = {proto: num for num, proto in PROTOCOL_OF.items()}
        for svc in cluster.services.values():
            for sp in svc.ports:
                rule = ServicePortRule(svc, sp, endpoints(cluster, svc, sp))
                proto = numbers[sp.protocol]
                if svc.cluster_ip is not None:
                    key = (proto, str(svc.cluster_ip), sp.port)
                    self.virtual[key] = (rule, Frontend.CLUSTER_IP)
                if svc.load_balancer_ip is not None:
                    key = (proto, str(svc.load_balancer_ip), sp.port)
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
            if rule is not None and ctx.netns.is_local(ip.dst):
                return rule, Frontend.NODE_PORT
        return None


_tables: dict[int, tuple[Cluster, ServiceTable]] = {}


def table_for(cluster: Cluster) -> ServiceTable:
    """The Service table of `cluster`, built once per cluster object (a cluster never
    changes: an `apply` makes a new one)."""
    hit = _tables.get(id(cluster))
    if hit is not None and hit[0] is cluster:
        return hit[1]
    if len(_tables) >= 8:
        _tables.clear()
    table = ServiceTable(cluster)
    _tables[id(cluster)] = (cluster, table)
    return table


def plan(
    rule: ServicePortRule, frontend: Frontend, pkt: Packet, ctx: HookContext
) -> Plan:
    """The traffic policy's choice of candidates for a NEW connection (module docstring)."""
    assert pkt.ip is not None
    src, node, svc = pkt.ip.src, ctx.node, rule.service
    from_pod = in_pod_cidr(ctx.cluster, src)
    local = Plan(rule.local(node), f"local to {node}")
    if frontend is Frontend.CLUSTER_IP:
        masq = None if from_pod else f"{src} is not a pod address (! -s clusterCIDR)"
        if svc.internal_traffic_policy == "Local":
            return replace(local, masq=masq)
        return Plan(rule.endpoints, "cluster-wide", masq)
    if svc.external_traffic_policy == "Local":
        if from_pod:
            return Plan(rule.endpoints, "cluster-wide: pod traffic short-circuits")
        if ctx.netns.is_local(src):
            why = "traffic from the node itself (--src-type LOCAL)"
            return Plan(rule.endpoints, "cluster-wide", why)
        return local
    why = f"externalTrafficPolicy Cluster: {frontend.value} traffic leaves as the node"
    return Plan(rule.endpoints, "cluster-wide", why)


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


def choose(
    rule: ServicePortRule, candidates: tuple[Backend, ...], pkt: Packet
) -> tuple[Backend, str]:
    """The endpoint for a NEW connection and how it was picked (module docstring)."""
    ip = pkt.ip
    assert ip is not None and candidates
    n = len(candidates)
    forced = (_CHOSEN.get() or {}).get(rule.name)
    for backend in candidates if forced is not None else ():
        if backend.pod.key == forced:
            return backend, f"the endpoint the kernel's kube-proxy chose, one of {n}"
    if rule.service.session_affinity == "ClientIP":
        index = zlib.crc32(ip.src.encode()) % n
        how = f"sessionAffinity ClientIP: crc32({ip.src!r}) % {n} = {index}"
    else:
        key = f"{ip.proto} {ip.src} {pkt.sport} {ip.dst} {pkt.dport}"
        index = zlib.crc32(key.encode()) % n
        how = f"crc32({key!r}) % {n} = {index}"
    return candidates[index], how


def dnat(pkt: Packet, ctx: HookContext) -> HookResult:
    """nat PREROUTING / OUTPUT: KUBE-SERVICES -> KUBE-SVC / KUBE-EXT -> KUBE-SEP DNAT."""
    ip = pkt.ip
    if ip is None or not ctx.is_new or ctx.bridged:
        return None
    hit = table_for(ctx.cluster).lookup(ctx, pkt)
    if hit is None:
        return None
    rule, frontend = hit
    p = plan(rule, frontend, pkt, ctx)
    if not p.candidates:
        return None  # no DNAT; the filter chain rejects or drops it
    backend, how = choose(rule, p.candidates, pkt)
    masq = p.masq
    if backend.ip == ip.src:
        # KUBE-SEP: `-s <endpoint IP> -j KUBE-MARK-MASQ`. The pod is its own backend: the
        # frame is bridged back out of its own port (hairpin mode, see dataplane.bridge)
        # and masqueraded, so that the reply comes back through conntrack.
        masq = f"hairpin: {backend.pod.key} reaches itself through its Service"
    if masq is not None:
        mark_masq(ctx, masq)
    chain = "KUBE-SVC" if frontend is Frontend.CLUSTER_IP else "KUBE-EXT"
    n = len(p.candidates)
    pick = p.candidates.index(backend) + 1
    detail = (
        f"{NAME}: {frontend.value} {ip.dst}:{pkt.dport} is {chain} {rule.name} -> "
        f"KUBE-SEP {backend.pod.key} {backend.ip}:{backend.port} "
        f"(endpoint {pick} of {n} {p.scope}; {how})"
        + (f"; KUBE-MARK-MASQ: {masq}" if masq else "")
    )
    return replace(
        ctx.dnat(pkt, backend.ip, backend.port, detail), endpoint=backend.pod.key
    )


def reject(pkt: Packet, ctx: HookContext) -> HookResult:
    """filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES: Service ports nobody serves."""
    if pkt.ip is None or not ctx.is_new or ctx.bridged:
        return None
    hit = table_for(ctx.cluster).lookup(ctx, pkt)
    if hit is None:
        return None
    rule, frontend = hit
    if not rule.endpoints:
        return Reject(
            f"{rule.name} has no endpoints -> REJECT (icmp-port-unreachable)",
            code=DropReason.NO_ENDPOINTS,
        )
    p = plan(rule, frontend, pkt, ctx)
    if not p.candidates:
        return Drop(f"{rule.name} has no local endpoints on {ctx.node} -> DROP")
    return None


def hooks() -> list[Hook]:
    """kube-proxy's hooks for one node namespace."""
    return [
        Hook(HookPoint.PREROUTING, PRIORITY_DSTNAT, NAME, dnat),
        Hook(HookPoint.OUTPUT, PRIORITY_DSTNAT, NAME, dnat),
        *(
            Hook(point, PRIORITY_KUBE_FILTER, FILTER_NAME, reject)
            for point in (HookPoint.INPUT, HookPoint.FORWARD, HookPoint.OUTPUT)
        ),
    ]
