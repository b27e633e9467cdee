"""`dataplane verify` at scale, and what a killed run leaves behind.

- a generated cluster (`bench/scale.py`: 50 nodes, 1,000 pods, 300 probes, seed 1; 1,053
  namespaces): mismatches (target 0), build time, teardown time, probes per second during
  the probes, ARP entries the kernel refused (`table_fulls` of /proc/net/stat/arp_cache);
- SIGKILL of a running `verify`, then a new run: the namespaces with the killed run's
  prefix before the kill, after it, and after the new run (target 0: the new run reaps
  them, as its owner record proves the killed process gone).

Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), `ip`, `nft` and br_netfilter; prints why
not and exits 0 otherwise.  Run: `.venv/bin/python -m bench.bench_kernel_scale
[--nodes 50 --pods 1000 --probes 300 --seed 1]`.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.scale import scenario_text
from dataplane.kernel import netns, owner
from dataplane.kernel.preflight import reason_not_to_run
from dataplane.kernel.verify import verify
from topology.loader import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def at_scale(nodes: int, pods: int, probes: int, seed: int, tmp: Path) -> None:
    path = tmp / "scale.yaml"
    path.write_text(scenario_text(nodes, pods, probes, seed))
    scenario, _ = load_scenario(path)
    overflows = netns.neighbour_overflows()
    t = time.perf_counter()
    report = verify(scenario)
    wall = time.perf_counter() - t
    probing = wall - report.build_seconds - report.teardown_seconds
    refused = netns.neighbour_overflows() - overflows
    print(
        f"verify {nodes} nodes, {pods} pods ({report.namespaces} namespaces), "
        f"{len(report.rows)} probes (seed {seed}): {report.count('MISMATCH')} mismatch "
        f"(target 0), {report.count('agree')} agree; build {report.build_seconds:.1f} s, "
        f"teardown {report.teardown_seconds:.2f} s, probes {probing:.1f} s "
        f"({len(report.rows) / probing:.0f} probes/s); ARP entries refused by the "
        f"kernel: {refused}; total {wall:.1f} s"
    )


def killed_then_new_run(tmp: Path) -> None:
    path = tmp / "small.yaml"
    path.write_text(scenario_text(4, 40, 20, 2))
    lab = ROOT / "scenarios" / "networkpolicy-lab.yaml"  # has denied probes: it waits
    argv = [sys.executable, "-m", "dataplane.cli", "verify", "-q", "--timeout", "120"]
    proc = subprocess.Popen(
        [*argv, str(lab)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prefix = f"{netns.PREFIX}{proc.pid:x}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(netns.listing(prefix)) < 10:
        time.sleep(0.1)
    time.sleep(1)  # the probes are running
    before = len(netns.listing(prefix))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after_kill = len(netns.listing(prefix))
    record = any(r.run_id.startswith(prefix) for r in owner.run_sets())
    t = time.perf_counter()
    new = subprocess.run(
        [*argv[:-2], str(path)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    took = time.perf_counter() - t
    after = len(netns.listing(prefix))
    reaped = [line for line in new.stderr.splitlines() if line.startswith("reaped")]
    print(
        f"SIGKILL of a running verify: {before} namespaces with its prefix {prefix}- "
        f"before the kill, {after_kill} after it (owner record left: {record}); "
        f"after a new run ({took:.1f} s, exit {new.returncode}): {after} (target 0); "
        f"it said: {'; '.join(reaped) or 'nothing'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    why = reason_not_to_run()
    if why is not None:
        print(f"skipped: the kernel backend cannot run here: {why}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        at_scale(args.nodes, args.pods, args.probes, args.seed, Path(tmp))
        killed_then_new_run(Path(tmp))


if __name__ == "__main__":
    main()
