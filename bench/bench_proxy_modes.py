"""Cost of a Service probe in each kube-proxy mode (iptables, nftables, ipvs) on the same
cluster (scenarios/kube-proxy/ipvs-mode.yaml with its mode replaced); prints milliseconds
per probe and hops.

    python -m bench.bench_proxy_modes [repeat]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from dataplane.sim import Simulator
from topology.loader import load_scenario_text

SCENARIO = (
    Path(__file__).resolve().parent.parent / "scenarios/kube-proxy/ipvs-mode.yaml"
)
PROBES = [
    ("pod -> ClusterIP", "default/client", "svc/default/web", 80),
    ("node -> ClusterIP", "node/node-1", "svc/default/web", 80),
    ("external -> NodePort", "external/laptop", "node/node-2", 30080),
]


def per_probe(sim: Simulator, src: str, dst: str, port: int, repeat: int) -> float:
    """Seconds per probe, best of 3 rounds (after a warm-up probe)."""
    sim.probe(src, dst, port)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            sim.probe(src, dst, port)
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def main(repeat: int = 100) -> None:
    text = SCENARIO.read_text()
    print(f"bench_proxy_modes: {SCENARIO.name}, best of 3 x {repeat}")
    print(f"{'mode':9} {'probe':22} {'ms/probe':>9} {'hops':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("iptables", "nftables", "ipvs"):
            body = text.replace(
                "kubeProxy: {mode: ipvs}", f"kubeProxy: {{mode: {mode}}}"
            )
            scenario, _ = load_scenario_text(body, SCENARIO.name, Path(tmp))
            sim = Simulator(scenario.cluster)
            for label, src, dst, port in PROBES:
                seconds = per_probe(sim, src, dst, port, repeat)
                hops = len(sim.probe(src, dst, port).hops)
                print(f"{mode:9} {label:22} {seconds * 1e3:9.3f} {hops:5d}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
