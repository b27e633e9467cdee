"""What is compared besides the verdict (issue 13): the server that took the request,
the endpoint a Service chose, the source address and TTL the server saw, and the source
and TTL of what answered the client.

The simulator's side comes from its trace (`report.sim_seen`); the kernel's from the
listeners (`probe.Listeners.seen`: each server's peer address and, for UDP, the TTL on
arrival via IP_RECVTTL) and from the client's socket (`KernelVerdict.answer_from`,
`answer_ttl`: the reply's source or the ICMP error's sender, with its TTL).  A part is
compared only where both sides can tell: a TCP client learns no TTL, a silent probe no
answer, a server behind a port-changing SNAT is not found by its peer port (behind
docker-proxy, whose own connection has a port of its own, it is the record at the
simulator's server that no client of the batch made).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from dataplane.docker_iptables import through_proxy
from dataplane.fabric import Fabric
from dataplane.kernel.capture import Crossing, Where, sim_devices
from dataplane.kernel.probe import KernelVerdict
from dataplane.kernel.report import Part, sim_seen
from dataplane.sockets import PROTOCOL_OF
from dataplane.trace import Trace
from topology.model import Protocol

Records = Mapping[tuple[str, Protocol, int, int, str], int]


def parts(
    trace: Trace | None,
    client: tuple[str, str],
    kernel: KernelVerdict,
    records: Records,
    fabric: Fabric,
    fabric_id_of: Mapping[str, str],
    devices: set[Crossing] | None = None,
    claimed: AbstractSet[int] = frozenset(),
) -> list[Part]:
    """The parts of one probe both sides saw (`fabric_id_of`: kernel netns -> model;
    `devices`: where the kernel's captures saw the probe's first packet, when marked;
    `claimed`: the source ports of the batch's clients)."""
    if trace is None or kernel.verdict is None:
        return []
    sim = sim_seen(trace, *client)
    out: list[Part] = []
    if devices is not None:
        names = {i: f"{ns.node} {ns.label}" for i, ns in fabric.netns.items()}
        out += devices_parts(sim_devices(trace), devices, names)

    def where_of(kernel_ns: str) -> tuple[str, str]:
        ns = fabric.netns[fabric_id_of[kernel_ns]]
        return ns.node, ns.label

    proto = PROTOCOL_OF.get(sim.server_proto)
    if sim.server_node and proto is not None and kernel.sport:
        found = [
            (ns, src, ttl)
            for (ns, p, port, peer, src), ttl in records.items()
            if p is proto and port == sim.server_dport and peer == kernel.sport
        ]
        if not found and through_proxy(trace):
            # docker-proxy's own connection has a port of its own: the record at the
            # simulator's server and port that no client of the batch made (a probe
            # carried by docker-proxy runs in a batch without another one to the same
            # server and port: verify's `_Item.key`)
            found = [
                (ns, src, ttl)
                for (ns, p, port, peer, src), ttl in records.items()
                if p is proto
                and port == sim.server_dport
                and peer not in claimed
                and where_of(ns) == (sim.server_node, sim.server_netns)
            ]
        # two clients of the batch may draw the same ephemeral port: then the record
        # at the simulator's server, from its source, is this probe's, if one is
        for keep in (
            lambda ns, src: where_of(ns) == (sim.server_node, sim.server_netns),
            lambda ns, src: src == sim.server_src,
        ):
            if len(found) > 1:
                found = [f for f in found if keep(f[0], f[1])]
        if len(found) == 1:
            kernel_ns, src, ttl = found[0]
            where = fabric.netns[fabric_id_of[kernel_ns]]
            out.append(
                Part(
                    "server",
                    f"{sim.server_node} {sim.server_netns}",
                    f"{where.node} {where.label}",
                )
            )
            if trace.endpoint is not None and where.pod is not None:
                out.append(Part("endpoint", trace.endpoint, where.pod.key))
            out.append(Part("server saw", sim.server_src, src))
            if ttl:
                out.append(Part("server ttl", str(sim.server_ttl), str(ttl)))
    if sim.answer_from and kernel.answer_from:
        out.append(Part("answer from", sim.answer_from, kernel.answer_from))
        if kernel.answer_ttl:
            out.append(Part("answer ttl", str(sim.answer_ttl), str(kernel.answer_ttl)))
    return out


def devices_parts(
    sim: set[Crossing], kernel: set[Crossing], names: Mapping[str, str]
) -> list[Part]:
    """The devices crossed (how many, and those only one side saw) and the TTL on
    arrival at the devices both saw (`names`: namespace id -> how the table shows it).

    >>> one = {("node-1", "eth0", 64)}
    >>> [p.agrees for p in devices_parts(one, one, {})]
    [True, True]
    >>> both = {("node-1", "eth0", 64), ("node-1", "cbr0", 63)}
    >>> d, t = devices_parts(both, {("node-1", "eth0", 63)}, {"node-1": "node-1 host"})
    >>> d.sim, d.kernel
    ('2 devices, only here: node-1 host cbr0', '1 device')
    >>> t.sim, t.kernel
    ('1 device, node-1 host eth0: 64', '1 device, node-1 host eth0: 63')
    """

    def ttls(seen: set[Crossing]) -> dict[Where, set[int]]:
        out: dict[Where, set[int]] = {}
        for ns, dev, ttl in seen:
            out.setdefault((ns, dev), set()).add(ttl)
        return out

    def show(where: Where) -> str:
        return f"{names.get(where[0], where[0])} {where[1]}"

    def count(n: int) -> str:
        return f"{n} device{'s' if n != 1 else ''}"

    mine, theirs = ttls(sim), ttls(kernel)
    parts = []
    for a, b in ((mine, theirs), (theirs, mine)):
        only = sorted(set(a) - set(b))
        text = count(len(a))
        if only:
            text += ", only here: " + ", ".join(show(w) for w in only)
        parts.append(text)
    common = sorted(set(mine) & set(theirs))
    differ = [w for w in common if mine[w] != theirs[w]]
    ttl_texts = []
    for a in (mine, theirs):
        text = count(len(common))
        if differ:
            text += ", " + ", ".join(
                f"{show(w)}: {'/'.join(map(str, sorted(a[w])))}" for w in differ
            )
        ttl_texts.append(text)
    return [
        Part("devices", parts[0], parts[1]),
        Part("ttl on arrival", ttl_texts[0], ttl_texts[1]),
    ]
