"""`dataplane init`: the starter scenario loads and runs green in every network mode, its
comments show the true defaults, and it never overwrites a file unasked."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from dataplane.commands.init import CNI_NETWORKS, starter_scenario
from dataplane.scenario import run_scenario
from tests.test_cli import dataplane
from topology.loader import load_scenario, load_scenario_text
from topology.scenario import Scenario
from topology.schema import ClusterModel

NETWORKS = CNI_NETWORKS["flannel"]
KEYS = [info.alias or name for name, info in ClusterModel.model_fields.items()]


def test_flannel_offers_every_network_mode_of_the_schema() -> None:
    assert NETWORKS == ("vxlan", "host-gw", "routed")


@pytest.mark.parametrize("network", NETWORKS)
def test_the_starter_loads_and_passes(network: str, tmp_path: Path) -> None:
    out = tmp_path / "starter.yaml"
    r = dataplane("init", "--network", network, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"wrote {out}"
    scenario, warnings = load_scenario(out)
    assert warnings == []
    assert scenario.cluster.config.network.value == network
    result = run_scenario(scenario)
    assert result.ok
    assert result.counts() == {"steps": 6, "passed": 5, "failed": 0, "unchecked": 1}
    r = dataplane("run", "--quiet", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 passed, 0 failed" in r.stdout


def test_stdout_is_the_same_text() -> None:
    r = dataplane("init", "--network", "host-gw")
    assert r.returncode == 0, r.stderr
    assert r.stdout == starter_scenario("host-gw")


def test_every_cluster_key_is_explained_with_its_default() -> None:
    lines = starter_scenario("vxlan").split("\n")
    for name, info in ClusterModel.model_fields.items():
        key = info.alias or name
        at = next(
            i for i, line in enumerate(lines) if re.match(rf"  (# )?{key}:", line)
        )
        # the key's description from the schema, wrapped, right above the key
        assert any(
            " ".join(x.removeprefix("  # ") for x in lines[at - k : at])
            == info.description
            for k in range(1, 6)
        ), key
    assert "  network: vxlan" in lines
    assert "  # vxlanPort: 8472" in lines
    assert "  # gateway: 10.100.0.1" in lines


def test_uncommenting_the_defaults_changes_nothing() -> None:
    text = starter_scenario("vxlan")
    key_line = re.compile(rf"^  # ((?:{'|'.join(KEYS)}):.*|  - .*)$")
    uncommented = "\n".join(
        f"  {m.group(1)}" if (m := key_line.match(line)) else line
        for line in text.splitlines()
    )
    assert uncommented.count("\n  mtu: 1500\n") == 1
    assert "\n  nodes:\n    - {name: node-1, ip: 10.100.0.2" in uncommented
    default, _ = load_scenario_text(text, "a.yaml")
    explicit, _ = load_scenario_text(uncommented, "b.yaml")

    def nodes(s: Scenario) -> list[tuple[object, ...]]:
        return [(n.name, n.ip, n.pod_cidr, n.labels) for n in s.cluster.nodes]

    assert nodes(explicit) == nodes(default)
    assert len(nodes(default)) == 2
    assert replace(explicit.cluster.config, nodes=(), externals=()) == replace(
        default.cluster.config, nodes=(), externals=()
    )


def test_it_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "mine.yaml"
    out.write_text("name: mine\n")
    r = dataplane("init", "-o", str(out))
    assert r.returncode == 2
    assert r.stderr == f"error: {out}: the file exists (use --force to overwrite it)\n"
    assert out.read_text() == "name: mine\n"
    r = dataplane("init", "-o", str(out), "--force")
    assert r.returncode == 0, r.stderr
    assert out.read_text() == starter_scenario("vxlan", str(out))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--cni", "cilium", "--network", "ipip"],
            "--network 'ipip' is not a cilium mode (allowed: vxlan, geneve, native)",
        ),
        (
            ["--cni", "weave"],
            "--cni 'weave' is not supported (allowed: flannel, calico, cilium)",
        ),
        (
            ["--cni", "calico", "--network", "host-gw"],
            "--network 'host-gw' is not a calico mode (allowed: ipip, vxlan, bgp)",
        ),
        (
            ["--network", "ipip"],
            "--network 'ipip' is not a flannel mode (allowed: vxlan, host-gw, routed)",
        ),
    ],
    ids=["planned-network", "unknown-cni", "calico-network", "unknown-network"],
)
def test_bad_profiles_are_input_errors(args: list[str], message: str) -> None:
    r = dataplane("init", *args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == f"error: {message}\n"
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("cni", "network"),
    [
        ("calico", "ipip"),
        ("calico", "vxlan"),
        ("calico", "bgp"),
        ("cilium", "vxlan"),
        ("cilium", "native"),
    ],
)
def test_the_calico_and_cilium_starters_load_pass_and_uncomment(
    cni: str, network: str
) -> None:
    text = starter_scenario(network, cni=cni)
    scenario, warnings = load_scenario_text(text, "a.yaml")
    assert warnings == []
    cfg = scenario.cluster.config
    assert (cfg.cni.value, cfg.network.value) == (cni, network)
    assert run_scenario(scenario).ok
    key_line = re.compile(rf"^  # ((?:{'|'.join(KEYS)}):.*|  - .*)$")
    uncommented = "\n".join(
        f"  {m.group(1)}" if (m := key_line.match(line)) else line
        for line in text.splitlines()
    )
    assert f"\n  bridge:  # not used by cni: {cni}\n" in uncommented
    explicit, _ = load_scenario_text(uncommented, "b.yaml")
    again = explicit.cluster.config
    assert replace(again, nodes=()) == replace(cfg, nodes=())
    assert [(n.name, n.ip, n.pod_cidr) for n in again.nodes] == [
        (n.name, n.ip, n.pod_cidr) for n in cfg.nodes
    ]
