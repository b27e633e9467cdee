"""YAML with lines: every key and item keeps its line; syntax errors name file:line."""

from __future__ import annotations

import pytest

from topology.errors import TopologyError
from topology.yamlsource import format_path, line_for, load_documents

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
            "m.yaml:1: YAML nested deeper than 64 levels (a recursive alias?)",
        ),
    ],
    ids=["unclosed", "duplicate", "indent", "complex-key", "python-tag", "recursive"],
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
