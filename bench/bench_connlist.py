"""The whole-cluster connection list and diff at scale (issue: policy analysis).

The 2,000-pod / 200-namespace / 500-policy cluster of `bench.clusters`: `connlist` over
every protocol and port (workloads merged, external ranges included), `diff` of two such
clusters (the second drawn with another seed: other policies in every namespace),
`explain --all` on one port (every pair's decision with its rule, as blocks; the pairs
counted, not printed), and, in the same process for the ratio, today's one-port matrix
(TCP 8080).  Targets: connlist under 10 s, diff under 20 s.

Run: `.venv/bin/python -m bench.bench_connlist [PODS POLICIES]`.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    from bench.clusters import cluster_yaml
    from dataplane.conndiff import conndiff
    from dataplane.connlist import connlist
    from dataplane.explain_all import decide_all, pair_lines
    from dataplane.matrix import compute_matrix, endpoints
    from dataplane.sim import Simulator
    from topology.loader import load_scenario
    from topology.model import Protocol

    pods, policies = (
        (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (2000, 500)
    )
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a.yaml", Path(tmp) / "b.yaml"
        a.write_text(cluster_yaml(pods, policies))
        b.write_text(cluster_yaml(pods, policies, seed=8))
        sa, _ = load_scenario(a)
        sb, _ = load_scenario(b)
    sim = Simulator(sa.cluster)
    names = endpoints(sim, None)
    t0 = time.perf_counter()
    m = compute_matrix(sim, names, names, 8080, Protocol.TCP)
    t1 = time.perf_counter()
    conns = connlist(sim)
    t2 = time.perf_counter()
    d = conndiff(sa.cluster, sb.cluster)
    t3 = time.perf_counter()
    every = decide_all(sa.cluster, 8080, Protocol.TCP)
    counts = every.counts()
    t4 = time.perf_counter()
    size = sum(len(line) + 1 for line in pair_lines(every.pairs()))
    t5 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    matrix, cl, df = t1 - t0, t2 - t1, t3 - t2
    print(f"{len(names)} pods / {len(sa.cluster.policies)} policies")
    print(
        f"  matrix, one port (TCP 8080): {matrix:.2f} s ({sum(len(r) for r in m.rows)} cells)"
    )
    print(
        f"  connlist, every port:        {cl:.2f} s ({len(conns)} connections) = {cl / matrix:.1f}x the matrix"
    )
    print(
        f"  diff of two such clusters:   {df:.2f} s ({len(d.changes)} changes) = {df / matrix:.1f}x the matrix"
    )
    ea = t4 - t3
    print(
        f"  explain --all, TCP 8080:     {ea:.2f} s ({sum(counts.values())} pairs in "
        f"{len(every.blocks)} blocks) = {ea / matrix:.1f}x the matrix"
    )
    print(
        f"    and its text, every pair:  {t5 - t4:.2f} s ({size / 1e6:.0f} MB, one line "
        "per pair)"
    )
    print(f"  peak {rss:.0f} MB")


if __name__ == "__main__":
    main()
