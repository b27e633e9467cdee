"""Clusters and policies built in code (no YAML) for the NetworkPolicy tests.

`xyz()` is the conformance layout: namespaces x, y, z (labelled ns=NAME), pods a, b, c in
each (labelled pod=NAME) serving 80 and 81 over TCP, UDP and SCTP (named serve-80-tcp, ...),
spread over two nodes, plus external hosts `vault` (10.0.0.10) and `mirror` (192.0.2.10).
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from topology.model import (
    Cluster,
    ClusterConfig,
    Container,
    ContainerPort,
    External,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkMode,
    NetworkPolicy,
    NodeSpec,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    PortSpec,
    Protocol,
    Requirement,
    SelectorOp,
)

PORTS = tuple(
    ContainerPort(port, proto, f"serve-{port}-{proto.value.lower()}")
    for port in (80, 81)
    for proto in (Protocol.TCP, Protocol.UDP, Protocol.SCTP)
)
SERVER = (Container("cont-80-81", PORTS),)
# Where each pod runs: a mix of same-node and cross-node pairs.
PLACEMENT = {
    "x/a": 1, "x/b": 2, "x/c": 1,
    "y/a": 2, "y/b": 1, "y/c": 2,
    "z/a": 1, "z/b": 2, "z/c": 1,
}  # fmt: skip
PODS = list(PLACEMENT)


def nodes(count: int = 2) -> tuple[NodeSpec, ...]:
    return tuple(
        NodeSpec(
            f"node-{i}", IPv4Address(f"10.100.0.{i + 1}"), IPv4Network(f"10.0.{i}.0/24")
        )
        for i in range(1, count + 1)
    )


def namespace(name: str, **labels: str) -> Namespace:
    return Namespace(name, {"kubernetes.io/metadata.name": name, **labels})


def xyz(
    *policies: NetworkPolicy,
    mode: NetworkMode = NetworkMode.VXLAN,
    extra: tuple[Pod, ...] = (),
) -> Cluster:
    """The conformance layout with `policies` (and `extra` pods) in it."""
    cfg = ClusterConfig(
        network=mode,
        nodes=nodes(),
        externals=(
            External(
                "vault", IPv4Address("10.0.0.10"), (PortSpec(5978), PortSpec(443))
            ),
            External("mirror", IPv4Address("192.0.2.10"), (PortSpec(5978),)),
        ),
    )
    count = {1: 1, 2: 1}
    pods = []
    for key, node in PLACEMENT.items():
        ns, name = key.split("/")
        count[node] += 1
        ip = IPv4Address(f"10.0.{node}.{count[node]}")
        pods.append(Pod(ns, name, f"node-{node}", ip, {"pod": name}, SERVER))
    pods += extra
    namespaces = {n: namespace(n, ns=n) for n in "xyz"}
    return Cluster(
        cfg,
        namespaces,
        {p.key: p for p in pods},
        policies={p.key: p for p in policies},
    )


def with_labels(cluster: Cluster, pod: str, labels: dict[str, str]) -> Cluster:
    """The cluster with `labels` set on `pod` (a new Cluster, as `label` steps give)."""
    p = cluster.pods[pod]
    pods = dict(cluster.pods)
    pods[pod] = replace(p, labels={**p.labels, **labels})
    return replace(cluster, pods=pods)


def sel(**labels: str) -> LabelSelector:
    return LabelSelector(labels)


def expr(key: str, op: str, *values: str) -> LabelSelector:
    return LabelSelector(match_expressions=(Requirement(key, SelectorOp(op), values),))


ALL = LabelSelector()


def pods(selector: LabelSelector = ALL) -> PolicyPeer:
    return PolicyPeer(pod_selector=selector)


def namespaces(
    selector: LabelSelector = ALL, pod: LabelSelector | None = None
) -> PolicyPeer:
    return PolicyPeer(pod_selector=pod, namespace_selector=selector)


def block(cidr: str, *excepts: str) -> PolicyPeer:
    return PolicyPeer(
        ip_block=IPBlock(IPv4Network(cidr), tuple(IPv4Network(x) for x in excepts))
    )


def port(
    number: int | str | None = None, protocol: str = "TCP", end: int | None = None
) -> PolicyPort:
    return PolicyPort(Protocol(protocol), number, end)


def rule(*peers: PolicyPeer, ports: tuple[PolicyPort, ...] = ()) -> PolicyRule:
    return PolicyRule(tuple(peers), ports)


def policy(
    key: str,
    selector: LabelSelector = ALL,
    ingress: tuple[PolicyRule, ...] | None = None,
    egress: tuple[PolicyRule, ...] | None = None,
    types: tuple[str, ...] | None = None,
) -> NetworkPolicy:
    """A policy `NS/NAME`; `types` defaults as the API server does (Ingress always,
    Egress when egress rules are given)."""
    ns, name = key.split("/")
    if types is None:
        types = ("Ingress", "Egress") if egress else ("Ingress",)
    return NetworkPolicy(ns, name, selector, types, ingress or (), egress or ())
