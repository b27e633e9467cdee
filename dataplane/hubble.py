"""A walk as `hubble observe` prints it: one flow line per observation point of Cilium's
datapath the packet passed (`dataplane run -o hubble`, docs/cli.md).

A line is Hubble's compact format (hubble/pkg/printer `WriteProtoFlow`, compact
output) without its timestamp (a walk has no clock):

    default/a:40000 (ID:257) -> default/c:80 (ID:258) to-overlay FORWARDED (TCP Flags: SYN)

- the endpoints: a pod as `NAMESPACE/NAME`, anything else by its address, `:PORT` for
  TCP and UDP; after each its identity, `(ID:N)` for a pod (`dataplane.cni.cilium
  .identity`), a reserved one by name: `(host)` for the node that observes,
  `(remote-node)` for another node, `(world)` for the rest (pkg/identity reserved
  identities 1, 6 and 2);
- the arrow: `->` for a packet of the request direction, `<-` (the endpoints swapped,
  the client first) for a reply, `<>` for a drop (whose direction Hubble does not know);
- the event: the observation point in Hubble's words (`to-endpoint`, `from-overlay`,
  ... from the flow API's TraceObservationPoint names, pkg/monitor/api/types.go) and
  `FORWARDED`; a policy decision as `policy-verdict:<match> INGRESS|EGRESS
  ALLOWED|DENIED` (match `L3-L4` for a rule with ports, `L3-Only` without, `none` when
  no rule admits); a drop as `Policy denied DROPPED` (pkg/monitor/api drop reason 133);
- the summary: `TCP Flags: SYN, ACK`, `UDP`, `ICMPv4 EchoRequest` (the printer's);
- the socket-LB's translation of a connect() (a trace-sock event) as
  `post-xlate-fwd TRANSLATED (TCP)`, its destination the backend.

Policy decisions are lines only where a policy isolates the endpoint (Hubble emits
policy-verdict events for endpoints with policy enforcement, not for the others).
"""

from __future__ import annotations

from dataplane.packet import ICMP, TCP, UDP, Packet
from dataplane.trace import POLICY_DROPS, Hop, Trace
from topology.model import Cluster, Cni

TCP_FLAGS = (("S", "SYN"), ("F", "FIN"), ("R", "RST"), ("P", "PSH"), ("A", "ACK"))
ICMP_TYPES = {0: "EchoReply", 3: "DestinationUnreachable", 8: "EchoRequest", 11: "TimeExceeded"}  # fmt: skip


def check(cluster: Cluster, name: str) -> None:
    """Hubble observes Cilium's datapath only."""
    from topology.errors import TopologyError

    cni = cluster.config.cni
    if cni is not Cni.CILIUM:
        raise TopologyError(
            f"-o hubble: scenario {name!r} has cni: {cni}; Hubble observes Cilium's"
            " datapath (allowed: scenarios with cni: cilium)"
        )


def _summary(pkt: Packet) -> str:
    l4 = pkt.l4
    if isinstance(l4, TCP):
        flags = [word for letter, word in TCP_FLAGS if letter in l4.flags]
        return "TCP Flags: " + ", ".join(flags)
    if isinstance(l4, UDP):
        return "UDP"
    if isinstance(l4, ICMP):
        return "ICMPv4 " + ICMP_TYPES.get(l4.type, str(l4.type))
    return "IPv4"


class _Names:
    """Endpoint names and identities as Hubble shows them."""

    def __init__(self, cluster: Cluster) -> None:
        from dataplane.cni.cilium import identity

        self.pods = {
            str(p.ip): (p.key, f"ID:{identity(cluster, p)}")
            for p in cluster.pods.values()
            if not p.host_network
        }
        self.nodes: dict[str, str] = {}
        for n in cluster.nodes:
            self.nodes[str(n.ip)] = n.name
            self.nodes[str(n.bridge_ip)] = n.name  # cilium_host's router address

    def endpoint(self, ip: str, port: int | None, observer: str) -> str:
        pod = self.pods.get(ip)
        if pod is not None:
            name, ident = pod
        else:
            node = self.nodes.get(ip)
            name = ip
            if node is None:
                ident = "world"
            else:
                ident = "host" if node == observer else "remote-node"
        shown = name if port is None else f"{name}:{port}"
        return f"{shown} ({ident})"


def _event(hop: Hop) -> str:
    if hop.point == "POST_XLATE_FWD":  # a trace-sock event of the socket-LB
        return "post-xlate-fwd TRANSLATED"
    if hop.point == "POLICY_VERDICT":
        direction = "EGRESS" if hop.program == "cil_from_container" else "INGRESS"
        if hop.reason in POLICY_DROPS:
            return f"policy-verdict:none {direction} DENIED"
        match = "L3-L4" if ", ports " in hop.detail else "L3-Only"
        return f"policy-verdict:{match} {direction} ALLOWED"
    return hop.point.lower().replace("_", "-") + " FORWARDED"


def _shown(hop: Hop) -> bool:
    if not hop.point or hop.packet is None or hop.packet.ip is None:
        return False
    if hop.point == "POLICY_VERDICT":
        return hop.reason in POLICY_DROPS or "not isolated" not in hop.detail
    return True


def flow_lines(trace: Trace, cluster: Cluster) -> list[str]:
    """Hubble's flow lines for every observation point of `trace`; a policy drop adds
    its DROPPED line after the policy verdict."""
    names = _Names(cluster)
    lines: list[str] = []
    for hop in trace.hops:
        if not _shown(hop):
            continue
        pkt = hop.packet
        assert pkt is not None and pkt.ip is not None
        inner = pkt.inner if pkt.tunnel is not None and pkt.inner is not None else pkt
        ip = inner.ip
        assert ip is not None
        ports = isinstance(inner.l4, (TCP, UDP))
        src = names.endpoint(ip.src, inner.sport if ports else None, hop.node)
        dst = names.endpoint(ip.dst, inner.dport if ports else None, hop.node)
        tail = f"({_summary(inner)})"
        if hop.point == "POST_XLATE_FWD":  # Hubble shows a socket's protocol only
            tail = f"({_summary(inner).split(' ')[0]})"
        if hop.direction == "reply":
            lines.append(f"{dst} <- {src} {_event(hop)} {tail}")
        else:
            lines.append(f"{src} -> {dst} {_event(hop)} {tail}")
        if hop.reason in POLICY_DROPS:
            lines.append(f"{src} <> {dst} Policy denied DROPPED {tail}")
    return lines
