"""The `dataplane` command: exit statuses, error messages, the views of a trace."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dataplane(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataplane.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_run_passes_with_exit_0() -> None:
    r = dataplane("run", "--quiet", "scenarios/ttl-lesson.yaml")
    assert r.returncode == 0, r.stderr
    assert "4 passed, 0 failed" in r.stdout


def test_a_failed_expectation_exits_1_and_says_where(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "name: wrong\n"
        "manifests:\n"
        "  - {kind: Pod, apiVersion: v1, metadata: {name: a}, spec: {containers: [{name: c, image: x}]}}\n"
        "  - {kind: Pod, apiVersion: v1, metadata: {name: b}, spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}}\n"
        "steps:\n"
        "  - probe: {from: default/a, to: default/b, port: 81, expect: delivered}\n"
    )
    r = dataplane("run", "--quiet", str(f))
    assert r.returncode == 1
    assert f"{f}:6: expected delivered, got refused" in r.stdout
    assert "0 passed, 1 failed" in r.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nsteps: [\n", ":3"),
        (
            "name: x\nclustr: {}\nsteps: [{probe: {from: a/b, to: a/c, port: 1}}]\n",
            ":2",
        ),
        (
            "name: x\ncluster: {network: vxlam}\nsteps: [{probe: {from: a/b, to: a/c, port: 1}}]\n",
            "vxlam",
        ),
    ],
    ids=["yaml-syntax", "unknown-key", "bad-network"],
)
def test_invalid_input_exits_2_with_one_error_line(
    tmp_path: Path, text: str, message: str
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    r = dataplane("run", str(f))
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: {f}")
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""


def test_a_file_that_is_not_utf8_exits_2_naming_the_line(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"name: x\n# caf\xe9\nsteps: [{probe: {from: a/b, to: a/c}}]\n")
    r = dataplane("run", str(f))
    assert r.returncode == 2
    assert r.stderr == (
        f"error: {f}:2: not UTF-8 text (byte 0xe9 at line 2, column 6; YAML files are"
        " read as UTF-8)\n"
    )


def test_an_unknown_endpoint_is_an_input_error() -> None:
    r = dataplane(
        "trace",
        "scenarios/same-node.yaml",
        "--from",
        "default/a",
        "--to",
        "default/zz",
        "--port",
        "80",
    )
    assert r.returncode == 2
    assert "default/zz" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_missing_file_is_an_input_error() -> None:
    r = dataplane("run", "no-such-file.yaml")
    assert r.returncode == 2
    assert "no-such-file.yaml" in r.stderr
    assert "Traceback" not in r.stderr


def test_trace_shows_every_hop_and_the_verdict() -> None:
    r = dataplane(
        "trace",
        "scenarios/cross-node-vxlan.yaml",
        "--from",
        "default/a",
        "--to",
        "default/c",
        "--port",
        "80",
    )
    assert r.returncode == 0, r.stderr
    for text in ("flannel.1", "encap", "decap", "SYN-ACK", "verdict: delivered"):
        assert text in r.stdout


def test_trace_minimal_is_one_line_per_hop() -> None:
    r = dataplane(
        "trace",
        "scenarios/same-node.yaml",
        "--from",
        "default/a",
        "--to",
        "default/b",
        "--port",
        "80",
        "-o",
        "minimal",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("# TCP default/a -> default/b:80")
    assert lines[-1] == "verdict delivered"
    assert lines[1].startswith("1 node-1 pod:default/a route: 10.0.1.4 dev eth0")


def test_help_lists_the_commands() -> None:
    r = dataplane("--help")
    assert r.returncode == 0
    for cmd in ("run", "trace"):
        assert cmd in r.stdout


@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
    ids=["int", "term"],
)
def test_an_interrupt_exits_quietly_and_closes_the_captures(
    sig: signal.Signals, status: int, tmp_path: Path
) -> None:
    one = (ROOT / "scenarios/captures/client-raw-ip.pcap").read_bytes()
    (tmp_path / "big.pcap").write_bytes(one[:24] + one[24:] * 5000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataplane.cli", "replay", "scenarios/replay-policy.yaml",
         "--pcap", str(tmp_path / "big.pcap"), "--pcap-dir", str(tmp_path / "out")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # the default Ctrl-C handling, even where this test runs with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stdout is not None
    for _ in range(5):  # it is replaying and writing captures
        proc.stdout.readline()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status
    assert "Traceback" not in err
    capture = (tmp_path / "out" / "node-1_pod-default-client_eth0.pcap").read_bytes()
    size = 24
    while size < len(capture):  # every record whole: the file was closed, not cut
        size += 16 + int.from_bytes(capture[size + 8 : size + 12], "little")
    assert size == len(capture)


def test_a_capture_can_come_from_a_pipe() -> None:
    capture = (ROOT / "scenarios/captures/client-raw-ip.pcap").read_bytes()
    r = subprocess.run(
        [sys.executable, "-m", "dataplane.cli", "replay", "scenarios/replay-policy.yaml",
         "--pcap", "/dev/stdin"],
        cwd=ROOT, input=capture, capture_output=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == b"3 packets: delivered 2, refused 1"


def test_a_bad_compose_file_is_an_error_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    ports: [80:80:80]\n")
    (tmp_path / "s.yaml").write_text(
        "name: t\ncluster: {runtime: docker, nodes: [{name: h, ip: 10.100.0.2}]}\n"
        "compose: [{node: h, project: p, file: compose.yaml}]\n"
        "steps: [{probe: {from: node/h, to: localhost, port: 80}}]\n"
    )
    r = dataplane("run", str(tmp_path / "s.yaml"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.endswith(
        "compose.yaml:3: service p/web: services.web.ports[0]: '80:80:80' (a string):"
        " host IP '80' is not an IPv4 address (allowed: [HOST_IP:][HOST_PORT:]CONTAINER_PORT"
        '[/PROTOCOL], e.g. "8080:80", "127.0.0.1:8080:80/udp", "9090-9091:8080-8081")\n'
    )
