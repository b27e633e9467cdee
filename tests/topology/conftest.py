"""Helpers for the topology tests: load scenario text, catch its error, build small clusters."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from topology.errors import TopologyError
from topology.loader import load_scenario_text
from topology.scenario import Scenario

# The reference lab (DESIGN.md): pods a and b on node-1, c on node-2, plus kube-dns.
REFERENCE = """\
name: reference
manifests:
  - apiVersion: v1
    kind: Pod
    metadata: {name: a, labels: {app: a}}
    spec:
      nodeName: node-1
      containers: [{name: web, ports: [{containerPort: 80, name: http}]}]
  - apiVersion: v1
    kind: Pod
    metadata: {name: b, labels: {app: b}}
    spec:
      nodeName: node-1
      containers: [{name: web, ports: [{containerPort: 80}]}]
  - apiVersion: v1
    kind: Pod
    metadata: {name: c, labels: {app: c}}
    spec:
      nodeName: node-2
      containers: [{name: web, ports: [{containerPort: 80}]}, {name: side}]
steps:
  - probe: {from: default/a, to: default/c, port: 80}
"""

LoadFn = Callable[[str], tuple[Scenario, list[str]]]
ErrorFn = Callable[[str], TopologyError]


def scenario_text(body: str, steps: str = "") -> str:
    """A scenario named t with `body` (dedented) and one probe step unless `steps` given."""
    text = "name: t\n" + textwrap.dedent(body).strip("\n") + "\n"
    return text + (steps or "steps:\n  - probe: {from: default/a, to: default/b}\n")


@pytest.fixture
def load(tmp_path: Path) -> LoadFn:
    """Load scenario text as `lab.yaml` in a temporary directory."""

    def run(text: str) -> tuple[Scenario, list[str]]:
        return load_scenario_text(text, "lab.yaml", tmp_path)

    return run


@pytest.fixture
def load_error(load: LoadFn) -> ErrorFn:
    """The TopologyError that loading `text` raises."""

    def run(text: str) -> TopologyError:
        with pytest.raises(TopologyError) as info:
            load(text)
        return info.value

    return run
