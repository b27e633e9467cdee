"""Kernel backend benchmarks (issue #5: the real kernel as the oracle).

- build and tear down a 3-node, 30-pod cluster on this kernel (namespaces, veths, bridges,
  VXLAN, routes, listeners, nftables): best of 3 rounds (target < 10 s);
- the time of one probe, kernel against simulator: the same 60 cross-node TCP probes run one
  at a time on the kernel (each waits for its SYN-ACK) and walked by the simulator; and the
  same probes run at once on the kernel (how `verify` runs them);
- `dataplane verify` of a shipped scenario, end to end.

Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), `ip`, `nft` and br_netfilter; prints why
not and exits 0 otherwise.  Run: `.venv/bin/python -m bench.bench_kernel`.
"""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from dataplane.kernel.live import LiveCluster
from dataplane.kernel.preflight import reason_not_to_run
from dataplane.kernel.probe import Client, ProbeSpec
from dataplane.kernel.verify import verify
from dataplane.sim import Simulator
from topology.loader import load_scenario
from topology.model import (
    Cluster,
    ClusterConfig,
    Container,
    ContainerPort,
    Namespace,
    NetworkMode,
    NodeSpec,
    Pod,
    Protocol,
)

ROOT = Path(__file__).resolve().parent.parent
NODES, PODS_PER_NODE = 3, 10


def cluster(mode: NetworkMode = NetworkMode.VXLAN) -> Cluster:
    """3 nodes, 10 pods each, every pod serving TCP 80 and UDP 53."""
    nodes = tuple(
        NodeSpec(
            f"node-{i}", IPv4Address(f"10.100.0.{i + 1}"), IPv4Network(f"10.0.{i}.0/24")
        )
        for i in range(1, NODES + 1)
    )
    web = (Container("web", (ContainerPort(80), ContainerPort(53, Protocol.UDP))),)
    pods = [
        Pod(
            "default",
            f"p{n.name[-1]}-{j}",
            n.name,
            n.pod_cidr.network_address + 2 + j,
            {"app": f"app-{j % 3}"},
            web,
        )
        for n in nodes
        for j in range(PODS_PER_NODE)
    ]
    namespaces = {
        "default": Namespace("default", {"kubernetes.io/metadata.name": "default"})
    }
    return Cluster(
        ClusterConfig(network=mode, nodes=nodes), namespaces, {p.key: p for p in pods}
    )


def build_and_teardown(sim: Simulator) -> tuple[float, float, int]:
    t = time.perf_counter()
    live = LiveCluster(sim.fabric).start()
    built = time.perf_counter() - t
    names = len(live.names())
    t = time.perf_counter()
    live.close()
    return built, time.perf_counter() - t, names


def main() -> None:
    why = reason_not_to_run()
    if why is not None:
        print(f"skipped: the kernel backend cannot run here: {why}")
        return
    sim = Simulator(cluster())
    rounds = [build_and_teardown(sim) for _ in range(3)]
    built, removed, names = min(rounds, key=lambda r: r[0] + r[1])
    total = built + removed
    print(
        f"build {NODES} nodes, {NODES * PODS_PER_NODE} pods ({names} namespaces): "
        f"{built:.2f} s, tear down {removed:.3f} s, total {total:.2f} s "
        f"(target < 10 s: {'ok' if total < 10 else 'MISSED'})"
    )

    pods = list(sim.cluster.pods.values())
    pairs = [(a, b) for a in pods for b in pods if a.node != b.node][::10][:60]
    live = LiveCluster(sim.fabric).start()
    try:
        t = time.perf_counter()
        one_by_one = []
        for a, b in pairs:
            spec = ProbeSpec(
                live.kernel_ns(f"pod:{a.key}"), Protocol.TCP, str(b.ip), 80
            )
            [r] = live.run([Client(spec)])
            assert r.verdict is not None and r.verdict.value == "delivered", r
            one_by_one.append(r.seconds)
        kernel_wall = time.perf_counter() - t
        specs = [
            ProbeSpec(live.kernel_ns(f"pod:{a.key}"), Protocol.TCP, str(b.ip), 80)
            for a, b in pairs
        ]
        t = time.perf_counter()
        together = live.run([Client(s) for s in specs])
        batch_wall = time.perf_counter() - t
        assert all(
            r.verdict is not None and r.verdict.value == "delivered" for r in together
        )
    finally:
        live.close()
    t = time.perf_counter()
    for a, b in pairs:
        assert sim.probe(a.key, b.key, 80).verdict is not None
    sim_each = (time.perf_counter() - t) / len(pairs)
    kernel_each = sum(one_by_one) / len(one_by_one)
    print(
        f"one probe (cross-node TCP, vxlan): kernel {kernel_each * 1e3:.2f} ms "
        f"(socket to SYN-ACK; {kernel_wall / len(pairs) * 1e3:.2f} ms with its set-up), "
        f"simulator {sim_each * 1e3:.2f} ms with full trace: ratio kernel/simulator "
        f"{kernel_each / sim_each:.2f}"
    )
    print(
        f"{len(pairs)} probes at once on the kernel: {batch_wall * 1e3:.1f} ms "
        f"({len(pairs) / batch_wall:.0f} probes/s); a probe nobody answers costs the "
        "0.5 s timeout, once per batch"
    )

    for name in ("networkpolicy-lab.yaml", "conformance/02-selectors.yaml"):
        scenario, _ = load_scenario(ROOT / "scenarios" / name)
        t = time.perf_counter()
        report = verify(scenario)
        wall = time.perf_counter() - t
        ratio = report.ratio()
        print(
            f"verify {name}: {len(report.rows)} probes, {report.count('agree')} agree, "
            f"{report.count('MISMATCH')} mismatch in {wall:.2f} s (build "
            f"{report.build_seconds:.2f} s); per answered probe kernel/simulator "
            f"{ratio:.2f}"
            if ratio
            else ""
        )


if __name__ == "__main__":
    main()
