"""`dataplane explain FILE --from A --to B --port P`: the NetworkPolicy decision alone, in
prose, without the whole trace.

The probe is walked as `dataplane trace` walks it (so a Service is judged on the backend
kube-proxy chose, with its target port); the decisions of the filter hooks it met are then
written out in full: the rule and peer that admitted it, or which policies isolate the pod
and why each of their rules does not admit the packet.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dataplane import netpol_text
from dataplane.cli import DebugOpt, FileArg, console, input_errors, load, register, warn
from dataplane.commands.matrix import (
    AtStepOpt,
    PortOpt,
    ProtocolOpt,
    parse_port,
    parse_protocol,
    simulator_at,
)
from dataplane.trace import DropReason

POLICY_DROPS = (DropReason.POLICY_EGRESS, DropReason.POLICY_INGRESS)

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.netpol import Decision
    from dataplane.trace import Trace
    from topology.model import Cluster


def decisions_of(cluster: Cluster, trace: Trace) -> list[tuple[str, Decision, bool]]:
    """(node, decision, reached) for each check of the filter on the request's first
    packet; after an egress drop, the ingress check it would have met (not reached)."""
    from dataplane.netpol import Direction
    from dataplane.netpol_hook import NAME, decisions_at

    out: list[tuple[str, Decision, bool]] = []
    seen: set[tuple[str, Direction]] = set()
    last = None
    for hop in trace.hops:
        if hop.direction != "request" or hop.packet is None or hop.event != "FORWARD":
            continue
        if not hop.detail.startswith(f"{NAME}: "):
            continue
        for d in decisions_at(cluster, hop.node, hop.packet):
            # Each hook shows its own decision: find the one this hop shows.
            shown = netpol_text.summary(d) if d.allowed else netpol_text.explain(d)
            if hop.detail == f"{NAME}: {shown}" and (hop.node, d.direction) not in seen:
                seen.add((hop.node, d.direction))
                out.append((hop.node, d, True))
        last = hop
    if out and not out[-1][1].allowed and out[-1][1].direction is Direction.EGRESS:
        assert last is not None and last.packet is not None
        ip = last.packet.ip
        from dataplane.netpol import index_of

        pod = index_of(cluster).pods_by_ip.get(ip.dst) if ip is not None else None
        if pod is not None:
            for d in decisions_at(cluster, pod.node, last.packet):
                if d.direction is Direction.INGRESS:
                    out.append((pod.node, d, False))
    return out


def explain_document(cluster: Cluster, trace: Trace) -> dict[str, Any]:
    """The body of `dataplane explain -o json|yaml`: each policy check and the verdict."""
    checks = [
        {
            "node": node,
            "direction": d.direction.value,
            "pod": d.pod.key,
            "allowed": d.allowed,
            "reached": reached,
            "isolated_by": [p.key for p in d.isolating],
            "text": netpol_text.explain(d, multiline=False),
        }
        for node, d, reached in decisions_of(cluster, trace)
    ]
    return {
        "title": trace.title,
        "endpoint": trace.endpoint,
        "checks": checks,
        "verdict": trace.verdict.value if trace.verdict else None,
        "policy": trace.policy,
        "explanation": trace.explanation,
        "text": explain_text(cluster, trace),
    }


def explain_text(cluster: Cluster, trace: Trace) -> str:
    """The prose of `dataplane explain`."""
    lines = [trace.title]
    if trace.endpoint:
        lines.append(f"kube-proxy chose the endpoint {trace.endpoint}")
    found = decisions_of(cluster, trace)
    for node, d, reached in found:
        where = f"{d.direction.value} on {node} (FORWARD)"
        if not reached:
            where = f"{d.direction.value} on {node} (never reached; it would have said)"
        lines.append(f"{where}: {netpol_text.explain(d, multiline=True)}")
    if not found:
        lines.append(
            "no NetworkPolicy check met this packet: it never crossed FORWARD on the node "
            "of a pod at either end (a pod's traffic to itself or to its own node, and a "
            "node's traffic to its own pods, are always allowed)"
        )
    verdict = trace.verdict.value if trace.verdict else "none"
    policy = f" (policy {trace.policy})" if trace.policy else ""
    why = "" if trace.reason in POLICY_DROPS else f" - {trace.explanation}"
    lines.append(f"verdict: {verdict}{policy}{why}")
    return "\n".join(lines)


@register
def explain(
    file: FileArg,
    src: Annotated[str, typer.Option("--from", help="Source endpoint (NS/POD, ...).")],
    dst: Annotated[str, typer.Option("--to", help="Destination endpoint.")],
    port: PortOpt = None,
    protocol: ProtocolOpt = "TCP",
    at_step: AtStepOpt = 0,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="text (prose), json or yaml (each policy check with its direction, "
            "schemas/results.schema.json).",
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Explain in prose why NetworkPolicy lets a connection pass or drops it."""
    from dataplane import output as out_fmt

    with input_errors(debug):
        fmt = out_fmt.choose("explain", output)
        scenario, warnings = load(file)
        warn(warnings)
        proto = parse_protocol(protocol)
        sim = simulator_at(scenario, at_step)
        trace = sim.probe(src, dst, parse_port(port), proto)
        if fmt in out_fmt.DOCUMENTS:
            body = explain_document(sim.cluster, trace)
            doc = out_fmt.document("explain", scenario=scenario.name,
                                   file=str(file), **body)  # fmt: skip
            sys.stdout.write(out_fmt.dump(doc, fmt))
            return
        text = explain_text(sim.cluster, trace)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
