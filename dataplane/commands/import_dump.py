"""`dataplane import DUMP -o SCENARIO`: a scenario from a dump of a live cluster.

The dump (`kubectl get nodes,ns,pods,svc,netpol -A -o yaml`) is read with the checks of every
scenario input (`topology.include`), copied beside the scenario as `manifests/<DUMP's name>`
and included from there; `topology.dump` infers the cluster keys.  The new scenario is loaded
before anything is written, so a dump that does not load is an error and writes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dataplane.cli import DebugOpt, err_console, input_errors, register, warn

if TYPE_CHECKING:  # pragma: no cover
    from topology.model import Cluster


def import_dump(
    dump: Annotated[
        Path,
        typer.Argument(
            help="The output of `kubectl get nodes,ns,pods,svc,netpol -A -o yaml` "
            "(YAML or JSON).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The scenario file to write."),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite existing files.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Objects of kinds that are not modelled are errors."
        ),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Turn a dump of a live cluster into a scenario whose addresses are the cluster's."""
    from topology.dump import import_dump as build
    from topology.errors import TopologyError
    from topology.include import FileReader
    from topology.loader import load_scenario_text
    from topology.model import Loc

    with input_errors(debug):
        loc = Loc(str(dump))
        if dump.is_dir():
            raise TopologyError("a dump is one file, not a folder", loc)
        reader = FileReader(None)
        (source,) = reader.expand(str(dump), ".", "", loc, confined=False)
        text = reader.read(source, loc)
        copy = output.parent / "manifests" / dump.name
        for path in (output, copy):
            if path.exists() and not force:
                raise TopologyError(f"{path} exists (--force overwrites it)")
        name = re.sub(r"[^a-z0-9-]+", "-", output.stem.lower()).strip("-") or "imported"
        include = f"manifests/{dump.name}"
        imported = build(text, str(dump), include, name)
        # Load the scenario with the dump where it is now (so errors name it): a dump that
        # does not load writes nothing.
        alone = build(text, str(dump), None, name)
        scenario, warnings = load_scenario_text(
            alone.text, str(output), output.parent, manifests=[str(dump)], strict=strict
        )
        scenario_text = imported.text + baseline(scenario.cluster, imported.port)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text, encoding="utf-8")
        output.write_text(scenario_text, encoding="utf-8")
        warn(warnings)
        for note in imported.notes:
            err_console.print(f"note: {note}", markup=False, highlight=False)
    err_console.print(
        f"wrote {output} and {copy}; run it with `dataplane run {output}`",
        markup=False,
        highlight=False,
    )


def baseline(cluster: Cluster, port: int) -> str:
    """The matrix step's `expect`: the pairs the simulator does not deliver (or those it
    does, whichever list is shorter), so that the scenario runs green and stays a test."""
    from dataplane.matrix import compute_matrix, endpoints
    from dataplane.sim import Simulator
    from topology.model import Protocol

    sim = Simulator(cluster)
    pods = endpoints(sim, None)
    m = compute_matrix(sim, pods, pods, port, Protocol.TCP)
    delivered = {
        f"{s} -> {t}": m.rows[i][j] == "."
        for i, s in enumerate(pods)
        for j, t in enumerate(pods)
    }
    denied = [pair for pair, ok in delivered.items() if not ok]
    allowed = [pair for pair, ok in delivered.items() if ok]
    key, pairs = (
        ("denied", denied) if len(denied) <= len(allowed) else ("allowed", allowed)
    )
    other = "delivered" if key == "denied" else "not delivered"
    lines = [
        f"      # the verdicts of the simulator when imported: every other pair is {other}",
        "      expect:",
        f"        {key}:" + ("" if pairs else " []"),
        *(f'          - "{pair}"' for pair in pairs),
    ]
    return "\n".join(lines) + "\n"


register(import_dump, "import")
