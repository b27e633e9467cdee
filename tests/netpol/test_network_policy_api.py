"""The network-policy-api conformance suite (scenarios/network-policy-api), transcribed from
kubernetes-sigs/network-policy-api's own conformance tests: every upstream probe is one
test here, checked against upstream's expectation.  A probe the simulator gets wrong is
`xfail(strict=True)` with the defect as its reason (`known` below), so fixing the defect
makes the test fail until its entry is removed; each defect has a minimal reproduction here; scenarios/network-policy-api/README.md maps each
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
from topology.loader import load_scenario, load_scenario_text
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


def param(stem: str, *values: object, number: str | None = None) -> object:
    return pytest.param(*values, id=stem if number is None else f"{stem}:{number}")


def cases() -> list[object]:
    out: list[object] = []
    for path in FILES:
        for name in probe_names(path):
            number = name.split(" ", 1)[0]
            out.append(param(path.stem, path, name, number=number))
    return out


def test_every_upstream_test_and_probe_is_transcribed() -> None:
    for fam, (tests, probes) in UPSTREAM.items():
        paths = [p for p in FILES if family(p) == fam]
        assert len(paths) == tests, fam
        assert sum(len(probe_names(p)) for p in paths) == probes, fam
    assert len(FILES) == 48 and sum(len(probe_names(p)) for p in FILES) == 590


@pytest.mark.parametrize("path", [param(p.stem, p) for p in FILES])
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


# Minimal reproductions of the defects, each reduced from the upstream cases it breaks.
NODE_PEER = """
name: an egress Deny of node peers
cluster: {dns: false}
manifests:
  - {kind: Pod, metadata: {name: a}, spec: {nodeName: node-1, containers: [{name: c}]}}
  - kind: Pod
    metadata: {name: h1}
    spec:
      nodeName: node-1
      hostNetwork: true
      containers: [{name: c, ports: [{containerPort: 34345}]}]
  - kind: Pod
    metadata: {name: h2}
    spec:
      nodeName: node-2
      hostNetwork: true
      containers: [{name: c, ports: [{containerPort: 34345}]}]
  - apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: deny-nodes}
    spec:
      tier: Admin
      priority: 1
      subject: {namespaces: {}}
      egress: [{action: Deny, to: [{nodes: {matchLabels: {kubernetes.io/os: linux}}}]}]
steps:
  - probe: {from: default/a, to: default/TARGET, port: 34345, expect: denied}
"""
IPV6_NETWORK = """
name: an IPv6 CIDR among the networks
cluster: {dns: false}
manifests:
  - {kind: Pod, metadata: {name: a}, spec: {containers: [{name: c}]}}
  - {kind: Pod, metadata: {name: b}, spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}}
  - apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: deny-internet}
    spec:
      tier: Admin
      priority: 1
      subject: {namespaces: {}}
      egress: [{action: Deny, to: [{networks: [0.0.0.0/0, "::/0"]}]}]
steps:
  - probe: {from: default/a, to: default/b, port: 80, expect: denied}
"""


def outcome(text: str) -> list[str]:
    scenario, _ = load_scenario_text(text)
    return [s.message for s in Runner(scenario).run().steps if not s.ok]


def test_node_peer_deny_drops_traffic_to_another_node() -> None:
    assert outcome(NODE_PEER.replace("TARGET", "h2")) == []


def test_a_node_peer_deny_drops_traffic_to_the_clients_own_node() -> None:
    # once a defect ("own-node"): NetworkPolicy's own-node exception was applied before
    # the tiers; upstream's *EgressNodePeers expect the drop wherever the pods land
    assert outcome(NODE_PEER.replace("TARGET", "h1")) == []


def test_an_ipv6_cidr_loads_and_matches_no_ipv4_address() -> None:
    # once a defect ("ipv6-cidr"): the API's `CIDR` is IPv4 or IPv6 and upstream writes
    # '::/0' beside '0.0.0.0/0'; it loads and matches nothing in the IPv4-only cluster
    assert outcome(IPV6_NETWORK) == []
    alone = IPV6_NETWORK.replace('[0.0.0.0/0, "::/0"]', '["::/0"]')
    assert outcome(alone.replace("expect: denied", "expect: delivered")) == []
