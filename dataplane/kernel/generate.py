"""Random scenarios for the kernel oracle, and their agreement on this kernel.

`scenario(seed)` draws one scenario from a seeded `random.Random` (the same seed, the
same file), of every dataplane the simulator models: the CNI (`cluster.cni` flannel,
calico or cilium, flannel the most often) with each one's networks (flannel vxlan,
host-gw, routed; calico ipip, vxlan, bgp, sometimes with another blockSize; cilium vxlan,
geneve, native), sometimes another vxlanPort or a narrower serviceCIDR, kube-proxy's mode
(iptables, nftables, ipvs; none with cilium), the MTU, two or three nodes, external hosts,
pods in two namespaces (some hostNetwork, TCP, UDP and SCTP ports, some named, some with
a hostPort), Services of every type (ClusterIP, NodePort, LoadBalancer, headless; TCP, UDP
and SCTP; numeric and named targetPorts; traffic policies Local; sessionAffinity
ClientIP), NetworkPolicies of every feature (ingress and egress, pod and namespace
selectors, matchExpressions, ipBlock with except, ports by number, name and range), admin
policies (`generate_admin`: AdminNetworkPolicy, BaselineAdminNetworkPolicy,
ClusterNetworkPolicy), and steps of every kind: probes (TCP, UDP, SCTP, ICMP, to pods,
Services, DNS names, nodes, nodePorts, hostPorts, externals, odd addresses), matrices,
crafted sends with a TTL, a size and DF, and apply, delete and label steps between them.
About 3% are `runtime: docker` scenarios instead (`generate_docker`: Compose projects on
one or two Docker hosts), since each starts a dockerd per host.

    python -m dataplane.kernel.generate --seeds 1-1000 [--out DIR] [--timeout 1.5]

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
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dataplane.kernel.generate_admin import admin_policy, delete_name
from dataplane.kernel.generate_docker import docker_scenario
from topology.cni_modes import CNI_NETWORKS, Cni

if TYPE_CHECKING:
    from dataplane.kernel.report import Report

APPS = ("web", "api", "db")
TCP_PORTS = ((80, "http"), (8080, None))
UDP_PORTS = ((53, "dns"), (5000, None))
SCTP_PORT = 9000
ODD_ADDRESSES = ("0.0.0.0", "255.255.255.255", "224.0.0.1")
# the CNIs by weight: flannel the most often (the coverage of the first generator stays)
CNI_WEIGHTS = ((Cni.FLANNEL, 65), (Cni.CALICO, 22), (Cni.CILIUM, 13))
PROXY_MODES = ("iptables",) * 6 + ("nftables",) * 3 + ("ipvs",)
DOCKER_SHARE = 0.03  # each Docker scenario starts a dockerd per host: few of them


def _pick(rng: random.Random, seq: Any, k: int) -> list[Any]:
    return rng.sample(list(seq), min(k, len(seq)))


def _pod(
    rng: random.Random, i: int, nodes: list[str], host_ports: bool
) -> dict[str, Any]:
    """Pod `p<i>`; hostPorts only when `host_ports` (the CNI chains portmap)."""
    host = rng.random() < 0.12
    ports: list[dict[str, Any]] = []
    drawn = [(n, name, "TCP") for n, name in _pick(rng, TCP_PORTS, rng.randint(0, 2))]
    drawn += [(n, name, "UDP") for n, name in _pick(rng, UDP_PORTS, rng.randint(0, 2))]
    if rng.random() < 0.1:
        drawn.append((SCTP_PORT, None, "SCTP"))
    for number, name, protocol in drawn:
        port: dict[str, Any] = {"containerPort": number + (1000 + i if host else 0)}
        if protocol != "TCP":
            port["protocol"] = protocol
        if name and not host:
            port["name"] = name
        if host_ports and not host and protocol != "SCTP" and rng.random() < 0.12:
            # a hostPort: portmap's DNAT on the pod's node (7000+ for TCP, 7100+ UDP)
            port["hostPort"] = (7000 if protocol == "TCP" else 7100) + i
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
    protocol = rng.choice(("TCP",) * 6 + ("UDP",) * 3 + ("SCTP",))
    target: int | str
    if protocol == "TCP":
        target = rng.choice((80, 8080, "http"))
    elif protocol == "UDP":
        target = rng.choice((53, 5000, "dns"))
    else:
        target = SCTP_PORT
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


def _peer(rng: random.Random, externals: list[str], cidrs: list[str]) -> dict[str, Any]:
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
    return {"ipBlock": {"cidr": rng.choice(cidrs)}}


def _policy(
    rng: random.Random, i: int, externals: list[str], cidrs: list[str]
) -> dict[str, Any]:
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
                rule[key] = [
                    _peer(rng, externals, cidrs) for _ in range(rng.randint(1, 2))
                ]
            if rng.random() < 0.6:
                port: dict[str, Any] = {
                    "protocol": rng.choice(("TCP",) * 5 + ("UDP",) * 4 + ("SCTP",))
                }
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
    odd: list[str],
) -> dict[str, Any]:
    def key(p: dict[str, Any]) -> str:
        return f"{p['metadata']['namespace']}/{p['metadata']['name']}"

    pod_net = [p for p in pods if not p["spec"].get("hostNetwork")]
    sources = [key(p) for p in pods] + [f"node/{n}" for n in nodes]
    sources += [f"external/{e}" for e in externals]
    src = rng.choice(sources)
    protocol = rng.choice(("TCP",) * 6 + ("UDP",) * 6 + ("ICMP",) * 3 + ("SCTP",))
    dsts = [key(p) for p in pods if key(p) != src]
    dsts += [f"node/{n}" for n in nodes]
    if not src.startswith("external/"):
        dsts += [f"external/{e}" for e in externals]
        dsts += [
            f"svc/{s['metadata']['namespace']}/{s['metadata']['name']}"
            for s in services
            if s["spec"].get("clusterIP") != "None"
        ]
        dsts += odd
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
        ports = {
            "TCP": (80, 8080, 8000, 30000, 30001, 7000 + rng.randrange(7)),
            "UDP": (53, 5000, 30002, 7100 + rng.randrange(7)),
            "SCTP": (SCTP_PORT, 80, 30000),
        }[protocol]
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


def _cluster(
    rng: random.Random, nodes: list[str]
) -> tuple[dict[str, Any], list[IPv4Network]]:
    """The `cluster` block (CNI, network, kube-proxy mode, MTU, nodes) and the pod
    network of each node, in node order (what the CNI's IPAM gives it)."""
    cni = rng.choices([c for c, _ in CNI_WEIGHTS], [w for _, w in CNI_WEIGHTS])[0]
    network = rng.choice(CNI_NETWORKS[cni])
    cluster: dict[str, Any] = {
        "cni": cni.value,
        "network": network.value,
        "mtu": rng.choice((1500, 1500, 1400, 9000)),
    }
    ips = [f"10.100.0.{i + 1}" for i in range(1, len(nodes) + 1)]
    if cni is Cni.FLANNEL:
        cidrs = [IPv4Network(f"10.0.{i}.0/24") for i in range(1, len(nodes) + 1)]
        cluster["nodes"] = [
            {"name": n, "ip": ip, "podCIDR": str(c)}
            for n, ip, c in zip(nodes, ips, cidrs, strict=True)
        ]
    else:
        cluster["nodes"] = [
            {"name": n, "ip": ip} for n, ip in zip(nodes, ips, strict=True)
        ]
    if cni is Cni.CALICO:
        # Calico's IPAM: node N takes the Nth block of the pool (docs/scenario-format.md)
        block = rng.choice((26, 26, 28))
        if block != 26:
            cluster["calico"] = {"blockSize": block}
        pool = IPv4Network("192.168.0.0/16").subnets(new_prefix=block)
        cidrs = [next(pool) for _ in nodes]
    elif cni is Cni.CILIUM:
        # Cilium's cluster-pool: node N takes the Nth /24 of 10.0.0.0/8
        cidrs = [IPv4Network(f"10.0.{i}.0/24") for i in range(len(nodes))]
    if network.value == "vxlan" and rng.random() < 0.2:
        cluster["vxlanPort"] = rng.choice((4789, 8472))
    if cni is not Cni.CILIUM:  # Cilium replaces kube-proxy: `kubeProxy` is refused
        mode = rng.choice(PROXY_MODES)
        if mode != "iptables" or rng.random() < 0.3:
            cluster["kubeProxy"] = {"mode": mode}
    if rng.random() < 0.25:
        # off the node addresses (10.100.0.0/24 is inside the default 10.96.0.0/12)
        cluster["serviceCIDR"] = "10.96.0.0/16"
    return cluster, cidrs


def scenario(seed: int) -> dict[str, Any]:
    """One random scenario (YAML-ready data); the same seed gives the same scenario."""
    rng = random.Random(seed)
    if rng.random() < DOCKER_SHARE:
        return docker_scenario(rng, seed)
    n_nodes = rng.choice((2, 2, 3))
    nodes = [f"node-{i}" for i in range(1, n_nodes + 1)]
    cluster, pod_cidrs = _cluster(rng, nodes)
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
    # ipBlock/networks CIDRs: all pods' supernet, one node's pods, everything
    pool = "192.168.0.0/16" if cluster["cni"] == Cni.CALICO.value else "10.0.0.0/8"
    cidrs = [pool, str(pod_cidrs[0]), "0.0.0.0/0"]
    # odd destinations: besides these, the broadcast address of two nodes' pod networks
    odd = [*ODD_ADDRESSES, *(str(c.broadcast_address) for c in pod_cidrs[:2])]
    # hostPort needs portmap, which flannel's and Calico's manifests chain; Cilium's
    # own hostPort service is BPF (topology refuses hostPort with cni: cilium)
    host_ports = cluster["cni"] != Cni.CILIUM.value
    pods = [_pod(rng, i, nodes, host_ports) for i in range(rng.randint(3, 7))]
    services = [_service(rng, i) for i in range(rng.randint(0, 3))]
    policies = [_policy(rng, i, ext_ips, cidrs) for i in range(rng.randint(0, 3))]
    admins: list[dict[str, Any]] = []
    if rng.random() < 0.3:
        for i in range(rng.randint(1, 2)):
            admins.append(admin_policy(rng, i, cidrs, _has_baseline(admins)))
    manifests: list[dict[str, Any]] = [
        {"kind": "Namespace", "metadata": {"name": "team", "labels": {"team": "b"}}},
        *pods,
        *services,
        *policies,
        *admins,
    ]
    steps: list[dict[str, Any]] = []
    for _ in range(rng.randint(4, 10)):
        what = rng.random()
        if what < 0.7:
            steps.append(_probe(rng, pods, services, nodes, externals, odd))
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
            if rng.random() < 0.25:
                extra = admin_policy(
                    rng, 100 + len(steps), cidrs, _has_baseline(admins)
                )
                admins.append(extra)
            else:
                extra = _policy(rng, 100 + len(steps), ext_ips, cidrs)
                policies.append(extra)
            steps.append({"apply": [extra]})
        elif what < 0.95 and (policies or admins):
            if admins and (not policies or rng.random() < 0.4):
                steps.append(
                    {"delete": [delete_name(admins.pop(rng.randrange(len(admins))))]}
                )
                continue
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
        steps.append(_probe(rng, pods, services, nodes, externals, odd))
    return {
        "name": f"generated-{seed}",
        "description": f"random scenario, seed {seed} (dataplane.kernel.generate)",
        "cluster": cluster,
        "manifests": manifests,
        "steps": steps,
    }


def _has_baseline(admins: list[dict[str, Any]]) -> bool:
    return any(a["kind"] == "BaselineAdminNetworkPolicy" for a in admins)


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


@dataclass
class Tally:
    """The agreement so far: counts, the not-comparable reasons, and the seeds of the
    mismatches by the part that differs (`verdict`, `endpoint`, `route`, ...; `built` for
    what a Docker Engine made otherwise)."""

    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    by_part: dict[str, list[int]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def add(self, seed: int, report: Report) -> None:
        from dataplane.kernel.report import MISMATCH, NOT_COMPARABLE

        self.counts["scenarios"] += 1
        for row in report.rows:
            self.counts[row.status] += 1
            self.counts["parts compared"] += len(row.parts)
            if row.status == NOT_COMPARABLE:
                # the reason itself: a probe by name prefixes the DNS answer
                detail = row.kernel.detail
                start = detail.find("not comparable")
                self.reasons[detail[max(start, 0) :].split(" (")[0][:90]] += 1
            elif row.status == MISMATCH:
                differs = row.differs()
                diff = "; ".join(f"{p.name}: {p.sim} vs {p.kernel}" for p in differs)
                names = [p.name.split(" ")[0] if p.name.startswith("route ") else p.name
                         for p in differs]  # fmt: skip
                if row.kernel.verdict is not None and row.sim != row.kernel.verdict:
                    names.insert(0, "verdict")
                for name in dict.fromkeys(names):
                    self.by_part.setdefault(name, []).append(seed)
                print(
                    f"MISMATCH seed {seed} step {row.step} {row.title}: simulator "
                    f"{row.sim} ({row.sim_detail}), kernel {row.kernel.verdict} "
                    f"({row.kernel.detail}){'; ' + diff if diff else ''}",
                    flush=True,
                )
        self.counts["built parts compared"] += len(report.built)
        for part in report.built:
            if not part.agrees:
                self.counts["built differently"] += 1
                self.by_part.setdefault("built", []).append(seed)
                print(
                    f"BUILT DIFFERENTLY seed {seed} {part.name}: simulator {part.sim}, "
                    f"kernel side {part.kernel}",
                    flush=True,
                )

    @property
    def failed(self) -> bool:
        from dataplane.kernel.report import MISMATCH

        c = self.counts
        return bool(
            c[MISMATCH] or c["built differently"] or c["refused by the loader"]
            or c["refused by verify"]
        )  # fmt: skip

    def summary(self, took: float) -> None:
        """Print the agreement so far."""
        from dataplane.kernel.report import MISMATCH, NOT_COMPARABLE

        c = self.counts
        probes = c["agree"] + c[MISMATCH]
        share = f"{100 * c['agree'] / probes:.2f}%" if probes else "-"
        print(
            f"{c['scenarios']} scenarios ({c['refused by the loader']} refused by "
            f"the loader, {c['refused by verify']} by verify), "
            f"{probes + c[NOT_COMPARABLE]} probes: {c['agree']} agree "
            f"({share} of the comparable), {c[MISMATCH]} mismatch, "
            f"{c[NOT_COMPARABLE]} not comparable; {c['parts compared']} parts "
            f"compared besides the verdicts; {c['built parts compared']} built parts "
            f"compared, {c['built differently']} differ; {took:.0f} s",
            flush=True,
        )
        for why, n in self.reasons.most_common():
            print(f"  not comparable x{n}: {why}", flush=True)
        for name, seeds in sorted(self.by_part.items()):
            shown = ", ".join(str(s) for s in dict.fromkeys(seeds))
            print(f"  mismatch in {name} x{len(seeds)}: seeds {shown}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from dataplane.kernel.docker_engine import EngineError
    from dataplane.kernel.verify import verify
    from topology.errors import SimError
    from topology.loader import load_scenario_text

    ap = argparse.ArgumentParser(prog="python -m dataplane.kernel.generate")
    ap.add_argument("--seeds", default="1-20")
    ap.add_argument("--out", type=Path, help="write each scenario there")
    # 1.5 s of silence: a long batch on a loaded machine answers late, not never; and an
    # ICMP error that meets a SYN's socket locked (tcp_v4_err: sock_owned_by_user) is
    # only a soft error: connect() fails on the SYN sent again after TCP_TIMEOUT_INIT, 1 s
    # (seed 370, once in a batch at load average 15)
    ap.add_argument("--timeout", type=float, default=1.5)
    args = ap.parse_args(argv)
    tally = Tally()
    started = time.perf_counter()
    for seed in parse_seeds(args.seeds):
        body = text(seed)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"generated-{seed}.yaml").write_text(body)
        try:
            scen, _ = load_scenario_text(body, f"generated-{seed}.yaml")
        except SimError as err:  # a draw the model refuses: counted, never hidden
            tally.refused.append(f"seed {seed}: {err}")
            tally.counts["refused by the loader"] += 1
            continue
        try:
            report = verify(scen, timeout=args.timeout)
        except SimError as err:  # a scenario verify cannot run: counted, never hidden
            tally.refused.append(f"seed {seed}: {err}")
            tally.counts["refused by verify"] += 1
            continue
        except (
            EngineError
        ) as err:  # a Docker Engine that failed: counted, the run goes on
            print(f"KERNEL SIDE FAILED seed {seed}: {err}", flush=True)
            tally.refused.append(f"seed {seed}: {err}")
            tally.counts["refused by verify"] += 1
            continue
        tally.add(seed, report)
        if tally.counts["scenarios"] % 100 == 0:
            tally.summary(time.perf_counter() - started)
    tally.summary(time.perf_counter() - started)
    for line in tally.refused[:20]:
        print(f"  refused: {line}")
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
