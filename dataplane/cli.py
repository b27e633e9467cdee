"""The `dataplane` command: a thin layer over the Python API.

Exit status: 0 when every expectation holds, 1 when one does not, 2 for invalid input (an
`error: ...` line naming the file, the line and what is wrong; the traceback only with
`--debug`).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from dataplane.terminal import Console, write
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
    from dataplane import render
    from dataplane.scenario import Runner

    failed = False
    with input_errors(debug):
        fmt = render.check_format("json" if as_json else fmt)
        loaded = [load(f) for f in files]  # every file is checked before anything runs
        if pcap_dir is not None:
            from dataplane.pcap import prepare_dir, scenario_dirs

            prepare_dir(pcap_dir)  # before anything runs
            subdirs = scenario_dirs(files) if len(files) > 1 else [""]
        for i, (scenario, warnings) in enumerate(loaded):
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
        write(render.minimal(t) + "\n")
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
