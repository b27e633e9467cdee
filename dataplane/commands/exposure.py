"""`dataplane exposure FILE|DIR...`: who can connect to each workload (`dataplane.exposure`)."""

from __future__ import annotations

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


@register
def exposure(
    paths: PathsArg,
    output: Annotated[
        str, typer.Option("--output", "-o", help="text, json or yaml.")
    ] = "text",
    debug: DebugOpt = False,
) -> None:
    """For each workload port of each scenario's cluster (before its steps): is it open to a
    pod of any namespace, to an address outside the cluster, to a new pod in each
    namespace, and which selectors admit whom (pods that do not exist yet included); which
    admin-tier rule (ANP, BANP, CNP) decided for whom. Not for runtime: docker."""
    from dataplane import output as out_fmt
    from dataplane.exposure import exposure as find
    from dataplane.exposure import text

    with input_errors(debug):
        out_fmt.choose("exposure", output)
        files = scenario_files(paths, manifest_folders=True)
        found = []
        for f in files:
            scenario, warnings = load(f, command="exposure")
            warn(warnings)
            found.append((f, find(scenario.cluster)))
    if output in out_fmt.DOCUMENTS:
        per_file = [
            {"file": str(f), "workloads": [r.to_dict() for r in rows]}
            for f, rows in found
        ]
        doc = out_fmt.document("exposure", files=per_file)
        sys.stdout.write(out_fmt.dump(doc, output))
        return
    for f, rows in found:
        if len(found) > 1:
            write(f"# {f}\n")
        for line in text(rows):
            write(line + "\n")
