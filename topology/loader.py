"""Load a scenario file: YAML -> validated schema -> initial `Cluster` and step records.

Every problem is a `TopologyError` whose text is `FILE:LINE: OBJECT: FIELD: reason (allowed:
...)`.  The cluster before step 1 is built here (so manifest errors show at load time); the
objects of `apply` steps are validated here too when they hold no `${ip:...}` reference (those
can only be checked when the step runs).  Step endpoints are resolved when the step runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from topology.change import build_cluster, parse_ref
from topology.config import cluster_config
from topology.diagnostic import to_topology_error
from topology.errors import TopologyError
from topology.fields import describe
from topology.manifest import has_refs, manifest_from, parse_manifest
from topology.model import Loc, Protocol
from topology.normalize import NAMESPACE_NAME_LABEL, draft
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


def load_scenario(path: str | os.PathLike[str]) -> tuple[Scenario, list[str]]:
    """Load and validate a scenario file: the scenario and the validation warnings."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise TopologyError(
            f"cannot read scenario: {err.strerror or err}", Loc(str(path))
        ) from None
    return load_scenario_text(text, str(path), file.parent, path=file)


def load_scenario_text(
    text: str,
    filename: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    *,
    path: Path | None = None,
) -> tuple[Scenario, list[str]]:
    """Load a scenario from text; `{file: ...}` and pcap paths are relative to `base_dir`."""
    docs = load_documents(text, filename)
    if not docs or docs[0].data is None:
        raise TopologyError("the scenario file is empty", Loc(filename))
    if len(docs) != 1:
        where = docs[1].loc if len(docs) > 1 else Loc(filename)
        raise TopologyError(
            f"a scenario is one YAML document (found {len(docs)})", where
        )
    return _ScenarioLoader(docs[0], filename, Path(base_dir or "."), path).load()


def read_manifests(
    file: str, base_dir: Path, shown_dir: str, loc: Loc, field: str = "file"
) -> list[Manifest]:
    """Every object of a (multi-document) manifest file; empty documents are skipped."""
    target = base_dir / file
    shown = os.path.normpath(os.path.join(shown_dir, file))
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as err:
        raise TopologyError(
            f"cannot read manifest file {file!r}: {err.strerror or err}",
            loc,
            None,
            field,
        ) from None
    out = []
    for doc in load_documents(text, shown):
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            raise TopologyError(
                f"a manifest is a mapping, got {describe(doc.data)}", doc.loc
            )
        out.append(manifest_from(doc.data, doc.lines, shown))
    return out


class _ScenarioLoader:
    def __init__(
        self, doc: Document, filename: str, base_dir: Path, path: Path | None
    ) -> None:
        self.doc = doc
        self.filename = filename
        self.base_dir = base_dir
        self.shown_dir = os.path.dirname(filename)
        self.path = path

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

    def load(self) -> tuple[Scenario, list[str]]:
        data = self.doc.data
        if not isinstance(data, dict):
            raise TopologyError(
                "a scenario is a mapping with name, cluster, manifests and steps,"
                f" got {describe(data)}",
                self.doc.loc,
            )
        model: ScenarioModel = self.validate(ScenarioModel, data, ())
        config = cluster_config(model.cluster, self.locate)
        manifests = self.manifests(data.get("manifests") or [], ("manifests",))
        cluster, warnings = build_cluster(config, manifests)
        steps = tuple(self.step(i, raw) for i, raw in enumerate(data["steps"]))
        scenario = Scenario(model.name, self.path, cluster, steps, model.description)
        return scenario, warnings

    def manifests(self, items: list[Any], prefix: FieldPath) -> list[Manifest]:
        out: list[Manifest] = []
        for index, item in enumerate(items):
            where = (*prefix, index)
            tree = self.doc.lines.subtree(where)
            if "file" in item and "kind" not in item:
                ref: FileRef = self.validate(FileRef, item, where)
                loc = self.locate((*where, "file"))
                field = format_path((*where, "file"))
                out.extend(
                    read_manifests(ref.file, self.base_dir, self.shown_dir, loc, field)
                )
            else:
                out.append(manifest_from(item, tree, self.filename))
        return out

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
        return Expectation(verdict, m.policy, tuple(m.via), m.endpoint)

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
        objects = self.manifests(raw, path)
        for manifest in objects:
            if not has_refs(manifest.data):
                draft(parse_manifest(manifest), [])
        return ApplyStep(tuple(objects), item.name, loc)

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
        pcap = self.base_dir / m.pcap
        if not pcap.is_file():
            raise self.fail(
                (*path, "pcap"),
                f"no such capture file: {m.pcap!r} (relative to the scenario)",
            )
        expect = None
        if m.expect is not None:
            expect = {}
            for word, count in m.expect.items():
                verdict = str(_verdict(word))
                if verdict in expect:
                    raise self.fail(
                        (*path, "expect", word), f"{word!r} repeats {verdict!r}"
                    )
                expect[verdict] = count
        return ReplayStep(pcap, m.at, expect, item.name, loc, m.keep_traces)


def _verdict(word: str) -> Verdict:
    """A verdict word; `allowed` is `delivered`."""
    return Verdict.DELIVERED if word == "allowed" else Verdict(word)


__all__ = ["LineTree", "load_scenario", "load_scenario_text", "read_manifests"]
