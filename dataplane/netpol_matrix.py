"""The reachability matrix as set algebra: who each policy selects and who each rule
admits as sets of pods, verdicts as unions and intersections of whole sets, never a
decision per pair.

The sets are bitsets over the cluster's pods (Python ints, bit u = the u-th pod that is
not hostNetwork, in cluster order).  For one protocol and port:

- a policy selects `ns(P) & select(podSelector)`; a rule's peers are the union of its
  `from`/`to` items (`ns(P) & select(podSelector)`, `select_ns(namespaceSelector)`, both
  intersected, or the pods inside an ipBlock), every pod when it has none; whether a rule's
  `ports` admit the port depends only on the destination's named ports, and is asked of
  the decision code itself (`netpol_index.rule_ports_match`);
- the ingress of a destination d admits the union of the peers of the rules (whose ports
  match on d) of the policies isolating d, everyone when none does;
- the egress of the sources admits d for the sources not isolated for egress and for those
  selected by a policy with a rule whose peers hold d and whose ports match on d: the
  destinations are grouped by which distinct peer sets hold them, and each group gets its
  column at once.

A cell (s, d) is then: denied-egress when s is not in d's egress column, denied-ingress
when s is not in d's ingress column, else what the path gives when no policy interferes
(delivered, or refused when nothing listens), which depends only on the two nodes and on
whether d listens, and is learned from one real walk of an admitted pair of each kind
(`Simulator.probe`, the FORWARD hooks' `netpol.decide` included).  A pod's traffic to
itself stays in the pod (no policy applies).

The result is kept as blocks (`Table`): destinations with the same egress and ingress
columns share one block, whose cells differ only by the source's node and the
destination's node and listening socket.  Counts and single cells are read off the blocks;
rows are expanded only for output.  Endpoints that are not plain pods (Services, nodes,
external hosts, hostNetwork pods, containers), and every pair when the simulator has user
hooks, are walked one by one (the walk's verdict is theirs).
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from dataplane.netpol_index import index_of, rule_ports_match
from dataplane.result import CODE, NO_PORT
from topology.endpoint import EndpointKind
from topology.model import (
    AdminAction,
    AdminPeer,
    AdminPolicy,
    AdminRule,
    Cluster,
    IPBlock,
    LabelSelector,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyRule,
    Protocol,
    SelectorOp,
    Tier,
)
from topology.nogc import no_gc

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.sim import Simulator
    from topology.endpoint import Endpoint

# Byte value of a cell while its column is assembled: bit 0 = egress admits, bit 1 =
# ingress admits, the rest = index of the path's verdict code in `_PATH_CODES`.
_PATH_CODES = ".RNUDTBdEI"
_TABLE = bytes(
    ord("E" if not v & 1 else "I" if not v & 2 else _PATH_CODES[v >> 2])
    for v in range(4 * len(_PATH_CODES))
) + bytes(256 - 4 * len(_PATH_CODES))


# -- bitsets ---------------------------------------------------------------------------------
def bits_of(positions: list[int], n: int) -> int:
    """The bitset holding `positions` (each < n).

    >>> bin(bits_of([0, 3, 9], 10))
    '0b1000001001'
    """
    buf = bytearray((n + 7) // 8)
    for i in positions:
        buf[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buf, "little")


def members(bits: int) -> Iterator[int]:
    """The positions of the set bits, lowest first.

    >>> list(members(0b1000001001))
    [0, 3, 9]
    """
    if bits.bit_count() * 64 < bits.bit_length():  # sparse: bit by bit
        while bits:
            low = bits & -bits
            yield low.bit_length() - 1
            bits ^= low
        return
    text = format(bits, "b")[::-1]
    i = text.find("1")
    while i >= 0:
        yield i
        i = text.find("1", i + 1)


def digits(bits: int, n: int) -> int:
    """Bit i of `bits` as byte i of a big-endian integer of n bytes: 0 or 1 per byte."""
    if not n:
        return 0
    text = format(bits, f"0{n}b")[::-1]
    return int.from_bytes(text.encode("ascii"), "big") - _zeros(n)


_ZEROS: dict[int, int] = {}


def _zeros(n: int) -> int:
    value = _ZEROS.get(n)
    if value is None:
        value = _ZEROS[n] = int.from_bytes(b"0" * n, "big")
    return value


class Weights:
    """How many times each pod is an endpoint (rows or columns may repeat), as bit planes:
    a set's weighted size is a few popcounts."""

    def __init__(self, counts: Mapping[int, int], n: int) -> None:
        planes: list[list[int]] = []
        for u, c in counts.items():
            k = 0
            while c:
                if c & 1:
                    planes.extend([] for _ in range(k + 1 - len(planes)))
                    planes[k].append(u)
                c >>= 1
                k += 1
        self.planes = [bits_of(p, n) for p in planes]
        self.bits = bits_of(list(counts), n)  # every pod counted at least once

    def size(self, bits: int) -> int:
        return sum((bits & p).bit_count() << k for k, p in enumerate(self.planes))


# -- selection -------------------------------------------------------------------------------
def _selector_key(sel: LabelSelector) -> tuple[object, ...]:
    return (tuple(sorted(sel.match_labels.items())), sel.match_expressions)


def _block_key(block: IPBlock) -> tuple[object, ...]:
    return (block.cidr, block.except_)


@dataclass(slots=True)
class TierSets:
    """What the admin tiers hold in one table (`Sets.tier_sets`)."""

    ingress: list[list[list[AdminPolicy]]]  # per tier, per pod: its subjects' policies
    ingress_ids: list[list[tuple[int, ...]]]  # the same as ids (keys)
    egress: _EgressTiers


class Sets:
    """The pods of a cluster as bit positions and every selector, peer and rule of its
    policies as the set of pods it matches (remembered by content)."""

    def __init__(
        self,
        pods: list[Pod],
        ns_labels: Mapping[str, Mapping[str, str]],
        policies: list[NetworkPolicy],
        admin: Sequence[AdminPolicy] = (),
        address_networks: Callable[[AdminPeer], tuple[IPv4Network, ...]] = (
            lambda peer: peer.ipv4_networks
        ),
    ) -> None:
        self.pods = pods
        # what a `networks`/`domainNames` peer matches (`PolicyIndex.address_networks`)
        self.address_networks = address_networks
        self.policies = policies
        # the admin policies of each tier, in evaluation order (`AdminPolicy.order`)
        ordered = sorted(admin, key=lambda p: p.order)
        self.tiers = {t: [p for p in ordered if p.tier is t] for t in Tier}
        self.n = n = len(pods)
        self.all = (1 << n) - 1
        self.at = {p.key: u for u, p in enumerate(pods)}
        self.ips = [int(p.ip) for p in pods]
        self.by_ip = sorted(range(n), key=self.ips.__getitem__)  # positions by address
        self.sorted_ips = [self.ips[u] for u in self.by_ip]
        kv: dict[tuple[str, str], list[int]] = {}
        keys: dict[str, list[int]] = {}
        nskv: dict[tuple[str, str], list[int]] = {}
        nskeys: dict[str, list[int]] = {}
        by_ns: dict[str, list[int]] = {}
        by_node: dict[str, list[int]] = {}
        for u, p in enumerate(pods):
            for item in p.labels.items():
                kv.setdefault(item, []).append(u)
                keys.setdefault(item[0], []).append(u)
            for item in ns_labels.get(p.namespace, {}).items():
                nskv.setdefault(item, []).append(u)
                nskeys.setdefault(item[0], []).append(u)
            by_ns.setdefault(p.namespace, []).append(u)
            by_node.setdefault(p.node, []).append(u)
        self.kv = {k: bits_of(v, n) for k, v in kv.items()}
        self.keys = {k: bits_of(v, n) for k, v in keys.items()}
        self.nskv = {k: bits_of(v, n) for k, v in nskv.items()}
        self.nskeys = {k: bits_of(v, n) for k, v in nskeys.items()}
        self.by_ns = {k: bits_of(v, n) for k, v in by_ns.items()}
        self.nodes = list(by_node)
        self.node_bits = [bits_of(by_node[name], n) for name in self.nodes]
        node_index = {name: i for i, name in enumerate(self.nodes)}
        self.node_of = [node_index[p.node] for p in pods]
        self._selected: dict[tuple[object, ...], int] = {}
        self._blocks: dict[tuple[object, ...], int] = {}
        self._rules: dict[int, int] = {}
        self._walks: dict[tuple[object, ...], tuple[int, int]] = {}
        self._ingress_rules: dict[tuple[int, ...], list[tuple[int, AdminRule]]] = {}
        self._tier_sets: dict[int, TierSets] = {}
        self._isolation: (
            tuple[
                int, dict[int, list[tuple[int, PolicyRule]]], list[list[NetworkPolicy]]
            ]
            | None
        ) = None
        self._holding: dict[int, tuple[list[int], list[list[int]], list[int]]] = {}

    @classmethod
    def of(cls, cluster: Cluster) -> Sets:
        """The sets of a cluster's pods (not hostNetwork) and of all its policies."""
        pods = [p for p in cluster.pods.values() if not p.host_network]
        ns_labels = {name: ns.labels for name, ns in cluster.namespaces.items()}
        return cls(
            pods,
            ns_labels,
            list(cluster.policies.values()),
            list(cluster.admin_policies.values()),
            index_of(cluster).address_networks,
        )

    def select(self, sel: LabelSelector, of_namespace: bool = False) -> int:
        """The pods whose labels (or whose namespace's labels) `sel` matches
        (`topology.selectors.matches`, on whole sets)."""
        key = (of_namespace, *_selector_key(sel))
        found = self._selected.get(key)
        if found is not None:
            return found
        kv, keys = (self.nskv, self.nskeys) if of_namespace else (self.kv, self.keys)
        bits = self.all
        for item in sel.match_labels.items():
            bits &= kv.get(item, 0)
        for req in sel.match_expressions:
            if req.operator is SelectorOp.EXISTS:
                bits &= keys.get(req.key, 0)
            elif req.operator is SelectorOp.DOES_NOT_EXIST:
                bits &= ~keys.get(req.key, 0)
            else:
                having = 0
                for value in req.values:
                    having |= kv.get((req.key, value), 0)
                bits &= having if req.operator is SelectorOp.IN else ~having
        self._selected[key] = bits
        return bits

    def block(self, block: IPBlock) -> int:
        """The pods whose address is in `cidr` and in no `except`."""
        key = _block_key(block)
        found = self._blocks.get(key)
        if found is None:
            found = self._range(block.cidr)
            for x in block.except_:
                found &= ~self._range(x)
            self._blocks[key] = found
        return found

    def _range(self, net: IPv4Network) -> int:
        """The pods whose address is in `net` (a range of the addresses in order)."""
        lo = bisect_left(self.sorted_ips, int(net.network_address))
        hi = bisect_right(self.sorted_ips, int(net.broadcast_address))
        return bits_of(self.by_ip[lo:hi], self.n)

    def peer(self, policy_ns: str, peer: PolicyPeer) -> int:
        """The pods a `from`/`to` item of a policy in `policy_ns` matches."""
        if peer.ip_block is not None:
            return self.block(peer.ip_block)
        if peer.namespace_selector is None:
            bits = self.by_ns.get(policy_ns, 0)
        else:
            bits = self.select(peer.namespace_selector, of_namespace=True)
        if peer.pod_selector is not None:
            bits &= self.select(peer.pod_selector)
        return bits

    def rule(self, policy_ns: str, rule: PolicyRule) -> int:
        """The pods a rule's peers admit (every pod when it has none)."""
        found = self._rules.get(id(rule))
        if found is None:
            found = self.all if not rule.peers else 0
            for p in rule.peers:
                found |= self.peer(policy_ns, p)
            self._rules[id(rule)] = found
        return found

    def selected(self, pol: NetworkPolicy) -> int:
        """The pods a policy selects."""
        return self.by_ns.get(pol.namespace, 0) & self.select(pol.pod_selector)

    def admin_peer(self, peer: AdminPeer) -> int:
        """The pods a subject or peer of an admin policy matches (`nodes` peers match no
        pod; `networks` and `domainNames` the pods at the addresses they match)."""
        if peer.by_address:
            found = 0
            for net in self.address_networks(peer):
                found |= self._range(net)
            return found
        if peer.namespace_selector is None:
            return 0
        bits = self.select(peer.namespace_selector, of_namespace=True)
        if peer.pod_selector is not None:
            bits &= self.select(peer.pod_selector)
        return bits

    def isolation(
        self,
    ) -> tuple[int, dict[int, list[tuple[int, PolicyRule]]], list[list[NetworkPolicy]]]:
        """The NetworkPolicy side every port asks alike: the pods no policy isolates for
        egress, each distinct set of egress peers with the (selected pods, rule) that
        use it, and the policies isolating each pod for ingress.  Remembered."""
        if self._isolation is None:
            open_egress = self.all
            users: dict[int, list[tuple[int, PolicyRule]]] = {}
            ingress_of: list[list[NetworkPolicy]] = [[] for _ in range(self.n)]
            for pol in self.policies:
                chosen = self.selected(pol)
                if not chosen:
                    continue
                if "Egress" in pol.policy_types:
                    open_egress &= ~chosen
                    for rule in pol.egress:
                        users.setdefault(self.rule(pol.namespace, rule), []).append(
                            (chosen, rule)
                        )
                if "Ingress" in pol.policy_types:
                    for u in members(chosen):
                        ingress_of[u].append(pol)
            self._isolation = (open_egress, users, ingress_of)
        return self._isolation

    def holding(self, wanted: int) -> tuple[list[int], list[list[int]], list[int]]:
        """The egress peer sets (`isolation`), for each destination of `wanted` those
        that hold it, and those that hold every one of them.  Remembered."""
        found = self._holding.get(wanted)
        if found is None:
            peer_sets = list(self.isolation()[1])
            holding: list[list[int]] = [[] for _ in range(self.n)]
            always: list[int] = []  # peer sets holding every destination
            for k, peers in enumerate(peer_sets):
                if peers & wanted == wanted:
                    always.append(k)
                    continue
                for u in members(peers & wanted):
                    holding[u].append(k)
            found = self._holding[wanted] = (peer_sets, holding, always)
        return found

    def tier_sets(self, wanted: int) -> TierSets:
        """Per tier: the policies with ingress rules whose subject holds each pod (and
        their ids, a key); the egress rules of each tier in evaluation order with the
        destinations (of `wanted`) they hold.  Remembered: every port of a table asks
        the same."""
        found = self._tier_sets.get(wanted)
        if found is None:
            tiers_in: list[list[list[AdminPolicy]]] = []
            for tier in Tier:
                sub: list[list[AdminPolicy]] = [[] for _ in range(self.n)]
                for apol in self.tiers[tier]:
                    if apol.ingress:
                        for u in members(self.admin_peer(apol.subject)):
                            sub[u].append(apol)
                tiers_in.append(sub)
            ids = [[tuple(map(id, pols)) for pols in sub] for sub in tiers_in]
            found = TierSets(tiers_in, ids, _EgressTiers(self, wanted))
            self._tier_sets[wanted] = found
        return found

    def ingress_walk(
        self,
        tier: int,
        policies: list[AdminPolicy],
        ids: tuple[int, ...],
        ports: _Ports,
        pc: PortClass,
    ) -> tuple[int, int]:
        """`_tier_walk` of the ingress rules of `policies` (those of one tier holding a
        destination, in order; `ids` their ids) for port class `pc`, remembered by
        (policies, pc)."""
        key = (tier, ids, ports.protocol, pc)
        found = self._walks.get(key)
        if found is None:
            rules = self._ingress_rules.get(ids)
            if rules is None:
                rules = self._ingress_rules[ids] = [
                    (self.admin_rule(r), r) for pol in policies for r in pol.ingress
                ]
            found = self._walks[key] = _tier_walk(rules, ports.matcher(pc), self.all)
        return found

    def admin_rule(self, rule: AdminRule) -> int:
        """The pods an admin rule's peers match (it has at least one)."""
        found = self._rules.get(id(rule))
        if found is None:
            found = 0
            for p in rule.peers:
                found |= self.admin_peer(p)
            self._rules[id(rule)] = found
        return found


# -- the table -------------------------------------------------------------------------------
# A destination's port class: the port asked of it and its named ports (what a rule's
# `ports` look at), with a pod that has them.
PortClass = tuple[int | None, tuple[tuple[str, str, int], ...]]


@dataclass(slots=True)
class Block:
    """Destinations sharing both columns: `egress` (the sources whose egress admits them)
    and `ingress` (the sources their ingress admits), bitsets over `Sets.pods`."""

    egress: int
    ingress: int
    targets: list[int] = field(default_factory=list)  # target indices (matrix columns)


class Table:
    """A matrix kept as blocks; `rows()` expands it, `counts()` and `code()` do not."""

    def __init__(
        self,
        sets: Sets,
        sources: list[int],
        targets: list[int],
        listens: list[bool],
        blocks: list[Block],
        walked: dict[tuple[int, int], str],
        walk: Callable[[int, int], str],
        fixed: dict[int, str] | None = None,
    ) -> None:
        self.sets = sets
        self.sources = sources  # per row: the pod's bit position, or -1 (walked)
        self.targets = targets  # per column: likewise
        self.listens = listens  # per column: a socket listens on the port (or ICMP)
        self.blocks = blocks
        self.block_of = [-1] * len(targets)  # per column: its block, or -1 (walked)
        for k, b in enumerate(blocks):
            for j in b.targets:
                self.block_of[j] = k
        self.walked = walked  # cells walked one by one
        self.fixed = fixed or {}  # columns of one code (`NO_PORT`)
        self.walk = walk  # (row, column) -> code: walks that pair
        self.paths: dict[tuple[object, ...], str] = {}
        self.first_row: dict[int, int] = {}  # a row of each source pod (its first)
        mult: dict[int, int] = {}
        for i, s in enumerate(sources):
            if s >= 0:
                self.first_row.setdefault(s, i)
                mult[s] = mult.get(s, 0) + 1
        self.mult = mult  # how many rows each source pod has
        self.weights = Weights(mult, sets.n)

    def path(self, i: int, j: int) -> str:
        """The code of the path of an admitted pair of the kind of (row i, column j):
        whether it is a pod's own cell, the two nodes, whether the destination listens."""
        s, t = self.sources[i], self.targets[j]
        node_of = self.sets.node_of
        key = (s == t, node_of[s], node_of[t], self.listens[j])
        code = self.paths.get(key)
        if code is None:
            code = self.paths[key] = self.walk(i, j)
        return code

    def code(self, i: int, j: int) -> str:
        """The code of one cell, read off its block."""
        if j in self.fixed:
            return self.fixed[j]
        got = self.walked.get((i, j))
        if got is not None:
            return got
        s, t = self.sources[i], self.targets[j]
        if s == t:
            return self.path(i, j)
        b = self.blocks[self.block_of[j]]
        if not b.egress >> s & 1:
            return "E"
        if not b.ingress >> s & 1:
            return "I"
        return self.path(i, j)

    def node_code(self, admitted: int, node: int, j: int) -> str | None:
        """The path code from the admitted sources of `node` to column j (None when no
        source there is admitted but the destination itself)."""
        t = self.targets[j]
        others = admitted & self.sets.node_bits[node] & self.weights.bits & ~(1 << t)
        if not others:
            return None
        s = (others & -others).bit_length() - 1
        return self.path(self.first_row[s], j)

    # -- reading blocks without expanding them ---------------------------------------------
    def counts(self) -> dict[str, int]:
        """How many cells have each code (rows and columns counted as often as they
        repeat)."""
        with no_gc():
            return self._counts()

    def _counts(self) -> dict[str, int]:
        node_of, weights, mult = self.sets.node_of, self.weights, self.mult
        total = sum(mult.values())
        out: dict[str, int] = {}

        def add(code: str, n: int) -> None:
            if n:
                out[code] = out.get(code, 0) + n

        for b in self.blocks:
            admitted = b.egress & b.ingress
            width = len(b.targets)
            add("E", width * (total - weights.size(b.egress)))
            add("I", width * weights.size(b.egress & ~b.ingress))
            # the admitted pairs by source node and kind of destination (node, listens)
            kinds: dict[tuple[int, bool], list[int]] = {}
            for j in b.targets:
                kinds.setdefault(
                    (node_of[self.targets[j]], self.listens[j]), []
                ).append(j)
            for node, here in enumerate(self.sets.node_bits):
                mine = admitted & here
                n_here = weights.size(mine) if mine else 0
                if not n_here:
                    continue
                for cols in kinds.values():
                    # a pod's own cell is not a pair of its block: counted below
                    own = 0
                    for j in cols:
                        t = self.targets[j]
                        if mine >> t & 1:
                            own += mult.get(t, 0)
                    n = n_here * len(cols) - own
                    if n:
                        found = (self.node_code(admitted, node, j) for j in cols)
                        add(next(c for c in found if c is not None), n)
        for j, t in enumerate(self.targets):
            rows = mult.get(t, 0) if t >= 0 else 0
            if rows:  # a pod's own cells: its path, instead of its block's verdict
                b = self.blocks[self.block_of[j]]
                if not b.egress >> t & 1:
                    add("E", -rows)
                elif not b.ingress >> t & 1:
                    add("I", -rows)
                add(self.path(self.first_row[t], j), rows)
        for code in self.walked.values():
            add(code, 1)
        for code in self.fixed.values():
            add(code, len(self.sources))
        return {c: n for c, n in out.items() if n}

    # -- output ----------------------------------------------------------------------------
    def rows(self) -> list[str]:
        """Every row as text, one code per column (the only expansion)."""
        with no_gc():
            return self._rows()

    def _rows(self) -> list[str]:
        sets = self.sets
        n_s, n_t = len(self.sources), len(self.targets)
        if not n_s:
            return []
        identity = self.sources == list(range(sets.n))
        plain = [i for i, s in enumerate(self.sources) if s >= 0]
        pick = operator.itemgetter(*(self.sources[i] for i in plain)) if plain else None
        rows_of: dict[int, list[int]] = {}  # the rows of each source pod
        for i in plain:
            rows_of.setdefault(self.sources[i], []).append(i)
        # Each column in row order, shared by the columns that are equal but for a pod's
        # own cell; own cells and walked cells are written into the bands afterwards.
        empty = bytes(n_s)
        columns: list[bytes] = [empty] * n_t
        for j, code in self.fixed.items():
            columns[j] = code.encode("ascii") * n_s
        patches: dict[tuple[int, int], str] = dict(self.walked)
        path_ints: dict[tuple[str | None, ...], int] = {}
        nodes = range(len(sets.nodes))
        for b in self.blocks:
            base = digits(b.egress, sets.n) + 2 * digits(b.ingress, sets.n)
            admitted = b.egress & b.ingress
            # the source each node's path is walked from: the lowest admitted one there,
            # unless it is the destination itself (then its codes are its own)
            firsts = set()
            for here in sets.node_bits:
                mine = admitted & here & self.weights.bits
                if mine:
                    firsts.add((mine & -mine).bit_length() - 1)
            shared: dict[tuple[int, bool], tuple[str | None, ...]] = {}
            made: dict[tuple[str | None, ...], bytes] = {}
            for j in b.targets:
                t = self.targets[j]
                kind = (sets.node_of[t], self.listens[j])
                codes = shared.get(kind) if t not in firsts else None
                if codes is None:
                    codes = tuple(self.node_code(admitted, k, j) for k in nodes)
                    if t not in firsts:
                        shared[kind] = codes
                for i in rows_of.get(t, ()):  # a pod's own cell: its path, no policy
                    patches[(i, j)] = self.path(i, j)
                column = made.get(codes)
                if column is None:
                    value = path_ints.get(codes)
                    if value is None:
                        value = path_ints[codes] = _path_int(codes, sets)
                    col = (base + value).to_bytes(sets.n, "big").translate(_TABLE)
                    column = made[codes] = self._in_row_order(
                        col, identity, pick, plain
                    )
                columns[j] = column
        return _transpose(columns, n_s, patches)

    def _in_row_order(
        self,
        col: bytes,
        identity: bool,
        pick: Callable[[bytes], Any] | None,
        plain: list[int],
    ) -> bytes:
        """A column over every pod as the matrix's column (rows not pods: left 0)."""
        if identity or pick is None:
            return col
        got = pick(col)
        picked = bytes([got]) if len(plain) == 1 else bytes(got)
        if len(plain) == len(self.sources):
            return picked
        out = bytearray(len(self.sources))
        for k, i in enumerate(plain):
            out[i] = picked[k]
        return bytes(out)


def _transpose(
    columns: list[bytes],
    n_s: int,
    patches: dict[tuple[int, int], str],
    height: int = 128,
) -> list[str]:
    """The rows of the matrix given its columns (each `n_s` bytes), with `patches`
    ((row, column) -> code) written in: a band of `height` rows at a time is gathered
    column by column into a small buffer that stays in the CPU's cache, where its rows
    are read with a stride (one stride across every column per row would miss the
    cache at every byte)."""
    views = [memoryview(c) for c in columns]
    by_band: dict[int, list[tuple[int, int, str]]] = {}
    for (i, j), code in patches.items():
        by_band.setdefault(i // height, []).append((i, j, code))
    rows: list[str] = []
    for r0 in range(0, n_s, height):
        h = min(n_s, r0 + height) - r0
        band = bytearray(b"".join([v[r0 : r0 + h] for v in views]))
        for i, j, code in by_band.get(r0 // height, ()):
            band[j * h + i - r0] = ord(code)
        rows.extend([band[r::h].decode("ascii") for r in range(h)])
    return rows


def _path_int(codes: tuple[str | None, ...], sets: Sets) -> int:
    """The path codes of every source (by its node) as 4 * code index per byte (None:
    no admitted pair there, any code will do)."""
    by_node = [4 * _PATH_CODES.index(c or ".") for c in codes]
    return int.from_bytes(bytes(by_node[k] for k in sets.node_of), "big")


# -- building the table ----------------------------------------------------------------------
def _code(
    sim: Simulator, src: str, dst: str, port: int | str | None, proto: Protocol
) -> str:
    from dataplane.trace import Verdict

    trace = sim.probe(src, dst, port, proto, capture=False)
    return CODE[trace.verdict or Verdict.DROPPED]


def _named_ports(pod: Pod) -> tuple[tuple[str, str, int], ...]:
    return tuple((p.name, p.protocol.value, p.port) for p in pod.ports() if p.name)


class _Ports:
    """Whether a rule's `ports` admit the port on a destination of a port class, asked of
    the decision code (`rule_ports_match`) once per (rule, class)."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.reps: dict[PortClass, Pod] = {}
        self.named: dict[object, tuple[tuple[str, str, int], ...]] = {}
        self._match: dict[tuple[int, PortClass], bool] = {}
        self._by_class: dict[PortClass, dict[int, bool]] = {}

    def of(self, pod: Pod, dport: int | None) -> PortClass:
        named = self.named.get(pod.containers)
        if named is None:  # pods of one template share their containers
            named = self.named[pod.containers] = _named_ports(pod)
        pc = (dport, named)
        self.reps.setdefault(pc, pod)
        return pc

    def matcher(self, pc: PortClass) -> Callable[[AdminRule], bool]:
        """`match(rule, pc)` for one port class, remembered by rule (hashing `pc`, a
        nest of tuples, once)."""
        found: dict[int, bool] = self._by_class.setdefault(pc, {})
        dport, rep = pc[0], self.reps[pc]

        def match(rule: AdminRule) -> bool:
            got = found.get(id(rule))
            if got is None:
                got = found[id(rule)] = rule_ports_match(
                    rule, dport, self.protocol, rep
                )
            return got

        return match

    def match(self, rule: PolicyRule | AdminRule, pc: PortClass) -> bool:
        key = (id(rule), pc)
        found = self._match.get(key)
        if found is None:
            found = self._match[key] = rule_ports_match(
                rule, pc[0], self.protocol, self.reps[pc]
            )
        return found


def table(
    sim: Simulator,
    sources: list[str],
    targets: list[str],
    port: int | str | None,
    protocol: Protocol,
    ports: list[int | None],
) -> Table:
    """The matrix of `sources` x `targets` on `protocol`/`port` as blocks (see the module);
    `ports[j]` is the port at `targets[j]` (`dataplane.matrix.target_ports`: None where a
    named port is not one of that pod's, a column of `NO_PORT` then)."""
    with no_gc():
        return _table(sim, sources, targets, port, protocol, ports)


def _table(
    sim: Simulator,
    sources: list[str],
    targets: list[str],
    port: int | str | None,
    protocol: Protocol,
    ports: list[int | None],
) -> Table:
    cluster = sim.cluster
    fast = not sim.user_hooks
    sets = Sets.of(cluster)
    resolved: dict[str, Endpoint] = {}

    def plain(text: str) -> Pod | None:
        """The pod `text` designates when it is a plain pod (not hostNetwork)."""
        if not fast:
            return None
        ep = resolved.get(text)
        if ep is None:
            ep = resolved[text] = sim.resolve(text)
        pod = ep.pod
        if ep.kind is EndpointKind.POD and pod is not None and not pod.host_network:
            return pod
        return None

    icmp = protocol is Protocol.ICMP
    fixed = {j: NO_PORT for j, p in enumerate(ports) if p is None and not icmp}
    spods = [plain(s) for s in sources]
    tpods = [None if j in fixed else plain(t) for j, t in enumerate(targets)]
    s_at = [sets.at[p.key] if p is not None else -1 for p in spods]
    t_at = [sets.at[p.key] if p is not None else -1 for p in tpods]
    dports: list[int | None] = []
    listens: list[bool] = []
    for j, pod in enumerate(tpods):
        dport = None if icmp else ports[j]
        dports.append(dport)
        listens.append(
            pod is not None
            and (
                protocol is Protocol.ICMP
                or (dport is not None and pod.container_of(dport, protocol) is not None)
            )
        )
    columns = [j for j, t in enumerate(t_at) if t >= 0]
    blocks: list[Block] = []
    if columns and any(s >= 0 for s in s_at):
        blocks = column_blocks(sets, t_at, columns, protocol, dports)

    def walk(i: int, j: int) -> str:
        return _code(sim, sources[i], targets[j], port, protocol)

    odd_rows = [i for i, s in enumerate(s_at) if s < 0]
    odd_columns = [j for j, t in enumerate(t_at) if t < 0 and j not in fixed]
    walked = {
        (i, j): walk(i, j)
        for i in odd_rows
        for j in range(len(targets))
        if j not in fixed
    }
    walked |= {
        (i, j): walk(i, j) for j in odd_columns for i, s in enumerate(s_at) if s >= 0
    }
    return Table(sets, s_at, t_at, listens, blocks, walked, walk, fixed)


def column_blocks(
    sets: Sets,
    t_at: list[int],
    columns: list[int],
    protocol: Protocol,
    dports: list[int | None] | int | None,
) -> list[Block]:
    """The `columns` (pods at `t_at`) grouped by their egress and ingress columns
    (bitsets over every pod as a source) on `protocol`, to each column's port (`dports`
    per column, or one for all)."""
    ports = _Ports(protocol)
    pclass: list[PortClass | None] = [None] * len(t_at)
    for j in columns:
        dport = dports[j] if isinstance(dports, list) else dports
        pclass[j] = ports.of(sets.pods[t_at[j]], dport)
    every = sets.all
    open_egress, users, ingress_of = sets.isolation()
    wanted = bits_of([t_at[j] for j in columns], sets.n)
    tier_sets = sets.tier_sets(wanted)
    tiers_in, tiers_ids, tiers_out = (
        tier_sets.ingress,
        tier_sets.ingress_ids,
        tier_sets.egress,
    )
    peer_sets, holding, always = sets.holding(wanted)
    # Egress columns: per (peer sets holding the destination, its port class).
    granted: dict[tuple[int, PortClass], int] = {}

    def admits(k: int, pc: PortClass) -> int:
        """The sources that a rule using peer set k admits toward port class pc."""
        found = granted.get((k, pc))
        if found is None:
            found = 0
            for chosen, rule in users[peer_sets[k]]:
                if ports.match(rule, pc):
                    found |= chosen
            granted[(k, pc)] = found
        return found

    # Each distinct column once (by value), each column key once.
    values: dict[int, int] = {}

    def intern(bits: int) -> int:
        return values.setdefault(bits, len(values))

    by_egress: dict[tuple[object, ...], int] = {}
    by_ingress: dict[tuple[object, ...], int] = {}
    blocks: dict[tuple[int, int], Block] = {}
    for j in columns:
        t, pc = t_at[j], pclass[j]
        assert pc is not None
        ekey = (tuple(holding[t]), *(out[t] for out in tiers_out.holding), pc)
        eid = by_egress.get(ekey)
        if eid is None:
            ecol = open_egress
            for k in (*always, *holding[t]):
                ecol |= admits(k, pc)
            if tiers_out.rules[0] or tiers_out.rules[1]:
                ecol = tiers_out.column(t, ports.matcher(pc), ecol, open_egress)
            eid = by_egress[ekey] = intern(ecol)
        isolating = ingress_of[t]
        ikey = (
            tuple(id(p) for p in isolating),
            *(ids[t] for ids in tiers_ids),
            pc,
        )
        iid = by_ingress.get(ikey)
        if iid is None:
            icol = every if not isolating else 0
            for pol in isolating:
                for rule in pol.ingress:
                    if ports.match(rule, pc):
                        icol |= sets.rule(pol.namespace, rule)
            if tiers_in[0][t] or tiers_in[1][t]:
                (a_allowed, a_left), (b_allowed, b_left) = (
                    sets.ingress_walk(k, sub[t], tiers_ids[k][t], ports, pc)
                    for k, sub in enumerate(tiers_in)
                )
                later = icol if isolating else b_allowed | b_left
                icol = a_allowed | (a_left & later)
            iid = by_ingress[ikey] = intern(icol)
        block = blocks.get((eid, iid))
        if block is None:
            block = blocks[(eid, iid)] = Block(eid, iid)
        block.targets.append(j)
    found = list(values)
    for block in blocks.values():
        block.egress, block.ingress = found[block.egress], found[block.ingress]
    return list(blocks.values())


def _tier_walk(
    rules: Iterable[tuple[int, AdminRule]],
    match: Callable[[AdminRule], bool],
    every: int,
) -> tuple[int, int]:
    """One tier's rules in evaluation order, on whole sets: each (bits, rule) decides for
    the members of `bits` that no earlier rule decided (first match wins) when its ports
    admit port class `pc`.  Returns (allowed, left to the next tier: passed or
    unmatched); the rest is denied."""
    undecided, allowed, passed = every, 0, 0
    for bits, rule in rules:
        if not undecided:
            break
        hit = undecided & bits
        if not hit or not match(rule):
            continue
        if rule.action is AdminAction.ALLOW:
            allowed |= hit
        elif rule.action is AdminAction.PASS:
            passed |= hit
        undecided &= ~hit
    return allowed, undecided | passed


class _EgressTiers:
    """The egress rules of the Admin and Baseline tiers, in evaluation order, each with
    its policy's subject (the sources it judges) and the destinations its peers hold."""

    def __init__(self, sets: Sets, wanted: int) -> None:
        self.sets = sets
        self.rules: list[list[tuple[int, AdminRule, int]]] = []
        self.always: list[list[int]] = []  # rules holding every wanted destination
        self.holding: list[list[tuple[int, ...]]] = []  # per destination: its rules
        self.ordered: dict[
            tuple[int, tuple[int, ...]], list[tuple[int, AdminRule]]
        ] = {}
        for tier in Tier:
            rules = [
                (sets.admin_peer(pol.subject), rule, sets.admin_rule(rule))
                for pol in sets.tiers[tier]
                for rule in pol.egress
            ]
            always: list[int] = []
            holding: list[list[int]] = [[] for _ in range(sets.n)]
            for k, (_, _, peers) in enumerate(rules):
                if peers & wanted == wanted:
                    always.append(k)
                else:
                    for u in members(peers & wanted):
                        holding[u].append(k)
            self.rules.append(rules)
            self.always.append(always)
            self.holding.append([tuple(h) for h in holding])

    def column(
        self,
        t: int,
        match: Callable[[AdminRule], bool],
        np_column: int,
        open_egress: int,
    ) -> int:
        """The sources whose egress admits destination t (`match`: whether a rule's ports
        admit t's port class), given the
        NetworkPolicy column (`open_egress`: the sources no NetworkPolicy isolates)."""
        walks = []
        for k, holding in enumerate(self.holding):
            ordered = self.ordered.get((k, holding[t]))
            if ordered is None:  # destinations holding alike share the list
                rules = self.rules[k]
                ordered = self.ordered[(k, holding[t])] = [
                    (rules[i][0], rules[i][1])
                    for i in sorted((*self.always[k], *holding[t]))
                ]
            walks.append(_tier_walk(ordered, match, self.sets.all))
        (allowed, left), (b_allowed, b_left) = walks
        later = (np_column & ~open_egress) | (open_egress & (b_allowed | b_left))
        return allowed | (left & later)
