"""`dataplane run -o minimal`: one stable line per hop, for golden files."""

from __future__ import annotations

import re
from pathlib import Path

from tests.io.helpers import SCENARIOS, run_cli

HOP = re.compile(r"^(\d+) (\S+)( \S+)*? <?[A-Za-z]+: .*$")


def minimal(path: Path, columns: str = "200") -> str:
    from typer.testing import CliRunner

    from dataplane import commands
    from dataplane.cli import app

    commands.load()
    r = CliRunner().invoke(
        app, ["run", str(path), "-o", "minimal"], env={"COLUMNS": columns}
    )
    assert r.exit_code == 0, r.stderr
    return r.stdout


def test_same_bytes_whatever_the_terminal_and_the_run() -> None:
    path = SCENARIOS / "cross-node-vxlan.yaml"
    first = minimal(path, "40")
    assert first == minimal(path, "300") == minimal(path)


def test_no_timestamps_widths_colours_or_paths() -> None:
    out = minimal(SCENARIOS / "networkpolicy-lab.yaml")
    assert "\x1b[" not in out
    assert str(SCENARIOS) not in out and ".yaml" not in out
    assert not re.search(r"(?<![:\w])\d\d:\d\d:\d\d(?![:\w])|\d+\.\d+s\b", out)
    hops = [line for line in out.splitlines() if HOP.match(line)]
    assert len(hops) > 100
    assert not [h for h in hops if "  " in h]  # no padding to a width


def test_layout() -> None:
    lines = minimal(SCENARIOS / "cross-node-vxlan.yaml").splitlines()
    assert lines[0] == "== scenario cross-node pods (vxlan)"
    assert lines[1] == "-- step 1 probe: probe default/a -> default/c:80 TCP"
    assert lines[2] == "# TCP default/a -> default/c:80 [vxlan]"
    assert (
        lines[3]
        == "1 node-1 pod:default/a route: 10.0.2.2 via 10.0.1.1 dev eth0 (default route) | IP 10.0.1.3 > 10.0.2.2 ttl 64 len 40 DF / TCP 40000 > 80 S"
    )
    step1 = lines[3 : lines.index("=> ok delivered")]
    hops, verdict = step1[:-1], step1[-1]
    assert verdict == "verdict delivered"
    assert all(HOP.match(h) for h in hops), [h for h in hops if not HOP.match(h)]
    assert [int(h.split()[0]) for h in hops] == list(range(1, len(hops) + 1))
    encap = next(h for h in hops if " flannel.1 encap: " in h)
    assert encap.startswith(
        f"{encap.split()[0]} node-1 host flannel.1 encap: VXLAN vni 1"
    )
    assert any(" <deliver: SA from 10.0.2.2:80" in h for h in hops)  # a reply hop
    assert (
        lines[-1]
        == "== cross-node pods (vxlan): 10 passed, 0 failed, 0 without expectations"
    )


def test_failures_and_replays_have_stable_lines(tmp_path: Path) -> None:
    out = minimal(SCENARIOS / "replay-policy.yaml").splitlines()
    assert "packet 7 at default/other: denied-ingress" in out
    assert "=> ok delivered 7, denied-ingress 3, skipped 10" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (SCENARIOS / "ttl-lesson.yaml")
        .read_text()
        .replace("expect: delivered}", "expect: refused}")
    )
    r = run_cli("run", bad, "-o", "minimal")
    assert r.exit_code == 1
    assert (
        "=> FAIL delivered: expected refused, got delivered (parted at hop" in r.stdout
    )
