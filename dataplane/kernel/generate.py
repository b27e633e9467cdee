"""Random scenarios for the kernel oracle, and their agreement on this kernel.

`scenario(seed)` draws one scenario from a seeded `random.Random` (the same seed, the
same file): the network mode, the MTU, two or three nodes, external hosts, pods in two
namespaces (some hostNetwork, TCP and UDP ports, some named), Services of every type
(ClusterIP, NodePort, LoadBalancer, headless; numeric and named targetPorts; traffic
policies Local; sessionAffinity ClientIP), NetworkPolicies of every feature (ingress and
egress, pod and namespace selectors, matchExpressions, ipBlock with except, ports by
number, name and range), and steps of every kind: probes (TCP, UDP, ICMP, to pods,
Services, DNS names, nodes, nodePorts, externals, odd addresses), matrices, crafted sends
with a TTL, a size and DF, and apply, delete and label steps between them.

    python -m dataplane.kernel.generate --seeds 1-1000 [--out DIR] [--timeout 1.0]

verifies each (`dataplane.kernel.verify`) and prints the agreement: probes that agree,
mismatches (each with its seed, step and both verdicts), and what was not comparable,
counted by reason; exit 1 on any mismatch.  `make fuzz-kernel SEEDS=1-1000` runs it;
the test suite verifies a bounded batch (tests/kernel/test_generate.py).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

MODES = ("vxlan", "host-gw", "routed")
APPS = ("web", "api", "db")
TCP_PORTS = ((80, "http"), (8080, None))
UDP_PORTS = ((53, "dns"), (5000, None))
ODD_ADDRESSES = ("0.0.0.0", "255.255.255.255", "224.0.0.1", "10.0.1.255", "10.0.2.255")


def _pick(rng: random.Random, seq: Any, k: int) -> list[Any]:
    return rng.sample(list(seq), min(k, len(seq)))


def _pod(rng: random.Random, i: int, nodes: list[str]) -> dict[str, Any]:
    host = rng.random() < 0.12
    ports: list[dict[str, Any]] = []
    for number, name in _pick(rng, TCP_PORTS, rng.randint(0, 2)):
        port: dict[str, Any] = {"containerPort": number + (1000 + i if host else 0)}
        if name and not host:
            port["name"] = name
        ports.append(port)
    for number, name in _pick(rng, UDP_PORTS, rng.randint(0, 2)):
        port = {"containerPort": number + (1000 + i if host else 0), "protocol": "UDP"}
        if name and not host:
            port["name"] = name
        ports.append(port)
    spec: dict[str, Any] = {
        "nodeName": rng.choice(nodes),
        "containers": [{"name": "c", "image": "agnhost", "ports": ports}],
    }
    if host:
        spec["hostNetwork"] = True
    labels = {"app": rng.choice(APPS)}
    if rng.random() < 0.5:
        labels["tier"] = rng.choice(("front", "back"))
    return {
        "kind": "Pod",
        "metadata": {
            "name": f"p{i}",
            "namespace": rng.choice(("default", "team")),
            "labels": labels,
        },
        "spec": spec,
    }


def _service(rng: random.Random, i: int) -> dict[str, Any]:
    kind = rng.choice(
        ("ClusterIP", "ClusterIP", "NodePort", "LoadBalancer", "headless")
    )
    protocol = rng.choice(("TCP", "TCP", "UDP"))
    target: int | str
    if protocol == "TCP":
        target = rng.choice((80, 8080, "http"))
    else:
        target = rng.choice((53, 5000, "dns"))
    port: dict[str, Any] = {
        "name": "p",
        "port": rng.choice((80, 53, 8000)),
        "targetPort": target,
        "protocol": protocol,
    }
    spec: dict[str, Any] = {"selector": {"app": rng.choice(APPS)}, "ports": [port]}
    if kind == "headless":
        spec["clusterIP"] = "None"
    else:
        spec["type"] = kind
    if kind in ("NodePort", "LoadBalancer"):
        port["nodePort"] = 30000 + i
        if rng.random() < 0.3:
            spec["externalTrafficPolicy"] = "Local"
    if kind == "LoadBalancer":
        spec["loadBalancerIP"] = f"203.0.113.{10 + i}"
    if kind != "headless" and rng.random() < 0.2:
        spec["sessionAffinity"] = "ClientIP"
    if kind == "ClusterIP" and rng.random() < 0.15:
        spec["internalTrafficPolicy"] = "Local"
    namespace = rng.choice(("default", "team"))
    return {
        "kind": "Service",
        "metadata": {"name": f"s{i}", "namespace": namespace},
        "spec": spec,
    }


def _peer(rng: random.Random, externals: list[str]) -> dict[str, Any]:
    what = rng.random()
    if what < 0.4:
        return {"podSelector": {"matchLabels": {"app": rng.choice(APPS)}}}
    if what < 0.6:
        operator = rng.choice(("In", "NotIn", "Exists"))
        expression: dict[str, Any] = {"key": "tier", "operator": operator}
        if operator != "Exists":
            expression["values"] = ["front"]
        team = rng.choice(("default", "team"))
        return {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": team}},
            "podSelector": {"matchExpressions": [expression]},
        }
    if what < 0.8 and externals:
        return {
            "ipBlock": {
                "cidr": "192.0.2.0/24",
                "except": [rng.choice(externals) + "/32"],
            }
        }
    return {"ipBlock": {"cidr": rng.choice(("10.0.0.0/8", "10.0.1.0/24", "0.0.0.0/0"))}}


def _policy(rng: random.Random, i: int, externals: list[str]) -> dict[str, Any]:
    types = rng.choice((["Ingress"], ["Egress"], ["Ingress", "Egress"]))
    spec: dict[str, Any] = {
        "podSelector": (
            {} if rng.random() < 0.2 else {"matchLabels": {"app": rng.choice(APPS)}}
        ),
        "policyTypes": types,
    }
    for kind, key in (("Ingress", "from"), ("Egress", "to")):
        if kind not in types:
            continue
        rules = []
        for _ in range(rng.randint(0, 2)):
            rule: dict[str, Any] = {}
            if rng.random() < 0.8:
                rule[key] = [_peer(rng, externals) for _ in range(rng.randint(1, 2))]
            if rng.random() < 0.6:
                port: dict[str, Any] = {"protocol": rng.choice(("TCP", "UDP"))}
                choice = rng.random()
                if choice < 0.5:
                    port["port"] = rng.choice((80, 53, 8080, 5000))
                elif choice < 0.75:
                    port["port"] = rng.choice(("http", "dns"))
                else:
                    port["port"], port["endPort"] = 5000, 8080
                rule["ports"] = [port]
            rules.append(rule)
        if kind == "Egress" and rng.random() < 0.5:  # let DNS out, as people do
            rules.append({"ports": [{"protocol": "UDP", "port": 53}]})
        spec[kind.lower()] = rules
    return {
        "kind": "NetworkPolicy",
        "metadata": {"name": f"np{i}", "namespace": rng.choice(("default", "team"))},
        "spec": spec,
    }


def _probe(
    rng: random.Random,
    pods: list[dict[str, Any]],
    services: list[dict[str, Any]],
    nodes: list[str],
    externals: list[str],
) -> dict[str, Any]:
    def key(p: dict[str, Any]) -> str:
        return f"{p['metadata']['namespace']}/{p['metadata']['name']}"

    pod_net = [p for p in pods if not p["spec"].get("hostNetwork")]
    sources = [key(p) for p in pods] + [f"node/{n}" for n in nodes]
    sources += [f"external/{e}" for e in externals]
    src = rng.choice(sources)
    protocol = rng.choice(("TCP", "TCP", "UDP", "UDP", "ICMP"))
    dsts = [key(p) for p in pods if key(p) != src]
    dsts += [f"node/{n}" for n in nodes]
    if not src.startswith("external/"):
        dsts += [f"external/{e}" for e in externals]
        dsts += [
            f"svc/{s['metadata']['namespace']}/{s['metadata']['name']}"
            for s in services
            if s["spec"].get("clusterIP") != "None"
        ]
        dsts += list(ODD_ADDRESSES)
    if src in {key(p) for p in pod_net} and services:
        s = rng.choice(services)
        same = s["metadata"]["namespace"] == src.split("/")[0]
        dsts.append(
            s["metadata"]["name"]
            if same
            else f"{s['metadata']['name']}.{s['metadata']['namespace']}"
        )
    dst = rng.choice(dsts)
    step: dict[str, Any] = {"from": src, "to": dst, "protocol": protocol}
    if protocol != "ICMP":
        ports = (
            (80, 8080, 8000, 30000, 30001) if protocol == "TCP" else (53, 5000, 30002)
        )
        step["port"] = rng.choice(ports)
    return {"probe": step}


def _send(rng: random.Random, pods: list[dict[str, Any]]) -> dict[str, Any]:
    src, dst = rng.choice(pods), rng.choice(pods)
    key = f"{dst['metadata']['namespace']}/{dst['metadata']['name']}"
    ip: dict[str, Any] = {"dst": key, "ttl": rng.choice((1, 2, 3, 64))}
    size = rng.choice((0, 0, 1400, 1480, 3000))
    if rng.random() < 0.4:
        ip["flags"] = "DF"
    proto = rng.choice(("UDP", "ICMP"))
    l4: dict[str, Any] = (
        {"UDP": {"sport": 40000 + rng.randint(0, 999), "dport": rng.choice((53, 5000))}}
        if proto == "UDP"
        else {"ICMP": {"type": 8, "id": rng.randint(1, 999)}}
    )
    packet: list[dict[str, Any]] = [{"IP": ip}, l4]
    if size:
        packet.append({"Raw": {"size": size - 28}})
    at = f"{src['metadata']['namespace']}/{src['metadata']['name']}"
    return {"send": {"at": at, "packet": packet}}


def scenario(seed: int) -> dict[str, Any]:
    """One random scenario (YAML-ready data); the same seed gives the same scenario."""
    rng = random.Random(seed)
    n_nodes = rng.choice((2, 2, 3))
    nodes = [f"node-{i}" for i in range(1, n_nodes + 1)]
    cluster: dict[str, Any] = {
        "network": rng.choice(MODES),
        "mtu": rng.choice((1500, 1500, 1400, 9000)),
        "nodes": [
            {"name": n, "ip": f"10.100.0.{i + 1}", "podCIDR": f"10.0.{i}.0/24"}
            for i, n in enumerate(nodes, 1)
        ],
    }
    externals = [f"ext{i}" for i in range(rng.randint(0, 2))]
    if externals:
        cluster["externals"] = [
            {
                "name": e,
                "ip": f"192.0.2.{10 + i}",
                "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
            }
            for i, e in enumerate(externals)
        ]
    ext_ips = [f"192.0.2.{10 + i}" for i in range(len(externals))]
    pods = [_pod(rng, i, nodes) for i in range(rng.randint(3, 7))]
    services = [_service(rng, i) for i in range(rng.randint(0, 3))]
    policies = [_policy(rng, i, ext_ips) for i in range(rng.randint(0, 3))]
    manifests: list[dict[str, Any]] = [
        {"kind": "Namespace", "metadata": {"name": "team", "labels": {"team": "b"}}},
        *pods,
        *services,
        *policies,
    ]
    steps: list[dict[str, Any]] = []
    for _ in range(rng.randint(4, 10)):
        what = rng.random()
        if what < 0.7:
            steps.append(_probe(rng, pods, services, nodes, externals))
        elif what < 0.8:
            steps.append(_send(rng, pods))
        elif what < 0.85:
            steps.append(
                {
                    "matrix": {
                        "port": rng.choice((80, 53)),
                        "protocol": rng.choice(("TCP", "UDP")),
                    }
                }
            )
        elif what < 0.9:
            extra = _policy(rng, 100 + len(steps), ext_ips)
            policies.append(extra)
            steps.append({"apply": [extra]})
        elif what < 0.95 and policies:
            gone = policies.pop(rng.randrange(len(policies)))
            steps.append(
                {
                    "delete": [
                        f"networkpolicy/{gone['metadata']['namespace']}/{gone['metadata']['name']}"
                    ]
                }
            )
        else:
            p = rng.choice(pods)
            steps.append(
                {
                    "label": {
                        "pod": f"{p['metadata']['namespace']}/{p['metadata']['name']}",
                        "set": {"app": rng.choice(APPS)},
                    }
                }
            )
    if not any("probe" in s or "send" in s or "matrix" in s for s in steps):
        steps.append(_probe(rng, pods, services, nodes, externals))
    return {
        "name": f"generated-{seed}",
        "description": f"random scenario, seed {seed} (dataplane.kernel.generate)",
        "cluster": cluster,
        "manifests": manifests,
        "steps": steps,
    }


def text(seed: int) -> str:
    """The scenario of `seed` as YAML."""
    return yaml.safe_dump(scenario(seed), sort_keys=False, width=100)


def parse_seeds(spec: str) -> list[int]:
    """`1-5,9` -> [1, 2, 3, 4, 5, 9].

    >>> parse_seeds("1-3,7")
    [1, 2, 3, 7]
    """
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def main(argv: list[str] | None = None) -> int:
    from dataplane.kernel.report import MISMATCH, NOT_COMPARABLE
    from dataplane.kernel.verify import verify
    from topology.errors import SimError
    from topology.loader import load_scenario_text

    ap = argparse.ArgumentParser(prog="python -m dataplane.kernel.generate")
    ap.add_argument("--seeds", default="1-20")
    ap.add_argument("--out", type=Path, help="write each scenario there")
    # 1 s of silence: a long batch on a loaded machine answers late, not never
    ap.add_argument("--timeout", type=float, default=1.0)
    args = ap.parse_args(argv)
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    invalid: list[str] = []
    started = time.perf_counter()
    for seed in parse_seeds(args.seeds):
        body = text(seed)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"generated-{seed}.yaml").write_text(body)
        try:
            scen, _ = load_scenario_text(body, f"generated-{seed}.yaml")
            report = verify(scen, timeout=args.timeout)
        except SimError as err:  # a draw the model refuses: counted, never hidden
            invalid.append(f"seed {seed}: {err}")
            counts["scenarios refused"] += 1
            continue
        counts["scenarios"] += 1
        for row in report.rows:
            counts[row.status] += 1
            counts["parts compared"] += len(row.parts)
            if row.status == NOT_COMPARABLE:
                reasons[row.kernel.detail.split(" (")[0][:90]] += 1
            elif row.status == MISMATCH:
                diff = "; ".join(
                    f"{p.name}: {p.sim} vs {p.kernel}" for p in row.differs()
                )
                print(
                    f"MISMATCH seed {seed} step {row.step} {row.title}: simulator "
                    f"{row.sim} ({row.sim_detail}), kernel {row.kernel.verdict} "
                    f"({row.kernel.detail}){'; ' + diff if diff else ''}",
                    flush=True,
                )
        if counts["scenarios"] % 100 == 0:
            summary(counts, reasons, time.perf_counter() - started)
    summary(counts, reasons, time.perf_counter() - started)
    for line in invalid[:20]:
        print(f"  refused: {line}")
    return 1 if counts[MISMATCH] else 0


def summary(counts: Counter[str], reasons: Counter[str], took: float) -> None:
    """The agreement so far."""
    from dataplane.kernel.report import MISMATCH, NOT_COMPARABLE

    probes = counts["agree"] + counts[MISMATCH]
    share = f"{100 * counts['agree'] / probes:.2f}%" if probes else "-"
    print(
        f"{counts['scenarios']} scenarios ({counts['scenarios refused']} refused by "
        f"the loader), {probes + counts[NOT_COMPARABLE]} probes: {counts['agree']} agree "
        f"({share} of the comparable), {counts[MISMATCH]} mismatch, "
        f"{counts[NOT_COMPARABLE]} not comparable; {counts['parts compared']} parts "
        f"compared besides the verdicts; {took:.0f} s",
        flush=True,
    )
    for why, n in reasons.most_common():
        print(f"  not comparable x{n}: {why}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
