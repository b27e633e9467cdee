"""The cluster as a networkx graph of devices and links, for rendering and path queries.

Vertex ids (the dataplane names its devices the same way):
- `NODE/eth0`, `NODE/<bridge>` (`cbr0`), `NODE/flannel.1` (vxlan only), `NODE/vethXXXXXXXX`
  (the host end of a pod's veth pair, see `veth_name`);
- `pod:NS/POD/eth0`, a pod's end of the pair (hostNetwork pods have none);
- `underlay` (the node network's L2 segment), `gateway` (its router), `external:NAME`.

Vertex attributes: `kind` (nic, bridge, vtep, veth, pod-nic, switch, router, external),
`label` (for pictures), `node` where one applies, `ip` where one is assigned.  Edge attribute
`kind`: veth, bridge-port, route (forwarding inside one network namespace), underlay,
vxlan-tunnel (between VTEPs, full mesh, as flannel programs its FDB).
"""

from __future__ import annotations

import hashlib
from itertools import combinations
from typing import Any

from topology.model import Cluster, NetworkMode

UNDERLAY = "underlay"
GATEWAY = "gateway"
VTEP = "flannel.1"


def veth_name(pod_key: str) -> str:
    """The host-side veth of pod `NS/POD`: `veth` + 8 hex digits of sha1("NS/POD").

    Fits IFNAMSIZ (12 characters) and is stable across runs.
    >>> veth_name("default/a")
    'veth71273818'
    """
    return "veth" + hashlib.sha1(pod_key.encode()).hexdigest()[:8]


def device_id(node: str, ifname: str) -> str:
    """The graph id of a device in a node's host namespace.

    >>> device_id("node-1", "cbr0")
    'node-1/cbr0'
    """
    return f"{node}/{ifname}"


def pod_device_id(pod_key: str, ifname: str = "eth0") -> str:
    """The graph id of a device in a pod's namespace.

    >>> pod_device_id("default/a")
    'pod:default/a/eth0'
    """
    return f"pod:{pod_key}/{ifname}"


def build_graph(cluster: Cluster) -> Any:
    """The device graph (`networkx.Graph`) of `cluster`."""
    import networkx as nx  # imported here: a walk needs only the device names above

    cfg = cluster.config
    graph = nx.Graph()
    nodes: list[tuple[str, dict[str, Any]]] = [
        (UNDERLAY, {"kind": "switch", "label": f"underlay {cfg.node_cidr}"}),
        (
            GATEWAY,
            {"kind": "router", "label": f"gateway {cfg.gateway}", "ip": cfg.gateway},
        ),
    ]
    edges: list[tuple[str, str, dict[str, Any]]] = [
        (GATEWAY, UNDERLAY, {"kind": "underlay"})
    ]
    vteps = []
    for node in cluster.nodes:
        eth0 = device_id(node.name, "eth0")
        bridge = device_id(node.name, cfg.bridge)
        nodes.append(
            (
                eth0,
                {
                    "kind": "nic",
                    "node": node.name,
                    "ip": node.ip,
                    "label": f"{node.name} eth0 {node.ip}",
                },
            )
        )
        nodes.append(
            (
                bridge,
                {
                    "kind": "bridge",
                    "node": node.name,
                    "ip": node.bridge_ip,
                    "label": f"{node.name} {cfg.bridge} {node.bridge_ip}"
                    f"/{node.pod_cidr.prefixlen}",
                },
            )
        )
        edges.append((eth0, UNDERLAY, {"kind": "underlay"}))
        edges.append((bridge, eth0, {"kind": "route"}))
        if cfg.network is NetworkMode.VXLAN:
            vtep = device_id(node.name, VTEP)
            nodes.append(
                (
                    vtep,
                    {
                        "kind": "vtep",
                        "node": node.name,
                        "ip": node.pod_cidr.network_address,
                        "label": f"{node.name} {VTEP} vni 1",
                    },
                )
            )
            edges.append((bridge, vtep, {"kind": "route"}))
            edges.append((vtep, eth0, {"kind": "route"}))
            vteps.append(vtep)
    edges.extend((a, b, {"kind": "vxlan-tunnel"}) for a, b in combinations(vteps, 2))
    for pod in cluster.pods.values():
        if pod.host_network:
            continue
        inside = pod_device_id(pod.key)
        host_end = device_id(pod.node, veth_name(pod.key))
        nodes.append(
            (
                inside,
                {
                    "kind": "pod-nic",
                    "node": pod.node,
                    "ip": pod.ip,
                    "pod": pod.key,
                    "label": f"{pod.key} eth0 {pod.ip}",
                },
            )
        )
        nodes.append(
            (
                host_end,
                {
                    "kind": "veth",
                    "node": pod.node,
                    "pod": pod.key,
                    "label": f"{pod.node} {veth_name(pod.key)}",
                },
            )
        )
        edges.append((inside, host_end, {"kind": "veth"}))
        edges.append(
            (host_end, device_id(pod.node, cfg.bridge), {"kind": "bridge-port"})
        )
    for ext in cluster.config.externals:
        ext_id = f"external:{ext.name}"
        nodes.append(
            (
                ext_id,
                {"kind": "external", "ip": ext.ip, "label": f"{ext.name} {ext.ip}"},
            )
        )
        edges.append((ext_id, GATEWAY, {"kind": "route"}))
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    return graph
