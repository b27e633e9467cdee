"""Packet records: wire lengths equal scapy's bytes, and conversion both ways is exact."""

from __future__ import annotations

import pytest

from dataplane.packet import (
    ARP,
    ICMP,
    IP,
    SCTP,
    TCP,
    UDP,
    VXLAN,
    Ether,
    Packet,
    checksum_ok,
    from_scapy,
    to_bytes,
    to_scapy,
)

ETH = Ether("0a:58:0a:00:01:03", "0a:58:0a:00:01:01")
SYN = Packet(eth=ETH, ip=IP("10.0.1.3", "10.0.2.2", 6, df=True), l4=TCP(40000, 80, "S"))
PING = Packet(
    eth=ETH, ip=IP("10.0.1.3", "10.0.2.2", 1), l4=ICMP(8, 0, 7, 1), data=bytes(56)
)
DGRAM = Packet(
    eth=ETH, ip=IP("10.0.1.3", "10.0.2.2", 17), l4=UDP(40000, 53), data=b"hello"
)
INIT = Packet(
    eth=ETH, ip=IP("10.0.1.3", "10.0.2.2", 132), l4=SCTP(40000, 80, "INIT", 9)
)
ABORT = Packet(
    eth=ETH, ip=IP("10.0.2.2", "10.0.1.3", 132), l4=SCTP(80, 40000, "ABORT", 9)
)
ARP_REQ = Packet(
    eth=Ether("0a:58:0a:00:01:03", "ff:ff:ff:ff:ff:ff", 0x0806),
    arp=ARP(1, "0a:58:0a:00:01:03", "10.0.1.3", "00:00:00:00:00:00", "10.0.1.1"),
)
ERROR = Packet(
    eth=ETH,
    ip=IP("10.0.1.1", "10.0.1.3", 1),
    l4=ICMP(11, 0, quote=PING.l3()),
)
OUTER = Packet(
    eth=Ether("0a:58:0a:64:00:02", "0a:58:0a:64:00:03"),
    ip=IP("10.100.0.2", "10.100.0.3", 17),
    l4=UDP(50000, 8472),
    tunnel=VXLAN(1),
    inner=PING,
)

CASES = {
    "tcp-syn": SYN,
    "icmp-echo": PING,
    "udp": DGRAM,
    "sctp-init": INIT,
    "sctp-abort": ABORT,
    "arp": ARP_REQ,
    "icmp-error": ERROR,
    "vxlan": OUTER,
}


@pytest.mark.parametrize("pkt", CASES.values(), ids=CASES.keys())
def test_frame_length_is_the_wire_length(pkt: Packet) -> None:
    assert pkt.frame_len() == len(to_bytes(pkt))


def test_vxlan_frame_of_an_84_byte_ping_is_148_bytes() -> None:
    # docs/model.md (reference walks): on node 2's eth0 an 84-byte echo request is a 148-byte frame.
    assert PING.ip_len() == 84
    assert OUTER.frame_len() == 148
    raw = to_bytes(OUTER)
    assert raw[14 + 20 + 2 : 14 + 20 + 4] == (8472).to_bytes(2, "big")
    assert raw[14 + 28] == 0x08  # VXLAN flags: VNI present
    assert int.from_bytes(raw[14 + 28 + 4 : 14 + 28 + 7], "big") == 1


@pytest.mark.parametrize("pkt", [SYN, PING, DGRAM, ERROR, OUTER], ids=str)
def test_ip_checksum_holds(pkt: Packet) -> None:
    assert checksum_ok(to_bytes(pkt.l3()))


@pytest.mark.parametrize(
    "pkt",
    [SYN, PING, DGRAM, INIT, ABORT, ARP_REQ],
    ids=["syn", "ping", "udp", "init", "abort", "arp"],
)
def test_scapy_round_trip(pkt: Packet) -> None:
    assert from_scapy(to_scapy(pkt)) == pkt


def test_icmp_error_quotes_the_offending_header() -> None:
    raw = to_bytes(ERROR.l3())
    quoted = raw[28:]
    assert quoted == to_bytes(PING.l3())[: len(quoted)]
    assert raw[20] == 11


def test_summary_names_every_layer() -> None:
    assert OUTER.summary() == (
        "Ether 0a:..:02 > 0a:..:03 / IP 10.100.0.2 > 10.100.0.3 ttl 64 len 134 / "
        "UDP 50000 > 8472 / VXLAN vni 1 / Ether 0a:..:03 > 0a:..:01 / "
        "IP 10.0.1.3 > 10.0.2.2 ttl 64 len 84 / ICMP echo-request"
    )


def test_from_scapy_rejects_what_the_walk_cannot_carry() -> None:
    from scapy.layers.inet import IP as SIP

    with pytest.raises(ValueError, match="IP protocol 47 is not supported"):
        from_scapy(SIP(src="10.0.0.1", dst="10.0.0.2", proto=47))
