"""Destinations that are not a unicast host, and the wildcard-bound UDP server (issue 13,
causes 3 and 4): what this kernel does, checked in throw-away namespaces (see
`dataplane.addrtype` and `dataplane.sockets`)."""

from __future__ import annotations

import pytest

from dataplane.sim import Simulator
from dataplane.trace import DropReason, Trace, Verdict
from tests.dataplane.builders import tiny_cluster
from topology.loader import load_scenario_text
from topology.model import NetworkMode, Protocol

TCP, UDP, ICMP = Protocol.TCP, Protocol.UDP, Protocol.ICMP


def probe(dst: str, protocol: Protocol, port: int | None = 80) -> Trace:
    sim = Simulator(tiny_cluster(NetworkMode.VXLAN))
    return sim.probe("default/a", dst, None if protocol is ICMP else port, protocol)


@pytest.mark.parametrize("dst", ["10.0.1.255", "255.255.255.255"])
@pytest.mark.parametrize("protocol", [UDP, ICMP])
def test_a_socket_without_so_broadcast_gets_eacces(
    dst: str, protocol: Protocol
) -> None:
    t = probe(dst, protocol)
    assert (t.verdict, t.reason) == (Verdict.DROPPED, DropReason.BROADCAST)
    assert t.explanation == "the sending socket got EACCES"
    assert not any(h.event in ("arp", "xmit") for h in t.hops)


@pytest.mark.parametrize("dst", ["10.0.1.255", "255.255.255.255", "224.0.0.1"])
def test_tcp_to_a_broadcast_or_group_is_enetunreach(dst: str) -> None:
    t = probe(dst, TCP)
    assert t.verdict is Verdict.NO_ROUTE
    assert t.explanation == "the sending socket got ENETUNREACH"


@pytest.mark.parametrize("protocol", [UDP, ICMP])
def test_nothing_answers_a_multicast_group(protocol: Protocol) -> None:
    t = probe("224.0.0.1", protocol)
    assert t.verdict is Verdict.DROPPED
    assert not any(h.direction == "reply" for h in t.hops)


@pytest.mark.parametrize("protocol", [UDP, ICMP])
def test_a_multicast_datagram_leaves_on_the_link(protocol: Protocol) -> None:
    # verified (kernel captures, `dataplane verify`'s devices part): TTL 1, to the
    # group's MAC on the route's device without ARP for the gateway, flooded by cbr0 to
    # every port; no router forwards it
    t = probe("224.0.0.1", protocol)
    sent = next(h for h in t.hops if h.event == "xmit" and h.netns == "pod default/a")
    assert sent.packet is not None and sent.packet.eth is not None
    assert sent.packet.eth.dst == "01:00:5e:00:00:01"
    assert sent.packet.ip is not None and sent.packet.ip.ttl == 1
    assert not any(h.event == "arp" for h in t.hops)
    assert any("flood" in h.detail for h in t.hops if h.event == "bridge")
    assert not any(h.event == "forward" for h in t.hops)
    assert {f.netns for f in t.frames} >= {"pod:default/a", "pod:default/b", "node-1"}


@pytest.mark.parametrize("protocol", [TCP, UDP, ICMP])
def test_another_subnets_broadcast_is_taken_locally_unanswered(
    protocol: Protocol,
) -> None:
    """10.0.2.255 is node-2's cbr0 broadcast: node-1 forwards it, node-2 takes it."""
    t = probe("10.0.2.255", protocol)
    assert t.verdict is Verdict.DROPPED
    drop = next(h for h in t.hops if h.event == "drop")
    assert (drop.node, drop.netns, drop.reason) == (
        "node-2",
        "host",
        DropReason.NOT_FOR_US,
    )
    assert not any(h.direction == "reply" for h in t.hops)
    assert not any(h.node == "node-2" and h.device.startswith("veth") for h in t.hops)


def test_the_network_address_is_an_ordinary_destination() -> None:
    """No `broadcast 10.0.2.0` route on a modern kernel: ARPed for, like any host."""
    t = probe("10.0.2.0", UDP, 53)
    assert t.reason is not DropReason.BROADCAST


@pytest.mark.parametrize(
    ("protocol", "verdict"), [(TCP, Verdict.DELIVERED), (UDP, Verdict.DELIVERED)]
)
def test_0_0_0_0_is_this_host(protocol: Protocol, verdict: Verdict) -> None:
    """connect(0.0.0.0) is connect(127.0.0.1): pod a's own container answers on lo."""
    t = probe("0.0.0.0", protocol, 80 if protocol is TCP else 53)
    assert t.verdict is verdict
    assert {h.netns for h in t.hops} == {"pod default/a"}
    first = t.hops[0].packet
    assert first is not None and first.ip is not None
    assert (first.ip.src, first.ip.dst) == ("127.0.0.1", "127.0.0.1")


HOST_UDP = """
name: wildcard-udp
cluster: {network: vxlan}
manifests:
  - kind: Pod
    metadata: {name: hn}
    spec:
      nodeName: node-1
      hostNetwork: true
      containers: [{name: s, image: agnhost, ports: [{containerPort: 8081, protocol: UDP}]}]
  - kind: Pod
    metadata: {name: a}
    spec: {nodeName: node-1, containers: [{name: c, image: x}]}
  - kind: Pod
    metadata: {name: c}
    spec: {nodeName: node-2, containers: [{name: c, image: x}]}
steps:
  - probe: {from: default/a, to: node/node-1, port: 8081, protocol: UDP}
"""


@pytest.mark.parametrize(
    ("client", "dst", "source", "verdict"),
    [
        # node-1 asked on eth0 answers its own pod from cbr0's address (the route back
        # is `10.0.1.0/24 dev cbr0 src 10.0.1.1`): the connected socket refuses it
        ("default/a", "10.100.0.2", "10.0.1.1", Verdict.DROPPED),
        # ... a pod of node-2 from flannel.1's (`10.0.2.0/24 via 10.0.2.0 dev flannel.1`)
        ("default/c", "10.100.0.2", "10.0.1.0", Verdict.DROPPED),
        # asked on the address the route back prefers, the reply is taken
        ("default/a", "10.0.1.1", "10.0.1.1", Verdict.DELIVERED),
    ],
)
def test_a_wildcard_udp_server_replies_from_the_routes_source(
    client: str, dst: str, source: str, verdict: Verdict
) -> None:
    scenario, _ = load_scenario_text(HOST_UDP)
    t = Simulator(scenario.cluster).probe(client, dst, 8081, UDP)
    assert t.verdict is verdict
    reply = next(
        h.packet
        for h in t.hops
        if h.direction == "reply" and h.event == "route" and h.packet is not None
    )
    assert reply.ip is not None and reply.ip.src == source
    if verdict is Verdict.DROPPED:
        assert t.reason is DropReason.NO_SOCKET
        assert any(
            h.event == "icmp" and "port-unreachable" in h.detail for h in t.hops
        ), "the client's kernel answers the stray reply"


def test_a_closed_port_on_0_0_0_0_is_refused_from_127_0_0_1() -> None:
    """icmp_send(): a packet for a local address (127/8 too) is answered from it."""
    t = probe("0.0.0.0", UDP, 5000)
    assert t.verdict is Verdict.REFUSED
    assert "from 127.0.0.1" in t.explanation
