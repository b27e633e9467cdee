"""Core walk benchmarks (issue: scenarios, the cluster model and the hop-by-hop walk).

- cross-node TCP probes per second in `vxlan` mode (SYN out, SYN-ACK back, full trace kept);
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


def bench_probes(n: int = 1000) -> float:
    scenario, _ = load_scenario(ROOT / "scenarios" / "cross-node-vxlan.yaml")
    sim = Simulator(scenario.cluster)
    sim.probe("default/a", "default/c", 80)  # warm up
    t0 = time.perf_counter()
    for _ in range(n):
        trace = sim.probe("default/a", "default/c", 80)
    dt = time.perf_counter() - t0
    rate = n / dt
    print(f"cross-node TCP probes, vxlan, full trace: {rate:.0f} probes/s "
          f"({dt / n * 1000:.2f} ms each, {len(trace.hops)} hops; target >= 200/s)")  # fmt: skip
    return rate


def main() -> None:
    bench_probes()
    bench_load()


if __name__ == "__main__":
    main()
