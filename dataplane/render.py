"""Views of a trace and of a scenario's results: detailed (rich), minimal (stable) and JSON.

The minimal view (`dataplane run --format minimal`, `dataplane trace --format minimal`) is
meant for golden files kept in a team's repository.  Its promise: plain text, one line per
hop, no timestamps, no column widths, no colours, no file paths, and the
same bytes for the same scenario whatever the terminal, the machine or the run.  It reads:

    == scenario NAME
    -- step N KIND: TITLE
    # TRACE-TITLE [MODE]
    SEQ NODE NETNS DEVICE EVENT: DETAIL [REWRITES] | PACKET     (one per hop; NETNS without
    verdict VERDICT                                             spaces: pod:default/a; a
    => ok|FAIL|- ACTUAL[: MESSAGE]                              reply hop's EVENT is `<EVENT`)
    == NAME: P passed, F failed, U without expectations

A matrix step prints its grid, a replay step one `packet I at ENDPOINT: OUTCOME` line per
packet.  Lines change only when what the simulator does changes.

The JSON view (`--format json` / `--json` of `run`, `test` and `replay`) is JSON Lines, one
object per line, described by `schemas/results.schema.json`; every object carries
`schema_version` (`JSON_SCHEMA_VERSION`) and `type`: `step`, `summary` (one per scenario),
`packet` (replay), `error` (a file that could not be loaded) and `total` (`test`, last).
Keys may be added within a version; removing or changing one bumps the version.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dataplane.result import ScenarioResult, StepResult
from dataplane.trace import Trace
from topology.scenario import Scenario

JSON_SCHEMA_VERSION = 1

VERDICT_STYLE = {
    "delivered": "bold green",
    "refused": "yellow",
    "denied-egress": "bold red",
    "denied-ingress": "bold red",
    "dropped": "red",
}
EVENT_STYLE = {"drop": "red", "nat": "magenta", "encap": "cyan", "decap": "cyan",
               "arp": "dim", "deliver": "green", "icmp": "yellow"}  # fmt: skip


def trace_table(trace: Trace) -> Table:
    """The hop table of one trace, as a learner reads it."""
    table = Table(
        title=f"{trace.title}   [dim]{trace.mode}[/dim]",
        title_justify="left",
        show_lines=False,
        expand=False,
        pad_edge=False,
    )
    table.add_column("#", justify="right", style="dim")
    table.add_column("where", no_wrap=True)
    table.add_column("device", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("detail")
    table.add_column("packet", style="dim")
    for h in trace.hops:
        # Text, not markup: details hold brackets (`[ip.dst: a -> b]`) and selectors.
        detail = Text(h.detail)
        if h.diffs:
            detail.append(
                " [" + ", ".join(str(d) for d in h.diffs) + "]", style="magenta"
            )
        where = f"{h.node} {h.netns}".strip()
        style = EVENT_STYLE.get(h.event, "")
        if h.direction == "reply":
            where = f"{where} ←"
        table.add_row(
            str(h.seq),
            where,
            h.device,
            Text(h.event, style=style),
            detail,
            Text(h.packet.summary()) if h.packet is not None else "",
        )
    return table


def verdict_line(trace: Trace) -> Text:
    v = trace.verdict.value if trace.verdict else "none"
    text = Text("verdict: ")
    text.append(v, style=VERDICT_STYLE.get(v, "bold"))
    text.append(f" — {trace.explanation} ({len(trace.hops)} hops)")
    if trace.policy:
        text.append(f"; policy {trace.policy}")
    if trace.endpoint:
        text.append(f"; endpoint {trace.endpoint}")
    return text


def print_trace(console: Console, trace: Trace) -> None:
    console.print(trace_table(trace))
    for a in trace.assumptions:
        console.print(Text(a, style="dim"))
    console.print(verdict_line(trace))


def minimal(trace: Trace) -> str:
    """One stable line per hop, then the verdict (for golden files)."""
    lines = [f"# {trace.title} [{trace.mode}]"]
    for h in trace.hops:
        where = " ".join(x for x in (h.node, h.netns.replace(" ", ":"), h.device) if x)
        diffs = (" [" + ", ".join(str(d) for d in h.diffs) + "]") if h.diffs else ""
        pkt = f" | {h.packet.summary()}" if h.packet is not None else ""
        event = f"<{h.event}" if h.direction == "reply" else h.event
        lines.append(f"{h.seq} {where} {event}: {h.detail}{diffs}{pkt}")
    lines.append(f"verdict {trace.verdict.value if trace.verdict else 'none'}")
    return "\n".join(lines)


def minimal_step(res: StepResult) -> str:
    """A step in the minimal view: its header, its trace(s) or table, its result line."""
    lines = [f"-- step {res.index} {res.kind}: {res.title}"]
    if res.trace is not None:
        lines.append(minimal(res.trace))
    grid = res.data.get("matrix", {}).get("grid")
    if grid:
        lines.append(grid)
    for p in res.data.get("replay", {}).get("packets", []):
        lines.append(f"packet {p['index']} at {p['at'] or '-'}: {p['outcome']}")
    status = "-" if res.ok is None else ("ok" if res.ok else "FAIL")
    tail = f"=> {status} {res.actual or ''}".rstrip()
    if res.message:
        tail += f": {res.message}"
    lines.append(tail)
    return "\n".join(lines)


def minimal_summary(result: ScenarioResult) -> str:
    c = result.counts()
    return (
        f"== {result.scenario.name}: {c['passed']} passed, {c['failed']} failed, "
        f"{c['unchecked']} without expectations"
    )


def step_status(res: StepResult) -> Text:
    if res.ok is None:
        return Text("  · ", style="dim")
    return Text(" ok ", style="green") if res.ok else Text("FAIL", style="bold red")


def step_line(res: StepResult) -> Text:
    text = step_status(res)
    text.append(f" {res.index:>2} {res.title}")
    if res.actual:
        text.append(f" → {res.actual}")
    if res.failed:
        text.append(f"\n      {res.loc}: {res.message}", style="red")
    elif res.message and res.ok is None:
        text.append(f"  ({res.message})", style="dim")
    return text


def packet_line(p: dict[str, Any]) -> Text:
    """One replayed packet: `  3 at default/a  IP ... -> denied-ingress (why)`."""
    outcome = p["outcome"]
    text = Text(f"  {p['index']:>3} at {p['at'] or '-'}  {p['packet']} → ")
    text.append(outcome, style=VERDICT_STYLE.get(outcome, "bold"))
    why = p.get("message") or p.get("explanation")
    if why:
        text.append(f"  ({why})", style="dim")
    return text


def print_step(console: Console, res: StepResult, quiet: bool) -> None:
    if not quiet and res.trace is not None:
        console.print(trace_table(res.trace))
        console.print(verdict_line(res.trace))
    grid = res.data.get("matrix", {}).get("grid")
    if grid and not quiet:
        console.print(Text(grid))
    for p in res.data.get("replay", {}).get("packets", []) if not quiet else []:
        console.print(packet_line(p))
    console.print(step_line(res))
    if not quiet:
        console.print()


def summary(result: ScenarioResult) -> Text:
    c = result.counts()
    name = result.scenario.name
    style = "bold green" if result.ok else "bold red"
    text = Text(f"{name}: ", style="bold")
    text.append(
        f"{c['passed']} passed, {c['failed']} failed, {c['unchecked']} without expectations",
        style=style,
    )
    return text


def result_json(result: ScenarioResult) -> dict[str, Any]:
    """A whole scenario's result as one object (for the Python API)."""
    return {
        **summary_record(result),
        "type": "result",
        "steps": [s.to_dict() for s in result.steps],
    }


def _file(scenario: Scenario) -> str | None:
    return str(scenario.path) if scenario.path else None


def step_record(scenario: Scenario, res: StepResult) -> dict[str, Any]:
    """The JSON line of one step (`type: step`)."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "type": "step",
        "scenario": scenario.name,
        "file": _file(scenario),
        "step": res.to_dict(),
    }


def summary_record(result: ScenarioResult) -> dict[str, Any]:
    """The JSON line that closes one scenario (`type: summary`)."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "type": "summary",
        "scenario": result.scenario.name,
        "file": _file(result.scenario),
        "ok": result.ok,
        "counts": result.counts(),
        "warnings": list(result.warnings),
    }


def error_record(file: str, message: str) -> dict[str, Any]:
    """The JSON line of a file that could not be loaded or run (`type: error`)."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "type": "error",
        "file": file,
        "message": message,
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False)


def line(obj: dict[str, Any]) -> str:
    """One JSON Lines record."""
    return json.dumps(obj, sort_keys=False) + "\n"


# -- a scenario, shown while it runs ------------------------------------------------------

FORMATS = ("detailed", "minimal", "json")


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    if fmt not in allowed:
        from topology.errors import TopologyError

        raise TopologyError(
            f"--format {fmt!r} is not allowed (allowed: {', '.join(allowed)})"
        )
    return fmt


class ScenarioView:
    """Shows one scenario's steps as they finish, in one of `FORMATS`."""

    def __init__(
        self, fmt: str, console: Console, scenario: Scenario, quiet: bool = False
    ) -> None:
        self.fmt = fmt
        self.console = console
        self.scenario = scenario
        self.quiet = quiet

    def start(self) -> None:
        sc = self.scenario
        if self.fmt == "minimal":
            sys.stdout.write(f"== scenario {sc.name}\n")
        elif self.fmt == "detailed":
            self.console.rule(f"[bold]{sc.name}[/bold]  [dim]{sc.path}[/dim]")
            if sc.description and not self.quiet:
                self.console.print(sc.description.strip(), style="dim")

    def step(self, res: StepResult) -> None:
        if self.fmt == "json":
            sys.stdout.write(line(step_record(self.scenario, res)))
        elif self.fmt == "minimal":
            sys.stdout.write(minimal_step(res) + "\n")
        else:
            print_step(self.console, res, self.quiet)

    def done(self, result: ScenarioResult) -> None:
        if self.fmt == "json":
            sys.stdout.write(line(summary_record(result)))
        elif self.fmt == "minimal":
            sys.stdout.write(minimal_summary(result) + "\n")
        else:
            self.console.print(summary(result))
