"""YAML loading that remembers where every value was written.

libyaml's events and PyYAML's nodes know the line of every value; the constructor throws it
away.  `load_documents` builds plain Python data from the events (or, for a text with anchors
or merge keys, from the composed nodes) and, beside it, a `LineTree` holding the line of
every key and every list item, so that any field path
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
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from yaml.composer import ComposerError

from topology.errors import TopologyError
from topology.model import Loc
from topology.nogc import no_gc

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

    def get_node(self) -> yaml.Node | None:
        """The root node of the next document (libyaml composes it whole)."""
        node: yaml.Node | None = super().get_node()
        return node


class _NeedsNodes(Exception):
    """A merge key (`<<`) met while building from events: the text is composed whole."""


class _EventLoader(_Loader):
    """Builds each document's values and lines straight from libyaml's events, with no
    node in between (a node per value is most of the time and memory of composing).
    Only for a text without anchors, where no value can be met twice; a merge key makes
    it give up (`_NeedsNodes`) for the composer.

    The errors are those of the document composed whole, then built: a building error
    waits until the rest of its document has been read, so that a syntax error further
    on in it comes first.
    """

    def __init__(self, data: bytes, filename: str) -> None:
        super().__init__(data)
        self.filename = filename
        self.builder = _Builder(self, filename)
        self.tags: dict[tuple[str, tuple[bool, bool]], str] = {}  # plain scalar -> tag
        self.consts: dict[tuple[str, str], Any] = {}  # (tag, text) -> int, bool

    def documents(self) -> list[Document]:
        self.get_event()  # STREAM-START
        docs = []
        while not self.check_event(yaml.StreamEndEvent):
            self.get_event()  # DOCUMENT-START
            first = self.get_event()
            line = first.start_mark.line + 1
            tree = LineTree(line)
            try:
                value = self.value(first, tree, 0)
            except (TopologyError, yaml.constructor.ConstructorError):
                self.skip()  # a building error: a syntax error further on comes first
                raise
            self.get_event()  # DOCUMENT-END
            docs.append(Document(value, tree, Loc(self.filename, line)))
        return docs

    def skip(self) -> None:
        """Read the rest of the document (its syntax errors and undefined aliases)."""
        while not self.check_event(yaml.DocumentEndEvent):
            event = self.get_event()
            if event is None:  # pragma: no cover - libyaml ends every document
                return
            self.alias(event)

    def alias(self, event: Any) -> None:
        if type(event) is yaml.AliasEvent:  # no anchor: libyaml's error, in its words
            mark: Any = event.start_mark
            raise ComposerError(None, None, "found undefined alias", mark)

    def value(self, event: Any, tree: LineTree, depth: int) -> Any:
        """The value that starts with `event` (libyaml's events are typed loosely:
        Any), its lines in `tree` (`_Builder.build`)."""
        if depth > MAX_DEPTH:
            raise _too_deep(Loc(self.filename, tree.line))
        kind = type(event)
        if kind is yaml.ScalarEvent:
            return self.scalar(event)
        get = self.get_event
        children = tree.children
        if kind is yaml.SequenceStartEvent:
            items: list[Any] = []
            while True:
                event = get()
                if type(event) is yaml.SequenceEndEvent:
                    return items
                sub = children[len(items)] = LineTree(event.start_mark.line + 1)
                items.append(self.value(event, sub, depth + 1))
        if kind is yaml.MappingStartEvent:
            out: dict[Any, Any] = {}
            while True:
                event = get()
                kind = type(event)
                if kind is yaml.MappingEndEvent:
                    return out
                line = event.start_mark.line + 1
                if kind is not yaml.ScalarEvent:
                    self.alias(event)
                    raise TopologyError(
                        "a mapping key must be a plain value, not a mapping or a list",
                        Loc(self.filename, line),
                    )
                key = self.scalar(event, key=True)
                if key in out:
                    raise TopologyError(
                        f"duplicate key {key!r}", Loc(self.filename, line)
                    )
                sub = LineTree(line)
                children[key if isinstance(key, str | int) else str(key)] = sub
                out[key] = self.value(get(), sub, depth + 1)
        self.alias(event)
        raise AssertionError(f"unexpected YAML event {event}")  # pragma: no cover

    def scalar(self, event: Any, key: bool = False) -> Any:
        """A scalar's value (`_Builder.scalar`), its tag resolved as the composer does
        (`Composer.compose_scalar_node`), remembered by text."""
        text, tag = event.value, event.tag
        if tag is None or tag == "!":
            found = self.tags.get((text, event.implicit))
            if found is None:
                found = self.resolve(yaml.ScalarNode, text, event.implicit)
                self.tags[(text, event.implicit)] = found
            tag = found
        if tag in (_STR_TAG, _TIMESTAMP_TAG):  # as `_Builder.scalar`
            return text
        if tag == _NULL_TAG:
            return None
        if tag == _MERGE_TAG and key:
            raise _NeedsNodes
        const = self.consts.get((tag, text))
        if const is not None:
            return const
        value = self.builder.scalar(
            yaml.ScalarNode(tag, text, event.start_mark, event.end_mark, event.style)
        )
        if tag in (_INT_TAG, _BOOL_TAG):
            self.consts[(tag, text)] = value
        return value


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
    # Without an anchor there is no alias: each value is built as soon as libyaml reads
    # it (`_EventLoader`), instead of composing a node per value (about 300 bytes each)
    # and building the document from them.  Nothing built here is cyclic: the cyclic GC
    # would rescan every value many times over (a 5,000-object file: 3x slower).
    with no_gc():
        if b"&" not in data:
            with contextlib.suppress(_NeedsNodes):
                return _loaded(_EventLoader(data, filename), data, filename)
        return _loaded(_Loader(data), data, filename)


def _loaded(loader: _Loader, data: bytes, filename: str) -> list[Document]:
    """The documents `loader` reads (`_EventLoader`'s, or composed whole and built)."""
    try:
        if isinstance(loader, _EventLoader):
            return loader.documents()
        docs = []
        while loader.check_node():
            builder = _Builder(loader, filename)
            node = loader.get_node()
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
