"""YAML loading that remembers where every value was written.

PyYAML's composer already knows the line of every node; the constructor throws it away.
`load_documents` composes each document, builds plain Python data from the nodes and, beside
it, a `LineTree` holding the line of every key and every list item, so that any field path
(`spec.ports[0].port`) can be turned back into `file:line` for an error message.  Duplicate
keys are an error (as in the API server's strict decoding); merge keys (`<<`) and anchors work
(a key written beside `<<` overrides the merged one, as the YAML merge-key spec says).

A scenario may come from anyone, so reading it is bounded (README "Untrusted input"): at most
`MAX_BYTES` of UTF-8 text, values nested at most `MAX_DEPTH` deep, and at most
`MAX_ALIAS_NODES` values produced by aliases (a "billion laughs" file of a few hundred bytes
would otherwise expand to billions of values).  The Go YAML library of kubectl and the API
server bounds aliases the same way since CVE-2019-11253, the API server's own billion laughs
(go-yaml v2.2.4 `allowedAliasRatio`).
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from yaml.composer import Composer, ComposerError

from topology.errors import TopologyError
from topology.model import Loc

PathPart = str | int
_Collection = TypeVar("_Collection", yaml.MappingNode, yaml.SequenceNode)

MAX_BYTES = 10 * 1024 * 1024  # a file; the largest real manifests are a few hundred KB
MAX_DEPTH = 100  # nesting of mappings and lists; Kubernetes objects need about 15
MAX_ALIAS_NODES = 100_000  # values built again because an alias names an anchor
_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*\Z")
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
# int64, the widest Kubernetes integer, has 19 digits; `0b` and 64 binary digits are 66.
_MAX_INT_CHARS = 80

# libyaml's composer is several times faster than the pure-Python one; both give marks.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """A SafeLoader; only composing and scalar construction are used."""

    def get_node(self, builder: _Builder | None = None) -> yaml.Node | None:
        """The root node of the next document (libyaml composes it whole)."""
        node: yaml.Node | None = super().get_node()
        return node


class _StreamLoader(_Loader, Composer):
    """Composes in Python over libyaml's events, and builds each item of a list that is a
    value of the root mapping (`manifests`, `steps`, a List's `items`) as soon as it is
    composed: its nodes are dropped, only its value and lines are kept (`_Built`).  Only for
    a text without anchors, where no node can be met twice.

    An item whose building fails is kept as nodes: its error is raised when the document
    is built, in document order and after any syntax error further on, as when the
    document is composed whole.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(data)  # type: ignore[call-arg]  # CSafeLoader's, before Composer
        self.anchors: dict[str, yaml.Node] = {}  # Composer's; stays empty (no anchors)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(
            yaml.AliasEvent
        ):  # no anchor: libyaml's error, in its words
            event = self.get_event()
            raise ComposerError(None, None, "found undefined alias", event.start_mark)
        node: yaml.Node | None = super().compose_node(parent, index)
        return node

    def _node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        node = self.compose_node(parent, index)
        assert node is not None  # an event is there: the caller checked
        return node

    def check_node(self) -> bool:
        if self.check_event(yaml.StreamStartEvent):
            self.get_event()
        return not self.check_event(yaml.StreamEndEvent)

    def get_node(self, builder: _Builder | None = None) -> yaml.Node | None:
        if self.check_event(yaml.StreamEndEvent):  # pragma: no cover - see check_node
            return None
        self.get_event()  # DOCUMENT-START
        node: yaml.Node
        if builder is not None and self.check_event(yaml.MappingStartEvent):
            node = self._root(builder)
        else:
            node = self._node(None, None)
        self.get_event()  # DOCUMENT-END
        self.anchors = {}
        return node

    def _opened(self, kind: type[_Collection]) -> _Collection:
        """The empty node of the mapping or list that the next event starts, as
        `Composer.compose_mapping_node` and `compose_sequence_node` make it."""
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(kind, None, start.implicit)
        return kind(tag, [], start.start_mark, None, flow_style=start.flow_style)

    def _root(self, builder: _Builder) -> yaml.MappingNode:
        """The root mapping, as `Composer.compose_mapping_node` composes it, the items of
        its lists built as they come."""
        node = self._opened(yaml.MappingNode)
        while not self.check_event(yaml.MappingEndEvent):
            key = self._node(node, None)
            if self.check_event(yaml.SequenceStartEvent):
                self.descend_resolver(node, key)
                value: yaml.Node = self._items(builder)
                self.ascend_resolver()
            else:
                value = self._node(node, key)
            node.value.append((key, value))
        node.end_mark = self.get_event().end_mark
        return node

    def _items(self, builder: _Builder) -> yaml.SequenceNode:
        """A list of the root mapping (depth 1), each item built (depth 2) once composed."""
        node = self._opened(yaml.SequenceNode)
        while not self.check_event(yaml.SequenceEndEvent):
            item = self._node(node, len(node.value))
            tree = LineTree(item.start_mark.line + 1)
            # On an error, the item is built again, and it raised, with the document.
            with contextlib.suppress(TopologyError):
                item = _Built(item, builder.build(item, tree, 2), tree)
            builder.forget()  # the item's nodes go: their ids may come back
            node.value.append(item)
        node.end_mark = self.get_event().end_mark
        return node


class _Built(yaml.Node):
    """An item of a root list, already built: its value and its lines, no nodes."""

    def __init__(self, node: yaml.Node, value: Any, tree: LineTree) -> None:
        super().__init__(node.tag, None, node.start_mark, node.end_mark)
        self.built = value
        self.tree = tree


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


def read_yaml(path: Path, filename: str) -> str:
    """The text of a YAML file: at most `MAX_BYTES`, UTF-8 (errors name the line).

    OSError is left to the caller, which knows what the file was for.
    """
    with path.open("rb") as f:
        data = f.read(MAX_BYTES + 1)
    check_size(data, filename)
    return decode_yaml(data, filename)


def decode_yaml(data: bytes, filename: str) -> str:
    """UTF-8 text (a leading byte-order mark dropped); the error names the line and
    column of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise TopologyError(
            f"not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}, column"
            f" {column}; YAML files are read as UTF-8)",
            Loc(filename, line),
        ) from None


def check_size(data: str | bytes, filename: str) -> None:
    """Refuse a text over `MAX_BYTES`; the error names the line where the limit falls."""
    if len(data) > MAX_BYTES:
        newline = "\n" if isinstance(data, str) else b"\n"
        line = data.count(newline, 0, MAX_BYTES) + 1  # type: ignore[arg-type]
        raise TopologyError(
            f"file too large (more than {MAX_BYTES} bytes; the limit is {MAX_BYTES}"
            " bytes, 10 MiB)",
            Loc(filename, line),
        )


def load_documents(text: str, filename: str) -> list[Document]:
    """Every document of a YAML text, with lines; syntax errors name `file:line`."""
    check_size(text, filename)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as err:
        line = text.count("\n", 0, err.start) + 1
        raise TopologyError(
            f"not UTF-8 text (character U+{ord(text[err.start]):04X} at line {line}"
            " is a lone surrogate)",
            Loc(filename, line),
        ) from None
    check_size(data, filename)
    # Without an anchor there is no alias: each item of a top-level list can be built as
    # soon as it is composed and its nodes dropped (`_StreamLoader`), instead of holding the
    # nodes of the whole document (about 300 bytes a value) while it is built.
    loader = _StreamLoader(data) if b"&" not in data else _Loader(data)
    # Composing allocates a node per value; the cyclic GC would rescan them all many times
    # over (a 5,000-object file: 3x slower).  Nothing built here is cyclic.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        docs = []
        while loader.check_node():
            builder = _Builder(loader, filename)
            node = loader.get_node(builder)
            if node is None:  # pragma: no cover - check_node guarantees a node
                break
            line = node.start_mark.line + 1
            tree = LineTree(line)
            value = builder.build(node, tree, 0)
            docs.append(Document(value, tree, Loc(filename, line)))
        return docs
    except yaml.MarkedYAMLError as err:
        raise _yaml_error(err, filename) from None
    except yaml.reader.ReaderError as err:
        # libyaml reports a byte offset and no line (a control character, a bad encoding).
        line = data.count(b"\n", 0, err.position) + 1
        raise TopologyError(
            f"invalid YAML: unacceptable character U+{err.character:04X}: {err.reason}"
            " (YAML allows tab, newline and printable characters)",
            Loc(filename, line),
        ) from None
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
    if problem == "exceeded maximum nesting depth":  # libyaml's own limit, above ours
        return _too_deep(Loc(filename, line))
    if err.context and err.problem:
        problem = f"{problem} ({err.context}"
        if err.context_mark is not None and mark is not err.context_mark:
            problem += f" at line {err.context_mark.line + 1}"
        problem += ")"
    return TopologyError(f"invalid YAML: {problem}", Loc(filename, line))


def _too_deep(loc: Loc) -> TopologyError:
    return TopologyError(
        f"YAML nested deeper than {MAX_DEPTH} levels (the limit is {MAX_DEPTH};"
        " a recursive alias?)",
        loc,
    )


class _Builder:
    """Turns composed nodes into plain data plus a LineTree, within the limits above.

    The composer resolves an alias to the very node of its anchor, so a node built a second
    time is one an alias produced: those are counted against `MAX_ALIAS_NODES`.
    """

    def __init__(self, loader: _Loader, filename: str) -> None:
        self.loader = loader
        self.filename = filename
        self.seen: set[int] = set()
        self.alias_nodes = 0
        self.sizes: dict[int, int] = {}  # node id -> values it expands to
        self.alias_line = 0  # where the alias being expanded is used (0: none)
        # Per mapping node (by id): the ids of its key nodes that `<<` merged in.
        self.merged: dict[int, set[int]] = {}

    def build(self, node: yaml.Node, tree: LineTree, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _too_deep(Loc(self.filename, tree.line))
        if isinstance(
            node, _Built
        ):  # `_StreamLoader` built it (at this depth, same line)
            tree.children = node.tree.children
            return node.built
        if id(node) not in self.seen:
            self.seen.add(id(node))
            return self._build(node, tree, depth)
        if self.alias_line:  # inside an alias's expansion, already counted
            return self._build(node, tree, depth)
        # An alias: its whole expansion is counted before anything of it is built, so a
        # bomb stops at the first alias that would pass the limit.
        self.alias_line = tree.line
        try:
            self.alias_nodes += self._size(node, depth)
            if self.alias_nodes > MAX_ALIAS_NODES:
                raise TopologyError(
                    f"YAML aliases expand to more than {MAX_ALIAS_NODES} values (the"
                    f" limit is {MAX_ALIAS_NODES}; a 'billion laughs' file?)",
                    Loc(self.filename, self.alias_line),
                )
            return self._build(node, tree, depth)
        finally:
            self.alias_line = 0

    def forget(self) -> None:
        """Drop what is known of the nodes built so far (`_StreamLoader`: no alias can
        name them, and they are freed)."""
        self.seen.clear()
        self.sizes.clear()
        self.merged.clear()

    def _size(self, node: yaml.Node, depth: int) -> int:
        """How many values `node` expands to (memoized; a cycle ends at the depth limit)."""
        size = self.sizes.get(id(node))
        if size is not None:
            return size
        if depth > MAX_DEPTH:
            raise _too_deep(Loc(self.filename, self.alias_line))
        size = 1
        if isinstance(node, yaml.MappingNode):
            size += sum(self._size(value, depth + 1) for _, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size += sum(self._size(item, depth + 1) for item in node.value)
        self.sizes[id(node)] = size
        return size

    def _build(self, node: yaml.Node, tree: LineTree, depth: int) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, tree, depth)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                # An alias item's node marks its anchor; the sequence's line is nearer.
                seen = id(item) in self.seen
                sub = LineTree(tree.line if seen else item.start_mark.line + 1)
                tree.children[index] = sub
                items.append(self.build(item, sub, depth + 1))
            return items
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        tag = node.tag
        # A timestamp stays text: sigs.k8s.io/yaml, kubectl's decoder, turns it into a JSON
        # string (a label value `2024-01-01` is a string there too).
        if tag in (_STR_TAG, _TIMESTAMP_TAG):
            return node.value
        if tag == _NULL_TAG:
            return None
        if tag == _INT_TAG and len(node.value) > _MAX_INT_CHARS:
            raise TopologyError(
                f"invalid YAML: an integer of {len(node.value)} characters (allowed: at"
                f" most {_MAX_INT_CHARS}; the largest Kubernetes integer, int64, has 19"
                " digits)",
                Loc(self.filename, node.start_mark.line + 1),
            )
        try:
            if tag == _INT_TAG:
                return self.loader.construct_yaml_int(node)
            if tag == _BOOL_TAG:
                return self.loader.construct_yaml_bool(node)
            return self.loader.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError, LookupError) as err:
            raise TopologyError(
                f"invalid YAML: {node.value[:40]!r} is not a valid {tag.rsplit(':', 1)[-1]}"
                f" ({err})",
                Loc(self.filename, node.start_mark.line + 1),
            ) from None

    def _merged_keys(self, node: yaml.MappingNode) -> set[int]:
        """Resolve `<<` in place (once per node); the key nodes it merged in."""
        merged = self.merged.get(id(node))
        if merged is None:
            written = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
            self.loader.flatten_mapping(node)
            merged = {id(k) for k, _ in node.value if id(k) not in written}
            self.merged[id(node)] = merged
        return merged

    def _mapping(
        self, node: yaml.MappingNode, tree: LineTree, depth: int
    ) -> dict[Any, Any]:
        merged = self._merged_keys(node)
        out: dict[Any, Any] = {}
        from_merge: set[Any] = set()
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode):
                key = self.scalar(key_node)
            else:
                raise TopologyError(
                    "a mapping key must be a plain value, not a mapping or a list",
                    Loc(self.filename, line),
                )
            is_merged = id(key_node) in merged
            if key in out:
                if is_merged:
                    continue  # the first mapping merged in wins (YAML merge-key spec)
                if key not in from_merge:
                    raise TopologyError(
                        f"duplicate key {key!r}", Loc(self.filename, line)
                    )
                from_merge.discard(key)  # a key beside `<<` overrides the merged one
            elif is_merged:
                from_merge.add(key)
            sub = LineTree(line)
            tree.children[key if isinstance(key, str | int) else str(key)] = sub
            out[key] = self.build(value_node, sub, depth + 1)
        return out
