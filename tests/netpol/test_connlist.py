"""`dataplane connlist` and `dataplane diff`: the whole cluster's allowed connections over
every port, checked against the per-pair decision the walk makes."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dataplane.connlist import connlist, external_ranges, format_ports
from dataplane.connlist_svg import to_svg
from dataplane.netpol import egress_decision, ingress_decision
from dataplane.netpol_ports import admits
from dataplane.sim import Simulator
from tests.io.helpers import SCENARIOS, run_cli
from topology.loader import load_scenario
from topology.model import Protocol

LAB = SCENARIOS / "networkpolicy-lab.yaml"


def _sim(path: Path) -> Simulator:
    scenario, _ = load_scenario(path)
    return Simulator(scenario.cluster)


def test_the_lab_as_a_connection_list() -> None:
    lines = {
        f"{c.src} => {c.dst} : {format_ports(c.ports)}" for c in connlist(_sim(LAB))
    }
    assert (
        "default/frontend[Pod] => default/httpd-deployment[Deployment] : TCP 80"
        in lines
    )
    assert "dev/devpod[Pod] => default/httpd-deployment[Deployment] : TCP 80" in lines
    assert (
        "default/httpd-deployment[Deployment] => 10.0.0.0-10.0.0.255 : TCP 5978"
        in lines
    )
    assert "default/pod1[Pod] => dev/devpod[Pod] : All Connections" in lines
    assert not any(
        line.startswith("default/pod1[Pod] => default/httpd") for line in lines
    )
    # httpd's egress admits nothing else, not even its own replicas
    assert [line for line in lines if line.startswith("default/httpd")] == [
        "default/httpd-deployment[Deployment] => 10.0.0.0-10.0.0.255 : TCP 5978"
    ]


@pytest.mark.parametrize(
    "name",
    ["networkpolicy-lab.yaml", "conformance/02-selectors.yaml", "conformance/03-ports.yaml",
     "conformance/04-ipblock.yaml", "egress-dns-lesson.yaml", "policy-mistakes.yaml"],
)  # fmt: skip
def test_every_pair_and_port_agrees_with_the_decision(name: str) -> None:
    sim = _sim(SCENARIOS / name)
    cluster = sim.cluster
    pods = {f"{p.key}[Pod]": p for p in cluster.pods.values() if not p.host_network}
    conns = {(c.src, c.dst): c.ports for c in connlist(sim, by="pod")}
    numbers = sorted({1, 53, 79, 80, 81, 443, 5978, 8080, 9000, 65535}
                     | {cp.port for p in pods.values() for cp in p.ports()})  # fmt: skip
    for sname, src in pods.items():
        for dname, dst in pods.items():
            if src is dst:
                continue
            got = conns.get((sname, dname), ())
            for proto in (Protocol.TCP, Protocol.UDP, Protocol.SCTP):
                for port in numbers:
                    want = (
                        egress_decision(cluster, src, str(dst.ip), port, proto).allowed
                        and ingress_decision(
                            cluster, dst, str(src.ip), port, proto
                        ).allowed
                    )
                    assert admits(got, proto, port) == want, (sname, dname, proto, port)
    # the external ranges: a representative and the last address of each
    for text, nets in external_ranges(sim):
        for ip in (str(nets[0].network_address), str(nets[-1].broadcast_address)):
            if ip in {str(p.ip) for p in cluster.pods.values()}:
                continue
            for sname, pod in pods.items():
                out = next(
                    (
                        p
                        for (s, d), p in conns.items()
                        if s == sname and text in d.split(",")
                    ),
                    (),
                )
                for port in (80, 5978, 443):
                    want = egress_decision(cluster, pod, ip, port, Protocol.TCP).allowed
                    assert admits(out, Protocol.TCP, port) == want, (sname, ip, port)


def test_cli_outputs_and_focus() -> None:
    r = run_cli(
        "connlist",
        LAB,
        "--focus-workload",
        "httpd-deployment",
        "--direction",
        "ingress",
    )
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "default/frontend[Pod] => default/httpd-deployment[Deployment] : TCP 80",
        "dev/devpod[Pod] => default/httpd-deployment[Deployment] : TCP 80",
    ]
    rows = list(csv.reader(io.StringIO(run_cli("connlist", LAB, "-o", "csv").stdout)))
    assert rows[0] == ["src", "dst", "connection"] and len(rows) > 10
    doc = json.loads(run_cli("connlist", LAB, "-o", "json").stdout)
    assert doc["schema_version"] == 1 and doc["type"] == "connlist"
    first = next(
        c
        for c in doc["connections"]
        if c["dst"] == "default/httpd-deployment[Deployment]"
    )
    assert first == {"src": "default/frontend[Pod]", "dst": "default/httpd-deployment[Deployment]",
                     "ports": {"TCP": ["80"]}}  # fmt: skip
    dot = run_cli("connlist", LAB, "-o", "dot").stdout
    assert dot.startswith("digraph connlist {") and '[label="TCP 80"];' in dot
    md = run_cli("connlist", LAB, "-o", "md").stdout
    assert (
        "| default/frontend[Pod] | default/httpd-deployment[Deployment] | TCP 80 |"
        in md
    )
    r = run_cli("connlist", LAB, "--direction", "ingress")
    assert r.exit_code == 2 and "--direction needs --focus-workload" in r.stderr


def _variant(tmp_path: Path) -> Path:
    text = LAB.read_text()
    text = text.replace("            - {protocol: TCP, port: 80}\n",
                        "            - {protocol: TCP, port: 80}\n            - {protocol: TCP, port: 8080}\n")  # fmt: skip
    text = text.replace(
        "            - podSelector:\n                matchLabels: {role: frontend}\n",
        "",
    )
    out = tmp_path / "lab-after.yaml"
    out.write_text(text)
    return out


def test_diff_of_a_policy_change(tmp_path: Path) -> None:
    after = _variant(tmp_path)
    r = run_cli("diff", LAB, after)
    assert r.exit_code == 1, r.stderr
    assert r.stdout.splitlines() == [
        "- default/frontend[Pod] => default/httpd-deployment[Deployment] : TCP 80",
        "~ dev/devpod[Pod] => default/httpd-deployment[Deployment] : TCP 80 -> TCP 80,8080",
    ]
    r = run_cli("diff", LAB, after, "--explain")
    assert r.stdout.splitlines() == [
        "- default/frontend[Pod] => default/httpd-deployment[Deployment] : TCP 80",
        "    because networkpolicy default/test-np changed (ingress of "
        "default/httpd-deployment[Deployment]: before, ingress rule 0 admits TCP 80; "
        "after, no ingress rule admits it)",
        "~ dev/devpod[Pod] => default/httpd-deployment[Deployment] : TCP 80 -> TCP 80,8080",
        "    because networkpolicy default/test-np changed (ingress of "
        "default/httpd-deployment[Deployment]: before, ingress rule 0 admits TCP 80; "
        "after, ingress rule 0 admits TCP 80,8080)",
    ]
    md = run_cli("diff", LAB, after, "-o", "md", "--explain").stdout
    assert md.startswith(
        f"### Allowed connections: `{LAB}` -> `{after}`\n\n0 added, 1 removed, 1 changed\n"
    )
    assert (
        "| removed | `default/frontend[Pod]` | `default/httpd-deployment[Deployment]` | TCP 80 | - |"
        in md
    )
    doc = json.loads(run_cli("diff", LAB, after, "-o", "json").stdout)
    assert doc["differs"] is True and [c["change"] for c in doc["changes"]] == [
        "removed",
        "changed",
    ]
    same = run_cli("diff", LAB, LAB)
    assert same.exit_code == 0 and same.stdout == "no change in allowed connections\n"


def test_external_ranges_leave_out_the_cluster() -> None:
    sim = _sim(LAB)
    texts = [t for t, _ in external_ranges(sim)]
    assert "10.0.0.0-10.0.0.255" in texts
    for t, nets in external_ranges(sim):
        for net in nets:
            assert not net.overlaps(sim.cluster.config.service_cidr), t
            assert not any(
                net.overlaps(n.pod_cidr) for n in sim.cluster.config.nodes
            ), t
    assert IPv4Address("10.0.0.10") in next(
        n for t, ns in external_ranges(sim) for n in ns if t == "10.0.0.0-10.0.0.255"
    )


def test_svg_is_drawn_without_graphviz() -> None:
    """`-o svg`: one box per source and per destination, one arrow per connection with
    its ports, written by `dataplane.draw`'s SVG writer."""
    r = run_cli("connlist", LAB, "-o", "svg", "--focus-workload", "httpd-deployment")
    assert r.exit_code == 0, r.stderr
    svg = r.stdout
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert "<title>Allowed connections</title>" in svg
    keys = re.findall(r'<rect [^>]*data-key="([^"]+)"', svg)
    assert keys == [
        "default/frontend[Pod]",  # sources on the left
        "default/httpd-deployment[Deployment]",
        "dev/devpod[Pod]",
        "10.0.0.0-10.0.0.255",  # destinations on the right
        "default/httpd-deployment[Deployment]",
    ]
    # restricted to some ports: green arrows with their ports written on them (3, and
    # the legend's)
    assert svg.count('stroke="#16a34a" stroke-width="1.6" marker-end="url(#arrow-16a34a)"') == 4  # fmt: skip
    labels = re.findall(r'font-size="10.5" fill="#0f172a"[^>]*>([^<]+)</text>', svg)
    assert sorted(labels) == ["TCP 5978", "TCP 80", "TCP 80"]
    assert ">allowed on the ports written on it</text>" in svg  # the legend
    # the three spans of a joined range are three lines of one box
    full = run_cli("connlist", LAB, "-o", "svg").stdout
    assert ">10.0.3.0-10.95.255.255</text>" in full
    # every port: thin grey arrows without a label (28 of the lab's 31 connections, and
    # the legend's)
    assert full.count('stroke="#94a3b8" stroke-width="1.0" marker-end="url(#arrow-94a3b8)"') == 29  # fmt: skip
    assert ">All Connections</text>" not in full
    assert ">no allowed connection</text>" in to_svg([])


def test_a_focus_that_names_nothing_is_an_error() -> None:
    r = run_cli("connlist", LAB, "--focus-workload", "httpd-deploy")
    assert r.exit_code == 2 and r.stderr == (
        "error: --focus-workload 'httpd-deploy' names no workload of the cluster "
        "(closest: httpd-deployment, default/httpd-deployment)\n"
    )
    r = run_cli("connlist", LAB, "--by", "pod", "--focus-workload", "zzz")
    assert r.exit_code == 2 and r.stderr == (
        "error: --focus-workload 'zzz' names no pod of the cluster (6 pod(s) exist)\n"
    )


def test_bad_output_is_refused_by_the_one_mechanism() -> None:
    r = run_cli("connlist", LAB, "-o", "png")
    assert r.exit_code == 2 and r.stderr == (
        "error: -o 'png' is not allowed for `dataplane connlist` (allowed: txt, csv, "
        "md, json, yaml, dot, svg)\n"
    )
    r = run_cli("diff", LAB, LAB, "-o", "dot")
    assert r.exit_code == 2 and r.stderr == (
        "error: -o 'dot' is not allowed for `dataplane diff` (allowed: txt, md, csv, "
        "json, yaml)\n"
    )


KIND = SCENARIOS / "manifests" / "kind-cluster"
FROM_WEB = "      - podSelector:\n          matchLabels:\n            app: web\n"


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders of manifests: the kind cluster, and the same with shop/db-from-web
    admitting app.kubernetes.io/name=cart instead of app=web."""
    a, b = tmp_path / "before", tmp_path / "after"
    shutil.copytree(KIND, a)
    shutil.copytree(KIND, b)
    dump = b / "dump.yaml"
    text = dump.read_text()
    assert text.count(FROM_WEB) == 1
    cart = FROM_WEB.replace("app: web", "app.kubernetes.io/name: cart")
    dump.write_text(text.replace(FROM_WEB, cart))
    return a, b


def test_diff_of_two_folders_of_manifests(tmp_path: Path) -> None:
    a, b = _folders(tmp_path)
    r = run_cli("diff", a, b)
    assert r.exit_code == 1, r.stderr
    assert r.stdout.splitlines() == [
        "+ shop/cart[Deployment] => shop/db[StatefulSet] : TCP 5432",
        "- shop/web-6b7f9c8d5f[ReplicaSet] => shop/db[StatefulSet] : TCP 5432",
    ]
    r = run_cli("diff", a, b, "--explain")
    assert r.stdout.splitlines()[1] == (
        "    because networkpolicy shop/db-from-web changed (ingress of "
        "shop/db[StatefulSet]: before, no ingress rule admits it; after, ingress rule 0 "
        "admits TCP 5432)"
    )
    # a folder and the scenario that includes it hold the same cluster
    same = run_cli("diff", SCENARIOS / "live-cluster.yaml", a)
    assert same.exit_code == 0, same.stdout
    assert same.stdout == "no change in allowed connections\n"
    md = run_cli("diff", a, b, "-o", "md").stdout
    assert md.splitlines()[:6] == [
        f"### Allowed connections: `{a}` -> `{b}`",
        "",
        "1 added, 1 removed, 0 changed",
        "",
        "| change | source | destination | before | after |",
        "|---|---|---|---|---|",
    ]
    # connlist reads such a folder too
    r = run_cli("connlist", b, "--focus-workload", "db", "--direction", "ingress")
    assert r.stdout == "shop/cart[Deployment] => shop/db[StatefulSet] : TCP 5432\n"


def test_diff_bad_input_is_status_2(tmp_path: Path) -> None:
    r = run_cli("diff", SCENARIOS / "conformance", LAB)
    assert r.exit_code == 2 and r.stderr == (
        f"error: {SCENARIOS / 'conformance'}: this folder holds scenario files; diff "
        "compares two scenario files, or two folders of manifests (no scenario file "
        "in them)\n"
    )
    r = run_cli("diff", LAB, tmp_path / "missing.yaml")
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stdout == ""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "np.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\n"
        "spec: {podSelector: {}, policyTypes: [Sideways]}\n"
    )
    r = run_cli("diff", LAB, bad)
    assert r.exit_code == 2
    assert r.stderr.startswith(f"error: {bad / 'np.yaml'}:4: ") and (
        "'Sideways' is not allowed (allowed: Ingress, Egress)" in r.stderr
    )


def test_diff_of_changed_workloads(tmp_path: Path) -> None:
    """A workload in both versions whose pods differ is listed with what changed; the
    label change is named as the reason of the connection it removes."""
    text = LAB.read_text().replace("      replicas: 2\n", "      replicas: 3\n", 1)
    text = text.replace("{name: frontend, labels: {role: frontend}}",
                        "{name: frontend, labels: {role: front}}", 1)  # fmt: skip
    after = tmp_path / "lab-after.yaml"
    after.write_text(text)
    r = run_cli("diff", LAB, after, "--explain")
    assert r.exit_code == 1, r.stderr
    assert r.stdout.splitlines() == [
        "workload changed: default/frontend[Pod] (labels role=frontend -> role=front)",
        "workload changed: default/httpd-deployment[Deployment] (replicas 2 -> 3)",
        "- default/frontend[Pod] => default/httpd-deployment[Deployment] : TCP 80",
        "    because workload default/frontend[Pod] changed (labels role=frontend -> "
        "role=front)",
    ]
    doc = json.loads(run_cli("diff", LAB, after, "-o", "json").stdout)
    assert doc["workloadsChanged"] == [
        {"workload": "default/frontend[Pod]",
         "changes": ["labels role=frontend -> role=front"]},
        {"workload": "default/httpd-deployment[Deployment]",
         "changes": ["replicas 2 -> 3"]},
    ]  # fmt: skip
    rows = list(
        csv.reader(io.StringIO(run_cli("diff", LAB, after, "-o", "csv").stdout))
    )
    assert rows == [
        ["change", "src", "dst", "before", "after", "why"],
        ["workload changed", "default/frontend[Pod]", "", "", "",
         "labels role=frontend -> role=front"],
        ["workload changed", "default/httpd-deployment[Deployment]", "", "", "",
         "replicas 2 -> 3"],
        ["removed", "default/frontend[Pod]", "default/httpd-deployment[Deployment]",
         "TCP 80", "", ""],
    ]  # fmt: skip
    md = run_cli("diff", LAB, after, "-o", "md").stdout.splitlines()
    assert md[2] == (
        "0 added, 1 removed, 0 changed; workload changed: default/frontend[Pod] (labels "
        "role=frontend -> role=front); workload changed: "
        "default/httpd-deployment[Deployment] (replicas 2 -> 3)"
    )
