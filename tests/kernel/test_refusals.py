"""What the kernel cannot take: names past its limits, and a refused build step."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataplane import commands
from dataplane.cli import app
from dataplane.kernel import netns, owner
from dataplane.kernel.build import NAME_MAX, KernelBuildError, KernelCluster, fit
from dataplane.routing import Route
from dataplane.sim import Simulator
from tests.dataplane.builders import tiny_cluster

commands.load()
NS = "n" * 63  # the longest namespace name, and the longest pod name (DNS-1123, 253)
POD = ".".join(["p" * 63] * 3) + "." + "q" * 61
NODE = "node-" + "x" * 58 + "." + "y" * 63  # too long for a `u-<node>` port name too


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def long_names(tmp_path: Path) -> Path:
    path = tmp_path / "long.yaml"
    web = "containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]"
    path.write_text(
        f"""name: long names
cluster:
  nodes: [{{name: {NODE}}}, {{name: node-2}}]
manifests:
  - {{kind: Namespace, apiVersion: v1, metadata: {{name: {NS}}}}}
  - kind: Pod
    metadata: {{name: {POD}, namespace: {NS}}}
    spec: {{nodeName: {NODE}, {web}}}
  - kind: Pod
    metadata: {{name: b}}
    spec: {{nodeName: node-2, {web}}}
steps:
  - probe: {{from: default/b, to: {NS}/{POD}, port: 80, expect: delivered}}
  - probe: {{from: {NS}/{POD}, to: default/b, port: 80, expect: delivered}}
"""
    )
    return path


def test_a_long_name_is_cut_to_its_start_and_a_hash() -> None:
    name = f"pod-{NS}.{POD}"
    cut = fit(name, 200)
    assert len(cut.encode()) == 200
    assert cut == fit(name, 200)  # deterministic
    assert cut.startswith(f"pod-{NS}.ppp") and re.search(r"~[0-9a-f]{8}$", cut)
    assert fit(f"pod-{NS}.{POD[:-1]}r", 200) != cut  # the hash covers all of it
    assert fit("pod-default.a", 200) == "pod-default.a"


@pytest.mark.kernel
def test_names_past_the_kernel_limits_are_shortened_and_shown_with_the_model(
    tmp_path: Path,
) -> None:
    code, out, err = invoke("verify", "--keep", str(long_names(tmp_path)))
    assert code == 0, err
    assert "2 probes: 2 agree, 0 mismatch" in out
    run_id = out.split("ip netns exec ", 1)[1].split("-", 1)[0]
    try:
        kept = netns.listing(f"{run_id}-")
        assert len(kept) == 7 and all(len(n.encode()) <= NAME_MAX for n in kept)
        [cut] = [n for n in kept if n.startswith(f"{run_id}-pod-{NS}.")]
        assert re.fullmatch(rf"{run_id}-pod-{NS}\.p+\.p+\.p+~[0-9a-f]{{8}}", cut)
        flat = out.replace("\n", "")
        assert f"ip netns exec {cut} bash    (pod:{NS}/{POD}, name shortened)" in flat
        assert f"{run_id}-{NODE}" in kept  # 255 bytes are enough for it
        links = netns.run(f"{run_id}-underlay", ["ip", "-o", "link"])
        assert "u0@" in links and "u-node-2@" in links  # `u-<node>` past IFNAMSIZ
    finally:
        [run] = [r for r in owner.run_sets() if r.run_id == run_id]
        assert owner.remove(run)


@pytest.mark.kernel
def test_a_refused_step_names_the_namespace_and_leaves_nothing() -> None:
    sim = Simulator(tiny_cluster())
    node = sim.fabric.netns["node-1"]
    # a gateway that is not on any link of node-1: the kernel refuses the route
    node.routes.add(
        Route(IPv4Network("192.0.2.0/24"), "eth0", via=IPv4Address("203.0.113.1"))
    )
    with pytest.raises(KernelBuildError) as refused:
        KernelCluster.build(sim.fabric)
    err = refused.value
    run_id = err.kernel_ns.rsplit("-node-1", 1)[0]
    assert str(err) == (
        f"namespace {run_id}-node-1: adding route 192.0.2.0/24 via 203.0.113.1 dev "
        "eth0: Network is unreachable (ENETUNREACH)"
    )
    assert netns.listing(f"{run_id}-") == []
    assert not owner.record_path(run_id).exists()


@pytest.mark.kernel
def test_the_cli_says_what_the_kernel_refused_in_one_line(tmp_path: Path) -> None:
    # two external hosts with one address: two /32 routes on the gateway (unless the
    # loader refuses the file first, which is an input error: also exit 2, one line)
    path = tmp_path / "dup.yaml"
    path.write_text(
        """name: dup
cluster:
  externals:
    - {name: one, ip: 192.0.2.10, ports: [{port: 80}]}
    - {name: two, ip: 192.0.2.10, ports: [{port: 80}]}
steps: []
"""
    )
    code, out, err = invoke("verify", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    if "kernel refused" in err:
        assert re.fullmatch(
            r"error: the kernel refused: namespace (dpv[0-9a-f]+)-gateway: adding "
            r"route 192\.0\.2\.10/32 dev ext1: File exists \(EEXIST\)\n",
            err,
        )
