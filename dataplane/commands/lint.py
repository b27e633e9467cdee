"""`dataplane lint FILE|DIR...`: findings about policies and Services (`dataplane.lint`).

Exit status 1 when a finding is at or above `--fail-on` (default `warning`), 0 otherwise,
2 for invalid input; `-o sarif` for code-scanning pages, `-o json` for tools.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from dataplane.cli import (
    DebugOpt,
    PathsArg,
    input_errors,
    load,
    register,
    scenario_files,
    warn,
)
from dataplane.terminal import write

LEVELS = ("error", "warning", "note", "none")


@register
def lint(
    paths: PathsArg,
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="text, json, yaml or sarif (SARIF 2.1.0)."),
    ] = "text",
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a finding is at least this severe: error, warning, note "
            "or none (never).",
        ),
    ] = "warning",
    debug: DebugOpt = False,
) -> None:
    """Find selectors that match nothing, rules shadowed by broader ones, policies that
    admit nothing, ports nobody serves, ipBlocks over pod or node ranges, Services without
    endpoints and targetPorts nobody serves, in the cluster of each scenario (before its
    steps); for admin policies also rules shadowed by earlier ones of their tier, equal
    priorities, networks over pod/node ranges or IPv6, and domainNames the DNS does not
    answer. Not for runtime: docker (no policies or Services there)."""
    from dataplane import __version__
    from dataplane import output as out_fmt
    from dataplane.lint import Finding, Severity, sarif
    from dataplane.lint import lint as find
    from topology.errors import TopologyError

    with input_errors(debug):
        out_fmt.choose("lint", output)
        if fail_on not in LEVELS:
            raise TopologyError(
                f"--fail-on {fail_on!r} is not allowed (allowed: {', '.join(LEVELS)})"
            )
        files = scenario_files(paths, manifest_folders=True)
        findings: list[Finding] = []
        for f in files:
            scenario, warnings = load(f, command="lint")
            warn(warnings)
            findings += find(scenario.cluster)
    if output == "sarif":
        sys.stdout.write(json.dumps(sarif(findings, __version__), indent=2) + "\n")
    elif output in out_fmt.DOCUMENTS:
        doc = out_fmt.document("lint", findings=[f.to_dict() for f in findings])
        sys.stdout.write(out_fmt.dump(doc, output))
    else:
        # One finding a line, never wrapped (editors and CI logs link FILE:LINE).
        for finding in findings:
            write(f"{finding}\n")
        counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
        summary = ", ".join(f"{n} {s.value}(s)" for s, n in counts.items())
        write(f"{len(files)} file(s): {summary}\n")
    if fail_on != "none":
        bar = Severity(fail_on).rank
        if any(f.severity.rank >= bar for f in findings):
            raise typer.Exit(1)
