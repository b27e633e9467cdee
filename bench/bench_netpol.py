"""NetworkPolicy benchmarks (issue #3: the per-node policy filter and the matrix).

- the 9-pod conformance model: the matrix on all 6 protocol/port combinations (target < 1 s);
- a 2,000-pod, 200-namespace, 500-policy cluster: the full 4,000,000-pair matrix for one
  port (target < 10 s), checked against walks of a sample of pairs;
- cross-node TCP probes per second with full trace in vxlan mode, policies in force
  (target >= 200/s).

Run: `.venv/bin/python bench/bench_netpol.py` (or `python -m bench`).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from bench.clusters import cluster_yaml
from dataplane.matrix import compute_matrix, endpoints, walk_matrix
from dataplane.scenario import Runner
from dataplane.sim import Simulator
from topology.loader import load_scenario
from topology.model import Protocol
from topology.scenario import ApplyStep

ROOT = Path(__file__).resolve().parent.parent
COMBOS = [
    (p, proto)
    for p in (80, 81)
    for proto in (Protocol.TCP, Protocol.UDP, Protocol.SCTP)
]


def bench_conformance() -> None:
    scenario, _ = load_scenario(ROOT / "scenarios" / "conformance" / "05-stacked.yaml")
    runner = Runner(scenario)
    first_apply = next(
        i for i, s in enumerate(scenario.steps, 1) if isinstance(s, ApplyStep)
    )
    runner.run_step(first_apply, scenario.steps[first_apply - 1])
    sim = runner.sim
    names = endpoints(sim, None)
    t0 = time.perf_counter()
    for port, proto in COMBOS:
        assert len(compute_matrix(sim, names, names, port, proto).rows) == len(names)
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    for port, proto in COMBOS:
        walk_matrix(sim, names, names, port, proto)
    walked = time.perf_counter() - t0
    print(f"conformance 9 pods, 6 protocol/port matrices: {fast * 1000:.1f} ms "
          f"(target < 1000 ms; walking all 486 pairs: {walked * 1000:.0f} ms)")  # fmt: skip


def bench_big() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(cluster_yaml(2000, 500))
        t0 = time.perf_counter()
        scenario, _ = load_scenario(path)
        t1 = time.perf_counter()
    cluster = scenario.cluster
    sim = Simulator(cluster)
    t2 = time.perf_counter()
    names = endpoints(sim, None)
    print(f"big cluster: {len(names)} pods, {len(cluster.namespaces)} namespaces, "
          f"{len(cluster.policies)} policies, {len(cluster.nodes)} nodes "
          f"(load {t1 - t0:.2f} s, build {t2 - t1:.2f} s)")  # fmt: skip
    for port in (8080, 5432):
        t0 = time.perf_counter()
        m = compute_matrix(sim, names, names, port, Protocol.TCP)
        assert len(m.rows) == len(names)  # every row (the walks per node pair too)
        took = time.perf_counter() - t0
        counts = ", ".join(f"{n} {v}" for v, n in m.counts().items())
        print(f"  matrix {len(names)}x{len(names)} TCP {port}: {took:.2f} s "
              f"(target < 10 s): {counts}")  # fmt: skip
    # The fast path must equal the walk: check a sample of pairs.
    rng = random.Random(1)
    sample = [
        (rng.randrange(len(names)), rng.randrange(len(names))) for _ in range(300)
    ]
    t0 = time.perf_counter()
    bad = 0
    for i, j in sample:
        walked = sim.probe(names[i], names[j], 5432, Protocol.TCP).verdict
        bad += walked is not m.verdict(i, j)
    took = time.perf_counter() - t0
    print(f"  {len(sample)} sampled pairs walked: {bad} disagreement(s); "
          f"{len(sample) / took:.0f} probes/s on this cluster")  # fmt: skip


def bench_walk() -> None:
    scenario, _ = load_scenario(ROOT / "scenarios" / "networkpolicy-lab.yaml")
    sim = Simulator(scenario.cluster)
    pods = scenario.cluster.pods
    pairs = [
        (src, dst)  # every cross-node pair toward the isolated httpd pods
        for src in ("dev/devpod", "default/pod1", "default/frontend")
        for dst in ("default/httpd-deployment-0", "default/httpd-deployment-1")
        if pods[src].node != pods[dst].node
    ]
    n = 600
    t0 = time.perf_counter()
    for k in range(n):
        src, dst = pairs[k % len(pairs)]
        sim.probe(src, dst, 80)
    took = time.perf_counter() - t0
    verdicts = sorted({str(sim.probe(s, d, 80).verdict) for s, d in pairs})
    print(f"lab, cross-node TCP probes to isolated pods ({', '.join(verdicts)}; vxlan, full trace): "
          f"{n / took:.0f} probes/s (target >= 200)")  # fmt: skip


def main() -> None:
    bench_conformance()
    bench_walk()
    bench_big()


if __name__ == "__main__":
    main()
