"""The NetworkPolicy filter in the walk: where it runs (FORWARD on the source pod's node for
egress, on the destination pod's node for ingress, bridged traffic included), what it
shows, and what it lets through (replies, node traffic), in every network mode."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from dataplane.sim import Simulator
from dataplane.trace import Hop, Trace, Verdict
from tests.netpol.clusters import (
    SERVER,
    block,
    namespaces,
    pods,
    policy,
    port,
    rule,
    sel,
    with_labels,
    xyz,
)
from topology.model import (
    NetworkMode,
    NetworkPolicy,
    Pod,
    Service,
    ServicePort,
    ServiceType,
)

A_ONLY = sel(pod="a")


@pytest.fixture(params=list(NetworkMode), ids=lambda m: m.value)
def mode(request: pytest.FixtureRequest) -> NetworkMode:
    return NetworkMode(request.param)


def sim_of(
    *policies: NetworkPolicy, mode: NetworkMode = NetworkMode.VXLAN
) -> Simulator:
    return Simulator(xyz(*policies, mode=mode))


def netpol_hops(trace: Trace, direction: str = "request") -> list[Hop]:
    return [
        h
        for h in trace.hops
        if h.event == "FORWARD"
        and h.detail.startswith("netpol: ")
        and h.direction == direction
    ]


def test_cross_node_egress_on_the_source_node_ingress_on_the_destination(
    mode: NetworkMode,
) -> None:
    p = policy("x/p", A_ONLY, (rule(namespaces(sel(ns="y"))),))
    t = sim_of(p, mode=mode).probe("y/a", "x/a", 80)  # node-2 -> node-1
    assert t.verdict is Verdict.DELIVERED
    assert t.policy == "x/p"
    hops = netpol_hops(t)
    assert [(h.node, h.detail) for h in hops] == [
        ("node-2", "netpol: y/a not isolated for egress -> accept"),
        (
            "node-1",
            "netpol: ingress of x/a: allowed by x/p ingress rule 0 peer 0 "
            "(namespaceSelector ns=y) -> accept",
        ),
    ]


def test_the_reply_of_an_admitted_connection_passes(mode: NetworkMode) -> None:
    # x/a may not open any connection, yet it answers one that its ingress admits.
    deny_out = policy("x/quiet", A_ONLY, egress=(), types=("Egress",))
    t = sim_of(deny_out, mode=mode).probe("y/a", "x/a", 80)
    assert t.verdict is Verdict.DELIVERED
    replies = netpol_hops(t, "reply")
    assert replies, "the reply meets the filter"
    assert all("ESTABLISHED (reply direction)" in h.detail for h in replies)
    assert all(h.reason is None for h in replies)


def test_an_icmp_error_related_to_an_admitted_connection_passes() -> None:
    deny_out = policy("x/quiet", A_ONLY, (rule(),), (), types=("Ingress", "Egress"))
    t = sim_of(deny_out).probe("y/a", "x/a", 9999, "UDP")
    assert t.verdict is Verdict.REFUSED
    assert any("RELATED" in h.detail for h in netpol_hops(t, "reply"))


def test_a_denied_ingress_drops_on_the_destination_node(mode: NetworkMode) -> None:
    p = policy("x/p", A_ONLY, (rule(pods(sel(role="frontend")), ports=(port(80),)),))
    t = sim_of(p, mode=mode).probe("y/a", "x/a", 80)
    assert t.verdict is Verdict.DENIED_INGRESS
    assert t.policy == "x/p"
    drop = next(h for h in t.hops if h.reason is not None)
    assert (drop.node, drop.event) == ("node-1", "FORWARD")
    assert drop.detail == (
        "netpol: denied: x/a is isolated for ingress by x/p, and no rule admits traffic "
        "from y/a on TCP 80: x/p ingress rule 0: peer 0 (podSelector role=frontend): "
        "y/a is in namespace y; a podSelector alone selects pods of x only"
    )
    assert t.explanation.endswith(drop.detail)
    assert not any(h.node == "node-1" and h.event == "deliver" for h in t.hops)


def test_a_denied_egress_never_leaves_the_source_node(mode: NetworkMode) -> None:
    p = policy(
        "y/e", sel(pod="a"), egress=(rule(namespaces(sel(ns="z"))),), types=("Egress",)
    )
    t = sim_of(p, mode=mode).probe("y/a", "x/a", 80)
    assert t.verdict is Verdict.DENIED_EGRESS
    assert t.policy == "y/e"
    assert {h.node for h in t.hops} == {"node-2"}


def test_same_node_traffic_is_bridged_and_checked_both_ways() -> None:
    # x/a and x/c both run on node-1: the frame is bridged, br_netfilter runs FORWARD.
    p = policy("x/p", A_ONLY, (rule(pods(sel(pod="c"))),))
    e = policy("x/e", sel(pod="c"), egress=(rule(pods(A_ONLY)),), types=("Egress",))
    t = sim_of(p, e).probe("x/c", "x/a", 80)
    assert t.verdict is Verdict.DELIVERED
    hops = netpol_hops(t)
    assert [h.node for h in hops] == ["node-1", "node-1"]
    assert all(
        h.device.startswith("veth") for h in hops
    )  # the bridge port it came in on
    assert hops[0].detail.startswith(
        "netpol: egress of x/c: allowed by x/e egress rule 0"
    )
    assert hops[1].detail.startswith(
        "netpol: ingress of x/a: allowed by x/p ingress rule 0"
    )
    assert t.policy == "x/e"  # the first policy that decided


def test_both_ends_must_admit() -> None:
    ingress_ok = policy("x/p", A_ONLY, (rule(namespaces(sel(ns="y"))),))
    egress_no = policy(
        "y/e", egress=(rule(namespaces(sel(ns="z"))),), types=("Egress",)
    )
    assert (
        sim_of(ingress_ok, egress_no).probe("y/a", "x/a", 80).verdict
        is Verdict.DENIED_EGRESS
    )
    assert sim_of(ingress_ok).probe("y/a", "x/a", 80).verdict is Verdict.DELIVERED


def test_icmp_is_admitted_only_by_rules_without_ports() -> None:
    with_ports = policy("x/p", A_ONLY, (rule(ports=(port(80),)),))
    without = policy("x/p", A_ONLY, (rule(namespaces()),))
    assert (
        sim_of(with_ports).probe("y/a", "x/a", protocol="ICMP").verdict
        is Verdict.DENIED_INGRESS
    )
    assert (
        sim_of(without).probe("y/a", "x/a", protocol="ICMP").verdict
        is Verdict.DELIVERED
    )


def service_cluster(*policies: NetworkPolicy) -> Simulator:
    svc = Service(
        "x",
        "web",
        ServiceType.CLUSTER_IP,
        IPv4Address("10.96.0.50"),
        (ServicePort(8080, "serve-80-tcp"),),
        {"pod": "a"},
    )
    return Simulator(replace(xyz(*policies), services={svc.key: svc}))


def test_policy_sees_the_backend_and_target_port_after_dnat() -> None:
    on_80 = policy("x/p", A_ONLY, (rule(ports=(port(80),)),))
    t = service_cluster(on_80).probe("y/a", "svc/x/web", 8080)
    assert t.verdict is Verdict.DELIVERED
    assert t.endpoint == "x/a"
    on_8080 = policy("x/p", A_ONLY, (rule(ports=(port(8080),)),))
    t = service_cluster(on_8080).probe("y/a", "svc/x/web", 8080)
    assert t.verdict is Verdict.DENIED_INGRESS
    assert "TCP 80 is not among its ports (TCP 8080)" in t.explanation


def test_egress_is_judged_before_masquerade_on_the_pod_address() -> None:
    p = policy("x/e", A_ONLY, egress=(rule(block("10.0.0.0/24"), ports=(port(5978),)),))
    sim = sim_of(p)
    t = sim.probe("x/a", "external/vault", 5978)
    assert t.verdict is Verdict.DELIVERED
    hop = netpol_hops(t)[0]
    assert hop.packet is not None and hop.packet.ip is not None
    assert hop.packet.ip.src == "10.0.1.2"  # still x/a: MASQUERADE comes after FORWARD
    assert any(h.event == "nat" and "MASQUERADE" in h.detail for h in t.hops)
    assert sim.probe("x/a", "external/vault", 443).verdict is Verdict.DENIED_EGRESS
    assert sim.probe("x/a", "external/mirror", 5978).verdict is Verdict.DENIED_EGRESS


def test_a_node_reaches_its_own_pods_whatever_the_policy(mode: NetworkMode) -> None:
    deny = policy("x/deny", types=("Ingress",))
    sim = sim_of(deny, mode=mode)
    assert sim.probe("node/node-1", "x/a", 80).verdict is Verdict.DELIVERED
    assert sim.probe("node/node-2", "x/a", 80).verdict is Verdict.DENIED_INGRESS


def test_a_pod_reaches_itself_whatever_the_policy() -> None:
    deny = policy("x/deny", types=("Ingress", "Egress"))
    assert sim_of(deny).probe("x/a", "x/a", 80).verdict is Verdict.DELIVERED


def test_host_network_pods_are_not_selected_by_peers() -> None:
    agent = Pod("x", "agent", "node-2", IPv4Address("10.100.0.3"), {"pod": "a"}, SERVER, host_network=True)  # fmt: skip
    p = policy("x/p", A_ONLY, (rule(pods(A_ONLY)),))
    sim = Simulator(xyz(p, extra=(agent,)))
    t = sim.probe("x/agent", "x/a", 80)
    assert t.verdict is Verdict.DENIED_INGRESS
    assert "(hostNetwork pods count as their node)" in t.explanation


def test_changes_take_effect_on_the_next_probe() -> None:
    p = policy("x/p", A_ONLY, (rule(pods(sel(role="frontend"))),))
    cluster = xyz(p)
    sim = Simulator(cluster)
    assert sim.probe("x/c", "x/a", 80).verdict is Verdict.DENIED_INGRESS
    sim.update(with_labels(cluster, "x/c", {"role": "frontend"}))
    assert sim.probe("x/c", "x/a", 80).verdict is Verdict.DELIVERED
    sim.update(replace(cluster, policies={}))
    assert sim.probe("y/b", "x/a", 80).verdict is Verdict.DELIVERED


def test_a_verdict_read_back_is_the_one_a_fresh_walk_takes() -> None:
    """The filter keeps its verdict per flow (`PolicyIndex.memo`): probes of one simulator,
    interleaved over ports, protocols and sources, walk exactly as each would alone."""
    p = policy("x/p", A_ONLY, (rule(pods(sel(pod="b")), ports=(port(80),)),))
    sim = sim_of(p)
    probes = [("x/b", 80, "TCP"), ("x/b", 81, "TCP"), ("x/c", 80, "TCP"),
              ("x/b", 80, "UDP"), ("x/b", 80, "TCP"), ("x/c", 80, "TCP")]  # fmt: skip
    verdicts = []
    for src, dport, proto in probes:
        t = sim.probe(src, "x/a", dport, proto)
        alone = sim_of(p).probe(src, "x/a", dport, proto)
        assert t.hops == alone.hops
        verdicts.append(t.verdict)
    assert verdicts == [Verdict.DELIVERED, Verdict.DENIED_INGRESS, Verdict.DENIED_INGRESS,
                        Verdict.DENIED_INGRESS, Verdict.DELIVERED, Verdict.DENIED_INGRESS]  # fmt: skip
