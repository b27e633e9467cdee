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

All packets of one capture share one walk state (neighbour caches, bridge FDBs, conntrack,
kube-proxy's sessionAffinity entries), so a reply in the capture is ESTABLISHED, as it would
be on the real nodes, and is handed to the socket that sent the request; each packet's
timestamp is the walk's clock (`dataplane.affinity`: affinity timeouts).  A packet's verdict is its own fate: `delivered` once a
socket takes it (a request, an ACK, data, a reply), whatever becomes of the answer the walk
also follows; otherwise where it died (`denied-ingress`, `refused`, `no-route`, ...).
ARP and IPv6 frames are skipped (the walk does its own ARP); a packet whose headers are
malformed is `malformed`, with the reason Wireshark gives (`dataplane.dissect`), and never
walked; a packet that cannot be walked (its source belongs to nobody and no `at` is given,
an ICMP error, a fragment, another IP protocol) gets a per-packet error.  A file that is
not a capture, is cut short or is corrupt is an input error naming the record and offset.

A replay streams: records are read as they are walked, and only the counts, the first
`keep` packets and the problem packets (up to `KEEP_PROBLEMS`) are kept with their traces,
so memory stays flat whatever the size of the capture.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dataplane.conntrack import flow_of, reverse
from dataplane.dissect import Malformed, dissect_frame, dissect_ip
from dataplane.emission import Out
from dataplane.packet import ETH_P_ARP, ETH_P_IP, Packet
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
    """One record of a capture: its number (from 1), link type and bytes; `snapped` when
    the capture's snaplen cut it (its length on the wire was longer)."""

    index: int
    linktype: int
    data: bytes
    snapped: bool = False
    time: float = 0.0  # its timestamp, in seconds since the epoch


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
    malformed: str | None = None  # what Wireshark would call malformed in it

    @property
    def outcome(self) -> str:
        """The word it is counted under: a verdict, `skipped`, `malformed` or `error`."""
        if self.verdict is not None:
            return self.verdict.value
        if self.malformed is not None:
            return "malformed"
        return "error" if self.error is not None else "skipped"

    @property
    def message(self) -> str | None:
        """Why it was not walked."""
        if self.malformed is not None:
            return f"malformed: {self.malformed}"
        return self.error or self.skipped

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index,
            "packet": self.summary,
            "at": self.at,
            "outcome": self.outcome,
        }
        if self.message is not None:
            d["message"] = self.message
        elif self.trace is not None:
            d["explanation"] = self.trace.explanation
        return d


KEEP_TRACES = 100  # packets of a capture kept with their trace, besides the problems
KEEP_PROBLEMS = 100  # problem packets (see `ReplayResult`) kept with their trace


@dataclass(slots=True)
class ReplayResult:
    """The outcome of a replay, in memory that does not grow with the capture: the count
    of every outcome, and the packets kept with their traces: the first `keep` of the
    capture (None: every packet), and the first `KEEP_PROBLEMS` problems beyond them (a
    packet the expectation does not count, or, without one, a packet that could not be
    walked)."""

    pcap: str
    keep: int | None = None
    total: int = 0
    tally: Counter[str] = field(default_factory=Counter)
    packets: list[PacketResult] = field(default_factory=list)  # kept, in order
    problems: int = 0  # problem packets seen (kept or not)
    expect: dict[str, int] | None = None

    def add(self, p: PacketResult) -> None:
        self.total += 1
        self.tally[p.outcome] += 1
        problem = self.is_problem(p)
        self.problems += problem
        first = self.keep is None or len(self.packets) < self.keep
        if first or (problem and self.problems <= KEEP_PROBLEMS):
            self.packets.append(p)

    def is_problem(self, p: PacketResult) -> bool:
        """Whether `p` counts against the expectation (or could not be walked)."""
        if self.expect is None:
            return p.outcome in ("error", "malformed")
        return p.outcome != "skipped" and not any(
            covers(w, p.outcome) for w in self.expect
        )

    def counts(self) -> dict[str, int]:
        """How many packets got each verdict (and `skipped`, `malformed`, `error`)."""
        return dict(self.tally)

    @property
    def dropped(self) -> int:
        """Packets walked but not kept (only counted)."""
        return self.total - len(self.packets)

    @property
    def traces(self) -> list[Trace]:
        return [p.trace for p in self.packets if p.trace is not None]

    @property
    def errors(self) -> list[PacketResult]:
        """The kept packets that could not be walked (malformed ones included)."""
        return [p for p in self.packets if p.outcome in ("error", "malformed")]

    @property
    def failures(self) -> int:
        """How many packets could not be walked, kept or not."""
        return self.tally["error"] + self.tally["malformed"]


# -- reading ----------------------------------------------------------------------------------

# Wireshark's limits and words (wiretap/wtap.h WTAP_MAX_PACKET_SIZE_STANDARD, pcapng.c
# MAX_BLOCK_SIZE; wtap_strerror() of WTAP_ERR_BAD_FILE and WTAP_ERR_SHORT_READ).
MAX_PACKET = 262_144
MAX_BLOCK = 16 * 1024 * 1024
CORRUPT = "the file appears to be damaged or corrupt"
SHORT = "truncated record: the file appears to have been cut short in the middle of a packet"


def _corrupt(p: Path, where: str, why: str) -> TopologyError:
    return TopologyError(f"{p}: {where}: {CORRUPT} ({why})")


def _short(p: Path, where: str, got: int, want: int) -> TopologyError:
    return TopologyError(f"{p}: {where}: {SHORT} ({got} of {want} bytes)")


def iter_capture(path: str | Path) -> Iterator[Captured]:
    """Every record of a pcap or pcapng file, read as it goes (memory does not grow with
    the file).  A regular file's structure is checked first, in one pass that keeps
    nothing: a file that is not a capture, is cut short or is corrupt raises a
    `TopologyError` naming the file, the record and its offset before any record is
    returned.  A pipe (`--pcap /dev/stdin`) can be read once only: there the error comes
    when the damaged record is reached."""
    p = Path(path)
    if p.is_file():
        for _ in _records(p):
            pass
    return _records(p)


def read_capture(path: str | Path) -> list[Captured]:
    """Every record of a capture at once (see `iter_capture`)."""
    return list(iter_capture(path))


def _records(p: Path) -> Iterator[Captured]:
    try:
        f = p.open("rb")
    except OSError as err:
        raise TopologyError(f"{p}: cannot read the capture: {err.strerror}") from None
    with f:
        head = f.read(4)
        if head == PCAPNG_SHB:
            yield from _read_pcapng(p, f)
        elif head in PCAP_MAGIC:
            yield from _read_pcap(p, f, head)
        else:
            raise TopologyError(
                f"{p}: not a pcap or pcapng file (it starts with "
                f"{head.hex() or 'nothing'}; a capture starts with the pcap magic "
                "a1b2c3d4 or a pcapng section header)"
            )


def _read_pcap(p: Path, f: BinaryIO, magic: bytes) -> Iterator[Captured]:
    """The pcap format (pcap-savefile(5)): a 24-byte file header, then records of a
    16-byte header (seconds, fraction, captured length, length on the wire) and data."""
    endian, unit = PCAP_MAGIC[magic]
    rest = f.read(20)
    if len(rest) < 20:
        raise TopologyError(
            f"{p}: truncated pcap: the 24-byte file header is cut short"
        )
    major, _minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack(
        endian + "HHiIII", rest
    )
    if major != 2:
        raise _corrupt(p, "file header", f"pcap: major version {major} unsupported")
    linktype &= 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    off, n = 24, 0
    while hdr := f.read(16):
        n += 1
        where = f"record {n} at offset {off}"
        if len(hdr) < 16:
            raise _short(p, where, len(hdr), 16)
        sec, frac, caplen, wirelen = rec.unpack(hdr)
        if caplen > MAX_PACKET:
            raise _corrupt(p, where, f"pcap: File has {caplen}-byte packet, bigger "
                           f"than maximum of {MAX_PACKET}")  # fmt: skip
        if caplen > wirelen:
            raise _corrupt(p, where, f"pcap: captured length {caplen} is bigger than "
                           f"the length on the wire {wirelen}")  # fmt: skip
        data = f.read(caplen)
        if len(data) < caplen:
            raise _short(p, where, 16 + len(data), 16 + caplen)
        yield Captured(n, linktype, data, caplen < wirelen, sec + frac * unit / 1e9)
        off += 16 + caplen


def _read_pcapng(p: Path, f: BinaryIO) -> Iterator[Captured]:
    """The pcapng format (RFC draft-ietf-opsawg-pcapng): section headers, interface
    descriptions, enhanced and simple packet blocks; other blocks are passed over."""
    endian = "<"
    links: list[int] = []
    ticks: list[float] = []  # seconds per timestamp unit of each interface
    off, n, head = 0, 0, PCAPNG_SHB
    while True:
        head += f.read(8 - len(head))
        if not head:
            return
        where = f"block at offset {off}"
        if len(head) < 8:
            raise _short(p, where, len(head), 8)
        if head[:4] == PCAPNG_SHB:
            bom = f.read(4)
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise _corrupt(p, where, "pcapng: bad byte-order magic in the "
                               "section header")  # fmt: skip
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            links, ticks = [], []
            head += bom
        btype, blen = struct.unpack(endian + "II", head[:8])
        if blen < 12 or blen % 4 or blen > MAX_BLOCK:
            raise _corrupt(p, where, f"pcapng: block length {blen} is not a multiple "
                           f"of 4 between 12 and {MAX_BLOCK}")  # fmt: skip
        rest = f.read(blen - len(head))
        if len(rest) < blen - len(head):
            raise _short(p, where, len(head) + len(rest), blen)
        block = head + rest
        head = b""
        body = block[8:-4]
        if struct.unpack(endian + "I", block[-4:])[0] != blen:
            raise _corrupt(p, where, "pcapng: the block's total length at its end "
                           "differs from the one at its start")  # fmt: skip
        if btype == 1:  # interface description
            if len(body) < 8:
                raise _corrupt(p, where, "pcapng: interface description too short")
            links.append(struct.unpack(endian + "H", body[:2])[0])
            ticks.append(_tsresol(body[8:], endian))
        elif btype == 6:  # enhanced packet
            n += 1
            where = f"record {n} at offset {off}"
            if len(body) < 20:
                raise _corrupt(p, where, "pcapng: enhanced packet block too short")
            iface, hi, lo, caplen, wirelen = struct.unpack(endian + "IIIII", body[:20])
            if iface >= len(links):
                raise _corrupt(p, where, f"pcapng: interface {iface} was not described")
            if 20 + caplen > len(body) or caplen > wirelen:
                raise _corrupt(p, where, f"pcapng: captured length {caplen} does not "
                               "fit the block or exceeds the length on the wire")  # fmt: skip
            stamp = ((hi << 32) | lo) * ticks[iface]
            data = body[20 : 20 + caplen]
            yield Captured(n, links[iface], data, caplen < wirelen, stamp)
        elif btype == 3:  # simple packet
            n += 1
            where = f"record {n} at offset {off}"
            if not links or len(body) < 4:
                raise _corrupt(p, where, "pcapng: simple packet without interface")
            wirelen = struct.unpack(endian + "I", body[:4])[0]
            data = body[4 : 4 + wirelen]
            yield Captured(n, links[0], data, len(data) < wirelen)
        off += blen


def _tsresol(options: bytes, endian: str) -> float:
    """Seconds per timestamp unit of a pcapng interface: its `if_tsresol` option (code 9:
    10^-v, or 2^-v when the top bit is set), 10^-6 without one."""
    while len(options) >= 4:
        code, length = struct.unpack(endian + "HH", options[:4])
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = options[4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
        options = options[4 + (length + 3) // 4 * 4 :]
    return 1e-6


# -- decoding ---------------------------------------------------------------------------------


class Skip(Exception):
    """A frame the replay does not walk (ARP, IPv6), with the reason."""


def ip_bytes(cap: Captured) -> bytes:
    """The IPv4 packet of a capture record, from its IP header on (raises Skip,
    Malformed or ValueError)."""
    data, lt = cap.data, cap.linktype
    if lt == LINKTYPE_ETHERNET:
        if len(data) < 14:
            raise Malformed(f"truncated Ethernet header ({len(data)} of 14 bytes)")
        etype, off = struct.unpack("!H", data[12:14])[0], 14
        while etype == ETH_P_8021Q:
            if len(data) < off + 4:
                raise Malformed("truncated 802.1Q tag")
            etype, off = struct.unpack("!H", data[off + 2 : off + 4])[0], off + 4
    elif lt in LINKTYPE_RAW or lt == LINKTYPE_IPV4:
        version = data[0] >> 4 if data else 4
        if version not in (4, 6):
            raise Malformed(f"Bogus IP version ({version})")
        etype, off = (ETH_P_IP if version == 4 else ETH_P_IPV6), 0
    elif lt == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            raise Malformed(f"truncated Linux cooked header ({len(data)} of 16 bytes)")
        etype, off = struct.unpack("!H", data[14:16])[0], 16
    elif lt == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            raise Malformed(f"truncated Linux cooked header ({len(data)} of 20 bytes)")
        etype, off = struct.unpack("!H", data[0:2])[0], 20
    else:
        raise ValueError(f"link type {lt} is not supported (supported: {LINK_NAMES})")
    if etype == ETH_P_ARP:
        raise Skip("ARP (the walk resolves neighbours itself)")
    if etype == ETH_P_IPV6:
        raise Skip("IPv6 (the model is IPv4 only)")
    if etype != ETH_P_IP:
        raise Skip(f"ethertype 0x{etype:04x} is not IPv4")
    return data[off:]


def decode(cap: Captured, vxlan_ports: tuple[int, ...] = VXLAN_PORTS) -> Packet:
    """A capture record as a walk packet without link header (raises Skip, Malformed
    or ValueError).  UDP to a VXLAN port carrying a VXLAN header (flag I) keeps its
    inner frame, so that a capture of a node's `eth0` replays through the overlay."""
    return dissect_ip(ip_bytes(cap), vxlan_ports, cap.snapped)


def describe(cap: Captured) -> str:
    """A one-line summary of a record for messages, even when it cannot be walked."""
    if cap.linktype == LINKTYPE_ETHERNET:
        try:
            return dissect_frame(cap.data).summary()  # ARP, or a well-formed IPv4 frame
        except ValueError:
            pass
    try:
        data = ip_bytes(cap)
    except (Skip, ValueError):
        return f"{len(cap.data)}-byte record"
    if len(data) < 20:
        return f"{len(data)}-byte IP packet"
    src, dst = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])
    return f"IP {src} > {dst} proto {data[9]} len {len(data)}"


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
    sim: Simulator,
    records: Iterable[Captured],
    at: str | None = None,
    name: str = "",
    keep: int | None = None,
    expect: dict[str, int] | None = None,
    on_packet: Callable[[PacketResult], None] | None = None,
) -> ReplayResult:
    """Walk every record of a capture, in order, with one shared walk state.

    `keep`: how many packets keep their trace (None: all; see `ReplayResult`);
    `on_packet` sees every packet, with its trace, as soon as it is walked.
    """
    result = ReplayResult(name, keep, expect=expect)
    state = WalkState()
    entry: tuple[str, str] | None = None
    if at is not None:
        entry = (sim.netns_of(sim.resolve(at)).id, at)
    who = owners(sim)
    ports = tuple(dict.fromkeys((sim.cluster.config.vxlan_port, *VXLAN_PORTS)))
    sent: dict[tuple[int, str, int, str, int], str] = {}  # flow -> netns that sent it
    for cap in records:
        p = replay_one(sim, cap, state, entry, who, ports, sent)
        if on_packet is not None:
            on_packet(p)
        result.add(p)
    return result


def replay_one(
    sim: Simulator,
    cap: Captured,
    state: WalkState,
    entry: tuple[str, str] | None,
    who: dict[str, tuple[str, str]],
    ports: tuple[int, ...],
    sent: dict[tuple[int, str, int, str, int], str],
) -> PacketResult:
    """Decode and walk one record from the capture's shared walk state."""
    try:
        pkt = decode(cap, ports)
    except Skip as why:
        return PacketResult(cap.index, describe(cap), skipped=str(why))
    except Malformed as why:
        return PacketResult(cap.index, describe(cap), malformed=str(why))
    except ValueError as err:
        return PacketResult(cap.index, describe(cap), error=str(err))
    assert pkt.ip is not None
    summary = pkt.summary()
    where = entry or who.get(pkt.ip.src)
    if where is None:
        return PacketResult(
            cap.index,
            summary,
            error=f"source {pkt.ip.src} belongs to no pod, node or external "
            "host of the cluster (give `at:` / --at to say where it enters)",
        )
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
    title = f"replay #{cap.index} at {text}: {summary}"
    state.affinity.now = cap.time  # the capture's clock (dataplane.affinity)
    trace = sim.walk(title, [Out(pkt, ns_id)], client, state)
    trace.assumptions.append(SHARED_STATE)
    settle(trace)
    return PacketResult(cap.index, summary, text, trace.verdict, trace=trace)


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


def replay(
    sim: Simulator,
    path: str | Path,
    at: str | None = None,
    keep: int | None = None,
    expect: dict[str, int] | None = None,
    on_packet: Callable[[PacketResult], None] | None = None,
) -> ReplayResult:
    """Read a capture file as it goes and walk every packet of it through `sim`'s
    cluster (see `replay_packets`)."""
    return replay_packets(
        sim, iter_capture(path), at, str(path), keep, expect, on_packet
    )


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
    expect = dict(step.expect) if step.expect is not None else None
    keep = KEEP_TRACES if step.keep_traces is None else step.keep_traces
    try:  # the loader made `pcap` relative to the scenario file already
        res = replay(runner.sim, step.pcap, at, keep, expect)
    except TopologyError as err:
        raise TopologyError(f"replay: {err.reason}", step.loc, f"step {index}",
                            "pcap") from None  # fmt: skip
    counts = res.counts()
    title = f"replay {step.pcap.name}: {res.total} packets" + (
        f" at {at}" if at else ""
    )
    out = StepResult(index, "replay", title, step.loc, step.name)
    out.traces = res.traces
    out.actual = show_counts(counts)
    out.data["replay"] = {
        "pcap": step.pcap.name,
        "counts": counts,
        "packets": [p.to_dict() for p in res.packets],
        "total": res.total,
    }
    if expect is not None:
        problems = compare(expect, counts)
        out.expected = show_counts(expect)
        out.ok = not problems
        if problems:
            out.message = "; ".join(problems) + parted(res)
    elif res.errors:
        out.message = "; ".join(
            f"packet {p.index}: {p.message}" for p in res.errors[:3]
        )
    return out


def parted(res: ReplayResult) -> str:
    """The first packets whose outcome the expectation does not count, and where."""
    lines: list[str] = []
    for p in res.packets:
        if not res.is_problem(p):
            continue
        where = ""
        if p.trace is not None and p.trace.hops:
            h = next((h for h in p.trace.hops if h.reason), p.trace.hops[-1])
            where = f" (hop {h.seq}: {h.where} {h.event}: {h.detail})"
        lines.append(f"packet {p.index} {p.summary}: {p.message or p.outcome}{where}")
        if len(lines) == 3:
            break
    return "; " + "; ".join(lines) if lines else ""


__all__ = [
    "KEEP_TRACES",
    "Captured",
    "PacketResult",
    "ReplayResult",
    "compare",
    "iter_capture",
    "read_capture",
    "replay",
    "replay_packets",
    "run_replay_step",
]
