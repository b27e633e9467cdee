"""The `dataplane` command: a thin layer over the Python API.

Exit status: 0 when every expectation holds, 1 when one does not, 2 for invalid input (an
`error: ...` line naming the file, the line and what is wrong; the traceback only with
`--debug`).

The options every command shares live here, each parsed in one place: `FILE` (one scenario
file; a folder is an error, only `run` and `test` search folders), `-n/--namespace` (how a
bare name becomes an endpoint: `Simulator.qualify`), `--port`, `--protocol`, `--at-step`.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from dataplane import commands
from dataplane.terminal import Console
from topology.errors import SimError, TopologyError

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.result import StepResult
    from dataplane.sim import Simulator
    from topology.model import Protocol
    from topology.scenario import Scenario


class _Group(TyperGroup):
    """The app's click group: a command of `dataplane.commands` is imported when it is
    looked up (`commands.CommandTable`), so a command imports only its own machinery."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = commands.CommandTable(self.commands, app)


app = typer.Typer(
    cls=_Group,
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

PathsArg = Annotated[
    list[Path],
    typer.Argument(
        help="Scenario files (YAML), or folders of them: every .yaml/.yml file with a "
        "top-level steps: key under them (`dataplane.suite.discover`).",
        show_default=False,
    ),
]


def _one_file(path: Path) -> Path:
    """FILE of the commands that simulate one cluster: a folder holds many."""
    if path.is_dir():
        err_console.print(
            f"error: {path}: is a directory; this command takes one scenario file "
            "(`run`, `test`, `lint`, `exposure`, `connlist` and `diff` take folders)",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(2)
    return path


FileArg = Annotated[
    Path,
    typer.Argument(
        help="A scenario file (YAML).", show_default=False, callback=_one_file
    ),
]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show tracebacks of input errors.")
]
NAMESPACE_HELP = (
    "Namespace of names written without one, as kubectl's -n. A bare NAME is the pod "
    "NS/NAME if there is one; otherwise, as --to only, a DNS name that kube-dns answers "
    "from the source pod (a Service NAME of the source pod's namespace, NAME.OTHERNS, "
    "...); otherwise an error listing close matches. 'NAME.' (a final dot) is always a "
    "DNS name. pod/NAME and svc/NAME are the pod and the Service NAME of NS."
)
NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help=NAMESPACE_HELP)]
PortOpt = Annotated[
    str | None,
    typer.Option("--port", "-p", help="Port number (1-65535) or name (not for ICMP)."),
]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="TCP, UDP, SCTP or ICMP.")]
# The two ends of one probe (trace, explain).
FROM_HELP = (
    "Source endpoint (NS/POD, a pod NAME of -n, node/NAME, container/NODE/NAME, ...)."
)
TO_HELP = "Destination endpoint (NS/POD, NAME, svc/NS/NAME, container/NODE/NAME, DNS)."
FromOpt = Annotated[str, typer.Option("--from", help=FROM_HELP)]
ToOpt = Annotated[str, typer.Option("--to", help=TO_HELP)]
AtStepOpt = Annotated[
    int,
    typer.Option(
        "--at-step",
        help="Use the cluster as it is after the changes (apply, delete, label) of steps "
        "1..N; 0 is the cluster before step 1.",
    ),
]
# A port that reads as a number (`80`, `0`, `1e20`, `8.5`, `-1`) is judged as a number.
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")

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


def parse_protocol(text: str) -> Protocol:
    """`--protocol`, case-insensitive."""
    from topology.model import Protocol

    try:
        return Protocol(text.upper())
    except ValueError:
        raise TopologyError(
            f"--protocol {text!r} is not allowed (allowed: TCP, UDP, SCTP, ICMP)"
        ) from None


def parse_port(text: str | None, protocol: Protocol) -> int | str | None:
    """`--port`: a number 1-65535 or a port name (IANA_SVC_NAME, as a containerPort's
    `name`); ICMP has no port.

    >>> from topology.model import Protocol
    >>> parse_port("80", Protocol.TCP), parse_port("http", Protocol.TCP)
    (80, 'http')
    >>> parse_port("0", Protocol.TCP)
    Traceback (most recent call last):
    ...
    topology.errors.TopologyError: --port '0' is out of range (allowed: 1-65535 or a port name)
    """
    from topology import names

    if text is None:
        return None
    if protocol.value == "ICMP":
        raise TopologyError(
            f"--port {text!r}: ICMP has no port (leave --port out, or use --protocol "
            "TCP, UDP or SCTP)"
        )
    if _NUMBER.fullmatch(text):
        if text.lstrip("+-").isdigit():
            if 1 <= int(text) <= 65535:
                return int(text)
            what = "is out of range"
        else:
            what = "is not a whole number"
        raise TopologyError(f"--port {text!r} {what} (allowed: 1-65535 or a port name)")
    reason = names.port_name(text)
    if reason is not None:
        raise TopologyError(f"--port {reason}, nor a number 1-65535")
    return text


def simulator_at(scenario: Scenario, at_step: int) -> Simulator:
    """A simulator of the scenario's cluster after the changes of steps 1..`at_step`."""
    from dataplane.scenario import Runner
    from topology.scenario import ApplyStep, DeleteStep, LabelStep

    if not 0 <= at_step <= len(scenario.steps):
        raise TopologyError(
            f"--at-step {at_step} is out of range (allowed: 0-{len(scenario.steps)})"
        )
    runner = Runner(scenario)
    for i, step in enumerate(scenario.steps[:at_step], 1):
        if isinstance(step, ApplyStep | DeleteStep | LabelStep):
            runner.run_step(i, step)
    return runner.sim


def probe_ends(sim: Simulator, namespace: str, src: str, dst: str) -> tuple[str, str]:
    """`--from` and `--to` as full endpoint texts (`Simulator.qualify`)."""
    source = sim.qualify(src, namespace)
    return source, sim.qualify(dst, namespace, source)


def scenario_files(paths: list[Path], manifest_folders: bool = False) -> list[Path]:
    """The files of `paths`, each folder replaced by the scenario files under it
    (`dataplane.suite.discover`); a folder without any is an error, or, with
    `manifest_folders`, kept as a folder of manifests (`dataplane.suite.load_manifests`)."""
    from dataplane.suite import discover

    found: list[Path] = []
    for path in paths:
        files = discover([path])
        if not files and manifest_folders:
            files = [path]
        elif not files:
            raise TopologyError(
                f"{path}: no scenario file in this folder (a .yaml or .yml file with a "
                "top-level steps: key)"
            )
        found += files
    return list(dict.fromkeys(found))


# The commands that answer NetworkPolicy questions (what they answer), refused on a
# scenario of Docker hosts: `runtime: docker` has no NetworkPolicy, Docker's filter chains
# decide packet by packet, and `run`, `trace` and `matrix` walk the packets through them.
KUBERNETES_ONLY = {
    "connlist": "lists the connections that NetworkPolicy allows",
    "diff": "compares the connections that NetworkPolicy allows",
    "exposure": "reads which NetworkPolicy selectors admit whom",
    "explain": "names the NetworkPolicy rules that decided",
    "lint": "checks NetworkPolicies, admin policies and Services",
}
ON_DOCKER = (
    "`dataplane trace FILE --from A --to B --port N` names Docker's chain and rule that"
    " decided, `dataplane matrix FILE --port N` walks every pair of containers through"
    " them, `dataplane run FILE` checks the steps' expectations"
)


def load(
    path: Path,
    manifests: list[Path] | None = None,
    strict: bool = False,
    command: str | None = None,
) -> tuple[Any, list[str]]:
    """A scenario file or a folder of manifests; `command` (one of `KUBERNETES_ONLY`)
    refuses a scenario of Docker hosts."""
    from dataplane.suite import load_file
    from topology.model import Loc

    loaded: tuple[Any, list[str]] = load_file(
        path, manifests=manifests or [], strict=strict
    )
    if command is not None and loaded[0].cluster.docker is not None:
        raise TopologyError(
            f"{command} {KUBERNETES_ONLY[command]}, and a scenario of Docker hosts"
            " (cluster.runtime: docker) has none: instead, " + ON_DOCKER,
            Loc(str(path)),
        )
    return loaded


def warn(warnings: list[str], kind: str = "warning") -> None:
    for w in warnings:
        err_console.print(f"{kind}: {w}")


@app.command()
def run(
    files: PathsArg,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="One line per step.")
    ] = False,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help=TRACE_OUTPUT_HELP
            + " Also hubble (cni: cilium only): each walk as `hubble observe` flow"
            " lines.",
        ),
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
    manifests: Annotated[
        list[Path] | None,
        typer.Option(
            "--manifests",
            help="More Kubernetes objects: a YAML/JSON file or a folder (repeatable), "
            "added to each scenario's manifests.",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Objects of kinds that are not modelled (ConfigMap, Ingress, ...) are "
            "errors, not warnings.",
        ),
    ] = False,
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
    """Run every step of each scenario (files or folders): each probe's trace, a summary."""
    from dataplane import output as out_fmt
    from dataplane import render
    from dataplane.scenario import Runner

    failed = False
    totals = {"passed": 0, "failed": 0, "unchecked": 0}
    with input_errors(debug):
        view_name = out_fmt.choose("run", output, fmt, as_json)
        hidden = hide_for(view_name, hide)
        files = scenario_files(files)
        # every file is checked before anything runs
        loaded = [load(f, manifests, strict) for f in files]
        if view_name == "hubble":
            from dataplane.hubble import check

            for scenario, _ in loaded:
                check(scenario.cluster, scenario.name)
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
    src: FromOpt,
    dst: ToOpt,
    port: PortOpt = None,
    protocol: ProtocolOpt = "TCP",
    namespace: NamespaceOpt = "default",
    at_step: AtStepOpt = 0,
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
    """Walk one probe through the cluster of FILE (at --at-step) and show every hop."""
    from dataplane import output as out_fmt
    from dataplane import render

    with input_errors(debug):
        scenario, warnings = load(file)
        warn(warnings)
        proto = parse_protocol(protocol)
        p = parse_port(port, proto)
        view = out_fmt.choose("trace", output, fmt)
        hidden = hide_for(view, hide)
        sim = simulator_at(scenario, at_step)
        src, dst = probe_ends(sim, namespace, src, dst)
        t = sim.probe(src, dst, p, proto, ttl=ttl, size=size, df=df)
    if view == "html":  # the walk viewer: one self-contained page (dataplane.page)
        from dataplane.page import walk_page

        sys.stdout.write(walk_page(sim, t, scenario.name))
    elif view in out_fmt.DOCUMENTS:
        sys.stdout.write(out_fmt.dump(render.trace_document(t, scenario), view))
    else:
        render.print_trace(console, t, view, hidden)


def _version(show: bool) -> None:
    """`--version`: the installed package's version (its metadata, as pip shows it)."""
    if show:
        from importlib.metadata import version

        console.print(
            f"dataplane {version('dataplane')}", markup=False, highlight=False
        )
        raise typer.Exit(0)


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """The options of `dataplane` itself, before the command."""


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


def register(command: F, name: str | None = None) -> F:
    """Add a command defined in another module (`dataplane.commands`); `name` when the
    command's word is not its function's name (`import`, a Python keyword)."""
    app.command(name)(command)
    return command


def _terminate(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C (open files are closed on the way out)."""
    raise SystemExit(128 + signum)


def main() -> None:
    """The entry point.  Ctrl-C or SIGTERM at any moment ends it quietly with 130 or 143
    (`dataplane verify` installs its own handler, which removes its namespaces)."""
    try:
        signal.signal(signal.SIGTERM, _terminate)
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":  # pragma: no cover
    # `python -m dataplane.cli`: run the imported module's app, where commands register.
    from dataplane.cli import main as _main

    _main()
