"""Cilium's kube-proxy replacement: Services translated by its BPF programs, not by
iptables chains (no KUBE-SERVICES, KUBE-SVC, KUBE-SEP on a cilium node).

- a pod's connect() to a ClusterIP (or a LoadBalancer address) is translated in the pod's
  socket by `cil_sock4_connect` (bpf/bpf_sock.c, `__sock4_xlate_fwd`): the socket is
  connected to the backend, so the SYN leaves the pod already addressed to it and no
  reverse NAT is needed (`translate_connect`, called by `dataplane.sim.Simulator.probe`);
- a packet to a Service that no socket translated (a crafted `send`, the node's own
  traffic) is translated per packet (`lb_hook`): from a pod in `cil_from_container`
  (bpf_lxc.c, `lb4_lookup_service` / `lb4_local`), arriving on `eth0` in
  `cil_from_netdev` (bpf/lib/nodeport.h `nodeport_lb4`: NodePort and LoadBalancer, with
  SNAT to the node for `externalTrafficPolicy: Cluster`), the node's own sockets in
  `cil_sock4_connect` (the socket-LB runs in the host's cgroup too); conntrack un-NATs
  the replies (Cilium's CT and `lb4_rev_nat`);
- a Service port without a backend: `serviceNoBackendResponse: reject` (the Helm
  default): an ICMP destination unreachable, the client sees "connection refused".

The backend choice and the traffic policies are kube-proxy's (`dataplane.kubeproxy`:
`plan`, `choose`): Cilium picks a backend at random (or by Maglev); the same deterministic
pick keeps the simulator's traces stable and the same as kube-proxy's.
"""

from __future__ import annotations

from dataplane.kubeproxy import Frontend, Plan, ServicePortRule, choose, plan, table_for
from dataplane.masquerade import mark_masq
from dataplane.netfilter import (
    PRIORITY_DSTNAT,
    Drop,
    Hook,
    HookContext,
    HookPoint,
    HookResult,
    Reject,
    Rewrite,
    rewrite_dst,
)
from dataplane.netns import Netns
from dataplane.packet import Packet
from dataplane.trace import DropReason, FieldDiff

NAME = "cilium-lb"
SOCK_CONNECT = "cil_sock4_connect"  # bpf_sock.c: cgroup/connect4


def _program(ctx: HookContext) -> str:
    """The BPF program that translates a packet where `ctx` sees it."""
    if ctx.point is HookPoint.OUTPUT:
        return SOCK_CONNECT
    if ctx.in_if is not None and ctx.in_if.startswith("lxc"):
        return "cil_from_container"
    if ctx.in_if in ("cilium_vxlan", "cilium_geneve"):  # bpf_overlay.c on either tunnel
        return "cil_from_overlay"
    return "cil_from_netdev"


def _pick(
    rule: ServicePortRule, frontend: Frontend, p: Plan, pkt: Packet, program: str
) -> tuple[str, str, int, str]:
    """(detail, backend IP, backend port, backend pod) for a NEW connection."""
    assert pkt.ip is not None
    backend, how = choose(rule, p.candidates, pkt)
    pick = p.candidates.index(backend) + 1
    detail = (
        f"{program}: {frontend.value} {pkt.ip.dst}:{pkt.dport} is {rule.name} -> backend"
        f" {backend.key} {backend.ip}:{backend.port} (backend {pick} of"
        f" {len(p.candidates)} {p.scope}; {how})"
    )
    return detail, backend.ip, backend.port, backend.key


def _service_of(
    pkt: Packet, ctx: HookContext
) -> tuple[ServicePortRule, Frontend] | None:
    """The Service port the first packet of a connection is addressed to (Cilium's
    `lb4_lookup_service`), or None: a later packet follows its connection's NAT."""
    new = pkt.ip is not None and ctx.is_new and not ctx.bridged
    return table_for(ctx.cluster).lookup(ctx, pkt) if new else None


def lb_hook(pkt: Packet, ctx: HookContext) -> HookResult:
    """PREROUTING / OUTPUT: the per-packet service translation of Cilium's programs."""
    hit = _service_of(pkt, ctx)
    if hit is None:
        return None
    rule, frontend = hit
    program = _program(ctx)
    if not rule.endpoints:
        return Reject(
            f"{program}: {rule.name} has no backends -> serviceNoBackendResponse reject"
            " (icmp-port-unreachable)",
            code=DropReason.NO_ENDPOINTS,
        )
    p = plan(rule, frontend, pkt, ctx)
    if not p.candidates:
        return Drop(
            f"{program}: {rule.name} has no local backends on {ctx.node} -> drop"
        )
    detail, ip, port, pod = _pick(rule, frontend, p, pkt, program)
    if frontend is not Frontend.CLUSTER_IP and p.masq is not None:
        # nodeport.h: a remote backend of a Cluster-policy NodePort is reached SNATed to
        # the node (the reply must come back through it for the reverse translation).
        mark_masq(ctx, p.masq)
        detail += f"; SNAT to the node: {p.masq}"
    res = ctx.dnat(pkt, ip, port, detail)
    return Rewrite(res.packet, res.detail, res.diffs, endpoint=pod)


def translate_connect(
    ns: Netns, pkt: Packet, ctx: HookContext
) -> tuple[Packet, str, tuple[FieldDiff, ...], str] | None:
    """A pod's connect() to a ClusterIP or LoadBalancer address, as `cil_sock4_connect`
    translates it: (the first packet to the backend, the hop's detail, the rewrites, the
    backend pod), or None (not a Service address, or no backend to pick: the packet goes
    out as it is and `lb_hook` answers it)."""
    hit = table_for(ctx.cluster).lookup(ctx, pkt)
    if hit is None:
        return None
    rule, frontend = hit
    if frontend is Frontend.NODE_PORT or not rule.endpoints:
        return None
    p = plan(rule, frontend, pkt, ctx)
    if not p.candidates:
        return None
    detail, ip, port, pod = _pick(rule, frontend, p, pkt, SOCK_CONNECT)
    detail += "; the socket is connected to the backend: no per-packet NAT"
    res = rewrite_dst(pkt, ip, port, detail)
    return res.packet, res.detail, res.diffs, pod


def hooks() -> list[Hook]:
    """Cilium's service translation for one node namespace (instead of kube-proxy's)."""
    return [
        Hook(HookPoint.PREROUTING, PRIORITY_DSTNAT, NAME, lb_hook),
        Hook(HookPoint.OUTPUT, PRIORITY_DSTNAT, NAME, lb_hook),
    ]
