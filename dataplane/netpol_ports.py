"""Every port and protocol at once: for each block of (source pods, destination pods),
the protocols and port ranges NetworkPolicy admits between them.

What `connlist`- or `diff`-like questions stand on.  The port space of each protocol is
cut into the intervals on which no policy `ports` item (of a NetworkPolicy or of an admin
policy of either tier) changes its answer: the edges of
every number and range, and the numbers that named ports take on the pods that have them
(ICMP, which has no port, is one more interval).  The pods, selectors and peers are sets
computed once (`dataplane.netpol_matrix.Sets`); each interval then costs one pass of the
matrix's column algebra on one representative port, with whole sets and no decision per
pair.  The sources of a destination's block are then split by which intervals admit
them.  Only policy is looked at: whether anything listens, and the path, are the
matrix's (`dataplane.matrix`).  A pod's traffic to itself is always admitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

from dataplane.netpol_matrix import Sets, bits_of, column_blocks
from topology.errors import TopologyError
from topology.model import AdminRule, PolicyRule, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.sim import Simulator

PORTED = (Protocol.TCP, Protocol.UDP, Protocol.SCTP)
LAST_PORT = 65535

# Admitted ports: per protocol, inclusive (first, last) ranges; ICMP as ((0, 0),).
Ports = tuple[tuple[Protocol, tuple[tuple[int, int], ...]], ...]


def admits(ports: Ports, protocol: Protocol, port: int | None) -> bool:
    """Whether `ports` hold `port` of `protocol` (None or any number for ICMP).

    >>> admits(((Protocol.TCP, ((80, 80), (8000, 8080))),), Protocol.TCP, 8001)
    True
    >>> admits(((Protocol.TCP, ((80, 80),)),), Protocol.UDP, 80)
    False
    """
    for proto, ranges in ports:
        if proto is protocol:
            if protocol is Protocol.ICMP:
                return True
            return port is not None and any(lo <= port <= hi for lo, hi in ranges)
    return False


EVERYTHING: Ports = (
    *((p, ((1, LAST_PORT),)) for p in PORTED),
    (Protocol.ICMP, ((0, 0),)),
)


@dataclass(frozen=True, slots=True)
class PortBlock:
    """The pairs (every source in `sources` x every column in `targets`, a pod's own pair
    left out) that policy admits on `ports`."""

    sources: int  # bitset over `Sets.pods`
    targets: tuple[int, ...]  # columns
    ports: Ports


@dataclass(slots=True)
class PortTable:
    """Pods x pods, each pair's admitted ports, as blocks."""

    sets: Sets
    sources: list[int]  # per row: the pod's bit position
    targets: list[int]  # per column
    blocks: list[PortBlock]

    def ports(self, i: int, j: int) -> Ports:
        """The ports policy admits from row i to column j."""
        s = self.sources[i]
        if s == self.targets[j]:
            return EVERYTHING
        for b in self.blocks:
            if j in b.targets and b.sources >> s & 1:
                return b.ports
        return ()


def intervals(
    sets: Sets, only: Sequence[PolicyRule | AdminRule] | None = None
) -> list[tuple[Protocol, int, int]]:
    """The (protocol, first, last) pieces of the port space on which every `ports` item
    of every policy (or of the rules `only`) gives one answer, with ICMP as (ICMP, 0,
    0)."""
    cuts: dict[Protocol, set[int]] = {p: {1, LAST_PORT + 1} for p in PORTED}
    named: set[tuple[str, Protocol]] = set()
    rules: list[PolicyRule | AdminRule]
    if only is not None:
        rules = list(only)
    else:
        rules = [r for pol in sets.policies for r in (*pol.ingress, *pol.egress)]
        rules += [
            r for t in sets.tiers.values() for p in t for r in (*p.ingress, *p.egress)
        ]
    for rule in rules:
        for item in rule.ports:
            if item.protocol not in cuts:
                continue
            if isinstance(item.port, str):
                named.add((item.port, item.protocol))
            elif item.port is not None:
                last = item.end_port if item.end_port is not None else item.port
                cuts[item.protocol] |= {item.port, last + 1}
    for pod in sets.pods:
        for p in pod.ports():
            if p.name and (p.name, p.protocol) in named:
                cuts[p.protocol] |= {p.port, p.port + 1}
    out: list[tuple[Protocol, int, int]] = []
    for proto in PORTED:
        edges = sorted(c for c in cuts[proto] if 1 <= c <= LAST_PORT + 1)
        out += [(proto, lo, hi - 1) for lo, hi in pairwise(edges)]
    return [*out, (Protocol.ICMP, 0, 0)]


def port_table(sim: Simulator, sources: list[str], targets: list[str]) -> PortTable:
    """The admitted ports of every pair of `sources` x `targets` (pods, not hostNetwork),
    every protocol and port at once."""
    sets = Sets.of(sim.cluster)

    def at(text: str) -> int:
        ep = sim.resolve(text)
        if ep.pod is None or ep.pod.host_network or ep.pod.key not in sets.at:
            raise TopologyError(
                f"endpoint {text!r}: admitted ports are computed between pods "
                "(not hostNetwork)"
            )
        return sets.at[ep.pod.key]

    s_at, t_at = [at(s) for s in sources], [at(t) for t in targets]
    columns = list(range(len(targets)))
    pieces = intervals(sets)
    # per interval: each column's admitted sources
    admitted: list[list[int]] = []
    for proto, lo, _ in pieces:
        dport = None if proto is Protocol.ICMP else lo
        found = [0] * len(targets)
        for b in column_blocks(sets, t_at, columns, proto, dport):
            both = b.egress & b.ingress
            for j in b.targets:
                found[j] = both
        admitted.append(found)
    wanted = bits_of(s_at, sets.n)
    by_vector: dict[tuple[int, ...], list[int]] = {}
    for j in columns:
        by_vector.setdefault(tuple(a[j] for a in admitted), []).append(j)
    blocks: list[PortBlock] = []
    for vector, cols in by_vector.items():
        # split the sources by which intervals admit them
        classes: list[tuple[int, tuple[int, ...]]] = [(wanted, ())]
        for k, bits in enumerate(vector):
            split: list[tuple[int, tuple[int, ...]]] = []
            for members, ks in classes:
                inside, outside = members & bits, members & ~bits
                if inside:
                    split.append((inside, (*ks, k)))
                if outside:
                    split.append((outside, ks))
            classes = split
        for members, ks in classes:
            blocks.append(PortBlock(members, tuple(cols), piece_ports(pieces, ks)))
    return PortTable(sets, s_at, t_at, blocks)


def piece_ports(pieces: list[tuple[Protocol, int, int]], ks: Sequence[int]) -> Ports:
    """The intervals `ks` of `pieces` as merged ranges per protocol."""
    by_proto: dict[Protocol, list[tuple[int, int]]] = {}
    for k in ks:
        proto, lo, hi = pieces[k]
        ranges = by_proto.setdefault(proto, [])
        if ranges and ranges[-1][1] + 1 == lo:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    return tuple((p, tuple(r)) for p, r in by_proto.items())
