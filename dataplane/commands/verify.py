"""`dataplane verify FILE... [--keep]`: the same scenario on this machine's kernel.

Each scenario's cluster is built in network namespaces (pyroute2, nftables) and every probe
runs there as real traffic, beside the simulator's walk of the same probe.  Exit status: 0
when every comparable probe agrees, 1 on any mismatch, 2 when it cannot run (not root, no
CAP_NET_ADMIN, no `nft`, a step the kernel refused: one line says why) or a file is
invalid; 143 (130) on SIGTERM (SIGINT), after removing every namespace.  `--keep` leaves
the namespaces up and says how to enter them; `--clean` removes every set whose owner
has provably ended (`dataplane.kernel.owner`) and says what it kept and why; every run
first reaps the sets of runs that ended without cleaning up.
"""

from __future__ import annotations

import sys
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
from dataplane.terminal import literal

STYLE = {"MISMATCH": "bold red", "not comparable": "yellow", "agree": "green"}


if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table


def _table(report: Any, quiet: bool) -> Table:
    from rich.table import Table

    from dataplane.kernel.report import SILENT

    table = Table(
        title=literal(f"{report.scenario}  ") + literal(str(report.path), "dim"),
        title_justify="left",
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
        detail = row.kernel.detail
        for part in row.differs():
            detail += (
                f"\n{part.name} differs: simulator {part.sim}, kernel {part.kernel}"
            )
        table.add_row(
            str(row.step),
            row.title,
            sim,
            kernel,
            literal(row.status, STYLE[row.status]),
            detail,
        )
    return table


def _summary(report: Any) -> str:
    ratio = report.ratio()
    per = f"; time per answered probe, kernel/simulator: {ratio:.2g}" if ratio else ""
    compared = sum(len(r.parts) for r in report.rows)
    built = ""
    if report.built:
        differ = sum(1 for p in report.built if not p.agrees)
        built = (
            f"{len(report.built)} built parts compared (addresses, published "
            f"ports): {differ} differ; "
        )
    return built + (
        f"{len(report.rows)} probes: {report.count('agree')} agree, "
        f"{report.count('MISMATCH')} mismatch, {report.count('not comparable')} not "
        f"comparable ({compared} parts compared besides the verdicts: devices "
        "crossed and TTL on arrival, load balancer node, server, endpoint, source and "
        "TTL it saw, the answer's source and TTL, routes); "
        f"{report.namespaces} namespaces built in {report.build_seconds:.2f} s, "
        f"removed in {report.teardown_seconds * 1e3:.0f} ms{per}"
    )


def _kept(names: list[str], shortened: dict[str, str]) -> None:
    from dataplane.kernel import netns

    console.print(f"kept {len(names)} namespaces; look at the real thing:")
    for name in names:
        model = f"    ({shortened[name]}, name shortened)" if name in shortened else ""
        console.print(f"  ip netns exec {name} bash{model}", markup=False)
    node = next((n for n in names if "-node" in n), names[0] if names else "")
    console.print(
        f"for example: ip netns exec {node} tcpdump -ni any    "
        f"ip netns exec {node} nft list ruleset",
        markup=False,
    )
    run_id = netns.run_id_of(names[0]) if names else ""
    console.print(f"remove them with: dataplane verify --clean {run_id}", markup=False)


def _clean(runs: list[str]) -> None:
    """`--clean [RUN...]`: remove every set (of the runs given, by run id or by the name
    of one of their namespaces) whose owner has provably ended; say what is left."""
    from dataplane.kernel import netns, owner

    only = {netns.run_id_of(r) or r for r in runs} if runs else None
    if only is not None:
        known = {r.run_id for r in owner.run_sets()}
        if unknown := sorted(only - known):
            err_console.print(
                f"error: no namespaces and no owner record of run {', '.join(unknown)}"
                f" (runs here: {', '.join(sorted(known)) or 'none'})",
                markup=False,
            )
            raise typer.Exit(2)
    removed, left = owner.reap(include_kept=True, only=only)
    total = sum(len(r.names) for r in removed)
    console.print(f"removed {total} namespaces of {len(removed)} runs", markup=False)
    for run in removed:
        console.print(f"  {run.run_id} ({len(run.names)}): {run.reason}", markup=False)
    for run in left:
        how = ""
        if run.status is owner.Status.UNOWNED:
            how = (
                " (made by an older dataplane, or where /run/dataplane is another "
                f"directory): remove it by hand if unused: ip netns del {run.run_id}-..."
            )
        console.print(
            f"kept {run.run_id} ({len(run.names)} namespaces): {run.reason}{how}",
            markup=False,
        )


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
            help="Remove the namespaces of every run that has provably ended "
            "(`--keep` sets, crashed runs; see the owner records in the README), or "
            "of the runs given instead of files (`dpv1a2b`); say what is kept and why.",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            help="Seconds of silence after which a probe is `denied`; while a "
            "neighbour is still being resolved the probes wait until the kernel gives "
            "up on it (3 s at the default ARP sysctls) and this long again."
        ),
    ] = 0.5,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Show only the probes that do not agree."),
    ] = False,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="text (a table per scenario), json (one line per scenario, "
            "schemas/results.schema.json) or yaml (the same, a YAML stream).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Deprecated: use -o json.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Build each scenario on this machine's kernel and compare every probe's verdict with
    the simulator's, side by side (mismatches first)."""
    from pathlib import Path

    from dataplane import output as out_fmt
    from dataplane.kernel.preflight import reason_not_to_run

    with input_errors(debug):
        fmt = out_fmt.choose("verify", output, None, as_json)
    why = reason_not_to_run()
    if clean:
        if why is not None:
            err_console.print(f"error: cannot clean up: {why}", markup=False)
            raise typer.Exit(2)
        _clean(files or [])
        raise typer.Exit(0)
    if not files:
        err_console.print("error: give scenario files (or --clean)")
        raise typer.Exit(2)
    with input_errors(debug):
        loaded = [load(Path(f)) for f in files]
    if why is None and any(sc.cluster.docker is not None for sc, _ in loaded):
        from dataplane.kernel.docker_engine import reason_not_to_run as no_engine

        why = no_engine()  # runtime: docker needs Docker Engine (Debian's docker.io)
    if why is not None:
        err_console.print(f"error: cannot run on this kernel: {why}", markup=False)
        raise typer.Exit(2)
    from pyroute2.netlink.exceptions import NetlinkError

    from dataplane.kernel.signals import Stopped, stopping
    from dataplane.kernel.verify import verify as run_verify

    failed = False
    try:
        with stopping():
            for scenario, warnings in loaded:
                warn(warnings)
                with input_errors(debug):
                    try:
                        report = run_verify(scenario, keep=keep, timeout=timeout)
                    except (OSError, NetlinkError) as err:
                        if debug:
                            raise
                        err_console.print(
                            f"error: the kernel refused: {err}", markup=False
                        )
                        raise typer.Exit(2) from None
                for line in report.reaped:
                    err_console.print(f"reaped {line}", markup=False)
                if report.neighbour_overflows:
                    warn(
                        [
                            f"the kernel's ARP table refused {report.neighbour_overflows} "
                            "new entries during the probes (net.ipv4.neigh.default."
                            "gc_thresh3, one table for the whole machine: another run "
                            "beside this one?); a probe that lost its entry was run again, "
                            "but a verdict may still be wrong"
                        ]
                    )
                failed = failed or not report.ok
                if fmt in out_fmt.DOCUMENTS:
                    doc = out_fmt.document(
                        "verify",
                        scenario=report.scenario,
                        path=report.path,
                        ok=report.ok,
                        summary=_summary(report),
                        kept=report.kept,
                        shortened=report.shortened,
                        neighbour_overflows=report.neighbour_overflows,
                        kernel_side=report.kernel_side,
                        built=[p.to_dict() for p in report.built],
                        rows=[r.to_dict() for r in report.ordered()],
                    )
                    sys.stdout.write(out_fmt.record(doc, fmt))
                else:
                    if quiet and report.count("agree") == len(report.rows):
                        console.print(f"{report.scenario}  {report.path}", markup=False)
                    else:
                        console.print(_table(report, quiet))
                    for part in report.built:
                        if not part.agrees:
                            console.print(
                                f"BUILT DIFFERENTLY  {part.name}: simulator "
                                f"{part.sim}, kernel side {part.kernel}",
                                markup=False,
                            )
                    console.print(_summary(report), markup=False)
                if report.kept and fmt == "text":
                    _kept(report.kept, report.shortened)
    except KeyboardInterrupt:
        err_console.print("interrupted: every namespace of the run was removed")
        raise typer.Exit(130) from None
    except Stopped as stop:
        err_console.print(
            f"stopped by {stop}: every namespace of the run was removed", markup=False
        )
        raise typer.Exit(stop.status) from None
    raise typer.Exit(1 if failed else 0)
