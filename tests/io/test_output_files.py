"""Files the tool writes (`--pcap-dir`, `--junit`, `graph -o`): a path that cannot be
written is a clear error (exit 2, no traceback); capture names too long for a file name
are shortened deterministically and said so; scenario files never share a folder."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dataplane.pcap import NAME_MAX, file_name, scenario_dirs
from tests.io.helpers import SCENARIOS, run_cli

LONG = "p" * 240
LONG_POD = f"""\
name: long names
manifests:
  - {{kind: Pod, apiVersion: v1, metadata: {{name: {LONG}}}, spec: {{nodeName: node-1, containers: [{{name: c, image: x}}]}}}}
  - {{kind: Pod, apiVersion: v1, metadata: {{name: b}}, spec: {{nodeName: node-2, containers: [{{name: c, image: x, ports: [{{containerPort: 80}}]}}]}}}}
steps:
  - probe: {{from: default/{LONG}, to: default/b, port: 80, expect: delivered}}
"""


def test_a_pcap_dir_that_is_a_file_is_an_input_error(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("")
    for cmd in (
        ("run", SCENARIOS / "ttl-lesson.yaml"),
        ("replay", SCENARIOS / "replay-policy.yaml", "--pcap",
         SCENARIOS / "captures" / "client-raw-ip.pcap"),
    ):  # fmt: skip
        r = run_cli(*cmd, "-q" if cmd[0] == "run" else "--format=lines",
                    "--pcap-dir", target)  # fmt: skip
        assert r.exit_code == 2
        assert r.stderr == (
            f"error: {target}: exists and is not a directory (captures go into a "
            "directory)\n"
        )
        assert r.stdout == ""  # checked before anything runs


def test_a_long_pod_name_gives_a_shortened_capture_name(tmp_path: Path) -> None:
    scenario = tmp_path / "long.yaml"
    scenario.write_text(LONG_POD)
    r = run_cli("run", scenario, "-q", "--pcap-dir", tmp_path / "out")
    assert r.exit_code == 0, r.stderr
    name = f"node-1_pod-default-{LONG}_eth0.pcap"
    short = file_name(name)
    assert len(short.encode()) == NAME_MAX and short.startswith("node-1_pod-default-p")
    assert short.endswith(".pcap") and short == file_name(name)  # deterministic
    assert (tmp_path / "out" / short).is_file()
    assert (
        f"note: capture {name} is too long for a file name (269 bytes, at most 255): "
        f"written as {short}\n" in r.stderr
    )


def test_scenario_files_with_the_same_stem_get_their_own_folders(
    tmp_path: Path,
) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "lab.yaml").write_text(
            (SCENARIOS / "ttl-lesson.yaml").read_text()
        )
    files = [tmp_path / "a" / "lab.yaml", tmp_path / "b" / "lab.yaml"]
    subdirs = scenario_dirs(files)
    assert subdirs == ["lab-ffe63181", "lab-b828f616"]  # hash of a/lab.yaml, b/lab.yaml
    r = run_cli("run", *files, "-q", "--pcap-dir", tmp_path / "out")
    assert r.exit_code == 0, r.stderr
    for sub in subdirs:
        assert (tmp_path / "out" / sub / "node-1_pod-default-a_eth0.pcap").is_file()
    assert scenario_dirs([files[0], SCENARIOS / "ttl-lesson.yaml"]) == [
        "lab",
        "ttl-lesson",
    ]


@pytest.mark.parametrize(
    "where", ["file/x.xml", "missing-parent"], ids=["under-a-file", "dir"]
)
def test_an_unwritable_junit_path_is_an_input_error(where: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    target = tmp_path / where
    if where == "missing-parent":
        target.mkdir()  # a directory where the file should go
    r = run_cli("test", SCENARIOS / "ttl-lesson.yaml", "-q", "--junit", target)
    assert r.exit_code == 2
    reason = (
        f"{tmp_path / 'file'} is not a directory"
        if where.startswith("file")
        else "Is a directory"
    )
    assert r.stderr == f"error: {target}: cannot write the JUnit report: {reason}\n"


def test_an_unwritable_graph_output_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for out in ("x.svg", "x.png", "x.mmd"):
        target = tmp_path / "file" / out
        r = run_cli("graph", SCENARIOS / "ttl-lesson.yaml", "-o", target,
                    *(["--format", "mermaid"] if out.endswith("mmd") else []))  # fmt: skip
        assert r.exit_code == 2
        assert r.stderr == f"error: {target}: Not a directory\n"


def test_a_file_that_is_not_utf8_is_an_error_testcase_in_junit(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "bad.yaml").write_bytes(b"name: x\nsteps:\n  - probe: {}\n# \xff\xfe\n")
    (suite / "ttl.yaml").write_text((SCENARIOS / "ttl-lesson.yaml").read_text())
    r = run_cli("test", suite, "-q", "--junit", tmp_path / "j.xml")
    assert r.exit_code == 2
    message = (
        f"{suite / 'bad.yaml'}: cannot read scenario: not UTF-8 text ('utf-8' codec "
        "can't decode byte 0xff in position 31: invalid start byte)"
    )
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert (root.get("tests"), root.get("errors")) == ("5", "1")
    errors = [e.get("message") for e in root.iter("error")]
    assert errors == [message]
    assert len([c for c in root.iter("testcase") if c.find("error") is None]) == 4
    r = run_cli("run", suite / "bad.yaml")
    assert (r.exit_code, r.stderr) == (2, f"error: {message}\n")
