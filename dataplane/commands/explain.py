"""`dataplane explain FILE --from A --to B --port P`: the NetworkPolicy decision alone, in
prose, without the whole trace.

The probe is walked as `dataplane trace` walks it (so a Service is judged on the backend
kube-proxy chose, with its target port); the decisions of the filter hooks it met are then
written out in full: the rule and peer that admitted it, or which policies isolate the pod
and why each of their rules does not admit the packet.  For a probe to a DNS name these are
the decisions on the connection, after the lookup and kube-proxy's DNAT; the lookup is one
preliminary line, unless it failed (then its query's decisions are the explanation).

Exit status, as `kubectl auth can-i` answers: 0 when the connection is delivered, 1 when it
is not, 2 for invalid input.

`dataplane explain FILE --all --port P`: every pair of pods at once, each with the rule
that decided (`dataplane.explain_all`, on whole sets of pods, no walk; with admin policies
`dataplane.explain_tiers`, the walk's decision code once per pair of classes of pods, the
tier named); `--only allow|deny` keeps one kind.  Exit status 0 (2 for invalid input).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dataplane.cli import (
    FROM_HELP,
    NAMESPACE_HELP,
    TO_HELP,
    AtStepOpt,
    DebugOpt,
    FileArg,
    PortOpt,
    ProtocolOpt,
    console,
    input_errors,
    load,
    parse_port,
    parse_protocol,
    probe_ends,
    register,
    simulator_at,
    warn,
)

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

    from dataplane.netpol import Decision
    from dataplane.sim import Simulator
    from dataplane.trace import Hop, Trace
    from topology.model import Cluster, Protocol


def decisions_of(cluster: Cluster, hops: list[Hop]) -> list[tuple[str, Decision, bool]]:
    """(node, decision, reached) for each check of the filter on the first request packet
    of `hops`; after an egress drop, the ingress check it would have met (not reached)."""
    from dataplane import netpol_text
    from dataplane.netpol import Direction
    from dataplane.netpol_hook import NAME, decisions_at

    out: list[tuple[str, Decision, bool]] = []
    seen: set[tuple[str, Direction]] = set()
    last = None
    for hop in hops:
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


def judged_hops(trace: Trace) -> list[Hop]:
    """The hops whose policy checks explain a probe: its connection's (after the DNS
    lookup of a name), or the lookup's when the probe ended there."""
    from dataplane.dns import phases

    lookup, connection = phases(trace)
    return lookup if connection is None else connection


def explain_document(cluster: Cluster, trace: Trace) -> dict[str, Any]:
    """The body of `dataplane explain -o json|yaml`: each policy check and the verdict."""
    from dataplane import netpol_text

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
        for node, d, reached in decisions_of(cluster, judged_hops(trace))
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
    from dataplane import netpol_text
    from dataplane.dns import phases
    from dataplane.trace import POLICY_DROPS

    lines = [trace.title]
    lookup, connection = phases(trace)
    answers = [h.detail for h in lookup if h.event == "dns"]
    if connection is not None and answers:
        lines.append(f"DNS, before the connection: {answers[-1]}")
    elif connection is None:
        lines.append(
            "DNS: the lookup failed, so no connection was made; the policy decisions "
            "below are those on the DNS query"
        )
    hops = judged_hops(trace)
    # A headless Service's pod is DNS's choice (the line above), not kube-proxy's DNAT.
    dnat = any(
        d.field == "ip.dst" for h in hops if h.direction == "request" for d in h.diffs
    )
    if trace.endpoint and dnat:
        lines.append(f"kube-proxy chose the endpoint {trace.endpoint}")
    found = decisions_of(cluster, hops)
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
    src: Annotated[
        str | None, typer.Option("--from", help=FROM_HELP + " Required without --all.")
    ] = None,
    dst: Annotated[
        str | None, typer.Option("--to", help=TO_HELP + " Required without --all.")
    ] = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every pair of pods at once (not hostNetwork), each with the rule that "
            "decided; needs --port (or --protocol ICMP), takes no --from/--to.",
        ),
    ] = False,
    only: Annotated[
        str | None,
        typer.Option("--only", help="With --all: allow (the admitted pairs) or deny."),
    ] = None,
    port: PortOpt = None,
    protocol: ProtocolOpt = "TCP",
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help=NAMESPACE_HELP + " Default: default; not with --all.",
        ),
    ] = None,
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
    """Explain in prose why NetworkPolicy lets a connection pass (exit 0) or not (1);
    with --all, every pair of pods at once (exit 0). Not for runtime: docker (use trace)."""
    from dataplane import output as out_fmt
    from dataplane.trace import Verdict
    from topology.errors import TopologyError

    with input_errors(debug):
        fmt = out_fmt.choose("explain", output)
        scenario, warnings = load(file, command="explain")
        warn(warnings)
        proto = parse_protocol(protocol)
        p = parse_port(port, proto)
        if only is not None and not every:
            raise TopologyError("--only goes with --all")
        if every:
            if namespace is not None:
                raise TopologyError(
                    "--all takes no -n/--namespace (it explains every pair of pods, in "
                    "every namespace)"
                )
            _check_all(src, dst, only, p, proto)
            sim = simulator_at(scenario, at_step)
            sys.stdout.writelines(_every_pair(sim, scenario.name, str(file), p,
                                              proto, only, fmt))  # fmt: skip
            return
        if src is None or dst is None:
            missing = " and ".join(
                o for o, v in (("--from", src), ("--to", dst)) if v is None
            )
            raise TopologyError(f"explain needs {missing} (or --all: every pair)")
        sim = simulator_at(scenario, at_step)
        src, dst = probe_ends(sim, namespace or "default", src, dst)
        trace = sim.probe(src, dst, p, proto)
        if fmt in out_fmt.DOCUMENTS:
            body = explain_document(sim.cluster, trace)
            doc = out_fmt.document("explain", scenario=scenario.name,
                                   file=str(file), **body)  # fmt: skip
            sys.stdout.write(out_fmt.dump(doc, fmt))
            raise typer.Exit(0 if trace.verdict is Verdict.DELIVERED else 1)
        text = explain_text(sim.cluster, trace)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(0 if trace.verdict is Verdict.DELIVERED else 1)


ONLY = {"allow": ("allowed",), "deny": ("denied-egress", "denied-ingress")}


def _check_all(
    src: str | None, dst: str | None, only: str | None, port: int | str | None,
    protocol: Protocol,
) -> None:  # fmt: skip
    from topology.errors import TopologyError

    if src is not None or dst is not None:
        raise TopologyError("--all takes no --from/--to (it explains every pair)")
    if only is not None and only not in ONLY:
        raise TopologyError(f"--only {only!r} is not allowed (allowed: allow, deny)")
    if isinstance(port, str):
        raise TopologyError(
            f"--port {port!r}: --all needs a port number (a name means another port "
            "on each pod; give the number)"
        )
    if port is None and protocol.value != "ICMP":
        raise TopologyError(
            f"--all needs --port (the decisions of every pair on one {protocol.value} "
            "port; `dataplane connlist --by pod` lists every port at once)"
        )


def _every_pair(
    sim: Simulator, name: str, file: str, port: int | str | None, protocol: Protocol,
    only: str | None, fmt: str,
) -> Iterator[str]:  # fmt: skip
    """The output of `explain --all`: a count line, then one line per pair (written as
    they come: a big cluster has millions of pairs); or the whole document."""
    from dataplane import output as out_fmt
    from dataplane.explain_all import decide_all, pair_dicts, pair_lines

    assert not isinstance(port, str)
    found = decide_all(sim.cluster, port, protocol)
    kept = ONLY[only] if only is not None else ("allowed", *ONLY["deny"])
    pairs = (pair for pair in found.pairs() if pair[2].verdict in kept)
    counts = found.counts()
    if fmt in out_fmt.DOCUMENTS:
        doc = out_fmt.document(
            "explain-all", scenario=name, file=file, protocol=protocol.value,
            port=port, counts=counts, pairs=list(pair_dicts(pairs)),
        )  # fmt: skip
        yield out_fmt.dump(doc, fmt)
        return
    on = protocol.value if port is None else f"{protocol.value} {port}"
    head = f"{on}, every pair of pods: " + ", ".join(
        f"{n} {verdict}" for verdict, n in counts.items()
    )
    yield head + "\n"
    for line in pair_lines(pairs):
        yield line + "\n"
