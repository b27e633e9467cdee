"""`dataplane verify`: the table, the exit statuses (0 agree, 1 mismatch, 2 cannot run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataplane import commands
from dataplane.cli import app
from tests.io.test_schemas import errors, validator

ROOT = Path(__file__).resolve().parent.parent.parent
commands.load()


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_it_says_in_one_line_why_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "dataplane.kernel.preflight.reason_not_to_run",
        lambda: "not root (network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN)",
    )
    code, out, err = invoke("verify", str(ROOT / "scenarios" / "same-node.yaml"))
    assert code == 2
    assert err == (
        "error: cannot run on this kernel: not root (network namespaces need "
        "CAP_NET_ADMIN and CAP_SYS_ADMIN)\n"
    )
    assert out == ""


def test_an_invalid_file_is_an_input_error_before_anything_is_built(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps: []\nsurprise: 1\n")
    code, _out, err = invoke("verify", str(bad))
    assert code == 2
    assert err.startswith("error: ")


@pytest.mark.kernel
def test_agreement_exits_0_with_both_verdicts_side_by_side() -> None:
    code, out, _err = invoke(
        "verify", str(ROOT / "scenarios" / "services-nodeport.yaml")
    )
    assert code == 0
    assert "7 probes: 7 agree, 0 mismatch" in out
    line = next(
        x for x in out.splitlines() if "external/laptop -> node/node-1:30081" in x
    )
    assert "dropped" in line and "denied" in line and "agree" in line


@pytest.mark.kernel
def test_a_mismatch_exits_1_and_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # A kernel without the NetworkPolicy rules: Linux now delivers what the policies deny.
    monkeypatch.setattr("dataplane.kernel.live.add_policy_rules", lambda *_args: None)
    code, out, _err = invoke(
        "verify", "-o", "json", str(ROOT / "scenarios" / "networkpolicy-lab.yaml")
    )
    assert code == 1
    report = json.loads(out)
    assert (report["schema_version"], report["type"]) == (1, "verify")
    assert errors(validator("results.schema.json"), report) == []
    rows = report["rows"]
    assert not report["ok"]
    first = rows[0]
    assert first["status"] == "MISMATCH"
    assert first["simulator"] in ("denied-ingress", "denied-egress")
    assert first["kernel"] == "delivered"
    statuses = [r["status"] for r in rows]
    assert statuses == sorted(statuses, key=lambda s: s != "MISMATCH")
