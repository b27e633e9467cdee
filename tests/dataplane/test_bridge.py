"""The bridge alone: learning, flooding, its own MAC, hairpin."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dataplane.emission import Rx, Xmit
from dataplane.fabric import mac_for, veth_name
from dataplane.packet import ICMP, IP, Ether, Packet
from tests.dataplane.builders import recorder

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
