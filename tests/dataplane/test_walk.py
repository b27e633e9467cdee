"""The walk against the reference walks of docs/model.md (what Linux did) in every mode."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane import ACCEPT, Drop
from dataplane.netfilter import (
    PRIORITY_DSTNAT,
    PRIORITY_FILTER,
    Hook,
    HookContext,
    HookPoint,
    Netfilter,
)
from dataplane.packet import ICMP, IP, Packet
from dataplane.sim import Simulator
from dataplane.trace import Trace, Verdict
from tests.dataplane.builders import WEB, tiny_cluster
from topology.model import Cluster, NetworkMode, Pod, Protocol

MODES = list(NetworkMode)
ROUTERS = {NetworkMode.VXLAN: 2, NetworkMode.HOST_GW: 2, NetworkMode.ROUTED: 3}


@pytest.fixture(params=MODES, ids=[m.value for m in MODES])
def mode(request: pytest.FixtureRequest) -> NetworkMode:
    mode: NetworkMode = request.param
    return mode


def ping(
    sim: Simulator, dst: str, ttl: int = 64, size: int | None = None, df: bool = False
) -> Trace:
    return sim.probe(
        "default/a", dst, protocol=Protocol.ICMP, ttl=ttl, size=size, df=df
    )


def icmp_source(trace: Trace) -> str:
    """The source of the ICMP error that reached the client."""
    last = trace.hops[-1]
    assert last.event == "deliver"
    assert last.packet is not None
    assert last.packet.ip is not None
    return last.packet.ip.src


def test_same_node_ttl_1_is_bridged_and_delivered(mode: NetworkMode) -> None:
    t = ping(Simulator(tiny_cluster(mode)), "10.0.1.4", ttl=1)
    assert t.verdict is Verdict.DELIVERED
    assert not any(h.event == "forward" for h in t.hops)


@pytest.mark.parametrize(
    ("mode", "ttl", "source"),
    [
        (NetworkMode.VXLAN, 1, "10.0.1.1"),
        (NetworkMode.VXLAN, 2, "10.0.2.0"),
        (NetworkMode.HOST_GW, 1, "10.0.1.1"),
        (NetworkMode.HOST_GW, 2, "10.100.0.3"),
        (NetworkMode.ROUTED, 1, "10.0.1.1"),
        (NetworkMode.ROUTED, 2, "10.100.0.1"),
        (NetworkMode.ROUTED, 3, "10.100.0.3"),
    ],
    ids=lambda v: str(v.value if isinstance(v, NetworkMode) else v),
)
def test_ttl_exceeded_comes_from_the_router_on_the_way_back(
    mode: NetworkMode, ttl: int, source: str
) -> None:
    t = ping(Simulator(tiny_cluster(mode)), "10.0.2.2", ttl=ttl)
    assert t.verdict is Verdict.TTL_EXCEEDED
    assert icmp_source(t) == source


def test_exactly_as_much_ttl_as_routers(mode: NetworkMode) -> None:
    sim = Simulator(tiny_cluster(mode))
    n = ROUTERS[mode]
    assert ping(sim, "10.0.2.2", ttl=n).verdict is Verdict.TTL_EXCEEDED
    assert ping(sim, "10.0.2.2", ttl=n + 1).verdict is Verdict.DELIVERED


def test_df_too_big_is_refused_in_the_pod_itself_in_vxlan() -> None:
    sim = Simulator(tiny_cluster())
    t = ping(sim, "10.0.2.2", size=1460, df=True)
    assert t.verdict is Verdict.TOO_BIG
    assert [h.netns for h in t.hops] == ["pod default/a", "pod default/a"]
    assert "message too long, mtu=1450" in t.hops[-1].detail
    assert ping(sim, "10.0.2.2", size=1440, df=True).verdict is Verdict.DELIVERED


def test_a_router_answers_frag_needed_for_a_df_packet_too_big_for_its_link() -> None:
    sim = Simulator(tiny_cluster(NetworkMode.HOST_GW))
    # The pod's MTU is 1500; make node-1's uplink smaller than the pod's packet.
    sim.fabric.netns["node-1"].interfaces["eth0"].mtu = 1400
    t = ping(sim, "10.0.2.2", size=1480, df=True)
    assert t.verdict is Verdict.TOO_BIG
    err = t.hops[-1].packet
    assert err is not None
    assert isinstance(err.l4, ICMP)
    assert (err.l4.type, err.l4.code, err.l4.mtu) == (3, 4, 1400)


def test_fragments_are_reassembled_by_the_receiver(mode: NetworkMode) -> None:
    t = Simulator(tiny_cluster(mode)).probe(
        "default/a", "10.0.2.2", 53, "UDP", size=3000
    )
    assert t.verdict is Verdict.DELIVERED
    assert any(h.event == "fragment" for h in t.hops)
    assert any(
        h.event == "defrag" and h.netns == "pod default/c" for h in t.hops
    ) or any(h.event == "defrag" for h in t.hops)


def test_no_pod_at_the_address_is_host_unreachable_from_the_last_router() -> None:
    t = ping(Simulator(tiny_cluster()), "10.0.2.99")
    assert t.verdict is Verdict.UNREACHABLE
    assert icmp_source(t) == "10.0.2.0"
    assert any("neighbour FAILED" in h.detail and h.node == "node-2" for h in t.hops)


def test_the_vxlan_frame_on_the_underlay_is_148_bytes_for_an_84_byte_ping() -> None:
    t = ping(Simulator(tiny_cluster()), "10.0.2.2")
    frames = [
        h.packet
        for h in t.hops
        if h.node == "node-2" and h.device == "eth0" and h.event == "recv"
    ]
    echo = [
        p
        for p in frames
        if p is not None
        and p.tunnel is not None
        and p.inner is not None
        and isinstance(p.inner.l4, ICMP)
        and p.inner.l4.type == 8
    ]
    assert len(echo) == 1
    outer = echo[0]
    assert outer.frame_len() == 148
    assert outer.ip is not None
    assert (outer.ip.src, outer.ip.dst, outer.ip.ttl) == (
        "10.100.0.2",
        "10.100.0.3",
        64,
    )
    assert outer.dport == 8472


@pytest.mark.parametrize(
    ("port", "protocol", "verdict"),
    [
        (80, "TCP", Verdict.DELIVERED),
        (81, "TCP", Verdict.REFUSED),
        (53, "UDP", Verdict.DELIVERED),
        (54, "UDP", Verdict.REFUSED),
        (80, "SCTP", Verdict.DELIVERED),
        (81, "SCTP", Verdict.REFUSED),
    ],
    ids=lambda v: str(v),
)
def test_sockets_answer(
    mode: NetworkMode, port: int, protocol: str, verdict: Verdict
) -> None:
    assert (
        Simulator(tiny_cluster(mode))
        .probe("default/a", "10.0.2.2", port, protocol)
        .verdict
        is verdict
    )


def test_external_hosts_see_the_node_address() -> None:
    t = Simulator(tiny_cluster()).probe("default/a", "10.0.0.5", 80)
    assert t.verdict is Verdict.DELIVERED
    arrived = [h for h in t.hops if h.netns == "external web" and h.event == "deliver"]
    assert arrived[0].packet is not None
    assert arrived[0].packet.ip is not None
    assert arrived[0].packet.ip.src == "10.100.0.2"
    back = t.hops[-1].packet
    assert back is not None
    assert back.ip is not None
    assert (back.ip.src, back.ip.dst) == ("10.0.0.5", "10.0.1.3")


def test_an_address_the_gateway_cannot_route_is_no_route() -> None:
    t = Simulator(tiny_cluster()).probe("default/a", "10.0.0.6", 80)
    assert t.verdict is Verdict.NO_ROUTE
    assert icmp_source(t) == "10.100.0.1"


def test_a_user_hook_drops_and_names_itself() -> None:
    sim = Simulator(tiny_cluster())

    def no_ping(pkt: Packet, ctx: object) -> Drop | object:
        if pkt.ip is not None and pkt.ip.proto == 1:
            return Drop("no ICMP on this cluster")
        return ACCEPT

    sim.add_hook("FORWARD", no_ping, name="no-ping")
    t = ping(sim, "10.0.2.2")
    assert t.verdict is Verdict.DROPPED
    drop = next(h for h in t.hops if h.reason is not None)
    assert drop.detail == "no-ping: no ICMP on this cluster"
    assert (drop.node, drop.event) == ("node-1", "FORWARD")
    assert sim.probe("default/a", "10.0.2.2", 80).verdict is Verdict.DELIVERED
    sim.remove_hook("no-ping")
    assert ping(sim, "10.0.2.2").verdict is Verdict.DELIVERED


def test_a_hook_survives_a_fabric_rebuild() -> None:
    sim = Simulator(tiny_cluster())
    sim.add_hook("FORWARD", lambda p, c: Drop("all"), name="deny-all")
    extra = Pod("default", "d", "node-2", IPv4Address("10.0.2.3"), {}, WEB)
    sim.update(
        Cluster(
            sim.cluster.config,
            sim.cluster.namespaces,
            {**sim.cluster.pods, extra.key: extra},
        )
    )
    assert sim.probe("default/a", "10.0.2.3", 80).verdict is Verdict.DROPPED


def test_the_reply_is_conntrack_established_on_both_nodes() -> None:
    t = Simulator(tiny_cluster()).probe("default/a", "10.0.2.2", 80)
    est = [
        h.node
        for h in t.hops
        if h.event == "conntrack"
        and h.detail.startswith("ESTABLISHED")
        and "tcp" in h.detail
    ]
    assert est == ["node-2", "node-1"]


def test_traces_are_deterministic() -> None:
    a = Simulator(tiny_cluster()).probe("default/a", "10.0.2.2", 80)
    b = Simulator(tiny_cluster()).probe("default/a", "10.0.2.2", 80)
    assert a.to_dict() == b.to_dict()


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    mode = draw(st.sampled_from(MODES))
    nodes = draw(st.integers(1, 3))
    base = tiny_cluster(mode, nodes)
    placement = draw(st.lists(st.integers(1, nodes), min_size=1, max_size=5))
    pods: dict[str, Pod] = {}
    used: dict[int, int] = {}
    for i, n in enumerate(placement):
        used[n] = used.get(n, 1) + 1
        pod = Pod(
            "default", f"p{i}", f"node-{n}", IPv4Address(f"10.0.{n}.{used[n]}"), {}, WEB
        )
        pods[pod.key] = pod
    return Cluster(base.config, base.namespaces, pods)


@settings(max_examples=25, deadline=None)
@given(clusters())
def test_without_policy_every_pod_pair_is_delivered(cluster: Cluster) -> None:
    sim = Simulator(cluster)
    for a in cluster.pods:
        for b in cluster.pods:
            t = sim.probe(a, b, 80)
            assert t.verdict is Verdict.DELIVERED, (a, b, t.explanation)


@settings(max_examples=25, deadline=None)
@given(clusters(), st.data())
def test_ttl_needed_equals_routers_on_the_path(
    cluster: Cluster, data: st.DataObject
) -> None:
    sim = Simulator(cluster)
    keys = list(cluster.pods)
    a = data.draw(st.sampled_from(keys))
    b = data.draw(st.sampled_from(keys))
    pa, pb = cluster.pods[a], cluster.pods[b]
    routers = 0 if pa.node == pb.node else ROUTERS[cluster.config.network]
    if routers:
        assert (
            sim.probe(a, b, protocol="ICMP", ttl=routers).verdict
            is Verdict.TTL_EXCEEDED
        )
    assert (
        sim.probe(a, b, protocol="ICMP", ttl=routers + 1).verdict is Verdict.DELIVERED
    )


def test_send_without_source_gets_the_kernel_fill() -> None:
    sim = Simulator(tiny_cluster())
    pkt = Packet(ip=IP("0.0.0.0", "10.0.2.2", 1, ttl=3), l4=ICMP(8, 0, 9, 1))
    t = sim.send("default/a", pkt)
    assert t.verdict is Verdict.DELIVERED
    first = t.hops[0].packet
    assert first is not None
    assert first.ip is not None
    assert first.ip.src == "10.0.1.3"


def test_a_new_only_hook_sees_each_connection_once_and_the_trace_is_the_same() -> None:
    """`Hook.new_only` (a `nat` table rule): the SYN meets it at every node it crosses,
    the SYN-ACK of the known connection never; a plain hook sees both."""
    seen: dict[str, list[tuple[str, str, str]]] = {"new-only": [], "every": []}

    def watch(name: str) -> Callable[[Packet, HookContext], None]:
        def fn(pkt: Packet, ctx: HookContext) -> None:
            assert pkt.ip is not None
            if pkt.ip.proto == 6:  # the probe's own packets, not VXLAN's outer ones
                seen[name].append((ctx.node, pkt.ip.src, ctx.ct_state.value))

        return fn

    plain = Simulator(tiny_cluster())
    before = plain.probe("default/a", "10.0.2.2", 80)
    sim = Simulator(tiny_cluster())
    sim.add_hook("PREROUTING", watch("new-only"), name="new-only", new_only=True)
    sim.add_hook("PREROUTING", watch("every"), name="every")
    after = sim.probe("default/a", "10.0.2.2", 80)
    assert after.verdict is Verdict.DELIVERED
    assert [h[:9] for h in after.hops] == [h[:9] for h in before.hops]
    assert seen["new-only"] == [
        ("node-1", "10.0.1.3", "NEW"),
        ("node-2", "10.0.1.3", "NEW"),
    ]
    assert seen["every"] == [
        *seen["new-only"],
        ("node-2", "10.0.2.2", "ESTABLISHED"),
        ("node-1", "10.0.2.2", "ESTABLISHED"),
    ]


def test_a_known_connection_s_chain_is_compiled_without_the_new_only_hooks() -> None:
    def nop(pkt: Packet, ctx: HookContext) -> None:
        return None

    nf = Netfilter()
    nat = Hook(HookPoint.PREROUTING, PRIORITY_DSTNAT, "nat", nop, new_only=True)
    raw = Hook(HookPoint.PREROUTING, PRIORITY_DSTNAT - 50, "raw", nop)
    late = Hook(HookPoint.PREROUTING, PRIORITY_FILTER, "late", nop)
    for hook in (late, nat, raw):
        nf.register(hook)
    first, known = nf.compiled[HookPoint.PREROUTING], nf.known[HookPoint.PREROUTING]
    assert (first.before, first.after) == ((raw, nat), (late,))
    assert (known.before, known.after) == ((raw,), (late,))
    assert known.dst_nat and not known.confirms
    assert nf.known[HookPoint.POSTROUTING].confirms
    nf.unregister("raw")
    assert nf.known[HookPoint.PREROUTING].before == ()
