"""Render a `dataplane.graph.Scene`: shapes first, then SVG text or a PNG image.

`shapes(scene)` turns the scene into a flat list of primitives (rectangles, polylines,
labels, dots); `to_svg` writes them as SVG and `to_png` draws them with Pillow at twice the
size, so that both files show the same picture and neither needs a system binary.  The PNG
uses DejaVu fonts when the system has them and Pillow's own font otherwise.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Any

from dataplane.graph import (
    CHAR_W,
    LINE_H,
    MARGIN,
    REQUEST,
    Box,
    Mark,
    Scene,
    Visit,
    text_width,
)

# Colours: one per kind of device (fill, stroke), and the path's.
PALETTE = {
    "panel": ("#f8fafc", "#94a3b8"),
    "pod": ("#dbeafe", "#3b82f6"),
    "port": ("#ffffff", "#3b82f6"),
    "lo": ("#ffffff", "#93c5fd"),
    "pause": ("#e2e8f0", "#64748b"),
    "container": ("#ffffff", "#60a5fa"),
    "veth": ("#f5f5f4", "#78716c"),
    "bridge": ("#fef9c3", "#a16207"),
    "host": ("#ffffff", "#64748b"),
    "vtep": ("#cffafe", "#0e7490"),
    "eth": ("#e2e8f0", "#334155"),
    "underlay": ("#475569", "#1e293b"),
    "gateway": ("#dcfce7", "#15803d"),
    "external": ("#fce7f3", "#be185d"),
    "service": ("#ede9fe", "#6d28d9"),
    "caption": ("#ffffff", "#ffffff"),
}
# The connection's request and reply; the DNS lookup before it (a probe by name).
PATH_COLOUR = {
    "request": "#f97316",
    "reply": "#7c3aed",
    "dns-request": "#0891b2",
    "dns-reply": "#65a30d",
}
PATH_LEGEND = {
    "request": "request",
    "reply": "reply",
    "dns-request": "DNS query",
    "dns-reply": "DNS answer",
}
STYLE_COLOUR = {"policy": "#b91c1c"}  # a pod's NetworkPolicies
MARK_COLOUR = {"allow": "#16a34a", "deny": "#dc2626", "nat": "#0369a1"}
LINK = "#94a3b8"
INK = "#0f172a"
MUTED = "#475569"
FONT_SIZE = {"title": 18, "head": 14, "bold": 12, "text": 12, "mono": 11, "small": 10.5,
             "policy": 10.5}  # fmt: skip

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    stroke: str
    width: float = 1.0
    radius: float = 4.0
    key: str = ""  # the scene element it draws (for tests and SVG readers)
    hot: str = ""
    device: str = ""  # NODE/IFNAME of the interface it draws (pods NODE/NS/POD/IFNAME)


@dataclass(frozen=True, slots=True)
class Line:
    points: tuple[Point, ...]
    colour: str
    width: float = 1.5
    dash: bool = False
    arrow: bool = False
    visit: int = -1  # the index of the path visit it draws (-1: not the path)


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float  # the vertical middle of the text
    text: str
    style: str = "text"
    colour: str = INK
    anchor: str = "start"  # start, middle, end


@dataclass(frozen=True, slots=True)
class Dot:
    x: float
    y: float
    r: float
    fill: str
    text: str = ""
    visit: int = -1  # the index of the path visit it numbers (-1: none)
    seq: int = -1  # the trace hop of the decision it letters (-1: none)


Shape = Rect | Line | Label | Dot


# -- the scene as shapes ---------------------------------------------------------------------


def _route(a: Box, b: Box, ax: float, bx: float, off: float) -> tuple[Point, ...]:
    """An orthogonal line from box a to box b (above or below it), `off` pixels aside."""
    if b.y >= a.y + a.h - 1:  # b below a
        y1, y2 = a.y + a.h, b.y
    elif b.y + b.h <= a.y + 1:  # b above a
        y1, y2 = a.y, b.y + b.h
    else:  # side by side
        x1, x2 = (a.x + a.w, b.x) if b.x >= a.x else (a.x, b.x + b.w)
        return ((x1, a.cy + off), (x2, b.cy + off))
    mid = (y1 + y2) / 2 + off
    return ((ax + off, y1), (ax + off, mid), (bx + off, mid), (bx + off, y2))


def _link_shapes(scene: Scene) -> list[Shape]:
    out: list[Shape] = []
    for a, b, label in scene.links:
        ba, bb = scene.boxes[a], scene.boxes[b]
        ax = ba.anchor_x(bb.cx)
        bx = bb.anchor_x(ax)
        ax = ba.anchor_x(bx)
        pts = _route(ba, bb, ax, bx, 0)
        out.append(Line(pts, LINK, 1.5))
        if label:
            (x1, y1), (x2, y2) = pts[0], pts[-1]
            out.append(Label(max(x1, x2) + 12, (y1 + y2) / 2, label, "small", MUTED))
    return out


def _box_shapes(box: Box) -> list[Shape]:
    fill, stroke = PALETTE[box.kind]
    width = 1.2
    if box.hot:
        stroke, width = PATH_COLOUR[box.hot], 3.0
    radius = 10.0 if box.kind == "panel" else 4.0
    out: list[Shape] = [
        Rect(
            box.x,
            box.y,
            box.w,
            box.h,
            fill,
            stroke,
            width,
            radius,
            box.key,
            box.hot or "",
            box.device,
        )
    ]
    colour = "#ffffff" if box.kind == "underlay" else INK
    if box.kind == "panel":
        (head, hs), (sub, ss) = box.lines
        out.append(Label(box.x + 14, box.y + 15, head, hs))
        out.append(
            Label(box.x + 14 + text_width(head, hs) + 10, box.y + 15, sub, ss, MUTED)
        )
        return out
    n = len(box.lines)
    top = box.y + (box.h - box.pad_bottom) / 2 - (n - 1) * LINE_H / 2
    left = box.kind in ("host", "caption")
    for i, (text, style) in enumerate(box.lines):
        y = top + i * LINE_H
        if box.kind == "caption":
            out.append(Label(box.x, y, text, style, MUTED))
        elif left:
            out.append(Label(box.x + 10, y, text, style, INK if i == 0 else MUTED))
        else:
            ink = STYLE_COLOUR.get(style, colour)
            out.append(Label(box.cx, y, text, style, ink, "middle"))
    return out


def _badge_spot(box: Box, v: Visit, entry: Point | None) -> Point:
    """Where the number of a visit goes: left of a box for the request, right of it for
    the reply; beside the entry point for a bridge or the underlay."""
    sign = -1 if v.direction == REQUEST else 1
    if box.wide and entry is not None:
        above = entry[1] <= box.y + 1
        return (entry[0] + sign * 16, box.y - 11 if above else box.y + box.h + 11)
    return (box.x - 12 if sign < 0 else box.x + box.w + 12, box.cy)


def _free_spot(
    scene: Scene, taken: list[Point], spot: Point, r: float, direction: str
) -> Point:
    """The first place near `spot` where a badge of radius `r` covers no other badge
    and stays in the picture: a row lower or higher, then one step outward."""
    step = -(2 * r + 2) if direction == REQUEST else 2 * r + 2
    for dx in (0, step, 2 * step):
        for dy in (0, 20, -20, 40, -40):
            x = min(max(spot[0] + dx, r + 2), scene.width - r - 2)
            y = spot[1] + dy
            clash = any(
                abs(x - tx) < 2 * r + 1 and abs(y - ty) < 19 for tx, ty in taken
            )
            if not clash and not _covers_a_box(scene, x, y, r):
                return (x, y)
    return spot


def _covers_a_box(scene: Scene, x: float, y: float, r: float) -> bool:
    """Whether a badge at (x, y) would cover part of a device's box (its text)."""
    return any(
        x + r > b.x and x - r < b.x + b.w and y + r > b.y and y - r < b.y + b.h
        for b in scene.boxes.values()
        if b.kind not in ("caption", "panel")
    )


def _path_shapes(scene: Scene) -> tuple[list[Shape], list[Shape]]:
    """The path: lines between elements (drawn under the boxes), travel along bridges
    and the underlay, and a numbered dot for each element reached (drawn over them)."""
    under: list[Shape] = []
    over: list[Shape] = []
    taken: list[Point] = []
    cursor: dict[str, float] = {}  # where the path entered each wide element
    prev: Visit | None = None
    for i, v in enumerate(scene.path):
        box = scene.boxes[v.key]
        colour = PATH_COLOUR[v.colour_key]
        dash = v.direction != REQUEST
        entry: Point | None = None
        if prev is not None and prev.key != v.key:
            pbox = scene.boxes[prev.key]
            px = cursor.get(prev.key, pbox.cx)
            off = -5.0 if not dash else 5.0
            ax = pbox.anchor_x(box.cx if not box.wide else px)
            bx = box.anchor_x(ax)
            ax = pbox.anchor_x(bx)
            if pbox.wide and abs(ax + off - px) > 1:  # along the bridge or the underlay
                # along its top or bottom edge, clear of the label in its middle
                y = pbox.y + pbox.h - 4 if v.direction == REQUEST else pbox.y + 4
                over.append(Line(((px, y), (ax + off, y)), colour, 3.0, dash, visit=i))
            pts = _route(pbox, box, ax, bx, off)
            under.append(Line(pts, colour, 3.0, dash, arrow=True, visit=i))
            entry = pts[-1]
            cursor[v.key] = entry[0]
        else:
            cursor.setdefault(v.key, box.cx)
        prev = v
        if not v.number:
            continue  # crossed without a hop of its own in the trace: no number
        r = 9 if v.number < 100 else 11
        if box.kind in ("pause", "container"):  # numbered beside the pod that holds it
            box = scene.boxes[box.key.split("#", 1)[0]]
        x, y = _free_spot(scene, taken, _badge_spot(box, v, entry), r, v.direction)
        taken.append((x, y))
        over.append(Dot(x, y, r, colour, str(v.number), i))
    return under, over


def _legend(scene: Scene, y: float) -> list[Shape]:
    x = float(MARGIN)
    out: list[Shape] = []
    if scene.path:
        cx = x
        for key in dict.fromkeys(v.colour_key for v in scene.path):
            dash = key.endswith("reply")
            out.append(Line(((cx, y), (cx + 34, y)), PATH_COLOUR[key], 3.0, dash, True))
            out.append(Label(cx + 42, y, PATH_LEGEND[key], "small"))
            cx += 42 + text_width(PATH_LEGEND[key], "small") + 24
        out.append(Dot(cx + 9, y, 9, PATH_COLOUR[scene.path[0].colour_key], "n"))
        out.append(Label(cx + 24, y, "hop n of the trace (dataplane trace): where the "
                         "packet reached the device (ARP left out)", "small"))  # fmt: skip
        y += 24
    for i, m in enumerate(scene.marks):
        out.append(Dot(x + 9, y, 9, MARK_COLOUR[m.kind], chr(ord("A") + i)))
        for part in _mark_lines(scene, m):
            out.append(Label(x + 26, y, part, "small"))
            y += 15
        y += 7
    return out


def _mark_lines(scene: Scene, m: Mark) -> list[str]:
    width = int((scene.width - 2 * MARGIN - 30) / CHAR_W["small"])
    return textwrap.wrap(f"{m.word} — {m.text}", max(width, 40))


def layers(scene: Scene) -> dict[str, list[Shape]]:
    """The picture's primitives in drawing order, by layer: `base` (background, title,
    panels, links), `path-under` (the path's lines, under the boxes), `boxes`,
    `path-over` (travel along wide elements, numbered badges), `marks` (the lettered
    decisions) and `legend`.  The browser view draws the same layers, the path ones per
    walk."""
    base: list[Shape] = [
        Rect(0, 0, scene.width, scene.height, "#ffffff", "#ffffff", 0, 0)
    ]
    base.append(Label(MARGIN, MARGIN + 8, scene.title, "title"))
    if scene.subtitle:
        width = int((scene.width - 2 * MARGIN) / (0.58 * 12))
        parts = textwrap.wrap(scene.subtitle, width)
        if len(parts) > 1:  # the legend below holds the details
            parts = [parts[0][: width - 4] + " ..."]
        for i, part in enumerate(parts):
            base.append(Label(MARGIN, MARGIN + 32 + i * 16, part, "text", MUTED))
    for panel in scene.panels:
        base += _box_shapes(panel)
    base += _link_shapes(scene)
    under, over = _path_shapes(scene)
    boxes: list[Shape] = []
    for box in scene.boxes.values():
        boxes += _box_shapes(box)
    marks: list[Shape] = []
    for i, m in enumerate(scene.marks):
        box = scene.boxes[m.key]
        shift = 22 * _nth(scene, i)
        x = box.x + 4 + shift if box.wide else box.x + box.w - 4 - shift
        letter = chr(ord("A") + i)
        marks.append(Dot(x, box.y + 4, 10, MARK_COLOUR[m.kind], letter, seq=m.seq))
    return {
        "base": base,
        "path-under": under,
        "boxes": boxes,
        "path-over": over,
        "marks": marks,
        "legend": _legend(scene, legend_top(scene)),
    }


def shapes(scene: Scene) -> list[Shape]:
    """Every primitive of the picture, back to front."""
    return [s for layer in layers(scene).values() for s in layer]


def _nth(scene: Scene, i: int) -> int:
    """How many marks before mark `i` sit on the same element (to set them side by side)."""
    return sum(1 for m in scene.marks[:i] if m.key == scene.marks[i].key)


def legend_top(scene: Scene) -> float:
    bottom = max(b.y + b.h for b in scene.boxes.values())
    return bottom + 30


def fit(scene: Scene) -> None:
    """Make room for the legend (the decisions wrapped to the picture's width)."""
    lines = sum(len(_mark_lines(scene, m)) for m in scene.marks)
    needed = legend_top(scene) + (24 if scene.path else 0) + 15 * lines
    scene.height = max(scene.height, needed + 7 * len(scene.marks) + 16)


# -- SVG --------------------------------------------------------------------------------------

SVG_FONTS = {"mono": "DejaVu Sans Mono, Menlo, Consolas, monospace"}
SANS = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif"


def _svg_shape(s: Shape) -> str:
    if isinstance(s, Rect):
        data = f' data-key="{escape(s.key)}"' if s.key else ""
        data += f' data-device="{escape(s.device)}"' if s.device else ""
        data += f' data-hot="{s.hot}"' if s.hot else ""
        return (
            f'<rect x="{s.x:.1f}" y="{s.y:.1f}" width="{s.w:.1f}" height="{s.h:.1f}" '
            f'rx="{s.radius:.0f}" fill="{s.fill}" stroke="{s.stroke}" '
            f'stroke-width="{s.width}"{data}/>'
        )
    if isinstance(s, Line):
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="7 5"' if s.dash else ""
        marker = f' marker-end="url(#arrow-{s.colour[1:]})"' if s.arrow else ""
        visit = f' data-visit="{s.visit}"' if s.visit >= 0 else ""
        return (
            f'<polyline points="{pts}" fill="none" stroke="{s.colour}" '
            f'stroke-width="{s.width}"{dash}{marker}{visit}/>'
        )
    if isinstance(s, Label):
        size = FONT_SIZE[s.style]
        weight = ' font-weight="bold"' if s.style in ("title", "head", "bold") else ""
        family = f' font-family="{SVG_FONTS[s.style]}"' if s.style in SVG_FONTS else ""
        return (
            f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="{size}"{weight}{family} '
            f'fill="{s.colour}" text-anchor="{s.anchor}" dominant-baseline="central">'
            f"{escape(s.text)}</text>"
        )
    text = (
        f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="10" font-weight="bold" '
        f'fill="#ffffff" text-anchor="middle" dominant-baseline="central">'
        f"{escape(s.text)}</text>"
        if s.text
        else ""
    )
    circle = f'<circle cx="{s.x:.1f}" cy="{s.y:.1f}" r="{s.r}" fill="{s.fill}"/>{text}'
    if s.visit >= 0:
        return f'<g data-visit="{s.visit}">{circle}</g>'
    return f'<g data-seq="{s.seq}">{circle}</g>' if s.seq >= 0 else circle


def svg_markers(colours: Iterable[str] | None = None) -> str:
    """The arrowheads of lines drawn with `arrow`, one per colour (default: the path's)."""
    if colours is None:
        colours = PATH_COLOUR.values()
    return "".join(
        f'<marker id="arrow-{c[1:]}" viewBox="0 0 10 10" refX="9" refY="5" '
        f'markerWidth="4" markerHeight="4" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
        for c in sorted(set(colours))
    )


def svg_shapes(items: list[Shape]) -> str:
    return "\n".join(_svg_shape(s) for s in items)


def svg_document(
    title: str, width: float, height: float, items: list[Shape],
    arrows: Iterable[str] | None = None,
) -> str:  # fmt: skip
    """Shapes as a whole SVG document (`arrows`: the colours of its arrowheads)."""
    w, h = f"{width:.0f}", f"{height:.0f}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="{SANS}">\n'
        f"<title>{escape(title)}</title>\n<defs>{svg_markers(arrows)}</defs>\n"
        f"{svg_shapes(items)}\n</svg>\n"
    )


def to_svg(scene: Scene) -> str:
    """The picture as an SVG document."""
    fit(scene)
    return svg_document(scene.title, scene.width, scene.height, shapes(scene))


# -- PNG --------------------------------------------------------------------------------------

FONT_FILES = {
    "regular": ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf"),
    "bold": ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "Arial Bold.ttf"),
    "mono": ("DejaVuSansMono.ttf", "LiberationMono-Regular.ttf", "Courier New.ttf"),
}


def _font(style: str, scale: float, cache: dict[str, Any]) -> Any:
    from PIL import ImageFont

    if style in cache:
        return cache[style]
    family = (
        "mono"
        if style == "mono"
        else "bold"
        if style in ("title", "head", "bold")
        else "regular"
    )
    size = FONT_SIZE[style] * scale
    font: Any = None
    for name in FONT_FILES[family]:
        try:
            font = ImageFont.truetype(name, size)
            break
        except OSError:
            continue
    if font is None:
        font = ImageFont.load_default(size)
    cache[style] = font
    return font


def _dashes(
    points: tuple[Point, ...], on: float, off: float
) -> list[tuple[Point, Point]]:
    out: list[tuple[Point, Point]] = []
    for (x1, y1), (x2, y2) in pairwise(points):
        length = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
        t = 0.0
        while t < length:
            t2 = min(t + on, length)
            a, b = t / length, t2 / length
            out.append(((x1 + (x2 - x1) * a, y1 + (y2 - y1) * a),
                        (x1 + (x2 - x1) * b, y1 + (y2 - y1) * b)))  # fmt: skip
            t = t2 + off
    return out


def _arrowhead(points: tuple[Point, ...], size: float) -> list[Point]:
    (x1, y1), (x2, y2) = points[-2], points[-1]
    length = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5 or 1.0
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    return [(x2, y2), (x2 - ux * size - uy * size * 0.55, y2 - uy * size + ux * size * 0.55),
            (x2 - ux * size + uy * size * 0.55, y2 - uy * size - ux * size * 0.55)]  # fmt: skip


def to_png(scene: Scene, path: str | Path, scale: float = 2.0) -> None:
    """Draw the picture into a PNG file with Pillow, `scale` times the SVG's size."""
    fit(scene)
    png_document(scene.width, scene.height, shapes(scene), path, scale)


def png_document(
    width: float, height: float, items: list[Shape], path: str | Path,
    scale: float = 2.0,
) -> None:  # fmt: skip
    """Shapes drawn into a PNG file with Pillow, `scale` times the SVG's size."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (round(width * scale), round(height * scale)), "white")
    draw = ImageDraw.Draw(img)
    fonts: dict[str, Any] = {}

    def p(pt: Point) -> Point:
        return (pt[0] * scale, pt[1] * scale)

    for s in items:
        if isinstance(s, Rect):
            box = (s.x * scale, s.y * scale, (s.x + s.w) * scale, (s.y + s.h) * scale)
            draw.rounded_rectangle(box, s.radius * scale, fill=s.fill, outline=s.stroke,
                                   width=max(round(s.width * scale), 0))  # fmt: skip
        elif isinstance(s, Line):
            w = max(round(s.width * scale), 1)
            if s.dash:
                for a, b in _dashes(s.points, 7, 5):
                    draw.line([p(a), p(b)], fill=s.colour, width=w)
            else:
                draw.line(
                    [p(q) for q in s.points], fill=s.colour, width=w, joint="curve"
                )
            if s.arrow and len(s.points) > 1:
                head = _arrowhead(tuple(p(q) for q in s.points), 5 * scale)
                draw.polygon(head, fill=s.colour)
        elif isinstance(s, Label):
            font = _font(s.style, scale, fonts)
            anchor = {"start": "lm", "middle": "mm", "end": "rm"}[s.anchor]
            draw.text(p((s.x, s.y)), s.text, fill=s.colour, font=font, anchor=anchor)
        else:
            r = s.r * scale
            draw.ellipse((s.x * scale - r, s.y * scale - r, s.x * scale + r, s.y * scale + r),
                         fill=s.fill)  # fmt: skip
            if s.text:
                draw.text(p((s.x, s.y)), s.text, fill="#ffffff",
                          font=_font("small", scale, fonts), anchor="mm")  # fmt: skip
    img.save(path, format="PNG")


__all__ = [
    "Dot",
    "Label",
    "Line",
    "Rect",
    "layers",
    "png_document",
    "shapes",
    "svg_document",
    "svg_markers",
    "svg_shapes",
    "to_png",
    "to_svg",
]
