"""The `dataplane` command: a thin layer over the Python API.

Exit status: 0 when every expectation holds, 1 when one does not, 2 for invalid input (an
`error: ...` line naming the file, the line and what is wrong; the traceback only with
`--debug`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from topology.errors import SimError

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.result import StepResult

app = typer.Typer(
    name="dataplane",
    help="A packet-level simulator of the Kubernetes node dataplane: walk packets hop by "
    "hop through pods, veths, bridges, routes, overlays and netfilter hooks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Not a terminal (CI logs, pipes): wide lines rather than rich's 80 columns.
console = Console(
    highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

FilesArg = Annotated[
    list[Path], typer.Argument(help="Scenario files (YAML).", show_default=False)
]
PathsArg = Annotated[
    list[Path],
    typer.Argument(help="Scenario files, or folders of them.", show_default=False),
]
FileArg = Annotated[
    Path, typer.Argument(help="A scenario file (YAML).", show_default=False)
]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show tracebacks of input errors.")
]


@contextmanager
def input_errors(debug: bool) -> Iterator[None]:
    """Turn project errors into `error: ...` and exit status 2."""
    try:
        yield
    except (SimError, FileNotFoundError, IsADirectoryError) as err:
        if debug:
            raise
        text = str(err)
        if isinstance(err, FileNotFoundError | IsADirectoryError):
            text = f"{err.filename}: {err.strerror}"
        err_console.print(f"error: {text}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def load(path: Path) -> tuple[Any, list[str]]:
    from topology.loader import load_scenario

    loaded: tuple[Any, list[str]] = load_scenario(path)
    return loaded


def warn(warnings: list[str]) -> None:
    for w in warnings:
        err_console.print(f"warning: {w}", markup=False, highlight=False)


@app.command()
def run(
    files: FilesArg,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="One line per step.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Same as --format json.")
    ] = False,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="detailed (hop tables), minimal (one stable line per hop, for golden "
            "files) or json (JSON Lines, schemas/results.schema.json).",
        ),
    ] = "detailed",
    pcap_dir: Annotated[
        Path | None,
        typer.Option(
            "--pcap-dir",
            help="Write one pcap per device (NODE_NETNS_DEVICE.pcap), as tcpdump on "
            "it would have seen every walk; one subdirectory per file if several.",
        ),
    ] = None,
    html_dir: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write one self-contained page per scenario into DIR (NAME.html): its "
            "steps, each probe's walk to step through, a matrix as a grid whose cells "
            "open that pair's walk; works offline, from file://.",
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Run every step of each scenario, print each probe's hop-by-hop trace and a summary."""
    from dataplane import render
    from dataplane.scenario import Runner

    failed = False
    with input_errors(debug):
        fmt = render.check_format("json" if as_json else fmt)
        loaded = [load(f) for f in files]  # every file is checked before anything runs
        for scenario, warnings in loaded:
            warn(warnings)
            view = render.ScenarioView(fmt, console, scenario, quiet)
            view.start()
            runner = Runner(scenario)
            steps: list[Callable[[StepResult], None]] = [view.step]
            if html_dir is not None:
                from dataplane.page import ScenarioPage

                page = ScenarioPage(runner)
                steps.append(page.step)
            result = runner.run(_each(steps))
            view.done(result)
            if html_dir is not None:
                out = write_page(html_dir, scenario.path, page.html())
                err_console.print(f"wrote {out}", markup=False, highlight=False)
            failed = failed or not result.ok
            if pcap_dir is not None:
                from dataplane.pcap import write_pcaps

                out = pcap_dir / scenario.path.stem if len(files) > 1 else pcap_dir
                traces = [t for s in result.steps for t in ([s.trace] if s.trace else s.traces)]  # fmt: skip
                n = len(write_pcaps(traces, out))
                err_console.print(f"wrote {n} captures to {out}", markup=False, highlight=False)  # fmt: skip
    raise typer.Exit(1 if failed else 0)


@app.command()
def trace(
    file: FileArg,
    src: Annotated[
        str, typer.Option("--from", help="Source endpoint (NS/POD, node/NAME, ...).")
    ],
    dst: Annotated[str, typer.Option("--to", help="Destination endpoint.")],
    port: Annotated[
        str | None, typer.Option("--port", "-p", help="Port number or name.")
    ] = None,
    protocol: Annotated[
        str, typer.Option("--protocol", help="TCP, UDP, SCTP or ICMP.")
    ] = "TCP",
    ttl: Annotated[int, typer.Option(help="IP TTL of the first packet.")] = 64,
    size: Annotated[
        int | None, typer.Option(help="IP total length of the first packet.")
    ] = None,
    df: Annotated[
        bool | None, typer.Option("--df/--no-df", help="Set or clear Don't Fragment.")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="detailed, minimal or json.")
    ] = "detailed",
    debug: DebugOpt = False,
) -> None:
    """Walk one probe through the cluster of FILE (before its steps) and show every hop."""
    from dataplane import render
    from dataplane.sim import Simulator
    from topology.errors import TopologyError
    from topology.model import Protocol

    with input_errors(debug):
        scenario, warnings = load(file)
        warn(warnings)
        try:
            proto = Protocol(protocol.upper())
        except ValueError:
            raise TopologyError(
                f"--protocol {protocol!r} is not allowed (allowed: TCP, UDP, SCTP, ICMP)"
            ) from None
        if fmt not in ("detailed", "minimal", "json"):
            raise TopologyError(f"--format {fmt!r} is not allowed (allowed: detailed, "
                                "minimal, json)")  # fmt: skip
        p: int | str | None = int(port) if port is not None and port.isdigit() else port
        sim = Simulator(scenario.cluster)
        t = sim.probe(src, dst, p, proto, ttl=ttl, size=size, df=df)
    if fmt == "json":
        sys.stdout.write(json.dumps(t.to_dict(), indent=2) + "\n")
    elif fmt == "minimal":
        sys.stdout.write(render.minimal(t) + "\n")
    else:
        render.print_trace(console, t)


def _each(
    callbacks: list[Callable[[StepResult], None]],
) -> Callable[[StepResult], None]:
    """One step callback that calls each of `callbacks` in turn."""

    def call(res: StepResult) -> None:
        for f in callbacks:
            f(res)

    return call


def write_page(directory: Path, source: Path, html: str) -> Path:
    """Write a scenario's page as DIR/STEM.html (the directory made if need be)."""
    from topology.errors import TopologyError

    try:
        directory.mkdir(parents=True, exist_ok=True)
        out = directory / f"{source.stem}.html"
        out.write_text(html, encoding="utf-8")
    except OSError as err:
        raise TopologyError(
            f"--html {directory}: cannot write: {err.strerror}"
        ) from None
    return out


def register(command: F) -> F:
    """Add a command defined in another module (`dataplane.commands`)."""
    app.command()(command)
    return command


def main() -> None:
    from dataplane import commands

    commands.load()
    app()


if __name__ == "__main__":  # pragma: no cover
    # `python -m dataplane.cli`: run the imported module's app, where commands register.
    from dataplane.cli import main as _main

    _main()
