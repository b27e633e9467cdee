"""Every property of the shipped scenario schema has a description (editors show it on
hover), so a field added to `topology/schema.py` without one turns the suite red."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "scenario.schema.json"


def undescribed(node: Any, path: str = "#") -> list[str]:
    """JSON pointers of every property (at any depth, `$defs` included) without a
    non-empty description."""
    out: list[str] = []
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for key, sub in props.items():
                text = sub.get("description") if isinstance(sub, dict) else None
                if not isinstance(text, str) or not text.strip():
                    out.append(f"{path}/properties/{key}")
        for key, sub in node.items():
            out += undescribed(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            out += undescribed(sub, f"{path}/{index}")
    return out


def test_the_walk_finds_a_property_without_description_at_any_depth() -> None:
    schema = {
        "properties": {"a": {"type": "string", "description": "fine"}},
        "$defs": {
            "X": {"properties": {"b": {"type": "integer"}, "c": {"description": " "}}}
        },
    }
    assert undescribed(schema) == [
        "#/$defs/X/properties/b",
        "#/$defs/X/properties/c",
    ]


def test_every_property_of_the_scenario_schema_is_described() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert len(schema["$defs"]) > 30  # the Kubernetes kinds are walked too
    assert undescribed(schema) == []
