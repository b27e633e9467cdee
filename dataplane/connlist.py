"""The whole cluster's connectivity as a list: who may connect to whom, on which ports.

`connlist(sim)` folds every protocol and port into ranges for every pair of workloads
(the pods of one Deployment, StatefulSet, ... merged; or pods one by one with
`by="pod"`), and for the address ranges outside the cluster that the ipBlocks of the
policies carve.  It is NetworkPolicy's answer only, as in the connectivity lists of
netpol-analyzer: whether something listens on a port, and the path, are the walk's.

Between pods the answer is `dataplane.netpol_ports.port_table` (set algebra over whole
sets of pods, no decision per pair).  For an external range, a representative address of
the range is matched against each rule's peers by the decision code's own peer test
(`PolicyIndex.peer_miss`), and the admitted ports are the union of the `ports` of the
rules that match (a named port never matches an address outside the cluster, as it is
resolved on a pod); a pod that no policy isolates for that direction admits everything.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache
from ipaddress import (
    IPv4Address,
    IPv4Network,
    collapse_addresses,
    summarize_address_range,
)
from typing import TYPE_CHECKING, Any, NamedTuple

from dataplane.netpol import AdminStep, Direction, Side, judge, prepare
from dataplane.netpol_index import Party, index_of
from dataplane.netpol_matrix import Sets, members
from dataplane.netpol_ports import (
    EVERYTHING,
    LAST_PORT,
    PORTED,
    Ports,
    intervals,
    piece_ports,
    port_table,
)
from topology.model import AdminRule, Cluster, Pod, PolicyRule, Protocol, Tier
from topology.nogc import no_gc

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.sim import Simulator

ALL_SPACE = IPv4Network("0.0.0.0/0")


class Conn(NamedTuple):
    """`src` may open connections to `dst` on `ports` (a named tuple: a cluster's list
    holds hundreds of thousands)."""

    src: str  # `NS/NAME[Kind]`, or an address range `A.B.C.D-E.F.G.H`
    dst: str
    ports: Ports

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "ports": ports_dict(self.ports)}


def workload_name(pod: Pod, by: str) -> str:
    """`default/httpd[Deployment]` for a workload's pod, `default/pod1[Pod]` else.

    >>> from ipaddress import IPv4Address
    >>> p = Pod("default", "web-0", "node-1", IPv4Address("10.0.1.2"), owner="Deployment/web")
    >>> workload_name(p, "workload"), workload_name(p, "pod")
    ('default/web[Deployment]', 'default/web-0[Pod]')
    """
    if by == "workload" and pod.owner:
        kind, _, name = pod.owner.partition("/")
        return f"{pod.namespace}/{name}[{kind}]"
    return f"{pod.key}[Pod]"


@lru_cache(maxsize=1 << 16)  # the same few port sets meet again and again
def merge(a: Ports, b: Ports) -> Ports:
    """The union of two port sets, ranges merged, protocols in a fixed order.

    >>> merge(((Protocol.TCP, ((80, 80),)),), ((Protocol.TCP, ((81, 90),)),))
    ((<Protocol.TCP: 'TCP'>, ((80, 90),)),)
    """
    if not a or a == b:
        return b
    if not b:
        return a
    ranges: dict[Protocol, list[tuple[int, int]]] = {}
    for proto, rs in (*a, *b):
        ranges.setdefault(proto, []).extend(rs)
    out = []
    for proto in (*PORTED, Protocol.ICMP):
        spans = sorted(ranges.get(proto, []))
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        if merged:
            out.append((proto, tuple(merged)))
    return tuple(out)


def format_ports(ports: Ports) -> str:
    """`All Connections`, `TCP 80,8080-8090; UDP 53`, `ICMP` (netpol-analyzer's words for
    everything).

    >>> format_ports(((Protocol.TCP, ((80, 80), (8000, 8080))), (Protocol.ICMP, ((0, 0),))))
    'TCP 80,8000-8080; ICMP'
    """
    if merge(ports, ()) == EVERYTHING:
        return "All Connections"
    parts = []
    for proto, ranges in ports:
        if proto is Protocol.ICMP:
            parts.append("ICMP")
        else:
            parts.append(
                f"{proto.value} "
                + ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)
            )
    return "; ".join(parts)


def ports_dict(ports: Ports) -> dict[str, list[str]]:
    return {
        proto.value: ([] if proto is Protocol.ICMP else
                      [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges])
        for proto, ranges in ports
    }  # fmt: skip


def rule_ports(rule: PolicyRule | AdminRule, pod: Pod | None) -> Ports:
    """The ports a rule's `ports` admit; named ports resolved on `pod` (None: on an
    address outside the cluster, where no name resolves)."""
    if not rule.ports:
        return EVERYTHING
    out: Ports = ()
    for item in rule.ports:
        if item.protocol is Protocol.ICMP:
            continue
        if item.port is None:
            piece: Ports = ((item.protocol, ((1, LAST_PORT),)),)
        elif isinstance(item.port, str):
            number = (
                pod.named_port(item.port, item.protocol) if pod is not None else None
            )
            if number is None:
                continue
            piece = ((item.protocol, ((number, number),)),)
        else:
            last = item.end_port if item.end_port is not None else item.port
            piece = ((item.protocol, ((item.port, last),)),)
        out = merge(out, piece)
    return out


def external_ranges(sim: Simulator) -> list[tuple[str, list[IPv4Network]]]:
    """The address ranges outside the pods' and Services' ranges that the ipBlocks of the
    policies (and the `networks` and `domainNames` peers of admin policies) carve, each as (`A-B` text,
    its networks)."""
    cfg = sim.cluster.config
    cuts = {0, 1 << 32}
    for pol in sim.cluster.policies.values():
        for rule in (*pol.ingress, *pol.egress):
            for peer in rule.peers:
                if peer.ip_block is None:
                    continue
                for net in (peer.ip_block.cidr, *peer.ip_block.except_):
                    cuts |= {int(net.network_address), int(net.broadcast_address) + 1}
    index = index_of(sim.cluster)
    for admin in sim.cluster.admin_policies.values():  # `networks`, `domainNames` peers
        for p in (p for r in admin.egress for p in r.peers if p.by_address):
            for net in index.address_networks(p):
                cuts |= {int(net.network_address), int(net.broadcast_address) + 1}
    inside = [n.pod_cidr for n in cfg.nodes] + [cfg.service_cidr]
    for net in inside:
        cuts |= {int(net.network_address), int(net.broadcast_address) + 1}
    edges = sorted(cuts)
    out = []
    for lo, hi in itertools.pairwise(edges):
        first, last = IPv4Address(lo), IPv4Address(hi - 1)
        if any(first in net for net in inside):
            continue
        nets = list(summarize_address_range(first, last))
        out.append((f"{first}-{last}", nets))
    # neighbouring ranges that every rule treats alike are joined below, by answers
    return out


def connlist(
    sim: Simulator, by: str = "workload", externals: bool = True
) -> list[Conn]:
    """Every allowed connection of the cluster of `sim`, sorted by source then
    destination (see the module docstring)."""
    with no_gc():  # hundreds of thousands of tuples of strings, none in a cycle
        found = connections(sim, by, externals)
        return [Conn(s, d, p) for (s, d), p in sorted(found.items(), key=_by_key)]


def _by_key(item: tuple[tuple[str, str], Ports]) -> tuple[str, str]:
    return item[0]


def connections(
    sim: Simulator, by: str = "workload", externals: bool = True
) -> dict[tuple[str, str], Ports]:
    """The allowed connections as (source, destination) -> ports, unsorted."""
    cluster = sim.cluster
    pods = sorted(
        (p for p in cluster.pods.values() if not p.host_network), key=lambda p: p.key
    )
    names = [workload_name(p, by) for p in pods]
    found: dict[tuple[str, str], Ports] = {}

    def add(src: str, dst: str, ports: Ports) -> None:
        if not ports:
            return
        key = (src, dst)
        had = found.get(key)
        if had is None:
            found[key] = ports
        elif had is not ports and had != ports:  # replicas in two blocks: the union
            found[key] = merge(had, ports)

    if pods:
        keys = [p.key for p in pods]
        table = port_table(sim, keys, keys)
        row_of = {pos: i for i, pos in enumerate(table.sources)}
        setdefault = found.setdefault
        for block in table.blocks:
            if not block.ports:
                continue
            rows = [row_of[u] for u in members(block.sources) if u in row_of]
            by_src: dict[str, set[int]] = {}
            for i in rows:
                by_src.setdefault(names[i], set()).add(i)
            by_dst: dict[str, set[int]] = {}
            for j in block.targets:
                by_dst.setdefault(names[j], set()).add(j)
            ports = block.ports
            for sn, si in by_src.items():
                for dn, dj in by_dst.items():
                    # a pod's traffic to itself is not a connection of the list
                    if sn == dn and len(si | dj) == 1:
                        continue
                    key = (sn, dn)  # `add`, inlined: the loop runs a million times
                    had = setdefault(key, ports)
                    if had is not ports and had != ports:
                        found[key] = merge(had, ports)
    if externals:
        index = index_of(cluster)
        ranges = external_ranges(sim)
        answers: dict[str, dict[str, tuple[Ports, Ports]]] = {}
        parties = []
        for _, nets in ranges:
            ip = str(nets[0].network_address)
            parties.append(Party(ip, int(IPv4Address(ip))))
        tiers_out = _tier_egress(index, cluster, pods, parties)
        for r, (text, _) in enumerate(ranges):
            party = parties[r]
            for pod, name in zip(pods, names, strict=True):
                held = tiers_out.get(pod.key)
                out = (
                    held[r]
                    if held is not None
                    else _admitted(index, pod, party, Direction.EGRESS)
                )
                inn = _admitted(index, pod, party, Direction.INGRESS)
                prev = answers.setdefault(text, {}).get(name)
                if prev is not None:
                    out, inn = merge(prev[0], out), merge(prev[1], inn)
                answers[text][name] = (out, inn)
        joined = _join(ranges, answers)
        for text, per_pod in joined:
            for name, (out, inn) in per_pod.items():
                add(name, text, out)
                add(text, name, inn)
    return found


def _tier_egress(
    index: Any, cluster: Cluster, pods: list[Pod], parties: list[Party]
) -> dict[str, list[Ports]]:
    """For each pod that an admin policy of either tier holds as an egress subject: what
    its egress admits toward each of `parties` (addresses outside the cluster), from the
    decision itself (`dataplane.netpol.prepare`, `judge`) on one port of each piece of
    the port space that no policy's ports cut (`netpol_ports.intervals`).  Pods with the
    same rules that can match such an address share the answer (`_outward`).  (Ingress from such an address needs nothing more
    than `_admitted`: the tiers' ingress peers, namespaces and pods, match pods only.)"""
    held = [
        p for p in pods if any(index.subjects(p, t, Direction.EGRESS) for t in Tier)
    ]
    if not held:
        return {}
    # Only the rules that can match an outside address cut the port space here.
    outward = [
        r
        for t in Tier
        for pol in index.tiers[t]
        for r in pol.egress
        if any(p.by_address for p in r.peers)
    ]
    nps = [r for pol in cluster.policies.values() for r in pol.egress]
    pieces = intervals(Sets.of(cluster), [*outward, *nps])
    out: dict[str, list[Ports]] = {}
    shared: dict[tuple[object, ...], list[Ports]] = {}
    for pod in held:
        key = _outward(index, pod)
        if not key[0] and not key[1]:  # no tier's rule can match: NetworkPolicy's
            continue
        answer = shared.get(key)
        if answer is None:
            admitted: list[list[int]] = [[] for _ in parties]
            for k, (proto, lo, _) in enumerate(pieces):
                dport = None if proto is Protocol.ICMP else lo
                side = _outward_side(
                    prepare(index, Direction.EGRESS, pod, dport, proto)
                )
                for r, party in enumerate(parties):
                    if judge(index, side, party).allowed:
                        admitted[r].append(k)
            answer = shared[key] = [piece_ports(pieces, ks) for ks in admitted]
        out[pod.key] = answer
    return out


def _outward_side(side: Side) -> Side:
    """The side with only the tiers' rules that have a `networks` or `domainNames`
    peer: the others
    never match an address outside the cluster, so the decision is the same."""

    def kept(steps: tuple[AdminStep, ...]) -> tuple[AdminStep, ...]:
        return tuple(
            s
            for s in steps
            if s[2] is not None and any(p.by_address for p in s[2].peers)
        )

    return replace(side, admin=kept(side.admin), baseline=kept(side.baseline))


def _outward(index: Any, pod: Pod) -> tuple[object, ...]:
    """What the egress decision of `pod` toward an address outside the cluster depends
    on: the tiers' egress rules with a `networks` or `domainNames` peer, in order (namespaces, pods and
    nodes peers never match such an address, so the other rules never decide), whether
    a NetworkPolicy isolates it, and the isolating rules without peers or with an
    ipBlock; rules compared by value (records are frozen), so that namespaces with
    alike policies share one answer."""
    tiers = tuple(
        tuple(
            r
            for pol in index.subjects(pod, tier, Direction.EGRESS)
            for r in pol.egress
            if any(p.by_address for p in r.peers)
        )
        for tier in Tier
    )
    isolating = index.isolating(pod, Direction.EGRESS)
    rules = tuple(
        r
        for pol in isolating
        for r in pol.egress
        if not r.peers or any(p.ip_block is not None for p in r.peers)
    )
    return (*tiers, bool(isolating), rules)


def _admitted(index: Any, pod: Pod, party: Party, direction: Direction) -> Ports:
    """What the NetworkPolicies isolating `pod` for `direction` admit with address
    `party` (a pod the tiers hold as an egress subject: `_tier_egress`)."""
    isolating = index.isolating(pod, direction)
    if not isolating:
        return EVERYTHING
    out: Ports = ()
    ingress = direction is Direction.INGRESS
    for pol in isolating:
        for rule in pol.ingress if ingress else pol.egress:
            if rule.peers and all(
                index.peer_miss(pol.namespace, p, party) is not None for p in rule.peers
            ):
                continue
            out = merge(out, rule_ports(rule, pod if ingress else None))
    return out


def _join(
    ranges: list[tuple[str, list[IPv4Network]]],
    answers: dict[str, dict[str, tuple[Ports, Ports]]],
) -> list[tuple[str, dict[str, tuple[Ports, Ports]]]]:
    """Ranges that every pod answers alike, joined into one (`A-B,C-D`)."""
    groups: dict[tuple[object, ...], list[str]] = {}
    for text, _ in ranges:
        key = tuple(sorted(answers.get(text, {}).items()))
        groups.setdefault(key, []).append(text)
    out = []
    for texts in groups.values():
        nets = collapse_addresses(n for t in texts for n in _networks(t))
        label = ",".join(_span_text(list(nets)))
        out.append((label, answers.get(texts[0], {})))
    return out


def _networks(text: str) -> Iterable[IPv4Network]:
    first, last = text.split("-")
    return summarize_address_range(IPv4Address(first), IPv4Address(last))


def _span_text(nets: list[IPv4Network]) -> list[str]:
    """Networks as `first-last` spans, neighbours joined."""
    spans: list[list[int]] = []
    for n in sorted(nets):
        lo, hi = int(n.network_address), int(n.broadcast_address)
        if spans and lo == spans[-1][1] + 1:
            spans[-1][1] = hi
        else:
            spans.append([lo, hi])
    return [f"{IPv4Address(lo)}-{IPv4Address(hi)}" for lo, hi in spans]


__all__ = [
    "Conn",
    "connlist",
    "external_ranges",
    "format_ports",
    "merge",
    "rule_ports",
    "workload_name",
]
