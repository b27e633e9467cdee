"""Captures are untrusted input: a malformed packet is reported as malformed, with the
reason Wireshark gives, and never walked; a damaged file is an input error naming the
record and its offset; any bytes give results or such a report, never another exception."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.dissect import Malformed, dissect_ip
from dataplane.packet import to_bytes
from dataplane.replay import replay, replay_packets
from tests.io.helpers import CAPTURES, SCENARIOS, run_cli, simulator
from tests.io.test_replay import DNS, SYN, pcap
from topology.errors import TopologyError

HEAD = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)


def with_ip_len(raw: bytes, total: int) -> bytes:
    return raw[:2] + struct.pack("!H", total) + raw[4:]


SYN_B, DNS_B = to_bytes(SYN), to_bytes(DNS)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (with_ip_len(SYN_B, 16), "Bogus IP length (16, less than header length 20)"),
        (with_ip_len(SYN_B, 0), "Bogus IP length (0, less than header length 20)"),
        (with_ip_len(SYN_B, 60), "IPv4 total length exceeds packet length (40 bytes)"),
        (b"\x44" + SYN_B[1:], "Bogus IP header length (16, must be at least 20)"),
        (SYN_B[:10], "truncated IPv4 header (10 of 20 bytes)"),
        (with_ip_len(SYN_B[:30], 30), "truncated TCP header (10 of 20 bytes)"),
        (SYN_B[:32] + b"\x30" + SYN_B[33:],
         "Bogus TCP header length (12, must be at least 20)"),
        (DNS_B[:24] + struct.pack("!H", 3) + DNS_B[26:], "Bad length value 3 < 8"),
        (DNS_B[:24] + struct.pack("!H", 200) + DNS_B[26:],
         "Bad length value 200 > IP payload length"),
        (with_ip_len(DNS_B[:24], 24), "truncated UDP header (4 of 8 bytes)"),
    ],
    ids=["ip-len-16", "ip-len-0", "ip-len-60", "ihl-4", "short-ip", "short-tcp",
         "tcp-offset-3", "udp-len-3", "udp-len-200", "short-udp"],
)  # fmt: skip
def test_malformed_headers_are_named_as_wireshark_names_them(
    data: bytes, reason: str, tmp_path: Path
) -> None:
    with pytest.raises(Malformed) as err:
        dissect_ip(data)
    assert str(err.value) == reason
    res = replay(simulator(), pcap(tmp_path / "m.pcap", [data, SYN_B]))
    assert [p.outcome for p in res.packets] == ["malformed", "delivered"]
    assert res.packets[0].message == f"malformed: {reason}"
    assert res.packets[0].trace is None  # never walked


def test_a_packet_cut_by_the_snaplen_is_padded_not_malformed(tmp_path: Path) -> None:
    data = DNS_B[:30]  # 30 of 33 bytes captured; the wire carried all 33
    head = HEAD + struct.pack("<IIII", 1, 0, len(data), len(DNS_B))
    (tmp_path / "s.pcap").write_bytes(head + data)
    res = replay(simulator(), tmp_path / "s.pcap")
    assert [p.outcome for p in res.packets] == ["delivered"]


def test_udp_bytes_past_its_length_are_not_its_data() -> None:
    pkt = dissect_ip(with_ip_len(DNS_B + b"pad", len(DNS_B) + 3))
    assert pkt.data == DNS.data


def test_the_walk_packet_equals_scapys_reading() -> None:
    from scapy.layers.inet import IP as SIP

    from dataplane.packet import from_scapy

    for raw in (SYN_B, DNS_B):
        assert dissect_ip(raw) == from_scapy(SIP(raw))


CUT = "truncated record: the file appears to have been cut short in the middle of a packet"
DAMAGED = "the file appears to be damaged or corrupt"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (HEAD + struct.pack("<IIII", 1, 0, 300_000, 300_000),
         f"record 1 at offset 24: {DAMAGED} (pcap: File has 300000-byte packet, "
         "bigger than maximum of 262144)"),
        (HEAD + struct.pack("<IIII", 1, 0, 40, 20) + SYN_B,
         f"record 1 at offset 24: {DAMAGED} (pcap: captured length 40 is bigger than "
         "the length on the wire 20)"),
        (HEAD + struct.pack("<IIII", 1, 0, 40, 40) + SYN_B + b"\x01\x02",
         f"record 2 at offset 80: {CUT} (2 of 16 bytes)"),
        (HEAD + struct.pack("<IIII", 1, 0, 40, 40) + SYN_B[:7],
         f"record 1 at offset 24: {CUT} (23 of 56 bytes)"),
        (HEAD[:4] + struct.pack("<H", 7) + HEAD[6:],
         f"file header: {DAMAGED} (pcap: major version 7 unsupported)"),
    ],
    ids=["huge-record", "caplen-over-wirelen", "cut-header", "cut-data", "version"],
)  # fmt: skip
def test_a_damaged_pcap_is_an_input_error(
    content: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "d.pcap"
    path.write_bytes(content)
    with pytest.raises(TopologyError) as err:
        replay(simulator(), path)
    assert str(err.value) == f"{path}: {message}"
    r = run_cli("replay", SCENARIOS / "replay-policy.yaml", "--pcap", path)
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == f"error: {path}: {message}\n"


def test_pcap_magic_then_random_bytes_is_not_zero_packets(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "r.pcap"
    path.write_bytes(HEAD[:4] + rng.randbytes(2000))
    with pytest.raises(TopologyError, match=DAMAGED):
        replay(simulator(), path)


def test_a_damaged_pcapng_block_is_an_input_error(tmp_path: Path) -> None:
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack(
        "<I", 28
    )
    bad = struct.pack("<II", 6, 1_000_000_000)
    (tmp_path / "x.pcapng").write_bytes(shb + bad)
    with pytest.raises(TopologyError) as err:
        replay(simulator(), tmp_path / "x.pcapng")
    assert str(err.value) == (
        f"{tmp_path / 'x.pcapng'}: block at offset 28: {DAMAGED} (pcapng: block length "
        "1000000000 is not a multiple of 4 between 12 and 16777216)"
    )


def test_the_cli_reports_malformed_packets(tmp_path: Path) -> None:
    path = pcap(tmp_path / "m.pcap", [with_ip_len(SYN_B, 16), SYN_B])
    r = run_cli("replay", SCENARIOS / "replay-policy.yaml", "--pcap", path,
                "--at", "default/client")  # fmt: skip
    assert r.exit_code == 1
    assert (
        "error: packet 1: malformed: Bogus IP length (16, less than header length 20)"
        in r.stderr
    )
    assert r.stdout.splitlines()[-1] == "2 packets: delivered 1, malformed 1"


# -- memory stays flat -------------------------------------------------------------------------


def test_only_the_first_packets_and_the_problems_keep_their_traces(
    tmp_path: Path,
) -> None:
    bad = with_ip_len(SYN_B, 16)
    path = pcap(tmp_path / "x.pcap", [SYN_B] * 30 + [bad] + [SYN_B] * 5)
    res = replay(simulator(), path, keep=10)
    assert res.total == 36 and res.counts() == {"delivered": 35, "malformed": 1}
    assert [p.index for p in res.packets] == [*range(1, 11), 31]
    assert len(res.traces) == 10


# -- the fuzzer ------------------------------------------------------------------------------

SEEDS = sorted(CAPTURES.glob("*.pcap"))


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf[:cut] if cut is not None else buf)


RECORD = st.binary(max_size=120)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(["records", "mutated"]),
    records=st.lists(st.tuples(RECORD, st.integers(0, 3)), max_size=6),
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 255)), max_size=8),
    cut=st.none() | st.integers(0, 2000),
    linktype=st.sampled_from([1, 101, 113, 276, 228, 105]),
)
def test_any_capture_bytes_give_results_or_a_clear_report(
    kind: str,
    records: list[tuple[bytes, int]],
    seed: Path,
    edits: list[tuple[int, int]],
    cut: int | None,
    linktype: int,
    tmp_path: Path,
) -> None:
    if kind == "records":  # a valid header, random records (some lengths lying)
        head = HEAD[:20] + struct.pack("<I", linktype)
        body = b"".join(
            struct.pack("<IIII", 1, 0, len(r) + lie * (lie == 3), len(r) + lie) + r
            for r, lie in records
        )
        content = _mutate(head + body, [], cut)
    else:  # a real capture, mutated and perhaps cut
        content = _mutate(seed.read_bytes(), edits, cut)
    path = tmp_path / "f.pcap"
    path.write_bytes(content)
    sim = simulator()
    try:
        res = replay(sim, path, at="default/a")
    except TopologyError as err:
        error = str(err)
    else:
        error = ""
    if error:
        assert error.startswith(f"{path}: ")
        return
    assert res.total == sum(res.counts().values())
    for p in res.packets:
        if p.outcome in ("malformed", "error", "skipped"):
            assert p.message and p.trace is None
        else:
            assert p.trace is not None


def test_replay_takes_an_iterator(tmp_path: Path) -> None:
    from dataplane.replay import iter_capture

    path = pcap(tmp_path / "x.pcap", [SYN_B, DNS_B])
    res = replay_packets(simulator(), iter_capture(path), keep=0)
    assert (res.total, res.packets) == (2, [])


def test_a_replay_step_keeps_keeptraces_packets_and_the_problems(
    tmp_path: Path,
) -> None:
    from dataplane.scenario import Runner
    from topology.loader import load_scenario

    bad = with_ip_len(SYN_B, 16)
    pcap(tmp_path / "x.pcap", [SYN_B] * 5 + [bad] + [SYN_B] * 3)
    text = (SCENARIOS / "ttl-lesson.yaml").read_text().split("steps:")[0]
    path = tmp_path / "s.yaml"
    path.write_text(text + "steps:\n"
                    "  - replay: {pcap: x.pcap, at: default/a, keepTraces: 2, "
                    "expect: {refused: 8}}\n")  # fmt: skip
    scenario, _ = load_scenario(path)
    step = Runner(scenario).run().steps[0]
    data = step.data["replay"]
    assert [p["index"] for p in data["packets"]] == [1, 2, 6]
    assert data["total"] == 9 and len(step.traces) == 2
    assert step.ok is False
    from dataplane.render import minimal_step

    assert minimal_step(step).splitlines()[1:5] == [
        "packet 1 at default/a: refused",
        "packet 2 at default/a: refused",
        "packet 6 at -: malformed",
        "(6 more packets counted, not listed: keepTraces lists more)",
    ]
    assert step.message == (
        "malformed: expected 0, got 1; packet 6 IP 10.0.1.3 > 10.0.2.2 proto 6 len 40: "
        "malformed: Bogus IP length (16, less than header length 20)"
    )


def test_the_command_shows_keep_traces_traces(tmp_path: Path) -> None:
    path = pcap(tmp_path / "x.pcap", [SYN_B] * 3)
    r = run_cli("replay", SCENARIOS / "replay-policy.yaml", "--pcap", path, "--at",
                "default/client", "--format", "minimal", "--keep-traces", "1")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [x for x in lines if x.startswith("# replay")] == [
        "# replay #1 at default/client: IP 10.0.1.3 > 10.0.2.2 ttl 64 len 40 DF / TCP "
        "41000 > 80 S [vxlan]"
    ]
    assert lines[-4:] == ["packet 1 at default/client: delivered",
                          "packet 2 at default/client: delivered",
                          "packet 3 at default/client: delivered",
                          "3 packets: delivered 3"]  # fmt: skip


@pytest.mark.parametrize(
    ("linktype", "frame", "reason"),
    [
        (1, b"\x01\x02\x03", "truncated Ethernet header (3 of 14 bytes)"),
        (1, bytes(12) + b"\x81\x00\x00", "truncated 802.1Q tag"),
        (113, b"\x00" * 5, "truncated Linux cooked header (5 of 16 bytes)"),
        (276, b"\x08\x00", "truncated Linux cooked header (2 of 20 bytes)"),
        (101, b"\x45", "truncated IPv4 header (1 of 20 bytes)"),
        (101, b"\x15" + bytes(19), "Bogus IP version (1)"),
    ],
    ids=["ether", "vlan", "sll", "sll2", "raw-ip", "raw-version"],
)
def test_short_link_headers_are_malformed_not_struct_errors(
    linktype: int, frame: bytes, reason: str, tmp_path: Path
) -> None:
    res = replay(simulator(), pcap(tmp_path / "s.pcap", [frame], linktype=linktype))
    assert [(p.outcome, p.message) for p in res.packets] == [
        ("malformed", f"malformed: {reason}")
    ]


def test_a_skipped_arp_frame_is_described() -> None:
    res = replay(simulator(), CAPTURES / "node-1-cbr0.pcap")
    assert res.packets[0].outcome == "skipped"
    assert res.packets[0].summary.endswith("/ ARP who-has 10.0.1.1 tell 10.0.1.2")


def test_a_replay_expectation_counts_malformed_packets(tmp_path: Path) -> None:
    from dataplane.scenario import Runner
    from topology.loader import load_scenario

    bad = with_ip_len(
        SYN_B, 16
    )  # Wireshark: "Bogus IP length (16, less than header length 20)"
    pcap(tmp_path / "m.pcap", [bad, SYN_B])
    head = (SCENARIOS / "replay-policy.yaml").read_text().split("steps:")[0]
    for expect, ok in (
        ("{malformed: 1, delivered: 1}", True),
        ("{delivered: 1}", False),
    ):
        path = tmp_path / "s.yaml"
        path.write_text(
            head + f"steps:\n  - replay: {{pcap: m.pcap, expect: {expect}}}\n"
        )
        scenario, _ = load_scenario(path)
        step = Runner(scenario).run().steps[0]
        assert step.ok is ok, step.message
        if not ok:
            assert step.message.startswith("malformed: expected 0, got 1")
