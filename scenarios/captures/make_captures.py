"""Regenerate the captures that the replay scenarios replay (deterministic: the same bytes
every run).

    python scenarios/captures/make_captures.py

- node-1-cbr0.pcap, node-1-eth0.pcap: what tcpdump on node-1's cbr0 and eth0 saw of five
  conversations in the cluster of ../replay-policy.yaml before its policy (the simulator's
  own `--pcap-dir` captures of five probes);
- client-raw-ip.pcap: three packets sent by pod default/client, raw IP link type (101);
- foreign-raw-ip.pcap: two packets from 192.0.2.50, an address outside the cluster.
"""

from __future__ import annotations

import shutil
import struct
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from dataplane.packet import IP, TCP, UDP, Packet, to_bytes  # noqa: E402
from dataplane.pcap import EPOCH, write_pcaps  # noqa: E402
from dataplane.sim import Simulator  # noqa: E402
from topology.loader import load_scenario  # noqa: E402

SCENARIO = ROOT / "scenarios" / "replay-policy.yaml"
OUTPUTS = ("node-1-cbr0.pcap", "node-1-eth0.pcap", "client-raw-ip.pcap",
           "foreign-raw-ip.pcap")  # fmt: skip
FLOWS = [
    ("default/client", "default/web", 80, "TCP"),
    ("default/other", "default/web", 80, "TCP"),
    ("default/client", "default/web", 53, "UDP"),
    ("default/client", "default/web", None, "ICMP"),
    ("default/client", "default/other", 8080, "TCP"),
]
LINKTYPE_RAW = 101


def write_raw_ip(path: Path, packets: list[Packet]) -> None:
    """A pcap of raw IP packets (no link header), one per millisecond from EPOCH."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW)]
    for i, pkt in enumerate(packets):
        data = to_bytes(pkt)
        out.append(struct.pack("<IIII", EPOCH, i * 1000, len(data), len(data)) + data)
    path.write_bytes(b"".join(out))


def main() -> None:
    for name in OUTPUTS:  # the loader wants the files to exist
        (HERE / name).touch()
    scenario, _ = load_scenario(SCENARIO)
    sim = Simulator(scenario.cluster)
    traces = [sim.probe(src, dst, port, proto) for src, dst, port, proto in FLOWS]
    with tempfile.TemporaryDirectory() as tmp:
        write_pcaps(traces, tmp)
        shutil.copy(Path(tmp) / "node-1_host_cbr0.pcap", HERE / "node-1-cbr0.pcap")
        shutil.copy(Path(tmp) / "node-1_host_eth0.pcap", HERE / "node-1-eth0.pcap")
    pods = scenario.cluster.pods
    client, web, other = (
        str(pods[f"default/{n}"].ip) for n in ("client", "web", "other")
    )
    write_raw_ip(
        HERE / "client-raw-ip.pcap",
        [
            Packet(ip=IP(client, web, 6, df=True), l4=TCP(41000, 80, "S", 7)),
            Packet(ip=IP(client, web, 17), l4=UDP(41001, 53), data=b"hello\n"),
            Packet(ip=IP(client, other, 6, df=True), l4=TCP(41002, 9999, "S", 9)),
        ],
    )
    write_raw_ip(
        HERE / "foreign-raw-ip.pcap",
        [
            Packet(ip=IP("192.0.2.50", web, 6, df=True), l4=TCP(41000, 80, "S", 7)),
            Packet(ip=IP("192.0.2.50", web, 17), l4=UDP(41001, 53), data=b"hello\n"),
        ],
    )
    for name in OUTPUTS:
        print(f"{name}: {(HERE / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
