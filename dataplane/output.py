"""What `-o/--output` of each command can be, and how a JSON or YAML document is written.

Every command prints one kind of text by default (`text`) and the same data as versioned
documents (`json`, `yaml`): each document is an object with `schema_version`
(`JSON_SCHEMA_VERSION`) and `type`, described by `schemas/results.schema.json`.  Commands
that report as they go (`run`, `test`, `replay`) print JSON Lines, one document per line,
or a YAML stream, one `---` document per record (`verify`: one per scenario); the others
print one document.  A YAML
document is the JSON document written as YAML (`yaml.safe_dump`, keys in order).

`--format` and `--json`, the options before `-o`, still work: `--format detailed` is
`-o text`, the other words and `--json` are the `-o` of the same name.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

JSON_SCHEMA_VERSION = 1

TRACE_VIEWS = ("text", "wide", "summary", "minimal", "json", "yaml")
OUTPUTS = {
    "run": TRACE_VIEWS,
    "trace": (*TRACE_VIEWS, "html"),
    "replay": ("text", "detailed", "wide", "summary", "minimal", "json", "yaml"),
    "test": ("text", "json", "yaml"),
    "explain": ("text", "json", "yaml"),
    "matrix": ("text", "csv", "md", "json", "yaml", "dot"),
    "verify": ("text", "json", "yaml"),
    "lint": ("text", "json", "yaml", "sarif"),
    "exposure": ("text", "json", "yaml"),
    "quiz": ("html", "json", "yaml"),
    # netpol-analyzer's words: `txt` is the text
    "connlist": ("txt", "csv", "md", "json", "yaml", "dot", "svg"),
    "diff": ("txt", "md", "csv", "json", "yaml"),
}
# The words of the options `-o` replaced, per command.
FORMAT_ALIASES = {
    "run": {"detailed": "text"},
    "trace": {"detailed": "text"},
    "replay": {"lines": "text"},
}
DOCUMENTS = ("json", "yaml")


def choose(
    command: str,
    output: str | None,
    fmt: str | None = None,
    as_json: bool = False,
) -> str:
    """The output of `command` from `-o` and the deprecated `--format` / `--json`."""
    from topology.errors import TopologyError

    allowed = OUTPUTS[command]
    aliases = FORMAT_ALIASES.get(command, {})
    given: list[tuple[str, str]] = []
    if output is not None:
        given.append(("-o", output))
    if fmt is not None:
        given.append(("--format", aliases.get(fmt, fmt)))
    if as_json:
        given.append(("--json", "json"))
    for option, value in given:
        if value not in allowed:
            shown = fmt if option == "--format" else value
            raise TopologyError(
                f"{option} {shown!r} is not allowed for `dataplane {command}` "
                f"(allowed: {', '.join(allowed)})"
            )
    if len({v for _, v in given}) > 1:
        raise TopologyError(
            " and ".join(f"{o} {v}" for o, v in given) + " disagree: give one of them"
        )
    return given[0][1] if given else "text"


def document(kind: str, **body: Any) -> dict[str, Any]:
    """A versioned document: `{"schema_version": 1, "type": kind, ...}`."""
    return {"schema_version": JSON_SCHEMA_VERSION, "type": kind, **body}


def dump(doc: dict[str, Any], fmt: str) -> str:
    """One whole document as JSON (indented) or YAML."""
    if fmt == "yaml":
        import yaml

        text: str = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
        return text
    return json.dumps(doc, indent=2) + "\n"


def record(doc: dict[str, Any], fmt: str) -> str:
    """One record of a stream: a JSON line, or a YAML document opened by `---`."""
    if fmt == "yaml":
        return "---\n" + dump(doc, "yaml")
    return json.dumps(doc) + "\n"


def write_records(docs: Iterable[dict[str, Any]], fmt: str) -> None:
    for doc in docs:
        sys.stdout.write(record(doc, fmt))
