"""Regenerate the captures that the replay scenarios replay (deterministic: the same bytes
every run).

    python scenarios/captures/make_captures.py

- node-1-cbr0.pcap, node-1-eth0.pcap: what tcpdump on node-1's cbr0 and eth0 saw of five
  conversations in the cluster of ../replay-policy.yaml before its policy (the simulator's
  own `--pcap-dir` captures of five probes);
- client-raw-ip.pcap: three packets sent by pod default/client, raw IP link type (101);
- foreign-raw-ip.pcap: two packets from 192.0.2.50, an address outside the cluster;
- affinity.pcap: six SYNs from default/client of ../kube-proxy/session-affinity.yaml to its
  ClusterIP, at the times AFFINITY gives, from the first source ports from 41000 on whose
  flow hash picks the endpoint AFFINITY names (raw IP).
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

from dataplane.flowhash import pick_index  # noqa: E402
from dataplane.packet import IP, TCP, UDP, Packet, to_bytes  # noqa: E402
from dataplane.pcap import EPOCH, write_pcaps  # noqa: E402
from dataplane.sim import Simulator  # noqa: E402
from topology.loader import load_scenario  # noqa: E402

SCENARIO = ROOT / "scenarios" / "replay-policy.yaml"
OUTPUTS = ("node-1-cbr0.pcap", "node-1-eth0.pcap", "client-raw-ip.pcap",
           "foreign-raw-ip.pcap", "affinity.pcap")  # fmt: skip
AFFINITY_SCENARIO = ROOT / "scenarios" / "kube-proxy" / "session-affinity.yaml"
# (seconds, the endpoint the flow hash alone picks): web-0 listens, web-1 refuses.
AFFINITY = [(0, 0), (50, 1), (100, 1), (150, 1), (220, 1), (230, 0)]
FLOWS = [
    ("default/client", "default/web", 80, "TCP"),
    ("default/other", "default/web", 80, "TCP"),
    ("default/client", "default/web", 53, "UDP"),
    ("default/client", "default/web", None, "ICMP"),
    ("default/client", "default/other", 8080, "TCP"),
]
LINKTYPE_RAW = 101


def write_raw_ip(
    path: Path, packets: list[Packet], seconds: list[int] | None = None
) -> None:
    """A pcap of raw IP packets (no link header), one per millisecond from EPOCH, or at
    EPOCH + `seconds`."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW)]
    for i, pkt in enumerate(packets):
        data = to_bytes(pkt)
        sec, usec = (EPOCH, i * 1000) if seconds is None else (EPOCH + seconds[i], 0)
        out.append(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)
    path.write_bytes(b"".join(out))


def write_affinity() -> None:
    """affinity.pcap (module docstring)."""
    scenario, _ = load_scenario(AFFINITY_SCENARIO)
    cluster = scenario.cluster
    client = str(cluster.pods["default/client"].ip)
    vip = str(cluster.services["default/web"].cluster_ip)
    packets, sport = [], 41000
    for _, want in AFFINITY:
        while pick_index(f"6 {client} {sport} {vip} 80", 2) != want:
            sport += 1
        packets.append(Packet(ip=IP(client, vip, 6, df=True), l4=TCP(sport, 80, "S")))
        sport += 1
    write_raw_ip(HERE / "affinity.pcap", packets, [t for t, _ in AFFINITY])


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
    write_affinity()
    for name in OUTPUTS:
        print(f"{name}: {(HERE / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
