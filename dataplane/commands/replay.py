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
    NamespaceOpt,
    console,
    err_console,
    input_errors,
    load,
    register,
    warn,
)
from topology.endpoint import check_namespace


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
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="lines (one per packet), detailed (each packet's hop table), minimal "
            "(one stable line per hop) or json (JSON Lines).",
        ),
    ] = "lines",
    debug: DebugOpt = False,
) -> None:
    """Replay a capture: each packet walks the cluster of FILE; verdicts are counted."""
    from dataplane import render
    from dataplane.replay import replay as run_replay
    from dataplane.replay import show_counts
    from dataplane.sim import Simulator

    with input_errors(debug):
        fmt = render.check_format(fmt, ("lines", "detailed", "minimal", "json"))
        scenario, warnings = load(file)
        warn(warnings)
        sim = Simulator(scenario.cluster)
        check_namespace(sim.cluster, namespace)
        if at is not None:
            at = sim.qualify(at, namespace)
        result = run_replay(sim, pcap, at)
    for p in result.packets:
        data = p.to_dict()
        if fmt == "json":
            record = {"schema_version": render.JSON_SCHEMA_VERSION, "type": "packet",
                      **data, "trace": p.trace.to_dict() if p.trace else None}  # fmt: skip
            sys.stdout.write(render.line(record))
            continue
        if fmt == "minimal":
            body = render.minimal(p.trace) + "\n" if p.trace else ""
            sys.stdout.write(f"{body}packet {p.index} at {p.at or '-'}: {p.outcome}\n")
            continue
        if fmt == "detailed" and p.trace is not None:
            render.print_trace(console, p.trace)
        console.print(render.packet_line(data))
    counts = result.counts()
    if fmt == "json":
        record = {"schema_version": render.JSON_SCHEMA_VERSION, "type": "replay",
                  "pcap": str(pcap), "counts": counts}  # fmt: skip
        sys.stdout.write(render.line(record))
    else:
        sys.stdout.write(f"{len(result.packets)} packets: {show_counts(counts)}\n")
    if pcap_dir is not None:
        from dataplane.pcap import write_pcaps

        n = len(write_pcaps(result.traces, pcap_dir))
        err_console.print(f"wrote {n} captures to {pcap_dir}", markup=False)
    for p in result.errors:
        err_console.print(f"error: packet {p.index}: {p.error}", markup=False)
    raise typer.Exit(1 if result.errors else 0)
