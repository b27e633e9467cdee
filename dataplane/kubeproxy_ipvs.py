"""kube-proxy's ipvs mode (pkg/proxy/ipvs/proxier.go): kube-ipvs0, IPVS virtual servers,
the ipsets and the few iptables chains it keeps.

What a node holds, as `syncProxyRules` writes it:

- **kube-ipvs0**, a dummy device (left down) holding every ClusterIP, externalIP and
  LoadBalancer ingress IP as a /32 (`netlinkHandle.EnsureAddressBind`; an address that is
  already on another interface of the node is not bound again).  They are local addresses:
  the `local` table routes them to the node itself, the node answers ARP for them on its
  other interfaces (arp_ignore=0: `strictARP` is off by default), and a process on the node
  that connects to one gets that address as its source (`local ... src VIP`).
- **Virtual servers** `PROTO VIP:PORT` for each ClusterIP, externalIP and LoadBalancer IP,
  and `PROTO NODEIP:nodePort` on every node address but kube-ipvs0's and loopback's
  (`GetAllLocalAddressesExcept`, or the addresses `nodePortAddresses` selects), each with the
  Service port's endpoints as real servers (`syncEndpoint`): the cluster-wide ones, or only
  this node's for a ClusterIP with `internalTrafficPolicy: Local` and for the external ones
  with `externalTrafficPolicy: Local` (no short-circuit for pods, unlike iptables mode).
  IPVS takes a NEW connection at LOCAL_IN (`ip_vs_remote_request4`, priority
  NF_IP_PRI_NAT_SRC - 2) or, from the node's own processes, at LOCAL_OUT
  (`ip_vs_local_request4`, NF_IP_PRI_NAT_DST + 2), schedules a real server and rewrites
  the destination (`ip_vs_nat_xmit`); from LOCAL_IN the packet is routed again and leaves
  by LOCAL_OUT and POSTROUTING (`dataplane.stack.Stack.xmit_stolen`), never FORWARD.  A
  virtual server without real servers answers ICMP port unreachable (`ip_vs_leave`).
- **The scheduler** (`ipvs.scheduler`): rr (`ip_vs_rr_schedule`: the real server after the
  one it chose last; wrr with kube-proxy's weight-1 real servers is the same).  The
  position is kept per node and virtual server in the walk state, so that the connections
  of one replay take the real servers in turn; each probe starts from a fresh state, at the
  first.  Real servers are ordered by endpoint key (the kernel's order is that of
  kube-proxy's unordered set).  `sessionAffinity: ClientIP` makes the virtual server
  persistent (`FlagPersistent`): a client's first connection is scheduled, its later ones
  go to the same real server (the template's timeout is not modelled: it lasts the walk
  state).
- **ipsets** and **iptables**: nat `KUBE-SERVICES` (from PREROUTING and OUTPUT) only marks
  for masquerade: `-s 127.0.0.0/8 -j RETURN`; `KUBE-LOAD-BALANCER` dst,dst -> chain
  `KUBE-LOAD-BALANCER` (`KUBE-LOAD-BALANCER-LOCAL` RETURN, else `KUBE-MARK-MASQ`);
  `KUBE-CLUSTER-IP` dst,dst `! -s clusterCIDR` (every source with `masqueradeAll`) ->
  `KUBE-MARK-MASQ`; `KUBE-EXTERNAL-IP` dst,dst -> `KUBE-MARK-MASQ`; `--dst-type LOCAL` ->
  `KUBE-NODE-PORT` (`KUBE-NODE-PORT-LOCAL-TCP` RETURN, `KUBE-NODE-PORT-TCP` ->
  `KUBE-MARK-MASQ`; UDP and SCTP likewise).  nat `KUBE-POSTROUTING` masquerades the marked
  packets and `KUBE-LOOP-BACK` dst,dst,src (an endpoint reaching itself).  filter INPUT
  `KUBE-PROXY-FIREWALL` (`KUBE-LOAD-BALANCER-FW` -> `KUBE-SOURCE-RANGES-FIREWALL`: a
  source in `KUBE-LOAD-BALANCER-SOURCE-CIDR` RETURNs, else DROP) and `KUBE-IPVS-FILTER`
  (a NEW packet to an address of `KUBE-IPVS-IPS` that is no virtual server's IP:port is
  REJECTed: an unknown port of a ClusterIP, and ping, since kubernetes#72236); filter
  OUTPUT `KUBE-IPVS-OUT-FILTER` drops the node's own connections to a LoadBalancer IP whose
  `loadBalancerSourceRanges` leave the node out (kubernetes#119656).

Later packets of a connection are rewritten from its conntrack entry (kube-proxy sets
net.ipv4.vs.conntrack=1, and the simulator lets conntrack carry IPVS's NAT; the kernel's
IPVS rewrites each packet itself from its connection table, `ip_vs_conn`).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from dataplane.kubeproxy import (
    FILTER_NAME,
    NAME,
    PRIORITY_KUBE_FILTER,
    Backend,
    Frontend,
    ServicePortRule,
    ServiceTable,
    firewall,
    table_for,
)
from dataplane.masquerade import in_pod_cidr, mark_masq
from dataplane.netfilter import (
    PRIORITY_DSTNAT,
    PRIORITY_SRCNAT,
    Accept,
    Drop,
    Hook,
    HookContext,
    HookFn,
    HookPoint,
    HookResult,
    Reject,
    Rewrite,
)
from dataplane.netns import Interface, Kind, Netns
from dataplane.packet import IPPROTO_ICMP, Packet
from dataplane.percluster import once_per_cluster
from dataplane.sockets import PROTOCOL_OF
from dataplane.trace import DropReason
from topology.model import NODE_PORT_PRIMARY, Cluster

DUMMY_DEVICE = "kube-ipvs0"  # defaultDummyDevice
IPVS_NAME = "ipvs"
PRIORITY_LOCAL_IN = PRIORITY_SRCNAT - 2  # ip_vs_remote_request4: NF_IP_PRI_NAT_SRC - 2
PRIORITY_LOCAL_OUT = PRIORITY_DSTNAT + 2  # ip_vs_local_request4: NF_IP_PRI_NAT_DST + 2
# Keys of HookContext.extra: the virtual server that took the packet (skb->ipvs_property).
IPVS_PROPERTY = "ipvs"
# Keys of HookContext.memory: (node, virtual server) -> connections scheduled so far, and
# (node, virtual server, client) -> the real server its persistence template holds.
_RR = "ipvs-rr"
_PERSIST = "ipvs-persist"
_IPVS_PROTOCOLS = frozenset({6, 17, 132})  # TCP, UDP, SCTP: what IPVS balances here


@dataclass(frozen=True, slots=True)
class VirtualServer:
    """One IPVS virtual service: `PROTO ADDR:PORT` and the Service port behind it."""

    proto: int
    ip: str
    port: int
    rule: ServicePortRule
    frontend: Frontend

    @property
    def text(self) -> str:
        """As `ipvsadm -Ln` shows it: `TCP  10.96.0.10:53`."""
        return f"{PROTOCOL_OF[self.proto].value} {self.ip}:{self.port}"

    @property
    def local_only(self) -> bool:
        """Whether `syncEndpoint` gives it only the node's own endpoints."""
        svc = self.rule.service
        if self.frontend is Frontend.CLUSTER_IP:
            return svc.internal_traffic_policy == "Local"
        return svc.external_traffic_policy == "Local"

    def real_servers(self, node: str) -> tuple[Backend, ...]:
        """The real servers this virtual server has on `node`."""
        return self.rule.local(node) if self.local_only else self.rule.endpoints


def bound_addresses(cluster: Cluster) -> tuple[str, ...]:
    """Every address kube-proxy binds to kube-ipvs0: ClusterIPs, externalIPs and
    LoadBalancer ingress IPs, sorted."""
    found: set[IPv4Address] = set()
    for svc in cluster.services.values():
        if svc.cluster_ip is not None and svc.ports:
            found.add(svc.cluster_ip)
        if svc.ports:
            found.update(svc.external_ips)
            found.update(svc.load_balancer_vips())
    return tuple(str(a) for a in sorted(found))


def add_dummy(cluster: Cluster, ns: Netns, mac: str) -> None:
    """kube-ipvs0 on node namespace `ns`, with every bound address that is not already
    one of the node's (`shouldBind := !nodeAddressSet.Has(...)`)."""
    addrs = tuple(
        IPv4Interface(f"{a}/32") for a in bound_addresses(cluster) if not ns.is_local(a)
    )
    ns.add_interface(Interface(DUMMY_DEVICE, Kind.DUMMY, mac, 1500, addrs))


def is_bound(ns: Netns, ip: str) -> bool:
    """Whether `ip` is on the node's kube-ipvs0 (ipset `KUBE-IPVS-IPS`)."""
    dummy = ns.interfaces.get(DUMMY_DEVICE)
    return dummy is not None and dummy.has_addr(ip)


class IpvsTable:
    """The virtual servers of a cluster, from its Service table (`dataplane.kubeproxy`)."""

    def __init__(self, cluster: Cluster) -> None:
        self.services: ServiceTable = table_for(cluster)
        self.config = cluster.config.kube_proxy
        self.node_ips = {n.name: str(n.ip) for n in cluster.config.nodes}

    def lookup(self, ctx: HookContext, pkt: Packet) -> VirtualServer | None:
        """The virtual server a packet is addressed to on this node, or None."""
        ip = pkt.ip
        if ip is None or ip.proto not in _IPVS_PROTOCOLS:
            return None
        hit = self.services.virtual.get((ip.proto, ip.dst, pkt.dport))
        if hit is not None:
            return VirtualServer(ip.proto, ip.dst, pkt.dport, *hit)
        rule = self.services.node_ports.get((ip.proto, pkt.dport))
        if rule is not None and self.node_port_address(ctx, ip.dst):
            return VirtualServer(ip.proto, ip.dst, pkt.dport, rule, Frontend.NODE_PORT)
        return None

    def node_port_address(self, ctx: HookContext, dst: str) -> bool:
        """Whether kube-proxy made a NodePort virtual server on `dst` of this node: every
        address of the node but kube-ipvs0's and loopback's (`GetAllLocalAddressesExcept`
        and `isValidForSet`), or those `nodePortAddresses` selects (never loopback)."""
        ns = ctx.netns
        if dst.startswith("127.") or not ns.is_local(dst) or is_bound(ns, dst):
            return False
        wanted = self.config.node_port_addresses
        if not wanted:
            return True
        if wanted == (NODE_PORT_PRIMARY,):
            return dst == self.node_ips.get(ctx.node)
        return any(IPv4Address(dst) in c for c in self.services.node_port_cidrs)


_tables: dict[int, tuple[Cluster, IpvsTable]] = {}


def ipvs_table(cluster: Cluster) -> IpvsTable:
    """The virtual servers of `cluster`, built once per cluster object."""
    return once_per_cluster(_tables, cluster, IpvsTable)


# -- nat KUBE-SERVICES: the masquerade marks ------------------------------------------------
def masq_rule(vs: VirtualServer, pkt: Packet, ctx: HookContext) -> tuple[str, bool]:
    """The nat `KUBE-SERVICES` rule a NEW connection to `vs` meets, and whether it marks
    the connection for masquerade (`-j KUBE-MARK-MASQ`)."""
    assert pkt.ip is not None
    src = pkt.ip.src
    local = vs.rule.service.external_traffic_policy == "Local"
    proto = PROTOCOL_OF[vs.proto].value
    if vs.frontend is Frontend.LOAD_BALANCER:
        if local:
            return (
                "KUBE-LOAD-BALANCER dst,dst -> KUBE-LOAD-BALANCER-LOCAL: RETURN",
                False,
            )
        return (
            "KUBE-LOAD-BALANCER dst,dst -> KUBE-LOAD-BALANCER -> KUBE-MARK-MASQ",
            True,
        )
    if vs.frontend is Frontend.CLUSTER_IP:
        if ctx.cluster.config.kube_proxy.masquerade_all:
            return "KUBE-CLUSTER-IP dst,dst (masqueradeAll) -> KUBE-MARK-MASQ", True
        if in_pod_cidr(ctx.cluster, src):
            return (
                f"KUBE-CLUSTER-IP dst,dst: {src} is in clusterCIDR: not marked",
                False,
            )
        return (
            f"KUBE-CLUSTER-IP dst,dst ! -s clusterCIDR ({src}) -> KUBE-MARK-MASQ",
            True,
        )
    if vs.frontend is Frontend.EXTERNAL_IP:
        if local:
            return "KUBE-EXTERNAL-IP-LOCAL dst,dst -> ACCEPT: not marked", False
        return "KUBE-EXTERNAL-IP dst,dst -> KUBE-MARK-MASQ", True
    head = "--dst-type LOCAL -> KUBE-NODE-PORT: "
    if local:
        return head + f"KUBE-NODE-PORT-LOCAL-{proto} dst -> RETURN", False
    return head + f"KUBE-NODE-PORT-{proto} dst -> KUBE-MARK-MASQ", True


def mark(pkt: Packet, ctx: HookContext) -> HookResult:
    """nat PREROUTING / OUTPUT -> `KUBE-SERVICES`: the masquerade mark of a NEW
    connection to a virtual server (IPVS itself does the DNAT)."""
    ip = pkt.ip
    if ip is None or not ctx.is_new or ctx.bridged or IPVS_PROPERTY in ctx.extra:
        return None
    if ip.src.startswith("127."):
        return None  # -s 127.0.0.0/8 -j RETURN
    vs = ipvs_table(ctx.cluster).lookup(ctx, pkt)
    if vs is None:
        return None
    rule, marks = masq_rule(vs, pkt, ctx)
    if marks:
        mark_masq(ctx, rule)
    return Accept(f"KUBE-SERVICES: {vs.text} ({vs.rule.name}): {rule}")


# -- filter: KUBE-PROXY-FIREWALL, KUBE-IPVS-FILTER, KUBE-IPVS-OUT-FILTER ---------------------
def filter_input(pkt: Packet, ctx: HookContext) -> HookResult:
    """filter INPUT: `KUBE-PROXY-FIREWALL` then `KUBE-IPVS-FILTER`."""
    ip = pkt.ip
    if ip is None or not ctx.is_new or ctx.bridged:
        return None
    vs = ipvs_table(ctx.cluster).lookup(ctx, pkt)
    if vs is not None:
        refused = firewall(vs.rule, vs.frontend, pkt, ctx)
        if refused is None:
            return None
        return Drop(
            f"KUBE-PROXY-FIREWALL: KUBE-LOAD-BALANCER-FW dst,dst -> "
            f"KUBE-SOURCE-RANGES-FIREWALL: {refused} (not in "
            "KUBE-LOAD-BALANCER-SOURCE-CIDR) -> DROP"
        )
    if not is_bound(ctx.netns, ip.dst):
        return None
    what = "ICMP" if ip.proto == IPPROTO_ICMP else f"port {pkt.dport}"
    return Reject(
        f"KUBE-IPVS-FILTER: {ip.dst} is in KUBE-IPVS-IPS (on {DUMMY_DEVICE}) and "
        f"{what} is no virtual server's (not in KUBE-CLUSTER-IP, KUBE-EXTERNAL-IP, "
        "KUBE-LOAD-BALANCER) -> REJECT (icmp-port-unreachable)",
        code=DropReason.NO_ENDPOINTS,
    )


def filter_output(pkt: Packet, ctx: HookContext) -> HookResult:
    """filter OUTPUT `KUBE-IPVS-OUT-FILTER`: `-s LBIP -m ipvs --vaddr LBIP --vport PORT
    -j DROP` for a LoadBalancer whose source ranges do not hold the node's address."""
    vs = ctx.extra.get(IPVS_PROPERTY)
    if not isinstance(vs, VirtualServer) or pkt.ip is None or not ctx.is_new:
        return None
    ranges = vs.rule.service.load_balancer_source_ranges
    if vs.frontend is not Frontend.LOAD_BALANCER or not ranges:
        return None
    node_ip = ctx.cluster.node(ctx.node).ip
    if any(node_ip in c for c in ranges) or ctx.in_if is not None:
        return None
    return Drop(
        f"KUBE-IPVS-OUT-FILTER: -m ipvs --vaddr {vs.ip} --vport {vs.port}: the node's "
        f"address {node_ip} is outside loadBalancerSourceRanges -> DROP"
    )


# -- IPVS ----------------------------------------------------------------------------------
def schedule(
    vs: VirtualServer, servers: tuple[Backend, ...], pkt: Packet, ctx: HookContext
) -> tuple[Backend, str]:
    """The real server for a NEW connection, and how it was chosen."""
    assert pkt.ip is not None and servers
    n = len(servers)
    key = (ctx.node, vs.text)
    sched = ctx.cluster.config.kube_proxy.ipvs_scheduler
    persistent = vs.rule.service.session_affinity == "ClientIP"
    templates: dict[Any, str] = ctx.memory.setdefault(_PERSIST, {})
    if persistent:
        held = templates.get((*key, pkt.ip.src))
        for b in servers:
            if b.key == held:
                return b, (
                    f"persistent (sessionAffinity ClientIP): {pkt.ip.src}'s template "
                    "holds it"
                )
    counts: dict[Any, int] = ctx.memory.setdefault(_RR, {})
    done = counts.get(key, 0)
    counts[key] = done + 1
    backend = servers[done % n]
    how = (
        f"{sched}: after {done} connection(s) scheduled on this virtual server "
        f"(ip_vs_{sched}_schedule: the next real server in turn)"
    )
    if persistent:
        templates[(*key, pkt.ip.src)] = backend.key
        how += f"; persistent: a template for {pkt.ip.src} is made"
    return backend, how


def ipvs_in(pkt: Packet, ctx: HookContext) -> HookResult:
    """IPVS at LOCAL_IN (ip_vs_remote_request4) and LOCAL_OUT (ip_vs_local_request4): a
    NEW connection to a virtual server is scheduled and DNATed (ip_vs_nat_xmit)."""
    ip = pkt.ip
    if ip is None or not ctx.is_new or ctx.bridged or IPVS_PROPERTY in ctx.extra:
        return None
    vs = ipvs_table(ctx.cluster).lookup(ctx, pkt)
    if vs is None:
        return None
    servers = vs.real_servers(ctx.node)
    scope = f"local to {ctx.node}" if vs.local_only else "cluster-wide"
    if not servers:
        return Reject(
            f"{vs.text} ({vs.rule.name}) has no real servers ({scope}): "
            "ip_vs_leave -> icmp port unreachable",
            code=DropReason.NO_ENDPOINTS,
        )
    backend, how = schedule(vs, servers, pkt, ctx)
    ctx.extra[IPVS_PROPERTY] = vs
    if backend.ip == ip.src:
        mark_masq(
            ctx,
            f"KUBE-LOOP-BACK dst,dst,src: {backend.key} reaches itself through "
            "its Service",
        )
    n = len(servers)
    pick = servers.index(backend) + 1
    sched = ctx.cluster.config.kube_proxy.ipvs_scheduler
    detail = (
        f"{IPVS_NAME}: {vs.frontend.value} {vs.text} {sched} ({vs.rule.name}) -> "
        f"real server {backend.ip}:{backend.port} {backend.key} "
        f"(real server {pick} of {n}: a choice among {n} {scope}"
        + ("" if backend.ready else ", serving and terminating: no endpoint is ready")
        + f"; {how}) Masq"
    )
    res = ctx.dnat(pkt, backend.ip, backend.port, detail)
    # A real server on this node (a hostNetwork endpoint) is not sent anywhere: the
    # rewritten packet goes on up the local stack (ip_vs_nat_xmit: "skb to local stack",
    # NF_ACCEPT); any other is stolen and sent on from LOCAL_IN.
    stolen = ctx.point is HookPoint.INPUT and not ctx.netns.is_local(backend.ip)
    return Rewrite(res.packet, res.detail, res.diffs, endpoint=backend.key, xmit=stolen)


def hooks() -> list[Hook]:
    """kube-proxy's ipvs mode hooks for one node namespace."""
    return [
        Hook(HookPoint.PREROUTING, PRIORITY_DSTNAT, NAME, mark),
        Hook(HookPoint.OUTPUT, PRIORITY_DSTNAT, NAME, mark),
        Hook(HookPoint.OUTPUT, PRIORITY_LOCAL_OUT, IPVS_NAME, ipvs_in),
        Hook(HookPoint.INPUT, PRIORITY_KUBE_FILTER, FILTER_NAME, filter_input),
        Hook(HookPoint.INPUT, PRIORITY_LOCAL_IN, IPVS_NAME, ipvs_in),
        Hook(HookPoint.OUTPUT, PRIORITY_KUBE_FILTER + 1, FILTER_NAME, filter_output),
    ]


def policy_at_local_out(policy: list[Hook]) -> list[Hook]:
    """The CNI's FORWARD policy hooks, also at LOCAL_OUT for the requests IPVS forwards
    (which never cross FORWARD): where Calico's Felix enforces workload policy when it
    finds kube-ipvs0 (its IPVS support, `cali-OUTPUT`); here every CNI's filter does."""

    def at_out(fn: HookFn) -> HookFn:
        def hook(pkt: Packet, ctx: HookContext) -> HookResult:
            stolen = ctx.in_if is not None and IPVS_PROPERTY in ctx.extra
            return fn(pkt, ctx) if stolen else None

        return hook

    return [
        Hook(HookPoint.OUTPUT, h.priority, h.name, at_out(h.fn))
        for h in policy
        if h.point is HookPoint.FORWARD
    ]


def layout(cluster: Cluster) -> tuple[str, ...]:
    """What kube-ipvs0 depends on, for `dataplane.fabric.layout_of`."""
    if cluster.config.kube_proxy.mode.value != "ipvs":
        return ()
    return bound_addresses(cluster)
