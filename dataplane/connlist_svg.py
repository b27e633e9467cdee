"""`dataplane connlist -o svg`: the connection list as a picture, drawn with the shapes
and the SVG writer of `dataplane.draw` (no Graphviz, no system binary).

Sources stand in a column on the left and destinations in a column on the right (a
workload that is both appears on each side), each allowed connection an arrow from one to
the other with its ports written on it; address ranges outside the cluster are drawn in the
colour of the topology picture's external hosts.  A connection allowed on every port and
protocol (`All Connections`) is a thin grey arrow without a label; one restricted to some
ports is green, its ports written on it where the label covers no other label (the first
free spot along the arrow), and a legend says which is which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataplane.connlist import format_ports
from dataplane.draw import (
    INK,
    LINK,
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
EDGE = MARK_COLOUR["allow"]  # a connection allowed on some ports
OPEN = LINK  # a connection allowed on every port: nothing restricts it
EVERY = "All Connections"  # `format_ports` of every port and protocol
# where along its arrow a label may go, in order of preference
SPOTS = (0.5, 0.35, 0.65, 0.25, 0.75, 0.15, 0.85, 0.42, 0.58, 0.3, 0.7, 0.2, 0.8)


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
    width, height, items = picture(conns, title)
    return svg_document(title, width, height, items, [EDGE, OPEN])


def _overlaps(a: Rect, placed: list[Rect]) -> int:
    return sum(
        1
        for b in placed
        if a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h
    )


def picture(conns: list[Conn], title: str) -> tuple[float, float, list[Shape]]:
    """The picture's size and its shapes, back to front."""
    sources = sorted({c.src for c in conns})
    targets = sorted({c.dst for c in conns})
    labels = [format_ports(c.ports) for c in conns]
    box_w = max(
        (text_width(t) + 20 for n in (*sources, *targets) for t in _lines(n)),
        default=120.0,
    )
    restricted = [t for t in labels if t != EVERY]
    gap = max(
        260.0, max((text_width(t, "small") for t in restricted), default=0) * 2 + 80
    )
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
    # every port: a thin grey arrow, no label (the legend says so); some ports: green,
    # with the ports written where the label covers no other label
    lines_open: list[Shape] = []
    lines_ported: list[Shape] = []
    backs: list[Rect] = []
    texts: list[Shape] = []
    for c, text in zip(conns, labels, strict=True):
        a, b = left[c.src], right[c.dst]
        x1, y1 = a.x + a.w, a.y + a.h / 2
        x2, y2 = b.x, b.y + b.h / 2
        if text == EVERY:
            lines_open.append(Line(((x1, y1), (x2, y2)), OPEN, 1.0, arrow=True))
            continue
        lines_ported.append(Line(((x1, y1), (x2, y2)), EDGE, 1.6, arrow=True))
        w = text_width(text, "small") + 8
        spots = []
        for t in SPOTS:
            x, y = x1 + (x2 - x1) * t, y1 + (y2 - y1) * t
            spots.append(Rect(x - w / 2, y - 8, w, 16, "#ffffff", EDGE, 0.8, 3.0))
        back = min(spots, key=lambda r: _overlaps(r, backs))  # the first free spot
        backs.append(back)
        texts.append(back)
        texts.append(Label(back.x + w / 2, back.y + 8, text, "small", INK, "middle"))
    bottom = max((r.y + r.h for r in (*left.values(), *right.values())), default=0)
    bottom = max(bottom, TITLE_H + ROW_H)
    legend: list[Shape] = []
    if conns:
        y = bottom + 22
        legend = [
            Line(((MARGIN, y), (MARGIN + 40, y)), EDGE, 1.6, arrow=True),
            Label(MARGIN + 50, y, "allowed on the ports written on it", "small", MUTED),
            Line(((MARGIN + 300, y), (MARGIN + 340, y)), OPEN, 1.0, arrow=True),
            Label(MARGIN + 350, y, f"allowed on every port and protocol ({EVERY})",
                  "small", MUTED),
        ]  # fmt: skip
        bottom = y + 8
    width = max(MARGIN * 2 + box_w * 2 + gap, MARGIN + 640)
    height = bottom + MARGIN
    return width, height, items + lines_open + lines_ported + texts + legend


__all__ = ["picture", "to_svg"]
