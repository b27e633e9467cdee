"""Small clusters built in code (no YAML), for testing devices alone."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from dataplane.fabric import Fabric, build_fabric
from dataplane.trace import Trace
from dataplane.walker import Walker
from topology.model import (
    Cluster,
    ClusterConfig,
    Container,
    ContainerPort,
    External,
    Namespace,
    NetworkMode,
    NodeSpec,
    Pod,
    PortSpec,
    Protocol,
)

WEB = (
    Container(
        "web",
        (
            ContainerPort(80, Protocol.TCP, "http"),
            ContainerPort(53, Protocol.UDP, "dns"),
            ContainerPort(80, Protocol.SCTP),
        ),
    ),
)


def tiny_cluster(mode: NetworkMode = NetworkMode.VXLAN, nodes: int = 2) -> Cluster:
    """The reference topology of docs/model.md: a, b on node-1 (10.0.1.3, .4), c on node-2."""
    specs = tuple(
        NodeSpec(
            f"node-{i}", IPv4Address(f"10.100.0.{i + 1}"), IPv4Network(f"10.0.{i}.0/24")
        )
        for i in range(1, nodes + 1)
    )
    cfg = ClusterConfig(
        network=mode,
        nodes=specs,
        externals=(External("web", IPv4Address("10.0.0.5"), (PortSpec(80),)),),
    )
    pods = [
        Pod("default", "a", "node-1", IPv4Address("10.0.1.3"), {"app": "a"}, WEB),
        Pod("default", "b", "node-1", IPv4Address("10.0.1.4"), {"app": "b"}, WEB),
        Pod("default", "c", "node-2", IPv4Address("10.0.2.2"), {"app": "c"}, WEB),
    ]
    namespaces = {
        "default": Namespace("default", {"kubernetes.io/metadata.name": "default"})
    }
    return Cluster(cfg, namespaces, {p.key: p for p in pods})


def recorder(cluster: Cluster | None = None) -> tuple[Walker, Fabric]:
    """A walker used as a recording context: call devices, inspect emissions and hops."""
    cluster = cluster or tiny_cluster()
    fabric = build_fabric(cluster)
    return Walker(fabric, cluster, Trace("test")), fabric
