"""YAML loading that remembers where every value was written.

PyYAML's composer already knows the line of every node; the constructor throws it away.
`load_documents` composes each document, builds plain Python data from the nodes and, beside
it, a `LineTree` holding the line of every key and every list item, so that any field path
(`spec.ports[0].port`) can be turned back into `file:line` for an error message.  Duplicate
keys are an error (as in the API server's strict decoding); merge keys (`<<`) and anchors work.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from topology.errors import TopologyError
from topology.model import Loc

PathPart = str | int

_MAX_DEPTH = 64
_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*\Z")
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"

# libyaml's composer is several times faster than the pure-Python one; both give marks.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """A SafeLoader; only composing and scalar construction are used."""


class LineTree:
    """The line of a value (its key's line, or the item's line) and those of its children."""

    __slots__ = ("children", "line")

    def __init__(self, line: int) -> None:
        self.line = line
        self.children: dict[PathPart, LineTree] = {}

    def child(self, part: PathPart) -> LineTree | None:
        """The subtree of one key or list index, if written."""
        return self.children.get(part)

    def line_at(self, parts: Sequence[PathPart]) -> int:
        """The line of the deepest written prefix of `parts` (the value's own when written)."""
        tree = self
        for part in parts:
            nxt = tree.children.get(part)
            if nxt is None:
                break
            tree = nxt
        return tree.line

    def subtree(self, parts: Sequence[PathPart]) -> LineTree:
        """The subtree at `parts` (the deepest written prefix)."""
        tree = self
        for part in parts:
            nxt = tree.children.get(part)
            if nxt is None:
                break
            tree = nxt
        return tree

    def flatten(self) -> dict[str, int]:
        """Every path below this tree (`""` is the tree itself) mapped to its line."""
        out: dict[str, int] = {}
        stack: list[tuple[str, LineTree]] = [("", self)]
        while stack:
            prefix, tree = stack.pop()
            out[prefix] = tree.line
            for part, sub in tree.children.items():
                stack.append((join_path(prefix, part), sub))
        return out


class LineMap(Mapping[str, int]):
    """A read-only `{field path: line}` view of a LineTree, flattened on first use.

    Most objects never have an error, so most maps are never flattened.
    """

    __slots__ = ("_flat", "_tree")

    def __init__(self, tree: LineTree) -> None:
        self._tree = tree
        self._flat: dict[str, int] | None = None

    def _map(self) -> dict[str, int]:
        if self._flat is None:
            self._flat = self._tree.flatten()
        return self._flat

    def __getitem__(self, key: str) -> int:
        return self._map()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map())

    def __len__(self) -> int:
        return len(self._map())

    def __repr__(self) -> str:
        return f"LineMap({self._map()!r})"


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: its data, its lines, and where it starts."""

    data: Any
    lines: LineTree
    loc: Loc


def join_path(prefix: str, part: PathPart) -> str:
    """Append one key or index to a dotted path.

    >>> join_path("spec.ports", 0)
    'spec.ports[0]'
    >>> join_path("spec", "podSelector")
    'spec.podSelector'
    >>> join_path("metadata.labels", "app.kubernetes.io/name")
    "metadata.labels['app.kubernetes.io/name']"
    """
    if isinstance(part, int):
        return f"{prefix}[{part}]"
    if not _PLAIN_KEY.match(part):
        return f"{prefix}[{part!r}]"
    return f"{prefix}.{part}" if prefix else part


def format_path(parts: Sequence[PathPart]) -> str:
    """A field path as messages show it.

    >>> format_path(("spec", "ports", 0, "port"))
    'spec.ports[0].port'
    >>> format_path(())
    ''
    """
    out = ""
    for part in parts:
        out = join_path(out, part)
    return out


def line_for(lines: Mapping[str, int], parts: Sequence[PathPart]) -> int:
    """The line of `parts` in a flattened map, falling back to the nearest written parent.

    >>> line_for({"": 3, "spec": 5, "spec.ports[0]": 7}, ("spec", "ports", 0, "port"))
    7
    >>> line_for({}, ("spec",))
    0
    """
    for end in range(len(parts), -1, -1):
        line = lines.get(format_path(parts[:end]))
        if line is not None:
            return line
    return 0


def load_documents(text: str, filename: str) -> list[Document]:
    """Every document of a YAML text, with lines; syntax errors name `file:line`."""
    loader = _Loader(text)
    # Composing allocates a node per value; the cyclic GC would rescan them all many times
    # over (a 5,000-object file: 3x slower).  Nothing built here is cyclic.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node guarantees a node
                break
            line = node.start_mark.line + 1
            tree = LineTree(line)
            data = _Builder(loader, filename).build(node, tree, 0)
            docs.append(Document(data, tree, Loc(filename, line)))
        return docs
    except yaml.MarkedYAMLError as err:
        raise _yaml_error(err, filename) from None
    except yaml.YAMLError as err:  # pragma: no cover - libyaml reports marks
        raise TopologyError(f"invalid YAML: {err}", Loc(filename)) from None
    finally:
        loader.dispose()
        if gc_was_enabled:
            gc.enable()


def iter_paths(
    data: Any, prefix: tuple[PathPart, ...] = ()
) -> Iterator[tuple[tuple[PathPart, ...], Any]]:
    """Every (path, leaf value) pair of nested dicts and lists, in order."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from iter_paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from iter_paths(value, (*prefix, index))
    else:
        yield prefix, data


def _yaml_error(err: yaml.MarkedYAMLError, filename: str) -> TopologyError:
    mark = err.problem_mark or err.context_mark
    line = mark.line + 1 if mark is not None else 0
    problem = err.problem or err.context or "syntax error"
    if err.context and err.problem:
        problem = f"{problem} ({err.context}"
        if err.context_mark is not None and mark is not err.context_mark:
            problem += f" at line {err.context_mark.line + 1}"
        problem += ")"
    return TopologyError(f"invalid YAML: {problem}", Loc(filename, line))


class _Builder:
    """Turns composed nodes into plain data plus a LineTree."""

    def __init__(self, loader: _Loader, filename: str) -> None:
        self.loader = loader
        self.filename = filename

    def build(self, node: yaml.Node, tree: LineTree, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise TopologyError(
                f"YAML nested deeper than {_MAX_DEPTH} levels (a recursive alias?)",
                Loc(self.filename, node.start_mark.line + 1),
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, tree, depth)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                sub = LineTree(item.start_mark.line + 1)
                tree.children[index] = sub
                items.append(self.build(item, sub, depth + 1))
            return items
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        tag = node.tag
        if tag == _STR_TAG:
            return node.value
        if tag == _INT_TAG:
            return self.loader.construct_yaml_int(node)
        if tag == _BOOL_TAG:
            return self.loader.construct_yaml_bool(node)
        if tag == _NULL_TAG:
            return None
        return self.loader.construct_object(node, deep=True)

    def _mapping(
        self, node: yaml.MappingNode, tree: LineTree, depth: int
    ) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)  # resolves `<<` merge keys in place
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode):
                key = self.scalar(key_node)
            else:
                raise TopologyError(
                    "a mapping key must be a plain value, not a mapping or a list",
                    Loc(self.filename, line),
                )
            if key in out:
                raise TopologyError(f"duplicate key {key!r}", Loc(self.filename, line))
            sub = LineTree(line)
            tree.children[key if isinstance(key, str | int) else str(key)] = sub
            out[key] = self.build(value_node, sub, depth + 1)
        return out
