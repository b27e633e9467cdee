"""Connection tracking: NEW / ESTABLISHED / RELATED, and the NAT each connection carries.

An entry holds the original tuple and the reply tuple, as `conntrack -L` shows them; a NAT
mapping changes the reply tuple, which is how a reply is recognised and rewritten back
(un-DNAT of the source, un-SNAT of the destination).  An ICMP error is RELATED to the
connection of the packet it quotes, even one not yet confirmed: a router's own time
exceeded or host unreachable about a packet it did not forward is RELATED to that packet's
new connection (icmp_send() attaches it, as an nft `ct state related` counter in the
router's output chain shows).  Entries are created when a packet is first seen and
confirmed when it leaves POSTROUTING or INPUT, as in `nf_conntrack_confirm()`; a RELATED
packet in the reply direction never confirms one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from dataplane.packet import (
    ICMP,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    PROTO_NAMES,
    Packet,
)

FlowTuple = tuple[int, str, int, str, int]  # (proto, src, sport, dst, dport)


class CtState(StrEnum):
    NEW = "NEW"
    ESTABLISHED = "ESTABLISHED"
    RELATED = "RELATED"


class CtDir(StrEnum):
    ORIGINAL = "original"
    REPLY = "reply"


def flow_of(pkt: Packet) -> FlowTuple:
    """The conntrack tuple of a packet (ICMP echo uses its id as both ports)."""
    ip = pkt.ip
    assert ip is not None
    return (ip.proto, ip.src, pkt.sport, ip.dst, pkt.dport)


def reverse(t: FlowTuple) -> FlowTuple:
    return (t[0], t[3], t[4], t[1], t[2])


def show_tuple(t: FlowTuple) -> str:
    proto = PROTO_NAMES.get(t[0], str(t[0]))
    if proto == "icmp":
        return f"icmp {t[1]} -> {t[3]} id {t[2]}"
    return f"{proto} {t[1]}:{t[2]} -> {t[3]}:{t[4]}"


def is_icmp_error(pkt: Packet) -> bool:
    l4 = pkt.l4
    return isinstance(l4, ICMP) and l4.type not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)


@dataclass(slots=True)
class ConntrackEntry:
    tuple_orig: FlowTuple
    tuple_reply: FlowTuple
    dnat: tuple[str, int] | None = (
        None  # the original destination was rewritten to this
    )
    snat: tuple[str, int] | None = None  # the original source was rewritten to this
    confirmed: bool = False
    seen_reply: bool = False  # IPS_SEEN_REPLY: until then the connection is NEW
    nat_comment: list[str] = field(default_factory=list)
    # `show_tuple(tuple_orig)`, written once (the original tuple never changes): every
    # packet of the connection shows it in its conntrack hop
    shown: str = field(default="", compare=False, repr=False)

    def orig_text(self) -> str:
        if not self.shown:
            self.shown = show_tuple(self.tuple_orig)
        return self.shown

    def __str__(self) -> str:
        return f"{show_tuple(self.tuple_orig)} (reply {show_tuple(self.tuple_reply)})"


@dataclass(slots=True)
class Conntrack:
    """The table of one namespace (a node's)."""

    table: dict[FlowTuple, tuple[ConntrackEntry, CtDir]] = field(default_factory=dict)
    # The entries packets of this namespace carry that are not confirmed (yet, or ever:
    # dropped on the way), newest last: what an ICMP error made here can be attached to.
    unconfirmed: dict[FlowTuple, ConntrackEntry] = field(default_factory=dict)

    def lookup(self, pkt: Packet) -> tuple[ConntrackEntry, CtDir, CtState]:
        """Find the packet's connection, or a new unconfirmed entry."""
        if is_icmp_error(pkt):
            l4 = pkt.l4
            assert isinstance(l4, ICMP) and l4.quote is not None
            # nf_conntrack_inet_error(): the quote travelled one way, as seen where the
            # error was made (after NAT); inverted, it is a tuple of the connection in
            # the direction the error now travels.
            back = reverse(flow_of(l4.quote))
            hit = self.table.get(back) or self.attached(back)
            if hit is not None:
                entry, d = hit
                return entry, d, CtState.RELATED
        t = flow_of(pkt)
        hit = self.table.get(t)
        if hit is not None:
            entry, d = hit
            if d is CtDir.REPLY:
                entry.seen_reply = True
            state = CtState.ESTABLISHED if entry.seen_reply else CtState.NEW
            return entry, d, state
        entry = ConntrackEntry(t, reverse(t))
        self.unconfirmed[t] = entry
        return entry, CtDir.ORIGINAL, CtState.NEW

    def attached(self, back: FlowTuple) -> tuple[ConntrackEntry, CtDir] | None:
        """The unconfirmed connection an ICMP error made in this namespace is about
        (`back`: its quote inverted), as icmp_send() attaches the offending packet's."""
        for entry in reversed(self.unconfirmed.values()):
            if entry.tuple_reply == back:
                return entry, CtDir.REPLY
            if entry.tuple_orig == back:
                return entry, CtDir.ORIGINAL
        return None

    def lookup_looped(self, pkt: Packet) -> tuple[ConntrackEntry, CtDir, CtState]:
        """A packet that comes back in over `lo` keeps the connection it left with (the skb
        keeps its conntrack entry, so nf_conntrack_in skips it): find that entry by the
        packet as it now is, after any NAT on the way out."""
        t = flow_of(pkt)
        hit = self.table.get(t)
        if hit is None:
            back = self.table.get(reverse(t))
            # NATed on the way out: the packet now reads as its reply tuple backwards.
            if back is not None:
                entry, d = back
                hit = entry, CtDir.ORIGINAL if d is CtDir.REPLY else CtDir.REPLY
        if hit is None:
            return self.lookup(pkt)
        entry, d = hit
        state = CtState.ESTABLISHED if entry.seen_reply else CtState.NEW
        return entry, d, state

    def confirm(self, entry: ConntrackEntry) -> None:
        """Insert a new entry (its reply tuple now reflects any NAT)."""
        if entry.confirmed:
            return
        entry.confirmed = True
        self.unconfirmed.pop(entry.tuple_orig, None)
        self.table[entry.tuple_orig] = (entry, CtDir.ORIGINAL)
        self.table[entry.tuple_reply] = (entry, CtDir.REPLY)
