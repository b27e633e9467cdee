"""Masquerade: every source NAT of the cluster's nodes, one hook in nat POSTROUTING.

Three rules, in the order a node applies them:
- the CNI portmap plugin's `CNI-HOSTPORT-MASQ` (its jump is put first in POSTROUTING): a
  packet `dataplane.portmap` marked with `CNI-HOSTPORT-SETMARK` (0x2000: a hostPort
  reached from the pod's own subnet or from the node's 127.0.0.1) is masqueraded;
- kube-proxy's `KUBE-POSTROUTING`: a packet that `dataplane.kubeproxy` marked with
  `KUBE-MARK-MASQ` (hairpin, the node's own traffic to a ClusterIP, external traffic with
  `externalTrafficPolicy: Cluster`) is masqueraded, whatever its addresses;
- ip-masq-agent's (and flannel's) rule: a NEW connection from a pod address to an address
  outside every node's podCIDR and outside the serviceCIDR leaves the cluster, so it is SNATed
  to the address of the interface it leaves by, and external hosts answer the node.

MASQUERADE takes the primary address of the outgoing interface (`cbr0`'s for a pod on this
node, `flannel.1`'s in VXLAN mode, `eth0`'s otherwise) and keeps the port; conntrack rewrites
the replies back.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from dataplane.netfilter import (
    ACCEPT,
    PRIORITY_SRCNAT,
    Accept,
    Hook,
    HookContext,
    HookPoint,
    HookResult,
)
from dataplane.netns import Kind
from dataplane.packet import Packet
from topology.model import Cluster

NAME = "masquerade"
MASQ_MARK = (
    "KUBE-MARK-MASQ"  # key of HookContext.extra: the skb mark 0x4000 and its reason
)
HOSTPORT_MARK = "CNI-HOSTPORT-SETMARK"  # the portmap plugin's mark 0x2000, and why


def in_pod_cidr(cluster: Cluster, ip: str) -> bool:
    """Whether `ip` is inside some node's podCIDR (kube-proxy's `clusterCIDR`)."""
    return _places(cluster).of(ip)[0]


def in_cluster(cluster: Cluster, ip: str) -> bool:
    """Whether `ip` is a pod address (any podCIDR) or a Service address."""
    pod, service = _places(cluster).of(ip)
    return pod or service


class _Places:
    """Where an address is, in a cluster's podCIDRs or its Service CIDR: each address
    answered once (a walk asks of a few addresses, many times)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster  # keeps the id valid
        self.pod_cidrs = [n.pod_cidr for n in cluster.config.nodes]
        self.service_cidr = cluster.config.service_cidr
        self.known: dict[str, tuple[bool, bool]] = {}

    def of(self, ip: str) -> tuple[bool, bool]:
        found = self.known.get(ip)
        if found is None:
            addr = IPv4Address(ip)
            found = self.known[ip] = (
                any(addr in c for c in self.pod_cidrs),
                addr in self.service_cidr,
            )
        return found


_PLACES: dict[int, _Places] = {}


def _places(cluster: Cluster) -> _Places:
    found = _PLACES.get(id(cluster))
    if found is None or found.cluster is not cluster:
        if len(_PLACES) >= 8:
            _PLACES.pop(next(iter(_PLACES)))
        found = _PLACES[id(cluster)] = _Places(cluster)
    return found


def mark_masq(ctx: HookContext, why: str) -> None:
    """`-j KUBE-MARK-MASQ`: masquerade this packet when it leaves the node."""
    ctx.extra[MASQ_MARK] = why


def mark_hostport(ctx: HookContext, why: str) -> None:
    """`-j CNI-HOSTPORT-SETMARK`: masquerade this packet when it leaves the node."""
    ctx.extra[HOSTPORT_MARK] = why


def masquerade(pkt: Packet, ctx: HookContext) -> HookResult:
    ip = pkt.ip
    if ip is None or not ctx.is_new or ctx.out_if is None:
        return ACCEPT
    why = ctx.extra.get(HOSTPORT_MARK)
    if why is not None:
        to = masq_source(ctx)
        return ctx.snat(
            pkt, to, f"CNI-HOSTPORT-MASQ MASQUERADE {ip.src} -> {to} ({why})"
        )
    why = ctx.extra.get(MASQ_MARK)
    if why is not None:
        to = masq_source(ctx)
        if to == ip.src:
            return Accept(
                f"KUBE-POSTROUTING MASQUERADE: {to} is already the node's ({why})"
            )
        return ctx.snat(
            pkt, to, f"KUBE-POSTROUTING MASQUERADE {ip.src} -> {to} ({why})"
        )
    if ctx.bridged:
        return ACCEPT
    if not in_cluster(ctx.cluster, ip.src) or in_cluster(ctx.cluster, ip.dst):
        return ACCEPT
    if ctx.netns.is_local(ip.src):
        return ACCEPT  # the node's own address (the bridge's): not pod traffic
    to = masq_source(ctx)
    return ctx.snat(pkt, to, f"MASQUERADE {ip.src} -> {to} (leaves the cluster)")


def masq_source(ctx: HookContext) -> str:
    """The address MASQUERADE takes: the outgoing interface's primary address; `lo` has no
    address of universe scope, so the node's first other address (inet_select_addr)."""
    assert ctx.out_if is not None
    ns = ctx.netns
    if ns.interfaces[ctx.out_if].kind is Kind.LOOPBACK:
        return next(
            str(i.primary)
            for i in ns.interfaces.values()
            if i.kind is not Kind.LOOPBACK and i.primary is not None
        )
    return ns.source_for(ctx.out_if)


def hooks() -> list[Hook]:
    return [
        Hook(HookPoint.POSTROUTING, PRIORITY_SRCNAT, NAME, masquerade, new_only=True)
    ]
