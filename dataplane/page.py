"""The walk in a browser: one self-contained HTML page, a picture to step through.

`walk_page(sim, trace)` gives the page of one walk: the topology picture of
`dataplane graph` with the path drawn hop by hop, the hop list beside it, Previous /
Next / Play and the keyboard, a view of the packet layer by layer at each hop with the
fields that hop changed, what the device consulted (the route, the FDB entry, conntrack,
the NAT rule, the policy decision and why the other rules did not admit), and a predict
mode that asks before each decision (`dataplane.quiz`).  `scenario_page` puts every
step of a scenario on one page, a matrix as a grid whose cells open that pair's walk.

Everything is inline (CSS, JavaScript, SVG, the walk's data as JSON), nothing is fetched
(a Content-Security-Policy forbids it), so a page works from `file://` and offline.  The
DOM is stable for tests and assistive tools: each hop is `li[data-hop=SEQ]`, the current
one `aria-current="step"`; the buttons are named Previous, Next and Play; every interface
drawn carries `data-device` (`NODE/IFNAME`, a pod's `NODE/NS/POD/IFNAME`), every element
`data-key`; elements on the path so far have the class `on-path`, the current one
`current`.
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from html import escape
from importlib import resources
from typing import TYPE_CHECKING, Any

from dataplane import draw
from dataplane.draw import legend_top
from dataplane.graph import HOOK_EVENTS, Scene, build_scene, element_of
from dataplane.packet import ETH_P_IP, TUNNEL_NAMES, Packet, app_bytes, icmp_name
from dataplane.quiz import questions
from dataplane.trace import Hop, Trace
from dataplane.trace_view import mac_names, step_text, summary_steps
from topology.scenario import MatrixStep

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.result import StepResult
    from dataplane.scenario import Runner
    from dataplane.sim import Simulator

PROTO = {1: "ICMP", 6: "TCP", 17: "UDP", 132: "SCTP"}
# What a hop's detail tells, by event: the thing the device consulted.
CONSULTED = {
    "route": "route that matched",
    "bridge": "bridge forwarding (FDB)",
    "conntrack": "conntrack entry",
    "nat": "NAT rule",
    "arp": "neighbour table (ARP)",
    "encap": "VXLAN FDB entry",
    "decap": "VXLAN device",
    "forward": "IP forwarding",
    "deliver": "socket",
    "xmit": "transmit",
    "recv": "receive",
}


def _consulted(event: str) -> str:
    return CONSULTED.get(event, "netfilter hook" if event in HOOK_EVENTS else event)


def _asset(name: str) -> str:
    return resources.files("dataplane").joinpath("web", name).read_text("utf-8")


# -- the packet, layer by layer -----------------------------------------------------------


def _l4_name(l4: Any) -> str:
    return type(l4).__name__


def packet_layers(pkt: Packet, prefix: str = "") -> list[dict[str, Any]]:
    """The packet's headers outermost first, each `{name, fields: [[field, value]]}`;
    an encapsulated frame's inner headers follow, named `inner ...`."""
    out: list[dict[str, Any]] = []

    def layer(name: str, items: list[tuple[str, Any]]) -> None:
        out.append({"name": prefix + name, "fields": [[k, str(v)] for k, v in items]})

    if pkt.eth is not None:
        eth = pkt.eth
        kind = (
            "ARP"
            if pkt.arp is not None
            else "IPv4"
            if eth.type == ETH_P_IP
            else hex(eth.type)
        )
        layer("Ethernet", [("src", eth.src), ("dst", eth.dst), ("type", kind)])
    if pkt.arp is not None:
        a = pkt.arp
        op = {1: "who-has (request)", 2: "is-at (reply)"}.get(a.op, str(a.op))
        layer("ARP", [("op", op), ("hwsrc", a.hwsrc), ("psrc", a.psrc),
                      ("hwdst", a.hwdst), ("pdst", a.pdst)])  # fmt: skip
    if pkt.ip is not None:
        ip = pkt.ip
        flags = "+".join(f for f, on in (("DF", ip.df), ("MF", ip.mf)) if on) or "-"
        layer("IPv4", [("src", ip.src), ("dst", ip.dst), ("ttl", ip.ttl),
                       ("protocol", PROTO.get(ip.proto, ip.proto)), ("id", ip.id),
                       ("flags", flags), ("frag offset", ip.frag * 8),
                       ("total length", pkt.ip_len())])  # fmt: skip
    l4 = pkt.l4
    if l4 is not None:
        if is_dataclass(l4):
            items = [
                (f.name, getattr(l4, f.name)) for f in fields(l4) if f.name != "quote"
            ]
        else:  # pragma: no cover - every l4 is a dataclass
            items = []
        if _l4_name(l4) == "ICMP":
            items.insert(0, ("message", icmp_name(l4)))  # type: ignore[arg-type]
        layer(_l4_name(l4), items)
        quote = getattr(l4, "quote", None)
        if quote is not None:
            out.extend(packet_layers(quote, prefix + "quoted "))
    if pkt.tunnel is not None:
        layer(TUNNEL_NAMES[type(pkt.tunnel)], [("vni", pkt.tunnel.vni)])
    if pkt.inner is not None:
        out.extend(packet_layers(pkt.inner, prefix + "inner "))
    if pkt.app is not None:
        layer("payload", [("message", getattr(pkt.app, "summary", lambda: "")()
                           or type(pkt.app).__name__),
                          ("bytes", len(app_bytes(pkt.app)))])  # fmt: skip
    elif pkt.data:
        layer("payload", [("bytes", len(pkt.data))])
    return out


def _changed(
    before: list[dict[str, Any]] | None, now: list[dict[str, Any]]
) -> list[str]:
    """`LAYER.FIELD` of every field whose value differs from the same layer's before."""
    if before is None:
        return []
    old = {(la["name"], k): v for la in before for k, v in la["fields"]}
    names = {la["name"] for la in before}
    out = []
    for la in now:
        if la["name"] not in names:
            continue  # a layer this hop added (encapsulation): new, not changed
        out += [
            f"{la['name']}.{k}"
            for k, v in la["fields"]
            if old.get((la["name"], k), v) != v
        ]
    return out


# -- one walk as data ---------------------------------------------------------------------


def _decision_text(sim: Simulator, hop: Hop) -> str:
    """For a NetworkPolicy hop on a new connection: the decision in prose, with why each
    rule that did not admit did not."""
    if hop.event not in HOOK_EVENTS or "netpol" not in hop.detail or hop.packet is None:
        return ""
    from dataplane import netpol_text
    from dataplane.netpol_hook import decisions_at

    want = "egress" if "egress" in hop.detail else "ingress"
    for d in decisions_at(sim.cluster, hop.node, hop.packet):
        if d.direction.value == want:
            return netpol_text.explain(d, multiline=True)
    return ""


def walk_data(sim: Simulator, trace: Trace, scene: Scene) -> dict[str, Any]:
    """Everything the viewer shows of one walk, as JSON-ready data (packets shared)."""
    packets: list[list[dict[str, Any]]] = []
    index: dict[int, int] = {}
    hops: list[dict[str, Any]] = []
    last: dict[
        str, list[dict[str, Any]]
    ] = {}  # per direction, the last IP packet's layers
    leg = ""
    # The summary view's lines (`dataplane.trace_view`): each shown at its last hop.
    names = mac_names(trace)
    summary = {
        s.hops[-1].seq: f"{s.number}  {s.node} {s.netns}".rstrip()
        + ("  " + " > ".join(s.devices) if s.devices else "")
        + f"  {step_text(s, names, frozenset())}"
        for s in summary_steps(trace)
    }
    for hop in trace.hops:
        if hop.event == "phase":
            leg = "dns" if hop.detail.startswith("DNS lookup") else ""
        layers = None
        pkt_ref = -1
        if hop.packet is not None:
            ref = index.get(id(hop.packet))
            if ref is None:
                ref = index[id(hop.packet)] = len(packets)
                packets.append(packet_layers(hop.packet))
            pkt_ref, layers = ref, packets[ref]
        changed = sorted({*(_changed(last.get(hop.direction), layers or [])),
                          *(f"{d.field}" for d in hop.diffs)})  # fmt: skip
        if hop.packet is not None and hop.packet.arp is None and layers:
            last[hop.direction] = layers
        key = element_of(scene, hop) or ""
        box = scene.boxes.get(key)
        hops.append(
            {
                "seq": hop.seq,
                "where": hop.where,
                "device": hop.device,
                "event": hop.event,
                "detail": hop.detail,
                "direction": hop.direction,
                "leg": leg,
                "key": key,
                "dataDevice": box.device if box is not None else "",
                "visit": scene.hop_visits.get(hop.seq, -1),
                "packet": pkt_ref,
                "changed": changed,
                "rewrites": [str(d) for d in hop.diffs],
                "consulted": _consulted(hop.event),
                "decision": _decision_text(sim, hop),
                "reason": str(hop.reason) if hop.reason is not None else "",
                "summary": summary.get(hop.seq, ""),
            }
        )
    return {
        "title": trace.title,
        "mode": trace.mode,
        "verdict": trace.verdict.value if trace.verdict else "none",
        "explanation": trace.explanation,
        "policy": trace.policy,
        "endpoint": trace.endpoint,
        "assumptions": list(trace.assumptions),
        "hops": hops,
        "packets": packets,
        "path": [
            {
                "key": v.key,
                "number": v.number,
                "direction": v.direction,
                "colour": v.colour_key,
            }
            for v in scene.path
        ],
        "marks": [
            {
                "letter": chr(ord("A") + i),
                "key": m.key,
                "kind": m.kind,
                "text": f"{m.word} — {m.text}",
                "visit": m.visit,
            }
            for i, m in enumerate(scene.marks)
        ],
        "questions": [q.to_dict() for q in questions(sim, trace)],
    }


# -- the page -----------------------------------------------------------------------------


def _base_svg(scene: Scene) -> str:
    """The cluster picture without a path, with the empty groups a walk's path goes in
    (`g.walk-under` under the boxes, `g.walk-over` over them)."""
    base = draw.layers(scene)
    w, h = f"{scene.width:.0f}", f"{legend_top(scene):.0f}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="{escape(scene.title)}" font-family="{draw.SANS}">'
        f"<defs>{draw.svg_markers()}</defs>{draw.svg_shapes(base['base'])}"
        f'<g class="walk-under"></g>{draw.svg_shapes(base["boxes"])}'
        '<g class="walk-over"></g></svg>'
    )


def _json(data: Any) -> str:
    """JSON safe inside a <script> element (no `</` can end it early)."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


class Page:
    """The walks of one page and the pictures they are drawn on (one per distinct
    cluster layout: an `apply` step between two probes moves the boxes)."""

    def __init__(self) -> None:
        self.svgs: list[str] = []
        self.walks: list[dict[str, Any]] = []

    def add(self, sim: Simulator, trace: Trace) -> int:
        """Add the walk of `trace` through the cluster of `sim`; its index."""
        scene = build_scene(sim, trace)
        svg = _base_svg(build_scene(sim, None, title=trace.title))
        if svg not in self.svgs:
            self.svgs.append(svg)
        data = walk_data(sim, trace, scene)
        layers = draw.layers(scene)
        data["svg"] = self.svgs.index(svg)
        data["under"] = draw.svg_shapes(layers["path-under"])
        data["over"] = draw.svg_shapes(layers["path-over"] + layers["marks"])
        self.walks.append(data)
        return len(self.walks) - 1

    def html(self, title: str, steps: list[dict[str, Any]] | None = None) -> str:
        data = {"svgs": self.svgs, "walks": self.walks, "steps": steps or []}
        return (
            _asset("viewer.html")
            .replace("{{head}}", _asset("head.html"))
            .replace("{{title}}", escape(title))
            .replace("{{css}}", _asset("viewer.css"))
            .replace("{{svg}}", self.svgs[0] if self.svgs else "")
            .replace("{{data}}", _json(data))
            .replace("{{js}}", _asset("viewer.js"))
        )


def walk_page(sim: Simulator, trace: Trace, title: str = "") -> str:
    """The page of one walk."""
    page = Page()
    page.add(sim, trace)
    return page.html(title or trace.title)


def notebook_html(traces: list[Trace], title: str) -> str:
    """The viewer for a notebook cell: the page in an iframe (its own document, so that
    several viewers in one notebook keep their ids, styles and keys apart)."""
    from dataplane.sim import Simulator

    page = Page()
    sims: dict[int, Simulator] = {}
    for t in traces:
        if t.cluster is None:
            continue  # a trace built by hand: nothing to draw it on
        sim = sims.get(id(t.cluster))
        if sim is None:
            sim = sims[id(t.cluster)] = Simulator(t.cluster)
        page.add(sim, t)
    doc = page.html(title)
    return (
        f'<iframe srcdoc="{escape(doc, quote=True)}" title="{escape(title, quote=True)}"'
        ' style="width:100%;height:760px;border:1px solid #cbd5e1"></iframe>'
    )


def quiz_page(traces: list[Trace], title: str) -> str:
    """`dataplane quiz`: a page of the questions of every walk (`dataplane.quiz`), each
    answered in place with its reason, and a score."""
    from dataplane.sim import Simulator

    probes = []
    for t in traces:
        if t.cluster is None:
            continue
        qs = questions(Simulator(t.cluster), t)
        probes.append({"title": t.title, "questions": [q.to_dict() for q in qs]})
    return (
        _asset("quiz.html")
        .replace("{{head}}", _asset("head.html"))
        .replace("{{title}}", escape(title))
        .replace("{{css}}", _asset("viewer.css"))
        .replace("{{data}}", _json({"probes": probes}))
        .replace("{{js}}", _asset("quiz.js"))
    )


# A matrix bigger than this is shown as a grid of verdicts without a walk per cell.
MATRIX_WALKS = 400


class ScenarioPage:
    """One page for a scenario run: its steps in order, each probe opening its walk, a
    matrix as a grid whose cells open that pair's walk and explanation.  Pass `step` to
    `Runner.run` as the step callback: it reads the cluster as it is at each step."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.page = Page()
        self.steps: list[dict[str, Any]] = []

    def step(self, res: StepResult) -> None:
        sim = self.runner.sim
        traces = [res.trace] if res.trace is not None else res.traces
        entry: dict[str, Any] = {
            "index": res.index, "kind": res.kind, "title": res.title, "name": res.name,
            "ok": res.ok, "message": res.message,
            "walks": [self.page.add(sim, t) for t in traces],
        }  # fmt: skip
        step = self.runner.scenario.steps[res.index - 1]
        if isinstance(step, MatrixStep) and isinstance(res.data.get("matrix"), dict):
            entry["matrix"] = self._matrix(res.data["matrix"], step)
        self.steps.append(entry)

    def _matrix(self, data: dict[str, Any], step: MatrixStep) -> dict[str, Any]:
        from dataplane.matrix import NO_PORT
        from dataplane.result import VERDICT_OF_CODE

        sim = self.runner.sim
        sources, targets = data["sources"], data["targets"]
        port = self.runner.sub(step.port) if isinstance(step.port, str) else step.port
        walk_each = len(sources) * len(targets) <= MATRIX_WALKS
        rows = []
        for src, codes in zip(sources, data["rows"], strict=True):
            row = []
            for dst, code in zip(targets, codes, strict=True):
                verdict = VERDICT_OF_CODE.get(code)
                cell: dict[str, Any] = {
                    "code": code, "verdict": verdict.value if verdict else code,
                }  # fmt: skip
                if walk_each and verdict is not None:  # None: no port of that name
                    t = sim.probe(src, dst, port, step.protocol)
                    cell["walk"] = self.page.add(sim, t)
                    cell["explanation"] = t.explanation
                row.append(cell)
            rows.append(row)
        shown = {cell["code"] for row in rows for cell in row}
        legend = {c: v.value for c, v in VERDICT_OF_CODE.items() if c in shown}
        if NO_PORT in shown:
            legend[NO_PORT] = "no-port"
        return {"from": sources, "to": targets, "cells": rows, "legend": legend}

    def html(self) -> str:
        return self.page.html(self.runner.scenario.name, self.steps)


__all__ = [
    "Page",
    "ScenarioPage",
    "notebook_html",
    "packet_layers",
    "walk_data",
    "walk_page",
]
