"""`dataplane explain --all`: every pair's decision at once, on whole sets of pods, checked
against the per-pair decision the filter hooks make (verdict, policy, rule and peer)."""

from __future__ import annotations

import json

import pytest

from dataplane.explain_all import DENIED, RULE, decide_all
from dataplane.netpol import egress_decision, ingress_decision
from tests.io.helpers import SCENARIOS, run_cli
from topology.loader import load_scenario
from topology.model import Protocol

LAB = SCENARIOS / "networkpolicy-lab.yaml"


@pytest.mark.parametrize(
    ("name", "port", "protocol"),
    [("networkpolicy-lab.yaml", 80, Protocol.TCP), ("networkpolicy-lab.yaml", 5978, Protocol.TCP),
     ("conformance/02-selectors.yaml", 80, Protocol.TCP), ("conformance/03-ports.yaml", 8080, Protocol.TCP),
     ("conformance/03-ports.yaml", 53, Protocol.UDP), ("conformance/04-ipblock.yaml", 80, Protocol.TCP),
     ("egress-dns-lesson.yaml", 53, Protocol.UDP), ("policy-mistakes.yaml", 80, Protocol.TCP),
     ("policy-mistakes.yaml", None, Protocol.ICMP)],
)  # fmt: skip
def test_every_pair_agrees_with_the_decision(
    name: str, port: int | None, protocol: Protocol
) -> None:
    cluster = load_scenario(SCENARIOS / name)[0].cluster
    found = decide_all(cluster, port, protocol)
    pods = [p for p in cluster.pods.values() if not p.host_network]
    seen = 0
    for src, dst, block in found.pairs():
        seen += 1
        out = egress_decision(cluster, src, str(dst.ip), port, protocol)
        assert (block.egress[0] != DENIED) == out.allowed, (src.key, dst.key)
        if block.egress[0] == RULE:
            assert out.match is not None
            assert (out.match[0], out.match[1], out.match[2]) == (
                block.egress[1][0], block.egress[2], block.egress[3]
            )  # fmt: skip
        if not out.allowed:
            assert block.ingress is None
            assert block.egress[1] == out.isolating
            continue
        inn = ingress_decision(cluster, dst, str(src.ip), port, protocol)
        assert block.ingress is not None
        assert (block.ingress[0] != DENIED) == inn.allowed, (src.key, dst.key)
        if block.ingress[0] == RULE:
            assert inn.match is not None
            assert (inn.match[0], inn.match[1], inn.match[2]) == (
                block.ingress[1][0], block.ingress[2], block.ingress[3]
            )  # fmt: skip
    assert seen == len(pods) * (len(pods) - 1) == sum(found.counts().values())


def test_the_lab_on_port_80() -> None:
    r = run_cli("explain", LAB, "--all", "--port", "80")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (
        lines[0]
        == "TCP 80, every pair of pods: 16 allowed, 10 denied-egress, 4 denied-ingress"
    )
    assert len(lines) == 31
    assert (
        "dev/devpod -> default/httpd-deployment-0: allowed (egress: not isolated; "
        "ingress: default/test-np ingress rule 0 peer 0 (namespaceSelector project=dev), "
        "ports TCP 80)"
    ) in lines
    assert (
        "default/pod1 -> default/httpd-deployment-1: denied-ingress (egress: not "
        "isolated; ingress: isolated by default/test-np, no rule admits it)"
    ) in lines
    assert (
        "default/httpd-deployment-0 -> dev/devpod: denied-egress (egress: isolated by "
        "default/test-np, no rule admits it)"
    ) in lines


def test_only_and_json() -> None:
    allow = run_cli("explain", LAB, "--all", "-p", "80", "--only", "allow").stdout
    assert len(allow.splitlines()) == 17
    assert all(": allowed (" in line for line in allow.splitlines()[1:])
    deny = run_cli("explain", LAB, "--all", "-p", "80", "--only", "deny").stdout
    assert len(deny.splitlines()) == 15
    assert not any(": allowed (" in line for line in deny.splitlines())
    doc = json.loads(run_cli("explain", LAB, "--all", "-p", "80", "-o", "json",
                             "--only", "deny").stdout)  # fmt: skip
    assert doc["type"] == "explain-all" and doc["port"] == 80
    assert doc["counts"] == {"allowed": 16, "denied-egress": 10, "denied-ingress": 4}
    assert doc["pairs"][0] == {
        "src": "default/httpd-deployment-0", "dst": "default/frontend",
        "verdict": "denied-egress", "policy": "default/test-np",
        "egress": "egress: isolated by default/test-np, no rule admits it",
        "ingress": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--all"], "error: --all needs --port (the decisions of every pair on one TCP port; "
      "`dataplane connlist --by pod` lists every port at once)"),
     (["--all", "-p", "80", "--from", "default/pod1"],
      "error: --all takes no --from/--to (it explains every pair)"),
     (["--all", "-p", "80", "-n", "dev"],
      "error: --all takes no -n/--namespace (it explains every pair of pods, in every "
      "namespace)"),
     (["--all", "-p", "80", "--only", "some"],
      "error: --only 'some' is not allowed (allowed: allow, deny)"),
     (["-p", "80", "--only", "allow", "--from", "default/pod1", "--to", "dev/devpod"],
      "error: --only goes with --all"),
     (["-p", "80", "--from", "default/pod1"], "error: explain needs --to (or --all: every pair)"),
     (["--all", "-p", "http"], "error: --port 'http': --all needs a port number (a name "
      "means another port on each pod; give the number)")],
)  # fmt: skip
def test_bad_options(args: list[str], message: str) -> None:
    r = run_cli("explain", LAB, *args)
    assert r.exit_code == 2 and r.stderr == message + "\n"
