"""Replay a capture: every packet of a pcap walks the dataplane, and verdicts are counted.

A capture is a pcap file (microsecond or nanosecond, either byte order) or a pcapng file,
whose link type is Ethernet, raw IP (`tcpdump -i tun0`, LINKTYPE_RAW / IPV4) or Linux
cooked capture (`tcpdump -i any`, SLL and SLL2).  Each IPv4 packet enters at `at` (a pod,
node/NAME or external/NAME) or, by default, at the pod, node or external host that owns its
source address, and leaves through that namespace's IP layer: the capture's link header is
dropped (its MAC addresses belong to another network) and the sender's route and ARP give
the frame its link header, as if a socket there had sent it.  Addresses, ports, TTL, flags
and payload are kept as captured.  A packet cut short by the capture's snaplen is padded
back to its IP total length with zero bytes.

All packets of one capture share one walk state (neighbour caches, bridge FDBs, conntrack),
so a reply in the capture is ESTABLISHED, as it would be on the real nodes, and is handed
to the socket that sent the request.  A packet's verdict is its own fate: `delivered` once a
socket takes it (a request, an ACK, data, a reply), whatever becomes of the answer the walk
also follows; otherwise where it died (`denied-ingress`, `refused`, `no-route`, ...).
ARP and IPv6 frames are skipped (the walk does its own ARP); a packet that cannot be walked
(its source belongs to nobody and no `at` is given, an ICMP error, a fragment, another IP
protocol) gets a per-packet error.  A file that is not a capture, or is cut short, is an
input error.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataplane.conntrack import flow_of, reverse
from dataplane.emission import Out
from dataplane.packet import ETH_P_ARP, ETH_P_IP, UDP, VXLAN, VXLAN_HLEN, Packet
from dataplane.trace import Trace, Verdict
from dataplane.walker import Client, WalkState
from topology.errors import TopologyError

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.result import StepResult
    from dataplane.scenario import Runner
    from dataplane.sim import Simulator
    from topology.scenario import ReplayStep

# Link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = (101, 12, 14)  # LINKTYPE_RAW and the DLT_RAW numbers some systems write
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
LINK_NAMES = "Ethernet (1), raw IP (101, 12, 14, 228), Linux cooked (113, 276)"
ETH_P_8021Q = 0x8100
ETH_P_IPV6 = 0x86DD

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
VXLAN_PORTS = (8472, 4789)
SHARED_STATE = (
    "assumed: the walk state (neighbour caches, bridge FDBs, conntrack) is the one the "
    "capture's earlier packets left"
)  # Linux and flannel's default, IANA's


@dataclass(frozen=True, slots=True)
class Captured:
    """One record of a capture: its number (from 1), link type and bytes."""

    index: int
    linktype: int
    data: bytes


@dataclass(slots=True)
class PacketResult:
    """What became of one packet of the capture."""

    index: int
    summary: str
    at: str | None = None
    verdict: Verdict | None = None
    skipped: str | None = None  # why it was not walked (ARP, IPv6)
    error: str | None = None  # why it could not be walked
    trace: Trace | None = None

    @property
    def outcome(self) -> str:
        """The word it is counted under: a verdict, `skipped` or `error`."""
        if self.verdict is not None:
            return self.verdict.value
        return "error" if self.error is not None else "skipped"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index,
            "packet": self.summary,
            "at": self.at,
            "outcome": self.outcome,
        }
        if self.error is not None or self.skipped is not None:
            d["message"] = self.error or self.skipped
        elif self.trace is not None:
            d["explanation"] = self.trace.explanation
        return d


@dataclass(slots=True)
class ReplayResult:
    pcap: str
    packets: list[PacketResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many packets got each verdict (and `skipped`, `error`)."""
        return dict(Counter(p.outcome for p in self.packets))

    @property
    def traces(self) -> list[Trace]:
        return [p.trace for p in self.packets if p.trace is not None]

    @property
    def errors(self) -> list[PacketResult]:
        return [p for p in self.packets if p.error is not None]


# -- reading ----------------------------------------------------------------------------------


def read_capture(path: str | Path) -> list[Captured]:
    """Every record of a pcap or pcapng file; a file that is neither, or is cut short, is a
    `TopologyError` naming the file and what is wrong."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise TopologyError(f"{p}: cannot read the capture: {err.strerror}") from None
    if raw[:4] == PCAPNG_SHB:
        return _read_pcapng(p, raw)
    if raw[:4] in PCAP_MAGIC:
        return _read_pcap(p, raw)
    raise TopologyError(
        f"{p}: not a pcap or pcapng file (it starts with {raw[:4].hex() or 'nothing'}; "
        "a capture starts with the pcap magic a1b2c3d4 or a pcapng section header)"
    )


def _read_pcap(p: Path, raw: bytes) -> list[Captured]:
    endian, _unit = PCAP_MAGIC[raw[:4]]
    if len(raw) < 24:
        raise TopologyError(
            f"{p}: truncated pcap: the 24-byte file header is cut short"
        )
    linktype = struct.unpack(endian + "I", raw[20:24])[0] & 0x0FFFFFFF
    out: list[Captured] = []
    off = 24
    while off < len(raw):
        n = len(out) + 1
        if off + 16 > len(raw):
            raise TopologyError(
                f"{p}: truncated pcap: the header of packet {n} is cut short "
                f"({len(raw) - off} of 16 bytes)"
            )
        caplen = struct.unpack(endian + "I", raw[off + 8 : off + 12])[0]
        if off + 16 + caplen > len(raw):
            raise TopologyError(
                f"{p}: truncated pcap: packet {n} is cut short "
                f"({len(raw) - off - 16} of {caplen} bytes)"
            )
        out.append(Captured(n, linktype, raw[off + 16 : off + 16 + caplen]))
        off += 16 + caplen
    return out


def _read_pcapng(p: Path, raw: bytes) -> list[Captured]:
    """Section header, interface description and (simple) enhanced packet blocks."""
    out: list[Captured] = []
    endian = "<"
    links: list[int] = []
    off = 0
    while off < len(raw):
        if off + 12 > len(raw):
            raise TopologyError(f"{p}: truncated pcapng: a block header is cut short")
        btype = raw[off : off + 4]
        if btype == PCAPNG_SHB:
            endian = "<" if raw[off + 8 : off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            links = []
        btype_n, blen = struct.unpack(endian + "II", raw[off : off + 8])
        if blen < 12 or blen % 4 or off + blen > len(raw):
            raise TopologyError(
                f"{p}: truncated pcapng: a block of {blen} bytes is cut short "
                f"or malformed at offset {off}"
            )
        body = raw[off + 8 : off + blen - 4]
        if btype_n == 1:  # interface description
            links.append(struct.unpack(endian + "H", body[:2])[0])
        elif btype_n == 6:  # enhanced packet
            iface, _hi, _lo, caplen = struct.unpack(endian + "IIII", body[:16])
            if iface >= len(links) or 20 + caplen > len(body):
                raise TopologyError(
                    f"{p}: malformed pcapng: packet {len(out) + 1} is cut short or "
                    "names an interface that was not described"
                )
            out.append(Captured(len(out) + 1, links[iface], body[20 : 20 + caplen]))
        elif btype_n == 3:  # simple packet
            if not links:
                raise TopologyError(f"{p}: malformed pcapng: no interface described")
            out.append(Captured(len(out) + 1, links[0], body[4:]))
        off += blen
    return out


# -- decoding ---------------------------------------------------------------------------------


class Skip(Exception):
    """A frame the replay does not walk (ARP, IPv6), with the reason."""


def ip_bytes(cap: Captured) -> bytes:
    """The IPv4 packet of a capture record, from its IP header on (raises Skip or
    ValueError)."""
    data, lt = cap.data, cap.linktype
    if lt == LINKTYPE_ETHERNET:
        if len(data) < 14:
            raise ValueError(
                f"{len(data)}-byte frame is shorter than an Ethernet header"
            )
        etype, off = struct.unpack("!H", data[12:14])[0], 14
        while etype == ETH_P_8021Q and len(data) >= off + 4:
            etype, off = struct.unpack("!H", data[off + 2 : off + 4])[0], off + 4
    elif lt in LINKTYPE_RAW or lt == LINKTYPE_IPV4:
        etype = ETH_P_IP if data[:1] and data[0] >> 4 == 4 else ETH_P_IPV6
        off = 0
    elif lt == LINKTYPE_LINUX_SLL:
        etype, off = struct.unpack("!H", data[14:16])[0], 16
    elif lt == LINKTYPE_LINUX_SLL2:
        etype, off = struct.unpack("!H", data[0:2])[0], 20
    else:
        raise ValueError(f"link type {lt} is not supported (supported: {LINK_NAMES})")
    if etype == ETH_P_ARP:
        raise Skip("ARP (the walk resolves neighbours itself)")
    if etype == ETH_P_IPV6:
        raise Skip("IPv6 (the model is IPv4 only)")
    if etype != ETH_P_IP:
        raise Skip(f"ethertype 0x{etype:04x} is not IPv4")
    pkt = data[off:]
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        raise ValueError("not an IPv4 packet (the IP header is missing or cut short)")
    total = struct.unpack("!H", pkt[2:4])[0]
    if len(pkt) < total:  # cut by the snaplen: the headers are what the walk needs
        pkt += bytes(total - len(pkt))
    return pkt[:total] if total >= 20 else pkt


def decode(cap: Captured, vxlan_ports: tuple[int, ...] = VXLAN_PORTS) -> Packet:
    """A capture record as a walk packet without link header (raises Skip or
    ValueError).  UDP to a VXLAN port carrying a VXLAN header (flag I) keeps its inner
    frame, so that a capture of a node's `eth0` replays through the overlay."""
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether

    from dataplane.packet import from_scapy

    pkt = from_scapy(IP(ip_bytes(cap)))
    data = pkt.data
    if (
        isinstance(pkt.l4, UDP)
        and pkt.l4.dport in vxlan_ports
        and len(data) >= VXLAN_HLEN + 14
        and data[0] & 0x08
    ):
        vni = int.from_bytes(data[4:7], "big")
        inner = from_scapy(Ether(data[VXLAN_HLEN:]))
        pkt = replace(pkt, vxlan=VXLAN(vni), inner=inner, data=b"")
    return pkt


def describe(cap: Captured) -> str:
    """A one-line summary of a record for messages, even when it cannot be walked."""
    try:
        return decode(cap).summary()
    except (Skip, ValueError):
        pass
    if cap.linktype == LINKTYPE_ETHERNET:
        from scapy.layers.l2 import Ether

        from dataplane.packet import from_scapy

        try:
            return from_scapy(Ether(cap.data)).summary()
        except (ValueError, AttributeError):
            pass
    return f"{len(cap.data)}-byte record"


# -- walking ----------------------------------------------------------------------------------


def owners(sim: Simulator) -> dict[str, tuple[str, str]]:
    """Address -> (namespace id, endpoint text) of every pod, node and external host."""
    cluster = sim.cluster
    out: dict[str, tuple[str, str]] = {}
    for ext in cluster.config.externals:
        out[str(ext.ip)] = (f"external:{ext.name}", f"external/{ext.name}")
    for node in cluster.config.nodes:
        out[str(node.ip)] = (node.name, f"node/{node.name}")
    for pod in cluster.pods.values():
        if not pod.host_network:
            out[str(pod.ip)] = (f"pod:{pod.key}", pod.key)
    return out


def replay_packets(
    sim: Simulator, records: list[Captured], at: str | None = None, name: str = ""
) -> ReplayResult:
    """Walk every record of a capture, in order, with one shared walk state."""
    result = ReplayResult(name)
    state = WalkState()
    entry: tuple[str, str] | None = None
    if at is not None:
        entry = (sim.netns_of(sim.resolve(at)).id, at)
    who = owners(sim)
    ports = tuple(dict.fromkeys((sim.cluster.config.vxlan_port, *VXLAN_PORTS)))
    sent: dict[tuple[int, str, int, str, int], str] = {}  # flow -> netns that sent it
    for cap in records:
        try:
            pkt = decode(cap, ports)
        except Skip as why:
            result.packets.append(
                PacketResult(cap.index, describe(cap), skipped=str(why))
            )
            continue
        except ValueError as err:
            result.packets.append(
                PacketResult(cap.index, describe(cap), error=str(err))
            )
            continue
        assert pkt.ip is not None
        where = entry or who.get(pkt.ip.src)
        if where is None:
            result.packets.append(
                PacketResult(
                    cap.index,
                    pkt.summary(),
                    error=f"source {pkt.ip.src} belongs to no pod, node or external "
                    "host of the cluster (give `at:` / --at to say where it enters)",
                )
            )
            continue
        ns_id, text = where
        # The socket is at the inner packet's ends when the capture holds VXLAN.
        inner = pkt.inner if pkt.inner is not None and pkt.inner.ip else None
        flow = flow_of(inner or pkt)
        inner_src = inner.ip.src if inner is not None and inner.ip is not None else ""
        sender = who[inner_src][0] if inner_src in who else ns_id
        origin = sent.get(reverse(flow))
        if origin is not None:  # a reply: the socket that sent the request takes it
            r = reverse(flow)
            client = Client(origin, r[0], r[2], r[3], r[4])
        else:
            client = Client(sender, flow[0], flow[2], flow[3], flow[4])
            sent.setdefault(flow, sender)
        title = f"replay #{cap.index} at {text}: {pkt.summary()}"
        trace = sim.walk(title, [Out(pkt, ns_id)], client, state)
        trace.assumptions.append(SHARED_STATE)
        settle(trace)
        result.packets.append(
            PacketResult(cap.index, pkt.summary(), text, trace.verdict, trace=trace)
        )
    return result


def settle(trace: Trace) -> None:
    """A replayed packet's verdict is its own fate: `delivered` once a socket takes it
    (a request's answer, which the walk follows too, does not change that; a replayed
    ACK or reply has none).  Where it died otherwise, the walk's verdict stands."""
    if trace.verdict is Verdict.DELIVERED:
        return
    for h in trace.hops:
        if h.direction != "request" or h.reason is not None:
            return  # it died (or was refused) on its way
        if h.event == "deliver":
            trace.verdict, trace.reason = Verdict.DELIVERED, None
            trace.explanation = f"arrived at {h.where}: {h.detail}"
            return


def replay(sim: Simulator, path: str | Path, at: str | None = None) -> ReplayResult:
    """Read a capture file and walk every packet of it through `sim`'s cluster."""
    return replay_packets(sim, read_capture(path), at, str(path))


# -- the scenario step ------------------------------------------------------------------------


def covers(expected: str, actual: str) -> bool:
    """Whether an expected verdict word counts an actual outcome."""
    if expected == "denied":
        return actual in (Verdict.DENIED_EGRESS.value, Verdict.DENIED_INGRESS.value)
    return expected in (actual, "allowed" if actual == "delivered" else "")


def compare(expect: dict[str, int], counts: dict[str, int]) -> list[str]:
    """What differs between expected and actual counts (empty when they agree).

    Every expected word must have its count; any other verdict must not occur, and
    packets that could not be walked (`error`) fail the expectation too.
    """
    problems: list[str] = []
    for word, want in expect.items():
        got = sum(n for outcome, n in counts.items() if covers(word, outcome))
        if got != want:
            problems.append(f"{word}: expected {want}, got {got}")
    for outcome, n in sorted(counts.items()):
        if outcome == "skipped" or any(covers(w, outcome) for w in expect):
            continue
        problems.append(f"{outcome}: expected 0, got {n}")
    return problems


def show_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no packets"


def run_replay_step(runner: Runner, index: int, step: ReplayStep) -> StepResult:
    from dataplane.result import StepResult

    at = runner.sub(step.at) if step.at is not None else None
    try:  # the loader made `pcap` relative to the scenario file already
        res = replay(runner.sim, step.pcap, at)
    except TopologyError as err:
        raise TopologyError(f"replay: {err.reason}", step.loc, f"step {index}",
                            "pcap") from None  # fmt: skip
    counts = res.counts()
    title = f"replay {step.pcap.name}: {len(res.packets)} packets" + (
        f" at {at}" if at else ""
    )
    out = StepResult(index, "replay", title, step.loc, step.name)
    out.traces = res.traces
    out.actual = show_counts(counts)
    out.data["replay"] = {
        "pcap": step.pcap.name,
        "counts": counts,
        "packets": [p.to_dict() for p in res.packets],
    }
    if step.expect is not None:
        expect = dict(step.expect)
        problems = compare(expect, counts)
        out.expected = show_counts(expect)
        out.ok = not problems
        if problems:
            out.message = "; ".join(problems) + parted(res, expect)
    elif res.errors:
        out.message = "; ".join(f"packet {p.index}: {p.error}" for p in res.errors[:3])
    return out


def parted(res: ReplayResult, expect: dict[str, int]) -> str:
    """The first packets whose outcome the expectation does not count, and where."""
    lines: list[str] = []
    for p in res.packets:
        if p.outcome == "skipped" or any(covers(w, p.outcome) for w in expect):
            continue
        where = ""
        if p.trace is not None and p.trace.hops:
            h = next((h for h in p.trace.hops if h.reason), p.trace.hops[-1])
            where = f" (hop {h.seq}: {h.where} {h.event}: {h.detail})"
        lines.append(f"packet {p.index} {p.summary}: {p.error or p.outcome}{where}")
        if len(lines) == 3:
            break
    return "; " + "; ".join(lines) if lines else ""


__all__ = [
    "Captured",
    "PacketResult",
    "ReplayResult",
    "compare",
    "read_capture",
    "replay",
    "replay_packets",
    "run_replay_step",
]
