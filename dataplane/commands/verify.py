"""`dataplane verify FILE... [--keep]`: the same scenario on this machine's kernel.

Each scenario's cluster is built in network namespaces (pyroute2, nftables) and every probe
runs there as real traffic, beside the simulator's walk of the same probe.  Exit status: 0
when every comparable probe agrees, 1 on any mismatch, 2 when it cannot run (not root, no
CAP_NET_ADMIN, no `nft`: one line says why) or a file is invalid.  `--keep` leaves the
namespaces up and says how to enter them; `--clean` removes what was kept.
"""

from __future__ import annotations

import json
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dataplane.cli import (
    DebugOpt,
    console,
    err_console,
    input_errors,
    load,
    register,
    warn,
)

STYLE = {"MISMATCH": "bold red", "not comparable": "yellow", "agree": "green"}


def _terminate(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM: unwind like Ctrl-C, so that every namespace is removed on the way out."""
    raise SystemExit(128 + signum)


if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table


def _table(report: Any, quiet: bool) -> Table:
    from rich.table import Table

    from dataplane.kernel.report import SILENT

    table = Table(
        title=f"{report.scenario}  [dim]{report.path}[/dim]", title_justify="left"
    )
    for col in (
        "step",
        "probe",
        "simulator",
        "kernel",
        "",
        "what the kernel's socket saw",
    ):
        table.add_column(col, overflow="fold")
    for row in report.ordered():
        if quiet and row.status == "agree":
            continue
        sim = row.sim.value if row.sim else "-"
        if row.sim_silent and row.sim is not None and row.sim not in SILENT:
            sim += " (its client heard nothing)"
        kernel = row.kernel.verdict.value if row.kernel.verdict else "-"
        table.add_row(
            str(row.step),
            row.title,
            sim,
            kernel,
            f"[{STYLE[row.status]}]{row.status}[/]",
            row.kernel.detail,
        )
    return table


def _summary(report: Any) -> str:
    ratio = report.ratio()
    per = f"; time per answered probe, kernel/simulator: {ratio:.2g}" if ratio else ""
    return (
        f"{len(report.rows)} probes: {report.count('agree')} agree, "
        f"{report.count('MISMATCH')} mismatch, {report.count('not comparable')} not "
        f"comparable; {report.namespaces} namespaces built in {report.build_seconds:.2f} s, "
        f"removed in {report.teardown_seconds * 1e3:.0f} ms{per}"
    )


def _kept(names: list[str]) -> None:
    console.print(f"kept {len(names)} namespaces; look at the real thing:")
    for name in names:
        console.print(f"  ip netns exec {name} bash", markup=False)
    node = next((n for n in names if "-node" in n), names[0] if names else "")
    console.print(
        f"for example: ip netns exec {node} tcpdump -ni any    "
        f"ip netns exec {node} nft list ruleset",
        markup=False,
    )
    console.print("remove them with: dataplane verify --clean", markup=False)


@register
def verify(
    files: Annotated[
        list[str] | None,
        typer.Argument(help="Scenario files (YAML).", show_default=False),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep", help="Leave the namespaces up and print how to enter them."
        ),
    ] = False,
    clean: Annotated[
        bool,
        typer.Option(
            "--clean",
            help="Remove every namespace `verify --keep` (or a crashed run) left.",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds of silence after which a probe is `denied`."),
    ] = 0.5,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Show only the probes that do not agree."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per scenario.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Build each scenario on this machine's kernel and compare every probe's verdict with
    the simulator's, side by side (mismatches first)."""
    from pathlib import Path

    from dataplane.kernel import netns
    from dataplane.kernel.preflight import reason_not_to_run

    why = reason_not_to_run()
    if clean:
        if why is not None:
            err_console.print(f"error: cannot clean up: {why}", markup=False)
            raise typer.Exit(2)
        removed, running = netns.remove_kept()
        still = (
            f"; left {len(running)} runs still going ({', '.join(running)})"
            if running
            else ""
        )
        console.print(f"removed {len(removed)} namespaces{still}")
        raise typer.Exit(0)
    if not files:
        err_console.print("error: give scenario files (or --clean)")
        raise typer.Exit(2)
    with input_errors(debug):
        loaded = [load(Path(f)) for f in files]
    if why is not None:
        err_console.print(f"error: cannot run on this kernel: {why}", markup=False)
        raise typer.Exit(2)
    from dataplane.kernel.verify import verify as run_verify

    previous = signal.signal(signal.SIGTERM, _terminate)
    failed = False
    try:
        for scenario, warnings in loaded:
            warn(warnings)
            with input_errors(debug):
                try:
                    report = run_verify(scenario, keep=keep, timeout=timeout)
                except OSError as err:
                    if debug:
                        raise
                    err_console.print(f"error: the kernel refused: {err}", markup=False)
                    raise typer.Exit(2) from None
            failed = failed or not report.ok
            if as_json:
                data = {
                    "scenario": report.scenario,
                    "path": report.path,
                    "ok": report.ok,
                    "summary": _summary(report),
                    "kept": report.kept,
                    "rows": [r.to_dict() for r in report.ordered()],
                }
                sys.stdout.write(json.dumps(data) + "\n")
            else:
                if quiet and report.count("agree") == len(report.rows):
                    console.print(f"{report.scenario}  {report.path}", markup=False)
                else:
                    console.print(_table(report, quiet))
                console.print(_summary(report), markup=False)
            if report.kept and not as_json:
                _kept(report.kept)
    except KeyboardInterrupt:
        err_console.print("interrupted: every namespace of the run was removed")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(1 if failed else 0)
