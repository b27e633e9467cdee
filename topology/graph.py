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

from topology.ipam import tunnel_ip
from topology.model import CalicoMode, CiliumMode, Cluster, Cni, NetworkMode

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


def cali_name(pod_key: str) -> str:
    """Calico's host end of pod `NS/POD`: `cali` + 11 hex digits of sha1("NS.POD")
    (libcalico-go `VethNameForWorkload`).

    >>> cali_name("default/a")
    'caliacd53aa4120'
    """
    digest = hashlib.sha1(pod_key.replace("/", ".", 1).encode()).hexdigest()
    return "cali" + digest[:11]


def lxc_name(pod_key: str) -> str:
    """Cilium's host end of pod `NS/POD`: `lxc` + 12 hex digits of sha256 of the
    endpoint's ID (pkg/datapath/connector `Endpoint2IfName`, IFNAMSIZ - len("tmp") - 1
    digits); the CNI passes the container ID, which a scenario has not: the pod key
    stands for it.

    >>> lxc_name("default/a")
    'lxc9efb36117d50'
    """
    return "lxc" + hashlib.sha256(pod_key.encode()).hexdigest()[:12]


def host_end(cluster: Cluster, pod_key: str) -> str:
    """The host end of a pod's veth pair under the cluster's CNI."""
    cni = cluster.config.cni
    if cni is Cni.CALICO:
        return cali_name(pod_key)
    return lxc_name(pod_key) if cni is Cni.CILIUM else veth_name(pod_key)


def tunnel_device(cluster: Cluster) -> str | None:
    """Every node's tunnel device: flannel.1 (flannel vxlan), tunl0 or vxlan.calico
    (Calico), cilium_vxlan or cilium_geneve (Cilium); None where routing is native."""
    net = (
        cluster.config.network
    )  # by identity: the modes of different CNIs compare equal
    for mode, device in (
        (NetworkMode.VXLAN, VTEP),
        (CalicoMode.IPIP, "tunl0"),
        (CalicoMode.VXLAN, "vxlan.calico"),
        (CiliumMode.VXLAN, "cilium_vxlan"),
        (CiliumMode.GENEVE, "cilium_geneve"),
    ):
        if net is mode:
            return device
    return None


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
    has_bridge = cfg.cni is Cni.FLANNEL
    tunnel = tunnel_device(cluster)
    for node in cluster.nodes:
        eth0 = device_id(node.name, "eth0")
        # Calico has no bridge: its routed host ends lead to eth0 through the IP layer
        bridge = device_id(node.name, cfg.bridge) if has_bridge else eth0
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
        nodes.extend(
            [
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
            ]
            if has_bridge
            else []
        )
        edges.append((eth0, UNDERLAY, {"kind": "underlay"}))
        if has_bridge:
            edges.append((bridge, eth0, {"kind": "route"}))
        if tunnel is not None:
            vtep = device_id(node.name, tunnel)
            nodes.append(
                (
                    vtep,
                    {
                        "kind": "vtep",
                        "node": node.name,
                        "ip": tunnel_ip(cfg, node),
                        "label": f"{node.name} {tunnel}"
                        + {VTEP: " vni 1", "vxlan.calico": " vni 4096"}.get(tunnel, ""),
                    },
                )
            )
            if has_bridge:
                edges.append((bridge, vtep, {"kind": "route"}))
            edges.append((vtep, eth0, {"kind": "route"}))
            vteps.append(vtep)
    kind = {"tunl0": "ipip-tunnel", "cilium_geneve": "geneve-tunnel"}.get(
        str(tunnel), "vxlan-tunnel"
    )
    edges.extend((a, b, {"kind": kind}) for a, b in combinations(vteps, 2))
    for pod in cluster.pods.values():
        if pod.host_network:
            continue
        inside = pod_device_id(pod.key)
        end = host_end(cluster, pod.key)
        host = device_id(pod.node, end)
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
                host,
                {
                    "kind": "veth",
                    "node": pod.node,
                    "pod": pod.key,
                    "label": f"{pod.node} {end}",
                },
            )
        )
        edges.append((inside, host, {"kind": "veth"}))
        port = "bridge-port" if has_bridge else "route"
        edges.append(
            (
                host,
                device_id(pod.node, cfg.bridge)
                if has_bridge
                else device_id(pod.node, "eth0"),
                {"kind": port},
            )
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
