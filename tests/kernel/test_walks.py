"""The reference walks of docs/model.md on this kernel: TTL, MTU and unreachable cases in every network mode, with the
kernel's own ICMP senders, and the simulator saying the same."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from dataplane.kernel import netns
from dataplane.kernel.live import LiveCluster
from dataplane.kernel.probe import Client, ProbeSpec
from dataplane.sim import Simulator
from tests.dataplane.builders import tiny_cluster
from topology.model import NetworkMode, Protocol
from topology.scenario import Verdict

pytestmark = pytest.mark.kernel

V = Verdict
ICMP = Protocol.ICMP
# (destination, protocol, ttl, size, df) -> (verdict, who answers: a word of the detail)
CASES: dict[
    NetworkMode, list[tuple[str, Protocol, int, int | None, bool | None, Verdict, str]]
] = {
    NetworkMode.VXLAN: [
        ("10.0.1.4", ICMP, 1, None, None, V.DELIVERED, "10.0.1.4"),
        ("10.0.2.2", ICMP, 1, None, None, V.TTL_EXCEEDED, "from 10.0.1.1"),
        ("10.0.2.2", ICMP, 2, None, None, V.TTL_EXCEEDED, "from 10.0.2.0"),
        ("10.0.2.2", ICMP, 3, None, None, V.DELIVERED, "10.0.2.2"),
        ("10.0.2.2", ICMP, 64, 1460, True, V.TOO_BIG, "mtu=1450"),
        ("10.0.2.2", ICMP, 64, 1440, True, V.DELIVERED, "10.0.2.2"),
        ("10.0.2.99", ICMP, 64, None, None, V.UNREACHABLE, "from 10.0.2.0"),
        ("10.0.2.2", Protocol.TCP, 64, None, None, V.DELIVERED, "SYN-ACK"),
        ("10.0.2.2", Protocol.TCP, 2, None, None, V.TTL_EXCEEDED, "from 10.0.2.0"),
        ("10.0.2.2", Protocol.UDP, 64, 3000, False, V.DELIVERED, "2972 bytes"),
        ("10.0.2.2", Protocol.UDP, 64, None, None, V.DELIVERED, "10.0.2.2:53"),
        ("10.0.2.2", Protocol.TCP, 64, None, None, V.DELIVERED, "10.0.2.2:80"),
    ],
    NetworkMode.HOST_GW: [
        ("10.0.2.2", ICMP, 1, None, None, V.TTL_EXCEEDED, "from 10.0.1.1"),
        ("10.0.2.2", ICMP, 2, None, None, V.TTL_EXCEEDED, "from 10.100.0.3"),
        ("10.0.2.2", ICMP, 3, None, None, V.DELIVERED, "10.0.2.2"),
        (
            "10.0.2.2",
            ICMP,
            64,
            1500,
            True,
            V.DELIVERED,
            "10.0.2.2",
        ),  # no overlay: MTU 1500
        ("10.0.2.2", ICMP, 64, 1501, True, V.TOO_BIG, "mtu=1500"),
    ],
    NetworkMode.ROUTED: [
        (
            "10.0.2.2",
            ICMP,
            2,
            None,
            None,
            V.TTL_EXCEEDED,
            "from 10.100.0.1",
        ),  # the gateway
        ("10.0.2.2", ICMP, 3, None, None, V.TTL_EXCEEDED, "from 10.100.0.3"),
        ("10.0.2.2", ICMP, 4, None, None, V.DELIVERED, "10.0.2.2"),
        ("10.0.0.5", Protocol.TCP, 64, None, None, V.DELIVERED, "10.0.0.5:80"),
    ],
}
# a pod reaches an external host in every mode: masqueraded to its node's address
CASES[NetworkMode.VXLAN].append(
    ("10.0.0.5", Protocol.TCP, 64, None, None, V.DELIVERED, "10.0.0.5:80")
)
CASES[NetworkMode.HOST_GW].append(
    ("10.0.0.5", Protocol.TCP, 64, None, None, V.DELIVERED, "10.0.0.5:80")
)


@pytest.fixture(params=list(CASES), ids=str, scope="module")
def live(request: pytest.FixtureRequest) -> Iterator[tuple[LiveCluster, Simulator]]:
    sim = Simulator(tiny_cluster(request.param))
    cluster = LiveCluster(sim.fabric).start()
    try:
        yield cluster, sim
    finally:
        cluster.close()


def test_walks_agree_with_linux(live: tuple[LiveCluster, Simulator]) -> None:
    cluster, sim = live
    mode = sim.cluster.config.network
    a = cluster.kernel_ns("pod:default/a")
    cases = CASES[mode]
    specs = [
        ProbeSpec(a, proto, dst, 53 if proto is Protocol.UDP else 80, ttl, size, df)
        for dst, proto, ttl, size, df, _v, _who in cases
    ]
    results = cluster.run([Client(s) for s in specs])
    for (dst, proto, ttl, size, df, want, who), got in zip(cases, results, strict=True):
        case = f"{mode} {proto} {dst} ttl {ttl} size {size} df {df}"
        assert got.verdict is want, f"{case}: {got.detail}"
        assert who in got.detail, f"{case}: {got.detail}"
        port = 0 if proto is ICMP else 53 if proto is Protocol.UDP else 80
        trace = sim.probe(
            "default/a", dst, port or None, proto, ttl=ttl, size=size, df=df
        )
        assert trace.verdict is want, f"{case}: the simulator says {trace.verdict}"


@pytest.mark.parametrize("live", [NetworkMode.VXLAN], indirect=True, ids=str)
def test_a_vxlan_frame_on_the_underlay_is_148_bytes(
    live: tuple[LiveCluster, Simulator],
) -> None:
    cluster, _sim = live
    with netns.inside(cluster.kernel_ns("node-2")):
        tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    with tap:
        tap.bind(("eth0", 0))
        tap.settimeout(0.5)
        [result] = cluster.run(
            [Client(ProbeSpec(cluster.kernel_ns("pod:default/a"), ICMP, "10.0.2.2"))]
        )
        assert result.verdict is V.DELIVERED
        frames = []
        while True:
            try:
                frame, addr = tap.recvfrom(65535)
            except TimeoutError:
                break
            if (
                addr[2] == socket.PACKET_HOST
                and frame[12:14] == b"\x08\x00"
                and frame[23] == 17
            ):
                frames.append(frame)
    vxlan = [f for f in frames if struct.unpack("!H", f[36:38])[0] == 8472]
    assert vxlan, "no VXLAN frame reached node-2's eth0"
    frame = vxlan[0]
    assert len(frame) == 148  # 14 + 20 + 8 + 8 + 14 + 84
    assert frame[22] == 64  # outer TTL
    assert socket.inet_ntoa(frame[26:30]) == "10.100.0.2"
    assert frame[42] == 0x08 and struct.unpack("!I", frame[46:50])[0] >> 8 == 1  # VNI 1


def test_a_fabric_rebuilt_after_a_change_is_probed_again() -> None:
    sim = Simulator(tiny_cluster())
    cluster = LiveCluster(sim.fabric).start()
    try:
        moved = dict(sim.cluster.pods)
        moved["default/b"] = replace(
            moved["default/b"], node="node-2", ip=IPv4Address("10.0.2.7")
        )
        sim.update(replace(sim.cluster, pods=moved))
        cluster.update(sim.fabric)
        assert cluster.rebuilds == 1
        a = cluster.kernel_ns("pod:default/a")
        [r] = cluster.run([Client(ProbeSpec(a, ICMP, "10.0.2.7", ttl=2))])
        assert r.verdict is V.TTL_EXCEEDED  # b is across the overlay now
    finally:
        cluster.close()
    assert netns.listing(f"{cluster.run_id}-") == []


@pytest.mark.parametrize("live", [NetworkMode.ROUTED], indirect=True, ids=str)
def test_a_redirect_from_the_gateway_is_advice_not_a_verdict(
    live: tuple[LiveCluster, Simulator],
) -> None:
    # node-1 -> gateway -> node-2 leaves the gateway by the link it came in on, so Linux
    # tells node-1 (an on-link sender) of the better next hop; ping waits on, so do we.
    cluster, sim = live
    node1 = cluster.kernel_ns("node-1")
    [r] = cluster.run([Client(ProbeSpec(node1, ICMP, "10.0.2.2"))])
    assert r.verdict is V.DELIVERED, r.detail
    assert sim.probe("node/node-1", "10.0.2.2", None, ICMP).verdict is V.DELIVERED
