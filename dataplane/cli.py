"""The `dataplane` command: a thin layer over the Python API.

Exit status: 0 when every expectation holds, 1 when one does not, 2 for invalid input (an
`error: ...` line naming the file, the line and what is wrong; the traceback only with
`--debug`).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from dataplane.terminal import Console
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

# Not a terminal (CI logs, pipes): wide lines rather than rich's 80 columns.  Both print
# user text literally: no markup, no emoji codes, control characters escaped.
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
    except (SimError, OSError) as err:  # OSError: an output file that cannot be written
        if debug:
            raise
        text = str(err)
        if isinstance(err, OSError) and err.strerror:
            text = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
        err_console.print(f"error: {text}")
        raise typer.Exit(2) from None


def load(path: Path) -> tuple[Any, list[str]]:
    from dataplane.suite import load_file

    loaded: tuple[Any, list[str]] = load_file(path)
    return loaded


def warn(warnings: list[str], kind: str = "warning") -> None:
    for w in warnings:
        err_console.print(f"{kind}: {w}")


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
            "it would have seen every walk; one subdirectory per file if several "
            "(its stem; stem-HASH where two files share a stem).",
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
        if pcap_dir is not None:
            from dataplane.pcap import prepare_dir, scenario_dirs

            prepare_dir(pcap_dir)  # before anything runs
            subdirs = scenario_dirs(files) if len(files) > 1 else [""]
        for i, (scenario, warnings) in enumerate(loaded):
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
                from dataplane.pcap import scenario_dirs

                name = scenario_dirs(files)[i]  # stems that collide get a hash
                out = write_page(html_dir, name, page.html())
                err_console.print(f"wrote {out}", markup=False, highlight=False)
            failed = failed or not result.ok
            for k in totals:
                totals[k] += result.counts()[k]
            if pcap_dir is not None:
                from dataplane.pcap import PcapSink

                out = pcap_dir / subdirs[i]
                sink = PcapSink(out)
                try:
                    for s in result.steps:
                        for t in [s.trace] if s.trace else s.traces:
                            sink.add(t)
                finally:
                    n = len(sink.close())
                warn(sink.notes(), "note")
                err_console.print(f"wrote {n} captures to {out}")
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


def write_page(directory: Path, name: str, html: str) -> Path:
    """Write a scenario's page as DIR/NAME.html (the directory made if need be)."""
    from topology.errors import TopologyError

    try:
        directory.mkdir(parents=True, exist_ok=True)
        out = directory / f"{name}.html"
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


def _terminate(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C (open files are closed on the way out)."""
    raise SystemExit(128 + signum)


def main() -> None:
    """The entry point.  Ctrl-C or SIGTERM at any moment ends it quietly with 130 or 143
    (`dataplane verify` installs its own handler, which removes its namespaces)."""
    try:
        signal.signal(signal.SIGTERM, _terminate)
        from dataplane import commands

        commands.load()
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":  # pragma: no cover
    # `python -m dataplane.cli`: run the imported module's app, where commands register.
    from dataplane.cli import main as _main

    _main()
