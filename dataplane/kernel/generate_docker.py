"""Random `runtime: docker` scenarios for the scenario generator (`dataplane.kernel.generate`).

One or two Docker hosts, each running one Compose project (docs/scenario-format.md,
"compose"): services on docker0 (`network_mode: bridge`), on the project's default
network or on its own user-defined networks (one `internal`, some with a fixed subnet),
ports published on every address, on 127.0.0.1 or on a host port Docker picks (from
32768), UDP among them, and `expose`d ports.  The steps are probes between containers
(on one host and across), to the hosts' published ports (from containers, hosts and an
external host) and to the external host; no names (`verify` does not look up the
Engine's embedded DNS yet) and no apply/delete/label (errors with `runtime: docker`).
"""

from __future__ import annotations

import random
from typing import Any

SERVICES = ("web", "api", "db")


def _service(
    rng: random.Random, host_index: int, j: int, networks: list[str]
) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """A Compose service and the host ports it publishes on every address."""
    service: dict[str, Any] = {"image": "busybox"}
    what = rng.random()
    if what < 0.3:
        service["network_mode"] = "bridge"
    elif what < 0.7 and networks:
        service["networks"] = sorted(_pick(rng, networks, rng.randint(1, 2)))
    published: list[tuple[int, str]] = []
    ports: list[str] = []
    if rng.random() < 0.6:
        host_port = 8080 + 10 * host_index + j
        ports.append(f"{host_port}:80")
        published.append((host_port, "TCP"))
    if rng.random() < 0.25:
        ports.append("80")  # the host port Docker picks: 32768 upward
        published.append((32768, "TCP"))
    if rng.random() < 0.2:
        ports.append(f"127.0.0.1:{9090 + 10 * host_index + j}:80")
    if rng.random() < 0.25:
        host_port = 5353 + 10 * host_index + j
        ports.append(f"{host_port}:53/udp")
        published.append((host_port, "UDP"))
    if ports:
        service["ports"] = ports
    if rng.random() < 0.5:
        service["expose"] = [rng.choice(("5000", "53/udp"))]
    return service, published


def _pick(rng: random.Random, seq: list[str], k: int) -> list[str]:
    return rng.sample(seq, min(k, len(seq)))


def docker_scenario(rng: random.Random, seed: int) -> dict[str, Any]:
    """One random Docker scenario (YAML-ready data)."""
    hosts = ["host-1", "host-2"] if rng.random() < 0.4 else ["host-1"]
    externals = ["laptop"] if rng.random() < 0.5 else []
    cluster: dict[str, Any] = {
        "runtime": "docker",
        "mtu": rng.choice((1500, 1500, 9000)),
        "nodes": [{"name": h, "ip": f"10.100.0.{i + 2}"} for i, h in enumerate(hosts)],
    }
    if externals:
        cluster["externals"] = [
            {
                "name": "laptop",
                "ip": "192.0.2.10",
                "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
            }
        ]
    compose: list[dict[str, Any]] = []
    containers: list[str] = []
    published: list[tuple[str, int, str]] = []
    for h, host in enumerate(hosts):
        project = f"p{h + 1}"
        networks: dict[str, Any] = {}
        for name in _pick(rng, ["front", "back"], rng.randint(0, 2)):
            net: dict[str, Any] = {}
            if rng.random() < 0.4:
                net["ipam"] = {
                    "config": [{"subnet": f"10.{20 + h}.{len(networks)}.0/24"}]
                }
            if name == "back" and rng.random() < 0.5:
                net["internal"] = True
            networks[name] = net
        services: dict[str, Any] = {}
        for j, name in enumerate(SERVICES[: rng.randint(2, 3)]):
            service, ports = _service(rng, h, j, list(networks))
            services[name] = service
            containers.append(f"container/{host}/{project}-{name}-1")
            published += [(host, port, protocol) for port, protocol in ports]
        entry: dict[str, Any] = {"node": host, "project": project, "services": services}
        if networks:
            entry["networks"] = networks
        compose.append(entry)
    steps = [
        _probe(rng, hosts, externals, containers, published)
        for _ in range(rng.randint(4, 9))
    ]
    return {
        "name": f"generated-{seed}",
        "description": f"random Docker scenario, seed {seed} (dataplane.kernel.generate)",
        "cluster": cluster,
        "compose": compose,
        "steps": steps,
    }


def _probe(
    rng: random.Random,
    hosts: list[str],
    externals: list[str],
    containers: list[str],
    published: list[tuple[str, int, str]],
) -> dict[str, Any]:
    sources = containers + [f"node/{h}" for h in hosts]
    sources += [f"external/{e}" for e in externals]
    src = rng.choice(sources)
    if published and rng.random() < 0.45:
        host, port, protocol = rng.choice(published)
        return {
            "probe": {
                "from": src,
                "to": f"node/{host}",
                "port": port,
                "protocol": protocol,
            }
        }
    dsts = [c for c in containers if c != src] + [f"node/{h}" for h in hosts]
    if not src.startswith("external/"):
        dsts += [f"external/{e}" for e in externals]
    protocol = rng.choice(("TCP", "TCP", "UDP", "ICMP"))
    step: dict[str, Any] = {"from": src, "to": rng.choice(dsts), "protocol": protocol}
    if protocol != "ICMP":
        step["port"] = rng.choice((80, 5000, 8080)) if protocol == "TCP" else 53
    return {"probe": step}
