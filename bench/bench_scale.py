"""The reachability matrix against cluster size (issue: speed at cluster scale).

Each size runs in its own process (peak memory is per process): load the generated
cluster (`bench.clusters`), build the simulator, compute the one-port matrix (TCP 8080)
with every row (`--counts`: the counts by verdict only), and print the times and the
process's peak resident memory.  Targets: 2,000 pods / 500 policies under 0.5 s; 10,000 /
10,000 under 5 s and 500 MB; 100,000 / 25,000 counts only under 60 s and 4 GB.

Run: `.venv/bin/python -m bench.bench_scale` (every size), or one size:
`.venv/bin/python -m bench.bench_scale 10000 10000 [--counts]`.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = [  # pods, policies, counts only
    (2000, 500, False),
    (2000, 2000, False),
    (10000, 10000, False),
    (100000, 25000, True),
]


def one(pods: int, policies: int, counts_only: bool) -> None:
    from bench.clusters import write_scenario
    from dataplane.matrix import compute_matrix, endpoints
    from dataplane.sim import Simulator
    from topology.loader import load_scenario
    from topology.model import Protocol

    with tempfile.TemporaryDirectory() as tmp:
        path = write_scenario(Path(tmp), pods, policies)
        t0, c0 = time.perf_counter(), time.process_time()
        scenario, _ = load_scenario(path)
    t1, c1 = time.perf_counter(), time.process_time()
    sim = Simulator(scenario.cluster)
    names = endpoints(sim, None)
    t2, c2 = time.perf_counter(), time.process_time()
    m = compute_matrix(sim, names, names, 8080, Protocol.TCP)
    if not counts_only:
        rows = len(m.rows)  # every row, as printing the grid needs them
        assert rows == len(names)
    counts = m.counts()
    t3, c3 = time.perf_counter(), time.process_time()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    what = "counts" if counts_only else "matrix"
    shown = ", ".join(f"{n} {v}" for v, n in counts.items())
    print(
        f"{len(names)} pods / {len(scenario.cluster.policies)} policies, {what} TCP "
        f"8080: {t3 - t2:.2f} s ({c3 - c2:.2f} s CPU), peak {rss:.0f} MB (load "
        f"{t1 - t0:.1f} s, {c1 - c0:.1f} s CPU; build {t2 - t1:.1f} s, "
        f"{c2 - c1:.1f} s CPU): {shown}",
        flush=True,
    )


def main() -> None:
    args = sys.argv[1:]
    if args:
        one(int(args[0]), int(args[1]), "--counts" in args)
        return
    for pods, policies, counts_only in SIZES:
        extra = ["--counts"] if counts_only else []
        cmd = [sys.executable, "-m", "bench.bench_scale", str(pods), str(policies)]
        subprocess.call([*cmd, *extra])


if __name__ == "__main__":
    main()
