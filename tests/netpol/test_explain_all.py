"""`dataplane explain --all`: every pair's decision at once, on whole sets of pods, checked
against the per-pair decision the filter hooks make (verdict, policy, rule and peer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataplane.explain_all import DENIED, RULE, AllDecisions, decide_all
from dataplane.explain_tiers import TierDecisions
from dataplane.netpol import (
    Direction,
    decide,
    egress_decision,
    index_of,
    ingress_decision,
)
from dataplane.sim import Simulator
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
    assert isinstance(found, AllDecisions)
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


def every_pair_lines(path: Path, head: str, n: int) -> list[str]:
    """`explain --all --port 80`'s lines, its count line `head`, `n` pairs."""
    r = run_cli("explain", path, "--all", "--port", "80")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (lines[0], len(lines)) == (f"TCP 80, every pair of pods: {head}", n + 1)
    return lines


def test_the_lab_on_port_80() -> None:
    lines = every_pair_lines(LAB, "16 allowed, 10 denied-egress, 4 denied-ingress", 30)
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


# -- with the admin policy tiers ----------------------------------------------------------
TIERS = SCENARIOS / "admin-tiers.yaml"
ANP = "policy.networking.k8s.io/v1alpha1"
# x/b and x/b2 cannot be told apart (one class); y/c on node-1 and y/d on node-2 differ by
# the `ipBlock` and `networks` peers (the nodes' podCIDRs); x/a's named port `http` is the
# egress rule's.
INLINE = f"""\
name: tiers-inline
cluster:
  dns: false
  nodes: [{{name: node-1}}, {{name: node-2}}]
manifests:
  - {{kind: Namespace, metadata: {{name: x, labels: {{team: x}}}}}}
  - {{kind: Namespace, metadata: {{name: y, labels: {{team: y}}}}}}
  - kind: Pod
    metadata: {{name: a, namespace: x, labels: {{app: a}}}}
    spec: {{nodeName: node-2, containers: [{{name: c, ports: [{{containerPort: 80, name: http}}]}}]}}
  - {{kind: Pod, metadata: {{name: b, namespace: x}}, spec: {{nodeName: node-1, containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}}}
  - {{kind: Pod, metadata: {{name: b2, namespace: x}}, spec: {{nodeName: node-1, containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}}}
  - {{kind: Pod, metadata: {{name: c, namespace: y}}, spec: {{nodeName: node-1, containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}}}
  - {{kind: Pod, metadata: {{name: d, namespace: y}}, spec: {{nodeName: node-2, containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}}}
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {{name: only-x, namespace: x}}
    spec:
      podSelector: {{matchLabels: {{app: a}}}}
      ingress: [{{from: [{{podSelector: {{}}}}, {{ipBlock: {{cidr: 10.0.2.0/24}}}}]}}]
  - apiVersion: {ANP}
    kind: AdminNetworkPolicy
    metadata: {{name: node-1-pass}}
    spec:
      priority: 5
      subject: {{namespaces: {{matchLabels: {{team: x}}}}}}
      egress:
        - {{name: to-node-1, action: Pass, to: [{{networks: [10.0.1.0/24]}}]}}
  - apiVersion: {ANP}
    kind: AdminNetworkPolicy
    metadata: {{name: y-out}}
    spec:
      priority: 7
      subject: {{namespaces: {{matchLabels: {{team: y}}}}}}
      egress:
        - name: no-http
          action: Deny
          to: [{{namespaces: {{matchLabels: {{team: x}}}}}}]
          ports: [{{namedPort: http}}]
  - apiVersion: {ANP}
    kind: BaselineAdminNetworkPolicy
    metadata: {{name: default}}
    spec:
      subject: {{namespaces: {{}}}}
      ingress: [{{name: no-y, action: Deny, from: [{{namespaces: {{matchLabels: {{team: y}}}}}}]}}]
steps: [{{probe: {{from: x/b, to: x/a, port: 80}}}}]
"""


def _inline(tmp_path: Path) -> Path:
    f = tmp_path / "tiers-inline.yaml"
    f.write_text(INLINE)
    return f


WALKED = {"delivered": "allowed", "denied-egress": "denied-egress",
          "denied-ingress": "denied-ingress"}  # fmt: skip


@pytest.mark.parametrize(("which", "port"), [("tiers", 80), ("tiers", 9090),
                                             ("inline", 80), ("inline", 8080)])  # fmt: skip
def test_with_tiers_every_pair_is_the_decision_and_the_walk(
    tmp_path: Path, which: str, port: int
) -> None:
    path = TIERS if which == "tiers" else _inline(tmp_path)
    cluster = load_scenario(path)[0].cluster
    assert cluster.admin_policies
    found = decide_all(cluster, port, Protocol.TCP)
    assert isinstance(found, TierDecisions)
    index = index_of(cluster)
    sim = Simulator(cluster)
    pods = [p for p in cluster.pods.values() if not p.host_network]
    seen: dict[str, int] = {}
    for src, dst, pair in found.pairs():
        out = decide(index, Direction.EGRESS, src, index.party(str(dst.ip)), port,
                     Protocol.TCP)  # fmt: skip
        inn = decide(index, Direction.INGRESS, dst, index.party(str(src.ip)), port,
                     Protocol.TCP)  # fmt: skip
        assert pair.egress == out, (src.key, dst.key)
        assert pair.ingress == (inn if out.allowed else None), (src.key, dst.key)
        trace = sim.probe(src.key, dst.key, port, Protocol.TCP)
        assert trace.verdict is not None
        # the walk goes on to the port (a pod not listening refuses): policy first
        walked = WALKED.get(trace.verdict.value, "allowed")
        assert (pair.verdict, pair.deciding.policy) == (walked, trace.policy), (
            src.key, dst.key
        )  # fmt: skip
        seen[pair.verdict] = seen.get(pair.verdict, 0) + 1
    assert sum(seen.values()) == len(pods) * (len(pods) - 1)
    assert seen == {k: n for k, n in found.counts().items() if n}


def test_with_tiers_the_lines_name_tier_policy_priority_and_rule() -> None:
    lines = every_pair_lines(TIERS, "3 allowed, 0 denied-egress, 3 denied-ingress", 6)
    not_isolated = (
        "egress: {} is not isolated for egress (no NetworkPolicy selects it for Egress)"
    )
    assert (
        "dev/app -> prod/web: denied-ingress [Admin] ("
        + not_isolated.format("dev/app")
        + "; ingress: denied by ANP 'no-dev-to-prod' (priority 20) ingress rule 0 "
        "'deny-dev' (Deny) peer 0 (namespaces env=dev); before it, ANP "
        "'monitoring-to-owners' (priority 10) ingress rule 0 'pass-monitoring' did not "
        "match: peer 0 (namespaces kubernetes.io/metadata.name=monitoring): namespace dev "
        "has kubernetes.io/metadata.name=dev, not kubernetes.io/metadata.name=monitoring)"
    ) in lines
    assert (
        "monitoring/prom -> prod/web: denied-ingress [NetworkPolicy] ("
        + not_isolated.format("monitoring/prom")
        + "; ingress: ANP 'monitoring-to-owners' (priority 10) ingress rule 0 "
        "'pass-monitoring' (Pass) peer 0 (namespaces kubernetes.io/metadata.name="
        "monitoring) passes to NetworkPolicy; denied: prod/web is isolated for ingress by "
        "prod/web-ingress, and no rule admits traffic from monitoring/prom on TCP 80: "
        "prod/web-ingress ingress rule 0: peer 0 (namespaceSelector env=dev): namespace "
        "monitoring has no label env (wants env=dev); prod/web-ingress ingress rule 1: TCP "
        "80 is not among its ports (TCP 'metrics' (= 9090 on prod/web)))"
    ) in lines
    assert (
        "prod/web -> dev/app: denied-ingress [Baseline] ("
        + not_isolated.format("prod/web")
        + "; ingress: denied by BANP 'default' ingress rule 1 'deny-the-rest' (Deny) peer "
        "0 (namespaces {}) (dev/app is not isolated by any NetworkPolicy for ingress); "
        "before it, BANP 'default' ingress rule 0 'allow-monitoring' did not match: peer 0 "
        "(namespaces kubernetes.io/metadata.name=monitoring): namespace prod has "
        "kubernetes.io/metadata.name=prod, not kubernetes.io/metadata.name=monitoring)"
    ) in lines
    assert (
        "prod/web -> monitoring/prom: allowed [default] ("
        + not_isolated.format("prod/web")
        + "; ingress: monitoring/prom is not isolated for ingress (no NetworkPolicy "
        "selects it for Ingress))"
    ) in lines


def test_with_tiers_a_line_is_the_single_pair_explanation(tmp_path: Path) -> None:
    """Each class is expanded to its own pods: x/b2's line names x/b2 and its address,
    as `explain -o json` of that pair does."""
    f = _inline(tmp_path)
    lines = run_cli("explain", f, "--all", "-p", "80").stdout.splitlines()
    for src, dst in [("x/b2", "x/b"), ("x/b", "x/b2"), ("y/c", "x/a"), ("y/d", "x/a"),
                     ("y/d", "x/b2"), ("x/b2", "y/c")]:  # fmt: skip
        one = json.loads(run_cli("explain", f, "--from", src, "--to", dst, "-p", "80",
                                 "-o", "json").stdout)  # fmt: skip
        texts = [
            f"{c['direction']}: {c['text']}" for c in one["checks"] if c["reached"]
        ]
        (line,) = [x for x in lines if x.startswith(f"{src} -> {dst}: ")]
        assert line.endswith(f"({'; '.join(texts)})"), (line, texts)
    (line,) = [x for x in lines if x.startswith("y/c -> x/a: ")]
    assert line.startswith("y/c -> x/a: denied-egress [Admin] (egress: denied by ANP "
                           "'y-out' (priority 7) egress rule 0 'no-http' (Deny) peer 0 "
                           "(namespaces team=x), ports namedPort 'http' (= TCP 80 on x/a))")  # fmt: skip
    (line,) = [x for x in lines if x.startswith("y/d -> x/b2: ")]
    assert "[Baseline]" in line and "no rule of the" not in line


def test_with_tiers_only_and_json() -> None:
    deny = run_cli("explain", TIERS, "--all", "-p", "80", "--only", "deny").stdout
    assert [line.split(" (")[0] for line in deny.splitlines()[1:]] == [
        "dev/app -> prod/web: denied-ingress [Admin]",
        "monitoring/prom -> prod/web: denied-ingress [NetworkPolicy]",
        "prod/web -> dev/app: denied-ingress [Baseline]",
    ]
    allow = run_cli("explain", TIERS, "--all", "-p", "9090", "--only", "allow").stdout
    assert [line.split(" (")[0] for line in allow.splitlines()[1:]] == [
        "dev/app -> monitoring/prom: allowed [default]",
        "monitoring/prom -> dev/app: allowed [Baseline]",
        "monitoring/prom -> prod/web: allowed [NetworkPolicy]",
        "prod/web -> monitoring/prom: allowed [default]",
    ]
    doc = json.loads(run_cli("explain", TIERS, "--all", "-p", "80", "-o", "json",
                             "--only", "deny").stdout)  # fmt: skip
    assert doc["counts"] == {"allowed": 3, "denied-egress": 0, "denied-ingress": 3}
    assert [(p["src"], p["dst"], p["verdict"], p["tier"], p["policy"]) for p in doc["pairs"]] == [
        ("dev/app", "prod/web", "denied-ingress", "Admin", "AdminNetworkPolicy/no-dev-to-prod"),
        ("monitoring/prom", "prod/web", "denied-ingress", "NetworkPolicy", "prod/web-ingress"),
        ("prod/web", "dev/app", "denied-ingress", "Baseline", "BaselineAdminNetworkPolicy/default"),
    ]  # fmt: skip
    assert doc["pairs"][2]["egress"] == (
        "egress: prod/web is not isolated for egress (no NetworkPolicy selects it for Egress)"
    )
    assert doc["pairs"][2]["ingress"].startswith(
        "ingress: denied by BANP 'default' ingress rule 1 'deny-the-rest' (Deny)"
    )
