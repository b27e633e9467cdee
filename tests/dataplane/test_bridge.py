"""The bridge alone: learning, flooding, its own MAC, hairpin."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from dataplane.emission import Out, Rx, Xmit
from dataplane.fabric import mac_for, veth_name
from dataplane.packet import ICMP, IP, Ether, Packet
from dataplane.sim import Simulator, probe_packet
from dataplane.trace import Trace, Verdict
from dataplane.walker import Client, Walker
from tests.dataplane.builders import recorder, tiny_cluster
from topology.model import Cluster, Pod, Protocol

A, B = veth_name("default/a"), veth_name("default/b")


def frame(src: str, dst: str) -> Packet:
    return Packet(eth=Ether(src, dst), ip=IP("10.0.1.3", "10.0.1.4", 1), l4=ICMP(8))


def test_unknown_mac_floods_to_every_other_port() -> None:
    w, fab = recorder()
    out = w.bridges.receive(
        fab.netns["node-1"], "cbr0", frame(mac_for("10.0.1.3"), mac_for("10.0.1.4")), A
    )
    assert out == [Xmit(out[0].pkt, "node-1", B)]
    assert "flood" in w.trace.hops[-1].detail


def test_learned_mac_goes_to_its_port_only() -> None:
    w, fab = recorder()
    node = fab.netns["node-1"]
    w.bridges.receive(node, "cbr0", frame(mac_for("10.0.1.4"), "ff:ff:ff:ff:ff:ff"), B)
    out = w.bridges.receive(
        node, "cbr0", frame(mac_for("10.0.1.3"), mac_for("10.0.1.4")), A
    )
    assert [(e.netns, e.ifname) for e in out if isinstance(e, Xmit)] == [("node-1", B)]
    bridge_hops = [h.detail for h in w.trace.hops if h.event == "bridge"]
    assert bridge_hops[-1] == f"fdb {mac_for('10.0.1.4')} -> port {B}"


def test_own_mac_goes_up_to_ip() -> None:
    w, fab = recorder()
    out = w.bridges.receive(
        fab.netns["node-1"], "cbr0", frame(mac_for("10.0.1.3"), mac_for("10.0.1.1")), A
    )
    assert out == [Rx(out[0].pkt, "node-1", "cbr0", A)]


def test_hairpin_off_never_sends_back_out_of_the_ingress_port() -> None:
    w, fab = recorder()
    node = fab.netns["node-1"]
    node.interfaces[A].hairpin = False
    mac = mac_for("10.0.1.3")
    w.bridges.receive(node, "cbr0", frame(mac, "ff:ff:ff:ff:ff:ff"), A)
    assert w.bridges.receive(node, "cbr0", frame(mac_for("10.0.1.4"), mac), A) == []
    assert w.trace.hops[-1].event == "drop"
    assert "hairpin is off" in w.trace.hops[-1].detail


@given(
    st.lists(
        st.tuples(
            st.sampled_from([A, B]),
            st.sampled_from(["10.0.1.3", "10.0.1.4", "10.0.1.9"]),
        ),
        max_size=12,
    )
)
def test_a_bridge_never_floods_onto_the_ingress_port(
    seq: list[tuple[str, str]],
) -> None:
    w, fab = recorder()
    node = fab.netns["node-1"]
    node.interfaces[A].hairpin = node.interfaces[B].hairpin = False
    for port, dst in seq:
        src = mac_for("10.0.1.3" if port == A else "10.0.1.4")
        for em in w.bridges.receive(node, "cbr0", frame(src, mac_for(dst)), port):
            assert not (isinstance(em, Xmit) and em.ifname == port)


def crowded(pods: int) -> Cluster:
    """tiny_cluster with `pods` more pods on node-1 (one bridge with many ports)."""
    base = tiny_cluster()
    extra = [
        Pod("default", f"p{i}", "node-1", IPv4Address(f"10.0.1.{10 + i}"), {}, ())
        for i in range(pods)
    ]
    return replace(base, pods={**base.pods, **{p.key: p for p in extra}})


def walk(sim: Simulator, capture: bool, hop_limit: int) -> Trace:
    """A probe a -> b (same node: the ARP request floods the bridge), walked by hand with
    a small hop limit."""
    pkt = probe_packet(Protocol.TCP, "10.0.1.4", 80)
    ns = sim.netns_of(sim.resolve("default/a"))
    trace = Trace("probe")
    client = Client(ns.id, 6, pkt.sport, "10.0.1.4", 80)
    walker = Walker(sim.fabric, sim.cluster, trace, client=client, hop_limit=hop_limit)
    walker.capture = capture
    walker.run([Out(pkt, ns.id)])
    return trace


def test_a_flood_to_many_ports_is_no_loop_with_or_without_captures() -> None:
    """Regression: every flooded copy counted as a step, so a bridge with more ports than
    the hop limit looked like a forwarding loop (a 5,000-pod node's matrix was all
    `dropped`).  Copies that their pod drops unseen are no steps, and a walk without
    captures, which does not make them, has the same hops and verdict."""
    sim = Simulator(crowded(40))
    full = walk(sim, capture=True, hop_limit=30)
    quick = walk(sim, capture=False, hop_limit=30)
    assert full.verdict is Verdict.DELIVERED
    assert [h.detail for h in quick.hops] == [h.detail for h in full.hops]
    assert any("flood to 41 port(s)" in h.detail for h in full.hops)
    assert full.frames and not quick.frames
    assert quick.verdict is Verdict.DELIVERED
