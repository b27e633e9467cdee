"""The regression runner's core: find scenario files and run each, keeping every step.

`dataplane test`, the JUnit writer and the pytest plugin share it.  A scenario file is a
`.yaml`/`.yml` file with a top-level `steps:` key; other YAML files under the same folders
(manifests referenced with `{file: ...}`, CI configuration) are not scenarios and are left
alone.  A file named explicitly is always run.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dataplane.result import ScenarioResult, StepResult
from dataplane.scenario import Runner
from topology.errors import SimError
from topology.scenario import Scenario

SUFFIXES = (".yaml", ".yml")

# What a run imports on demand beyond this module's imports: the loader and its schemas,
# the modules of matrix, replay and send steps, of IP-in-IP and of the hooks a node
# installs, and the scapy layers a walk reaches for DNS messages and crafted packets
# (`dataplane.dns`, `dataplane.craft`).  `dataplane test -j N` imports them (`preload`)
# before it forks its workers, which then share them instead of each importing them
# again (tests/io/test_runner.py checks that the shipped scenarios need nothing more).
PRELOAD = (
    "topology.loader",
    "dataplane.matrix",
    "dataplane.netpol_matrix",
    "dataplane.replay",
    "dataplane.craft",
    "dataplane.system_hooks",
    "dataplane.ipip",
    "scapy.layers.l2",
    "scapy.layers.inet",
    "scapy.layers.sctp",
    "scapy.layers.dns",
)
_STEPS_KEY = re.compile(rb"^steps[ \t]*:", re.MULTILINE)


def is_scenario_file(path: Path) -> bool:
    """Whether `path` looks like a scenario file (YAML with a top-level `steps:` key)."""
    if path.suffix not in SUFFIXES or not path.is_file():
        return False
    try:
        return _STEPS_KEY.search(path.read_bytes()) is not None
    except OSError:
        return False


def discover(paths: Iterable[Path]) -> list[Path]:
    """Every scenario file under `paths`, each folder's files sorted by path; a path that
    does not exist raises FileNotFoundError."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(
                f
                for f in p.rglob("*")
                if f.suffix in SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and is_scenario_file(f)
            )
        elif p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(2, "No such file or directory", str(p))
    return list(dict.fromkeys(found))


def preload() -> None:
    """Import `PRELOAD`: what a run would import on demand."""
    from dataplane.packet import scapy_ready

    scapy_ready()
    for name in PRELOAD:
        importlib.import_module(name)


@dataclass(slots=True)
class FileRun:
    """One scenario file's run: its steps as they finished, or the error that stopped it."""

    path: Path
    scenario: Scenario | None = None
    steps: list[StepResult] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)  # seconds, per step
    error: str | None = None  # the file could not be loaded, or a step could not run
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.steps if s.ok is False)

    @property
    def passed(self) -> int:
        return sum(1 for s in self.steps if s.ok is True)

    @property
    def unchecked(self) -> int:
        return sum(1 for s in self.steps if s.ok is None)

    @property
    def time(self) -> float:
        return sum(self.durations)

    @property
    def name(self) -> str:
        return self.scenario.name if self.scenario is not None else str(self.path)

    def result(self) -> ScenarioResult | None:
        """The steps that ran, as the scenario runner reports them."""
        if self.scenario is None:
            return None
        return ScenarioResult(self.scenario, list(self.steps), list(self.warnings))


def load_file(
    path: Path, *, manifests: Sequence[Path] = (), strict: bool = False
) -> tuple[Scenario, list[str]]:
    """`topology.loader.load_scenario` (a file that is not UTF-8 text is its located
    TopologyError, `topology.yamlsource.decode_yaml`); a folder is a folder of manifests
    (`load_manifests`)."""
    from topology.loader import load_scenario

    if path.is_dir():
        return load_manifests(path, manifests=manifests, strict=strict)
    return load_scenario(path, manifests=manifests, strict=strict)


def load_manifests(
    folder: Path, *, manifests: Sequence[Path] = (), strict: bool = False
) -> tuple[Scenario, list[str]]:
    """A folder of Kubernetes objects (no scenario file: `kubectl apply -f DIR`'s input, or
    a dump split into files) as a scenario without steps of its own: the objects read as
    `--manifests DIR` reads them (`topology.include`), the cluster keys they imply (nodes,
    nodeCIDR, serviceCIDR, dns) inferred as `dataplane import` infers them
    (`topology.dump`; without Node objects, the default nodes, as in a scenario without
    `cluster.nodes`)."""
    from topology.dump import objects_in, scenario_for
    from topology.errors import TopologyError
    from topology.include import FileReader
    from topology.loader import load_scenario_text
    from topology.model import Loc

    loc = Loc(str(folder))
    reader = FileReader(None)
    sources = reader.expand(str(folder), ".", "", loc, confined=False)
    if not sources:
        raise TopologyError(
            f"{folder}: no scenario file and no manifest in this folder (a scenario is a "
            ".yaml or .yml file with a top-level steps: key; manifests are *.yaml, "
            "*.yml, *.json)"
        )
    objects = [m for s in sources for m in objects_in(reader.read(s, loc), s.shown)]
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-")
    imported = scenario_for(objects, str(folder), None, name or "manifests")
    return load_scenario_text(
        imported.text, str(folder), folder, manifests=[folder, *manifests],
        strict=strict,
    )  # fmt: skip


def run_file(
    path: Path, on_step: Callable[[StepResult], None] | None = None
) -> FileRun:
    """Load and run one scenario file; input errors are kept, not raised."""
    run = FileRun(path)
    try:
        scenario, warnings = load_file(path)
    except (SimError, OSError) as err:
        run.error = f"{path}: {err.strerror}" if isinstance(err, OSError) else str(err)
        return run
    run.scenario, run.warnings = scenario, list(warnings)
    runner = Runner(scenario)
    for i, step in enumerate(scenario.steps, 1):
        start = time.perf_counter()
        try:
            res = runner.run_step(i, step)
        except SimError as err:
            run.error = str(err)
            return run
        run.durations.append(time.perf_counter() - start)
        run.steps.append(res)
        if on_step is not None:
            on_step(res)
    return run


__all__ = [
    "FileRun",
    "discover",
    "is_scenario_file",
    "load_file",
    "preload",
    "run_file",
]
