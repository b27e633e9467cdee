"""Generated clusters for the NetworkPolicy benchmarks: namespaces of 10 pods (5
Deployments of 2 replicas: web, api, db, cache, worker) with a few policies each, drawn
from six kinds that cover every peer and port form (podSelector, namespaceSelector, both,
ipBlock with except, named ports, port ranges, Ingress and Egress).

`cluster_yaml(pods, policies)` scales it: pods / 10 namespaces, `policies` spread evenly
over them, 20 nodes (a podCIDR of /16 each once a /24 would not hold the pods).
`admin=N` adds N cluster-wide policies of network-policy-api (`admin_policies`): about
half AdminNetworkPolicies, half ClusterNetworkPolicies of both tiers, and the
BaselineAdminNetworkPolicy, with every action, subject, peer and port form.

`write_scenario(folder, pods, policies)` writes it as a scenario file, its objects in
manifest files beside it when one file would pass the loader's limit per file.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from topology.include import MAX_FILE_BYTES

APPS = {  # app -> (tier, port, port name)
    "web": ("frontend", 80, "http"),
    "api": ("backend", 8080, "api"),
    "db": ("data", 5432, "postgres"),
    "cache": ("data", 6379, "redis"),
    "worker": ("backend", 9090, "metrics"),
}


def policies_of(
    ns: str, i: int, rng: random.Random, count: int, excepted: str
) -> list[str]:
    """`count` policies of namespace `ns` (index `i`), YAML flow mappings."""
    team = f"team-{rng.randrange(20)}"

    def np(name: str, spec: str) -> str:
        return (
            "  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, "
            f"metadata: {{name: {name}, namespace: {ns}}}, spec: {spec}}}"
        )

    def kinds(team: str, suffix: str) -> list[str]:
        return [
            np(f"default-deny{suffix}", "{podSelector: {}, policyTypes: [Ingress]}"),
            np(f"allow-web{suffix}", "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: http}]}]}"),
            np(f"api-from-web{suffix}", "{podSelector: {matchLabels: {app: api}}, ingress: [{from: "
               "[{podSelector: {matchLabels: {app: web}}}], ports: [{port: 8080}]}]}"),
            np(f"db-from-api{suffix}", "{podSelector: {matchLabels: {app: db}}, ingress: [{from: "
               "[{podSelector: {matchLabels: {app: api}}}, {namespaceSelector: {matchLabels: "
               f"{{team: {team}}}}}, podSelector: {{matchLabels: {{app: worker}}}}}}], "
               "ports: [{port: postgres}]}]}"),
            np(f"cache-not-data{suffix}", "{podSelector: {matchLabels: {app: cache}}, ingress: [{from: "
               "[{podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [data]}]}}, "
               "{namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [prod, staging]}]}}]}]}"),
            np(f"worker-egress{suffix}", "{podSelector: {matchLabels: {app: worker}}, policyTypes: [Egress], "
               "egress: [{to: [{namespaceSelector: {matchExpressions: [{key: env, operator: In, "
               "values: [prod, staging]}]}, podSelector: {matchLabels: {app: api}}}], "
               "ports: [{port: 8080}, {port: 9000, endPort: 9100}]}, "
               f"{{to: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [{excepted}]}}}}]}}]}}"),
        ]  # fmt: skip

    out = rng.sample(kinds(team, ""), min(count, 6))
    for k in range(6, count):  # more than six: variants with another team
        out.append(rng.choice(kinds(f"team-{rng.randrange(20)}", f"-{k}")))
    return out


def admin_policies(
    count: int, namespaces: int, rng: random.Random, node_cidr: str
) -> list[str]:
    """`count` admin policies (the BANP among them when count > 0), YAML flow mappings;
    `networks` peers name a node's podCIDR (`node_cidr` with `{n}`: pod-to-pod traffic
    is checked against them too) and one range outside the cluster."""
    v1, v2 = "policy.networking.k8s.io/v1alpha1", "policy.networking.k8s.io/v1alpha2"

    def ns() -> str:
        return f"ns-{rng.randrange(namespaces):03d}"

    def subject() -> str:
        return rng.choice([
            f"{{namespaces: {{matchLabels: {{team: team-{rng.randrange(20)}}}}}}}",
            "{namespaces: {matchLabels: {env: prod}}}",
            f"{{pods: {{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns()}}}}}, "
            f"podSelector: {{matchLabels: {{app: {rng.choice(list(APPS))}}}}}}}}}",
        ])  # fmt: skip

    def ingress(actions: list[str], accept: str) -> str:
        action = rng.choice(actions)
        return rng.choice([
            f"{{name: from-dev, action: {action}, from: [{{namespaces: {{matchLabels: {{env: dev}}}}}}]}}",
            f"{{name: web-ports, action: {action}, from: [{{pods: {{namespaceSelector: {{}}, "
            "podSelector: {matchLabels: {app: web}}}}], ports: [{portRange: {start: 8000, end: 8100}}, "
            "{namedPort: postgres}]}",
            f"{{name: team, action: {accept}, from: [{{namespaces: {{matchLabels: {{team: "
            f"team-{rng.randrange(20)}}}}}}}], ports: [{{portNumber: {{port: 6379}}}}]}}",
        ])  # fmt: skip

    def egress(actions: list[str]) -> str:
        action = rng.choice(actions)
        return rng.choice([
            f"{{name: nets, action: {action}, to: [{{networks: "
            f"[{node_cidr.format(n=rng.randrange(1, 21))}, 192.0.2.0/24]}}], "
            "ports: [{portNumber: {port: 5432}}]}",
            f"{{name: nodes, action: {action}, to: [{{nodes: {{}}}}]}}",
            f"{{name: ns, action: {action}, to: [{{namespaces: {{matchLabels: {{env: staging}}}}}}], "
            "ports: [{portNumber: {protocol: UDP, port: 53}}]}",
        ])  # fmt: skip

    def cnp_protocols(rule: str) -> str:  # v1alpha2 shapes of the same ports
        return (
            rule.replace("ports: [{portRange: {start: 8000, end: 8100}}, {namedPort: postgres}]",
                         "protocols: [{tcp: {destinationPort: {range: {start: 8000, end: 8100}}}}, "
                         "{destinationNamedPort: postgres}]")
            .replace("ports: [{portNumber: {port: 6379}}]", "protocols: [{tcp: {destinationPort: {number: 6379}}}]")
            .replace("ports: [{portNumber: {port: 5432}}]", "protocols: [{tcp: {destinationPort: {number: 5432}}}]")
            .replace("ports: [{portNumber: {protocol: UDP, port: 53}}]", "protocols: [{udp: {destinationPort: {number: 53}}}]")
            .replace("pods: {namespaceSelector: {}, ", "pods: {")
        )  # fmt: skip

    out = []
    for k in range(count):
        rules_in = ", ".join(
            ingress(["Allow", "Deny", "Pass"], "Allow") for _ in range(2)
        )
        rules_out = egress(["Allow", "Deny", "Pass"])
        priority = rng.randrange(0, 1001)
        if k == 0:
            base_in = ", ".join(ingress(["Allow", "Deny"], "Allow") for _ in range(2))
            out.append(
                f"  - {{apiVersion: {v1}, kind: BaselineAdminNetworkPolicy, metadata: "
                f"{{name: default}}, spec: {{subject: {{namespaces: {{}}}}, "
                f"ingress: [{base_in}], egress: [{egress(['Allow', 'Deny'])}]}}}}"
            )
        elif k % 2:
            out.append(
                f"  - {{apiVersion: {v1}, kind: AdminNetworkPolicy, metadata: {{name: anp-{k}}}, "
                f"spec: {{priority: {priority}, subject: {subject()}, ingress: [{rules_in}], "
                f"egress: [{rules_out}]}}}}"
            )
        else:
            tier = rng.choice(["Admin", "Baseline"])
            rules_in = cnp_protocols(
                rules_in.replace("action: Allow", "action: Accept")
            )
            rules_out = cnp_protocols(
                rules_out.replace("action: Allow", "action: Accept")
            )
            out.append(
                f"  - {{apiVersion: {v2}, kind: ClusterNetworkPolicy, metadata: {{name: cnp-{k}}}, "
                f"spec: {{tier: {tier}, priority: {priority}, subject: {cnp_protocols(subject())}, "
                f"ingress: [{rules_in}], egress: [{rules_out}]}}}}"
            )
    return out


def cluster_yaml(
    pods: int = 2000,
    policies: int = 500,
    nodes: int = 20,
    seed: int = 7,
    admin: int = 0,
) -> str:
    """A vxlan cluster of `pods` pods in `pods` / 10 namespaces with `policies` policies."""
    rng = random.Random(seed)
    namespaces = max(1, pods // 10)
    wide = pods > 250 * nodes  # a /24 per node would not hold them
    lines = ["name: big-netpol", "cluster:", "  network: vxlan", "  dns: false"]
    lines.append("  nodes:")
    for n in range(1, nodes + 1):
        cidr = f", podCIDR: 10.{n}.0.0/16" if wide else ""
        lines.append(f"    - {{name: node-{n}{cidr}}}")
    lines.append("manifests:")
    per_ns = policies / namespaces
    for i in range(namespaces):
        ns = f"ns-{i:05d}" if namespaces > 1000 else f"ns-{i:03d}"
        env = ("dev", "staging", "prod")[i % 3]
        lines.append(
            "  - {apiVersion: v1, kind: Namespace, metadata: "
            f"{{name: {ns}, labels: {{team: team-{i % 20}, env: {env}}}}}}}"
        )
        for app, (tier, port, name) in APPS.items():
            lines.append(
                "  - {apiVersion: apps/v1, kind: Deployment, metadata: "
                f"{{name: {app}, namespace: {ns}}}, spec: {{replicas: 2, selector: "
                f"{{matchLabels: {{app: {app}}}}}, template: {{metadata: {{labels: "
                f"{{app: {app}, tier: {tier}}}}}, spec: {{containers: [{{name: {app}, "
                f"image: x, ports: [{{containerPort: {port}, name: {name}}}]}}]}}}}}}}}"
            )
        count = math.ceil((i + 1) * per_ns) - math.ceil(i * per_ns)
        excepted = f"10.{i % 20 + 1}.0.0/16" if wide else f"10.0.{i % 20 + 1}.0/24"
        lines += policies_of(ns, i, rng, count, excepted)
    node_cidr = "10.{n}.0.0/16" if wide else "10.0.{n}.0/24"
    lines += admin_policies(admin, namespaces, random.Random(seed + 1), node_cidr)
    first = "ns-00000" if namespaces > 1000 else "ns-000"
    lines += [
        "steps:",
        f"  - probe: {{from: {first}/web-0, to: {first[:-1]}1/api-0, port: 8080}}",
    ]
    return "\n".join(lines) + "\n"


def write_scenario(folder: Path, pods: int, policies: int) -> Path:
    """`cluster_yaml(pods, policies)` as FOLDER/big.yaml; past `MAX_FILE_BYTES`, its
    objects go to FOLDER/manifests/part-N.yaml (one object per YAML document) and the
    scenario names that folder (`{file: manifests}`)."""
    text = cluster_yaml(pods, policies)
    path = folder / "big.yaml"
    if len(text.encode()) <= MAX_FILE_BYTES:
        path.write_text(text)
        return path
    head, rest = text.split("manifests:\n", 1)
    objects, steps = rest.split("steps:\n", 1)
    (folder / "manifests").mkdir()
    part: list[str] = []
    size = parts = 0
    for line in [*objects.splitlines(), None]:
        if line is None or size + len(line) > MAX_FILE_BYTES // 2:
            parts += 1
            (folder / "manifests" / f"part-{parts:03d}.yaml").write_text(
                "\n---\n".join(part) + "\n"
            )
            part, size = [], 0
        if line is not None:
            part.append(line.removeprefix("  - "))
            size += len(line) + 5
    path.write_text(f"{head}manifests:\n  - {{file: manifests}}\nsteps:\n{steps}")
    return path
