"""Replay: every packet of a capture walks the cluster; verdicts are counted."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dataplane.packet import IP, TCP, UDP, Packet, to_bytes
from dataplane.replay import compare, read_capture, replay
from dataplane.scenario import Runner
from dataplane.trace import Verdict
from tests.io.helpers import CAPTURES, SCENARIOS, run_cli, simulator
from topology.errors import TopologyError
from topology.loader import load_scenario

SYN = Packet(ip=IP("10.0.1.3", "10.0.2.2", 6, df=True), l4=TCP(41000, 80, "S", 7))
SYNACK = Packet(
    ip=IP("10.0.2.2", "10.0.1.3", 6, df=True), l4=TCP(80, 41000, "SA", 99, 8)
)
ACK = Packet(ip=IP("10.0.1.3", "10.0.2.2", 6, df=True), l4=TCP(41000, 80, "A", 8, 100))
DNS = Packet(ip=IP("10.0.1.4", "10.0.2.2", 17), l4=UDP(41001, 53), data=b"q")


def pcap(path: Path, packets: list[bytes], linktype: int = 101) -> Path:
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    body = b"".join(
        struct.pack("<IIII", 1, i, len(p), len(p)) + p for i, p in enumerate(packets)
    )
    path.write_bytes(head + body)
    return path


def raw(*pkts: Packet) -> list[bytes]:
    return [to_bytes(p) for p in pkts]


# -- reading ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a pcap or pcapng file"),
        (b"GET / HTTP/1.1\r\n", "not a pcap or pcapng file (it starts with 47455420"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "the 24-byte file header is cut short"),
    ],
    ids=["empty", "text", "short-header"],
)
def test_not_a_capture_is_an_input_error(
    content: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(content)
    with pytest.raises(TopologyError, match=r"x\.pcap") as err:
        read_capture(path)
    assert message in str(err.value)


def test_truncated_record_is_an_input_error(tmp_path: Path) -> None:
    path = pcap(tmp_path / "t.pcap", raw(SYN, SYNACK))
    path.write_bytes(path.read_bytes()[:-5])
    cut = "truncated record: the file appears to have been cut short in the middle of a packet"
    with pytest.raises(TopologyError) as err:
        read_capture(path)
    assert str(err.value) == f"{path}: record 2 at offset 80: {cut} (51 of 56 bytes)"
    path.write_bytes(path.read_bytes()[: 24 + 16 + 40 + 7])
    with pytest.raises(TopologyError) as err:
        read_capture(path)
    assert str(err.value) == f"{path}: record 2 at offset 80: {cut} (7 of 16 bytes)"


def test_pcapng_reads_like_pcap(tmp_path: Path) -> None:
    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 101, 0, 65535))
    epbs = b"".join(
        block(6, struct.pack("<IIIII", 0, 0, i, len(p), len(p)) + p)
        for i, p in enumerate(raw(SYN, DNS))
    )
    (tmp_path / "x.pcapng").write_bytes(shb + idb + epbs)
    records = read_capture(tmp_path / "x.pcapng")
    assert [r.data for r in records] == raw(SYN, DNS)
    assert {r.linktype for r in records} == {101}


def test_linux_cooked_capture(tmp_path: Path) -> None:
    """`tcpdump -i any` writes LINKTYPE_LINUX_SLL (113): a 16-byte header, then IP."""
    sll = struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800)
    path = pcap(tmp_path / "any.pcap", [sll + b for b in raw(SYN)], linktype=113)
    res = replay(simulator(), path)
    assert [p.outcome for p in res.packets] == ["delivered"]


def test_unsupported_link_type_is_a_per_packet_error(tmp_path: Path) -> None:
    path = pcap(tmp_path / "wifi.pcap", raw(SYN), linktype=105)
    res = replay(simulator(), path)
    assert res.packets[0].outcome == "error"
    assert "link type 105 is not supported" in (res.packets[0].error or "")


# -- walking ---------------------------------------------------------------------------------


def test_packets_enter_at_the_pod_owning_their_source(tmp_path: Path) -> None:
    res = replay(simulator(), pcap(tmp_path / "x.pcap", raw(SYN, DNS)))
    assert [(p.at, p.outcome) for p in res.packets] == [
        ("default/a", "delivered"),
        ("default/b", "delivered"),
    ]
    assert res.counts() == {"delivered": 2}
    assert res.packets[0].trace is not None
    assert res.packets[0].trace.hops[0].where == "node-1 pod default/a"


def test_replies_in_a_capture_are_established(tmp_path: Path) -> None:
    """One walk state per capture: the SYN-ACK meets conntrack ESTABLISHED and reaches
    the socket that sent the SYN; the ACK after it is taken by the server."""
    res = replay(simulator(), pcap(tmp_path / "x.pcap", raw(SYN, SYNACK, ACK)))
    assert [p.outcome for p in res.packets] == ["delivered"] * 3
    synack = res.packets[1].trace
    assert synack is not None
    ct = [h.detail for h in synack.hops if h.event == "conntrack" and "tcp" in h.detail]
    assert ct and all(d.startswith("ESTABLISHED (reply direction") for d in ct)
    assert synack.hops[-1].where == "node-1 pod default/a"
    ack = res.packets[2].trace
    assert ack is not None and "takes the segment" in ack.explanation


def test_source_outside_the_cluster_is_a_per_packet_error(tmp_path: Path) -> None:
    stray = Packet(ip=IP("192.0.2.9", "10.0.2.2", 6), l4=TCP(1, 80, "S"))
    res = replay(simulator(), pcap(tmp_path / "x.pcap", raw(stray, SYN)))
    assert [p.outcome for p in res.packets] == ["error", "delivered"]
    assert "source 192.0.2.9 belongs to no pod, node or external host" in (
        res.packets[0].error or ""
    )
    again = replay(simulator(), tmp_path / "x.pcap", at="default/b")
    # each packet's own fate: both reach c's socket (the answers go astray)
    assert [p.outcome for p in again.packets] == ["delivered", "delivered"]


def test_arp_is_skipped_and_vxlan_replays_through_the_overlay(tmp_path: Path) -> None:
    """A capture of node-1's eth0 (outer VXLAN frames, ARP) replays end to end."""
    sim = simulator()
    sim.probe("default/a", "default/c", 80).to_pcap(tmp_path)
    res = replay(sim, tmp_path / "node-1_host_eth0.pcap")
    assert [p.outcome for p in res.packets] == [
        "skipped",
        "skipped",
        "delivered",
        "delivered",
    ]
    assert [p.at for p in res.packets[2:]] == ["node/node-1", "node/node-2"]
    first = res.packets[2].trace
    assert first is not None
    assert any(h.event == "decap" and h.node == "node-2" for h in first.hops)


@pytest.mark.parametrize(
    ("expect", "counts", "problems"),
    [
        ({"delivered": 2}, {"delivered": 2, "skipped": 3}, []),
        ({"denied": 2}, {"denied-egress": 1, "denied-ingress": 1}, []),
        ({"delivered": 2}, {"delivered": 1, "refused": 1},
         ["delivered: expected 2, got 1", "refused: expected 0, got 1"]),
        ({"delivered": 1}, {"delivered": 1, "error": 1}, ["error: expected 0, got 1"]),
    ],
    ids=["exact", "denied-covers-both", "mismatch", "errors-fail"],
)  # fmt: skip
def test_compare_counts(
    expect: dict[str, int], counts: dict[str, int], problems: list[str]
) -> None:
    assert compare(expect, counts) == problems


# -- the scenario step and the command ------------------------------------------------------


def test_shipped_replay_scenario() -> None:
    scenario, _ = load_scenario(SCENARIOS / "replay-policy.yaml")
    result = Runner(scenario).run()
    assert result.ok, [s.message for s in result.steps if s.failed]
    replays = [s for s in result.steps if s.kind == "replay"]
    assert replays[1].data["replay"]["counts"] == {
        "delivered": 7, "denied-ingress": 3, "skipped": 10,
    }  # fmt: skip
    assert all(t.verdict is not None for t in replays[1].traces)


def test_failed_replay_expectation_names_the_packet_and_hop(tmp_path: Path) -> None:
    text = (SCENARIOS / "replay-policy.yaml").read_text()
    text = text.replace("{delivered: 7, denied-ingress: 3}", "{delivered: 10}")
    text = text.replace("captures/", f"{CAPTURES}/")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    scenario, _ = load_scenario(path)
    step = Runner(scenario).run().steps[2]
    assert step.ok is False
    assert step.message.startswith(
        "delivered: expected 10, got 7; denied-ingress: expected 0, got 3"
    )
    assert "packet 7 IP 10.0.1.3 > 10.0.2.2" in step.message
    assert (
        "node-2 host FORWARD: netpol: denied: default/web is isolated" in step.message
    )


def test_cli_replay(tmp_path: Path) -> None:
    r = run_cli("replay", SCENARIOS / "replay-policy.yaml", "--pcap",
                CAPTURES / "client-raw-ip.pcap", "--pcap-dir", tmp_path / "out")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (
        lines[-1] == "3 packets: delivered 2, refused 1"
    )  # no policy before the steps
    assert "1 at default/client  IP 10.0.1.2 > 10.0.2.2" in lines[0]
    assert (tmp_path / "out" / "node-2_pod-default-web_eth0.pcap").is_file()


def test_cli_replay_errors(tmp_path: Path) -> None:
    r = run_cli("replay", SCENARIOS / "replay-policy.yaml", "--pcap",
                CAPTURES / "foreign-raw-ip.pcap")  # fmt: skip
    assert r.exit_code == 1
    assert "error: packet 1: source 192.0.2.50 belongs to no pod" in r.stderr
    assert r.stdout.splitlines()[-1] == "2 packets: error 2"
    r = run_cli("replay", SCENARIOS / "replay-policy.yaml", "--pcap",
                CAPTURES / "foreign-raw-ip.pcap", "--at", "default/client")  # fmt: skip
    assert r.exit_code == 0 and r.stdout.splitlines()[-1] == "2 packets: delivered 2"
    bad = tmp_path / "bad.pcap"
    bad.write_bytes((CAPTURES / "node-1-cbr0.pcap").read_bytes()[:100])
    r = run_cli("replay", SCENARIOS / "replay-policy.yaml", "--pcap", bad)
    assert r.exit_code == 2
    assert r.stderr.startswith(f"error: {bad}: record 2 at offset 82: truncated record")
    assert "Traceback" not in r.stderr + r.stdout


def test_verdict_enum_words_are_counted() -> None:
    assert Verdict.DELIVERED.value == "delivered"
