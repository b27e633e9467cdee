"""Random admin policies for the scenario generator (`dataplane.kernel.generate`).

SIG Network's network-policy-api, in the forms the loader reads (topology/adminschema.py):
AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1:
subjects by namespaces or pods, peers by namespaces, pods, nodes and networks, ports by
number, name and range; actions Allow, Deny and Pass) and ClusterNetworkPolicy (v1alpha2:
tier Admin or Baseline, actions Accept, Deny and Pass, `protocols` by number, range and
named port).  The BaselineAdminNetworkPolicy is the singleton named `default` (its CRD's
CEL rule), so a scenario draws at most one.
"""

from __future__ import annotations

import random
from typing import Any

V1ALPHA1 = "policy.networking.k8s.io/v1alpha1"
V1ALPHA2 = "policy.networking.k8s.io/v1alpha2"
NAMESPACES = ("default", "team")
APPS = ("web", "api", "db")
# the short names a `delete` step takes (docs/scenario-format.md, "delete")
DELETE_NAMES = {
    "AdminNetworkPolicy": "anp",
    "BaselineAdminNetworkPolicy": "banp",
    "ClusterNetworkPolicy": "cnp",
}


def _namespaces(rng: random.Random) -> dict[str, Any]:
    what = rng.random()
    if what < 0.25:
        return {}
    if what < 0.45:
        return {"matchLabels": {"team": "b"}}
    return {"matchLabels": {"kubernetes.io/metadata.name": rng.choice(NAMESPACES)}}


def _pods(rng: random.Random) -> dict[str, Any]:
    pods = {"matchLabels": {"app": rng.choice(APPS)}} if rng.random() < 0.8 else {}
    return {"namespaceSelector": _namespaces(rng), "podSelector": pods}


def _subject(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.5:
        return {"namespaces": _namespaces(rng)}
    return {"pods": _pods(rng)}


def _peer(rng: random.Random, egress: bool, cidrs: list[str]) -> dict[str, Any]:
    what = rng.random()
    if egress and what < 0.15:
        return {"nodes": {"matchLabels": {"kubernetes.io/os": "linux"}}}
    if egress and what < 0.35:
        return {"networks": _pick(rng, cidrs, rng.randint(1, 2))}
    if what < 0.65:
        return {"namespaces": _namespaces(rng)}
    return {"pods": _pods(rng)}


def _pick(rng: random.Random, seq: list[str], k: int) -> list[str]:
    return rng.sample(seq, min(k, len(seq)))


def _ports_v1(rng: random.Random, named: bool) -> list[dict[str, Any]]:
    """v1alpha1 `ports`: portNumber, namedPort (when `named`) or portRange."""
    what = rng.random()
    protocol = rng.choice(("TCP", "TCP", "UDP", "SCTP"))
    if what < 0.5:
        port = {"TCP": 80, "UDP": 53, "SCTP": 9000}[protocol]
        return [{"portNumber": {"protocol": protocol, "port": port}}]
    if what < 0.75 and named:
        return [{"namedPort": rng.choice(("http", "dns"))}]
    return [{"portRange": {"protocol": protocol, "start": 5000, "end": 8080}}]


def _protocols_v2(rng: random.Random, named: bool) -> list[dict[str, Any]]:
    """v1alpha2 `protocols`: tcp/udp/sctp by number or range, or destinationNamedPort
    (when `named`)."""
    what = rng.random()
    protocol = rng.choice(("tcp", "tcp", "udp", "sctp"))
    if what < 0.5:
        number = {"tcp": 80, "udp": 53, "sctp": 9000}[protocol]
        return [{protocol: {"destinationPort": {"number": number}}}]
    if what < 0.75 and named:
        return [{"destinationNamedPort": rng.choice(("http", "dns"))}]
    return [{protocol: {"destinationPort": {"range": {"start": 5000, "end": 8080}}}}]


def admin_policy(
    rng: random.Random, i: int, cidrs: list[str], baseline_taken: bool
) -> dict[str, Any]:
    """One ANP, BANP (only while `baseline_taken` is False) or CNP."""
    kinds = ["AdminNetworkPolicy", "ClusterNetworkPolicy"]
    if not baseline_taken:
        kinds.append("BaselineAdminNetworkPolicy")
    kind = rng.choice(kinds)
    v2 = kind == "ClusterNetworkPolicy"
    tier = rng.choice(("Admin", "Baseline")) if v2 else None
    if v2:
        actions: tuple[str, ...] = ("Accept", "Deny", "Pass")
    elif kind == "AdminNetworkPolicy":
        actions = ("Allow", "Deny", "Pass")
    else:
        actions = ("Allow", "Deny")
    spec: dict[str, Any] = {}
    if tier is not None:
        spec["tier"] = tier
    if kind != "BaselineAdminNetworkPolicy":
        spec["priority"] = rng.randint(1, 60)
    subject = _subject(rng)
    if v2 and "pods" in subject and rng.random() < 0.3:
        del subject["pods"]["namespaceSelector"]  # optional in v1alpha2
    spec["subject"] = subject
    for direction, key in (("ingress", "from"), ("egress", "to")):
        if rng.random() < 0.35:
            continue
        rules = []
        for r in range(rng.randint(1, 3)):
            rule: dict[str, Any] = {
                "name": f"{direction}-{r}",
                "action": rng.choice(actions),
                key: [
                    _peer(rng, direction == "egress", cidrs)
                    for _ in range(rng.randint(1, 2))
                ],
            }
            if rng.random() < 0.5:
                # the CRDs' CEL rule: no named port beside a nodes or networks peer
                named = not any("nodes" in q or "networks" in q for q in rule[key])
                if v2:
                    rule["protocols"] = _protocols_v2(rng, named)
                else:
                    rule["ports"] = _ports_v1(rng, named)
            rules.append(rule)
        spec[direction] = rules
    name = "default" if kind == "BaselineAdminNetworkPolicy" else f"admin{i}"
    return {
        "apiVersion": V1ALPHA2 if v2 else V1ALPHA1,
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def delete_name(policy: dict[str, Any]) -> str:
    """`anp/NAME`, `banp/default` or `cnp/NAME`, as a `delete` step names it."""
    return f"{DELETE_NAMES[policy['kind']]}/{policy['metadata']['name']}"
