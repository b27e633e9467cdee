"""Docker Engine as the kernel side of `verify` (issue #11, `runtime: docker`).

- build and tear down HOSTS Docker hosts with CONTAINERS containers each (one project per
  host on its `<project>_default` network, every container publishing one port): the
  hosts' namespaces, one dockerd each started and answering, the image imported, the
  networks and containers made, then everything killed and removed; best of 3 rounds;
- `dataplane verify` of the same scenario end to end (one probe per container, from an
  external host to its published port).

Needs root, Debian's docker.io and busybox-static; prints why not and exits 0 otherwise.
Run: `.venv/bin/python -m bench.bench_docker`.
"""

from __future__ import annotations

import time

from dataplane.kernel.docker_engine import reason_not_to_run as no_engine
from dataplane.kernel.docker_live import DockerLive
from dataplane.kernel.preflight import reason_not_to_run
from dataplane.kernel.verify import verify
from dataplane.sim import Simulator
from topology.loader import load_scenario_text
from topology.scenario import Scenario

HOSTS, CONTAINERS = 2, 5
ROUNDS = 3


def scenario() -> Scenario:
    nodes = ", ".join(
        f"{{name: host-{h}, ip: 10.100.0.{h + 1}}}" for h in range(1, HOSTS + 1)
    )
    projects = "".join(
        f"  - node: host-{h}\n    project: app{h}\n    services:\n"
        + "".join(
            f'      s{c}: {{image: x, ports: ["{8000 + c}:80"]}}\n'
            for c in range(CONTAINERS)
        )
        for h in range(1, HOSTS + 1)
    )
    probes = "".join(
        f"  - probe: {{from: external/laptop, to: node/host-{h}, port: {8000 + c}}}\n"
        for h in range(1, HOSTS + 1)
        for c in range(CONTAINERS)
    )
    text = (
        "name: bench-docker\ncluster:\n  runtime: docker\n"
        f"  nodes: [{nodes}]\n  externals: [{{name: laptop, ip: 192.0.2.10}}]\n"
        f"compose:\n{projects}steps:\n{probes}"
    )
    loaded, _ = load_scenario_text(text, "bench-docker.yaml")
    return loaded


def main() -> None:
    why = reason_not_to_run() or no_engine()
    if why is not None:
        print(f"skipped: {why}")
        return
    sc = scenario()
    builds, teardowns = [], []
    for _ in range(ROUNDS):
        sim = Simulator(sc.cluster)
        t = time.perf_counter()
        live = DockerLive(sim.fabric, "bench").start()
        builds.append(time.perf_counter() - t)
        names = len(live.names())
        t = time.perf_counter()
        live.close()
        teardowns.append(time.perf_counter() - t)
    print(
        f"build {HOSTS} Docker hosts x {CONTAINERS} containers ({names} namespaces):"
        f" best {min(builds):.2f} s, rounds {', '.join(f'{b:.2f}' for b in builds)}"
    )
    print(f"teardown: best {min(teardowns):.2f} s")
    t = time.perf_counter()
    report = verify(sc)
    took = time.perf_counter() - t
    print(
        f"verify end to end: {took:.2f} s, {len(report.rows)} probes,"
        f" {report.count('agree')} agree, {len(report.built)} built parts,"
        f" {sum(1 for p in report.built if not p.agrees)} differ"
    )


if __name__ == "__main__":
    main()
