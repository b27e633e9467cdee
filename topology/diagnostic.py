"""Turn a pydantic `ValidationError` into a `TopologyError` a person can act on.

The message names the line of the offending key (from the YAML line map), the field path, what
is wrong and what is allowed: `lab.yaml:7: cluster.network: 'vxlam' is not allowed (allowed:
vxlan, host-gw, routed)`, `lab.yaml:9: cluster: unknown key 'nodez' (allowed: network, ...)`.
The allowed keys and values are read from the schema model itself, so they never drift.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Literal, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from topology.errors import TopologyError
from topology.fields import describe
from topology.model import Loc
from topology.yamlsource import PathPart, format_path

LocateFn = Callable[[Sequence[PathPart]], Loc]

_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "float_type": "a number",
}


def to_topology_error(
    err: ValidationError,
    model: Any,
    locate: LocateFn,
    *,
    prefix: Sequence[PathPart] = (),
    obj: str | None = None,
) -> TopologyError:
    """The first error of `err` (validating data against `model` found at `prefix`).

    `locate(path)` maps a full field path (prefix included) to a `Loc`.
    """
    detail = err.errors(include_url=False)[0]
    loc = tuple(p for p in detail["loc"] if p != "[key]")
    is_key = "[key]" in detail["loc"]
    reason, field_parts, line_parts = _explain(detail, model, loc, is_key)
    full = (*prefix, *field_parts)
    return TopologyError(
        reason, locate((*prefix, *line_parts)), obj, format_path(full) or None
    )


def _explain(
    detail: ErrorDetails, model: Any, loc: tuple[PathPart, ...], is_key: bool
) -> tuple[str, tuple[PathPart, ...], tuple[PathPart, ...]]:
    """(reason, field path to print, path whose line to use)."""
    kind = detail["type"]
    value = detail.get("input")
    ctx = detail.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = loc[:-1]
        allowed = allowed_keys(annotation_at(model, parent))
        return (
            f"unknown key {loc[-1]!r}{_allowed(allowed)}",
            parent,
            loc,
        )
    if kind == "missing":
        return f"missing required key {loc[-1]!r}", loc[:-1], loc[:-1]
    if kind == "invalid":
        reason = str(ctx.get("reason", detail["msg"]))
        if is_key:
            return reason, loc[:-1], loc
        return reason, loc, loc
    if kind in ("literal_error", "enum"):
        choices = allowed_values(annotation_at(model, loc))
        shown = repr(value) if isinstance(value, str) else describe(value)
        return f"{shown} is not allowed{_allowed(choices)}", loc, loc
    if kind in _TYPE_WORDS:
        what = "a key" if is_key else "a value"
        prefix = f"{what}: " if is_key else ""
        return f"{prefix}expected {_TYPE_WORDS[kind]}, got {describe(value)}", loc, loc
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        word = "at least" if kind == "too_short" else "at most"
        return f"{word} {bound} item(s) required", loc, loc
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return f"{value!r} is out of range ({_bound_text(ctx)})", loc, loc
    return str(detail["msg"]), loc, loc


def _bound_text(ctx: dict[str, Any]) -> str:
    for key, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in ctx:
            return f"allowed: {word} {ctx[key]}"
    return "allowed range exceeded"  # pragma: no cover


def _allowed(choices: Sequence[str]) -> str:
    return f" (allowed: {', '.join(choices)})" if choices else ""


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of an annotation, with Annotated and Optional removed."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                out.extend(_unwrap(arg))
        return out
    return [annotation]


def annotation_at(model: Any, loc: Sequence[PathPart]) -> Any:
    """The annotation reached by following `loc` from `model` (None when lost)."""
    current: Any = model
    for part in loc:
        step = None
        for alt in _unwrap(current):
            step = _step(alt, part)
            if step is not None:
                break
        if step is None:
            return None
        current = step
    return current


def _step(annotation: Any, part: PathPart) -> Any:
    origin = typing.get_origin(annotation)
    if isinstance(part, int) and origin in (list, tuple, Sequence):
        return typing.get_args(annotation)[0]
    if origin is dict and isinstance(part, str | int):
        return typing.get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (info.alias, name):
                return info.annotation
    return None


def allowed_keys(annotation: Any) -> list[str]:
    """The keys a model accepts, as written in YAML."""
    for alt in _unwrap(annotation):
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            return [info.alias or name for name, info in alt.model_fields.items()]
    return []


def allowed_values(annotation: Any) -> list[str]:
    """The values of a Literal or Enum annotation."""
    out: list[str] = []
    for alt in _unwrap(annotation):
        if typing.get_origin(alt) is Literal:
            out.extend(str(v) for v in typing.get_args(alt))
        elif isinstance(alt, type) and issubclass(alt, Enum):
            out.extend(str(m.value) for m in alt)
    return out
