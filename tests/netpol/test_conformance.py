"""The conformance suite (scenarios/conformance, expectations written from the Kubernetes
documentation) and the NetworkPolicy lab: every expectation holds through `Runner`, and
every matrix the suite computes equals walking its 81 pairs one by one."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.matrix import compute_matrix, endpoints, walk_matrix
from dataplane.result import StepResult
from dataplane.scenario import Runner
from topology.loader import load_scenario
from topology.scenario import MatrixStep

ROOT = Path(__file__).resolve().parents[2] / "scenarios"
CONFORMANCE = sorted((ROOT / "conformance").glob("*.yaml"))
LAB = ROOT / "networkpolicy-lab.yaml"


def test_the_suite_is_there() -> None:
    assert len(CONFORMANCE) >= 6


@pytest.mark.parametrize("path", [*CONFORMANCE, LAB], ids=lambda p: p.name)
def test_expectations_hold(path: Path) -> None:
    scenario, warnings = load_scenario(path)
    assert warnings == []
    result = Runner(scenario).run()
    failures = [
        f"step {s.index} ({s.loc}): {s.title}: {s.message}"
        for s in result.steps
        if s.failed
    ]
    assert not failures, "\n".join(failures)
    matrices = [s for s in result.steps if s.kind == "matrix"]
    assert matrices and all(s.ok for s in matrices)


@pytest.mark.parametrize("path", CONFORMANCE, ids=lambda p: p.name)
def test_every_matrix_equals_the_walk(path: Path) -> None:
    scenario, _ = load_scenario(path)
    runner = Runner(scenario)
    checked = 0
    for i, step in enumerate(scenario.steps, 1):
        if isinstance(step, MatrixStep):
            sim = runner.sim
            names = endpoints(sim, None)
            assert len(names) in (8, 9)
            fast = compute_matrix(sim, names, names, step.port, step.protocol)
            walked = walk_matrix(sim, names, names, step.port, step.protocol)
            assert fast.rows == walked.rows, (
                f"step {i}: {step.name}\n{fast.grid()}\n{walked.grid()}"
            )
            checked += 1
        else:
            runner.run_step(i, step)
    assert checked


def test_the_lab_shows_each_verdict_with_its_policy() -> None:
    scenario, _ = load_scenario(LAB)
    result = Runner(scenario).run()
    by_title: dict[str, StepResult] = {}
    for s in result.steps:
        by_title.setdefault(s.title, s)  # the first of each, before the label step
    pod1 = by_title["probe default/pod1 -> svc/default/httpd:80 TCP"]
    assert pod1.trace is not None and pod1.trace.policy == "default/test-np"
    assert pod1.actual == "denied-ingress"
    frontend = by_title["probe default/frontend -> svc/default/httpd:80 TCP"]
    assert frontend.trace is not None
    assert (
        "allowed by default/test-np ingress rule 0 peer 1 (podSelector role=frontend)"
        in "\n".join(h.detail for h in frontend.trace.hops)
    )
    dev = by_title["probe dev/devpod -> default/httpd-deployment-0:80 TCP"]
    assert dev.trace is not None
    assert "ingress rule 0 peer 0 (namespaceSelector project=dev)" in "\n".join(
        h.detail for h in dev.trace.hops
    )
    vault = by_title["probe default/httpd-deployment-0 -> external/vault:5978 TCP"]
    assert vault.trace is not None
    assert (
        "allowed by default/test-np egress rule 0 peer 0 (ipBlock 10.0.0.0/24), ports TCP 5978"
        in "\n".join(h.detail for h in vault.trace.hops)
    )
