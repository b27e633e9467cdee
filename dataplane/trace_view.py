"""How a trace reads on a screen: the summary (one line per device crossed), the detailed
hop table fitted to a width, and the helpers both share (shortened MACs, hidden events).

Summary lines.  Hops are grouped into the device that handles the packet: a pod's (or an
external host's, the gateway's) namespace is one line per visit; in a node's namespace the
bridge (with the veth port the frame came in by), the IP layer (route, TTL, hooks) and the
overlay (`flannel.1` with the underlay `eth0` that carries the encapsulated frame) are one
line each.  Three kinds of hop never start a line: an ARP exchange (every hop of it, in any
namespace) joins the line that waited for it; a conntrack lookup and a `recv` join the next
line of their namespace (a lookup on the device that has just had its line, as the one of
an ICMP error the IP layer made, stays on that line).  Lines are numbered from 1 in the order of the walk, over every
hop (`--hide` never renumbers), so `summary_step_of(trace)[seq]` is the line of a hop in
any view or picture.

Widths.  `output_width()` is `shutil.get_terminal_size()`: the `COLUMNS` variable when it
is set, else the terminal's width, else 80 (pipes, CI logs).  Below `LIST_WIDTH` columns
the detailed view is a list: one block per hop.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich import box
from rich.table import Table
from rich.text import Text

from dataplane.packet import ARP_REPLY, Packet, short_mac, summarize
from dataplane.trace import DropReason, Hop, Trace

LIST_WIDTH = 120  # narrower than this, the detailed view is one block per hop

HOOK_EVENTS = frozenset(
    {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "hook"}
)
# What `--hide` takes: a class of hop (`hop_class`).  The outcome of a walk (deliver,
# drop, icmp) cannot be hidden.
HIDEABLE = ("arp", "conntrack", "fdb", "hook", "route", "nat", "forward", "xmit",
            "recv", "encap", "decap")  # fmt: skip

EVENT_STYLE = {"drop": "red", "nat": "magenta", "encap": "cyan", "decap": "cyan",
               "arp": "dim", "deliver": "green", "icmp": "yellow"}  # fmt: skip


def output_width() -> int:
    """The width text output is fitted to (COLUMNS, else the terminal, else 80)."""
    return shutil.get_terminal_size((80, 24)).columns


def hop_class(hop: Hop) -> str:
    """What `--hide` calls a hop: `arp` (every hop of an ARP exchange), `fdb` (a bridge's
    forwarding decision), `hook` (a netfilter hook point), else its event."""
    if hop.event == "arp" or (hop.packet is not None and hop.packet.arp is not None):
        return "arp"
    if hop.event == "bridge":
        return "fdb"
    if hop.event in HOOK_EVENTS:
        return "hook"
    return hop.event


def parse_hide(values: Iterable[str]) -> frozenset[str]:
    """`--hide arp,conntrack --hide fdb` -> {"arp", "conntrack", "fdb"}."""
    from topology.errors import TopologyError

    out: set[str] = set()
    for value in values:
        for word in filter(None, (w.strip() for w in value.split(","))):
            if word not in HIDEABLE:
                raise TopologyError(
                    f"--hide {word!r} is not a kind of hop (allowed: "
                    f"{', '.join(HIDEABLE)})"
                )
            out.add(word)
    return frozenset(out)


# -- MAC addresses ----------------------------------------------------------------------


def _macs(pkt: Packet | None, into: set[str]) -> None:
    while pkt is not None:
        if pkt.eth is not None:
            into.update((pkt.eth.src, pkt.eth.dst))
        pkt = pkt.inner


def mac_names(trace: Trace) -> dict[str, str]:
    """Each MAC of the trace's frames, shortened as far as it stays unlike the others:
    `0a:..:03`, or `0a:..:01:00` beside `0a:..:02:00`, or the whole address.

    Every shortened form keeps the first byte and the last k bytes, the smallest k for
    which no other MAC of the trace has the same form.
    """
    macs: set[str] = set()
    for hop in trace.hops:
        _macs(hop.packet, macs)

    def form(mac: str, k: int) -> str:
        return mac if k >= 5 else f"{mac[:2]}:..:{mac[-(3 * k - 1) :]}"

    names: dict[str, str] = {}
    for mac in macs:
        for k in range(1, 6):
            short = form(mac, k)
            if k == 5 or all(form(o, k) != short for o in macs if o != mac):
                names[mac] = short
                break
    return names


def packet_text(pkt: Packet | None, names: dict[str, str]) -> str:
    if pkt is None:
        return ""
    return summarize(pkt, mac=lambda m: names.get(m) or short_mac(m))


# -- summary ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SummaryStep:
    """One line of the summary view: a device (or a namespace) a packet crossed."""

    number: int
    node: str
    netns: str
    direction: str
    devices: tuple[str, ...]
    hops: tuple[Hop, ...]  # every hop folded into it, in walk order

    @property
    def seqs(self) -> tuple[int, ...]:
        return tuple(h.seq for h in self.hops)


def _station(hop: Hop) -> tuple[str, str, str, str]:
    """The device a hop belongs to in the summary (node, netns, direction, part)."""
    part = ""
    if hop.netns == "host":
        pkt = hop.packet
        if hop.event in ("encap", "decap") or (
            pkt is not None and pkt.tunnel is not None
        ):
            part = "overlay"
        elif hop.event == "bridge":
            part = "bridge"
        else:
            part = hop.device or "ip"
    return hop.node, hop.netns, hop.direction, part


def summary_steps(trace: Trace) -> list[SummaryStep]:
    """The summary lines of a trace, numbered from 1 (see the module's docstring)."""
    groups: list[list[Hop]] = []
    keys: list[tuple[str, str, str, str]] = []
    pending: list[Hop] = []  # conntrack and recv hops waiting for the line they serve

    def flush() -> None:
        if pending:
            groups.append(list(pending))
            keys.append(_station(pending[0]))
            pending.clear()

    for hop in trace.hops:
        cls = hop_class(hop)
        if cls == "arp":
            (groups[-1] if groups else pending).append(hop)
            continue
        key = _station(hop)
        if pending and _station(pending[0])[:3] != key[:3]:
            flush()
        if cls in ("conntrack", "recv"):
            pending.append(hop)
            continue
        if groups and keys[-1] == key:
            groups[-1].extend([*pending, hop])
            pending.clear()
            continue
        # A lookup of the device that just had its line (an ICMP error's conntrack on
        # the IP layer that made it) stays there; the rest wait for the new line.
        while groups and pending and _station(pending[0]) == keys[-1]:
            groups[-1].append(pending.pop(0))
        groups.append([*pending, hop])
        keys.append(key)
        pending.clear()
    flush()
    steps = []
    for n, (hops, key) in enumerate(zip(groups, keys, strict=True), 1):
        hops.sort(key=lambda h: h.seq)
        own = [h for h in hops if hop_class(h) != "arp"] or hops
        # The devices crossed; the IP layer is named only on its own line of a node.
        names = [h.device for h in own if h.device]
        devices = tuple(dict.fromkeys([*names, "ip"] if key[3] == "ip" else names))
        steps.append(SummaryStep(n, key[0], key[1], key[2], devices, tuple(hops)))
    return steps


def summary_step_of(trace: Trace) -> dict[int, int]:
    """Hop seq -> the number of the summary line it is folded into."""
    return {seq: s.number for s in summary_steps(trace) for seq in s.seqs}


def _arp_item(hops: list[Hop], names: dict[str, str]) -> str:
    for h in reversed(hops):
        if h.reason is DropReason.NEIGH_FAILED:
            return f"arp: {h.detail}"
    for h in reversed(hops):
        a = h.packet.arp if h.packet is not None else None
        if a is not None and a.op == ARP_REPLY:
            return f"arp {a.psrc} is-at {names.get(a.hwsrc, a.hwsrc)}"
    first = next((h.packet.arp for h in hops if h.packet and h.packet.arp), None)
    return f"arp who-has {first.pdst}" if first is not None else "arp"


def _item(hop: Hop) -> str:
    e, d = hop.event, hop.detail
    if e == "conntrack":
        return "ct " + d.split(" ", 1)[0]
    if e == "forward" and hop.diffs:
        return "; ".join(str(x) for x in hop.diffs)
    if e == "encap":
        return d.split(" (", 1)[0]
    if e in ("xmit", "recv"):
        return ""
    if e in HOOK_EVENTS or e == "route":
        return f"{e} {d}"
    if hop.diffs:
        return f"{d} [{', '.join(str(x) for x in hop.diffs)}]"
    return d


def step_text(step: SummaryStep, names: dict[str, str], hide: frozenset[str]) -> str:
    """What happened on one summary line, its hops' essentials joined by `; `."""
    items: list[str] = []
    arp: list[Hop] = []
    for h in step.hops:
        cls = hop_class(h)
        if cls in hide:
            continue
        if cls == "arp":
            if not arp:
                items.append("\0arp")  # placed where the exchange began
            arp.append(h)
            continue
        text = _item(h)
        if text and text not in items:
            items.append(text)
    return "; ".join(_arp_item(arp, names) if i == "\0arp" else i for i in items)


def _where(node: str, netns: str, direction: str) -> str:
    where = f"{node} {netns}".strip()
    return f"{where} ←" if direction == "reply" else where


def summary_lines(
    trace: Trace, width: int | None, hide: frozenset[str] = frozenset()
) -> list[Text]:
    """The summary view: title, one numbered line per step, the verdict."""
    names = mac_names(trace)
    steps = summary_steps(trace)
    rows = [
        (str(s.number), _where(s.node, s.netns, s.direction), " > ".join(s.devices),
         step_text(s, names, hide), s)
        for s in steps
    ]  # fmt: skip
    wn = max((len(r[0]) for r in rows), default=1)
    ww = max((len(r[1]) for r in rows), default=0)
    wd = max((len(r[2]) for r in rows), default=0)
    lines = [Text(f"{trace.title}   {trace.mode}", style="bold")]
    indent = wn + ww + wd + 5
    narrow = width is not None and width - indent < 40
    for num, where, devices, what, s in rows:
        style = EVENT_STYLE.get(s.hops[-1].event, "")
        if narrow:
            assert width is not None
            lines.append(Text(f"{num:>{wn}} {where}  {devices}".rstrip()))
            for part in (
                textwrap.wrap(what, width - wn - 3, break_on_hyphens=False) or []
            ):
                lines.append(Text(" " * (wn + 3) + part, style=style))
            continue
        first = f"{num:>{wn}} {where:<{ww}}  {devices:<{wd}}  "
        parts = (
            [what]
            if width is None
            else textwrap.wrap(what, width - indent, break_on_hyphens=False) or [""]
        )
        lines.append(Text(first + parts[0], style=style))
        lines.extend(Text(" " * indent + p, style=style) for p in parts[1:])
    return lines


# -- detailed ---------------------------------------------------------------------------


def _detail(hop: Hop) -> Text:
    # Text, not markup: details hold brackets (`[ip.dst: a -> b]`) and selectors.
    text = Text(hop.detail)
    if hop.diffs:
        text.append(" [" + ", ".join(str(d) for d in hop.diffs) + "]", style="magenta")
    return text


def shown_hops(trace: Trace, hide: frozenset[str]) -> list[Hop]:
    return [h for h in trace.hops if hop_class(h) not in hide]


def trace_table(trace: Trace, hide: frozenset[str] = frozenset()) -> Table:
    """The hop table of one trace, as a learner reads it."""
    names = mac_names(trace)
    title = Text(trace.title)
    title.append(f"   {trace.mode}", style="dim")
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        show_lines=False,
        expand=False,
        pad_edge=False,
    )
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("where", no_wrap=True)
    table.add_column("device", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("detail", ratio=1)
    table.add_column("packet", style="dim", ratio=1)
    for h in shown_hops(trace, hide):
        table.add_row(
            str(h.seq),
            _where(h.node, h.netns, h.direction),
            h.device,
            Text(h.event, style=EVENT_STYLE.get(h.event, "")),
            _detail(h),
            Text(packet_text(h.packet, names)),
        )
    return table


def hop_blocks(
    trace: Trace, width: int, hide: frozenset[str] = frozenset()
) -> list[Text]:
    """The detailed view for narrow terminals: one block per hop, wrapped to `width`."""
    names = mac_names(trace)
    lines = [Text(f"{trace.title}   {trace.mode}", style="bold")]
    wn = len(str(len(trace.hops)))
    pad = " " * (wn + 1)
    for h in shown_hops(trace, hide):
        device = f" {h.device}" if h.device else ""
        head = Text(f"{h.seq:>{wn}} {_where(h.node, h.netns, h.direction)}{device} ")
        head.append(h.event, style=EVENT_STYLE.get(h.event, "bold"))
        lines.append(head)
        detail = _detail(h).plain
        for part in textwrap.wrap(
            detail, max(width - len(pad), 20), break_on_hyphens=False
        ):
            lines.append(Text(pad + part))
        pkt = packet_text(h.packet, names)
        for part in textwrap.wrap(
            pkt, max(width - len(pad), 20), break_on_hyphens=False
        ):
            lines.append(Text(pad + part, style="dim"))
    return lines


def wide_lines(trace: Trace, hide: frozenset[str] = frozenset()) -> list[str]:
    """The detailed view without any width limit: aligned columns, nothing cut."""
    names = mac_names(trace)
    rows = [("#", "where", "device", "event", "detail", "packet")]
    for h in shown_hops(trace, hide):
        rows.append((str(h.seq), _where(h.node, h.netns, h.direction), h.device,
                     h.event, _detail(h).plain, packet_text(h.packet, names)))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    out = [f"{trace.title}   {trace.mode}"]
    for r in rows:
        cells = [r[0].rjust(widths[0])] + [c.ljust(w) for c, w in zip(r[1:5], widths[1:], strict=True)]  # fmt: skip
        out.append("  ".join([*cells, r[5]]).rstrip())
    return out


def verdict_text(trace: Trace, style: Callable[[str], str]) -> Text:
    v = trace.verdict.value if trace.verdict else "none"
    text = Text("verdict: ")
    text.append(v, style=style(v))
    text.append(f" — {trace.explanation} ({len(trace.hops)} hops)")
    if trace.policy:
        text.append(f"; policy {trace.policy}")
    if trace.endpoint:
        text.append(f"; endpoint {trace.endpoint}")
    return text
