"""`dataplane replay FILE --pcap IN.pcap`: walk every packet of a capture through a cluster.

The cluster is FILE's before its steps.  Exit status: 0 when every packet could be walked,
1 when some could not (each gets an `error` line), 2 for a file that is not a capture or
is cut short.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dataplane.cli import (
    DebugOpt,
    FileArg,
    HideOpt,
    console,
    err_console,
    hide_for,
    input_errors,
    load,
    register,
    warn,
)


@register
def replay(
    file: FileArg,
    pcap: Annotated[
        Path,
        typer.Option(
            "--pcap",
            help="The capture to replay (pcap or pcapng; Ethernet, raw IP or "
            "Linux cooked link type).",
            show_default=False,
        ),
    ],
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Where every packet enters (NS/POD, node/NAME, external/NAME); default: "
            "the pod, node or external host that owns each packet's source address.",
        ),
    ] = None,
    pcap_dir: Annotated[
        Path | None,
        typer.Option(
            "--pcap-dir", help="Also write one pcap per device of the replayed walks."
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="text (one line per packet), detailed (each packet's hop table "
            "fitted to the terminal, then its line), wide, summary, minimal (one "
            "stable line per hop), json (JSON Lines) or yaml (a YAML stream).",
        ),
    ] = None,
    hide: HideOpt = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Deprecated: use -o ('lines' is -o text)."),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Replay a capture: each packet walks the cluster of FILE; verdicts are counted."""
    from dataplane import output as out_fmt
    from dataplane import render
    from dataplane.replay import replay as run_replay
    from dataplane.replay import show_counts
    from dataplane.sim import Simulator

    with input_errors(debug):
        fmt = out_fmt.choose("replay", output, fmt)
        view = "text" if fmt == "detailed" else fmt  # the trace view of each packet
        hidden = hide_for(fmt, hide, ("detailed", "wide", "summary"))
        scenario, warnings = load(file)
        warn(warnings)
        sim = Simulator(scenario.cluster)
        result = run_replay(sim, pcap, at)
    documents = fmt in out_fmt.DOCUMENTS
    for p in result.packets:
        data = p.to_dict()
        if documents:
            doc = out_fmt.document(
                "packet", **data, trace=p.trace.to_dict() if p.trace else None
            )
            sys.stdout.write(out_fmt.record(doc, fmt))
            continue
        if fmt == "minimal":
            body = render.minimal(p.trace) + "\n" if p.trace else ""
            sys.stdout.write(f"{body}packet {p.index} at {p.at or '-'}: {p.outcome}\n")
            continue
        if fmt != "text" and p.trace is not None:
            render.print_trace(console, p.trace, view, hidden)
        console.print(render.packet_line(data))
    counts = result.counts()
    if documents:
        doc = out_fmt.document("replay", pcap=str(pcap), counts=counts)
        sys.stdout.write(out_fmt.record(doc, fmt))
    else:
        sys.stdout.write(f"{len(result.packets)} packets: {show_counts(counts)}\n")
    if pcap_dir is not None:
        from dataplane.pcap import write_pcaps

        n = len(write_pcaps(result.traces, pcap_dir))
        err_console.print(f"wrote {n} captures to {pcap_dir}", markup=False)
    for p in result.errors:
        err_console.print(f"error: packet {p.index}: {p.error}", markup=False)
    raise typer.Exit(1 if result.errors else 0)
