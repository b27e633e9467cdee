"""`dataplane matrix FILE`: the reachability truth table of a scenario's cluster.

Rows are sources, columns destinations, `.` delivered, `X` denied, other verdicts by their
initial, as the upstream network-policy e2e tests print theirs.  Computed per equivalence
class of pods (`dataplane.netpol_matrix`); `--walk` walks every pair instead.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dataplane.cli import (
    AtStepOpt,
    DebugOpt,
    FileArg,
    NamespaceOpt,
    PortOpt,
    ProtocolOpt,
    console,
    input_errors,
    load,
    parse_port,
    parse_protocol,
    register,
    simulator_at,
    warn,
)
from topology.endpoint import check_namespace


@register
def matrix(
    file: FileArg,
    port: PortOpt = None,
    protocol: ProtocolOpt = "TCP",
    src: Annotated[
        list[str] | None,
        typer.Option("--from", help="A source endpoint (repeat; default: every pod)."),
    ] = None,
    dst: Annotated[
        list[str] | None,
        typer.Option(
            "--to", help="A destination endpoint (repeat; default: every pod)."
        ),
    ] = None,
    namespace: NamespaceOpt = "default",
    at_step: AtStepOpt = 0,
    walk: Annotated[
        bool, typer.Option("--walk", help="Walk every pair (the slow reference).")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Print the reachability matrix of FILE's cluster as a grid (TCP 80 unless told)."""
    from dataplane.matrix import compute_matrix, endpoints, walk_matrix

    with input_errors(debug):
        scenario, warnings = load(file)
        warn(warnings)
        proto = parse_protocol(protocol)
        p = parse_port(port, proto)
        if p is None and proto.value != "ICMP":
            p = 80
        sim = simulator_at(scenario, at_step)
        check_namespace(sim.cluster, namespace)
        froms = tuple(sim.qualify(s, namespace) for s in src) if src else None
        sources = endpoints(sim, froms)
        tos: list[str] = []
        for t in dst or ():  # each row looks a DNS name up from its own source
            tos += dict.fromkeys(sim.qualify(t, namespace, s) for s in sources)
        targets = endpoints(sim, tuple(tos) if dst else None)
        fn = walk_matrix if walk else compute_matrix
        m = fn(sim, sources, targets, p, proto)
    what = f"port {p} " if p is not None else ""
    counts = ", ".join(f"{n} {v}" for v, n in m.counts().items())
    text = "\n".join(
        [
            f"{scenario.name}: {len(sources)}x{len(targets)} {what}{proto.value}",
            m.grid(),
            f"{len(sources) * len(targets)} pair(s): {counts}",
        ]
    )
    console.print(text, markup=False, highlight=False, soft_wrap=True)
