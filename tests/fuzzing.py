"""Mutations of the shipped scenarios, and the verdict on loading one (fuzzer and bench).

`mutate(base, chooser)` takes a scenario's data and changes one thing: a value replaced by
another type or an extreme (huge or negative numbers, odd strings), a key deleted, renamed
or written twice, a list item repeated, an alias to another node, an alias bomb, nesting
past the limit.  The chooser decides every choice (`random.Random` in the benchmark,
hypothesis draws in the test suite, so failures shrink).  A mutation says whether it is
known to make the file invalid (a wrong type in a field the schema types, an unknown key
of a schema model, an int32 overflow, a duplicate key, an alias bomb, too deep), so that
accepting it counts as a defect.

`outcome(...)` loads the text as the CLI does (`topology.loader`) and classifies the result:
`ok`, `error` (a SimError whose message carries FILE:LINE), `error-without-line`, or
`traceback` (any other exception).
"""

from __future__ import annotations

import copy
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel

from dataplane.suite import discover
from topology.diagnostic import annotation_at
from topology.errors import SimError
from topology.fields import INT32_MAX
from topology.kubeschema import MODELS
from topology.loader import load_scenario_text
from topology.schema import STEP_MODELS, FileRef, ScenarioModel
from topology.yamlsource import MAX_DEPTH, PathPart, load_documents

ROOT = Path(__file__).resolve().parent.parent
# The scenario files (`dataplane test` finds them so); manifest folders are not scenarios.
SCENARIOS = discover([ROOT / "scenarios"])
FieldPath = tuple[PathPart, ...]

ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    65536,
    INT32_MAX + 1,
    -(2**31) - 1,
    2**63,
    10**30,
    1.5,
    float("nan"),
    float("inf"),
    "",
    " ",
    "x" * 300,
    "é\u200b\U0001f600",
    "\x1b[31m",
    "a\nb",
    "10.0.0.0/255.0.0.0",
    "10.0.0.1/8",
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.1",
    "::1",
    "${ip:nowhere/none}",
    "a/b/c",
    "-",
    "2024-01-01",
    "80",
    [],
    {},
    [1, "a"],
    {"a": 1},
    {"a": {"b": [None]}},
)


class Chooser(Protocol):
    """What decides the mutations: `random.Random` or a hypothesis adapter."""

    def randrange(self, stop: int) -> int: ...


@dataclass(frozen=True, slots=True)
class Mutation:
    """One mutated file: its text, what was done, and whether it must be refused."""

    text: str
    what: str
    known_invalid: bool


def paths_of(data: Any, prefix: FieldPath = ()) -> list[tuple[FieldPath, Any]]:
    """Every node of nested dicts and lists with its path (the root included)."""
    out = [(prefix, data)]
    if isinstance(data, dict):
        for key, value in data.items():
            out += paths_of(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out += paths_of(value, (*prefix, index))
    return out


def _get(data: Any, path: FieldPath) -> Any:
    for part in path:
        data = data[part]
    return data


def annotation(data: Any, path: FieldPath) -> Any:
    """The schema annotation of the field at `path` (None where the schema is open).

    The scenario model stops at `manifests[i]`, `steps[j]` and `steps[j].apply[k]`; below
    them the model of the object's kind or of the step's key takes over, as in the loader.
    """
    model: Any = ScenarioModel
    start = 0
    for end in range(1, len(path) + 1):
        prefix, node = path[:end], _get(data, path[:end])
        is_object = (len(prefix) == 2 and prefix[0] == "manifests") or (
            len(prefix) == 4 and prefix[0] == "steps" and prefix[2] == "apply"
        )
        if is_object:
            found = _object_model(node)
            if found is None:
                return None
            model, start = found, end
        elif len(prefix) == 2 and prefix[0] == "steps":
            keys = (
                [k for k in node if k in STEP_MODELS] if isinstance(node, dict) else []
            )
            if len(keys) != 1:
                return None
            model, start = STEP_MODELS[keys[0]], end
    return annotation_at(model, path[start:])


def _object_model(node: Any) -> Any:
    if not isinstance(node, dict):
        return None
    if "file" in node and "kind" not in node:
        return FileRef
    kind = node.get("kind")
    return MODELS.get(kind) if isinstance(kind, str) else None


def _alternatives(ann: Any) -> list[Any]:
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _alternatives(typing.get_args(ann)[0])
    if origin in (typing.Union, type(int | str)):
        return [a for arg in typing.get_args(ann) for a in _alternatives(arg)]
    return [ann]


def _accepts(ann: Any, value: Any) -> bool:
    """Whether the annotation could accept `value`'s type at all (True when unsure)."""
    if ann is None:
        return True
    for alt in _alternatives(ann):
        origin = typing.get_origin(alt) or alt
        if alt is Any or (alt is type(None) and value is None):
            return True
        if origin is typing.Literal:
            if value in typing.get_args(alt):
                return True
            continue
        if isinstance(origin, type):
            if issubclass(origin, BaseModel) and isinstance(value, dict):
                return True
            if origin in (dict, Mapping) and isinstance(value, dict):
                return True
            if origin in (list, tuple, Sequence) and isinstance(value, list):
                return True
            if origin is int and isinstance(value, int) and not isinstance(value, bool):
                return True
            if origin is bool and isinstance(value, bool):
                return True
            if origin is str and isinstance(value, str):
                return True
            if origin is float and isinstance(value, float | int):
                return True
            if origin.__module__ == "ipaddress" and isinstance(value, str):
                return True
    return False


def _is_strict_model(ann: Any) -> bool:
    alts = _alternatives(ann) if ann is not None else []
    return bool(alts) and all(
        isinstance(a, type) and issubclass(a, BaseModel)
        for a in alts
        if a is not type(None)
    )


def _is_int32(ann: Any) -> bool:
    """An integer field of the schema (all are int32 or narrower)."""
    alts = [a for a in _alternatives(ann) if a is not type(None)] if ann else []
    return bool(alts) and all(a is int for a in alts)


def _bomb(depth: int = 7) -> list[Any]:
    node: list[Any] = ["lol"] * 10
    for _ in range(depth):
        node = [node] * 10
    return node


def _nest(depth: int) -> Any:
    node: Any = "deep"
    for _ in range(depth):
        node = [node]
    return node


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1 << 20)


def mutate(base: Any, chooser: Chooser) -> Mutation:
    """One mutation of `base` (a scenario's data), every choice made by `chooser`."""
    data = copy.deepcopy(base)
    nodes = paths_of(data)
    path, value = nodes[chooser.randrange(len(nodes))]
    kind = MUTATIONS[chooser.randrange(len(MUTATIONS))]
    return kind(data, path, value, chooser)


def _replace(data: Any, path: FieldPath, new: Any) -> Any:
    if not path:
        return new
    _get(data, path[:-1])[path[-1]] = new
    return data


def _other_type(data: Any, path: FieldPath, value: Any, chooser: Chooser) -> Mutation:
    new = ODD_VALUES[chooser.randrange(len(ODD_VALUES))]
    ann = annotation(data, path) if path else None
    # null is left out: for Kubernetes objects it is the field's zero value (kubeschema).
    invalid = (
        bool(path) and new is not None and ann is not None and not _accepts(ann, new)
    )
    invalid = invalid or (isinstance(new, int) and new > INT32_MAX and _is_int32(ann))
    # an object's `kind` the loader does not know is skipped with a warning (README,
    # "Real manifests"), not refused: any string there may load
    invalid = invalid and not (isinstance(new, str) and _is_object_kind(path))
    text = dump(_replace(data, path, copy.deepcopy(new)))
    return Mutation(text, f"{_show(path)} = {new!r:.40}", invalid)


def _is_object_kind(path: FieldPath) -> bool:
    """Whether `path` is the `kind` of a manifest (or of an `apply` step's object)."""
    top = len(path) == 3 and path[0] == "manifests"
    applied = len(path) == 5 and path[0] == "steps" and path[2] == "apply"
    return (top or applied) and path[-1] == "kind"


def _number(data: Any, path: FieldPath, value: Any, chooser: Chooser) -> Mutation:
    if not isinstance(value, int) or isinstance(value, bool):
        return _other_type(data, path, value, chooser)
    new = (-value, value + INT32_MAX + 1, str(value), value * 1000, 0)[
        chooser.randrange(5)
    ]
    ann = annotation(data, path)
    invalid = _is_int32(ann) and (
        isinstance(new, str) or (isinstance(new, int) and new > INT32_MAX)
    )
    text = dump(_replace(data, path, new))
    return Mutation(text, f"{_show(path)} = {new!r}", invalid)


def _delete_key(data: Any, path: FieldPath, value: Any, chooser: Chooser) -> Mutation:
    parent = _get(data, path[:-1]) if path else None
    if not isinstance(parent, dict):
        return _rename_key(data, path, value, chooser)
    del parent[path[-1]]
    return Mutation(dump(data), f"del {_show(path)}", False)


def _rename_key(data: Any, path: FieldPath, value: Any, chooser: Chooser) -> Mutation:
    target = value if isinstance(value, dict) and value else None
    if target is None:
        return _repeat_item(data, path, value, chooser)
    keys = list(target)
    key = keys[chooser.randrange(len(keys))]
    ann = annotation(data, path)
    target["zzUnknown"] = target.pop(key)
    invalid = _is_strict_model(ann)
    return Mutation(dump(data), f"{_show((*path, key))} renamed zzUnknown", invalid)


def _duplicate_key(
    data: Any, path: FieldPath, value: Any, chooser: Chooser
) -> Mutation:
    text = dump(data)
    (doc,) = load_documents(text, "<dump>")
    lines = text.split("\n")
    # The lines that start with a key (not `- key:`), from the loader's own line map; the
    # repeat goes just before, where the mapping's previous entry has ended.
    keyed = []
    for field, number in doc.lines.flatten().items():
        key = field.rpartition(".")[2]
        found = re.match(rf"( *){re.escape(key)}:", lines[number - 1]) if key else None
        if found is not None and not field.endswith("]"):
            keyed.append((number, key, len(found.group(1))))
    if not keyed:
        return _other_type(data, path, value, chooser)
    number, key, indent = sorted(keyed)[chooser.randrange(len(keyed))]
    lines.insert(number - 1, f"{' ' * indent}{key}: null")
    return Mutation("\n".join(lines), f"line {number}: key {key!r} twice", True)


def _repeat_item(data: Any, path: FieldPath, value: Any, chooser: Chooser) -> Mutation:
    if isinstance(value, list) and value:
        value.append(copy.deepcopy(value[chooser.randrange(len(value))]))
        return Mutation(dump(data), f"{_show(path)}: an item repeated", False)
    return _alias(data, path, value, chooser)


def _alias(data: Any, path: FieldPath, value: Any, chooser: Chooser) -> Mutation:
    if not path:
        return _other_type(data, path, value, chooser)
    containers = [(p, v) for p, v in paths_of(data) if isinstance(v, dict | list) and p]
    other_path, other = containers[chooser.randrange(len(containers))]
    # The dumper writes an anchor at the first occurrence and an alias at the second; an
    # alias to an ancestor is a recursive structure, which only the depth limit ends.
    recursive = len(other_path) < len(path) and path[: len(other_path)] == other_path
    ann = annotation(data, path)
    invalid = recursive or (ann is not None and not _accepts(ann, other))
    text = dump(_replace(data, path, other))
    return Mutation(text, f"{_show(path)} = *{_show(other_path)}", invalid)


def _bomb_at(data: Any, path: FieldPath, value: Any, chooser: Chooser) -> Mutation:
    text = dump(_replace(data, path, _bomb()))
    return Mutation(text, f"{_show(path)} = alias bomb", True)


def _too_deep(data: Any, path: FieldPath, value: Any, chooser: Chooser) -> Mutation:
    text = dump(_replace(data, path, _nest(MAX_DEPTH + 5)))
    return Mutation(text, f"{_show(path)} nested {MAX_DEPTH + 5} deep", True)


def _show(path: FieldPath) -> str:
    return ".".join(str(p) for p in path) or "<root>"


MUTATIONS: tuple[Callable[[Any, FieldPath, Any, Chooser], Mutation], ...] = (
    _other_type,
    _other_type,
    _other_type,
    _number,
    _delete_key,
    _rename_key,
    _duplicate_key,
    _repeat_item,
    _alias,
    _bomb_at,
    _too_deep,
)


def base_data(path: Path) -> Any:
    """A shipped file's data (plain YAML: the files themselves are trusted)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def outcome(text: str, filename: str, base_dir: Path) -> tuple[str, str]:
    """(`ok` | `error` | `error-without-line` | `traceback`, the message)."""
    try:
        load_scenario_text(text, filename, base_dir)
    except SimError as err:
        if re.match(rf"{re.escape(filename)}:[1-9][0-9]*: ", str(err)):
            return "error", str(err)
        return "error-without-line", str(err)
    except Exception as err:  # the defect the fuzzer looks for
        return "traceback", f"{type(err).__name__}: {err}"
    return "ok", ""
