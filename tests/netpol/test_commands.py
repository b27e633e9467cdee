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
    assert lines[1].split() == ["from", "\\", "to", "1", "2", "3", "4", "5", "6"]
    assert lines[2].split() == ["1", "kube-system/coredns-0", "-", "I", "I", "-", "-", "."]  # fmt: skip
    assert lines[3].split() == ["2", "default/httpd-deployment-0", "E", ".", "E", "E", "E", "E"]  # fmt: skip
    assert lines[5].split() == ["4", "default/pod1", "-", "I", "I", "-", "-", "."]
    assert lines[6].split() == ["5", "default/frontend", "-", ".", ".", "-", "-", "."]
    assert lines[8].strip() == "(columns: the pods of the same numbers)"
    # Every symbol shown is explained, on the lines right under the grid.
    assert lines[9:13] == [
        ". delivered",
        "E denied by egress policy (of the source)",
        "I denied by ingress policy (of the destination)",
        "- does not listen on this port (refused: RST, ICMP port unreachable, ABORT)",
    ]
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
    code, out = invoke("matrix", LAB, "--counts", "-o", "csv")
    assert code == 2
    assert "error: --counts prints the counts as text; it cannot go with -o csv" in out


def test_matrix_with_other_columns_lists_them_in_the_block() -> None:
    code, out = invoke("matrix", LAB, "--to", "default/httpd-deployment-0", "--to", "dev/devpod")  # fmt: skip
    assert code == 0, out
    lines = out.splitlines()
    assert lines[1].split() == ["from", "\\", "to", "1", "2"]
    assert [x.strip() for x in lines[8:10]] == ["1 default/httpd-deployment-0", "2 dev/devpod"]  # fmt: skip


def test_matrix_a_named_port_is_resolved_per_destination() -> None:
    code, out = invoke("matrix", LAB, "--port", "http", "--from", "default/pod1")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[2].split() == ["1", "default/pod1", "-", "I", "I", "-", "-", "-"]
    assert "- no port named 'http' on that pod" in lines
    assert lines[-1] == "6 pair(s): 2 denied-ingress, 4 no-port"


def test_matrix_csv_md_dot() -> None:
    args = ("matrix", LAB, "--from", "default/pod1", "--from", "default/frontend",
            "--to", "default/httpd-deployment-0", "--to", "default/pod1")  # fmt: skip
    code, csv = invoke(*args, "-o", "csv")
    assert code == 0
    assert csv.splitlines() == [
        "from \\ to,default/httpd-deployment-0,default/pod1",
        "default/pod1,denied-ingress,refused",
        "default/frontend,delivered,refused",
    ]
    code, md = invoke(*args, "-o", "md")
    assert md.splitlines()[:4] == [
        "| from \\ to | `default/httpd-deployment-0` | `default/pod1` |",
        "|---|---|---|",
        "| `default/pod1` | `I` | `-` |",
        "| `default/frontend` | `.` | `-` |",
    ]
    assert "- `I` denied by ingress policy (of the destination)" in md.splitlines()
    code, dot = invoke(*args, "-o", "dot")
    assert dot.startswith('digraph "networkpolicy-lab: 2x2 port 80 TCP" {\n')
    assert ('  "default/pod1" -> "default/httpd-deployment-0" [color=red, style=dashed, '
            'label="I", tooltip="denied-ingress"];') in dot.splitlines()  # fmt: skip
    assert '  "default/frontend" -> "default/httpd-deployment-0" [color=green, tooltip="delivered"];' in dot.splitlines()  # fmt: skip


def test_matrix_json_says_which_direction_denied() -> None:
    import json

    code, out = invoke("matrix", LAB, "--from", "default/pod1", "--from",
                       "default/httpd-deployment-0", "--to", "default/httpd-deployment-0",
                       "--to", "dev/devpod", "-o", "json")  # fmt: skip
    assert code == 0, out
    doc = json.loads(out)
    assert (doc["schema_version"], doc["type"], doc["port"]) == (1, "matrix", 80)
    cells = {(c["from"], c["to"]): (c["verdict"], c["denied"]) for c in doc["cells"]}
    assert cells == {
        ("default/pod1", "default/httpd-deployment-0"): ("denied-ingress", "ingress"),
        ("default/pod1", "dev/devpod"): ("delivered", None),
        ("default/httpd-deployment-0", "default/httpd-deployment-0"): (
            "delivered",
            None,
        ),
        ("default/httpd-deployment-0", "dev/devpod"): ("denied-egress", "egress"),
    }


def test_matrix_rejects_an_unknown_output() -> None:
    r = CliRunner().invoke(app, ["matrix", LAB, "-o", "xml"])
    assert r.exit_code == 2
    assert "-o 'xml' is not allowed for `dataplane matrix` (allowed: text, csv, md, json, yaml, dot)" in r.output  # fmt: skip


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
    assert out.splitlines()[2].split() == ["1", "default/pod1", "."]


def test_matrix_icmp_needs_no_port() -> None:
    code, out = invoke("matrix", LAB, "--protocol", "icmp", "--from", "default/pod1")
    assert code == 0
    assert out.splitlines()[0] == "networkpolicy-lab: 1x6 ICMP"
    assert out.splitlines()[2].split() == [
        "1",
        "default/pod1",
        ".",
        "I",
        "I",
        ".",
        ".",
        ".",
    ]


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
    assert code == 1, out  # not delivered, as `kubectl auth can-i` answers no
    assert out.splitlines() == [
        "TCP default/pod1 -> svc/default/httpd:80",
        "kube-proxy chose the endpoint default/httpd-deployment-0",
        "egress on node-2 (FORWARD): default/pod1 is not isolated for egress (no NetworkPolicy selects it for Egress)",
        "ingress on node-2 (FORWARD): denied: default/httpd-deployment-0 is isolated for ingress by default/test-np, "
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
    assert code == 1
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
