"""Every shipped scenario runs, and every expectation in it holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.scenario import Runner
from dataplane.suite import discover
from topology.loader import load_scenario

ROOT = Path(__file__).resolve().parent.parent
# The files `dataplane test scenarios/` runs (manifest includes have no `steps:`).
SCENARIOS = discover([ROOT / "scenarios"])


def test_scenarios_are_shipped() -> None:
    assert len(SCENARIOS) >= 7


@pytest.mark.parametrize(
    "path", SCENARIOS, ids=lambda p: str(p.relative_to(ROOT / "scenarios"))
)
def test_scenario_expectations_hold(path: Path) -> None:
    scenario, _warnings = load_scenario(path)
    result = Runner(scenario).run()
    failures = [
        f"step {s.index} ({s.loc}): {s.title}: {s.message}"
        for s in result.steps
        if s.failed
    ]
    assert not failures, "\n".join(failures)
    assert any(s.ok is not None for s in result.steps), (
        "a shipped scenario must check something"
    )
