"""Regression-runner benchmarks (issue: replay, captures, the runner and pictures).

- `dataplane test scenarios/` over every shipped scenario, wall time of the command;
- the runner's own cost: the same scenarios run through `dataplane.suite` (one line per
  step, JUnit XML, JSON records) against running them directly (`load_scenario` +
  `Runner.run`), in one process, best of several rounds.  Target: under 10% overhead.
- captures: `--pcap-dir` for a cross-node probe (frames written per second);
- `dataplane test scenarios/ -j 2` against `-j 1`, wall and CPU time (user + sys of the
  processes), interleaved, median of several rounds (target: at least 1.7x faster; only a
  machine with two idle cores can show it).
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from dataplane import render
from dataplane.junit import to_xml
from dataplane.pcap import write_pcaps
from dataplane.scenario import Runner
from dataplane.sim import Simulator
from dataplane.suite import discover, run_file
from topology.loader import load_scenario

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 5


def direct(files: list[Path]) -> float:
    t0 = time.perf_counter()
    for f in files:
        scenario, _ = load_scenario(f)
        Runner(scenario).run()
    return time.perf_counter() - t0


def through_runner(files: list[Path]) -> float:
    t0 = time.perf_counter()
    out = io.StringIO()
    runs = []
    with redirect_stdout(out):
        for f in files:
            run = run_file(f, lambda r: print(f"{r.loc} {r.title} {r.actual}"))
            runs.append(run)
            result = run.result()
            if result is not None:
                for s in result.steps:
                    json.dumps(render.step_record(result.scenario, s))
    to_xml(runs)
    return time.perf_counter() - t0


def bench_overhead(files: list[Path]) -> None:
    direct(files)  # warm up: imports, scapy layers
    d = min(direct(files) for _ in range(ROUNDS))
    r = min(through_runner(files) for _ in range(ROUNDS))
    print(f"{len(files)} scenario files, best of {ROUNDS}:")
    print(f"  direct (load + Runner.run):            {d:.3f} s")
    print(f"  through the runner (+ lines, JSON, JUnit): {r:.3f} s")
    print(f"  runner overhead: {100 * (r - d) / d:+.1f}% (target < 10%)")


DIRECT = """
from pathlib import Path
from dataplane.scenario import Runner
from dataplane.suite import discover
from topology.loader import load_scenario
for f in discover([Path("scenarios")]):
    scenario, _ = load_scenario(f)
    Runner(scenario).run()
"""


def _wall(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return wall, tail


def bench_cli() -> None:
    """Whole processes, cold: the command against a bare loop over the same files."""
    with tempfile.TemporaryDirectory() as tmp:
        cli = [str(Path(sys.executable).parent / "dataplane"), "test", "scenarios/",
               "--junit", str(Path(tmp) / "junit.xml")]  # fmt: skip
        runs = [_wall(cli) for _ in range(3)]
    bare = [_wall([sys.executable, "-c", DIRECT])[0] for _ in range(3)]
    wall, tail = min(runs)
    print(f"`dataplane test scenarios/ --junit`: {wall:.2f} s wall, best of 3 ({tail})")
    print(f"  the same scenarios in a bare Python loop: {min(bare):.2f} s wall")
    print(f"  command overhead: {100 * (wall - min(bare)) / min(bare):+.1f}%")


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a command and its children."""
    before = os.times()
    wall, _ = _wall(cmd)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def bench_jobs(rounds: int = 5) -> None:
    """`dataplane test -j 2` against `-j 1` over the shipped scenarios."""
    cli = [str(Path(sys.executable).parent / "dataplane"), "test", "scenarios/", "-q"]
    runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for _ in range(rounds):
        for jobs, out in runs.items():
            out.append(_timed([*cli, "-j", str(jobs)]))
    (w1, c1), (w2, c2) = (
        (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
        for r in runs.values()
    )
    print(f"`dataplane test scenarios/ -j N`, median of {rounds}:")
    print(f"  -j 1: {w1:.2f} s wall, {c1:.2f} s CPU")
    print(f"  -j 2: {w2:.2f} s wall, {c2:.2f} s CPU")
    print(f"  -j 2 is {w1 / w2:.2f}x as fast as -j 1 (target >= 1.7x)")


def bench_pcap() -> None:
    scenario, _ = load_scenario(ROOT / "scenarios" / "cross-node-vxlan.yaml")
    sim = Simulator(scenario.cluster)
    traces = [sim.probe("default/a", "default/c", 80) for _ in range(20)]
    frames = sum(len(t.frames) for t in traces)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_pcaps(traces, tmp)
        dt = time.perf_counter() - t0
    print(f"captures: {frames} frames of 20 probes in {dt:.3f} s ({frames / dt:.0f}/s)")


def main() -> None:
    files = discover([ROOT / "scenarios"])
    bench_cli()
    bench_overhead(files)
    bench_pcap()
    bench_jobs()


if __name__ == "__main__":
    main()
