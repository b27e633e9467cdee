"""`dataplane matrix` and `dataplane explain` on the NetworkPolicy lab."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataplane import commands
from dataplane.cli import app

LAB = str(Path(__file__).resolve().parents[2] / "scenarios" / "networkpolicy-lab.yaml")
commands.load()


def invoke(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def test_matrix_prints_the_grid_and_the_counts() -> None:
    code, out = invoke("matrix", LAB, "--port", "80")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "networkpolicy-lab: 6x6 port 80 TCP"
    assert lines[1].split() == ["0", "1", "2", "3", "4", "5"]
    assert lines[2].split() == ["kube-system/coredns-0", "R", "X", "X", "R", "R", "."]
    assert lines[3].split() == [
        "default/httpd-deployment-0",
        "X",
        ".",
        "X",
        "X",
        "X",
        "X",
    ]
    assert lines[5].split() == ["default/pod1", "R", "X", "X", "R", "R", "."]
    assert lines[6].split() == ["default/frontend", "R", ".", ".", "R", "R", "."]
    assert (
        lines[-1]
        == "36 pair(s): 10 delivered, 10 denied-egress, 4 denied-ingress, 12 refused"
    )


def test_matrix_counts_prints_only_the_counts() -> None:
    code, out = invoke("matrix", LAB, "--port", "80", "--counts")
    assert code == 0, out
    assert out.splitlines() == [
        "networkpolicy-lab: 6x6 port 80 TCP",
        "36 pair(s): 10 delivered, 10 denied-egress, 4 denied-ingress, 12 refused",
    ]
    code, out = invoke("matrix", LAB, "--from", "node/node-1", "--counts")
    assert code == 0, out  # a node as the only source (it used to raise IndexError)
    assert out.splitlines()[-1] == "6 pair(s): 2 delivered, 1 denied-ingress, 3 refused"


def test_matrix_walk_gives_the_same_table() -> None:
    fast = invoke(
        "matrix", LAB, "--to", "default/httpd-deployment-0", "--to", "dev/devpod"
    )
    walked = invoke(
        "matrix",
        LAB,
        "--to",
        "default/httpd-deployment-0",
        "--to",
        "dev/devpod",
        "--walk",
    )
    assert fast == walked
    assert fast[0] == 0


def test_matrix_after_the_label_step() -> None:
    code, out = invoke(
        "matrix",
        LAB,
        "--at-step",
        "12",
        "--from",
        "default/pod1",
        "--to",
        "default/httpd-deployment-0",
    )
    assert code == 0
    assert out.splitlines()[2].split() == ["default/pod1", "."]


def test_matrix_icmp_needs_no_port() -> None:
    code, out = invoke("matrix", LAB, "--protocol", "icmp", "--from", "default/pod1")
    assert code == 0
    assert out.splitlines()[0] == "networkpolicy-lab: 1x6 ICMP"
    assert out.splitlines()[2].split() == ["default/pod1", ".", "X", "X", ".", ".", "."]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--protocol", "GRE"],
            "--protocol 'GRE' is not allowed (allowed: TCP, UDP, SCTP, ICMP)",
        ),
        (["--at-step", "99"], "--at-step 99 is out of range (allowed: 0-15)"),
    ],
)
def test_matrix_bad_options_exit_2(args: list[str], message: str) -> None:
    code, out = invoke("matrix", LAB, *args)
    assert code == 2
    assert message in out.replace("\n", "")


def test_explain_a_drop_in_prose() -> None:
    code, out = invoke(
        "explain",
        LAB,
        "--from",
        "default/pod1",
        "--to",
        "svc/default/httpd",
        "--port",
        "80",
    )
    assert code == 0, out
    assert out.splitlines() == [
        "TCP default/pod1 -> svc/default/httpd:80",
        "kube-proxy chose the endpoint default/httpd-deployment-1",
        "egress on node-2 (FORWARD): default/pod1 is not isolated for egress (no NetworkPolicy selects it for Egress)",
        "ingress on node-1 (FORWARD): denied: default/httpd-deployment-1 is isolated for ingress by default/test-np, "
        "and no rule admits traffic from default/pod1 on TCP 80:",
        "  - default/test-np ingress rule 0:",
        "      peer 0 (namespaceSelector project=dev): namespace default has no label project (wants project=dev)",
        "      peer 1 (podSelector role=frontend): default/pod1 has no label role (wants role=frontend)",
        "verdict: denied-ingress (policy default/test-np)",
    ]


def test_explain_an_admitted_connection() -> None:
    code, out = invoke(
        "explain",
        LAB,
        "--from",
        "dev/devpod",
        "--to",
        "default/httpd-deployment-0",
        "--port",
        "80",
    )
    assert code == 0
    assert (
        "ingress on node-2 (FORWARD): allowed by default/test-np ingress rule 0 peer 0 "
        "(namespaceSelector project=dev), ports TCP 80"
    ) in out
    assert "verdict: delivered (policy default/test-np)" in out


def test_explain_says_what_the_ingress_would_have_said_after_an_egress_drop() -> None:
    code, out = invoke(
        "explain",
        LAB,
        "--from",
        "default/httpd-deployment-0",
        "--to",
        "dev/devpod",
        "--port",
        "80",
    )
    assert code == 0
    assert (
        "egress on node-2 (FORWARD): denied: default/httpd-deployment-0 is isolated for egress"
        in out
    )
    assert (
        "ingress on node-2 (never reached; it would have said): dev/devpod is not isolated for ingress"
        in out
    )
    assert "verdict: denied-egress (policy default/test-np)" in out


def test_explain_traffic_no_filter_sees() -> None:
    code, out = invoke(
        "explain",
        LAB,
        "--from",
        "node/node-2",
        "--to",
        "default/httpd-deployment-0",
        "--port",
        "80",
    )
    assert code == 0
    assert "no NetworkPolicy check met this packet" in out
    assert "verdict: delivered" in out
