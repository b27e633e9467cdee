"""ICMP error rate limiting within one walk state (issue 13, cause 5): Linux sends a
burst of 6 errors to one destination, then stays silent (icmpv4_xrlim_allow)."""

from __future__ import annotations

from dataplane.packet import IP, UDP, Packet
from dataplane.sim import Simulator
from dataplane.trace import Verdict
from dataplane.walker import WalkState
from tests.dataplane.builders import tiny_cluster


def datagram(dst: str, sport: int) -> Packet:
    return Packet(ip=IP("", dst, 17), l4=UDP(sport, 5000), data=b"x")


def test_the_seventh_port_unreachable_to_one_peer_is_not_sent() -> None:
    sim, state = Simulator(tiny_cluster()), WalkState()
    verdicts = [
        sim.send("default/a", datagram("10.0.2.2", 40000 + i), state).verdict
        for i in range(8)
    ]
    assert verdicts == [Verdict.REFUSED] * 6 + [Verdict.DROPPED] * 2


def test_the_burst_is_per_destination_and_per_sender() -> None:
    sim, state = Simulator(tiny_cluster()), WalkState()
    for i in range(6):
        sim.send("default/a", datagram("10.0.2.2", 40000 + i), state)
    seventh = sim.send("default/a", datagram("10.0.2.2", 40100), state)
    assert any(h.event == "ratelimit" for h in seventh.hops)
    # another sender of the errors (pod b answers) and another peer (b asks) are fresh
    assert sim.send("default/a", datagram("10.0.1.4", 40200), state).verdict is (
        Verdict.REFUSED
    )
    assert sim.send("default/b", datagram("10.0.2.2", 40300), state).verdict is (
        Verdict.REFUSED
    )


def test_fragmentation_needed_is_never_limited() -> None:
    sim, state = Simulator(tiny_cluster()), WalkState()
    big = Packet(
        ip=IP("", "10.0.2.2", 17, df=True), l4=UDP(40000, 5000), data=bytes(1440)
    )
    verdicts = {sim.send("node/node-1", big, state).verdict for _ in range(8)}
    assert verdicts == {Verdict.TOO_BIG}


def test_a_fresh_walk_has_a_full_bucket() -> None:
    sim = Simulator(tiny_cluster())
    verdicts = {
        sim.send("default/a", datagram("10.0.2.2", 40000)).verdict for _ in range(8)
    }
    assert verdicts == {Verdict.REFUSED}


def test_a_router_without_a_route_sends_two_net_unreachables() -> None:
    """ip_error() takes its own token (capped at ip_rt_error_burst, 5) before
    icmp_send() takes another: a fresh bucket answers two, then nothing."""
    from topology.model import NetworkMode

    sim, state = Simulator(tiny_cluster(NetworkMode.ROUTED)), WalkState()
    verdicts = [
        sim.send("node/node-1", datagram(f"198.51.100.{i}", 40000 + i), state).verdict
        for i in range(1, 5)
    ]
    assert verdicts == [Verdict.NO_ROUTE] * 2 + [Verdict.DROPPED] * 2


def test_a_redirect_spends_the_senders_bucket() -> None:
    """routed: node-1 -> pod c goes back out of the gateway's eth0; the redirect it
    would get (ip_rt_send_redirect) empties node-1's bucket at the gateway."""
    from topology.model import NetworkMode

    sim, state = Simulator(tiny_cluster(NetworkMode.ROUTED)), WalkState()
    t = sim.send("node/node-1", datagram("10.0.2.2", 40000), state)
    assert any(h.event == "redirect" and h.node == "gateway" for h in t.hops)
    after = sim.send("node/node-1", datagram("198.51.100.1", 40001), state)
    assert after.verdict is Verdict.DROPPED
    assert after.reason is not None and after.reason.value == "icmp-ratelimit"
