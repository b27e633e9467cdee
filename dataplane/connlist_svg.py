"""`dataplane connlist -o svg`: the connection list as a picture, drawn with the shapes
and the SVG writer of `dataplane.draw` (no Graphviz, no system binary).

Sources stand in a column on the left and destinations in a column on the right (a
workload that is both appears on each side), each allowed connection an arrow from one to
the other with its ports written on it; address ranges outside the cluster are drawn in the
colour of the topology picture's external hosts.  The labels of one source's arrows are
spread along them so that they do not sit on one another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataplane.connlist import format_ports
from dataplane.draw import (
    MARK_COLOUR,
    MUTED,
    PALETTE,
    Label,
    Line,
    Rect,
    Shape,
    svg_document,
)
from dataplane.graph import LINE_H, MARGIN, text_width

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.connlist import Conn

ROW_H = 28
ROW_GAP = 14
TITLE_H = 48
EDGE = MARK_COLOUR["allow"]  # an allowed connection


def _is_range(name: str) -> bool:
    """An address range (`10.0.0.0-10.0.0.255,...`), not a workload or pod."""
    return "[" not in name


def _lines(name: str) -> list[str]:
    """A box's text: a workload on one line, the spans of a range one a line."""
    return name.split(",")


def _column(names: list[str], x: float, w: float) -> dict[str, Rect]:
    out = {}
    y = TITLE_H
    for name in names:
        fill, stroke = PALETTE["external" if _is_range(name) else "pod"]
        h = max(ROW_H, 12 + LINE_H * len(_lines(name)))
        out[name] = Rect(x, y, w, h, fill, stroke, 1.2, 4.0, name)
        y += h + ROW_GAP
    return out


def to_svg(conns: list[Conn], title: str = "Allowed connections") -> str:
    """The picture of `conns` as an SVG document."""
    sources = sorted({c.src for c in conns})
    targets = sorted({c.dst for c in conns})
    labels = [format_ports(c.ports) for c in conns]
    box_w = max(
        (text_width(t) + 20 for n in (*sources, *targets) for t in _lines(n)),
        default=120.0,
    )
    gap = max(220.0, max((text_width(t, "small") for t in labels), default=0) * 2 + 80)
    left = _column(sources, MARGIN, box_w)
    right = _column(targets, MARGIN + box_w + gap, box_w)
    items: list[Shape] = [Label(MARGIN, MARGIN, title, "head")]
    if not conns:
        items.append(Label(MARGIN, TITLE_H + ROW_H / 2, "no allowed connection", "text", MUTED))  # fmt: skip
    for rect in (*left.values(), *right.values()):
        items.append(rect)
        lines = _lines(rect.key)
        top = rect.y + rect.h / 2 - (len(lines) - 1) * LINE_H / 2
        items += [
            Label(rect.x + rect.w / 2, top + i * LINE_H, line, "text", anchor="middle")
            for i, line in enumerate(lines)
        ]
    per_source: dict[str, int] = {}
    for c in conns:
        per_source[c.src] = per_source.get(c.src, 0) + 1
    seen: dict[str, int] = {}
    texts: list[Shape] = []
    for c, text in zip(conns, labels, strict=True):
        a, b = left[c.src], right[c.dst]
        x1, y1 = a.x + a.w, a.y + a.h / 2
        x2, y2 = b.x, b.y + b.h / 2
        items.append(Line(((x1, y1), (x2, y2)), EDGE, 1.4, arrow=True))
        k = seen[c.src] = seen.get(c.src, 0) + 1
        t = 0.15 + 0.7 * k / (per_source[c.src] + 1)
        x, y = x1 + (x2 - x1) * t, y1 + (y2 - y1) * t
        w = text_width(text, "small") + 8
        texts.append(Rect(x - w / 2, y - 8, w, 16, "#ffffff", "#ffffff", 0, 3.0))
        texts.append(Label(x, y, text, "small", MUTED, "middle"))
    bottom = max((r.y + r.h for r in (*left.values(), *right.values())), default=0)
    width = MARGIN * 2 + box_w * 2 + gap
    height = max(bottom, TITLE_H + ROW_H) + MARGIN
    return svg_document(title, width, height, items + texts, [EDGE])


__all__ = ["to_svg"]
