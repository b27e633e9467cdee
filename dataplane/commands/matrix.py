"""`dataplane matrix FILE`: the reachability truth table of a scenario's cluster.

Rows are sources, columns destinations (numbered as the rows), `.` delivered, `E`/`I`
denied by egress/ingress policy, `-` not served, other verdicts by their initial, with a
legend (`dataplane.matrix`).  `-o csv|md|json|yaml|dot` prints the same cells for a
spreadsheet, a Markdown page, a program or Graphviz.  Computed per equivalence class of
pods (`dataplane.netpol_matrix`); `--walk` walks every pair instead.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dataplane.cli import (
    AtStepOpt,
    DebugOpt,
    FileArg,
    NamespaceOpt,
    PortOpt,
    ProtocolOpt,
    input_errors,
    load,
    parse_port,
    parse_protocol,
    register,
    simulator_at,
    warn,
)


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
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="text (the grid and its legend), csv (verdict words), md (a Markdown "
            "table), json or yaml (every cell with its verdict and denying direction), "
            "dot (Graphviz).",
        ),
    ] = None,
    counts_only: Annotated[
        bool,
        typer.Option(
            "--counts",
            help="Print only how many pairs have each verdict (text; no grid: read off "
            "the blocks, for clusters too big to print).",
        ),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Print the reachability matrix of FILE's cluster as a grid (TCP 80 unless told;
    `--counts`: only the counts by verdict)."""
    from dataplane import output as out_fmt
    from dataplane.matrix import compute_matrix, endpoints, walk_matrix

    with input_errors(debug):
        fmt = out_fmt.choose("matrix", output)
        if counts_only and fmt != "text":
            from topology.errors import TopologyError

            raise TopologyError(
                f"--counts prints the counts as text; it cannot go with -o {fmt} "
                "(allowed: -o text)"
            )
        scenario, warnings = load(file)
        warn(warnings)
        proto = parse_protocol(protocol)
        p = parse_port(port, proto)
        if p is None and proto.value != "ICMP":
            p = 80
        sim = simulator_at(scenario, at_step)
        from topology.endpoint import check_namespace

        check_namespace(sim.cluster, namespace)
        froms = tuple(sim.qualify(s, namespace) for s in src) if src else None
        sources = endpoints(sim, froms)
        tos: list[str] = []
        for t in dst or ():  # each row looks a DNS name up from its own source
            tos += dict.fromkeys(sim.qualify(t, namespace, s) for s in sources)
        targets = endpoints(sim, tuple(tos) if dst else None)
        fn = walk_matrix if walk else compute_matrix
        m = fn(sim, sources, targets, p, proto)
    title = f"{scenario.name}: {len(sources)}x{len(targets)} "
    title += f"port {p} {proto.value}" if p is not None else proto.value
    if fmt in out_fmt.DOCUMENTS:
        doc = out_fmt.document("matrix", scenario=scenario.name, file=str(file),
                               protocol=proto.value, **m.to_dict())  # fmt: skip
        sys.stdout.write(out_fmt.dump(doc, fmt))
        return
    if fmt != "text":
        if fmt == "csv":
            sys.stdout.write(m.to_csv())
        elif fmt == "md":
            sys.stdout.write(m.to_markdown())
        else:
            sys.stdout.write(m.to_dot(title))
        return
    counts = ", ".join(f"{n} {v}" for v, n in m.counts().items())
    grid = [] if counts_only else [m.grid()]
    text = "\n".join([title, *grid, f"{len(sources) * len(targets)} pair(s): {counts}"])
    sys.stdout.write(text + "\n")
