"""Generated clusters for the NetworkPolicy benchmarks: namespaces of 10 pods (5
Deployments of 2 replicas: web, api, db, cache, worker) with a few policies each, drawn
from six kinds that cover every peer and port form (podSelector, namespaceSelector, both,
ipBlock with except, named ports, port ranges, Ingress and Egress).

`cluster_yaml(pods, policies)` scales it: pods / 10 namespaces, `policies` spread evenly
over them, 20 nodes (a podCIDR of /16 each once a /24 would not hold the pods).
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


def cluster_yaml(
    pods: int = 2000, policies: int = 500, nodes: int = 20, seed: int = 7
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
