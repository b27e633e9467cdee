"""`dataplane replay FILE --pcap IN.pcap`: walk every packet of a capture through a cluster.

The cluster is FILE's before its steps.  Exit status: 0 when every packet could be walked,
1 when some could not (each gets an `error` line: malformed, or not walkable), 2 for a file
that is not a capture, is cut short or is corrupt.
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
    NamespaceOpt,
    console,
    err_console,
    hide_for,
    input_errors,
    load,
    register,
    warn,
)
from dataplane.terminal import write


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
            help="Where every packet enters (NS/POD, a pod NAME of -n, node/NAME, "
            "external/NAME); default: the pod, node or external host that owns each "
            "packet's source address.",
        ),
    ] = None,
    namespace: NamespaceOpt = "default",
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
    keep_traces: Annotated[
        int | None,
        typer.Option(
            "--keep-traces",
            min=0,
            help="In the views that show traces (detailed, wide, summary, minimal, "
            "json, yaml): the trace of the first N packets only, one line or record "
            "for the others (default: every trace).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Deprecated: use -o ('lines' is -o text)."),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Replay a capture: each packet walks the cluster of FILE; verdicts are counted.

    The capture is read as it is walked and each packet is shown as soon as it has
    walked, so memory stays flat whatever the size of the capture.  All packets share
    one walk state (conntrack, caches), and the capture's timestamps are the clock of
    sessionAffinity timeouts."""
    from dataplane import output as out_fmt
    from dataplane import render
    from dataplane.replay import PacketResult, show_counts
    from dataplane.replay import replay as run_replay
    from dataplane.sim import Simulator

    def show(p: PacketResult) -> None:
        data = p.to_dict()
        trace = p.trace if keep_traces is None or p.index <= keep_traces else None
        if documents:
            doc = out_fmt.document(
                "packet", **data, trace=trace.to_dict() if trace else None
            )
            sys.stdout.write(out_fmt.record(doc, chosen))
        elif chosen == "minimal":
            body = render.minimal(trace) + "\n" if trace else ""
            write(f"{body}packet {p.index} at {p.at or '-'}: {p.outcome}\n")
        else:
            if chosen != "text" and trace is not None:
                render.print_trace(console, trace, view, hidden)
            console.print(render.packet_line(data))
        if sink is not None and p.trace is not None:
            sink.add(p.trace)
        if p.outcome in ("error", "malformed"):
            err_console.print(f"error: packet {p.index}: {p.message}")

    sink = None
    with input_errors(debug):
        chosen = out_fmt.choose("replay", output, fmt)
        view = (
            "text" if chosen == "detailed" else chosen
        )  # the trace view of each packet
        hidden = hide_for(chosen, hide, ("detailed", "wide", "summary"))
        documents = chosen in out_fmt.DOCUMENTS
        scenario, warnings = load(file)
        warn(warnings)
        sim = Simulator(scenario.cluster)
        from topology.endpoint import check_namespace

        check_namespace(sim.cluster, namespace)
        if at is not None:
            at = sim.qualify(at, namespace)
        if pcap_dir is not None:
            from dataplane.pcap import PcapSink

            sink = PcapSink(pcap_dir)
        try:
            # Each packet is shown as it walks: nothing needs keeping in memory.
            result = run_replay(sim, pcap, at, keep=0, on_packet=show)
        finally:
            written = sink.close() if sink is not None else {}
    counts = result.counts()
    if documents:
        doc = out_fmt.document("replay", pcap=str(pcap), counts=counts)
        sys.stdout.write(out_fmt.record(doc, chosen))
    else:
        write(f"{result.total} packets: {show_counts(counts)}\n")
    if sink is not None:
        warn(sink.notes(), "note")
        err_console.print(f"wrote {len(written)} captures to {pcap_dir}")
    raise typer.Exit(1 if result.failures else 0)
