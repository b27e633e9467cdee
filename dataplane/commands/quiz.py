"""`dataplane quiz FILE -o html`: a page of questions over a scenario's probes.

Each probe of the scenario is walked as `dataplane run` walks it (the steps run in order,
so a change made by an `apply` step is in force for the probes after it); before each
decision of the walk (the route, what a bridge does, encapsulation, the policy verdict,
the NAT target, the outcome) the page asks the learner to choose among plausible answers
taken from the model, and shows the right one with its reason (`dataplane.quiz`).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dataplane.cli import DebugOpt, FileArg, input_errors, load, register, warn


@register
def quiz(
    file: FileArg,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="html (a self-contained page on stdout: works offline, from file://) "
            "json or yaml (the questions as data).",
        ),
    ] = "html",
    debug: DebugOpt = False,
) -> None:
    """Write a page that asks, before each decision of every probe of FILE, what the
    dataplane does next."""
    from dataplane import output as out_fmt
    from dataplane.page import quiz_page
    from dataplane.quiz import questions
    from dataplane.scenario import Runner
    from dataplane.sim import Simulator
    from topology.errors import TopologyError

    with input_errors(debug):
        out_fmt.choose("quiz", output)
        scenario, warnings = load(file)
        warn(warnings)
        result = Runner(scenario).run()
        traces = [
            s.trace for s in result.steps if s.kind == "probe" and s.trace is not None
        ]
        if not traces:
            raise TopologyError(f"{file}: the scenario has no probe step to ask about")
    if output in out_fmt.DOCUMENTS:
        probes = [
            {
                "title": t.title,
                "questions": [q.to_dict() for q in questions(Simulator(t.cluster), t)]
                if t.cluster is not None
                else [],
            }
            for t in traces
        ]
        doc = out_fmt.document("quiz", scenario=scenario.name, probes=probes)
        sys.stdout.write(out_fmt.dump(doc, output))
        return
    sys.stdout.write(quiz_page(traces, f"Quiz: {scenario.name}"))
