"""Load a scenario file: YAML -> validated schema -> initial `Cluster` and step records.

Every problem is a `TopologyError` whose text is `FILE:LINE: OBJECT: FIELD: reason (allowed:
...)`.  The cluster before step 1 is built here (so manifest errors show at load time); the
objects of `apply` steps are validated here too when they hold no `${ip:...}` reference (those
can only be checked when the step runs; their schema is checked at once).  Step endpoints are
resolved when the step runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from topology.adminpolicy import any_draft
from topology.change import build_cluster, parse_ref
from topology.composefile import load_compose
from topology.config import cluster_config
from topology.diagnostic import to_topology_error
from topology.dockercluster import docker_cluster
from topology.errors import TopologyError
from topology.fields import describe
from topology.include import FileReader, SourceFile, read_scenario_file
from topology.kinds import NODE, KindFilter, expand_lists
from topology.live import node_entry, nodes_field_conflict
from topology.manifest import (
    describe_object,
    has_refs,
    manifest_from,
    parse_manifest,
    without_refs,
)
from topology.model import Loc, NodeSpec, Protocol
from topology.nogc import no_gc
from topology.normalize import NAMESPACE_NAME_LABEL
from topology.runtime import Runtime
from topology.scenario import (
    ApplyStep,
    DeleteStep,
    Expectation,
    LabelStep,
    LayerSpec,
    Manifest,
    MatrixExpect,
    MatrixStep,
    ProbeStep,
    ReplayStep,
    Scenario,
    SendStep,
    Step,
    Verdict,
)
from topology.schema import (
    STEP_KEYS,
    STEP_MODELS,
    ApplyItem,
    DeleteItem,
    ExpectModel,
    FileRef,
    LabelItem,
    MatrixItem,
    ProbeItem,
    ReplayItem,
    ScenarioModel,
    SendItem,
)
from topology.yamlsource import (
    Document,
    LineTree,
    PathPart,
    format_path,
    load_documents,
)

_LAYER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_HEX = re.compile(r"([0-9a-fA-F]{2})+\Z")
FieldPath = tuple[PathPart, ...]


def load_scenario(
    path: str | os.PathLike[str],
    *,
    manifests: Sequence[str | os.PathLike[str]] = (),
    strict: bool = False,
) -> tuple[Scenario, list[str]]:
    """Load and validate a scenario file: the scenario and the validation warnings.

    `manifests` are more files or folders of objects (command-line paths, not confined to
    the scenario's folder) added to the scenario's `manifests`; `strict` makes every object
    of a kind that is not modelled an error instead of a warning (`topology.kinds`).
    """
    file = Path(path)
    text = read_scenario_file(file)
    return load_scenario_text(
        text, str(path), file.parent, path=file, manifests=manifests, strict=strict
    )


def load_scenario_text(
    text: str,
    filename: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    *,
    path: Path | None = None,
    manifests: Sequence[str | os.PathLike[str]] = (),
    strict: bool = False,
) -> tuple[Scenario, list[str]]:
    """Load a scenario from text; `{file: ...}` and pcap paths are relative to `base_dir`,
    and `{file: ...}` must stay inside it.  Without the cyclic GC (`topology.nogc`)."""
    with no_gc():
        return _load_scenario_text(
            text, filename, base_dir, path=path, manifests=manifests, strict=strict
        )


def _load_scenario_text(
    text: str,
    filename: str,
    base_dir: str | os.PathLike[str] | None,
    *,
    path: Path | None,
    manifests: Sequence[str | os.PathLike[str]],
    strict: bool,
) -> tuple[Scenario, list[str]]:
    docs = load_documents(text, filename)
    if not docs or docs[0].data is None:
        raise TopologyError("the scenario file is empty", Loc(filename, 1))
    if len(docs) != 1:
        where = docs[1].loc if len(docs) > 1 else Loc(filename)
        raise TopologyError(
            f"a scenario is one YAML document (found {len(docs)})", where
        )
    loader = _ScenarioLoader(docs[0], filename, Path(base_dir or "."), path, strict)
    return loader.load([str(m) for m in manifests])


def objects_of(doc: Document) -> list[Manifest]:
    """The objects of one YAML document of a manifest file (a List's items, one by one)."""
    if doc.data is None:
        return []
    if not isinstance(doc.data, dict):
        raise TopologyError(
            f"a manifest is a Kubernetes object (a mapping), got {type_word(doc.data)}",
            doc.loc,
        )
    out = []
    for parts, data in expand_lists(doc.data):
        tree = doc.lines.subtree(parts)
        if not isinstance(data, dict):
            raise TopologyError(
                f"{format_path(parts)}: a list item is a Kubernetes object (a mapping),"
                f" got {type_word(data)}",
                Loc(doc.loc.file, tree.line),
            )
        if "file" in data and "kind" not in data:
            raise TopologyError(
                "{file: ...} is only allowed in the scenario file (includes do not nest)",
                Loc(doc.loc.file, tree.line),
            )
        out.append(manifest_from(data, tree, doc.loc.file))
    return out


_SCALAR_WORDS = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}


def type_word(value: Any) -> str:
    """What a value is, never what it says (messages about files never quote them).

    >>> type_word("root:x:0:0:root:/root:/bin/bash"), type_word([1]), type_word(None)
    ('a string', 'a list', 'null')
    """
    if value is None or isinstance(value, dict | list):
        return describe(value)
    return _SCALAR_WORDS.get(type(value), "a scalar")


class _ScenarioLoader:
    def __init__(
        self,
        doc: Document,
        filename: str,
        base_dir: Path,
        path: Path | None,
        strict: bool = False,
    ) -> None:
        self.doc = doc
        self.filename = filename
        self.base_dir = base_dir
        self.shown_dir = os.path.dirname(filename)
        self.path = path
        self.files = FileReader(base_dir, () if path is None else (path,))
        self.notes: list[str] = []
        self.kinds = KindFilter(strict, filename)
        self.nodes: tuple[NodeSpec, ...] = ()
        self.runtime = Runtime.KUBERNETES

    def locate(self, parts: Sequence[PathPart]) -> Loc:
        return Loc(self.filename, self.doc.lines.line_at(parts))

    def fail(self, parts: Sequence[PathPart], reason: str) -> TopologyError:
        return TopologyError(
            reason, self.locate(parts), None, format_path(parts) or None
        )

    def validate(self, model: type[BaseModel], data: Any, prefix: FieldPath) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as err:
            raise to_topology_error(err, model, self.locate, prefix=prefix) from None

    def load(self, extra: Sequence[str] = ()) -> tuple[Scenario, list[str]]:
        data = self.doc.data
        if not isinstance(data, dict):
            raise TopologyError(
                "a scenario is a mapping with name, cluster, manifests and steps,"
                f" got {type_word(data)}",
                self.doc.loc,
            )
        model: ScenarioModel = self.validate(ScenarioModel, data, ())
        manifests = self.manifests(data.get("manifests") or [], ("manifests",))
        for entry in extra:
            manifests.extend(self.cli_manifests(entry))
        warnings: list[str] = []
        node_objects = [
            node_entry(m, warnings) for m in manifests if m.data.get("kind") == NODE
        ]
        manifests = [m for m in manifests if m.data.get("kind") != NODE]
        if node_objects and model.cluster.nodes is not None:
            raise nodes_field_conflict(node_objects, self.locate(("cluster", "nodes")))
        config = cluster_config(model.cluster, self.locate, node_objects or None)
        self.nodes = config.nodes
        self.runtime = config.runtime
        if config.runtime is Runtime.DOCKER:
            if data.get("manifests") or extra:
                raise self.fail(
                    ("manifests",),
                    "runtime: docker has no Kubernetes objects (give compose projects)",
                )
            projects = load_compose(
                model.compose, self.doc.lines, self.filename, self.files,
                self.base_dir, config.nodes, self.notes,
            )  # fmt: skip
            cluster, built = docker_cluster(config, projects, self.notes), list[str]()
        else:
            if model.compose:
                raise self.fail(
                    ("compose",),
                    "compose needs runtime: docker (cluster.runtime; this cluster runs"
                    " Kubernetes: give manifests)",
                )
            cluster, built = build_cluster(config, manifests)
        steps = tuple(self.step(i, raw) for i, raw in enumerate(data["steps"]))
        scenario = Scenario(model.name, self.path, cluster, steps, model.description)
        return scenario, [*self.notes, *self.kinds.warnings(), *warnings, *built]

    def manifests(self, items: list[Any], prefix: FieldPath) -> list[Manifest]:
        """The modelled objects of `manifests` (or an `apply` step): inline objects, and
        the objects of every `{file: ...}` (a file or a folder)."""
        out: list[Manifest] = []
        for index, item in enumerate(items):
            where = (*prefix, index)
            tree = self.doc.lines.subtree(where)
            if "file" in item and "kind" not in item:
                ref: FileRef = self.validate(FileRef, item, where)
                loc = self.locate((*where, "file"))
                field = format_path((*where, "file"))
                sources = self.expand(ref.file, loc, field)
                for source in sources:
                    out.extend(self.read(source, loc, field))
            else:
                out.extend(
                    self.kinds.keep(
                        objects_of(Document(item, tree, self.locate(where)))
                    )
                )
        return out

    def cli_manifests(self, entry: str) -> list[Manifest]:
        """The objects of a `--manifests PATH` (relative to the working directory)."""
        loc = Loc(entry)
        sources = self.expand(entry, loc, None, confined=False)
        return [m for source in sources for m in self.read(source, loc, None)]

    def expand(
        self, entry: str, loc: Loc, field: str | None, *, confined: bool = True
    ) -> list[SourceFile]:
        """The files of an entry; a folder without any is a warning, not silence."""
        base, shown = (self.base_dir, self.shown_dir) if confined else (Path("."), "")
        sources = self.files.expand(entry, base, shown, loc, field, confined=confined)
        if not sources:
            where = ": ".join(p for p in (str(loc), field) if p)
            self.notes.append(
                f"{where}: {entry!r} holds no manifest file (*.yaml, *.yml, *.json)"
            )
        return sources

    def read(self, source: SourceFile, loc: Loc, field: str | None) -> list[Manifest]:
        text = self.files.read(source, loc, field)
        objects = [
            m for doc in load_documents(text, source.shown) for m in objects_of(doc)
        ]
        return self.kinds.keep(objects)

    def step(self, index: int, raw: Any) -> Step:
        where: FieldPath = ("steps", index)
        allowed = ", ".join(STEP_KEYS)
        if not isinstance(raw, dict):
            raise self.fail(
                where, f"a step is a mapping with one of {allowed}; got {describe(raw)}"
            )
        keys = [k for k in raw if k != "name"]
        known = [k for k in keys if k in STEP_KEYS]
        unknown = [k for k in keys if k not in STEP_KEYS]
        if unknown:
            extra = " besides its step key" if known else ""
            raise self.fail(
                (*where, unknown[0]),
                f"unknown key {unknown[0]!r}{extra} (allowed: name, {allowed})",
            )
        if not known:
            raise self.fail(where, f"missing the step key (allowed: {allowed})")
        if len(known) > 1:
            raise self.fail(
                (*where, known[1]), f"one step per item (found {', '.join(known)})"
            )
        key = known[0]
        if self.runtime is Runtime.DOCKER and key in ("apply", "delete", "label"):
            raise self.fail(
                (*where, key),
                f"a {key} step changes Kubernetes objects; runtime: docker has none"
                " (steps allowed there: probe, send, matrix, replay)",
            )
        item = self.validate(STEP_MODELS[key], raw, where)
        loc = self.locate(where)
        path = (*where, key)
        if isinstance(item, ProbeItem):
            return self.probe(item, path, loc)
        if isinstance(item, MatrixItem):
            return self.matrix(item, path, loc)
        if isinstance(item, SendItem):
            return self.send(item, path, loc)
        if isinstance(item, ApplyItem):
            return self.apply(item, raw[key], path, loc)
        if isinstance(item, DeleteItem):
            for j, ref in enumerate(item.delete):
                parse_ref(ref, self.locate((*path, j)))
            return DeleteStep(tuple(item.delete), item.name, loc)
        if isinstance(item, LabelItem):
            return self.label(item, path, loc)
        assert isinstance(item, ReplayItem)
        return self.replay(item, path, loc)

    @staticmethod
    def expectation(m: ExpectModel | None) -> Expectation | None:
        if m is None:
            return None
        verdict = None if m.verdict is None else _verdict(m.verdict)
        return Expectation(verdict, m.policy, tuple(m.via), m.endpoint, m.source_ip)

    def probe(self, item: ProbeItem, path: FieldPath, loc: Loc) -> ProbeStep:
        m = item.probe
        if m.protocol == "ICMP" and m.port is not None:
            raise self.fail((*path, "port"), "ICMP takes no port (an echo request)")
        return ProbeStep(
            m.from_,
            m.to,
            m.port,
            Protocol(m.protocol),
            self.expectation(m.expect),
            item.name,
            loc,
        )

    def matrix(self, item: MatrixItem, path: FieldPath, loc: Loc) -> MatrixStep:
        m = item.matrix
        if m.protocol == "ICMP" and m.port is not None:
            raise self.fail((*path, "port"), "ICMP takes no port (an echo request)")
        port = m.port if m.port is not None or m.protocol == "ICMP" else 80
        expect = None
        if m.expect is not None:
            if (m.expect.denied is None) == (m.expect.allowed is None):
                raise self.fail(
                    (*path, "expect"), "give exactly one of denied or allowed"
                )
            expect = MatrixExpect(
                None if m.expect.denied is None else tuple(m.expect.denied),
                None if m.expect.allowed is None else tuple(m.expect.allowed),
            )
        src = None if m.from_ is None else tuple(m.from_)
        dst = None if m.to is None else tuple(m.to)
        return MatrixStep(src, dst, port, Protocol(m.protocol), expect, item.name, loc)

    def send(self, item: SendItem, path: FieldPath, loc: Loc) -> SendStep:
        m = item.send
        packet, where = m.packet, (*path, "packet")
        expect = self.expectation(m.expect)
        if isinstance(packet, dict):
            text = "".join(str(packet.get("hex", "")).split())
            if set(packet) != {"hex"} or not isinstance(packet["hex"], str):
                raise self.fail(where, 'expected a list of layers or {hex: "4500..."}')
            if not _HEX.match(text):
                raise self.fail((*where, "hex"), "not an even number of hex digits")
            return SendStep(m.at, (), text.lower(), expect, item.name, loc)
        if not isinstance(packet, list) or not packet:
            raise self.fail(
                where,
                f"expected a non-empty list of layers or {{hex: ...}}, got {describe(packet)}",
            )
        layers = []
        for j, layer in enumerate(packet):
            at = (*where, j)
            if not isinstance(layer, dict) or len(layer) != 1:
                raise self.fail(
                    at,
                    "a layer is a mapping with one key, its scapy name"
                    f" ({{IP: {{dst: ...}}}}); got {describe(layer)}",
                )
            ((name, fields),) = layer.items()
            if not isinstance(name, str) or not _LAYER_NAME.match(name):
                raise self.fail(at, f"{name!r} is not a layer name")
            if fields is None:
                fields = {}
            if not isinstance(fields, dict) or not all(
                isinstance(k, str) for k in fields
            ):
                raise self.fail(
                    (*at, name),
                    f"the fields of {name} are a mapping of field names,"
                    f" got {describe(fields)}",
                )
            layers.append(LayerSpec(name, fields))
        return SendStep(m.at, tuple(layers), None, expect, item.name, loc)

    def apply(
        self, item: ApplyItem, raw: list[Any], path: FieldPath, loc: Loc
    ) -> ApplyStep:
        objects = []
        for manifest in self.manifests(raw, path):
            if manifest.data.get("kind") == NODE:
                self.same_node(manifest)
                continue  # the node as it is: nothing to apply
            if not has_refs(manifest.data):
                any_draft(parse_manifest(manifest), [])
            else:  # the rest when the step runs and the addresses are known
                parse_manifest(replace(manifest, data=without_refs(manifest.data)))
            objects.append(manifest)
        return ApplyStep(tuple(objects), item.name, loc)

    def same_node(self, manifest: Manifest) -> None:
        """A Node in a step must be one of the nodes as they are (a dump applied again):
        nodes are fixed when the scenario loads."""
        entry = node_entry(manifest, [])
        node = next((n for n in self.nodes if n.name == entry.name), None)
        if (
            node is None
            or entry.ip not in (None, node.ip)
            or entry.pod_cidr not in (None, node.pod_cidr)
        ):
            raise TopologyError(
                "a step cannot add or change a Node (nodes are fixed when the scenario"
                f" loads; nodes: {', '.join(n.name for n in self.nodes)})",
                manifest.loc,
                describe_object(manifest.data),
            )

    def label(self, item: LabelItem, path: FieldPath, loc: Loc) -> LabelStep:
        m = item.label
        if (m.pod is None) == (m.namespace is None):
            raise self.fail(
                path, "give exactly one of pod (NS/NAME) or namespace (NAME)"
            )
        if m.pod is not None:
            if m.pod.count("/") != 1 or not all(m.pod.split("/")):
                raise self.fail((*path, "pod"), f"{m.pod!r} is not NS/NAME")
            kind, target = "pod", m.pod
        else:
            assert m.namespace is not None
            if NAMESPACE_NAME_LABEL in m.set or NAMESPACE_NAME_LABEL in m.remove:
                raise self.fail(
                    path, f"{NAMESPACE_NAME_LABEL} is managed by Kubernetes"
                )
            kind, target = "namespace", m.namespace
        return LabelStep(kind, target, dict(m.set), tuple(m.remove), item.name, loc)

    def replay(self, item: ReplayItem, path: FieldPath, loc: Loc) -> ReplayStep:
        m = item.replay
        where = (*path, "pcap")
        real = self.files.regular_file(
            m.pcap, self.base_dir, self.locate(where), format_path(where)
        )
        if real is None:
            raise self.fail(
                where, f"no such capture file: {m.pcap!r} (relative to the scenario)"
            )
        pcap = self.base_dir / m.pcap
        expect = None
        if m.expect is not None:
            expect = {}
            for word, count in m.expect.items():
                verdict = word if word == "malformed" else str(_verdict(word))
                if verdict in expect:
                    raise self.fail(
                        (*path, "expect", word), f"{word!r} repeats {verdict!r}"
                    )
                expect[verdict] = count
        return ReplayStep(pcap, m.at, expect, item.name, loc, m.keep_traces)


def _verdict(word: str) -> Verdict:
    """A verdict word; `allowed` is `delivered`."""
    return Verdict.DELIVERED if word == "allowed" else Verdict(word)


__all__ = ["LineTree", "load_scenario", "load_scenario_text", "objects_of"]
