"""The `dataplane` command: a thin layer over the Python API.

Exit status: 0 when every expectation holds, 1 when one does not, 2 for invalid input (an
`error: ...` line naming the file, the line and what is wrong; the traceback only with
`--debug`).
"""

from __future__ import annotations

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
HideOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--hide",
        help="Hide these kinds of hop from the text, wide and summary views "
        "(comma-separated, repeatable): arp, conntrack, fdb, hook, route, nat, "
        "forward, xmit, recv, encap, decap.",
        show_default=False,
    ),
]
TRACE_OUTPUT_HELP = (
    "text (the hop table fitted to the terminal: COLUMNS, else the terminal, else 80; "
    "one block per hop below 120 columns), wide (the hop table, nothing cut), summary "
    "(one line per device crossed), minimal (one stable line per hop, for golden "
    "files), json or yaml (schemas/results.schema.json)."
)
DEPRECATED_FORMAT = "Deprecated: use -o ('detailed' is -o text)."
DEPRECATED_JSON = "Deprecated: use -o json."


def hide_for(
    view: str,
    hide: list[str] | None,
    views: tuple[str, ...] = ("text", "wide", "summary"),
) -> frozenset[str]:
    """The hop kinds `--hide` names; an error for a view that shows no hop tables."""
    from dataplane.trace_view import parse_hide
    from topology.errors import TopologyError

    hidden = parse_hide(hide or [])
    if hidden and view not in views:
        raise TopologyError(
            f"--hide does not apply to -o {view} (it applies to {', '.join(views)})"
        )
    return hidden


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
    output: Annotated[
        str | None, typer.Option("--output", "-o", help=TRACE_OUTPUT_HELP)
    ] = None,
    hide: HideOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help=DEPRECATED_JSON)] = False,
    fmt: Annotated[str | None, typer.Option("--format", help=DEPRECATED_FORMAT)] = None,
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
    from dataplane import output as out_fmt
    from dataplane import render
    from dataplane.scenario import Runner

    failed = False
    totals = {"passed": 0, "failed": 0, "unchecked": 0}
    with input_errors(debug):
        view_name = out_fmt.choose("run", output, fmt, as_json)
        hidden = hide_for(view_name, hide)
        loaded = [load(f) for f in files]  # every file is checked before anything runs
        for scenario, warnings in loaded:
            warn(warnings)
            view = render.ScenarioView(view_name, console, scenario, quiet, hidden)
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
            for k in totals:
                totals[k] += result.counts()[k]
            if pcap_dir is not None:
                from dataplane.pcap import write_pcaps

                out = pcap_dir / scenario.path.stem if len(files) > 1 else pcap_dir
                traces = [t for s in result.steps for t in ([s.trace] if s.trace else s.traces)]  # fmt: skip
                n = len(write_pcaps(traces, out))
                err_console.print(f"wrote {n} captures to {out}", markup=False, highlight=False)  # fmt: skip
    if len(files) > 1:
        render.print_total(console, view_name, totals, len(files))
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
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help=TRACE_OUTPUT_HELP + " Also html: the walk viewer, one self-contained "
            "page to step through (offline, from file://).",
        ),
    ] = None,
    hide: HideOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", help=DEPRECATED_FORMAT)] = None,
    debug: DebugOpt = False,
) -> None:
    """Walk one probe through the cluster of FILE (before its steps) and show every hop."""
    from dataplane import output as out_fmt
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
        view = out_fmt.choose("trace", output, fmt)
        hidden = hide_for(view, hide)
        p: int | str | None = int(port) if port is not None and port.isdigit() else port
        sim = Simulator(scenario.cluster)
        t = sim.probe(src, dst, p, proto, ttl=ttl, size=size, df=df)
    if view == "html":  # the walk viewer: one self-contained page (dataplane.page)
        from dataplane.page import walk_page

        sys.stdout.write(walk_page(sim, t, scenario.name))
    elif view in out_fmt.DOCUMENTS:
        sys.stdout.write(out_fmt.dump(render.trace_document(t, scenario), view))
    else:
        render.print_trace(console, t, view, hidden)


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
