"""`dataplane test PATH...`: the regression runner for CI.

Runs every scenario file under the paths (a `.yaml`/`.yml` file with a top-level `steps:`
key; files named explicitly always run), one line per step, then a summary.  Exit status:
2 when a file is invalid or a step cannot run (the other files still run), else 1 when an
expectation failed, else 0.  `--junit FILE` writes JUnit XML; `-o json` prints JSON Lines
(`schemas/results.schema.json`), `-o yaml` the same records as a YAML stream.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from dataplane.cli import DebugOpt, console, err_console, input_errors, register
from dataplane.terminal import write

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.result import StepResult
    from dataplane.suite import FileRun


def run_tests(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Scenario files and folders to search.", show_default=False
        ),
    ],
    junit: Annotated[
        Path | None,
        typer.Option("--junit", help="Write a JUnit XML report to this file."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="text (one line per step), json (JSON Lines, "
            "schemas/results.schema.json) or yaml (the same records, a YAML stream).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Deprecated: use -o json.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only failures and the summary.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Run every scenario under PATHS and check its expectations (for CI)."""
    from dataplane import render
    from dataplane.output import DOCUMENTS, choose, record
    from dataplane.suite import discover, run_file

    with input_errors(debug):
        fmt = choose("test", output, None, as_json)
        files = discover(paths)
    documents = fmt in DOCUMENTS
    start = time.perf_counter()
    runs: list[FileRun] = []
    for path in files:
        run = run_file(path, None if documents else _printer(quiet))
        runs.append(run)
        if documents:
            _records(run, fmt)
        elif run.error is not None:
            console.print(Text("ERROR ", style="bold red") + Text(run.error))
    elapsed = time.perf_counter() - start
    passed = sum(r.passed for r in runs)
    failed = sum(r.failed for r in runs)
    unchecked = sum(r.unchecked for r in runs)
    errors = sum(1 for r in runs if r.error is not None)
    if junit is not None:
        from dataplane.junit import write_junit

        with input_errors(debug):
            write_junit(runs, junit)
    if documents:
        counts = {"passed": passed, "failed": failed, "unchecked": unchecked}
        sys.stdout.write(record(render.total_record(counts, len(runs), errors), fmt))
    else:
        if not files:
            err_console.print("warning: no scenario files found", markup=False)
        steps = passed + failed + unchecked
        console.print(
            f"{len(runs)} files, {steps} steps: {unchecked} without expectations, "
            f"{errors} errors",
            markup=False,
        )
        style = "bold green" if not failed and not errors else "bold red"
        console.print(
            Text(f"{passed} passed, {failed} failed in {elapsed:.2f}s", style=style)
        )
    raise typer.Exit(2 if errors else 1 if failed else 0)


# The command is `dataplane test`; the function is not called test_* so that linters and
# pytest do not take it for a test.
run_tests.__name__ = "test"
register(run_tests)


def _printer(quiet: bool) -> Callable[[StepResult], None]:
    styled = (
        console.is_terminal
    )  # plain text (and no rich overhead) into pipes and files

    from dataplane.render import step_label

    def show(res: StepResult) -> None:
        if quiet and not res.failed:
            return
        status = {None: "-   ", True: "ok  ", False: "FAIL"}[res.ok]
        line = f" {res.loc} {step_label(res)}"
        line += f" → {res.actual}" if res.actual else ""
        detail = f"\n     {res.message}" if res.failed else ""
        if not styled:
            write(status + line + detail + "\n")
            return
        style = {None: "dim", True: "green", False: "bold red"}[res.ok]
        text = Text(status, style=style) + Text(line)
        text.append(detail, style="red")
        console.print(text, soft_wrap=True)

    return show


def _records(run: FileRun, fmt: str) -> None:
    from dataplane import render
    from dataplane.output import record

    result = run.result()
    if result is not None:
        for res in result.steps:
            sys.stdout.write(record(render.step_record(result.scenario, res), fmt))
        sys.stdout.write(record(render.summary_record(result), fmt))
    if run.error is not None:
        sys.stdout.write(record(render.error_record(str(run.path), run.error), fmt))
