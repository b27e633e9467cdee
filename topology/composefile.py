"""The scenario's `compose` list: each item a project on one host, inline or `file:`.

A `file:` is read with the scenario's `FileReader` (relative to the scenario, never outside
its folder, within the size caps) and parsed by the project's safe YAML loader with line
numbers, so that every error names the compose file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from topology.compose import ComposeProject, Source, check_project_name, parse_project
from topology.errors import TopologyError
from topology.fields import describe
from topology.include import FileReader
from topology.model import Loc, NodeSpec
from topology.yamlsource import LineTree, PathPart, format_path, load_documents

_ITEM_KEYS = ("node", "project", "file", "services", "networks")


def load_compose(
    items: list[Any], lines: LineTree, filename: str, files: FileReader,
    base_dir: Path, nodes: tuple[NodeSpec, ...], notes: list[str],
) -> tuple[ComposeProject, ...]:  # fmt: skip
    """Every project of `compose` (already known to be a list of mappings)."""
    out: list[ComposeProject] = []
    seen: set[tuple[str, str]] = set()
    names = [n.name for n in nodes]
    shown_dir = str(Path(filename).parent) if "/" in filename else ""
    for index, item in enumerate(items):
        where: tuple[PathPart, ...] = ("compose", index)
        here = Source(filename, lines, where, notes)

        def fail(
            key: str, reason: str, where: tuple[PathPart, ...] = where
        ) -> TopologyError:
            at = (*where, key) if key else where
            return TopologyError(
                reason, Loc(filename, lines.line_at(at)), None, format_path(at)
            )

        for key in item:
            if key not in _ITEM_KEYS:
                raise fail(
                    key, f"unknown key {key!r} (allowed: {', '.join(_ITEM_KEYS)})"
                )
        node = item.get("node")
        if node not in names:
            raise fail(
                "node", f"{describe(node)} is not a node (nodes: {', '.join(names)})"
            )
        project = item.get("project")
        why = check_project_name(project)
        if why is not None:
            raise fail("project", why)
        if (node, project) in seen:
            raise fail("project", f"project {project!r} is already on {node}")
        seen.add((node, project))
        loc = Loc(filename, lines.line_at(where))
        if "file" in item:
            if "services" in item or "networks" in item:
                raise fail("file", "give file or services/networks, not both")
            field = format_path((*where, "file"))
            out.append(_from_file(item["file"], node, project, files, base_dir,
                                  shown_dir, fail, field, notes))  # fmt: skip
            continue
        if "services" not in item:
            raise fail("", "missing services (or file: a compose file)")
        body = {k: item[k] for k in ("services", "networks") if k in item}
        out.append(parse_project(node, project, body, here, loc))
    return tuple(out)


def _from_file(
    entry: Any, node: str, project: str, files: FileReader, base_dir: Path,
    shown_dir: str, fail: Any, field: str, notes: list[str],
) -> ComposeProject:  # fmt: skip
    if not isinstance(entry, str):
        raise fail("file", f"expected a path, got {describe(entry)}")
    at = fail("file", "").loc
    if entry and (base_dir / entry).is_dir():
        raise fail("file", f"{entry!r} is a folder (allowed: one compose file)")
    sources = files.expand(entry, base_dir, shown_dir, at, field)
    if len(sources) != 1:
        raise fail("file", f"{entry!r} is a folder (allowed: one compose file)")
    text = files.read(sources[0], at, field)
    shown = sources[0].shown
    docs = load_documents(text, shown)
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        raise TopologyError(
            "a compose file is one YAML mapping (services, networks, ...)",
            Loc(shown, 1),
        )
    doc = docs[0]
    return parse_project(
        node, project, doc.data, Source(shown, doc.lines, (), notes), at
    )


__all__ = ["load_compose"]
