"""Captures: one pcap per device, as tcpdump on that device would have seen the walk."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import rdpcap

from dataplane.fabric import veth_name
from dataplane.pcap import EPOCH, capture_name, netns_name
from dataplane.trace import Frame, Trace
from tests.io.helpers import SCENARIOS, run_cli, simulator
from topology.model import NetworkMode

A_ETH0 = "node-1_pod-default-a_eth0.pcap"
A_VETH = f"node-1_host_{veth_name('default/a')}.pcap"


@pytest.fixture(scope="module")
def ping(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trace, Path]:
    """A cross-node ping a -> c in vxlan mode, captured on every device."""
    trace = simulator().probe("default/a", "default/c", protocol="ICMP")
    out = tmp_path_factory.mktemp("ping")
    trace.to_pcap(out)
    return trace, out


def echo(packets: list, type_: int = 8) -> list:
    """The frames carrying an echo request (8) or reply (0), outer or inner."""
    return [p for p in packets if ICMP in p and p[ICMP].type == type_]


@pytest.mark.parametrize(
    ("netns", "name"),
    [
        ("pod:default/a", "pod-default-a"),
        ("node-1", "host"),
        ("external:web", "external-web"),
        ("gateway", "gateway"),
    ],
)
def test_netns_part_of_the_file_name(netns: str, name: str) -> None:
    assert netns_name(netns) == name


def test_file_names_are_node_netns_device(ping: tuple[Trace, Path]) -> None:
    _trace, out = ping
    names = {p.name for p in out.iterdir()}
    assert {
        A_ETH0,
        A_VETH,
        "node-1_host_cbr0.pcap",
        "node-1_host_flannel.1.pcap",
        "node-1_host_eth0.pcap",
        "node-2_host_eth0.pcap",
        "node-2_host_flannel.1.pcap",
        "node-2_pod-default-c_eth0.pcap",
        "gateway_gateway_eth0.pcap",
    } <= names
    assert capture_name(Frame(1, "external", "external:web", "eth0", None)) == (  # type: ignore[arg-type]
        "external_external-web_eth0.pcap"
    )


def test_node_eth0_shows_the_148_byte_vxlan_frame(ping: tuple[Trace, Path]) -> None:
    """docs/model.md (reference walks): an 84-byte echo request is a 148-byte frame on node-2's eth0."""
    _trace, out = ping
    for node, src, dst in (
        ("node-1", "10.100.0.2", "10.100.0.3"),
        ("node-2", "10.100.0.2", "10.100.0.3"),
    ):
        frames = echo(list(rdpcap(str(out / f"{node}_host_eth0.pcap"))))
        assert len(frames) == 1
        f = frames[0]
        assert len(bytes(f)) == 148
        assert (f[IP].src, f[IP].dst, f[IP].ttl) == (src, dst, 64)
        assert f[UDP].dport == 8472
        inner = Ether(bytes(f[UDP].payload)[8:])
        assert bytes(f[UDP].payload)[0] & 0x08  # VXLAN flag I
        assert int.from_bytes(bytes(f[UDP].payload)[4:7], "big") == 1  # VNI 1
        assert (inner[IP].src, inner[IP].dst, inner[IP].ttl) == (
            "10.0.1.3",
            "10.0.2.2",
            63,
        )
        assert len(bytes(inner)) == 98


def test_flannel_shows_the_inner_frame(ping: tuple[Trace, Path]) -> None:
    _trace, out = ping
    frames = list(rdpcap(str(out / "node-1_host_flannel.1.pcap")))
    request = echo(frames)
    assert len(request) == 1 and VXLAN not in request[0] and UDP not in request[0]
    assert len(bytes(request[0])) == 98
    assert request[0][Ether].dst == "0a:58:0a:00:02:00"  # node-2's flannel.1
    assert request[0][IP].ttl == 63  # after node-1's ip_forward
    assert len(echo(frames, 0)) == 1  # the reply comes back through it


def test_pod_eth0_and_its_host_veth_show_the_same_frames(
    ping: tuple[Trace, Path],
) -> None:
    _trace, out = ping
    pod = [bytes(p) for p in rdpcap(str(out / A_ETH0))]
    veth = [bytes(p) for p in rdpcap(str(out / A_VETH))]
    assert pod == veth
    kinds = [("ARP" if ARP in Ether(b) else Ether(b)[ICMP].type) for b in pod]
    assert kinds == ["ARP", "ARP", 8, 0]  # who-has the gateway, is-at, request, reply


def test_ttl_hop_by_hop(ping: tuple[Trace, Path]) -> None:
    """Two routers on the way: 64 in pod a, 63 between the nodes, 62 into pod c."""
    _trace, out = ping
    ttl = {
        f: echo(list(rdpcap(str(out / f))))[0][IP].ttl
        for f in (
            A_ETH0,
            "node-1_host_cbr0.pcap",
            "node-2_host_flannel.1.pcap",
            "node-2_host_cbr0.pcap",
            "node-2_pod-default-c_eth0.pcap",
        )
    }
    assert list(ttl.values()) == [64, 64, 63, 62, 62]


def test_flooded_frames_reach_pods_that_ignore_them(ping: tuple[Trace, Path]) -> None:
    """cbr0 floods pod a's ARP broadcast to b's port: b's capture has it."""
    _trace, out = ping
    frames = list(rdpcap(str(out / "node-1_pod-default-b_eth0.pcap")))
    assert len(frames) == 1 and frames[0][ARP].pdst == "10.0.1.1"
    gw = list(rdpcap(str(out / "gateway_gateway_eth0.pcap")))
    assert [f[ARP].pdst for f in gw] == ["10.100.0.3"]  # the underlay's broadcast


def test_timestamps_are_the_hop_numbers(ping: tuple[Trace, Path]) -> None:
    trace, out = ping
    frames = list(rdpcap(str(out / A_ETH0)))
    xmit = next(h for h in trace.hops if h.event == "xmit" and h.device == "eth0")
    assert float(frames[0].time) == pytest.approx(EPOCH + xmit.seq * 1e-6, abs=1e-7)
    assert [float(f.time) for f in frames] == sorted(float(f.time) for f in frames)


def test_captures_are_byte_identical_across_runs(tmp_path: Path) -> None:
    for name in ("one", "two"):
        simulator().probe("default/a", "default/c", 80).to_pcap(tmp_path / name)
    one = sorted((tmp_path / "one").iterdir())
    assert one and all(
        p.read_bytes() == (tmp_path / "two" / p.name).read_bytes() for p in one
    )


def test_every_walk_gets_its_own_second(tmp_path: Path) -> None:
    from dataplane.pcap import write_pcaps

    sim = simulator()
    traces = [sim.probe("default/a", "default/c", 80) for _ in range(2)]
    write_pcaps(traces, tmp_path)
    times = [float(p.time) for p in rdpcap(str(tmp_path / A_ETH0))]
    assert [int(t) - EPOCH for t in times] == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("mode", [NetworkMode.HOST_GW, NetworkMode.ROUTED])
def test_no_encapsulation_without_vxlan(mode: NetworkMode, tmp_path: Path) -> None:
    counts = simulator(mode).probe("default/a", "default/c", 80).to_pcap(tmp_path)
    assert not any("flannel" in name for name in counts)
    syn = [p for p in rdpcap(str(tmp_path / "node-1_host_eth0.pcap")) if TCP in p]
    assert syn[0][IP].dst == "10.0.2.2" and UDP not in syn[0]
    if mode is NetworkMode.ROUTED:
        gw = [
            p for p in rdpcap(str(tmp_path / "gateway_gateway_eth0.pcap")) if TCP in p
        ]
        assert len(gw) == 4  # in and out, both directions


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_captures(ping: tuple[Trace, Path]) -> None:
    _trace, out = ping
    r = subprocess.run(
        [
            "tshark",
            "-r",
            str(out / "node-2_host_eth0.pcap"),
            "-d",
            "udp.port==8472,vxlan",
            "-Y",
            "icmp",
            "-T",
            "fields",
            "-e",
            "frame.len",
            "-e",
            "vxlan.vni",
            "-e",
            "ip.ttl",
            "-e",
            "icmp.type",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.splitlines() == ["148\t1\t64,63\t8", "148\t1\t64,63\t0"]


def test_run_pcap_dir(tmp_path: Path) -> None:
    r = run_cli("run", SCENARIOS / "ttl-lesson.yaml", "-q", "--pcap-dir", tmp_path)
    assert r.exit_code == 0, r.stderr
    assert f"captures to {tmp_path}" in r.stderr
    frames = echo(list(rdpcap(str(tmp_path / "node-2_host_flannel.1.pcap"))))
    # steps 3 and 4 cross to node-2 (TTL 2 and 3); step 2 dies at node-1
    assert [f[IP].ttl for f in frames] == [1, 2]
