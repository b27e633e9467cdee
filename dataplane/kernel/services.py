"""kube-proxy and masquerade as nftables rules, generated from the cluster model.

The rules are those of kube-proxy's iptables mode, written in nftables (the layout of its
nftables mode), for one node:

- nat prerouting and nat output (dstnat): `services` looks the packet up by
  `daddr . l4proto . dport` (ClusterIPs, LoadBalancer addresses) and, for a local
  destination other than 127/8, by `l4proto . dport` (nodePorts); each Service port jumps to
  its frontend chain (`svc-N` for the ClusterIP, `ext-N` for nodePort and LoadBalancer)
  which applies the traffic policy and marks for masquerade, then to a `pick-N-all` or
  `pick-N-local` chain that chooses an endpoint (`sep-N-K`: mark hairpin traffic, DNAT).
- LoadBalancer addresses (every ingress IP of ipMode VIP) and `spec.externalIPs` jump to
  the `ext-N` chain too; with `loadBalancerSourceRanges` a LoadBalancer address goes
  through `fw-N` first, which admits the ranges (and the VIPs when a range holds the
  node's address) and drops the rest (KUBE-FW).  NodePorts answer on the addresses
  `cluster.kubeProxy.nodePortAddresses` gives (127.0.0.1 too with iptables mode's
  `localhostNodePorts`, and the `route_localnet` sysctl it needs); `masqueradeAll` marks every ClusterIP
  connection; in nftables mode, `kube-filter` ends with `cluster-ips-check` (reject what is
  still addressed to a ClusterIP, drop the rest of the service CIDR but nodeCIDR).
  Endpoints are `dataplane.kubeproxy`'s (EndpointSlices and their conditions included).
- filter input/forward/output at priority -1 (`kube-filter`): a NEW connection that still
  has a Service address after DNAT is REJECTed (icmp port-unreachable) when the port has no
  endpoint at all, DROPped when it has none this traffic may use (a `Local` policy).
- nat postrouting (srcnat): kube-proxy's `KUBE-POSTROUTING` (masquerade what is marked
  0x4000), then ip-masq-agent's rule (pod traffic leaving the cluster).

The endpoint choice: kube-proxy picks at random (`numgen random`).  To compare one probe
with the simulator, whose pick is deterministic and written in its trace, the probe's flow
(`saddr . l4proto . sport . daddr . dport`) can be pinned to that endpoint: every `pick`
chain first looks the flow up in its own map (`@pin-N-all`), which holds only endpoints
that chain may choose, so a pin never takes traffic where the rules would not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from dataplane import kubeproxy
from dataplane.kernel.nft import (
    DROP,
    MASQ_MARK,
    MASQUERADE,
    REJECT_PORT_UNREACHABLE,
    Command,
    Expr,
    Ruleset,
    addresses,
    concat,
    ct_state,
    dport,
    fib_daddr_local,
    field_,
    has_mark,
    jump,
    l4proto,
    match,
    meta,
    set_mark,
    verdict_map,
)
from dataplane.kubeproxy_endpoints import ZONE_LABEL, cluster_endpoints
from dataplane.netns import Netns
from topology.model import (
    NODE_PORT_PRIMARY,
    Cluster,
    Pod,
    Protocol,
    ProxyMode,
    Service,
    ServicePort,
)

PIN_KEY = ["ipv4_addr", "inet_proto", "inet_service", "ipv4_addr", "inet_service"]
LOOPBACK = IPv4Network("127.0.0.0/8")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A ready pod selected by the Service, and the port its targetPort names."""

    pod: Pod
    port: int


def selected_pods(cluster: Cluster, svc: Service) -> list[Pod]:
    """The ready pods of the Service's namespace its selector matches, sorted by key."""
    return list(kubeproxy.selected_pods(cluster, svc))


def endpoints(cluster: Cluster, svc: Service, sp: ServicePort) -> list[Endpoint]:
    """The endpoints of one Service port as the simulator's kube-proxy has them
    (`dataplane.kubeproxy.port_rule`: the selected pods, or the Service's EndpointSlices
    with their ready / serving-terminating fallback), sorted by key; an EndpointSlice
    endpoint that is no pod's address has no namespace to answer here and is left out."""
    pods = {p.key: p for p in cluster.pods.values()}
    return [
        Endpoint(pods[b.key], b.port)
        for b in kubeproxy.port_rule(cluster, svc, sp).endpoints
        if b.key in pods
    ]


@dataclass(slots=True)
class Pick:
    """One `pick` chain: its pin map and the endpoint chains it may choose."""

    map: str
    seps: dict[str, str] = field(default_factory=dict)  # pod key -> sep chain


@dataclass(slots=True)
class ServiceRules:
    """What verify needs to pin flows: the pick chains of every Service port."""

    picks: dict[tuple[str, int], list[Pick]] = field(default_factory=dict)

    def pin(
        self, svc: str, index: int, flow: tuple[str, str, int, str, int], pod: str
    ) -> list[Command]:
        """Elements that send `flow` (saddr, l4proto, sport, daddr, dport) to `pod`."""
        from dataplane.kernel.nft import FAMILY, TABLE

        out: list[Command] = []
        for pick in self.picks.get((svc, index), []):
            sep = pick.seps.get(pod)
            if sep is None:
                continue
            elem = [[{"concat": list(flow)}, jump(sep)]]
            out.append(
                {
                    "add": {
                        "element": {
                            "family": FAMILY,
                            "table": TABLE,
                            "name": pick.map,
                            "elem": elem,
                        }
                    }
                }
            )
        return out

    def flush(self) -> list[Command]:
        from dataplane.kernel.nft import FAMILY, TABLE

        return [
            {"flush": {"map": {"family": FAMILY, "table": TABLE, "name": p.map}}}
            for picks in self.picks.values()
            for p in picks
        ]


def pod_cidrs(cluster: Cluster) -> list[IPv4Network]:
    return [n.pod_cidr for n in cluster.config.nodes]


def _flow_key() -> Expr:
    return concat(
        field_("ip", "saddr"),
        meta("l4proto"),
        field_("th", "sport"),
        field_("ip", "daddr"),
        field_("th", "dport"),
    )


def _pick(
    rs: Ruleset, name: str, eps: list[Endpoint], seps: list[str], label: str
) -> Pick:
    """A chain choosing one of `eps` (their `sep` chains): the pinned flow, else random."""
    chain = rs.chain(name)
    pick = Pick(rs.verdict_map(f"pin-{name}", PIN_KEY))
    for ep, sep in zip(eps, seps, strict=True):
        pick.seps[ep.pod.key] = sep
    rs.add(
        chain,
        {"vmap": {"key": _flow_key(), "data": f"@{pick.map}"}},
        comment=f"{label}: a probe pinned to the simulator's endpoint",
    )
    if eps:
        choices = [(i, jump(sep)) for i, sep in enumerate(seps)]
        rs.add(
            chain,
            verdict_map(
                {"numgen": {"mode": "random", "mod": len(eps), "offset": 0}}, choices
            ),
            comment=f"{label}: one of {len(eps)} endpoints at random",
        )
    return pick


def add_service_rules(rs: Ruleset, cluster: Cluster, node_ns: Netns) -> ServiceRules:
    """kube-proxy's rules on node `node_ns.node` (see the module docstring)."""
    node = node_ns.node
    node_ip = cluster.node(node).ip
    out = ServiceRules()
    cidrs = pod_cidrs(cluster)
    services = rs.chain("services")
    kube_filter = rs.chain("kube-filter")
    virtual: list[tuple[object, Expr]] = []
    node_ports: list[tuple[object, Expr]] = []
    for svc in cluster.services.values():
        for i, sp in enumerate(svc.ports):
            tag = f"{svc.namespace}.{svc.name}.{sp.name or sp.port}"  # as kube-proxy names it
            label = f"svc {svc.key}:{sp.name or sp.port}"
            proto = {Protocol.TCP: "tcp", Protocol.UDP: "udp", Protocol.SCTP: "sctp"}[
                sp.protocol
            ]
            eps = endpoints(cluster, svc, sp)
            # This node's Cluster-policy endpoints (topology hints applied) and Local-policy
            # ones (ready, else serving-terminating, here): pkg/proxy/topology.go,
            # CategorizeEndpoints (dataplane.kubeproxy_endpoints).
            rule = kubeproxy.port_rule(cluster, svc, sp)
            zone = cluster.node(node).labels.get(ZONE_LABEL, "")
            near = {b.key for b in cluster_endpoints(rule.every, node, zone).endpoints}
            here = {b.key for b in rule.local(node)}
            pods = {p.key: p for p in cluster.pods.values()}
            reach = [
                Endpoint(pods[b.key], b.port)
                for b in rule.every
                if b.key in pods and (b.key in near or b.key in here)
            ]
            local = [e for e in reach if e.pod.key in here]
            seps = []
            for ep in reach:
                sep = rs.chain(f"sep-{tag}.{ep.pod.name}")
                seps.append(sep)
                rs.add(
                    sep,
                    match(field_("ip", "saddr"), str(ep.pod.ip)),
                    set_mark(MASQ_MARK),
                    comment=f"KUBE-SEP {ep.pod.key}: hairpin, masquerade",
                )
                rs.add(
                    sep,
                    l4proto(sp.protocol),
                    {"dnat": {"addr": str(ep.pod.ip), "port": ep.port}},
                    comment=f"KUBE-SEP {ep.pod.key} {ep.pod.ip}:{ep.port}",
                )
            local_seps = [
                s for e, s in zip(reach, seps, strict=True) if e.pod.key in here
            ]
            near_eps = [e for e in reach if e.pod.key in near]
            near_seps = [
                s for e, s in zip(reach, seps, strict=True) if e.pod.key in near
            ]
            all_pick = _pick(rs, f"pick-{tag}-all", near_eps, near_seps, label)
            local_pick = _pick(rs, f"pick-{tag}-local", local, local_seps, label)
            out.picks[(svc.key, i)] = [all_pick, local_pick]
            # the ClusterIP frontend (KUBE-SVC)
            if svc.cluster_ip is not None:
                chain = rs.chain(f"svc-{tag}")
                if cluster.config.kube_proxy.masquerade_all:
                    rs.add(
                        chain,
                        set_mark(MASQ_MARK),
                        comment=f"{label}: masqueradeAll",
                    )
                else:
                    rs.add(
                        chain,
                        match(field_("ip", "saddr"), addresses(cidrs), "!="),
                        set_mark(MASQ_MARK),
                        comment=f"{label}: not from a pod (! -s clusterCIDR): masquerade",
                    )
                if svc.internal_traffic_policy != "Local":
                    rs.add(chain, jump(f"pick-{tag}-all"), comment=label)
                elif local:
                    rs.add(
                        chain,
                        jump(f"pick-{tag}-local"),
                        comment=f"{label}: internalTrafficPolicy Local",
                    )
                virtual.append(
                    ({"concat": [str(svc.cluster_ip), proto, sp.port]}, jump(chain))
                )
            # the nodePort and LoadBalancer frontend (KUBE-EXT)
            externals = [*svc.load_balancer_vips(), *svc.external_ips]
            if sp.node_port is not None or externals:
                chain = rs.chain(f"ext-{tag}")
                if svc.external_traffic_policy == "Local":
                    rs.add(
                        chain,
                        match(field_("ip", "saddr"), addresses(cidrs)),
                        jump(f"pick-{tag}-all"),
                        comment=f"{label}: pod traffic short-circuits to every endpoint",
                    )
                    rs.add(
                        chain,
                        match({"fib": {"result": "type", "flags": ["saddr"]}}, "local"),
                        set_mark(MASQ_MARK),
                        jump(f"pick-{tag}-all"),
                        comment=f"{label}: the node's own traffic: masquerade, every endpoint",
                    )
                    if local:
                        rs.add(
                            chain,
                            jump(f"pick-{tag}-local"),
                            comment=f"{label}: externalTrafficPolicy Local",
                        )
                else:
                    rs.add(
                        chain,
                        set_mark(MASQ_MARK),
                        jump(f"pick-{tag}-all"),
                        comment=f"{label}: externalTrafficPolicy Cluster: masquerade",
                    )
                ranges = svc.load_balancer_source_ranges
                for ip in externals:
                    target = jump(chain)
                    if ranges and ip in svc.load_balancer_vips():
                        target = jump(_firewall(rs, tag, svc, chain, node_ip, label))
                    virtual.append(({"concat": [str(ip), proto, sp.port]}, target))
                if sp.node_port is not None:
                    node_ports.append(({"concat": [proto, sp.node_port]}, jump(chain)))
            # kube-proxy's filter: Service ports nobody (here) serves
            verdict = REJECT_PORT_UNREACHABLE if not eps else DROP
            why = (
                "no endpoints: REJECT"
                if not eps
                else "no endpoint this traffic may use: DROP"
            )
            fronts: list[list[Expr]] = []
            if svc.cluster_ip is not None:
                fronts.append([match(field_("ip", "daddr"), str(svc.cluster_ip))])
            for ip in externals:
                fronts.append([match(field_("ip", "daddr"), str(ip))])
            for front in fronts:
                rs.add(
                    kube_filter,
                    *front,
                    l4proto(sp.protocol),
                    dport(sp.port),
                    verdict,
                    comment=f"{label}: {why}",
                )
            if sp.node_port is not None:
                rs.add(
                    kube_filter,
                    *node_port_addresses(cluster, node_ns),
                    l4proto(sp.protocol),
                    dport(sp.node_port),
                    verdict,
                    comment=f"{label} nodePort: {why}",
                )
    if virtual:
        rs.add(
            services,
            verdict_map(
                concat(field_("ip", "daddr"), meta("l4proto"), field_("th", "dport")),
                virtual,
            ),
            comment="KUBE-SERVICES: ClusterIPs and LoadBalancer addresses",
        )
    if node_ports:
        rs.add(
            services,
            *node_port_addresses(cluster, node_ns),
            verdict_map(concat(meta("l4proto"), field_("th", "dport")), node_ports),
            comment="KUBE-NODEPORTS: a nodePort on a NodePort address",
        )
    if cluster.config.kube_proxy.mode is ProxyMode.NFTABLES:
        _cluster_ips_check(rs, cluster, kube_filter)
    for hook, name in (("prerouting", "nat-prerouting"), ("output", "nat-output")):
        rs.base_chain(name, "nat", hook, -100)
        rs.add(name, jump(services), comment="kube-proxy DNAT")
    for hook in ("input", "forward", "output"):
        name = f"kube-filter-{hook}"
        rs.base_chain(name, "filter", hook, -1)
        rs.add(
            name,
            ct_state("new"),
            jump(kube_filter),
            comment="kube-proxy filter (NEW only)",
        )
    return out


def localhost_node_ports(cluster: Cluster) -> bool:
    """Whether NodePorts answer on 127.0.0.0/8: iptables mode's
    `iptables.localhostNodePorts` (default true), when `nodePortAddresses` leaves the
    loopback in (unset, or a CIDR inside 127.0.0.0/8; pkg/proxy/iptables/proxier.go:
    `localhostNodePorts && nodePortAddresses.ContainsIPv4Loopback()`)."""
    config = cluster.config.kube_proxy
    wanted = config.node_port_addresses
    if not config.localhost_node_ports or wanted == (NODE_PORT_PRIMARY,):
        return False
    return not wanted or any(IPv4Network(c).overlaps(LOOPBACK) for c in wanted)


def node_port_addresses(cluster: Cluster, node_ns: Netns) -> list[Expr]:
    """Where NodePorts answer (`cluster.kubeProxy.nodePortAddresses`): every local address
    (127.0.0.0/8 only with `localhost_node_ports`), the node's own address for
    `[primary]`, the local ones inside CIDRs."""
    wanted = cluster.config.kube_proxy.node_port_addresses
    if wanted == (NODE_PORT_PRIMARY,):
        return [match(field_("ip", "daddr"), str(cluster.node(node_ns.node).ip))]
    local = [fib_daddr_local()]
    if not localhost_node_ports(cluster):
        local.append(match(field_("ip", "daddr"), addresses([LOOPBACK]), "!="))
    if wanted:
        cidrs = [IPv4Network(c) for c in wanted]
        local.append(match(field_("ip", "daddr"), addresses(cidrs)))
    return local


def _firewall(
    rs: Ruleset, tag: str, svc: Service, ext: str, node_ip: IPv4Address, label: str
) -> str:
    """KUBE-FW: `loadBalancerSourceRanges` admit their sources to the external chain (and
    the LoadBalancer addresses themselves when a range holds the node's address); others
    are dropped."""
    name = f"fw-{tag}"
    if name in rs.names:
        return name
    chain = rs.chain(name)
    allowed: list[str | IPv4Network] = list(svc.load_balancer_source_ranges)
    if any(node_ip in c for c in svc.load_balancer_source_ranges):
        allowed += [IPv4Network(f"{ip}/32") for ip in svc.load_balancer_vips()]
    rs.add(
        chain,
        match(field_("ip", "saddr"), addresses(allowed)),
        jump(ext),
        comment=f"{label}: loadBalancerSourceRanges",
    )
    rs.add(chain, DROP, comment=f"{label}: other sources (KUBE-PROXY-FIREWALL)")
    return name


def _cluster_ips_check(rs: Ruleset, cluster: Cluster, kube_filter: str) -> None:
    """nftables mode's `cluster-ips-check`: reject what is still addressed to a ClusterIP
    after DNAT (an unknown port), drop the rest of the service CIDR (but nodeCIDR, as
    `dataplane.kubeproxy` does)."""
    cfg = cluster.config
    ips = [
        IPv4Network(f"{s.cluster_ip}/32")
        for s in cluster.services.values()
        if s.cluster_ip
    ]
    if ips:
        rs.add(
            kube_filter,
            match(field_("ip", "daddr"), addresses(list(ips))),
            REJECT_PORT_UNREACHABLE,
            comment="cluster-ips-check: reject traffic to invalid ports of ClusterIPs",
        )
    rs.add(
        kube_filter,
        match(field_("ip", "daddr"), addresses([cfg.service_cidr])),
        match(field_("ip", "daddr"), addresses([cfg.node_cidr]), "!="),
        DROP,
        comment="cluster-ips-check: drop traffic to unallocated ClusterIPs",
    )


def add_masquerade(rs: Ruleset, cluster: Cluster, node_ns: Netns) -> None:
    """nat postrouting: KUBE-POSTROUTING, then ip-masq-agent's rule."""
    cfg = cluster.config
    inside: list[str | IPv4Network] = [*pod_cidrs(cluster), cfg.service_cidr]
    rs.base_chain("nat-postrouting", "nat", "postrouting", 100)
    rs.add(
        "nat-postrouting",
        has_mark(MASQ_MARK),
        MASQUERADE,
        comment="KUBE-POSTROUTING: masquerade what kube-proxy marked",
    )
    mine = node_ns.addresses()
    rs.add(
        "nat-postrouting",
        match(field_("ip", "saddr"), addresses(inside)),
        match(field_("ip", "daddr"), addresses(inside), "!="),
        match(field_("ip", "saddr"), addresses(mine), "!="),
        MASQUERADE,
        comment="ip-masq-agent: pod traffic leaving the cluster",
    )
