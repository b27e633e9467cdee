"""Views of a trace and of a scenario's results: text (the hop table fitted to the
terminal), wide, summary, minimal (stable) and JSON/YAML documents.

The trace views themselves (summary lines, the fitted table, the list layout of narrow
terminals, `--hide`) are `dataplane.trace_view`'s; this module puts them together per
command and per scenario.

The minimal view (`-o minimal` of `run`, `trace` and `replay`) is meant for golden files
kept in a team's repository.  Its promise: plain text, one line per hop, no timestamps, no
column widths, no colours, no file paths, and the same bytes for the same scenario
whatever the terminal, the machine or the run.  It reads:

    == scenario NAME
    -- step N KIND: TITLE
    # TRACE-TITLE [MODE]
    SEQ NODE NETNS DEVICE EVENT: DETAIL [REWRITES] | PACKET     (one per hop; NETNS without
    verdict VERDICT                                             spaces: pod:default/a; a
    => ok|FAIL|- ACTUAL[: MESSAGE]                              reply hop's EVENT is `<EVENT`)
    == NAME: P passed, F failed, U without expectations

A matrix step prints its grid, a replay step one `packet I at ENDPOINT: OUTCOME` line per
packet.  Lines change only when what the simulator does changes (MACs are shortened to
`0a:..:03` whatever the trace holds, unlike the other views).

The JSON view (`-o json` of `run`, `test` and `replay`) is JSON Lines, one object per line,
described by `schemas/results.schema.json`; every object carries `schema_version`
(`JSON_SCHEMA_VERSION`) and `type`: `step`, `summary` (one per scenario), `packet`
(replay), `error` (a file that could not be loaded) and `total` (`test`, and `run` of
several files, last).  `-o yaml` is the same records as a YAML stream.  Keys may be added
within a version; removing or changing one bumps the version.
"""

from __future__ import annotations

import json
import sys
import textwrap
from typing import Any

from rich.console import Console
from rich.text import Text

from dataplane import trace_view
from dataplane.output import JSON_SCHEMA_VERSION, document, record
from dataplane.result import ScenarioResult, StepResult
from dataplane.terminal import literal, write
from dataplane.trace import Trace
from topology.scenario import Scenario

__all__ = ["JSON_SCHEMA_VERSION", "ScenarioView", "minimal", "print_trace"]

VERDICT_STYLE = {
    "delivered": "bold green",
    "refused": "yellow",
    "denied": "bold red",
    "denied-egress": "bold red",
    "denied-ingress": "bold red",
    "dropped": "red",
}
NO_HIDE: frozenset[str] = frozenset()


def verdict_line(trace: Trace) -> Text:
    return trace_view.verdict_text(trace, lambda v: VERDICT_STYLE.get(v, "bold"))


def fit(console: Console) -> int:
    """Fit `console` to the output's width now (COLUMNS may change between calls)."""
    width = trace_view.output_width()
    console.width = width
    return width


def print_hops(
    console: Console, trace: Trace, view: str = "text", hide: frozenset[str] = NO_HIDE
) -> None:
    """A trace's hops in one of the text views (`text`, `wide`, `summary`)."""
    width = fit(console)
    if view == "wide":  # plain lines, as long as they are
        write("".join(t + "\n" for t in trace_view.wide_lines(trace, hide)))
        return
    if view == "summary":
        lines = trace_view.summary_lines(trace, width, hide)
    elif width < trace_view.LIST_WIDTH:
        lines = trace_view.hop_blocks(trace, width, hide)
    else:
        console.print(trace_view.trace_table(trace, hide))
        return
    for text in lines:
        console.print(text)


def print_trace(
    console: Console, trace: Trace, view: str = "text", hide: frozenset[str] = NO_HIDE
) -> None:
    """A whole trace in `view` (`text`, `wide`, `summary`, `minimal`)."""
    if view == "minimal":
        write(minimal(trace) + "\n")
        return
    print_hops(console, trace, view, hide)
    if view == "wide":
        write("".join(a + "\n" for a in trace.assumptions))
        write(verdict_line(trace).plain + "\n")
        return
    for a in trace.assumptions:
        console.print(Text(a, style="dim"))
    console.print(verdict_line(trace))


def trace_dict(trace: Trace) -> dict[str, Any]:
    """A trace as JSON, with its summary lines (`summary`: step numbers, hop seqs)."""
    names = trace_view.mac_names(trace)
    return {
        **trace.to_dict(),
        "summary": [
            {"step": s.number, "node": s.node, "netns": s.netns,
             "direction": s.direction, "devices": list(s.devices),
             "hops": list(s.seqs), "text": trace_view.step_text(s, names, NO_HIDE)}
            for s in trace_view.summary_steps(trace)
        ],
    }  # fmt: skip


def trace_document(trace: Trace, scenario: Scenario) -> dict[str, Any]:
    """The document of `dataplane trace -o json|yaml`."""
    return document(
        "trace", scenario=scenario.name, file=_file(scenario), trace=trace_dict(trace)
    )


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
    more = unlisted(res)
    if more:
        lines.append(more)
    status = "-" if res.ok is None else ("ok" if res.ok else "FAIL")
    tail = f"=> {status} {res.actual or ''}".rstrip()
    if res.message:
        tail += f": {res.message}"
    lines.append(tail)
    return "\n".join(lines)


def unlisted(res: StepResult) -> str:
    """What a replay step counted but did not keep (its packets beyond `keepTraces`)."""
    replay = res.data.get("replay", {})
    more = replay.get("total", 0) - len(replay.get("packets", []))
    if more <= 0:
        return ""
    return f"({more} more packets counted, not listed: keepTraces lists more)"


def minimal_summary(result: ScenarioResult) -> str:
    return f"== {result.scenario.name}: {counts_text(result.counts())}"


def step_status(res: StepResult) -> Text:
    if res.ok is None:
        return Text("  · ", style="dim")
    return Text(" ok ", style="green") if res.ok else Text("FAIL", style="bold red")


def step_label(res: StepResult) -> str:
    """`NAME: TITLE` for a named step, else `TITLE` (text views and JUnit)."""
    return f"{res.name}: {res.title}" if res.name else res.title


def step_line(res: StepResult) -> Text:
    text = step_status(res)
    text.append(f" {res.index:>2} {step_label(res)}")
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


def print_step(
    console: Console,
    res: StepResult,
    quiet: bool,
    view: str = "text",
    hide: frozenset[str] = NO_HIDE,
) -> None:
    fit(console)
    if not quiet and res.trace is not None:
        print_hops(console, res.trace, view, hide)
        console.print(verdict_line(res.trace))
    grid = res.data.get("matrix", {}).get("grid")
    if grid and not quiet:
        write(grid + "\n")
    for p in res.data.get("replay", {}).get("packets", []) if not quiet else []:
        console.print(packet_line(p))
    more = unlisted(res)
    if more and not quiet:
        console.print(Text(more, style="dim"))
    # A result line is never broken: it holds FILE:LINE, which editors and grep find.
    console.print(step_line(res), soft_wrap=True)
    if not quiet:
        console.print()


def counts_text(c: dict[str, int]) -> str:
    return (
        f"{c['passed']} passed, {c['failed']} failed, {c['unchecked']} without "
        "expectations"
    )


def summary(result: ScenarioResult) -> Text:
    name = result.scenario.name
    style = "bold green" if result.ok else "bold red"
    text = literal(f"{name}: ", style="bold")
    text.append(counts_text(result.counts()), style=style)
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
    return document(
        "step", scenario=scenario.name, file=_file(scenario), step=res.to_dict()
    )


def summary_record(result: ScenarioResult) -> dict[str, Any]:
    """The JSON line that closes one scenario (`type: summary`)."""
    return document(
        "summary",
        scenario=result.scenario.name,
        file=_file(result.scenario),
        ok=result.ok,
        counts=result.counts(),
        warnings=list(result.warnings),
    )


def error_record(file: str, message: str) -> dict[str, Any]:
    """The JSON line of a file that could not be loaded or run (`type: error`)."""
    return document("error", file=file, message=message)


def total_record(counts: dict[str, int], files: int, errors: int = 0) -> dict[str, Any]:
    """The last JSON line of `test`, and of `run` with several files (`type: total`)."""
    ok = not counts["failed"] and not errors
    return document(
        "total",
        files=files,
        passed=counts["passed"],
        failed=counts["failed"],
        unchecked=counts["unchecked"],
        errors=errors,
        ok=ok,
    )


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False)


def line(obj: dict[str, Any]) -> str:
    """One JSON Lines record."""
    return json.dumps(obj, sort_keys=False) + "\n"


# -- a scenario, shown while it runs ------------------------------------------------------


class ScenarioView:
    """Shows one scenario's steps as they finish, in one of `output.OUTPUTS["run"]`."""

    def __init__(
        self,
        fmt: str,
        console: Console,
        scenario: Scenario,
        quiet: bool = False,
        hide: frozenset[str] = NO_HIDE,
    ) -> None:
        self.fmt = fmt
        self.console = console
        self.scenario = scenario
        self.quiet = quiet
        self.hide = hide

    def start(self) -> None:
        sc = self.scenario
        if self.fmt == "hubble":  # flow lines only, as `hubble observe` prints them
            return
        if self.fmt == "minimal":
            write(f"== scenario {sc.name}\n")
        elif self.fmt not in ("json", "yaml"):
            fit(self.console)
            title = literal(sc.name, style="bold")
            title.append(literal(f"  {sc.path}", style="dim"))
            self.console.rule(title)
            if sc.description and not self.quiet:
                # Each paragraph filled to the width (the YAML's own breaks are not).
                width = fit(self.console)
                paragraphs = sc.description.strip().split("\n\n")
                text = "\n\n".join(
                    textwrap.fill(" ".join(p.split()), width) for p in paragraphs
                )
                self.console.print(Text(text, style="dim"), soft_wrap=True)

    def step(self, res: StepResult) -> None:
        if self.fmt == "hubble":
            from dataplane.hubble import flow_lines

            for trace in res.traces or ([res.trace] if res.trace else []):
                write(
                    "".join(f + "\n" for f in flow_lines(trace, self.scenario.cluster))
                )
        elif self.fmt in ("json", "yaml"):
            sys.stdout.write(record(step_record(self.scenario, res), self.fmt))
        elif self.fmt == "minimal":
            write(minimal_step(res) + "\n")
        else:
            print_step(self.console, res, self.quiet, self.fmt, self.hide)

    def done(self, result: ScenarioResult) -> None:
        if self.fmt == "hubble":
            return
        if self.fmt in ("json", "yaml"):
            sys.stdout.write(record(summary_record(result), self.fmt))
        elif self.fmt == "minimal":
            write(minimal_summary(result) + "\n")
        else:
            self.console.print(summary(result), soft_wrap=True)


def print_total(
    console: Console, view: str, counts: dict[str, int], files: int
) -> None:
    """The grand total after several files (`run`): a line, or a `total` record."""
    if view in ("json", "yaml"):
        sys.stdout.write(record(total_record(counts, files), view))
    elif view == "minimal":
        write(f"== total over {files} files: {counts_text(counts)}\n")
    else:
        style = "bold red" if counts["failed"] else "bold green"
        text = Text(f"total over {files} files: ", style="bold")
        text.append(counts_text(counts), style=style)
        console.print(text, soft_wrap=True)
