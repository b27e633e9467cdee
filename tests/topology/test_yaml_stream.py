"""A text without anchors is built from its events (`yamlsource._EventLoader`): the same
data, lines and errors as when libyaml composes the document whole, in a fraction of the
memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from topology import yamlsource
from topology.errors import TopologyError
from topology.yamlsource import load_documents

ROOT = Path(__file__).resolve().parent.parent.parent
FILES = sorted(
    p
    for folder in ("scenarios", "tests/fixtures")
    for p in (ROOT / folder).rglob("*.y*ml")
    if b"&" not in p.read_bytes()
)


def _compose_whole(loader: yamlsource._EventLoader) -> list[yamlsource.Document]:
    raise yamlsource._NeedsNodes  # as for a merge key: libyaml composes it whole


def outcome(text: str, monkeypatch: pytest.MonkeyPatch, whole: bool) -> Any:
    """What `load_documents` gives: each document's data, lines and start, or the error;
    `whole`: with libyaml composing every document whole, as for a text with anchors."""
    with monkeypatch.context() as m:
        if whole:
            m.setattr(yamlsource._EventLoader, "documents", _compose_whole)
        try:
            docs = load_documents(text, "f.yaml")
        except TopologyError as err:
            return str(err)
    return [(d.data, d.lines.flatten(), d.loc) for d in docs]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_every_shipped_file_loads_as_when_composed_whole(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = path.read_text(encoding="utf-8")
    streamed = outcome(text, monkeypatch, whole=False)
    assert streamed == outcome(text, monkeypatch, whole=True)
    assert not isinstance(streamed, str)


ITEMS = "name: n\nmanifests:\n  - {kind: Pod, metadata: {name: a}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (  # an item's error waits for a syntax error further on
            ITEMS + "  - {a: 1, a: 2}\nsteps: [1, 2\n",
            "f.yaml:6: invalid YAML: did not find expected ',' or ']' (while parsing a"
            " flow sequence at line 5)",
        ),
        (  # ... and comes before a later one of the root mapping
            ITEMS + "  - {a: 1, a: 2}\nname: twice\n",
            "f.yaml:4: duplicate key 'a'",
        ),
        (  # ... and after an earlier one
            "name: n\nname: twice\n" + ITEMS[8:] + "  - {a: 1, a: 2}\n",
            "f.yaml:2: duplicate key 'name'",
        ),
        (
            ITEMS + "  - {port: " + "9" * 81 + "}\n",
            "f.yaml:4: invalid YAML: an integer of 81 characters (allowed: at most 80;"
            " the largest Kubernetes integer, int64, has 19 digits)",
        ),
        (ITEMS + "  - *nothing\n", "f.yaml:4: invalid YAML: found undefined alias"),
        (
            "steps:\n  - " + "[" * 101 + "]" * 101 + "\n",
            "f.yaml:2: YAML nested deeper than 100 levels (the limit is 100; a recursive"
            " alias?)",
        ),
    ],
    ids=[
        "syntax-error-later",
        "root-error-later",
        "root-error-earlier",
        "long-integer",
        "undefined-alias",
        "too-deep",
    ],
)
def test_errors_are_those_of_the_whole_document(
    text: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    streamed = outcome(text, monkeypatch, whole=False)
    assert streamed == outcome(text, monkeypatch, whole=True)
    assert isinstance(streamed, str)
    assert streamed.startswith(message)


@pytest.mark.parametrize(
    "text",
    [
        "- a\n- {b: 1}\n",  # the root is a list
        "---\n---\nname: x\nitems: [{<<: {a: 1}, b: 2}, [1, [2]], '', ~]\n",
        "items: []\nsteps: !!seq [1]\nother: {x: [1]}\n",
        "# only a comment\n",
    ],
    ids=["root-list", "merge-and-documents", "tags-and-empty", "empty"],
)
def test_data_and_lines_are_those_of_the_whole_document(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert outcome(text, monkeypatch, whole=False) == outcome(
        text, monkeypatch, whole=True
    )


def _peak_over_kept(text: str) -> float:
    """Peak memory while loading `text`, over the memory of what was loaded."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        docs = load_documents(text, "big.yaml")
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(docs[0].data["manifests"]) == 2000
    return (peak - base) / (kept - base)


def test_items_are_built_as_they_are_composed(monkeypatch: pytest.MonkeyPatch) -> None:
    """No more than the items' data at the peak: the nodes of one item at a time."""
    pod = "  - {{kind: Pod, metadata: {{name: p{0}, labels: {{app: a{0}}}}}}}\n"
    text = "name: big\nmanifests:\n" + "".join(pod.format(i) for i in range(2000))
    assert _peak_over_kept(text) < 1.3
    monkeypatch.setattr(yamlsource._EventLoader, "documents", _compose_whole)
    assert _peak_over_kept(text) > 2  # the whole document's nodes at once
