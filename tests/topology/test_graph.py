"""The device graph: ids, kinds, links per network mode, and its build time."""

from __future__ import annotations

import pytest

from tests.topology.conftest import REFERENCE, LoadFn
from topology.change import build_cluster
from topology.config import cluster_config
from topology.graph import build_graph, veth_name
from topology.model import Loc
from topology.scenario import Manifest
from topology.schema import ClusterModel


def test_veth_name() -> None:
    assert veth_name("default/a") == "veth71273818"
    assert len(veth_name("some-long-namespace/some-very-long-pod-name-0")) <= 15


@pytest.mark.parametrize("network", ["vxlan", "host-gw", "routed"])
def test_graph_of_reference_lab(load: LoadFn, network: str) -> None:
    text = REFERENCE.replace("steps:", f"cluster: {{network: {network}}}\nsteps:")
    scenario, _ = load(text)
    graph = build_graph(scenario.cluster)
    veth = f"node-1/{veth_name('default/a')}"
    assert graph.nodes["pod:default/a/eth0"]["kind"] == "pod-nic"
    assert graph.edges["pod:default/a/eth0", veth]["kind"] == "veth"
    assert graph.edges[veth, "node-1/cbr0"]["kind"] == "bridge-port"
    assert graph.edges["node-1/eth0", "underlay"]["kind"] == "underlay"
    assert graph.edges["gateway", "underlay"]["kind"] == "underlay"
    has_vtep = "node-1/flannel.1" in graph
    assert has_vtep is (network == "vxlan")
    if has_vtep:
        assert (
            graph.edges["node-1/flannel.1", "node-2/flannel.1"]["kind"]
            == "vxlan-tunnel"
        )
    path = nx_path(graph, "pod:default/a/eth0", "pod:default/c/eth0")
    assert path[:3] == ["pod:default/a/eth0", veth, "node-1/cbr0"]
    assert path[-1] == "pod:default/c/eth0"


def nx_path(graph: object, a: str, b: str) -> list[str]:
    import networkx as nx

    return list(nx.shortest_path(graph, a, b))


def test_host_network_pods_and_externals(load: LoadFn) -> None:
    text = REFERENCE.replace(
        "steps:",
        "  - kind: Pod\n    metadata: {name: h}\n"
        "    spec: {hostNetwork: true, containers: [{name: c}]}\n"
        "cluster: {externals: [{name: db, ip: 192.0.2.7}]}\nsteps:",
    )
    scenario, _ = load(text)
    graph = build_graph(scenario.cluster)
    assert "pod:default/h/eth0" not in graph
    assert graph.nodes["external:db"]["kind"] == "external"
    assert graph.edges["external:db", "gateway"]["kind"] == "route"


def test_a_big_cluster_builds_and_spreads_evenly() -> None:
    nodes = [{"name": f"node-{i}"} for i in range(1, 101)]
    model = ClusterModel.model_validate({"nodeCIDR": "10.100.0.0/16", "nodes": nodes})
    config = cluster_config(model, lambda _: Loc("x"))
    manifests = [
        Manifest(
            {
                "kind": "Deployment",
                "metadata": {"name": f"app-{d}"},
                "spec": {
                    "replicas": 100,
                    "selector": {"matchLabels": {"app": f"app-{d}"}},
                    "template": {
                        "metadata": {"labels": {"app": f"app-{d}"}},
                        "spec": {
                            "containers": [
                                {"name": "c", "ports": [{"containerPort": 80}]}
                            ]
                        },
                    },
                },
            }
        )
        for d in range(50)
    ]
    # How fast this is, bench/bench_walk.py measures (never a timed test).
    cluster, _ = build_cluster(config, manifests)
    graph = build_graph(cluster)
    assert len(cluster.pods) == 5001
    assert graph.number_of_nodes() == 1 + 1 + 100 * 3 + 5001 * 2
    counts: dict[str, int] = {}
    for pod in cluster.pods.values():
        counts[pod.node] = counts.get(pod.node, 0) + 1
    assert max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize(
    ("cni", "network", "device", "kind"),
    [
        ("calico", "ipip", "tunl0", "ipip-tunnel"),
        ("calico", "vxlan", "vxlan.calico", "vxlan-tunnel"),
        ("calico", "bgp", None, None),
        ("cilium", "vxlan", "cilium_vxlan", "vxlan-tunnel"),
        ("cilium", "geneve", "cilium_geneve", "geneve-tunnel"),
        ("cilium", "native", None, None),
    ],
)
def test_the_tunnel_devices_of_calico_and_cilium(
    load: LoadFn, cni: str, network: str, device: str | None, kind: str | None
) -> None:
    text = REFERENCE.replace(
        "steps:", f"cluster: {{cni: {cni}, network: {network}}}\nsteps:"
    )
    scenario, _ = load(text)
    graph = build_graph(scenario.cluster)
    tunnels = {d for d, attrs in graph.nodes(data=True) if attrs["kind"] == "vtep"}
    if device is None:
        assert tunnels == set()
        return
    assert tunnels == {f"node-1/{device}", f"node-2/{device}"}
    assert graph.edges[f"node-1/{device}", f"node-2/{device}"]["kind"] == kind
    # Cilium's tunnel devices hold no address (cilium_host has the router's)
    expected_ip = None if cni == "cilium" else scenario.cluster.nodes[0].pod_cidr[0]
    assert graph.nodes[f"node-1/{device}"]["ip"] == expected_ip
