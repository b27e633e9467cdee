"""`dataplane exposure`: who can connect to each workload, parties that do not exist yet
included, decided by the same code as the walk."""

from __future__ import annotations

import json
from pathlib import Path

from dataplane.exposure import exposure
from tests.io.helpers import SCENARIOS, run_cli
from topology.loader import load_scenario


def _rows(name: str) -> dict[tuple[str, int], object]:
    scenario, _ = load_scenario(SCENARIOS / name)
    return {(r.workload, r.port): r for r in exposure(scenario.cluster)}


def test_the_lab_httpd_pods_are_open_to_dev_and_frontend_only() -> None:
    rows = _rows("networkpolicy-lab.yaml")
    httpd = rows[("default/httpd-deployment (Deployment)", 80)]
    assert httpd.to_dict() == {  # type: ignore[attr-defined]
        "workload": "default/httpd-deployment (Deployment)",
        "port": 80,
        "protocol": "TCP",
        "isolated": True,
        "anyNamespace": False,
        "outside": False,
        # namespaceSelector project=dev admits any pod created in dev, labels or not
        "newPodIn": ["dev"],
        "admitted": [
            "any pod in namespaces project=dev (default/test-np)",
            "pods role=frontend in default (default/test-np)",
        ],
        "tiers": [],
    }
    dev = rows[("dev/devpod", 80)]
    d = dev.to_dict()  # type: ignore[attr-defined]
    assert (d["isolated"], d["anyNamespace"], d["outside"]) == (False, True, True)
    assert dev.to_dict()["newPodIn"] == ["dev", "default", "kube-system"]  # type: ignore[attr-defined]


def test_a_typo_leaves_a_workload_open_to_nobody() -> None:
    web = _rows("policy-mistakes.yaml")[("default/web (Deployment)", 80)]
    d = web.to_dict()  # type: ignore[attr-defined]
    assert (d["anyNamespace"], d["outside"], d["newPodIn"]) == (False, False, [])
    assert d["admitted"] == [
        "pods role=cleint in default (default/allow-client)",
        "any pod in namespaces project=opps (default/allow-ops)",
    ]


def test_cli_text_and_json() -> None:
    r = run_cli("exposure", SCENARIOS / "networkpolicy-lab.yaml")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0] == (
        "default/httpd-deployment (Deployment) 80/TCP: isolated; any namespace: no; "
        "outside: no; new pod in: dev; admits: any pod in namespaces project=dev "
        "(default/test-np), pods role=frontend in default (default/test-np)"
    )
    doc = json.loads(
        run_cli("exposure", SCENARIOS / "networkpolicy-lab.yaml", "-o", "json").stdout
    )
    assert doc["schema_version"] == 1 and doc["type"] == "exposure"
    assert (
        doc["files"][0]["workloads"][0]["workload"]
        == "default/httpd-deployment (Deployment)"
    )


def test_a_folder_of_manifests_open_to_outside(tmp_path: Path) -> None:
    """An isolated workload that an ipBlock opens to every address is reachable from any
    namespace and from outside; its metrics port only by pods labelled
    role=monitoring, in any namespace, none of which exists yet."""
    (tmp_path / "app.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec:\n"
        "  replicas: 2\n  selector: {matchLabels: {app: api}}\n  template:\n"
        "    metadata: {labels: {app: api}}\n    spec:\n      containers:\n"
        "      - {name: api, image: api, ports: [{containerPort: 443}, "
        "{containerPort: 9090, name: metrics}]}\n"
        "---\n"
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        "metadata: {name: api-ingress}\nspec:\n  podSelector: {matchLabels: {app: api}}\n"
        "  ingress:\n  - from: [{ipBlock: {cidr: 0.0.0.0/0}}]\n    ports: [{port: 443}]\n"
        "  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: monitoring}}}]\n"
        "    ports: [{port: metrics}]\n"
    )
    r = run_cli("exposure", tmp_path)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "default/api (Deployment) 443/TCP: isolated; any namespace: yes; outside: yes; "
        "new pod in: default, kube-system; admits: ipBlock 0.0.0.0/0 (default/api-ingress)",
        "default/api (Deployment) 9090/TCP: isolated; any namespace: no; outside: no; "
        "new pod in: none; admits: pods role=monitoring in any namespace "
        "(default/api-ingress)",
    ]
    r = run_cli("exposure", tmp_path, "-o", "csv")
    assert r.exit_code == 2 and r.stderr == (
        "error: -o 'csv' is not allowed for `dataplane exposure` (allowed: text, json, "
        "yaml)\n"
    )


def test_the_admin_tiers_say_which_rule_closes_or_opens_a_workload() -> None:
    """scenarios/admin-tiers.yaml: ANP no-dev-to-prod closes prod/web to dev even where
    prod's NetworkPolicy admits dev; the BANP opens dev/app to monitoring only (no
    NetworkPolicy isolates it), and closes it to any other namespace."""
    rows = _rows("admin-tiers.yaml")
    web = rows[("prod/web", 80)].to_dict()  # type: ignore[attr-defined]
    assert (web["isolated"], web["newPodIn"]) == (True, [])
    assert web["admitted"] == ["any pod in namespaces env=dev (prod/web-ingress)"]
    assert web["tiers"] == [
        "new pod in dev: denied by ANP 'no-dev-to-prod' (priority 20) ingress rule 0 "
        "'deny-dev'"
    ]
    app = rows[("dev/app", 80)].to_dict()  # type: ignore[attr-defined]
    assert (app["isolated"], app["anyNamespace"], app["outside"]) == (
        False,
        False,
        True,
    )
    assert app["newPodIn"] == ["monitoring"]
    assert app["admitted"] == [
        "namespaces kubernetes.io/metadata.name=monitoring (BANP 'default' ingress rule "
        "0 'allow-monitoring')",
        "everyone the tiers do not decide for",
    ]
    assert app["tiers"] == [
        "new pod in dev, default, kube-system, prod; any namespace: denied by BANP "
        "'default' ingress rule 1 'deny-the-rest'",
        "new pod in monitoring: allowed by BANP 'default' ingress rule 0 "
        "'allow-monitoring'",
    ]
    line = run_cli("exposure", SCENARIOS / "admin-tiers.yaml").stdout.splitlines()[1]
    assert line.endswith(
        "; tiers: new pod in dev: denied by ANP 'no-dev-to-prod' (priority 20) ingress "
        "rule 0 'deny-dev'"
    )
