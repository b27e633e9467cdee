"""Questions a walk asks a learner before each decision, for the browser's predict mode
and `dataplane quiz`.

Every question is built from what the walk did and what the model holds: the routing
table the namespace looked the destination up in (the right answer is the route the
trace took, the others are the table's other routes), what a bridge did with a frame
(up to IP, to one port by its FDB, flooded), whether a node wrapped the packet in VXLAN,
what the NetworkPolicy filter decided, which endpoint kube-proxy chose among the
Service's endpoints, and the walk's final verdict.  Nothing is asked that the trace does
not answer, and the reason shown is the hop's own detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dataplane.graph import HOOK_EVENTS
from dataplane.trace import Hop, Trace, Verdict

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.netns import Netns
    from dataplane.sim import Simulator

# The verdicts offered beside the right one, most plausible first.
VERDICT_CHOICES = (
    Verdict.DELIVERED,
    Verdict.DENIED_INGRESS,
    Verdict.DENIED_EGRESS,
    Verdict.REFUSED,
    Verdict.NO_ROUTE,
    Verdict.UNREACHABLE,
    Verdict.TTL_EXCEEDED,
    Verdict.TOO_BIG,
)
FINAL = (
    0  # the `seq` of the question about the walk's outcome (asked after the last hop)
)


@dataclass(frozen=True, slots=True)
class Question:
    """Asked before hop `seq` is shown (`FINAL`: after the last one); `answer` indexes
    `options`."""

    seq: int
    kind: str  # route, bridge, encap, policy, nat, verdict
    prompt: str
    options: tuple[str, ...]
    answer: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "prompt": self.prompt,
            "options": list(self.options),
            "answer": self.answer,
            "reason": self.reason,
        }


def _netns(sim: Simulator, hop: Hop) -> Netns | None:
    """The namespace a hop happened in (`pod default/a` -> `pod:default/a`, ...)."""
    if hop.netns.startswith("pod "):
        key = "pod:" + hop.netns.removeprefix("pod ")
    elif hop.netns.startswith("external "):
        key = "external:" + hop.netns.removeprefix("external ")
    elif hop.netns == "host":
        key = hop.node
    else:
        key = hop.netns
    return sim.fabric.netns.get(key)


def _choice(
    right: str, others: list[str], limit: int = 4
) -> tuple[tuple[str, ...], int]:
    """The right answer among up to `limit - 1` others, in a stable order (sorted, so the
    right one is not always first).

    >>> _choice("b", ["c", "a", "b", "d", "e"])
    (('a', 'b', 'c', 'd'), 1)
    """
    picked = [o for o in dict.fromkeys(others) if o != right][: limit - 1]
    options = sorted([right, *picked])
    return tuple(options), options.index(right)


def _route_question(sim: Simulator, hop: Hop, where: str) -> Question | None:
    ns = _netns(sim, hop)
    if ns is None or hop.packet is None or hop.packet.ip is None:
        return None
    dst = hop.packet.ip.dst
    route = ns.routes.lookup(dst)
    if route is None or f"dev {route.oif}" not in hop.detail:
        return None  # a local delivery or a policy the table alone does not answer
    right = str(route).split(" proto ")[0].split(" scope ")[0]
    others = [str(r).split(" proto ")[0].split(" scope ")[0] for r in ns.routes.show()]
    options, answer = _choice(right, [*others, "no route (ICMP net unreachable)"])
    return Question(
        hop.seq,
        "route",
        f"{where}: which route does the lookup of {dst} take?",
        options,
        answer,
        f"longest prefix match: {hop.detail}",
    )


def _bridge_question(hop: Hop, where: str) -> Question | None:
    detail = hop.detail
    up = f"up to {hop.device}'s own IP layer (the frame is for the bridge's MAC)"
    flood = "flooded out of every other port"
    port = "forwarded out of one port (its FDB knows the MAC)"
    if "up to IP" in detail and "flood" not in detail:
        right = up
    elif detail.startswith("fdb "):
        right = port
    elif "flood" in detail:
        right = flood
    else:
        return None
    options, answer = _choice(right, [up, flood, port])
    return Question(
        hop.seq, "bridge", f"{where}: what does {hop.device} do with this frame?",
        options, answer, detail,
    )  # fmt: skip


def questions(sim: Simulator, trace: Trace) -> list[Question]:
    """The questions of one walk, in hop order, the final verdict last."""
    out: list[Question] = []
    asked: set[tuple[str, str, str, str]] = set()
    for hop in trace.hops:
        where = f"{hop.node} {hop.netns}".strip()
        side = (
            "egress"
            if "egress" in hop.detail
            else "ingress"
            if "ingress" in hop.detail
            else ""
        )
        once = (hop.event, where, hop.direction, side)
        if hop.direction != "request" or once in asked:
            continue  # one question per decision point, on the way there
        q: Question | None = None
        if hop.event == "route":
            q = _route_question(sim, hop, where)
        elif hop.event == "bridge" and not (
            hop.packet is not None and hop.packet.arp is not None
        ):
            q = _bridge_question(hop, where)
        elif hop.event == "encap":
            options, answer = _choice(
                "yes: wrapped in VXLAN (outer IP/UDP to the other node)",
                ["no: routed as it is"],
            )
            q = Question(hop.seq, "encap", f"{where}: is the packet encapsulated "
                         f"before it leaves by {hop.device}?", options, answer,
                         hop.detail)  # fmt: skip
        elif hop.event in HOOK_EVENTS and "netpol" in hop.detail:
            right = "accepted" if hop.reason is None else "dropped"
            options, answer = _choice(right, ["accepted", "dropped"])
            q = Question(hop.seq, "policy", f"{where} {hop.event}: does NetworkPolicy "
                         "let this packet pass?", options, answer, hop.detail)  # fmt: skip
        elif hop.event == "nat" and "KUBE-SEP" in hop.detail:
            q = _nat_question(sim, hop, where)
        if q is not None:
            asked.add(once)
            out.append(q)
    if trace.verdict is not None:
        right = trace.verdict.value
        options, answer = _choice(right, [v.value for v in VERDICT_CHOICES])
        out.append(Question(FINAL, "verdict", "What becomes of the probe?", options,
                            answer, f"{right}: {trace.explanation}"))  # fmt: skip
    return out


def _nat_question(sim: Simulator, hop: Hop, where: str) -> Question | None:
    """Which endpoint kube-proxy's DNAT picks: the Service's endpoints are the options."""
    from dataplane.kubeproxy import endpoints

    words = hop.detail.split()
    try:
        svc_word = words[words.index("KUBE-SVC") + 1]
        chosen = words[words.index("KUBE-SEP") + 1]
    except (ValueError, IndexError):
        return None
    svc = sim.cluster.services.get(svc_word.rsplit(":", 1)[0])
    if svc is None:
        return None
    others = [b.key for sp in svc.ports for b in endpoints(sim.cluster, svc, sp)] + [
        "none: REJECT (no endpoint)"
    ]
    options, answer = _choice(chosen, others)
    return Question(
        hop.seq, "nat", f"{where}: kube-proxy DNATs {svc_word} to which endpoint?",
        options, answer, hop.detail,
    )  # fmt: skip


__all__ = ["FINAL", "Question", "questions"]
