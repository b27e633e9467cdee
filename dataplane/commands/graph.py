"""`dataplane graph FILE -o topo.svg`: the cluster as a learner draws it.

With `--from A --to B [--port P]` a probe walks first and its path is drawn hop by hop,
with the policy decision marked.  The output format follows `-o`'s suffix (`.svg`, `.png`)
unless `--format` says otherwise; `--format mermaid` writes a Mermaid flowchart for Markdown
(to stdout without `-o`).  No system binary is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dataplane.cli import (
    AtStepOpt,
    DebugOpt,
    FileArg,
    NamespaceOpt,
    PortOpt,
    ProtocolOpt,
    err_console,
    input_errors,
    load,
    parse_port,
    parse_protocol,
    probe_ends,
    register,
    simulator_at,
    warn,
)
from dataplane.terminal import write


@register
def graph(
    file: FileArg,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write the picture (.svg, .png)."),
    ] = None,
    src: Annotated[
        str | None, typer.Option("--from", help="Probe source: draw its path.")
    ] = None,
    dst: Annotated[
        str | None,
        typer.Option("--to", help="Probe destination (NS/POD, NAME, DNS...)."),
    ] = None,
    port: PortOpt = None,
    protocol: ProtocolOpt = "TCP",
    namespace: NamespaceOpt = "default",
    at_step: AtStepOpt = 0,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="svg, png or mermaid (default: from -o's suffix)."
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Draw the cluster of FILE (at --at-step), and a probe's path through it."""
    from dataplane import draw
    from dataplane.graph import build_scene, to_mermaid
    from topology.errors import TopologyError

    with input_errors(debug):
        kind = fmt or (output.suffix.lstrip(".").lower() if output else "mermaid")
        if kind not in ("svg", "png", "mermaid"):
            raise TopologyError(
                f"cannot tell the picture format from {kind!r} (use -o x.svg, -o x.png "
                "or --format svg|png|mermaid)"
            )
        if kind in ("svg", "png") and output is None:
            raise TopologyError(f"--format {kind} needs -o FILE")
        if (src is None) != (dst is None):
            raise TopologyError("--from and --to go together (a probe needs both)")
        proto = parse_protocol(protocol)
        p = parse_port(port, proto)
        scenario, warnings = load(file)
        warn(warnings)
        sim = simulator_at(scenario, at_step)
        from topology.endpoint import check_namespace

        check_namespace(sim.cluster, namespace)
        trace = None
        if src is not None and dst is not None:
            src, dst = probe_ends(sim, namespace, src, dst)
            trace = sim.probe(src, dst, p, proto)
        scene = build_scene(sim, trace, title=scenario.name)
    with input_errors(debug):  # an output path that cannot be written
        if kind == "mermaid":
            text = to_mermaid(scene)
            if output is None:
                write(text)
            else:
                output.write_text(text)
        elif kind == "svg":
            assert output is not None
            output.write_text(draw.to_svg(scene))
        else:
            assert output is not None
            draw.to_png(scene, output)
    if output is not None:
        verdict = f" ({trace.verdict.value})" if trace and trace.verdict else ""
        err_console.print(f"wrote {output}{verdict}", markup=False, highlight=False)
