"""`dataplane import`: a scenario from a dump of a live cluster, that runs green."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "kind-dump.yaml"


def dataplane(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataplane.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_import_writes_a_scenario_that_runs_green(tmp_path: Path) -> None:
    r = dataplane("import", str(FIXTURE), "-o", "lab/kind.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    scenario = yaml.safe_load((tmp_path / "lab" / "kind.yaml").read_text())
    assert scenario["cluster"] == {
        "network": "vxlan",
        "nodeCIDR": "172.18.0.0/24",
        "serviceCIDR": "10.96.0.0/12",
        "dns": True,
        "clusterDomain": "cluster.local",
    }
    assert scenario["manifests"] == [{"file": "manifests/kind-dump.yaml"}]
    copy = tmp_path / "lab" / "manifests" / "kind-dump.yaml"
    assert copy.read_text() == FIXTURE.read_text()
    (step,) = scenario["steps"]
    assert step["matrix"]["port"] == 8080  # the first TCP port outside kube-*
    allowed = step["matrix"]["expect"]["allowed"]
    # every pod but the hostNetwork ones reaches the two web pods on 8080, nothing else
    assert len(allowed) == 12
    assert all(pair.split(" -> ")[1].startswith("shop/web-") for pair in allowed)
    run = dataplane("run", "-q", "lab/kind.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 0 failed" in run.stdout


def test_import_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "kind.yaml").write_text("keep me\n")
    r = dataplane("import", str(FIXTURE), "-o", "kind.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: kind.yaml exists (--force overwrites it)"
    assert (tmp_path / "kind.yaml").read_text() == "keep me\n"


def test_a_dump_that_does_not_load_writes_nothing(tmp_path: Path) -> None:
    dump = tmp_path / "dump.yaml"
    dump.write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {kind: Pod, metadata: {name: a}, spec: {containers: [{name: c}]},"
        " status: {podIP: 10.0.1.9}}\n"
    )
    r = dataplane("import", str(dump), "-o", "out/s.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"error: {dump}:4: Pod default/a: status.podIP: a pod address needs"
        " spec.nodeName (the node the pod runs on)"
    )
    assert not (tmp_path / "out").exists()


def test_the_shipped_scenario_holds_the_fixture() -> None:
    shipped = ROOT / "scenarios" / "manifests" / "kind-cluster" / "dump.yaml"
    assert shipped.read_text() == FIXTURE.read_text()


def test_inference_of_gateway_and_service_cidr() -> None:
    from topology.dump import import_dump

    dump = """
apiVersion: v1
kind: List
items:
- {kind: Node, metadata: {name: a}, spec: {podCIDR: 10.42.0.0/24},
   status: {addresses: [{type: InternalIP, address: 192.168.5.1}]}}
- {kind: Service, metadata: {name: kubernetes}, spec: {clusterIP: 10.43.0.1,
   ports: [{port: 443}]}}
- {kind: Service, metadata: {name: web}, spec: {clusterIP: 10.43.9.5, ports: [{port: 80}]}}
"""
    cluster = yaml.safe_load(import_dump(dump, "k3s.yaml", "m/k3s.yaml", "k3s").text)
    # a k3s cluster: the node holds .1, kube-dns is absent, the range starts at 10.43.0.0
    assert cluster["cluster"] == {
        "network": "vxlan",
        "nodeCIDR": "192.168.5.0/24",
        "gateway": "192.168.5.2",
        "serviceCIDR": "10.43.0.0/20",
        "dns": False,
        "clusterDomain": "cluster.local",
    }
    assert cluster["steps"][0]["matrix"] == {"port": 80}
