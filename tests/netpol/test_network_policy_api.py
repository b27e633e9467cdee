"""The network-policy-api conformance suite (scenarios/network-policy-api), transcribed from
kubernetes-sigs/network-policy-api's own conformance tests: every upstream probe is one
test here, checked against upstream's expectation.  A probe the simulator gets wrong is
`xfail(strict=True)` with the defect as its reason (KNOWN below), so fixing the defect makes
the test fail until its entry is removed; scenarios/network-policy-api/README.md maps each
upstream test to its file."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import yaml

from dataplane.result import StepResult
from dataplane.scenario import Runner
from dataplane.suite import discover
from topology.errors import SimError
from topology.loader import load_scenario
from topology.scenario import ProbeStep

SUITE = Path(__file__).resolve().parents[2] / "scenarios" / "network-policy-api"
FILES = discover([SUITE])
# The commits transcribed: main as stored (ClusterNetworkPolicy v1alpha2, tiers Admin and
# Baseline) and tag v0.1.8 (AdminNetworkPolicy and BaselineAdminNetworkPolicy v1alpha1).
COMMITS = {
    "cnp": "0eec1b0e5fa92715b4c0f4c48d3c8d2913ed2159",
    "anp": "5a62954284765fb16f2e601f11907ca0b839b89f",
    "banp": "5a62954284765fb16f2e601f11907ca0b839b89f",
}
# Upstream's figures: 24 ConformanceTests with 301 PokeServer calls at main, 23 with 289
# at v0.1.8.
UPSTREAM = {"cnp": (24, 301), "anp": (13, 176), "banp": (11, 113)}

# (file stem, step number as the step's name starts) -> the defect that makes the simulator
# disagree with upstream.  Every entry is a strict xfail.
KNOWN: dict[tuple[str, str], str] = {}


def family(path: Path) -> str:
    return path.stem.split("-", 1)[0]


@functools.cache
def probe_names(path: Path) -> tuple[str, ...]:
    """The names of the file's probe steps, read as plain YAML, so that collecting the
    tests does not depend on the simulator loading the file."""
    doc = yaml.safe_load(path.read_text())
    return tuple(step["name"] for step in doc["steps"] if "probe" in step)


@functools.cache
def results(path: Path) -> dict[str, StepResult] | str:
    """Every step of the scenario, run once in order, by its name; or why it would not
    load or run."""
    try:
        scenario, _ = load_scenario(path)
        return {s.name or "": s for s in Runner(scenario).run().steps}
    except SimError as err:
        return f"{type(err).__name__}: {err}"


def cases() -> list[object]:
    out: list[object] = []
    for path in FILES:
        for name in probe_names(path):
            key = (path.stem, name.split(" ", 1)[0])
            marks = (
                [pytest.mark.xfail(strict=True, reason=KNOWN[key])]
                if key in KNOWN
                else []
            )
            out.append(
                pytest.param(path, name, id=f"{path.stem}:{key[1]}", marks=marks)
            )
    return out


def test_every_upstream_test_and_probe_is_transcribed() -> None:
    for fam, (tests, probes) in UPSTREAM.items():
        paths = [p for p in FILES if family(p) == fam]
        assert len(paths) == tests, fam
        assert sum(len(probe_names(p)) for p in paths) == probes, fam
    assert len(FILES) == 48 and sum(len(probe_names(p)) for p in FILES) == 590


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_provenance_and_clean_load(path: Path) -> None:
    text = path.read_text()
    commit = re.search(r"^#   commit: +([0-9a-f]{40}) ", text, re.MULTILINE)
    assert commit and commit.group(1) == COMMITS[family(path)]
    assert re.search(r"^#   test: +conformance/tests/[\w-]+\.go, ", text, re.MULTILINE)
    names = re.findall(r"^  # upstream subtest \d+: t\.Run\(", text, re.MULTILINE)
    assert names, "every scenario names its upstream subtests"
    scenario, warnings = load_scenario(path)
    assert warnings == []
    probes = [s for s in scenario.steps if isinstance(s, ProbeStep)]
    assert [s.name for s in probes] == list(probe_names(path))
    assert all(s.expect is not None for s in probes)


@pytest.mark.parametrize(("path", "name"), cases())
def test_probe_agrees_with_upstream(path: Path, name: str) -> None:
    run = results(path)
    assert not isinstance(run, str), run
    step = run[name]
    assert step.kind == "probe"
    assert step.ok, f"{path.name}: {name}: {step.message}"
