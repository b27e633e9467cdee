"""Path MTU state within one walk state (issue 13, cause 6): a "fragmentation needed"
teaches the sender's kernel the path MTU, and its next DF packet that is larger fails
with EMSGSIZE at the sender (dataplane.pmtu)."""

from __future__ import annotations

from dataplane.emission import Out
from dataplane.packet import ICMP, IP, Packet
from dataplane.sim import Simulator
from dataplane.trace import Trace, Verdict
from dataplane.walker import Client, WalkState
from tests.dataplane.builders import tiny_cluster
from topology.model import NetworkMode

EXTERNAL, POD_C = "10.0.0.5", "10.0.2.2"


def narrow_sim() -> Simulator:
    """routed: the external host reaches pod c through the gateway and node-2, whose
    cbr0 is narrowed to 1400 bytes, so node-2 answers "fragmentation needed"."""
    sim = Simulator(tiny_cluster(NetworkMode.ROUTED))
    sim.fabric.netns["node-2"].interfaces["cbr0"].mtu = 1400
    return sim


def ping(sim: Simulator, state: WalkState, size: int, raw: bool = False) -> Trace:
    """An echo request with DF from the external host, as its ping socket sends it."""
    ns = sim.netns_of(sim.resolve("external/web"))
    pkt = Packet(
        ip=IP(EXTERNAL, POD_C, 1, df=True),
        l4=ICMP(8, 0, 7, 1),
        data=bytes(size - 28),
    )
    client = Client(ns.id, 1, 7, POD_C, 0)
    return sim.walk("ping", [Out(pkt, ns.id, raw=raw)], client, state)


def test_the_next_df_packet_fails_at_the_sender() -> None:
    sim, state = narrow_sim(), WalkState()
    first = ping(sim, state, 1480)
    assert first.verdict is Verdict.TOO_BIG
    assert "from 10.100.0.3" in first.explanation, first.explanation
    assert "path MTU 1400" in first.explanation
    second = ping(sim, state, 1420)
    assert second.verdict is Verdict.TOO_BIG
    assert {h.node for h in second.hops} == {"external"}, "it never leaves the host"
    assert "mtu=1400 (path MTU learned" in second.hops[-1].detail
    assert ping(sim, state, 1400).verdict is Verdict.DELIVERED


def test_a_fresh_state_knows_no_path_mtu() -> None:
    sim = narrow_sim()
    ping(sim, WalkState(), 1480)
    again = ping(sim, WalkState(), 1420)
    assert again.verdict is Verdict.TOO_BIG
    assert any(h.node == "node-2" for h in again.hops)


def test_a_raw_socket_is_held_to_the_device_mtu_only() -> None:
    sim, state = narrow_sim(), WalkState()
    ping(sim, state, 1480)
    crafted = ping(sim, state, 1420, raw=True)
    assert any(h.node == "node-2" for h in crafted.hops), "raw_send_hdrinc: it leaves"
