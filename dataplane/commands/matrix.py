"""`dataplane matrix FILE`: the reachability truth table of a scenario's cluster.

Rows are sources, columns destinations (numbered as the rows), `.` delivered, `E`/`I`
denied by egress/ingress policy, `-` not served, other verdicts by their initial, with a
legend (`dataplane.matrix`).  `-o csv|md|json|yaml|dot` prints the same cells for a
spreadsheet, a Markdown page, a program or Graphviz.  Computed per equivalence class of
pods (`dataplane.netpol_matrix`); `--walk` walks every pair instead.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from dataplane.cli import DebugOpt, FileArg, input_errors, load, register, warn

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.sim import Simulator
    from topology.model import Protocol
    from topology.scenario import Scenario

PortOpt = Annotated[
    str | None, typer.Option("--port", "-p", help="Port number or name (not for ICMP).")
]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="TCP, UDP, SCTP or ICMP.")]
AtStepOpt = Annotated[
    int,
    typer.Option(
        "--at-step",
        help="Use the cluster as it is after the changes (apply, delete, label) of steps "
        "1..N; 0 is the cluster before step 1.",
    ),
]


def parse_protocol(text: str) -> Protocol:
    from topology.errors import TopologyError
    from topology.model import Protocol

    try:
        return Protocol(text.upper())
    except ValueError:
        raise TopologyError(
            f"--protocol {text!r} is not allowed (allowed: TCP, UDP, SCTP, ICMP)"
        ) from None


def parse_port(text: str | None) -> int | str | None:
    return int(text) if text is not None and text.isdigit() else text


def simulator_at(scenario: Scenario, at_step: int) -> Simulator:
    """A simulator of the scenario's cluster after the changes of steps 1..`at_step`."""
    from dataplane.scenario import Runner
    from topology.errors import TopologyError
    from topology.scenario import ApplyStep, DeleteStep, LabelStep

    if not 0 <= at_step <= len(scenario.steps):
        raise TopologyError(
            f"--at-step {at_step} is out of range (allowed: 0-{len(scenario.steps)})"
        )
    runner = Runner(scenario)
    for i, step in enumerate(scenario.steps[:at_step], 1):
        if isinstance(step, ApplyStep | DeleteStep | LabelStep):
            runner.run_step(i, step)
    return runner.sim


@register
def matrix(
    file: FileArg,
    port: PortOpt = "80",
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
    debug: DebugOpt = False,
) -> None:
    """Print the reachability matrix of FILE's cluster (before its steps) as a grid."""
    from dataplane import output as out_fmt
    from dataplane.matrix import compute_matrix, endpoints, walk_matrix

    with input_errors(debug):
        fmt = out_fmt.choose("matrix", output)
        scenario, warnings = load(file)
        warn(warnings)
        proto = parse_protocol(protocol)
        p = None if proto.value == "ICMP" else parse_port(port)
        sim = simulator_at(scenario, at_step)
        sources = endpoints(sim, tuple(src) if src else None)
        targets = endpoints(sim, tuple(dst) if dst else None)
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
    text = "\n".join(
        [title, m.grid(), f"{len(sources) * len(targets)} pair(s): {counts}"]
    )
    sys.stdout.write(text + "\n")
