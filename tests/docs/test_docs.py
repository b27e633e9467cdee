"""The documentation is the contract, so its examples are tests.

- Every ```yaml block of docs/*.md and README.md that is a whole scenario (a mapping with
  `steps`) loads with the project's loader and runs with every expectation met; paths in
  it are relative to the repository root, as if the file were saved there.
- A block preceded by `<!-- fragment: NAME -->` is a piece of a scenario, validated against
  that part of schemas/scenario.schema.json (NAME: a `$defs` entry such as `ExpectModel`,
  or a top-level key such as `manifests`).
- A block preceded by `<!-- skip: REASON -->` is not checked; the reason must be given.
- Every ```sh block runs, line by line, in a fresh copy of the repository's files (what a
  clone holds) with `.venv/bin` on PATH and COLUMNS=200 (a wide terminal); the blocks of
  one page run in order in one copy.
  A command "runs" when it exits with status 0, or with the status its line states in a
  trailing `# exit status N` comment, and prints no traceback.  When a ```text block
  follows a ```sh block, its lines (but `...`) appear, in order, in the output of the last
  command of that block.
- Every ```python block runs with the venv's Python in such a copy and exits 0; a
  `print(...)  # TEXT` line must print TEXT.
- Every command of `dataplane --help`, and every option of each, is documented in
  docs/cli.md, under its command's heading.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
import yaml

from dataplane.scenario import run_scenario
from topology.loader import load_scenario_text

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
SCHEMA = json.loads((ROOT / "schemas" / "scenario.schema.json").read_text())
VENV_BIN = Path(sys.executable).parent
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```\n", re.MULTILINE | re.DOTALL)
MARK = re.compile(r"<!--\s*(fragment|skip):\s*(.*?)\s*-->\s*\Z", re.DOTALL)
EXIT = re.compile(r"#\s*exit status (\d+)")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    text: str
    mark: tuple[str, str] | None  # ("fragment" | "skip", argument)
    output: str | None  # the ```text block right after it, if any

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, each with the marker comment right before it."""
    source = page.read_text()
    found = list(FENCE.finditer(source))
    out = []
    for i, m in enumerate(found):
        before = source[: m.start()].rstrip()
        last_comment = before[before.rfind("<!--") :] if "<!--" in before else ""
        mark = MARK.search(last_comment) if last_comment.endswith("-->") else None
        nxt = found[i + 1] if i + 1 < len(found) else None
        output = None
        between = source[m.end() : nxt.start()] if nxt is not None else "x"
        if nxt is not None and nxt.group(2) == "text" and not between.strip():
            output = textwrap.dedent(nxt.group(3))
        out.append(
            Block(
                page,
                source.count("\n", 0, m.start()) + 1,
                m.group(2),
                textwrap.dedent(m.group(3)),
                (mark.group(1), mark.group(2)) if mark else None,
                output,
            )
        )
    return out


ALL = [b for page in PAGES for b in blocks(page)]
YAML = [b for b in ALL if b.lang == "yaml"]
SHELL = [b for b in ALL if b.lang == "sh"]
PYTHON = [b for b in ALL if b.lang == "python"]


def test_the_pages_hold_examples_of_every_kind() -> None:
    assert {p.name for p in PAGES} >= {
        "README.md",
        "scenario-format.md",
        "model.md",
        "cli.md",
    }
    assert len(YAML) >= 10
    assert len(SHELL) >= 5
    kinds = {b.mark[0] for b in YAML if b.mark}
    assert kinds == {"fragment", "skip"}


def test_the_block_parser_sees_markers_and_outputs(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        "<!-- skip: not a scenario -->\n```yaml\na: 1\n```\n\n"
        "```sh\necho hi\n```\n\n```text\nhi\n```\n"
        "1. a list item:\n\n   ```python\n   print(1)\n   ```\n"
    )
    (skipped, shell, text, indented) = blocks(page)
    assert (indented.lang, indented.text) == ("python", "print(1)\n")
    assert skipped.mark == ("skip", "not a scenario")
    assert shell.lang == "sh"
    assert shell.mark is None
    assert shell.output == "hi\n"
    assert text.lang == "text"


# -- YAML -------------------------------------------------------------------------------


@pytest.mark.parametrize("block", YAML, ids=[b.id for b in YAML])
def test_yaml_example(block: Block) -> None:
    if block.mark is not None and block.mark[0] == "skip":
        assert block.mark[1], f"{block.id}: a skip needs its reason"
        return
    data = yaml.safe_load(block.text)
    if block.mark is not None:
        name = block.mark[1]
        if name in SCHEMA["$defs"]:
            part: dict[str, Any] = {"$ref": f"#/$defs/{name}"}
        else:
            assert name in SCHEMA["properties"], f"{block.id}: no schema part {name!r}"
            part = SCHEMA["properties"][name]
        validator = jsonschema.Draft202012Validator({**part, "$defs": SCHEMA["$defs"]})
        problems = [
            f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)
        ]
        assert problems == [], block.id
        return
    assert isinstance(data, dict), f"{block.id}: mark a fragment or a skip"
    assert "steps" in data, f"{block.id}: a whole scenario has steps (or mark it)"
    scenario, _ = load_scenario_text(block.text, block.id, ROOT)
    result = run_scenario(scenario)
    failed = [f"step {s.index}: {s.message}" for s in result.steps if s.failed]
    assert failed == [], block.id


# -- shell and Python -------------------------------------------------------------------


def repository_files() -> list[str]:
    """What a clone of this commit (plus the files not committed yet) holds."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [f for f in listed.split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def clones(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """One fresh copy of the repository per page, made on first use."""

    class Copies(dict[Path, Path]):
        def __missing__(self, page: Path) -> Path:
            where = tmp_path_factory.mktemp(page.stem)
            for name in repository_files():
                target = where / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, target)
            (where / ".venv").mkdir()
            (where / ".venv" / "bin").symlink_to(VENV_BIN)
            self[page] = where
            return where

    return Copies()


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    env["COLUMNS"] = "200"  # a wide terminal: the pages show unwrapped lines
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=300,
    )


def commands(text: str) -> list[str]:
    """The commands of a shell block: one a line (`\\` continues it), comments left out."""
    joined = text.replace("\\\n", " ")
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def assert_shows(output: str, expected: str, where: str) -> None:
    """Each line of `expected` but `...` is in `output`, in order."""
    lines = [line.rstrip() for line in output.splitlines()]
    at = 0
    for want in expected.splitlines():
        want = want.rstrip()
        if not want or want.strip() == "...":
            continue
        while at < len(lines) and want not in lines[at]:
            at += 1
        assert at < len(lines), f"{where}: the output does not show {want!r}:\n{output}"
        at += 1


@pytest.mark.parametrize("block", SHELL, ids=[b.id for b in SHELL])
def test_shell_example(block: Block, clones: dict[Path, Path]) -> None:
    if block.mark is not None:
        assert block.mark[0] == "skip" and block.mark[1], block.id
        return
    cwd = clones[block.page]
    result = None
    for command in commands(block.text):
        m = EXIT.search(command)
        want = int(m.group(1)) if m else 0
        result = shell(command, cwd)
        assert "Traceback" not in result.stdout, f"{block.id}: {command}"
        assert result.returncode == want, (
            f"{block.id}: {command!r} exited {result.returncode}, the doc says {want}:\n"
            f"{result.stdout}"
        )
    if block.output is not None:
        assert result is not None
        assert_shows(result.stdout, block.output, block.id)


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_example(block: Block, clones: dict[Path, Path]) -> None:
    if block.mark is not None:
        assert block.mark[0] == "skip" and block.mark[1], block.id
        return
    result = subprocess.run(
        [sys.executable, "-c", block.text],
        cwd=clones[block.page],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"{block.id}:\n{result.stderr}"
    shown = [
        m.group(1).strip()
        for m in re.finditer(r"^\s*print\(.*\)\s*#\s*(.+)$", block.text, re.MULTILINE)
    ]
    assert_shows(result.stdout, "\n".join(shown), block.id)


def test_assert_shows_fails_on_a_missing_or_misordered_line() -> None:
    assert_shows("a\nb\nc\n", "a\n...\nc\n", "x")
    with pytest.raises(AssertionError, match="does not show 'd'"):
        assert_shows("a\nb\n", "a\nd\n", "x")
    with pytest.raises(AssertionError, match="does not show 'a'"):
        assert_shows("a\nb\n", "b\na\n", "x")


# -- the CLI reference ------------------------------------------------------------------


def cli() -> Any:
    """The command group `dataplane` runs (typer's click group, with every command)."""
    from dataplane import commands
    from dataplane.cli import app

    commands.load()
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return group


def options(command: Any) -> list[str]:
    """Every option string `--help` lists for a command (`--port`, `-p`, `--no-df`)."""
    out: list[str] = []
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            out += [*param.opts, *param.secondary_opts]
    return [*out, "--help"]


def sections(page: str) -> dict[str, str]:
    """The text under each `## ` heading of a page, by heading."""
    parts = re.split(r"^## (.+)$", page, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def mentions(text: str, option: str) -> bool:
    return re.search(rf"`{re.escape(option)}(?![\w-])", text) is not None


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    group = cli()
    page = sections((DOCS / "cli.md").read_text())
    missing: list[str] = []
    root = next((t for h, t in page.items() if h.strip("`") == "dataplane"), "")
    missing += [f"dataplane {o}" for o in options(group) if not mentions(root, o)]
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        text = next(
            (t for h, t in page.items() if h.strip("`") == f"dataplane {name}"), None
        )
        if text is None:
            missing.append(f"## dataplane {name}")
            continue
        missing += [f"dataplane {name} {o}" for o in options(command) if not mentions(text, o)]  # fmt: skip
    assert missing == [], "docs/cli.md lacks: " + ", ".join(missing)


def test_the_cli_reference_lists_no_option_that_does_not_exist() -> None:
    group = cli()
    page = sections((DOCS / "cli.md").read_text())
    stale: list[str] = []
    for heading, text in page.items():
        name = heading.strip("`")
        if not name.startswith("dataplane"):
            continue
        words = name.split()
        command = group if len(words) == 1 else group.commands.get(words[1])
        assert command is not None, f"docs/cli.md: no command {name!r}"
        known = set(options(command))
        for row in re.findall(r"^\| (`-.*?) \|", text, re.MULTILINE):
            for option in re.findall(r"`(--?[\w-]+)", row):
                if option not in known:
                    stale.append(f"{name} {option}")
    assert stale == [], "docs/cli.md documents options that do not exist: " + ", ".join(
        stale
    )


def test_the_cli_check_sees_a_missing_option() -> None:
    text = "## dataplane x\n`--port P` and `-p`\n"
    assert mentions(sections(text)["dataplane x"], "--port")
    assert not mentions(sections(text)["dataplane x"], "--por")
    assert not mentions(text, "--to")


def test_the_first_guess_at_three_nodes_gives_the_documented_error(
    tmp_path: Path,
) -> None:
    (skipped,) = [b for b in YAML if "nodes: 3" in b.text]
    page = skipped.page.read_text()
    f = tmp_path / "t.yaml"
    f.write_text(skipped.text)
    r = shell(f"dataplane run {f.name}", tmp_path)
    assert r.returncode == 2
    assert (
        r.stdout.strip()
        == "error: t.yaml:2: cluster.nodes: expected a list, got 3 (a number)"
    )
    assert f"`{r.stdout.strip()}`" in page.replace("\n", " ")


# -- the scenario format ----------------------------------------------------------------


def test_every_scenario_key_step_and_verdict_is_in_the_format_page() -> None:
    from typing import get_args

    from topology import schema

    page = (DOCS / "scenario-format.md").read_text()
    models = [
        schema.ScenarioModel,
        schema.ClusterModel,
        schema.NodeModel,
        schema.ExternalModel,
        schema.ExternalPortModel,
        schema.ProbeModel,
        schema.SendModel,
        schema.MatrixModel,
        schema.MatrixExpectModel,
        schema.ReplayModel,
        schema.LabelModel,
        schema.ExpectModel,
        schema.FileRef,
        schema.HexPacketModel,
    ]
    words = [
        info.alias or name for m in models for name, info in m.model_fields.items()
    ]
    words += [*schema.STEP_KEYS, *get_args(schema.VerdictWord)]
    words += [*get_args(schema.NetworkName), *get_args(schema.ProbeProtocol)]
    missing = sorted({w for w in words if f"`{w}`" not in page})
    assert missing == [], "docs/scenario-format.md does not mention: " + ", ".join(
        missing
    )


def test_every_command_is_in_the_readme_table() -> None:
    table = sections((ROOT / "README.md").read_text())["Commands"]
    listed = set(re.findall(r"^\| `dataplane ([\w-]+)", table, re.MULTILINE))
    commands = {n for n, c in cli().commands.items() if not c.hidden}
    assert commands - listed == set(), "README.md, Commands: add a row"
    assert listed - commands == set(), "README.md, Commands: no such command"
