"""`dataplane test`: the regression runner, its JUnit XML and its JSON Lines."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dataplane.suite import discover, is_scenario_file
from tests.io.helpers import run_cli

PODS = """\
manifests:
  - {kind: Pod, apiVersion: v1, metadata: {name: a}, spec: {nodeName: node-1, containers: [{name: c, image: busybox}]}}
  - {kind: Pod, apiVersion: v1, metadata: {name: c}, spec: {nodeName: node-2, containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]}}
"""
GOOD = f"""\
name: good
{PODS}steps:
  - probe: {{from: default/a, to: default/c, port: 80, expect: delivered}}
  - label: {{pod: default/a, set: {{role: x}}}}
"""
BAD = f"""\
name: regressed
{PODS}steps:
  - probe: {{from: default/a, to: default/c, port: 80, expect: delivered}}
  - name: the port was closed
    probe: {{from: default/a, to: default/c, port: 81, expect: delivered}}
"""
INVALID = """\
name: invalid
steps:
  - probe: {from: default/a, to: default/c, port: 99999}
"""
MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {name: x}
spec: {containers: [{name: c, image: busybox}]}
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "good.yaml").write_text(GOOD)
    (tmp_path / "lab" / "bad.yml").write_text(BAD)
    (tmp_path / "lab" / "manifests.yaml").write_text(MANIFEST)
    (tmp_path / "lab" / ".hidden").mkdir()
    (tmp_path / "lab" / ".hidden" / "x.yaml").write_text(BAD)
    return tmp_path / "lab"


def test_discover_finds_scenarios_only(suite: Path) -> None:
    assert [p.name for p in discover([suite])] == ["bad.yml", "good.yaml"]
    assert not is_scenario_file(suite / "manifests.yaml")
    with pytest.raises(FileNotFoundError):
        discover([suite / "nope"])


def test_one_line_per_step_and_exit_1_on_a_failed_expectation(suite: Path) -> None:
    r = run_cli("test", suite)
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith(
        f"ok   {suite}/bad.yml:6 probe default/a -> default/c:80 TCP"
    )
    assert lines[1].startswith(
        f"FAIL {suite}/bad.yml:7 the port was closed: probe default/a -> default/c:81 TCP"
    )
    assert lines[1].endswith("→ refused")
    assert lines[2].strip().startswith("expected delivered, got refused (parted at hop")
    assert lines[3].startswith("ok  ") and lines[4].startswith("-    ")
    assert lines[-2] == "2 files, 4 steps: 1 without expectations, 0 errors"
    assert lines[-1].startswith("2 passed, 1 failed in ")


def test_passing_suite_exits_0(suite: Path) -> None:
    r = run_cli("test", suite / "good.yaml", "-q")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[-1].startswith("1 passed, 0 failed")


def test_invalid_file_is_exit_2_and_the_others_still_run(suite: Path) -> None:
    (suite / "invalid.yaml").write_text(INVALID)
    r = run_cli("test", suite)
    assert r.exit_code == 2
    assert (
        f"ERROR {suite}/invalid.yaml:3: steps[0].probe.port: 99999 is out of range"
        in r.stdout
    )
    assert "1 errors" in r.stdout and "2 passed, 1 failed" in r.stdout


def test_junit_xml(suite: Path, tmp_path: Path) -> None:
    (suite / "invalid.yaml").write_text(INVALID)
    report = tmp_path / "out" / "junit.xml"
    run_cli("test", suite, "--junit", report)
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == (
        "5",
        "1",
        "1",
    )
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"regressed", "good", str(suite / "invalid.yaml")}
    cases = suites["regressed"].findall("testcase")
    assert [c.get("name") for c in cases] == [
        "step 1: probe default/a -> default/c:80 TCP",
        "step 2: the port was closed: probe default/a -> default/c:81 TCP",
    ]
    assert cases[1].get("line") == "7"
    assert cases[1].get("classname", "").endswith("lab.bad")
    failure = cases[1].find("failure")
    assert failure is not None and cases[0].find("failure") is None
    message = failure.get("message", "")
    assert message.startswith("expected delivered, got refused (parted at hop")
    assert "no socket listens on tcp/81 -> RST" in message
    text = failure.text or ""
    assert "expected: delivered" in text and "actual:   refused" in text
    assert "verdict refused" in text  # the minimal trace
    assert text.startswith("step:     the port was closed\n")
    error = suites[str(suite / "invalid.yaml")].find("testcase/error")
    assert error is not None and "99999 is out of range" in error.get("message", "")


def test_json_lines(suite: Path) -> None:
    r = run_cli("test", suite, "--json")
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["type"] for x in records] == [
        "step",
        "step",
        "summary",
        "step",
        "step",
        "summary",
        "total",
    ]
    assert records[1]["step"]["ok"] is False
    assert records[1]["step"]["expected"] == "delivered"
    assert records[1]["step"]["actual"] == "refused"
    assert records[-1] == {
        "schema_version": 1, "type": "total", "files": 2, "passed": 2, "failed": 1,
        "unchecked": 1, "errors": 0, "ok": False,
    }  # fmt: skip


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    r = run_cli("test", tmp_path / "nope")
    assert r.exit_code == 2
    assert r.stderr.startswith(f"error: {tmp_path / 'nope'}: No such file or directory")


@pytest.mark.parametrize(
    "extra", [(), ("--json",), ("-q",)], ids=["text", "json", "quiet"]
)
def test_jobs_print_the_same_as_one_job_in_file_order(
    suite: Path, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    (suite / "invalid.yaml").write_text(INVALID)
    serial = run_cli("test", suite, *extra, "--junit", tmp_path / "1.xml")
    parallel = run_cli("test", suite, "-j", "2", *extra, "--junit", tmp_path / "2.xml")
    assert parallel.exit_code == serial.exit_code == 2

    def timeless(text: str) -> list[str]:  # the elapsed time differs
        return [
            re.sub(r"in [0-9.]+s|\"time\": [0-9.e-]+", "", line)
            for line in text.splitlines()
        ]

    assert timeless(parallel.stdout) == timeless(serial.stdout)
    assert len(timeless(serial.stdout)) >= 4
    one, two = (ET.parse(tmp_path / f).getroot() for f in ("1.xml", "2.xml"))

    def cases(root: ET.Element) -> list[tuple[str | None, list[str | None]]]:
        return [
            (c.get("name"), [f.text for f in c.iter("failure")])
            for c in root.iter("testcase")
        ]

    assert cases(two) == cases(one)
    # a worker sends back the trace of a failed step: the failure text shows it
    failure = next(t[0] for _, t in cases(one) if t)
    assert failure is not None
    assert "# TCP default/a -> default/c:81 [vxlan]" in failure
    assert "deliver: no socket listens on tcp/81 -> RST" in failure


def test_jobs_must_be_positive(suite: Path) -> None:
    r = run_cli("test", suite, "-j", "0")
    assert r.exit_code == 2
    assert "error: --jobs 0 is out of range (allowed: 1 or more)" in r.stderr
