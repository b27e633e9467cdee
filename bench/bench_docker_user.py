"""The DOCKER-USER chain's cost in the simulator (`cluster.nodes[].dockerUser`,
dataplane/docker_user.py): the probes of scenarios/docker/docker-user.yaml walked with
the chain empty, with its 4 rules, and with 100 rules that match nothing before them
(every forwarded packet, replies too, is matched against each rule in turn); best of
ROUNDS, milliseconds per probe.

Run: `.venv/bin/python -m bench.bench_docker_user`.
"""

from __future__ import annotations

import time
from pathlib import Path

from dataplane.sim import Simulator
from topology.loader import load_scenario_text

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "docker" / "docker-user.yaml"
ROUNDS = 5
FILLER = 100
PROBES = [
    ("external/laptop", "node/host-1", 8080),
    ("external/laptop", "node/host-1", 9000),
    ("external/office", "node/host-1", 9000),
    ("container/shop-web-1", "external/laptop", 25),
    ("container/shop-web-1", "external/laptop", 443),
]


def variant(rules: str) -> Simulator:
    text = SCENARIO.read_text()
    head, rest = text.split("      dockerUser:\n", 1)
    body = rest.split("  externals:", 1)[1]
    scenario, _ = load_scenario_text(
        f"{head}      dockerUser:{rules}\n  externals:{body}", str(SCENARIO)
    )
    return Simulator(scenario.cluster)


def per_probe(sim: Simulator) -> float:
    best = float("inf")
    for src, dst, port in PROBES:  # warm: the first walks fill the caches
        sim.probe(src, dst, port, capture=False)
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for src, dst, port in PROBES:
            sim.probe(src, dst, port, capture=False)
        best = min(best, time.perf_counter() - start)
    return best / len(PROBES) * 1000


def main() -> None:
    original = SCENARIO.read_text().split("      dockerUser:\n", 1)[1]
    four = "\n" + original.split("  externals:", 1)[0].rstrip("\n")
    filler = "".join(
        f"\n        - -s 203.0.113.{i % 250 + 1} -p udp --dport {1000 + i} -j DROP"
        for i in range(FILLER)
    )
    for name, rules in (
        ("empty chain", " []"),
        ("4 rules", four),
        (f"{FILLER} + 4 rules", filler + four),
    ):
        print(f"{name:>14}: {per_probe(variant(rules)):.2f} ms per probe")


if __name__ == "__main__":
    main()
