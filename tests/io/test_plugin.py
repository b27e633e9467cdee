"""The pytest plugin: scenario files are collected, each step is a test item."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.io.test_runner import BAD, GOOD, INVALID, MANIFEST


def pytest_in(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A separate pytest run in `path` (the plugin comes in by its entry point)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=path,
        capture_output=True,
        text=True,
        check=False,
    )


def test_scenarios_are_collected_step_by_step(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    (tmp_path / "manifest.yaml").write_text(MANIFEST)
    r = pytest_in(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "PASSED good.yaml::step1-probe" in out
    assert "PASSED good.yaml::step2-label" in out
    assert "PASSED bad.yaml::step1-probe" in out
    assert "FAILED bad.yaml::step2-probe[the port was closed]" in out
    assert "1 failed, 3 passed" in out
    assert "manifest.yaml" not in out
    # the failure says what was expected, what happened, where, and shows the trace
    assert f"{tmp_path}/bad.yaml:7: probe default/a -> default/c:81 TCP" in out
    assert "expected delivered, got refused (parted at hop" in out
    assert "no socket listens on tcp/81 -> RST" in out
    assert "verdict refused" in out


def test_selection_does_not_change_what_later_steps_see(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  - label:",
        "  - delete: [pod/default/c]\n"
        "  - probe: {from: default/a, to: default/c, port: 80, expect: delivered}\n"
        "  - label:",
    )
    (tmp_path / "s.yaml").write_text(text)
    r = pytest_in(tmp_path, "-k", "step3")
    assert (
        r.returncode == 1
    )  # step 3 runs after step 2 deleted the pod, even deselected
    assert "could not run" in r.stdout and "default/c" in r.stdout


def test_invalid_scenario_is_a_collection_error(tmp_path: Path) -> None:
    (tmp_path / "invalid.yaml").write_text(INVALID)
    r = pytest_in(tmp_path)
    assert r.returncode == 2
    assert "invalid.yaml:3: steps[0].probe.port: 99999 is out of range" in r.stdout
    assert "Traceback" not in r.stdout


def test_collection_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "pytest.ini").write_text("[pytest]\ndataplane_scenarios = false\n")
    r = pytest_in(tmp_path)
    assert r.returncode == 5  # no tests collected


def test_under_xdist_the_results_are_those_of_a_serial_run(tmp_path: Path) -> None:
    """`pytest -n 2`: every step of a file runs on one worker, once, in order."""
    for name in ("good", "bad", "good2", "bad2"):
        text = GOOD if name.startswith("good") else BAD
        (tmp_path / f"{name}.yaml").write_text(text)

    def outcomes(r: subprocess.CompletedProcess[str]) -> list[str]:
        lines = r.stdout.splitlines()
        return sorted(
            line.split(" - ")[0]
            for line in lines
            if line.startswith(("PASSED ", "FAILED ", "ERROR "))
        )

    serial = pytest_in(tmp_path)
    parallel = pytest_in(tmp_path, "-n", "2")
    assert parallel.returncode == serial.returncode == 1, parallel.stdout
    assert outcomes(parallel) == outcomes(serial)
    assert len(outcomes(serial)) == 8
    assert "created: 2/2 workers" in parallel.stdout
    # -k with workers: a deselected earlier step still runs first, on the same worker
    text = GOOD.replace(
        "  - label:",
        "  - delete: [pod/default/c]\n"
        "  - probe: {from: default/a, to: default/c, port: 80, expect: delivered}\n"
        "  - label:",
    )
    (tmp_path / "s.yaml").write_text(text)
    r = pytest_in(tmp_path, "-n", "2", "-k", "s.yaml and step3")
    assert "could not run" in r.stdout and "default/c" in r.stdout
