"""`dataplane connlist FILE|DIR` and `dataplane diff A B`: the cluster's allowed
connections over every protocol and port (`dataplane.connlist`), and what a change to the
manifests adds, removes or changes among them (`dataplane.conndiff`).

Both read scenario files and folders of Kubernetes manifests (a folder without any scenario
file: `dataplane.suite.load_manifests`).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:  # pragma: no cover
    from topology.scenario import Scenario

BY = ("workload", "pod")
DIRECTIONS = ("ingress", "egress")


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    from topology.errors import TopologyError

    if value not in allowed:
        raise TopologyError(
            f"{name} {value!r} is not allowed (allowed: {', '.join(allowed)})"
        )


def _version(path: Path) -> Scenario:
    """One side of `diff`: a scenario file or a folder of manifests."""
    from dataplane.suite import discover
    from topology.errors import TopologyError

    if path.is_dir() and discover([path]):
        raise TopologyError(
            f"{path}: this folder holds scenario files; diff compares two scenario "
            "files, or two folders of manifests (no scenario file in them)"
        )
    scenario, warnings = load(path, command="diff")
    warn(warnings)
    found: Scenario = scenario
    return found


@register
def connlist(
    paths: PathsArg,
    by: Annotated[
        str, typer.Option("--by", help="workload (replicas merged) or pod.")
    ] = "workload",
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="txt, csv, md, json, yaml, dot (Graphviz) or svg (a picture drawn "
            "without Graphviz).",
        ),
    ] = "txt",
    focus: Annotated[
        str | None,
        typer.Option(
            "--focus-workload",
            help="Only the connections of this workload (NAME, NS/NAME or "
            "NS/NAME[Kind]).",
        ),
    ] = None,
    direction: Annotated[
        str | None,
        typer.Option(
            "--direction",
            help="With --focus-workload: ingress (connections to it) or egress (from it).",
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """List every allowed connection of each scenario's cluster (before its steps) or
    folder of manifests, every protocol and port folded into ranges: `SRC => DST :
    PORTS`, with the address ranges outside the cluster that the policies' ipBlocks
    carve. Not for runtime: docker (no NetworkPolicy: use matrix)."""
    from dataplane import output as out_fmt
    from dataplane.connlist import connlist as find
    from dataplane.connlist import workload_name
    from dataplane.sim import Simulator
    from topology.errors import TopologyError

    with input_errors(debug):
        out_fmt.choose("connlist", output)
        _check("--by", by, BY)
        if direction is not None:
            _check("--direction", direction, DIRECTIONS)
            if focus is None:
                raise TopologyError("--direction needs --focus-workload")
        files = scenario_files(paths, manifest_folders=True)
        conns = []
        names: set[str] = set()
        for f in files:
            scenario, warnings = load(f, command="connlist")
            warn(warnings)
            found = find(Simulator(scenario.cluster), by)
            names |= {
                workload_name(p, by)
                for p in scenario.cluster.pods.values()
                if not p.host_network
            }
            if focus is not None:
                found = [c for c in found if _focused(c, focus, direction)]
            conns += found
        if focus is not None and not any(_matches(n, focus) for n in names):
            raise TopologyError(_unknown(focus, names, by))
    sys.stdout.write(render(conns, output))


def _unknown(focus: str, names: set[str], by: str) -> str:
    """`--focus-workload NAME` that names nothing, with the closest names."""
    import difflib

    bases = {n.split("[", 1)[0] for n in names}
    words = names | bases | {b.split("/", 1)[-1] for b in bases}
    near = difflib.get_close_matches(focus, sorted(words), n=3, cutoff=0.6)
    hint = f"closest: {', '.join(near)}" if near else f"{len(names)} {by}(s) exist"
    return f"--focus-workload {focus!r} names no {by} of the cluster ({hint})"


def _matches(name: str, focus: str) -> bool:
    """`default/web[Deployment]` is named by `web`, `default/web` or itself."""
    base = name.split("[", 1)[0]
    return focus in (name, base, base.split("/", 1)[-1])


def _focused(c: object, focus: str, direction: str | None) -> bool:
    src, dst = getattr(c, "src"), getattr(c, "dst")  # noqa: B009 - a Conn
    if direction == "ingress":
        return _matches(dst, focus)
    if direction == "egress":
        return _matches(src, focus)
    return _matches(src, focus) or _matches(dst, focus)


def render(conns: list, output: str) -> str:  # type: ignore[type-arg]
    from dataplane.connlist import format_ports

    if output in ("json", "yaml"):
        from dataplane import output as out_fmt

        doc = out_fmt.document("connlist", connections=[c.to_dict() for c in conns])
        return out_fmt.dump(doc, output)
    if output == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["src", "dst", "connection"])
        for c in conns:
            w.writerow([c.src, c.dst, format_ports(c.ports)])
        return buf.getvalue()
    if output == "md":
        lines = ["| src | dst | connection |", "|-----|-----|------------|"]
        lines += [f"| {c.src} | {c.dst} | {format_ports(c.ports)} |" for c in conns]
        return "\n".join(lines) + "\n"
    if output == "svg":
        from dataplane.connlist_svg import to_svg

        return to_svg(conns)
    if output == "dot":
        nodes = sorted({c.src for c in conns} | {c.dst for c in conns})
        lines = ["digraph connlist {", '  node [shape=box, fontname="DejaVu Sans"];']
        lines += [f"  {json.dumps(n)};" for n in nodes]
        lines += [
            f"  {json.dumps(c.src)} -> {json.dumps(c.dst)} "
            f"[label={json.dumps(format_ports(c.ports))}];"
            for c in conns
        ]
        return "\n".join([*lines, "}"]) + "\n"
    return "".join(f"{c.src} => {c.dst} : {format_ports(c.ports)}\n" for c in conns)


@register
def diff(
    a: Annotated[
        Path,
        typer.Argument(
            help="The cluster before: a scenario file or a folder of manifests.",
            show_default=False,
        ),
    ],
    b: Annotated[
        Path,
        typer.Argument(
            help="The cluster after: a scenario file or a folder of manifests.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="txt, md (a pull-request comment), csv, json or yaml.",
        ),
    ] = "txt",
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Name the policy change behind each difference (NetworkPolicy or "
            "admin tier: tier, policy, priority, rule).",
        ),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """What changes between the allowed connections of A and of B (scenario files or
    folders of manifests; workloads merged): connections added, removed and changed,
    workloads added and removed. Exit status 1 when they differ, 0 when they do not, 2
    for invalid input (runtime: docker too: no NetworkPolicy there)."""
    from dataplane import output as out_fmt
    from dataplane.conndiff import conndiff
    from dataplane.conndiff import render as render_diff

    with input_errors(debug):
        out_fmt.choose("diff", output)
        before, after = _version(a), _version(b)
        d = conndiff(before.cluster, after.cluster, explain)
    sys.stdout.write(render_diff(d, output, str(a), str(b)))
    raise typer.Exit(1 if d.differs else 0)
