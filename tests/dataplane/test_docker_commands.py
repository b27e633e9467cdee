"""The commands on a scenario of Docker hosts: those that answer NetworkPolicy questions
refuse it naming what answers instead (exit 2); `matrix` walks every pair through
Docker's chains, the user's DOCKER-USER rules included."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataplane import commands
from dataplane.cli import app

DOCKER = Path(__file__).resolve().parents[2] / "scenarios" / "docker"
commands.load()
INSTEAD = (
    ", and a scenario of Docker hosts (cluster.runtime: docker) has none: instead,"
    " `dataplane trace FILE --from A --to B --port N` names Docker's chain and rule that"
    " decided, `dataplane matrix FILE --port N` walks every pair of containers through"
    " them, `dataplane run FILE` checks the steps' expectations\n"
)


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["connlist", "F"], "connlist lists the connections that NetworkPolicy allows"),
        (["diff", "F", "F"], "diff compares the connections that NetworkPolicy allows"),
        (["exposure", "F"], "exposure reads which NetworkPolicy selectors admit whom"),
        (
            ["explain", "F", "--from", "container/app-web-1", "--to",
             "container/app-db-1", "--port", "5432"],
            "explain names the NetworkPolicy rules that decided",
        ),
        (["explain", "F", "--all", "--port", "5432"],
         "explain names the NetworkPolicy rules that decided"),
        (["lint", "F"], "lint checks NetworkPolicies, admin policies and Services"),
    ],
    ids=["connlist", "diff", "exposure", "explain", "explain-all", "lint"],
)  # fmt: skip
def test_networkpolicy_commands_refuse_docker_hosts(args: list[str], what: str) -> None:
    path = str(DOCKER / "isolation.yaml")
    code, out, err = invoke(*(path if a == "F" else a for a in args))
    assert (code, out) == (2, "")
    assert err == f"error: {path}: {what}{INSTEAD}"


def test_matrix_walks_docker_hosts_with_their_docker_user_rules() -> None:
    path = str(DOCKER / "docker-user.yaml")
    code, out, err = invoke(
        "matrix", path, "--port", "9000", "--from", "external/laptop",
        "--from", "external/office", "--to", "node/host-1", "-o", "csv",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "from \\ to,node/host-1",
        "external/laptop,denied",
        "external/office,delivered",
    ]
