"""The shipped JSON Schemas: scenario files (for editors) and `--json` output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dataplane import render
from dataplane.suite import discover
from tests.io.helpers import CAPTURES, ROOT, SCENARIOS, run_cli
from tests.io.test_runner import BAD, GOOD

SCHEMAS = ROOT / "schemas"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(v: jsonschema.Draft202012Validator, doc: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(doc)]


def test_scenario_schema_is_in_sync_with_the_models() -> None:
    sys.path.insert(0, str(SCHEMAS))
    try:
        from make_schemas import scenario_schema_text  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SCHEMAS))
    shipped = (SCHEMAS / "scenario.schema.json").read_text()
    assert shipped == scenario_schema_text(), "run: python schemas/make_schemas.py"


@pytest.mark.parametrize(
    "path",
    discover([SCENARIOS]),
    ids=lambda p: str(p.relative_to(SCENARIOS)),
)
def test_every_shipped_scenario_validates(path: Path) -> None:
    assert (
        errors(validator("scenario.schema.json"), yaml.safe_load(path.read_text()))
        == []
    )


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"stepz": []}, "stepz"),
        ({"cluster": {"network": "flannel"}}, "flannel"),
        (
            {"steps": [{"probe": {"from": "a/b", "to": "c/d", "expect": "delivred"}}]},
            "delivred",
        ),
        (
            {"steps": [{"probe": {"from": "a/b", "to": "c/d", "protocl": "TCP"}}]},
            "protocl",
        ),
    ],
    ids=["unknown-key", "bad-network", "verdict-typo", "unknown-step-key"],
)
def test_editors_are_told_what_is_wrong(change: dict[str, Any], where: str) -> None:
    doc = {"name": "x", "steps": [{"probe": {"from": "a/b", "to": "c/d", "port": 80}}]}
    doc.update(change)
    found = errors(validator("scenario.schema.json"), doc)
    assert found and any(where in e for e in found), found


def test_results_schema_version_matches_the_code() -> None:
    schema = json.loads((SCHEMAS / "results.schema.json").read_text())
    versions = {
        d["properties"]["schema_version"]["const"]
        for k, d in schema["$defs"].items()
        if k.endswith("_record")
    }
    assert versions == {render.JSON_SCHEMA_VERSION}


def test_json_output_validates(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    (tmp_path / "broken.yaml").write_text("name: broken\nsteps: []\n")
    outputs = [
        run_cli("run", SCENARIOS / "networkpolicy-lab.yaml", "-o", "json"),
        run_cli("run", SCENARIOS / "replay-policy.yaml", "--json"),  # deprecated alias
        run_cli("test", tmp_path, "--json"),
        run_cli(
            "replay",
            SCENARIOS / "replay-policy.yaml",
            "--pcap",
            CAPTURES / "node-1-cbr0.pcap",
            "-o",
            "json",
        ),
    ]
    v = validator("results.schema.json")
    kinds: set[str] = set()
    for out in outputs:
        for line in out.stdout.splitlines():
            record = json.loads(line)
            assert errors(v, record) == [], record.get("type")
            kinds.add(record["type"])
            if record["type"] == "step":
                kinds.add("step:" + record["step"]["kind"])
    assert kinds >= {"step", "summary", "error", "total", "packet", "replay",
                     "step:probe", "step:matrix", "step:replay", "step:apply"}  # fmt: skip


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_every_command_document_validates(fmt: str) -> None:
    lab = SCENARIOS / "networkpolicy-lab.yaml"
    pair = ("--from", "default/pod1", "--to", "default/httpd-deployment-0")
    outputs = {
        "trace": run_cli("trace", SCENARIOS / "cross-node-vxlan.yaml", "--from", "default/a",
                         "--to", "default/c", "--port", "80", "-o", fmt),
        "explain": run_cli("explain", lab, *pair, "--port", "80", "-o", fmt),
        "matrix": run_cli("matrix", lab, "--port", "http", "-o", fmt),
        "lint": run_cli("lint", SCENARIOS / "policy-mistakes.yaml", "-o", fmt, "--fail-on", "none"),
        "exposure": run_cli("exposure", lab, "-o", fmt),
        "quiz": run_cli("quiz", lab, "-o", fmt),
        "connlist": run_cli("connlist", lab, "-o", fmt),
        "diff": run_cli("diff", lab, lab, "-o", fmt),
        "explain-all": run_cli("explain", lab, "--all", "-p", "80", "-o", fmt),
    }  # fmt: skip
    v = validator("results.schema.json")
    for kind, out in outputs.items():
        # explain answers like `kubectl auth can-i`: 1, the connection is denied
        assert out.exit_code == (1 if kind == "explain" else 0), out.stderr
        doc = json.loads(out.stdout) if fmt == "json" else yaml.safe_load(out.stdout)
        assert (doc["schema_version"], doc["type"]) == (
            render.JSON_SCHEMA_VERSION,
            kind,
        )
        assert errors(v, doc) == [], kind
    explained = yaml.safe_load(outputs["explain"].stdout)
    assert [(c["direction"], c["allowed"]) for c in explained["checks"]] == [
        ("egress", True),
        ("ingress", False),
    ]
    assert explained["verdict"] == "denied-ingress"


def test_an_unknown_key_breaks_the_schema() -> None:
    """The step record is closed: a new key must be documented (and the version kept)."""
    record = {"schema_version": 1, "type": "summary", "scenario": "x", "file": None,
              "ok": True, "counts": {"steps": 0, "passed": 0, "failed": 0, "unchecked": 0},
              "warnings": [], "surprise": 1}  # fmt: skip
    assert errors(validator("results.schema.json"), record)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_the_explain_all_document_with_tiers_validates(fmt: str) -> None:
    out = run_cli(
        "explain", SCENARIOS / "admin-tiers.yaml", "--all", "-p", "80", "-o", fmt
    )
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout) if fmt == "json" else yaml.safe_load(out.stdout)
    assert errors(validator("results.schema.json"), doc) == []
    assert {p["tier"] for p in doc["pairs"]} == {"Admin", "NetworkPolicy", "Baseline",
                                                 "default"}  # fmt: skip
    doc["pairs"][0]["tier"] = "Cluster"
    assert errors(validator("results.schema.json"), doc)
