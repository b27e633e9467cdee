"""YAML with lines: every key and item keeps its line; syntax errors name file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from topology.errors import TopologyError
from topology.yamlsource import (
    MAX_BYTES,
    format_path,
    line_for,
    load_documents,
    read_yaml,
)

TEXT = """\
kind: Service
metadata:
  name: web
spec:
  ports:
    - port: 80
      targetPort: http
    - {port: 443}
  labels: {app.kubernetes.io/name: web}
base: &b {x: 1}
merged:
  <<: *b
  y: 2
"""


def test_lines_of_keys_and_items() -> None:
    (doc,) = load_documents(TEXT, "svc.yaml")
    lines = doc.lines.flatten()
    assert lines[""] == 1
    assert lines["spec.ports[0].port"] == 6
    assert lines["spec.ports[0].targetPort"] == 7
    assert lines["spec.ports[1]"] == 8
    assert lines["spec.labels['app.kubernetes.io/name']"] == 9
    assert doc.data["merged"] == {"x": 1, "y": 2}
    assert doc.lines.line_at(("spec", "ports", 1, "port")) == 8
    assert doc.lines.line_at(("spec", "nothing", "here")) == 4
    assert line_for(lines, ("spec", "ports", 0, "missing")) == 6


def test_multi_document() -> None:
    docs = load_documents("a: 1\n---\nb: 2\n---\n", "m.yaml")
    assert [d.data for d in docs] == [{"a": 1}, {"b": 2}, None]
    assert [d.loc.line for d in docs] == [1, 3, 5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: 1\nb: [1, 2\n",
            "m.yaml:3: invalid YAML: did not find expected ',' or ']'",
        ),
        ("a: 1\na: 2\n", "m.yaml:2: duplicate key 'a'"),
        (
            "a:\n  b: 1\n   c: 2\n",
            "m.yaml:3: invalid YAML: mapping values are not allowed",
        ),
        ("? [a]\n: 1\n", "m.yaml:1: a mapping key must be a plain value"),
        (
            "a: !!python/object:os.system x\n",
            "m.yaml:1: invalid YAML: could not determine a constructor",
        ),
        (
            "a: &x [*x]\n",
            "m.yaml:1: YAML nested deeper than 100 levels (the limit is 100;"
            " a recursive alias?)",
        ),
        (
            "a: 1\nb: x\x07\n",
            "m.yaml:2: invalid YAML: unacceptable character U+0007: control characters"
            " are not allowed",
        ),
        (
            "é: 1\n\nb: 'x\x01'\n",  # libyaml counts bytes: é is two
            "m.yaml:3: invalid YAML: unacceptable character U+0001",
        ),
        (
            "a:\n"
            + "".join("  " * i + "- \n" for i in range(1, 102))
            + "  " * 102
            + "1\n",
            "m.yaml:102: YAML nested deeper than 100 levels (the limit is 100;",
        ),
        (
            "[" * 2000 + "]" * 2000,
            "m.yaml:1: YAML nested deeper than 100 levels (the limit is 100;",
        ),
        ("a: '\ud800'\n", "m.yaml:1: not UTF-8 text (character U+D800 at line 1"),
    ],
    ids=[
        "unclosed",
        "duplicate",
        "indent",
        "complex-key",
        "python-tag",
        "recursive",
        "control-character",
        "control-character-after-utf8",
        "too-deep",
        "too-deep-for-libyaml",
        "surrogate",
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(TopologyError) as info:
        load_documents(text, "m.yaml")
    assert str(info.value).startswith(message), str(info.value)


def test_scalars_keep_their_yaml_types() -> None:
    (doc,) = load_documents("a: 0x10\nb: yes\nc: ~\nd: 1.5\ne: '80'\n", "t.yaml")
    assert doc.data == {"a": 16, "b": True, "c": None, "d": 1.5, "e": "80"}


def test_format_path() -> None:
    assert format_path(("spec", "ports", 0, "port")) == "spec.ports[0].port"
    assert format_path((0, "a")) == "[0].a"


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n"
    for a, b in zip("abcdefghi", "bcdefghij", strict=True)
)


def test_billion_laughs_stops_at_the_alias_limit() -> None:
    # 10**10 values if expanded; the count passes 100,000 while expanding e (line 5).
    with pytest.raises(TopologyError) as info:
        load_documents(BILLION_LAUGHS, "m.yaml")
    assert str(info.value) == (
        "m.yaml:5: YAML aliases expand to more than 100000 values (the limit is 100000;"
        " a 'billion laughs' file?)"
    )


def test_aliases_within_the_limit_are_expanded() -> None:
    text = (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [" + ", ".join(["*a"] * 10) + "]\n"
    )
    (doc,) = load_documents(text, "m.yaml")
    assert doc.data["b"] == [["x"] * 10] * 10
    assert doc.lines.line_at(("b", 3)) == 2  # an alias item: the line it is used on


def test_merge_key_is_overridden_by_a_key_beside_it() -> None:
    (doc,) = load_documents("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  x: 3\n", "m.yaml")
    assert doc.data["b"] == {"x": 3, "y": 2}
    assert doc.lines.line_at(("b", "x")) == 4


def test_too_large_text() -> None:
    with pytest.raises(TopologyError) as info:
        load_documents("#" * (MAX_BYTES + 1), "m.yaml")
    assert str(info.value) == (
        f"m.yaml:1: file too large (more than {MAX_BYTES} bytes; the limit is {MAX_BYTES}"
        " bytes, 10 MiB)"
    )


def test_read_yaml_names_the_line_of_a_byte_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(TopologyError) as info:
        read_yaml(path, "m.yaml")
    assert str(info.value) == (
        "m.yaml:2: not UTF-8 text (byte 0xe9 at line 2, column 7; YAML files are read"
        " as UTF-8)"
    )


def test_read_yaml_reads_no_more_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(TopologyError, match="file too large"):
        read_yaml(path, "big.yaml")
