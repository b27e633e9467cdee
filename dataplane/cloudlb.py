"""The cloud's side of Services: how the gateway router reaches LoadBalancer addresses,
`spec.externalIPs` and `cluster.gatewayRoutes`.

A LoadBalancer ingress address of `ipMode: VIP` (the default) belongs to a passthrough L4
load balancer (GCE's network load balancer, AWS NLB with instance targets, MetalLB in BGP
mode): it hands each connection, destination unchanged, to one node, and kube-proxy there
DNATs it.  Here that is a multipath route on the gateway, `ADDR/32 nexthop via NODE ...`,
one nexthop per node the load balancer's health check passes, and the flow's hash picks
one (`dataplane.routing.multipath`):
- `externalTrafficPolicy: Cluster`: every node (kube-proxy's `/healthz` answers 200 on all);
- `Local`: the nodes with a ready local endpoint (the `healthCheckNodePort` answers 200
  only there: pkg/proxy/healthcheck); when no node has one, every node (a load balancer
  whose backends all fail spreads traffic over all of them, as GCE's does), where
  kube-proxy then DROPs it.
`spec.externalIPs` are routed the same way (the cluster administrator's routes, which
Kubernetes leaves to them: "Kubernetes does not manage allocation of externalIPs").

`ipMode: Proxy` (KEP-1860) is a proxying load balancer: kube-proxy does not capture the
address, and the load balancer itself connects to a node's nodePort from its own address.
Here the gateway does it: DNAT `ADDR:port -> NODE:nodePort` at PREROUTING and SNAT to the
gateway's address at POSTROUTING (`hooks`).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from dataplane.flowhash import flow_of, pick_index
from dataplane.kubeproxy import endpoints
from dataplane.netfilter import (
    PRIORITY_DSTNAT,
    PRIORITY_SRCNAT,
    Hook,
    HookContext,
    HookPoint,
    HookResult,
)
from dataplane.packet import Packet
from dataplane.routing import Route
from dataplane.sockets import PROTOCOL_OF
from topology.model import Cluster, NodeSpec, Service

NAME = "cloud-lb"
_SNAT = "cloud-lb-snat"  # key of HookContext.extra: the proxy's own address


def backend_nodes(cluster: Cluster, svc: Service) -> tuple[tuple[NodeSpec, ...], str]:
    """The nodes a load balancer sends `svc`'s traffic to, and why (module docstring)."""
    nodes = cluster.config.nodes
    if svc.external_traffic_policy != "Local":
        return nodes, "externalTrafficPolicy Cluster: every node"
    # the health check counts ready local endpoints (LocalReadyEndpoints)
    ready = {b.node for sp in svc.ports for b in endpoints(cluster, svc, sp) if b.ready}
    local = tuple(n for n in nodes if n.name in ready)
    if not local:
        return nodes, (
            "externalTrafficPolicy Local and no node has a ready endpoint: every node"
        )
    return local, "externalTrafficPolicy Local: the nodes with a ready endpoint"


def gateway_routes(cluster: Cluster) -> list[Route]:
    """The gateway's routes for `cluster.gatewayRoutes`, VIP LoadBalancer addresses and
    external IPs."""
    cfg = cluster.config
    by_name = {n.name: n for n in cfg.nodes}
    out = [
        Route(r.cidr, "eth0", via=by_name[r.node].ip, comment="cluster.gatewayRoutes")
        for r in cfg.gateway_routes
    ]
    seen: set[IPv4Address] = set()
    for svc in cluster.services.values():
        targets = [(ip, "LoadBalancer") for ip in svc.load_balancer_vips()]
        targets += [(ip, "externalIP") for ip in svc.external_ips]
        for ip, what in targets:
            if ip in seen:
                continue  # two Services share an address: the first one's route
            seen.add(ip)
            nodes, why = backend_nodes(cluster, svc)
            names = ", ".join(n.name for n in nodes)
            out.append(
                Route(
                    IPv4Network(f"{ip}/32"),
                    "eth0",
                    nexthops=tuple(n.ip for n in nodes),
                    comment=f"{what} {ip} of {svc.key}: {why} ({names})",
                )
            )
    return out


def _proxied(cluster: Cluster) -> dict[tuple[int, str, int], tuple[Service, int]]:
    """(proto, address, port) -> (Service, nodePort) of every ipMode Proxy address."""
    numbers = {proto: num for num, proto in PROTOCOL_OF.items()}
    out: dict[tuple[int, str, int], tuple[Service, int]] = {}
    for svc in cluster.services.values():
        for ingress in svc.load_balancer_ingress:
            if ingress.ip_mode != "Proxy":
                continue
            for sp in svc.ports:
                if sp.node_port is not None:
                    key = (numbers[sp.protocol], str(ingress.ip), sp.port)
                    out[key] = (svc, sp.node_port)
    return out


def proxy_dnat(pkt: Packet, ctx: HookContext) -> HookResult:
    """A proxying load balancer takes a NEW connection to one node's nodePort."""
    ip = pkt.ip
    if ip is None or not ctx.is_new:
        return None
    hit = _proxied(ctx.cluster).get((ip.proto, ip.dst, pkt.dport))
    if hit is None:
        return None
    svc, node_port = hit
    nodes, why = backend_nodes(ctx.cluster, svc)
    flow = flow_of(pkt)
    index = pick_index(flow, len(nodes))
    node = nodes[index]
    ctx.extra[_SNAT] = str(ctx.cluster.config.gateway)
    detail = (
        f"{NAME}: ipMode Proxy {ip.dst}:{pkt.dport} of {svc.key} -> {node.name}"
        f" {node.ip}:{node_port} (node {index + 1} of {len(nodes)}, a choice among"
        f" {len(nodes)}: {why}; blake2b({flow!r}) % {len(nodes)} = {index})"
    )
    return ctx.dnat(pkt, str(node.ip), node_port, detail)


def proxy_snat(pkt: Packet, ctx: HookContext) -> HookResult:
    """The proxy connects from its own address: the server sees the load balancer."""
    to = ctx.extra.get(_SNAT)
    if to is None or pkt.ip is None or not ctx.is_new:
        return None
    return ctx.snat(pkt, to, f"{NAME}: the proxy connects from its own address {to}")


def hooks(cluster: Cluster) -> list[Hook]:
    """The gateway's hooks: only when some LoadBalancer address is of ipMode Proxy."""
    if not _proxied(cluster):
        return []
    return [
        Hook(HookPoint.PREROUTING, PRIORITY_DSTNAT, NAME, proxy_dnat, new_only=True),
        Hook(HookPoint.POSTROUTING, PRIORITY_SRCNAT, NAME, proxy_snat, new_only=True),
    ]


def layout(cluster: Cluster) -> tuple[object, ...]:
    """What the gateway's routes and hooks depend on (for `dataplane.fabric.layout_of`)."""
    return (tuple(gateway_routes(cluster)), tuple(_proxied(cluster)))
