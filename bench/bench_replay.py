"""Replay benchmark (issue: untrusted input): a 1,000,000-packet capture replayed through
the cluster of scenarios/replay-policy.yaml after its NetworkPolicy, streaming.

The capture is generated deterministically in a temporary folder: raw IP packets (link
type 101) cycling over five kinds of packet and 1,000 source ports each, so the verdicts
mix as in the scenario (client -> web:80 delivered, other -> web:80 and client -> web:53
denied-ingress, client -> other:8080 delivered on the same node, client -> other:9999
refused).  Targets: >= 1,500 packets/s, peak memory (ru_maxrss) < 300 MB.

    python -m bench.bench_replay [PACKETS]
"""

from __future__ import annotations

import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

from dataplane.packet import IP, TCP, UDP, Packet, to_bytes
from dataplane.pcap import EPOCH
from dataplane.replay import PacketResult, replay
from dataplane.scenario import Runner
from topology.loader import load_scenario
from topology.scenario import ApplyStep

ROOT = Path(__file__).resolve().parent.parent
CLIENT, OTHER, WEB = "10.0.1.2", "10.0.1.3", "10.0.2.2"
PORTS = 1000


def kinds(sport: int) -> list[Packet]:
    return [
        Packet(ip=IP(CLIENT, WEB, 6, df=True), l4=TCP(sport, 80, "S", 1)),
        Packet(ip=IP(OTHER, WEB, 6, df=True), l4=TCP(sport, 80, "S", 1)),
        Packet(ip=IP(CLIENT, WEB, 17), l4=UDP(sport, 53), data=b"q"),
        Packet(ip=IP(CLIENT, OTHER, 6, df=True), l4=TCP(sport, 8080, "S", 1)),
        Packet(ip=IP(CLIENT, OTHER, 6, df=True), l4=TCP(sport, 9999, "S", 1)),
    ]


def write_capture(path: Path, n: int) -> None:
    """`n` packets, the same bytes on every run."""
    packets = [to_bytes(p) for port in range(PORTS) for p in kinds(40000 + port)]
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for i in range(n):
            data = packets[i % len(packets)]
            f.write(struct.pack("<IIII", EPOCH + i // 1000, i % 1000, len(data),
                                len(data)) + data)  # fmt: skip


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    scenario, _ = load_scenario(ROOT / "scenarios" / "replay-policy.yaml")
    runner = Runner(scenario)
    apply = next(i for i, s in enumerate(scenario.steps, 1) if isinstance(s, ApplyStep))
    runner.run_step(apply, scenario.steps[apply - 1])  # the policy is in place
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.pcap"
        write_capture(path, n)
        size = path.stat().st_size / 1e6
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0, c0 = time.perf_counter(), time.process_time()

        def progress(p: PacketResult) -> None:
            if p.index % 100_000 == 0:
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"  {p.index:,} packets: {p.index / dt:,.0f}/s "
                      f"({p.index / cpu:,.0f} per CPU second), peak RSS {rss:.0f} MB",
                      flush=True)  # fmt: skip

        res = replay(runner.sim, path, keep=100, on_packet=progress)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = ", ".join(f"{k} {v}" for k, v in sorted(res.counts().items()))
    print(f"replay of {res.total:,} packets ({size:.0f} MB capture): {n / dt:,.0f} "
          f"packets/s ({dt:.0f} s; target >= 1,500/s; {n / cpu:,.0f} per CPU second, "
          f"as the machine is shared), peak RSS {peak:.0f} MB "
          f"(before the replay {before:.0f} MB; target < 300 MB); {counts}")  # fmt: skip


if __name__ == "__main__":
    main()
