"""Core walk benchmarks (issue: scenarios, the cluster model and the hop-by-hop walk).

- cross-node TCP probes per second in `vxlan` mode (SYN out, SYN-ACK back, full trace kept);
- the same probe with Calico (ipip, vxlan, bgp) and its cost against flannel's (target:
  a Calico probe costs no more than a flannel one, ratio <= 1.0 per hop);
- loading and building a 100-node, 5,000-pod scenario.
Targets: >= 200 probes/s; load + build < 5 s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from dataplane.sim import Simulator
from topology.loader import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def big_scenario(nodes: int = 100, deployments: int = 50, replicas: int = 100) -> str:
    lines = [
        "name: big",
        "cluster:",
        "  network: vxlan",
        "  nodeCIDR: 10.100.0.0/16",
        "  gateway: 10.100.0.1",
        "  nodes:",
    ]
    for i in range(1, nodes + 1):
        lines.append(f"    - {{name: node-{i}, ip: 10.100.{i // 250}.{i % 250 + 2}, "
                     f"podCIDR: 10.{1 + i // 200}.{i % 200}.0/24}}")  # fmt: skip
    lines.append("manifests:")
    for d in range(deployments):
        lines += [
            "  - apiVersion: apps/v1",
            "    kind: Deployment",
            f"    metadata: {{name: web-{d}}}",
            "    spec:",
            f"      replicas: {replicas}",
            f"      selector: {{matchLabels: {{app: web-{d}}}}}",
            "      template:",
            f"        metadata: {{labels: {{app: web-{d}}}}}",
            "        spec:",
            "          containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]",
        ]
    lines += [
        "steps:",
        "  - probe: {from: default/web-0-0, to: default/web-1-0, port: 80}",
    ]
    return "\n".join(lines) + "\n"


def bench_load() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(big_scenario())
        t0 = time.perf_counter()
        scenario, _ = load_scenario(path)
        t1 = time.perf_counter()
        sim = Simulator(scenario.cluster)
        t2 = time.perf_counter()
        pods = len(scenario.cluster.pods)
        print(f"load 100-node {pods}-pod scenario: {t1 - t0:.2f} s, build fabric: "
              f"{t2 - t1:.2f} s, total {t2 - t0:.2f} s (target < 5 s)")  # fmt: skip
        t3 = time.perf_counter()
        trace = sim.probe("default/web-0-0", "default/web-1-0", 80)
        print(f"  one probe on it: {(time.perf_counter() - t3) * 1000:.1f} ms, "
              f"{trace.verdict}, {len(trace.hops)} hops")  # fmt: skip
        return t2 - t0


def _probe_rate(path: Path, n: int) -> tuple[float, int]:
    """Probes per second of default/a -> default/c:80 in `path`, and its hop count."""
    scenario, _ = load_scenario(path)
    sim = Simulator(scenario.cluster)
    sim.probe("default/a", "default/c", 80)  # warm up
    t0 = time.perf_counter()
    for _ in range(n):
        trace = sim.probe("default/a", "default/c", 80)
    return n / (time.perf_counter() - t0), len(trace.hops)


def bench_probes(n: int = 1000) -> float:
    rate, hops = _probe_rate(ROOT / "scenarios" / "cross-node-vxlan.yaml", n)
    print(f"cross-node TCP probes, vxlan, full trace: {rate:.0f} probes/s "
          f"({1000 / rate:.2f} ms each, {hops} hops; target >= 200/s)")  # fmt: skip
    return rate


def bench_calico(flannel: float, n: int = 1000) -> None:
    """The same probe on each Calico encapsulation, against flannel's vxlan."""
    for mode in ("ipip", "vxlan", "bgp"):
        rate, hops = _probe_rate(
            ROOT / "scenarios" / "calico" / f"cross-node-{mode}.yaml", n
        )
        print(f"  calico {mode}: {rate:.0f} probes/s ({hops} hops); cost per probe vs"
              f" flannel vxlan: {flannel / rate:.2f} (target <= 1.0)")  # fmt: skip


def main() -> None:
    flannel = bench_probes()
    bench_calico(flannel)
    bench_load()


if __name__ == "__main__":
    main()
