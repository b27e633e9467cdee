"""kube-proxy's hooks: endpoints, the endpoint choice, every rewrite and its reversal."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane import kubeproxy
from dataplane.affinity import AffinityTable
from dataplane.fabric import veth_name
from dataplane.netfilter import HookContext, HookPoint, Reject
from dataplane.packet import IP, TCP, Packet
from dataplane.sim import Simulator
from dataplane.trace import DropReason, Hop, Trace, Verdict
from tests.services.builders import (
    WEB_IP,
    pod,
    service_cluster,
    web_service,
)
from topology.model import (
    Container,
    ContainerPort,
    LoadBalancerIngress,
    NetworkMode,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
)

MODES = list(NetworkMode)


@pytest.fixture(params=MODES, ids=[m.value for m in MODES])
def mode(request: pytest.FixtureRequest) -> NetworkMode:
    mode: NetworkMode = request.param
    return mode


def nat(trace: Trace) -> list[Hop]:
    return [h for h in trace.hops if h.event == "nat"]


def rewrites(hop: Hop) -> list[str]:
    return [str(d) for d in hop.diffs]


def delivered_packet(trace: Trace, direction: str) -> Packet:
    """The packet the server (request) or the client (reply) received."""
    hop = next(
        h
        for h in reversed(trace.hops)
        if h.event == "deliver" and h.direction == direction
    )
    assert hop.packet is not None
    return hop.packet


# -- endpoints --------------------------------------------------------------------------


def test_endpoints_are_the_selected_pods_sorted_with_their_target_port() -> None:
    canary = replace(
        pod("web-canary", "node-1", "10.0.1.9", {"app": "web"}),
        containers=(Container("web", (ContainerPort(8081, Protocol.TCP, "http"),)),),
    )
    idle = replace(pod("web-idle", "node-2", "10.0.2.9", {"app": "web"}), ready=False)
    other = pod("api-0", "node-1", "10.0.1.8", {"app": "api"})
    cluster = service_cluster(pods=(canary, idle, other))
    svc = cluster.services["default/web"]
    found = kubeproxy.endpoints(cluster, svc, svc.ports[0])
    # The EndpointSlice controller lists the pod that is not ready, with its conditions.
    assert [(b.key, b.port, b.condition) for b in found] == [
        ("default/web-0", 8080, "ready"),
        ("default/web-1", 8080, "ready"),
        ("default/web-canary", 8081, "ready"),
        ("default/web-idle", 8080, "not ready"),
    ]
    rule = kubeproxy.port_rule(cluster, svc, svc.ports[0])
    assert [b.key for b in rule.endpoints] == [
        "default/web-0",
        "default/web-1",
        "default/web-canary",
    ]


def test_a_pod_without_the_named_port_is_no_endpoint_of_that_port() -> None:
    cluster = service_cluster()
    svc = web_service(ports=(ServicePort(9090, "metrics", Protocol.TCP, "metrics"),))
    assert kubeproxy.endpoints(cluster, svc, svc.ports[0]) == ()


def test_a_numeric_target_port_needs_no_declared_container_port() -> None:
    cluster = service_cluster()
    svc = web_service(ports=(ServicePort(80, 9999),))
    assert {b.port for b in kubeproxy.endpoints(cluster, svc, svc.ports[0])} == {9999}


def test_a_service_without_selector_has_no_endpoints() -> None:
    cluster = service_cluster()
    svc = web_service(selector=None)
    assert kubeproxy.endpoints(cluster, svc, svc.ports[0]) == ()


# -- the endpoint choice ----------------------------------------------------------------


def _flow(src: str, sport: int) -> Packet:
    return Packet(ip=IP(src, WEB_IP, 6), l4=TCP(sport, 80))


def _blake(text: str, n: int) -> int:
    """The documented formula (docs/model.md), written out independently."""
    digest = hashlib.blake2b(text.encode(), key=b"kube-proxy", digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def test_the_choice_is_the_documented_keyed_hash_of_the_flow() -> None:
    cluster = service_cluster()
    svc = cluster.services["default/web"]
    rule = kubeproxy.port_rule(cluster, svc, svc.ports[0])
    for sport in range(40000, 40020):
        backend, how = kubeproxy.choose(rule, rule.endpoints, _flow("10.0.1.3", sport))
        index = _blake(f"6 10.0.1.3 {sport} {WEB_IP} 80", 2)
        assert backend == rule.endpoints[index]
        assert how.endswith(f"% 2 = {index}")


def test_flows_spread_over_the_endpoints() -> None:
    cluster = service_cluster()
    svc = cluster.services["default/web"]
    rule = kubeproxy.port_rule(cluster, svc, svc.ports[0])
    picks = {
        kubeproxy.choose(rule, rule.endpoints, _flow("10.0.1.3", s))[0].key
        for s in range(40000, 40020)
    }
    assert picks == {"default/web-0", "default/web-1"}


def test_adjacent_clients_spread_over_the_endpoints() -> None:
    """16 neighbouring client addresses must not cluster on one endpoint (a CRC-32 of the
    flow sent all 16 to the same one)."""
    cluster = service_cluster()
    svc = cluster.services["default/web"]
    rule = kubeproxy.port_rule(cluster, svc, svc.ports[0])
    eps = rule.endpoints
    four = (*eps, *(replace(b, key=b.key + "x") for b in eps))
    picks = [
        kubeproxy.choose(rule, four, _flow(f"10.0.1.{i}", 40000))[0].key
        for i in range(16, 32)
    ]
    counts = sorted(picks.count(k) for k in set(picks))
    assert len(counts) == 4 and counts[-1] <= 8, picks


def test_client_ip_affinity_pins_a_client_to_its_first_pick_on_that_node() -> None:
    cluster = service_cluster()
    sim = Simulator(cluster)
    svc = web_service(session_affinity="ClientIP")
    rule = kubeproxy.port_rule(cluster, svc, svc.ports[0])
    table = AffinityTable()
    node_1 = sim.netns_of(sim.resolve("node/node-1"))
    node_2 = sim.netns_of(sim.resolve("node/node-2"))
    for client in ("10.0.1.3", "10.0.1.4", "10.0.2.2"):
        first = _blake(f"6 {client} 40000 {WEB_IP} 80", 2)
        for ns in (node_1, node_2):  # one table per node's kube-proxy
            ctx = HookContext(ns, HookPoint.PREROUTING, cluster, affinity=table)
            picks = {
                kubeproxy.choose(rule, rule.endpoints, _flow(client, s), ctx)[0].key
                for s in range(40000, 40010)
            }
            assert picks == {rule.endpoints[first].key}
    # Without a table (a context outside any walk) every flow is its own choice.
    free = {
        kubeproxy.choose(rule, rule.endpoints, _flow("10.0.1.3", s))[0].key
        for s in range(40000, 40010)
    }
    assert len(free) == 2


def test_the_trace_names_the_pick_and_the_probe_expectation_sees_it() -> None:
    trace = Simulator(service_cluster()).probe("default/a", "svc/default/web", 80)
    dnat = nat(trace)[0]
    # The chain names upstream's portProtoHash gives (sha256, base32, 16 characters).
    assert (
        "ClusterIP 10.96.0.11:80 (default/web:http): KUBE-SERVICES -> "
        "KUBE-SVC-CDGGSHYLG3RE2FKL -> KUBE-SEP-"
    ) in dnat.detail
    assert " default/web-0 10.0.1.5:8080 (endpoint 1 of 2" in dnat.detail
    assert (
        "endpoint 1 of 2: a choice among 2 cluster-wide; "
        "blake2b('6 10.0.1.3 40000 10.96.0.11 80') % 2 = 0"
    ) in dnat.detail
    assert trace.endpoint == "default/web-0"


# -- ClusterIP: DNAT at PREROUTING, un-DNAT of the reply ---------------------------------


def test_clusterip_dnat_and_the_reply_comes_back_un_natted(mode: NetworkMode) -> None:
    sim = Simulator(service_cluster(mode))
    with kubeproxy.chosen_by_kernel({"default/web:http": "default/web-1"}):
        trace = sim.probe("default/b", "svc/default/web", "http")  # web-1 on node-2
    assert trace.verdict is Verdict.DELIVERED
    assert trace.endpoint == "default/web-1"
    dnat, undnat = nat(trace)
    assert dnat.node == "node-1" and dnat.detail.startswith("PREROUTING kube-proxy:")
    assert rewrites(dnat) == [f"ip.dst: {WEB_IP} -> 10.0.2.4", "dport: 80 -> 8080"]
    assert undnat.direction == "reply" and undnat.node == "node-1"
    assert rewrites(undnat) == [f"ip.src: 10.0.2.4 -> {WEB_IP}", "sport: 8080 -> 80"]
    server = delivered_packet(trace, "request")
    assert server.ip is not None and (server.ip.src, server.dport) == ("10.0.1.4", 8080)
    client = delivered_packet(trace, "reply")
    assert client.ip is not None and (client.ip.src, client.sport) == (WEB_IP, 80)


@settings(max_examples=15, deadline=None)
@given(client=st.sampled_from(["default/a", "default/b", "default/c"]))
def test_dnat_then_reverse_nat_is_the_identity(client: str) -> None:
    trace = SIM.probe(client, "svc/default/web", 80)
    sent = next(h.packet for h in trace.hops if h.event == "route")
    got = delivered_packet(trace, "reply")
    assert sent is not None and sent.ip is not None and got.ip is not None
    assert (got.ip.src, got.sport, got.ip.dst, got.dport) == (
        sent.ip.dst,
        sent.dport,
        sent.ip.src if sent.ip.src != "0.0.0.0" else got.ip.dst,
        sent.sport,
    )


SIM = Simulator(service_cluster())


def test_udp_to_a_clusterip_is_natted_both_ways() -> None:
    svc = web_service(
        selector={"app": "c"}, ports=(ServicePort(5353, "dns", Protocol.UDP, "dns"),)
    )
    trace = Simulator(service_cluster(NetworkMode.VXLAN, svc)).probe(
        "default/a", "svc/default/web", 5353, "UDP"
    )
    assert trace.verdict is Verdict.DELIVERED and trace.endpoint == "default/c"
    dnat, undnat = nat(trace)
    assert rewrites(dnat) == [f"ip.dst: {WEB_IP} -> 10.0.2.2", "dport: 5353 -> 53"]
    assert rewrites(undnat) == [f"ip.src: 10.0.2.2 -> {WEB_IP}", "sport: 53 -> 5353"]


# -- the node's own traffic: DNAT at OUTPUT and masquerade ------------------------------


def test_node_traffic_to_a_clusterip_is_dnatted_in_output_and_masqueraded(
    mode: NetworkMode,
) -> None:
    sim = Simulator(service_cluster(mode))
    with kubeproxy.chosen_by_kernel({"default/web:http": "default/web-1"}):
        trace = sim.probe("node/node-1", "svc/default/web", 80)  # web-1 on node-2
    assert trace.verdict is Verdict.DELIVERED and trace.endpoint == "default/web-1"
    dnat = nat(trace)[0]
    assert dnat.detail.startswith("OUTPUT kube-proxy:")
    assert "KUBE-MARK-MASQ: 10.100.0.2 is not a pod address" in dnat.detail
    # MASQUERADE takes the address of the way out: flannel.1's, or eth0's (the source
    # already, so nothing changes).
    masq_to = "10.0.1.0" if mode is NetworkMode.VXLAN else "10.100.0.2"
    server = delivered_packet(trace, "request")
    assert server.ip is not None and server.ip.src == masq_to
    masq = next(h for h in trace.hops if "KUBE-POSTROUTING MASQUERADE" in h.detail)
    assert rewrites(masq) == (
        ["ip.src: 10.100.0.2 -> 10.0.1.0"] if mode is NetworkMode.VXLAN else []
    )
    undnat = nat(trace)[-1]
    assert rewrites(undnat) == [f"ip.src: 10.0.2.4 -> {WEB_IP}", "sport: 8080 -> 80"]


# -- no endpoints: REJECT; traffic policy Local without a local endpoint: DROP -----------


def test_a_service_without_endpoints_rejects_with_port_unreachable() -> None:
    sim = Simulator(
        service_cluster(NetworkMode.VXLAN, web_service(selector={"app": "x"}))
    )
    trace = sim.probe("default/a", "svc/default/web", 80)
    assert trace.verdict is Verdict.REFUSED
    drop = next(h for h in trace.hops if h.reason is DropReason.NO_ENDPOINTS)
    assert (drop.node, drop.event) == ("node-1", "FORWARD")
    assert "default/web:http has no endpoints -> REJECT" in drop.detail
    icmp = trace.hops[drop.seq]
    assert icmp.event == "icmp" and "port-unreachable from 10.0.1.1" in icmp.detail
    assert "ECONNREFUSED" in trace.explanation


def test_the_node_itself_is_rejected_in_output() -> None:
    sim = Simulator(
        service_cluster(NetworkMode.VXLAN, web_service(selector={"app": "x"}))
    )
    trace = sim.probe("node/node-2", "svc/default/web", 80)
    assert trace.verdict is Verdict.REFUSED
    drop = next(h for h in trace.hops if h.reason is DropReason.NO_ENDPOINTS)
    assert drop.event == "OUTPUT"


def test_internal_traffic_policy_local_uses_only_this_nodes_endpoints() -> None:
    only_node2 = pod("web-1", "node-2", "10.0.2.4", {"app": "solo"})
    svc = web_service(selector={"app": "solo"}, internal_traffic_policy="Local")
    sim = Simulator(service_cluster(NetworkMode.VXLAN, svc, pods=(only_node2,)))
    dropped = sim.probe("default/a", "svc/default/web", 80)
    assert dropped.verdict is Verdict.DROPPED
    assert "has no local endpoints on node-1 -> DROP" in dropped.explanation
    local = sim.probe("default/c", "svc/default/web", 80)
    assert local.verdict is Verdict.DELIVERED and local.endpoint == "default/web-1"
    assert "local to node-2" in nat(local)[0].detail


# -- NodePort and LoadBalancer -----------------------------------------------------------


def nodeport(policy: str) -> Service:
    return web_service(
        type=ServiceType.NODE_PORT,
        ports=(ServicePort(80, "http", Protocol.TCP, "http", 30080),),
        selector={"app": "solo"},
        external_traffic_policy=policy,
    )


SOLO = pod("web-1", "node-2", "10.0.2.4", {"app": "solo"})


def test_nodeport_cluster_policy_masquerades_and_crosses_nodes(
    mode: NetworkMode,
) -> None:
    sim = Simulator(service_cluster(mode, nodeport("Cluster"), pods=(SOLO,)))
    trace = sim.probe("external/laptop", "node/node-1", 30080)
    assert trace.verdict is Verdict.DELIVERED and trace.endpoint == "default/web-1"
    dnat = nat(trace)[0]
    assert (
        dnat.node == "node-1"
        and (
            "NodePort 10.100.0.2:30080 (default/web:http): KUBE-SERVICES -> "
            "KUBE-NODEPORTS -> KUBE-EXT-CDGGSHYLG3RE2FKL -> KUBE-SVC-CDGGSHYLG3RE2FKL"
        )
        in dnat.detail
    )
    assert rewrites(dnat) == ["ip.dst: 10.100.0.2 -> 10.0.2.4", "dport: 30080 -> 8080"]
    server = delivered_packet(trace, "request")
    assert server.ip is not None and server.ip.src != "192.0.2.10"
    assert server.ip.src in ("10.0.1.0", "10.100.0.2")  # flannel.1 or eth0 of node-1
    client = delivered_packet(trace, "reply")
    assert client.ip is not None and (client.ip.src, client.sport) == (
        "10.100.0.2",
        30080,
    )


def test_nodeport_local_policy_keeps_the_client_address() -> None:
    sim = Simulator(service_cluster(NetworkMode.VXLAN, nodeport("Local"), pods=(SOLO,)))
    trace = sim.probe("external/laptop", "node/node-2", 30080)
    assert trace.verdict is Verdict.DELIVERED
    server = delivered_packet(trace, "request")
    assert server.ip is not None and server.ip.src == "192.0.2.10"
    assert not any("MASQUERADE" in h.detail for h in trace.hops)


def test_nodeport_local_policy_drops_on_a_node_without_endpoints() -> None:
    sim = Simulator(service_cluster(NetworkMode.VXLAN, nodeport("Local"), pods=(SOLO,)))
    trace = sim.probe("external/laptop", "node/node-1", 30080)
    assert trace.verdict is Verdict.DROPPED
    drop = trace.hops[-1]
    assert (drop.node, drop.event) == ("node-1", "INPUT")
    assert "kube-proxy-filter: default/web:http has no local endpoints" in drop.detail


def test_pod_traffic_short_circuits_a_local_nodeport() -> None:
    sim = Simulator(service_cluster(NetworkMode.VXLAN, nodeport("Local"), pods=(SOLO,)))
    trace = sim.probe("default/a", "node/node-1", 30080)
    assert trace.verdict is Verdict.DELIVERED
    assert "pod traffic short-circuits" in nat(trace)[0].detail


def test_a_loadbalancer_address_is_captured_on_the_node() -> None:
    svc = replace(
        nodeport("Cluster"),
        type=ServiceType.LOAD_BALANCER,
        load_balancer_ingress=(LoadBalancerIngress(IPv4Address("203.0.113.7")),),
    )
    sim = Simulator(service_cluster(NetworkMode.VXLAN, svc, pods=(SOLO,)))
    trace = sim.probe("default/a", "203.0.113.7", 80)
    assert trace.verdict is Verdict.DELIVERED and trace.endpoint == "default/web-1"
    dnat = nat(trace)[0]
    assert (
        "LoadBalancer 203.0.113.7:80 (default/web:http): KUBE-SERVICES -> "
        "KUBE-EXT-CDGGSHYLG3RE2FKL -> KUBE-SVC-CDGGSHYLG3RE2FKL -> KUBE-SEP-"
    ) in dnat.detail
    client = delivered_packet(trace, "reply")
    assert client.ip is not None and client.ip.src == "203.0.113.7"


# -- hairpin -----------------------------------------------------------------------------


def hairpin_cluster() -> Simulator:
    svc = web_service(selector={"app": "solo"})
    return Simulator(
        service_cluster(
            NetworkMode.VXLAN,
            svc,
            pods=(pod("web-0", "node-1", "10.0.1.5", {"app": "solo"}),),
        )
    )


def test_hairpin_masquerades_to_the_bridge_and_returns_through_conntrack() -> None:
    trace = hairpin_cluster().probe("default/web-0", "svc/default/web", 80)
    assert trace.verdict is Verdict.DELIVERED and trace.endpoint == "default/web-0"
    dnat, snat, unsnat, undnat = nat(trace)
    port = veth_name("default/web-0")
    assert "KUBE-MARK-MASQ: hairpin: default/web-0 reaches itself" in dnat.detail
    # br_netfilter bridges the DNATed frame back onto cbr0: no router, no TTL decrement.
    assert not any(h.event == "forward" for h in trace.hops)
    assert any("bridged_dnat" in h.detail for h in trace.hops)
    assert rewrites(snat) == ["ip.src: 10.0.1.5 -> 10.0.1.1"]
    assert rewrites(unsnat) == ["ip.dst: 10.0.1.1 -> 10.0.1.5"]
    assert rewrites(undnat) == [f"ip.src: 10.0.1.5 -> {WEB_IP}", "sport: 8080 -> 80"]
    out = [
        h.direction
        for h in trace.hops
        if h.event == "bridge"
        and f"-> port {port}" in h.detail
        and h.packet
        and h.packet.ip
    ]
    assert out == ["request", "reply"]  # the SYN and the SYN-ACK leave by web-0's port


def test_hairpin_fails_when_the_bridge_port_is_not_in_hairpin_mode() -> None:
    sim = hairpin_cluster()
    sim.fabric.netns["node-1"].interfaces[veth_name("default/web-0")].hairpin = False
    trace = sim.probe("default/web-0", "svc/default/web", 80)
    assert trace.verdict is Verdict.DROPPED
    assert "hairpin is off" in trace.explanation


# -- masquerade of traffic leaving the cluster ------------------------------------------


def test_pod_traffic_leaving_the_cluster_is_masqueraded_to_the_node(
    mode: NetworkMode,
) -> None:
    trace = Simulator(service_cluster(mode)).probe("default/c", "external/laptop", 80)
    assert trace.verdict is Verdict.DELIVERED
    server = delivered_packet(trace, "request")
    assert server.ip is not None and server.ip.src == "10.100.0.3"
    back = [h for h in nat(trace) if h.direction == "reply"]
    assert [rewrites(h) for h in back] == [["ip.dst: 10.100.0.3 -> 10.0.2.2"]]


# -- Reject, the general hook result -----------------------------------------------------


def test_a_user_hook_may_reject_with_any_icmp_error() -> None:
    sim = Simulator(service_cluster())
    sim.add_hook(
        "FORWARD", lambda pkt, ctx: Reject("no web today", icmp_code=13), name="closed"
    )
    trace = sim.probe("default/a", "default/c", 80)
    assert trace.verdict is Verdict.REFUSED
    assert any(h.event == "icmp" and "admin-prohibited" in h.detail for h in trace.hops)
