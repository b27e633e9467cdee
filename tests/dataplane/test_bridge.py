"""The bridge alone: learning, flooding, its own MAC, hairpin."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.emission import Emission, Out, Rx, Xmit
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


class EveryPort(Walker):
    """A walker that sends a flood's copy to every port and walks each (what the walk
    did before floods went only to the ports that can act), counting its steps."""

    dispatched = 0

    def dispatch(self, em: Emission) -> None:
        self.dispatched += 1
        super().dispatch(em)


def walked(sim: Simulator, src: str, first: Out | Xmit, every_port: bool) -> Trace:
    trace = Trace("probe")
    ip = first.pkt.ip
    assert ip is not None
    client = Client(src, ip.proto, first.pkt.sport, ip.dst, first.pkt.dport)
    walker = EveryPort(sim.fabric, sim.cluster, trace, client=client)
    if every_port:
        walker.bridges.flood = (  # type: ignore[method-assign]
            lambda ns, br, pkt, port: [
                Xmit(pkt, ns.id, p)
                for p in sim.fabric.bridge_ports[(ns.id, br)]
                if p != port
            ]
        )
    walker.run([first])
    trace.title = str(walker.dispatched)
    return trace


@pytest.mark.parametrize(
    "dst", ["10.0.1.4", "10.0.2.2", "10.0.1.99", "0a:58:0a:00:01:63", "broadcast"]
)
def test_a_traced_flood_records_what_a_copy_to_every_port_records(dst: str) -> None:
    """The frames of the copies nobody acts on (`Unseen`) are those, in the same order and
    with the same hop numbers, that walking a copy to every port records: same hops, same
    frames, same verdict, in fewer steps."""
    sim = Simulator(crowded(30))
    a = sim.fabric.netns["pod:default/a"]
    first: Out | Xmit
    if dst in ("broadcast", "0a:58:0a:00:01:63"):
        mac = "ff:ff:ff:ff:ff:ff" if dst == "broadcast" else dst
        frame = Packet(eth=Ether(a.interfaces["eth0"].mac, mac), ip=IP("10.0.1.3", "10.0.1.4", 1), l4=ICMP(8, 0, 7, 1))  # fmt: skip
        first = Xmit(frame, a.id, "eth0")
    else:
        first = Out(probe_packet(Protocol.TCP, dst, 80).with_ip(src="10.0.1.3"), a.id)
    quick = walked(sim, a.id, first, every_port=False)
    full = walked(sim, a.id, first, every_port=True)
    assert quick.hops == full.hops
    assert quick.frames == full.frames
    assert len(quick.frames) > 30 * 2
    assert (quick.verdict, quick.explanation) == (full.verdict, full.explanation)
    assert int(quick.title) < int(full.title) - 25


def test_a_traced_walk_takes_as_many_steps_with_3_or_60_pods_on_the_bridge() -> None:
    steps = []
    for pods in (1, 60):
        sim = Simulator(crowded(pods))
        a = sim.fabric.netns["pod:default/a"]
        first = Out(probe_packet(Protocol.TCP, "10.0.1.4", 80).with_ip(src="10.0.1.3"), a.id)  # fmt: skip
        t = walked(sim, a.id, first, every_port=False)
        assert t.verdict is Verdict.DELIVERED and len(t.frames) > 2 * pods
        steps.append(int(t.title))
    assert steps[0] == steps[1]
