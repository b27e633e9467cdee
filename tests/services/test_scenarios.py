"""The Service and DNS scenarios and the flow catalogue: every expectation holds, and every
Service flow's trace shows its rewrites and their reversal."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pytest

from dataplane.result import StepResult
from dataplane.scenario import Runner
from topology.loader import load_scenario

ROOT = Path(__file__).resolve().parents[2] / "scenarios"
LESSONS = sorted(
    [
        *ROOT.glob("services-*.yaml"),
        *ROOT.glob("dns-*.yaml"),
        ROOT / "egress-dns-lesson.yaml",
    ]
)
FLOWS = sorted((ROOT / "flows").glob("*.yaml"))


def catalogue() -> set[str]:
    """{pod, node, external host} x {pod IP, ClusterIP, NodePort} x {same node, other
    node} x {pod, hostNetwork pod}, where the distinction exists."""
    names = set()
    for src, dst, where, kind in product(
        ("pod", "node", "external"),
        ("pod-ip", "clusterip", "nodeport"),
        ("same-node", "other-node"),
        ("pod", "hostnetwork"),
    ):
        if src == "external" and dst == "clusterip":
            names.add("external-to-clusterip")  # nothing outside routes a ClusterIP
        elif src == "external" and dst == "pod-ip":
            names.add(f"external-to-pod-ip-{kind}")  # it enters the backend's node
        else:
            names.add(f"{src}-to-{dst}-{where}-{kind}")
    return names


def test_the_flow_catalogue_is_complete() -> None:
    assert {p.stem for p in FLOWS} == catalogue()


def test_the_lessons_are_there() -> None:
    assert [p.name for p in LESSONS] == [
        "dns-names.yaml",
        "egress-dns-lesson.yaml",
        "services-clusterip.yaml",
        "services-hairpin.yaml",
        "services-no-endpoints.yaml",
        "services-nodeport.yaml",
    ]


def run(path: Path) -> list[StepResult]:
    scenario, warnings = load_scenario(path)
    assert warnings == []
    assert scenario.description.count("\n") >= 2  # a paragraph that explains it
    return Runner(scenario).run().steps


@pytest.mark.parametrize(
    "path", [*LESSONS, *FLOWS], ids=lambda p: str(p.relative_to(ROOT))
)
def test_scenario_expectations_hold(path: Path) -> None:
    steps = run(path)
    failures = [f"step {s.index}: {s.title}: {s.message}" for s in steps if s.failed]
    assert not failures, "\n".join(failures)
    assert any(s.kind == "probe" and s.ok for s in steps)


SERVICE_FLOWS = [
    pytest.param(p, id=p.stem)
    for p in FLOWS
    if "pod-ip" not in p.stem and p.stem != "external-to-clusterip"
]


@pytest.mark.parametrize("path", SERVICE_FLOWS)
def test_a_service_flow_shows_the_dnat_and_its_reversal(path: Path) -> None:
    trace = run(path)[0].trace
    assert trace is not None
    nat = [h for h in trace.hops if h.event == "nat"]
    assert nat[0].direction == "request" and "kube-proxy" in nat[0].detail
    assert any(d.field == "dport" for d in nat[0].diffs)
    back = nat[-1]
    assert (
        back.direction == "reply" and back.detail == "un-DNAT of the reply (conntrack)"
    )
    client = trace.hops[-1].packet
    assert client is not None and client.sport in (80, 30080)
