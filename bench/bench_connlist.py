"""The whole-cluster connection list and diff at scale (issue: policy analysis).

The 2,000-pod / 200-namespace / 500-policy cluster of `bench.clusters`: `connlist` over
every protocol and port (workloads merged, external ranges included), `diff` of two such
clusters (the second drawn with another seed: other policies in every namespace),
`explain --all` on one port (every pair's decision with its rule, as blocks; the pairs
counted, not printed), and, in the same process for the ratio, today's one-port matrix
(TCP 8080); then the same cluster with ADMIN (500) admin policies added
(AdminNetworkPolicies, ClusterNetworkPolicies of both tiers, the
BaselineAdminNetworkPolicy: `bench.clusters.admin_policies`), its connlist beside the one
without them.  Targets: connlist under 10 s (under 15 s with the admin policies), diff
under 20 s.

Run: `.venv/bin/python -m bench.bench_connlist [PODS POLICIES [ADMIN]]`.
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
    admin = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a.yaml", Path(tmp) / "b.yaml"
        c = Path(tmp) / "c.yaml"
        a.write_text(cluster_yaml(pods, policies))
        b.write_text(cluster_yaml(pods, policies, seed=8))
        c.write_text(cluster_yaml(pods, policies, admin=admin))
        sa, _ = load_scenario(a)
        sb, _ = load_scenario(b)
        sc, _ = load_scenario(c)
    sim = Simulator(sa.cluster)
    names = endpoints(sim, None)
    t0, c0 = time.perf_counter(), time.process_time()
    m = compute_matrix(sim, names, names, 8080, Protocol.TCP)
    t1, c1 = time.perf_counter(), time.process_time()
    conns = connlist(sim)
    t2, c2 = time.perf_counter(), time.process_time()
    d = conndiff(sa.cluster, sb.cluster)
    t3, c3 = time.perf_counter(), time.process_time()
    every = decide_all(sa.cluster, 8080, Protocol.TCP)
    counts = every.counts()
    t4, c4 = time.perf_counter(), time.process_time()
    size = sum(len(line) + 1 for line in pair_lines(every.pairs()))
    t5, c5 = time.perf_counter(), time.process_time()
    conns_admin = connlist(Simulator(sc.cluster))
    t6, c6 = time.perf_counter(), time.process_time()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    matrix, cl, df = t1 - t0, t2 - t1, t3 - t2
    cpu = [c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4, c6 - c5]  # on a shared machine
    print(f"{len(names)} pods / {len(sa.cluster.policies)} policies")
    print(
        f"  matrix, one port (TCP 8080): {matrix:.2f} s ({sum(len(r) for r in m.rows)} cells; CPU {cpu[0]:.2f} s)"
    )
    print(
        f"  connlist, every port:        {cl:.2f} s ({len(conns)} connections; CPU {cpu[1]:.2f} s) = {cl / matrix:.1f}x the matrix"
    )
    print(
        f"  diff of two such clusters:   {df:.2f} s ({len(d.changes)} changes; CPU {cpu[2]:.2f} s) = {df / matrix:.1f}x the matrix"
    )
    ea = t4 - t3
    print(
        f"  explain --all, TCP 8080:     {ea:.2f} s ({sum(counts.values())} pairs in "
        f"{len(every.blocks)} blocks; CPU {cpu[3]:.2f} s) = {ea / matrix:.1f}x the matrix"
    )
    print(
        f"    and its text, every pair:  {t5 - t4:.2f} s ({size / 1e6:.0f} MB, one line "
        "per pair)"
    )
    tiers = t6 - t5
    print(
        f"  connlist with {len(sc.cluster.admin_policies)} admin policies: {tiers:.2f} s "
        f"({len(conns_admin)} connections; CPU {cpu[5]:.2f} s) = {tiers / matrix:.1f}x "
        f"the matrix, beside {cl:.2f} s (CPU {cpu[1]:.2f} s) without them"
    )
    print(f"  peak {rss:.0f} MB")


if __name__ == "__main__":
    main()
