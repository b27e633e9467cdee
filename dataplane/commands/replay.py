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
    console,
    err_console,
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
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="lines (one per packet), detailed (each packet's hop table), minimal "
            "(one stable line per hop) or json (JSON Lines).",
        ),
    ] = "lines",
    keep_traces: Annotated[
        int | None,
        typer.Option(
            "--keep-traces",
            min=0,
            help="With --format detailed, minimal or json: show the trace of the first "
            "N packets only, one line for the others (default: every trace).",
            show_default=False,
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Replay a capture: each packet walks the cluster of FILE; verdicts are counted.

    The capture is read as it is walked and each packet is shown as soon as it has
    walked, so memory stays flat whatever the size of the capture."""
    from dataplane import render
    from dataplane.replay import PacketResult, show_counts
    from dataplane.replay import replay as run_replay
    from dataplane.sim import Simulator

    def show(p: PacketResult) -> None:
        data = p.to_dict()
        trace = p.trace if keep_traces is None or p.index <= keep_traces else None
        if fmt == "json":
            record = {"schema_version": render.JSON_SCHEMA_VERSION, "type": "packet",
                      **data, "trace": trace.to_dict() if trace else None}  # fmt: skip
            sys.stdout.write(render.line(record))
        elif fmt == "minimal":
            body = render.minimal(trace) + "\n" if trace else ""
            write(f"{body}packet {p.index} at {p.at or '-'}: {p.outcome}\n")
        else:
            if fmt == "detailed" and trace is not None:
                render.print_trace(console, trace)
            console.print(render.packet_line(data))
        if sink is not None and p.trace is not None:
            sink.add(p.trace)
        if p.outcome in ("error", "malformed"):
            err_console.print(f"error: packet {p.index}: {p.message}")

    sink = None
    with input_errors(debug):
        fmt = render.check_format(fmt, ("lines", "detailed", "minimal", "json"))
        scenario, warnings = load(file)
        warn(warnings)
        sim = Simulator(scenario.cluster)
        if pcap_dir is not None:
            from dataplane.pcap import PcapSink

            sink = PcapSink(pcap_dir)
        try:
            # Each packet is shown as it walks: nothing needs keeping in memory.
            result = run_replay(sim, pcap, at, keep=0, on_packet=show)
        finally:
            counts_written = sink.close() if sink is not None else {}
    counts = result.counts()
    if fmt == "json":
        record = {"schema_version": render.JSON_SCHEMA_VERSION, "type": "replay",
                  "pcap": str(pcap), "counts": counts}  # fmt: skip
        sys.stdout.write(render.line(record))
    else:
        sys.stdout.write(f"{result.total} packets: {show_counts(counts)}\n")
    if sink is not None:
        warn(sink.notes(), "note")
        err_console.print(f"wrote {len(counts_written)} captures to {pcap_dir}")
    raise typer.Exit(1 if result.failures else 0)
