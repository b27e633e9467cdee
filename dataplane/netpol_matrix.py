"""The reachability matrix without n x n walks: policy per equivalence class, the path per
pair of nodes.

For a pair of pods (s, d) on one port the walk's verdict is: denied-egress when the egress
of s does not admit d, else denied-ingress when the ingress of d does not admit s, else
whatever the path gives when no policy interferes (delivered, or refused when nothing
listens).  Each part depends on few things, so each is computed once per class:

- the egress decision depends on the policies isolating s for egress and, of d, on its
  namespace, labels, the ipBlocks holding its address, its named ports and the port;
- the ingress decision depends on the policies isolating d for ingress, its named ports and
  the port and, of s, on its namespace, labels and the ipBlocks holding its address;
- the path depends on the two nodes and on whether d listens (and a pod's traffic to itself
  never leaves it, so policy does not apply there).

Decisions come from the two halves of `dataplane.netpol.decide`, the very function the
FORWARD hooks call: `prepare` once per class of pods, `judge` once per class of peers (and
once only when `Side.peer_matters` says no rule looks at the peer).  The path comes from one
real walk per (source node, destination node, listening) among the pairs the policies
admit.  Columns are kept as bit sets over the sources (Python ints) and
turned into text with integer arithmetic, so 4,000,000 cells cost little.  Endpoints that
are not plain pods (Services, nodes, hostNetwork pods, containers), and every pair when the
simulator has user hooks, are walked one by one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dataplane.netpol import Direction, PolicyIndex, Side, index_of, judge, prepare
from topology.endpoint import EndpointKind
from topology.model import IPBlock, Pod, PolicyRule, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.sim import Simulator

# Byte value of a cell while its column is assembled: bit 0 = egress admits, bit 1 =
# ingress admits, the rest = index of the path's verdict code in `_PATH_CODES`.
_PATH_CODES = ".RNUDTBdEI"
_TABLE = bytes(
    ord("E" if not v & 1 else "I" if not v & 2 else _PATH_CODES[v >> 2])
    for v in range(4 * len(_PATH_CODES))
) + bytes(256 - 4 * len(_PATH_CODES))


def _plain_pod(sim: Simulator, text: str) -> Pod | None:
    ep = sim.resolve(text)
    if ep.kind is EndpointKind.POD and ep.pod is not None and not ep.pod.host_network:
        return ep.pod
    return None


def _code(
    sim: Simulator, src: str, dst: str, port: int | str | None, proto: Protocol
) -> str:
    from dataplane.result import CODE
    from dataplane.trace import Verdict

    return CODE[sim.probe(src, dst, port, proto).verdict or Verdict.DROPPED]


def fast_rows(
    sim: Simulator,
    sources: list[str],
    targets: list[str],
    port: int | str | None,
    protocol: Protocol,
) -> list[str]:
    """The rows of the matrix (one verdict code per target), as `walk_matrix` gives them."""
    fast = not sim.user_hooks
    spods = [_plain_pod(sim, s) if fast else None for s in sources]
    tpods = [_plain_pod(sim, t) if fast else None for t in targets]
    s_idx = [i for i, p in enumerate(spods) if p is not None]
    t_idx = [j for j, p in enumerate(tpods) if p is not None]
    columns: list[bytes] = []
    if s_idx and t_idx:
        block = _Block(sim, [p for p in spods if p is not None], protocol)
        for j in t_idx:
            pod = tpods[j]
            assert pod is not None
            dport = sim.resolve_port(port, sim.resolve(targets[j]), protocol)
            columns.append(
                block.column(pod, dport if protocol is not Protocol.ICMP else None)
            )
    if len(s_idx) == len(sources) and len(t_idx) == len(targets):
        return (
            [bytes(r).decode("ascii") for r in zip(*columns, strict=True)]
            if columns
            else ["" for _ in sources]
        )
    rows = [bytearray(len(targets)) for _ in sources]
    for k, j in enumerate(t_idx):
        col = columns[k]
        for pos, i in enumerate(s_idx):
            rows[i][j] = col[pos]
    s_fast, t_fast = set(s_idx), set(t_idx)
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            if i not in s_fast or j not in t_fast:
                rows[i][j] = ord(_code(sim, s, t, port, protocol))
    return [r.decode("ascii") for r in rows]


class _Block:
    """The pod x pod part of a matrix: sources fixed, one column per target."""

    def __init__(self, sim: Simulator, sources: list[Pod], protocol: Protocol) -> None:
        self.sim = sim
        self.protocol = protocol
        self.index: PolicyIndex = index_of(sim.cluster)
        self.sources = sources
        self.n = len(sources)
        self.all = (1 << self.n) - 1
        self.zero = int.from_bytes(b"0" * self.n, "big")
        policies = sim.cluster.policies.values()
        # An ingress rule looks at the source's ipBlocks, an egress rule at the target's.
        self.ingress_blocks = _blocks(r for p in policies for r in p.ingress)
        self.egress_blocks = _blocks(r for p in policies for r in p.egress)
        # Sources by class: who they are to an ingress rule, which policies isolate their
        # egress, which node they run on; and where each pod sits (for its own cell).
        self.peer_mask: dict[object, int] = {}
        self.peer_rep: dict[object, Pod] = {}
        self.egress_mask: dict[tuple[str, ...], int] = {}
        self.egress_rep: dict[tuple[str, ...], Pod] = {}
        self.node_mask: dict[str, int] = {}
        self.positions: dict[str, list[int]] = {}
        for pos, pod in enumerate(sources):
            bit = 1 << pos
            key = self.peer_key(pod, self.ingress_blocks)
            self.peer_mask[key] = self.peer_mask.get(key, 0) | bit
            self.peer_rep.setdefault(key, pod)
            iso = tuple(p.key for p in self.index.isolating(pod, Direction.EGRESS))
            self.egress_mask[iso] = self.egress_mask.get(iso, 0) | bit
            self.egress_rep.setdefault(iso, pod)
            self.node_mask[pod.node] = self.node_mask.get(pod.node, 0) | bit
            self.positions.setdefault(pod.key, []).append(pos)
        self.nodes = list(self.node_mask)
        self.open_egress = self.egress_mask.pop((), 0)
        self.egress_sides: dict[int | None, dict[tuple[str, ...], Side]] = {}
        self.egress_cols: dict[object, int] = {}
        self.ingress_cols: dict[object, int] = {}
        self.paths: dict[tuple[object, ...], str] = {}
        self.path_ints: dict[tuple[str, ...], int] = {}

    # -- classes ---------------------------------------------------------------------------
    def peer_key(self, pod: Pod, blocks: list[IPBlock]) -> tuple[object, ...]:
        """What rules can see of a pod: namespace, labels, the ipBlocks holding it."""
        ip = self.index.party(str(pod.ip)).ip_int
        inside = tuple(
            i for i, b in enumerate(blocks) if self.index.block_miss(b, ip) is None
        )
        return (pod.namespace, self.index.labels_key(pod), inside)

    @staticmethod
    def named_ports(pod: Pod) -> tuple[tuple[str, str, int], ...]:
        return tuple((p.name, p.protocol.value, p.port) for p in pod.ports() if p.name)

    # -- columns ---------------------------------------------------------------------------
    def egress_col(self, dst: Pod, dport: int | None) -> int:
        """The sources whose egress admits `dst` on `dport`."""
        if not self.egress_mask:
            return self.open_egress
        key = (self.peer_key(dst, self.egress_blocks), self.named_ports(dst), dport)
        col = self.egress_cols.get(key)
        if col is None:
            sides = self.egress_sides.get(dport)
            if sides is None:
                sides = self.egress_sides[dport] = {
                    iso: prepare(
                        self.index, Direction.EGRESS, rep, dport, self.protocol
                    )
                    for iso, rep in self.egress_rep.items()
                    if iso
                }
            col = self.open_egress
            party = self.index.party(str(dst.ip))
            for iso, side in sides.items():
                if judge(self.index, side, party).allowed:
                    col |= self.egress_mask[iso]
            self.egress_cols[key] = col
        return col

    def ingress_col(self, dst: Pod, dport: int | None) -> int:
        """The sources the ingress of `dst` admits on `dport`."""
        side = prepare(self.index, Direction.INGRESS, dst, dport, self.protocol)
        if not side.isolating:
            return self.all
        key = (tuple(p.key for p in side.isolating), self.named_ports(dst), dport)
        col = self.ingress_cols.get(key)
        if col is None:
            col = 0
            for peer, mask in self.peer_mask.items():
                party = self.index.party(str(self.peer_rep[peer].ip))
                if judge(self.index, side, party).allowed:
                    col |= mask
                if not side.peer_matters:  # every source gets this answer
                    col = self.all if col else 0
                    break
            self.ingress_cols[key] = col
        return col

    def path(self, src: Pod, dst: Pod, dport: int | None) -> str:
        """The verdict code of the walk from `src` to `dst` (remembered per kind of path)."""
        listens = self.protocol is Protocol.ICMP or (
            dport is not None and dst.container_of(dport, self.protocol) is not None
        )
        key = (src.key == dst.key, src.node, dst.node, listens)
        code = self.paths.get(key)
        if code is None:
            code = self.paths[key] = _code(
                self.sim, f"pod/{src.key}", f"pod/{dst.key}", dport, self.protocol
            )
        return code

    def column(self, dst: Pod, dport: int | None) -> bytes:
        """The codes of every source -> `dst`, in source order."""
        ecol = self.egress_col(dst, dport)
        icol = self.ingress_col(dst, dport)
        own = self.positions.get(dst.key, [])
        own_mask = sum(1 << p for p in own)
        allowed = ecol & icol & ~own_mask
        # The path of an admitted pair, per source node: walk one pair of each kind.
        codes = []
        for node in self.nodes:
            here = allowed & self.node_mask[node]
            if here:
                rep = self.sources[(here & -here).bit_length() - 1]
                codes.append(self.path(rep, dst, dport))
            else:
                codes.append(".")
        value = (
            _digits(ecol, self.n, self.zero)
            + 2 * _digits(icol, self.n, self.zero)
            + self.path_int(tuple(codes))
        )
        col = bytearray(value.to_bytes(self.n, "big").translate(_TABLE))
        for p in own:  # a pod's traffic to itself stays in the pod: no policy applies
            col[p] = ord(self.path(dst, dst, dport))
        return bytes(col)

    def path_int(self, codes: tuple[str, ...]) -> int:
        """The path codes of every source (by its node) as 4 * code index per byte."""
        value = self.path_ints.get(codes)
        if value is None:
            by_node = {
                node: 4 * _PATH_CODES.index(c)
                for node, c in zip(self.nodes, codes, strict=True)
            }
            value = int.from_bytes(bytes(by_node[p.node] for p in self.sources), "big")
            self.path_ints[codes] = value
        return value


def _blocks(rules: Iterable[PolicyRule]) -> list[IPBlock]:
    """The ipBlocks of `rules`, once each."""
    seen: dict[int, IPBlock] = {}
    for rule in rules:
        for peer in rule.peers:
            if peer.ip_block is not None:
                seen.setdefault(id(peer.ip_block), peer.ip_block)
    return list(seen.values())


def _digits(bits: int, n: int, zero: int) -> int:
    """Bit i of `bits` (source i) as byte i of a big-endian integer: 0 or 1 per byte."""
    text = format(bits, f"0{n}b")[::-1] if n else ""
    return int.from_bytes(text.encode("ascii"), "big") - zero
