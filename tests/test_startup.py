"""What the CLI imports at start-up: each command imports its own machinery when it runs.

`dataplane --help` lists every command from their modules, which import only typer, rich
and the shared options at their top; `dataplane trace` imports no other command.  Timing is
bench/bench_startup.py's; these tests assert on `sys.modules`, in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from dataplane import commands
from topology import schema
from topology.model import NetworkMode

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("scapy", "pydantic", "yaml", "networkx", "netaddr", "pyroute2")


def python(code: str) -> str:
    """What a fresh interpreter prints running `code`."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def imported(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    return set(json.loads(python(script).splitlines()[-1]))


def packages(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize(
    "code",
    ["import dataplane.cli", "from dataplane import cli, commands; commands.load()"],
    ids=["cli", "every-command-module"],
)
def test_the_cli_and_its_command_modules_import_no_machinery(code: str) -> None:
    modules = imported(code)
    assert packages(modules) & set(HEAVY) == set()
    assert "topology.schema" not in modules
    assert "dataplane.sim" not in modules
    # `dataplane --help` needs the CNI names (`init`'s options), not the model's records
    assert "topology.model" not in modules


def test_a_trace_imports_no_other_command_and_no_scapy(tmp_path: Path) -> None:
    out = tmp_path / "trace.txt"
    modules = imported(
        "import sys\n"
        "from dataplane.cli import main\n"
        f"sys.argv = ['dataplane', 'trace', 'scenarios/same-node.yaml', '--from', "
        f"'default/a', '--to', 'default/b', '--port', '80', '-o', 'minimal']\n"
        f"sys.stdout = open({str(out)!r}, 'w')\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stdout.close(); sys.stdout = sys.__stdout__"
    )
    assert "deliver" in out.read_text()  # the probe was walked
    assert {m for m in modules if m.startswith("dataplane.commands.")} == set()
    assert "scapy" not in packages(modules)


def test_every_command_is_in_the_registry_in_help_order() -> None:
    """A command module's commands are found lazily only through `COMMANDS`."""
    import typer

    from dataplane.cli import app

    commands.load()
    registered = [
        info.name or info.callback.__name__  # type: ignore[union-attr]
        for info in app.registered_commands
    ]
    # registered in the order the modules were first imported (by other tests too)
    assert sorted(registered) == sorted(["run", "trace", *commands.COMMANDS])
    group = typer.main.get_command(app)
    listed = list(group.commands)  # type: ignore[attr-defined]
    assert listed == ["run", "trace", *commands.COMMANDS]


def test_dataplane_init_offers_every_network_mode_of_the_schema() -> None:
    assert get_args(schema.NetworkName) == tuple(m.value for m in NetworkMode)


def test_the_workers_of_jobs_import_nothing_their_parent_did_not() -> None:
    """`dataplane test -j N` forks its workers after `suite.preload()`: running every
    shipped scenario after it imports no further module of the project or of scapy (each
    worker would import it again)."""
    preload = "from dataplane.suite import discover, preload, run_file\npreload()\n"
    after = imported(
        preload + "from pathlib import Path\n"
        "runs = [run_file(f) for f in discover([Path('scenarios')])]\n"
        "assert runs and all(r.error is None for r in runs)"
    )
    new = after - imported(preload)
    assert {
        m for m in new if m.split(".")[0] in ("dataplane", "topology", "scapy")
    } == set()


def test_scapy_loads_without_reading_this_machines_routes() -> None:
    """A DNS message is read with scapy's layers, loaded
    without the host's routing tables (`dataplane.packet.scapy_ready`)."""
    out = python(
        "from dataplane.dns import DNSMessage\n"
        "from scapy.config import conf\n"
        "msg = DNSMessage.from_bytes(bytes.fromhex("
        "'000101000001000000000000037777770000010001'))\n"
        "assert msg is not None and msg.qname == 'www.', msg\n"
        "print(conf.route.routes, conf.route6.routes)"
    )
    assert out.split() == ["[]", "[]"]
