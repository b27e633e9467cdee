"""`{file: ...}` includes: confined to the scenario's folder, regular files only, size caps,
and errors that never quote what a file holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataplane.cli import app
from topology import include
from topology.errors import TopologyError
from topology.loader import load_scenario

STEP = "steps:\n  - probe: {from: default/a, to: default/b}\n"
PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/bin/sh\n"
POD = "{apiVersion: v1, kind: Pod, metadata: {name: %s}, spec: {containers: [{name: c}]}}\n"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in tmp_path, so messages show short relative names."""
    monkeypatch.chdir(tmp_path)


def scenario(tmp_path: Path, entries: str, name: str = "lab.yaml") -> Path:
    """A scenario lab/NAME whose manifests are `entries` (YAML list items)."""
    folder = tmp_path / "lab"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"name: t\nmanifests:\n{entries}{STEP}")
    return Path("lab") / name


def load_error(path: Path, **kwargs: object) -> str:
    with pytest.raises(TopologyError) as info:
        load_scenario(path, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_an_absolute_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pods.yaml").write_text(POD % "a")
    path = scenario(tmp_path, f"  - {{file: {tmp_path / 'pods.yaml'}}}\n")
    assert load_error(path) == (
        f"{path}:3: manifests[0].file: '{tmp_path / 'pods.yaml'}' is an absolute path"
        " (allowed: a path relative to the scenario file, inside its folder)"
    )


def test_dot_dot_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pods.yaml").write_text(POD % "a")
    path = scenario(tmp_path, "  - {file: ../pods.yaml}\n")
    assert load_error(path) == (
        f"{path}:3: manifests[0].file: '../pods.yaml' resolves outside the scenario's"
        " folder (allowed: files and folders inside it, symlinks resolved)"
    )


def test_dot_dot_that_stays_inside_is_fine(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: sub/../pods.yaml}\n")
    (path.parent / "sub").mkdir()
    (path.parent / "pods.yaml").write_text(POD % "a")
    loaded, _ = load_scenario(path)
    assert "default/a" in loaded.cluster.pods


def test_a_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text(POD % "a")
    path = scenario(tmp_path, "  - {file: link.yaml}\n")
    (path.parent / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    assert "'link.yaml' resolves outside the scenario's folder" in load_error(path)


def test_a_symlink_inside_a_folder_leading_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text(POD % "a")
    path = scenario(tmp_path, "  - {file: objects}\n")
    (path.parent / "objects").mkdir()
    (path.parent / "objects" / "a.yaml").symlink_to(tmp_path / "secret.yaml")
    assert load_error(path) == (
        f"{path}:3: manifests[0].file: 'objects/a.yaml' resolves outside the"
        " scenario's folder (allowed: files and folders inside it, symlinks resolved)"
    )


def test_a_symlink_to_dev_zero_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: zero.yaml}\n")
    (path.parent / "zero.yaml").symlink_to("/dev/zero")
    assert "'zero.yaml' resolves outside the scenario's folder" in load_error(path)


def test_a_fifo_is_never_opened(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: pipe.yaml}\n")
    os.mkfifo(
        tmp_path / "lab" / "pipe.yaml"
    )  # opening it for reading would block forever
    assert load_error(path) == (
        f"{path}:3: manifests[0].file: 'pipe.yaml' is a FIFO (named pipe) (allowed: a"
        " regular file or a folder)"
    )


def test_a_fifo_in_a_folder_is_never_opened(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: objects}\n")
    (path.parent / "objects").mkdir()
    (path.parent / "objects" / "a.yaml").write_text(POD % "a")
    os.mkfifo(path.parent / "objects" / "b.yaml")
    assert "'lab/objects/b.yaml' is a FIFO (named pipe) (allowed: regular files)" in (
        load_error(path)
    )


def test_a_device_on_the_command_line_is_refused(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  []\n")
    assert load_error(path, manifests=["/dev/zero"]) == (
        "/dev/zero: '/dev/zero' is a character device (allowed: a regular file or a"
        " folder)"
    )


def test_a_fifo_as_the_scenario_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "lab.yaml")
    assert load_error(Path("lab.yaml")) == (
        "lab.yaml: cannot read scenario: it is a FIFO (named pipe)"
        " (allowed: a regular file)"
    )


def test_a_file_over_the_size_cap_is_not_read(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: big.yaml}\n")
    with (path.parent / "big.yaml").open("wb") as f:
        f.truncate(include.MAX_FILE_BYTES + 1)  # sparse: no disk, no reading
    assert load_error(path) == (
        f"{path}:3: manifests[0].file: 'lab/big.yaml' is 10,485,761 bytes (allowed: at most 10 MB"
        " per file)"
    )


def test_the_files_of_a_scenario_have_a_total_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(include, "MAX_TOTAL_BYTES", 2 * len(POD % "a") - 1)
    path = scenario(tmp_path, "  - {file: objects}\n")
    (path.parent / "objects").mkdir()
    for name in "abc":
        (path.parent / "objects" / f"{name}.yaml").write_text(POD % name)
    assert (
        "reading 'lab/objects/b.yaml' brings the files of this scenario to more than"
        in (load_error(path))
    )


@pytest.mark.parametrize("where", ["include", "command-line"])
def test_a_file_that_is_not_yaml_is_never_quoted(tmp_path: Path, where: str) -> None:
    path = scenario(
        tmp_path, "  - {file: passwd}\n" if where == "include" else "  []\n"
    )
    (path.parent / "passwd").write_text(PASSWD)
    extra = {"manifests": [str(path.parent / "passwd")]} if where != "include" else {}
    message = load_error(path, **extra)
    assert "root" not in message
    assert "bin" not in message
    shown = "lab/passwd"
    assert message == (
        f"{shown}:1: a manifest is a Kubernetes object (a mapping), got a string"
    )


def test_etc_passwd_is_not_echoed_by_run_in_text_or_json(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  []\n")
    (path.parent / "passwd").write_text(PASSWD)
    runner = CliRunner()
    for extra in ([], ["--json"]):
        result = runner.invoke(
            app, ["run", str(path), "--manifests", str(path.parent / "passwd"), *extra]
        )
        assert result.exit_code == 2
        assert "root:x" not in result.output
        assert "root:x" not in (result.stderr or "")
        assert "got a string" in result.stderr


def test_binary_data_is_refused_without_quoting(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: blob.yaml}\n")
    (path.parent / "blob.yaml").write_bytes(b"kind: \xff\xfe secret\n")
    # the file's own line and column of the bad byte, never its text
    assert load_error(path) == (
        f"{path.parent / 'blob.yaml'}:1: not UTF-8 text (byte 0xff at line 1, column 7;"
        " YAML files are read as UTF-8)"
    )


def test_a_folder_symlink_cycle_is_an_error(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: objects}\n")
    (path.parent / "objects").mkdir()
    (path.parent / "objects" / "a.yaml").write_text(POD % "a")
    (path.parent / "objects" / "again").symlink_to(tmp_path / "lab" / "objects")
    assert load_error(path) == (
        f"{path}:3: manifests[0].file: folder 'lab/objects/again' leads back to a folder"
        " being read (a symlink cycle)"
    )


def test_includes_do_not_nest(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: outer.yaml}\n")
    (path.parent / "outer.yaml").write_text("file: lab.yaml\n")
    assert load_error(path) == (
        "lab/outer.yaml:1: {file: ...} is only allowed in the scenario file (includes do"
        " not nest)"
    )


def test_a_missing_file_names_the_entry(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: nope.yaml}\n")
    assert load_error(path) == (
        f"{path}:3: manifests[0].file: cannot read manifest file 'nope.yaml': No such"
        " file or directory"
    )


def test_run_manifests_adds_a_folder_of_objects(tmp_path: Path) -> None:
    path = Path("lab.yaml")
    path.write_text(
        "name: t\nsteps:\n  - probe: {from: default/a, to: default/b, port: 80,"
        " expect: delivered}\n"
    )
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "a.yaml").write_text(POD % "a")
    (tmp_path / "more" / "b.yml").write_text(
        "{apiVersion: v1, kind: Pod, metadata: {name: b}, spec: {containers:"
        " [{name: c, ports: [{containerPort: 80}]}]}}\n"
    )
    result = CliRunner().invoke(app, ["run", "-q", str(path), "--manifests", "more"])
    assert result.exit_code == 0, result.output
    assert "t: 1 passed, 0 failed" in result.stdout


def test_a_folder_include_passes_over_the_scenario_itself(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: .}\n")
    (tmp_path / "lab" / "pods.yaml").write_text(POD % "a")
    loaded, warnings = load_scenario(path)
    assert "default/a" in loaded.cluster.pods
    assert warnings == []


def test_an_empty_folder_is_a_warning(tmp_path: Path) -> None:
    path = scenario(tmp_path, "  - {file: empty}\n")
    (tmp_path / "lab" / "empty").mkdir()
    (tmp_path / "lab" / "empty" / "notes.txt").write_text("not a manifest\n")
    _, warnings = load_scenario(path)
    assert warnings == [
        "lab/lab.yaml:3: manifests[0].file: 'empty' holds no manifest file (*.yaml,"
        " *.yml, *.json)"
    ]


def test_a_symlink_deep_in_a_folder_is_named_by_its_path(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text(POD % "a")
    path = scenario(tmp_path, "  - {file: objects}\n")
    (tmp_path / "lab" / "objects" / "sub").mkdir(parents=True)
    (tmp_path / "lab" / "objects" / "sub" / "a.yaml").symlink_to(
        tmp_path / "secret.yaml"
    )
    assert "'objects/sub/a.yaml' resolves outside the scenario's folder" in (
        load_error(path)
    )


def test_folders_hold_a_bounded_number_of_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(include, "MAX_FILES", 2)
    path = scenario(tmp_path, "  - {file: objects}\n")
    (tmp_path / "lab" / "objects").mkdir()
    for name in "abc":
        (tmp_path / "lab" / "objects" / f"{name}.yaml").write_text(POD % name)
    assert load_error(path) == (
        f"{path}:3: manifests[0].file: more than 2 manifest files (allowed: at most 2"
        " for one scenario)"
    )


def test_a_capture_to_replay_must_be_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    os.mkfifo(tmp_path / "lab" / "pipe.pcap")
    path = Path("lab") / "lab.yaml"
    path.write_text("name: t\nsteps:\n  - replay: {pcap: pipe.pcap, at: default/a}\n")
    assert load_error(path) == (
        f"{path}:3: steps[0].replay.pcap: 'pipe.pcap' is a FIFO (named pipe) (allowed:"
        " a file)"
    )
