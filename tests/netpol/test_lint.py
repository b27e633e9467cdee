"""`dataplane lint`: every check on a scenario written to hold each mistake once, the exit
status by `--fail-on`, and the JSON and SARIF documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataplane.lint import RULES, lint
from dataplane.lint_admin import ADMIN_RULES
from tests.io.helpers import SCENARIOS, run_cli
from topology.loader import load_scenario

MISTAKES = SCENARIOS / "policy-mistakes.yaml"
ADMIN_MISTAKES = SCENARIOS / "admin-policy-mistakes.yaml"


def test_every_mistake_is_found_once() -> None:
    scenario, _ = load_scenario(MISTAKES)
    found = [(f.rule, f.obj, f.field) for f in lint(scenario.cluster)]
    assert found == [
        ("selector-matches-nothing", "networkpolicy/default/allow-client",
         "spec.ingress[0].from[0].podSelector"),
        ("port-not-served", "networkpolicy/default/allow-client", "spec.ingress[1].ports[0]"),
        ("selector-matches-nothing", "networkpolicy/default/allow-client",
         "spec.ingress[2].from[0].podSelector"),
        ("rule-shadowed", "networkpolicy/default/allow-client", "spec.ingress[2]"),
        ("selector-matches-nothing", "networkpolicy/default/allow-ops",
         "spec.ingress[0].from[0].namespaceSelector"),
        ("isolates-admits-nothing", "networkpolicy/default/db-egress", "spec.egress"),
        ("ipblock-covers-pods", "networkpolicy/default/web-egress",
         "spec.egress[0].to[0].ipBlock"),
        ("ipblock-covers-nodes", "networkpolicy/default/web-egress",
         "spec.egress[0].to[0].ipBlock"),
        ("service-selects-nothing", "service/default/wbe", "spec.selector"),
        ("target-port-not-served", "service/default/web", "spec.ports[0].targetPort"),
    ]  # fmt: skip
    assert {rule for rule, _, _ in found} == set(RULES) - set(ADMIN_RULES)


def test_messages_say_what_exists() -> None:
    scenario, _ = load_scenario(MISTAKES)
    text = {f.field: f.message for f in lint(scenario.cluster)}
    assert text["spec.ingress[0].from[0].podSelector"] == (
        "podSelector role=cleint selects no pod in namespace default (closest existing "
        "labels: role=client)"
    )
    assert (
        "project=opps selects no namespace (closest existing labels: project=ops)"
        in (text["spec.ingress[0].from[0].namespaceSelector"])
    )
    assert text["spec.ingress[1].ports[0]"] == (
        "port 8080/TCP is served by no pod the policy selects (ports there: 80/TCP)"
    )
    assert text["spec.selector"] == (
        "selector app=wbe selects no pod in namespace default: the Service has no "
        "endpoints (closest existing labels: app=web, app=db)"
    )
    assert text["spec.ingress[2]"] == (
        "everything this rule admits, rule ingress[0] admits already (rules are a "
        "union: this one can go, or was meant to say more)"
    )
    assert text["spec.egress"] == (
        "isolates 1 pod(s) for egress and has no egress rule: it admits nothing (a "
        "deny-all for egress; other policies selecting the same pods can still admit)"
    )
    # an ipBlock over pods or nodes: what it means here
    covers = {
        f.rule: f.message
        for f in lint(scenario.cluster)
        if f.rule.startswith("ipblock-covers-")
    }
    assert covers == {
        "ipblock-covers-pods": "cidr 10.0.0.0/8 overlaps the podCIDR(s) 10.0.1.0/24, "
        "10.0.2.0/24: pods are chosen by podSelector and namespaceSelector; whether an "
        "ipBlock applies to pod addresses is left to the implementation by the "
        "NetworkPolicy documentation (this simulator matches it on the packet's "
        "address, after kube-proxy's DNAT and before masquerade)",
        "ipblock-covers-nodes": "cidr 10.0.0.0/8 overlaps the node network "
        "10.100.0.0/24: traffic between a pod and its own node is always allowed "
        "whatever the policy, and with VXLAN another node's own traffic comes from its "
        "flannel.1 address (the first address of its podCIDR), not from this range",
    }
    assert text["spec.ports[0].targetPort"].startswith(
        "targetPort 9090/TCP is served by none of the 2 pod(s) the Service selects "
        "(their ports: 80/TCP (http))"
    )


def test_a_scenario_without_mistakes_is_clean() -> None:
    r = run_cli("lint", SCENARIOS / "networkpolicy-lab.yaml")
    assert r.exit_code == 0, r.stdout
    assert r.stdout == "1 file(s): 0 error(s), 0 warning(s), 0 note(s)\n"


@pytest.mark.parametrize(
    ("fail_on", "code"), [("warning", 1), ("error", 0), ("note", 1), ("none", 0)]
)
def test_fail_on(fail_on: str, code: int) -> None:
    r = run_cli("lint", MISTAKES, "--fail-on", fail_on)
    assert r.exit_code == code
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{MISTAKES}:45: warning selector-matches-nothing: ")
    assert lines[-1] == "1 file(s): 0 error(s), 7 warning(s), 3 note(s)"


def test_a_deny_all_alone_is_a_note() -> None:
    r = run_cli("lint", SCENARIOS / "egress-dns-lesson.yaml")
    assert r.exit_code == 0  # notes do not fail at the default --fail-on warning
    assert (
        " note isolates-admits-nothing: networkpolicy/shop/default-deny-egress "
        in r.stdout
    )


def test_json_and_sarif() -> None:
    doc = json.loads(run_cli("lint", MISTAKES, "-o", "json").stdout)
    assert doc["schema_version"] == 1 and doc["type"] == "lint"
    first = doc["findings"][0]
    assert first == {
        "rule": "selector-matches-nothing", "severity": "warning",
        "object": "networkpolicy/default/allow-client",
        "field": "spec.ingress[0].from[0].podSelector",
        "message": "podSelector role=cleint selects no pod in namespace default "
        "(closest existing labels: role=client)",
        "file": str(MISTAKES), "line": 45,
    }  # fmt: skip
    log = json.loads(run_cli("lint", MISTAKES, "-o", "sarif").stdout)
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == set(RULES)
    result = run["results"][0]
    assert (
        result["ruleId"] == "selector-matches-nothing" and result["level"] == "warning"
    )
    region = result["locations"][0]["physicalLocation"]
    assert region == {
        "artifactLocation": {"uri": str(MISTAKES)},
        "region": {"startLine": 45},
    }


def test_folders_and_bad_options(tmp_path: Path) -> None:
    r = run_cli("lint", SCENARIOS / "conformance", "--fail-on", "none")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[-1].startswith("6 file(s): ")
    r = run_cli("lint", MISTAKES, "-o", "xml")
    assert r.exit_code == 2 and r.stderr == (
        "error: -o 'xml' is not allowed for `dataplane lint` (allowed: text, json, "
        "yaml, sarif)\n"
    )
    r = run_cli("lint", tmp_path)
    assert r.exit_code == 2 and r.stderr == (
        f"error: {tmp_path}: no scenario file and no manifest in this folder (a "
        "scenario is a .yaml or .yml file with a top-level steps: key; manifests are "
        "*.yaml, *.yml, *.json)\n"
    )


def test_a_folder_of_manifests(tmp_path: Path) -> None:
    """A folder without scenario files is read as manifests: its findings name the
    manifest file and line."""
    folder = tmp_path / "k8s"
    folder.mkdir()
    (folder / "app.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\n"
        "spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}\n"
        "---\n"
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        "metadata: {name: allow-named}\n"
        "spec:\n  podSelector: {matchLabels: {app: web}}\n"
        "  ingress:\n  - ports: [{port: metrics}]\n"
    )
    r = run_cli("lint", folder, "-o", "json")
    assert r.exit_code == 1 and r.stderr == "", r.stderr
    (finding,) = json.loads(r.stdout)["findings"]
    assert finding == {
        "rule": "port-not-served", "severity": "warning",
        "object": "networkpolicy/default/allow-named", "field": "spec.ingress[0].ports[0]",
        "message": "named port 'metrics'/TCP is served by no pod the policy selects "
        "(named ports there: none)",
        "file": str(folder / "app.yaml"), "line": 6,  # the policy's first line
    }  # fmt: skip


def test_every_admin_policy_mistake_is_found_once() -> None:
    scenario, _ = load_scenario(ADMIN_MISTAKES)
    found = [(f.rule, f.obj, f.field) for f in lint(scenario.cluster)]
    assert found == [
        ("selector-matches-nothing", "adminnetworkpolicy/allow-monitoring",
         "spec.ingress[0].from[0].namespaces"),
        ("port-not-served", "adminnetworkpolicy/allow-monitoring", "spec.ingress[0].ports[0]"),
        ("domain-name-unresolved", "adminnetworkpolicy/allow-registry",
         "spec.egress[0].to[0].domainNames[0]"),
        ("networks-covers-pods", "adminnetworkpolicy/deny-internet",
         "spec.egress[0].to[0].networks[0]"),
        ("networks-covers-nodes", "adminnetworkpolicy/deny-internet",
         "spec.egress[0].to[0].networks[0]"),
        ("networks-ipv6", "adminnetworkpolicy/deny-internet",
         "spec.egress[0].to[0].networks[1]"),
        ("selector-matches-nothing", "baselineadminnetworkpolicy/default",
         "spec.egress[0].to[0].nodes"),
        ("selector-matches-nothing", "clusternetworkpolicy/dev-baseline",
         "spec.subject.pods.podSelector"),
        ("admin-priority-tie", "adminnetworkpolicy/deny-internet", "spec.priority"),
        ("admin-rule-shadowed", "adminnetworkpolicy/no-dev-to-web", "spec.ingress[0]"),
    ]  # fmt: skip
    assert {rule for rule, _, _ in found} >= set(ADMIN_RULES)


def test_admin_policy_messages_say_what_it_means() -> None:
    scenario, _ = load_scenario(ADMIN_MISTAKES)
    text = {(f.obj, f.field, f.rule): f.message for f in lint(scenario.cluster)}
    anp = "adminnetworkpolicy/"
    assert text[
        (
            anp + "allow-monitoring",
            "spec.ingress[0].from[0].namespaces",
            "selector-matches-nothing",
        )
    ] == (
        "namespaceSelector env=monitorng selects no namespace (closest existing "
        "labels: env=monitoring)"
    )
    assert text[
        (anp + "allow-monitoring", "spec.ingress[0].ports[0]", "port-not-served")
    ] == (
        "named port 'metrics' is served by no pod of the policy's subject (named "
        "ports there: http)"
    )
    assert text[
        (
            anp + "allow-registry",
            "spec.egress[0].to[0].domainNames[0]",
            "domain-name-unresolved",
        )
    ] == (
        "'registry.example.com': the cluster's DNS has no record for it (CoreDNS here "
        "has no upstream resolver: it answers the cluster domain's Service and pod "
        "names only), so it matches no address"
    )
    assert text[
        (anp + "deny-internet", "spec.egress[0].to[0].networks[1]", "networks-ipv6")
    ] == (
        "::/0 is an IPv6 CIDR: the simulated cluster is IPv4-only, so it matches no "
        "address here (it would on a dual-stack or IPv6 cluster)"
    )
    assert text[
        (
            anp + "deny-internet",
            "spec.egress[0].to[0].networks[0]",
            "networks-covers-pods",
        )
    ].startswith(
        "0.0.0.0/0 overlaps the podCIDR(s) 10.0.1.0/24, 10.0.2.0/24: this rule also "
        "matches traffic to and from those pods"
    )
    assert text[
        (
            "clusternetworkpolicy/dev-baseline",
            "spec.subject.pods.podSelector",
            "selector-matches-nothing",
        )
    ] == (
        "podSelector app=wbe selects no pod in the namespaces its namespaceSelector "
        "selects, so the policy has no effect (closest existing labels: app=web)"
    )
    assert text[(anp + "deny-internet", "spec.priority", "admin-priority-tie")] == (
        "priority 10 is also that of ANP 'allow-monitoring' (priority 10), and both "
        "select some pods: upstream leaves the order of equal priorities undefined "
        '("the implementation can apply any of the matching policies"); this '
        "simulator checks ANP 'allow-monitoring' (priority 10) first (by name)"
    )
    assert text[(anp + "no-dev-to-web", "spec.ingress[0]", "admin-rule-shadowed")] == (
        "this rule never decides: ANP 'no-dev' (priority 20) ingress rule 0 'no-dev' "
        "(Deny) is checked before it, for the same pods, and matches everything it "
        "matches (the first matching rule of a tier decides or passes)"
    )  # fmt: skip


def test_admin_shadowing_needs_the_earlier_subject_to_hold_the_pods() -> None:
    """A broader rule of an earlier policy shadows a later one only for pods it selects:
    with no-dev's subject moved off prod, no-dev-to-web decides again."""
    from topology.loader import load_scenario_text

    before = ADMIN_MISTAKES.read_text()
    prod = "subject: {namespaces: {matchLabels: {env: prod}}}\n      ingress:\n        - {name: no-dev,"
    assert before.count(prod) == 1
    text = before.replace(prod, prod.replace("env: prod", "env: dev"))
    scenario, _ = load_scenario_text(text)
    assert not [f for f in lint(scenario.cluster) if f.rule == "admin-rule-shadowed"]
