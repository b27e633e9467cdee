"""The comparison of one scenario: each probe's verdicts side by side, and the rule that
says when they agree.

Agreement is the same verdict word, as far as a socket can tell: a client that hears
nothing cannot know which hook dropped its packet, so the kernel's `denied` (silence until
the deadline) agrees with the simulator's `denied-egress`, `denied-ingress` and `dropped`,
and with any verdict the simulator reached while its own client heard nothing (a router
with no route back to the sender cannot deliver its ICMP error).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from dataplane.dns import phases
from dataplane.kernel.probe import KernelVerdict
from dataplane.trace import Trace
from topology.scenario import Verdict

# What built each part of the kernel side, and how independent of the simulator it is
# (issue 13): `verify -o json` gives it as `kernel_side`, the README as a table.  The
# fabric's parts (devices, addresses, routes) are the build's: `Report.kernel_side`
# starts with `KernelCluster.kernel_side()` (upstream CNI plugins or the model).
KERNEL_SIDE: dict[str, str] = {
    "kube-proxy": "nftables rules derived from the model (kube-proxy's nftables layout)",
    "NetworkPolicy": "nftables rules compiled with the simulator's selector code",
    "admin policy tiers (ANP, BANP, ClusterNetworkPolicy)": (
        "nftables chains derived from the model in OVN-Kubernetes' tier order (Admin by "
        "priority, NetworkPolicy, Baseline), selectors matched with the simulator's "
        "selector code, domainNames from the model's DNS records"
    ),
    "masquerade": "nftables rules derived from the model (ip-masq-agent's rule)",
    "kube-dns": "the project's answers from the model (dataplane.kernel.dns)",
    "IP stack, conntrack, br_netfilter, ICMP, ARP, fragments, multicast": (
        "this machine's Linux kernel, sysctls at their defaults plus those the node's "
        "components set (ip_forward, bridge-nf-call-iptables, Felix's proxy_arp, "
        "kube-proxy's route_localnet and conntrack timeouts, the container runtime's "
        "ping_group_range; dataplane.kernel.sysctls)"
    ),
    "Service endpoint": (
        "the kernel's random pick, read from conntrack; the simulator walks again with it"
    ),
    "cloud load balancer's node": (
        "the kernel's multipath hash, read from conntrack; the simulator walks again "
        "with it"
    ),
    "devices crossed, TTL on arrival": (
        "the kernel's packet sockets on every device (each probe marked by IP_TOS), "
        "against the simulator's captures"
    ),
    "servers and clients": "Python sockets: wildcard-bound listeners, connecting clients",
}

SILENT = frozenset({Verdict.DENIED_EGRESS, Verdict.DENIED_INGRESS, Verdict.DROPPED})
AGREE, MISMATCH, NOT_COMPARABLE = "agree", "MISMATCH", "not comparable"


def agree(
    sim: Verdict | None, kernel: Verdict | None, sim_silent: bool = False
) -> bool:
    """Whether the kernel's verdict is the simulator's, as far as a socket can tell.

    The kernel's `denied` is silence: it agrees with the simulator's silent verdicts, and
    with any verdict the simulator reached while its client heard nothing (`sim_silent`:
    a router without a route back cannot send its ICMP error).

    >>> agree(Verdict.DENIED_INGRESS, Verdict.DENIED), agree(Verdict.REFUSED, Verdict.DENIED)
    (True, False)
    >>> agree(Verdict.NO_ROUTE, Verdict.DENIED, sim_silent=True)
    True
    """
    if sim is None or kernel is None:
        return False
    if kernel is Verdict.DENIED:
        return sim in SILENT or sim_silent
    return sim is kernel


def heard_nothing(trace: Trace, node: str, label: str) -> bool:
    """Whether the simulator's client (in namespace `label` of `node`) learned nothing:
    no answer was delivered to it and its own stack refused nothing.

    A probe by DNS name is judged by its connection alone: the lookup's answer is no
    answer to the connection (the kernel's client, too, resolves first and then hears
    nothing); a probe that ended in its lookup is judged by the lookup."""
    lookup, connection = phases(trace)
    for h in connection if connection is not None else lookup:
        if h.node != node or h.netns != label:
            continue
        if h.direction == "reply" and h.event == "deliver":
            return False
        if h.direction == "request" and h.reason is not None:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Part:
    """One more thing compared besides the verdict: what the simulator and the kernel
    saw of it (`endpoint`, `server saw`, `server ttl`, `answer from`, `answer ttl`)."""

    name: str
    sim: str
    kernel: str

    @property
    def agrees(self) -> bool:
        return self.sim == self.kernel

    def to_dict(self) -> dict[str, object]:
        return {
            "part": self.name,
            "simulator": self.sim,
            "kernel": self.kernel,
            "agree": self.agrees,
        }


@dataclass(frozen=True, slots=True)
class Seen:
    """What the simulator says one side saw: the server's view of the request (where,
    from which source, with which TTL) and the client's view of the answer."""

    server_node: str = ""
    server_netns: str = ""
    server_src: str = ""
    server_ttl: int = 0
    server_proto: int = 0
    server_dport: int = 0  # the port the server listens on (after any DNAT)
    answer_from: str = ""
    answer_ttl: int = 0


def sim_seen(trace: Trace, node: str, label: str) -> Seen:
    """The simulator's server and answer, from the connection's hops (a probe by DNS
    name: after its lookup) of a client in namespace `label` of `node`."""
    lookup, connection = phases(trace)
    hops = connection if connection is not None else lookup
    server = next(
        (
            h
            for h in hops
            if h.event == "deliver"
            and h.direction == "request"
            and h.packet is not None
            and h.packet.ip is not None
            and not (h.node == node and h.netns == label)
            and (h.reason is None)
            and "socket" in h.detail
        ),
        None,
    )
    answer = next(
        (
            h
            for h in reversed(hops)
            if h.event == "deliver"
            and h.direction == "reply"
            and h.node == node
            and h.netns == label
            and h.packet is not None
            and h.packet.ip is not None
        ),
        None,
    )
    out = Seen()
    if server is not None and server.packet is not None and server.packet.ip:
        pkt = server.packet
        assert pkt.ip is not None
        out = Seen(
            server.node, server.netns, pkt.ip.src, pkt.ip.ttl, pkt.ip.proto, pkt.dport
        )
    if answer is not None and answer.packet is not None and answer.packet.ip:
        out = replace(
            out, answer_from=answer.packet.ip.src, answer_ttl=answer.packet.ip.ttl
        )
    return out


@dataclass(slots=True)
class Row:
    """One probe: what the simulator said beside what the kernel said."""

    step: int
    kind: str  # probe, matrix, send, replay
    title: str
    sim: Verdict | None
    sim_detail: str
    kernel: KernelVerdict
    sim_seconds: float = 0.0
    sim_silent: bool = False  # the simulator's client heard nothing
    parts: list[Part] = field(default_factory=list)  # compared beside the verdict

    @property
    def status(self) -> str:
        if self.kernel.verdict is None:  # what could be compared must still agree
            return MISMATCH if self.differs() else NOT_COMPARABLE
        if not agree(self.sim, self.kernel.verdict, self.sim_silent):
            return MISMATCH
        return AGREE if all(p.agrees for p in self.parts) else MISMATCH

    def differs(self) -> list[Part]:
        """The parts besides the verdict on which the two disagree."""
        return [p for p in self.parts if not p.agrees]

    def to_dict(self) -> dict[str, object]:
        return {
            "step": self.step,
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "simulator": self.sim.value if self.sim else None,
            "simulator_detail": self.sim_detail,
            "simulator_client_heard_nothing": self.sim_silent,
            "kernel": self.kernel.verdict.value if self.kernel.verdict else None,
            "kernel_detail": self.kernel.detail,
            "parts": [p.to_dict() for p in self.parts],
            "kernel_seconds": round(self.kernel.seconds, 6),
            "simulator_seconds": round(self.sim_seconds, 6),
        }


@dataclass(slots=True)
class Report:
    """The comparison of one scenario."""

    scenario: str
    path: str
    rows: list[Row] = field(default_factory=list)
    build_seconds: float = 0.0
    teardown_seconds: float = 0.0
    namespaces: int = 0
    kept: list[str] = field(default_factory=list)
    shortened: dict[str, str] = field(default_factory=dict)  # kernel name -> model id
    reaped: list[str] = field(default_factory=list)  # ended runs' sets removed first
    neighbour_overflows: int = 0  # ARP entries the kernel refused during the probes
    # what built each part of the kernel side (`verify -o json` `kernel_side`)
    kernel_side: dict[str, str] = field(default_factory=lambda: dict(KERNEL_SIDE))
    # what the kernel side's own builder made beside the simulator's model (Docker
    # Engine's containers: addresses, published ports); a difference fails the report
    built: list[Part] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.status == status)

    @property
    def ok(self) -> bool:
        return self.count(MISMATCH) == 0 and all(p.agrees for p in self.built)

    def ratio(self, answered: bool = True) -> float | None:
        """Mean kernel time per compared probe over the simulator's mean for the same
        probes; `answered` leaves out the probes the kernel heard nothing for (each of
        them costs the timeout, whatever the network)."""
        timed = [
            r
            for r in self.rows
            if r.status != NOT_COMPARABLE
            and r.sim_seconds > 0
            and not (answered and r.kernel.verdict is Verdict.DENIED)
        ]
        if not timed:
            return None
        k = sum(r.kernel.seconds for r in timed) / len(timed)
        s = sum(r.sim_seconds for r in timed) / len(timed)
        return k / s if s else None

    def ordered(self) -> list[Row]:
        """Mismatches first, then what could not be compared, then agreements."""
        rank = {MISMATCH: 0, NOT_COMPARABLE: 1, AGREE: 2}
        return sorted(self.rows, key=lambda r: rank[r.status])
