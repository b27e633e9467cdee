"""Cost of a probe by Service name (DNS exchange + connection, full trace) against a probe
by pod IP to the same backend; prints milliseconds per probe and the ratio.

    python bench/bench_services.py [repeat]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dataplane.sim import Simulator
from topology.loader import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "dns-names.yaml"
SOURCE = "shop/front"
# (label, destination, port): every probe ends at pod shop/api-0.
PROBES = [
    ("pod IP", "shop/api-0", 8080),
    ("ClusterIP (svc/shop/api)", "svc/shop/api", 80),
    ("name: api (1 DNS exchange)", "api", 80),
    ("name: api.shop (2 exchanges)", "api.shop", 80),
    ("name: api.shop.svc.cluster.local (4)", "api.shop.svc.cluster.local", 80),
    ("name: api.shop.svc.cluster.local. (1)", "api.shop.svc.cluster.local.", 80),
    ("name: nope (nxdomain, 4 exchanges)", "nope", 80),
]


def per_probe(sim: Simulator, dst: str, port: int, repeat: int) -> tuple[float, int]:
    """Seconds per probe (best of 3 rounds) and the trace's hop count."""
    hops = len(sim.probe(SOURCE, dst, port).hops)  # warm-up (imports, caches)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            sim.probe(SOURCE, dst, port)
        best = min(best, (time.perf_counter() - start) / repeat)
    return best, hops


def main(repeat: int = 200) -> None:
    scenario, _ = load_scenario(SCENARIO)
    sim = Simulator(scenario.cluster)
    base: float | None = None
    print(
        f"bench_services: probes from {SOURCE} ({SCENARIO.name}), best of 3 x {repeat}"
    )
    print(f"{'probe':40} {'ms/probe':>9} {'probes/s':>9} {'hops':>5} {'x pod IP':>9}")
    for label, dst, port in PROBES:
        seconds, hops = per_probe(sim, dst, port, repeat)
        base = base or seconds
        print(
            f"{label:40} {seconds * 1e3:9.3f} {1 / seconds:9.0f} {hops:5d} "
            f"{seconds / base:9.2f}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
