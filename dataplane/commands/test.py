"""`dataplane test PATH...`: the regression runner for CI.

Runs every scenario file under the paths (a `.yaml`/`.yml` file with a top-level `steps:`
key; files named explicitly always run), one line per step, then a summary.  Exit status:
2 when a file is invalid or a step cannot run (the other files still run), else 1 when an
expectation failed, else 0.  `--junit FILE` writes JUnit XML; `-o json` prints JSON Lines
(`schemas/results.schema.json`), `-o yaml` the same records as a YAML stream.  `-j N` runs
N files at a time in separate processes; what is printed (and written) is the same as with
`-j 1`, file after file in order.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            help="Run this many files at a time, each in its own process (output "
            "as with 1, in file order).",
        ),
    ] = 1,
    debug: DebugOpt = False,
) -> None:
    """Run every scenario under PATHS and check its expectations (for CI)."""
    from dataplane import render
    from dataplane.output import DOCUMENTS, choose, record
    from dataplane.suite import discover

    with input_errors(debug):
        if jobs < 1:
            from topology.errors import TopologyError

            raise TopologyError(f"--jobs {jobs} is out of range (allowed: 1 or more)")
        fmt = choose("test", output, None, as_json)
        files = discover(paths)
    documents = fmt in DOCUMENTS
    start = time.perf_counter()
    runs: list[FileRun] = []
    show = None if documents else _printer(quiet)
    for run in _runs(files, jobs, show, traces=documents):
        runs.append(run)
        if documents:
            _records(run, fmt)
        elif run.error is not None:
            from rich.text import Text

            console.print(Text("ERROR ", style="bold red") + Text(run.error))
    from rich.text import Text

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


def _runs(
    files: list[Path],
    jobs: int,
    show: Callable[[StepResult], None] | None,
    traces: bool = True,
) -> Iterator[FileRun]:
    """Each file's run, in file order: here, step by step as they finish (`jobs` 1), or
    from `jobs` worker processes, each file's steps shown once it has finished (`traces`
    False: the output shows no trace of a step that passed, so none is sent back)."""
    from dataplane.suite import preload, run_file

    if jobs == 1 or len(files) < 2:
        for path in files:
            yield run_file(path, show)
        return
    from concurrent.futures import ProcessPoolExecutor

    # The workers are forked (Linux's default start method) and share what this process
    # imported: what a run imports on demand is imported here once, not once per worker.
    preload()
    with ProcessPoolExecutor(min(jobs, len(files))) as pool:
        # The largest files first (size as the guess of run time), so that no worker is
        # left alone with a long file at the end; the runs are still shown in file order.
        order = sorted(range(len(files)), key=lambda i: -_size(files[i]))
        futures = {i: pool.submit(_worker_run, files[i], traces) for i in order}
        for i in range(len(files)):
            run = futures[i].result()
            if show is not None:
                for res in run.steps:
                    show(res)
            yield run


def _worker_run(path: Path, traces: bool) -> FileRun:
    """`run_file` in a worker process, as its parent will print it.  The run is pickled
    back, and the traces are most of its bytes (6.4 MB of 8.1 for the shipped scenarios,
    whose pickling and unpickling cost a quarter of their walks' CPU time, the parent's
    half serially), so without `traces` only a failed step keeps its own (JUnit's
    failure text shows them)."""
    from dataplane.suite import run_file

    run = run_file(path)
    if not traces:
        for res in run.steps:
            if not res.failed:
                res.trace, res.traces = None, []
    return run


def _size(path: Path) -> int:
    """The size of a scenario file (0 if it cannot be read: `run_file` reports that)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


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
        from rich.text import Text

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
