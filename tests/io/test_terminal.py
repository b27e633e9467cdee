r"""What the user wrote prints literally: no rich markup (`[/]`, `[bold]x`), no emoji codes
(`:100:`, `web:x:1`), control characters escaped (`\x1b[31m` as `\\x1b[31m`)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.table import Table

from dataplane.terminal import Console, escape_controls, literal
from tests.io.helpers import SCENARIOS, run_cli

NASTY = ":100: [/] [bold]x web:x:1 \x1b[31mred\x1b[0m \r\x07\u202e"
SHOWN = ":100: [/] [bold]x web:x:1 \\x1b[31mred\\x1b[0m \\x0d\\x07\\u202e"


def printed(*renderables: object) -> str:
    out = io.StringIO()
    console = Console(file=out, width=300, force_terminal=False)
    for r in renderables:
        console.print(r)
    return out.getvalue()


def test_escape_controls() -> None:
    assert escape_controls(NASTY) == SHOWN
    assert escape_controls("a\tb\nc") == "a\tb\nc"


def test_strings_text_and_table_cells_print_literally() -> None:
    table = Table(title=literal(NASTY))
    table.add_column("x")
    table.add_row(NASTY)
    table.add_row(literal(NASTY, "bold"))
    out = printed(NASTY, literal(NASTY), table)
    assert out.count(SHOWN) == 5
    assert "\x1b" not in out and "💯" not in out and "❌" not in out


def scenario(tmp_path: Path, name: str, pad: int = 0) -> Path:
    text = (SCENARIOS / "ttl-lesson.yaml").read_text()
    text = text.replace("name: the TTL lesson", f'name: "{name}"')
    path = tmp_path / "s.yaml"
    path.write_text("#\n" * pad + text)
    return path


@pytest.mark.parametrize(
    "cmd", [["run"], ["run", "-q"], ["run", "--format", "minimal"], ["test"],
            ["trace", "--from", "default/a", "--to", "default/b", "--port", "80"]],
    ids=["run", "run-quiet", "run-minimal", "test", "trace"],
)  # fmt: skip
def test_a_nasty_scenario_name_prints_literally(cmd: list[str], tmp_path: Path) -> None:
    yaml_name = (
        NASTY.replace("\x1b", "\\e")
        .replace("\r", "\\r")
        .replace("\x07", "\\a")
        .replace("\u202e", "\\u202e")
    )
    r = run_cli(cmd[0], scenario(tmp_path, yaml_name), *cmd[1:])
    assert r.exit_code == 0, r.stderr
    assert "\x1b" not in r.stdout and "💯" not in r.stdout
    if cmd[0] == "run" and "-q" not in cmd:
        assert SHOWN in r.stdout
    if "minimal" in cmd:
        assert f"== scenario {SHOWN}\n" in r.stdout


def test_an_error_on_line_100_keeps_its_line_number(tmp_path: Path) -> None:
    path = scenario(tmp_path, "x", pad=88)
    text = path.read_text().replace("ttl: 1}", "ttl: 1, bogus: x:1}", 1)
    path.write_text(text)
    lines = text.splitlines()
    assert lines[99].startswith("  - name: TTL 1")  # the step starts on line 100
    r = run_cli("run", path)
    assert r.exit_code == 2
    assert f"error: {path}:100: step 1: send.packet[0].IP.bogus: not a field of IP" in (
        r.stderr
    )


def test_a_scenario_named_like_markup_is_not_markup(tmp_path: Path) -> None:
    r = run_cli("run", scenario(tmp_path, "[/]"))
    assert r.exit_code == 0, r.stderr
    assert " [/]  " in r.stdout
