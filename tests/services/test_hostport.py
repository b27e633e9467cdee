"""Kubernetes hostPort through the CNI portmap plugin's rules (dataplane.portmap): where
it answers, what the pod sees, what the trace names, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.portmap import dnat_chain
from dataplane.sim import Simulator
from dataplane.trace import Trace, Verdict
from tests.io.helpers import run_cli
from topology.errors import TopologyError
from topology.loader import load_scenario_text

WEB = "default/web"


def cluster_text(cni: str = "flannel", network: str = "vxlan", port: str = "") -> str:
    ports = port or "{containerPort: 80, hostPort: 8080}"
    return f"""
name: t
cluster:
  cni: {cni}
  network: {network}
  serviceCIDR: 10.96.0.0/16
  externals: [{{name: laptop, ip: 192.0.2.10}}]
manifests:
  - {{apiVersion: v1, kind: Pod, metadata: {{name: web}},
     spec: {{nodeName: node-1, containers: [{{name: web, ports: [{ports}]}}]}}}}
  - {{apiVersion: v1, kind: Pod, metadata: {{name: near}},
     spec: {{nodeName: node-1, containers: [{{name: c}}]}}}}
steps:
  - probe: {{from: external/laptop, to: node/node-1, port: 8080}}
"""


def sim(text: str) -> Simulator:
    scenario, _ = load_scenario_text(text)
    return Simulator(scenario.cluster)


def nat_hops(trace: Trace) -> list[str]:
    return [h.detail for h in trace.hops if "portmap" in h.detail or "CNI-" in h.detail]


def test_the_trace_names_the_plugins_chains() -> None:
    trace = sim(cluster_text()).probe("external/laptop", "node/node-1", 8080)
    assert trace.verdict is Verdict.DELIVERED
    chain = dnat_chain("cbr0", WEB)
    assert nat_hops(trace)[0] == (
        f"PREROUTING portmap: PREROUTING -> CNI-HOSTPORT-DNAT -> {chain}: TCP dport"
        " 8080 DNAT -> 10.0.1.3:80 (hostPort 8080 of default/web)"
    )


def test_a_pod_of_the_node_is_marked_and_masqueraded() -> None:
    trace = sim(cluster_text()).probe("default/near", "node/node-1", 8080)
    assert trace.verdict is Verdict.DELIVERED
    hops = nat_hops(trace)
    assert hops[0].endswith("; CNI-HOSTPORT-SETMARK (hairpin: -s 10.0.1.0/24)")
    assert hops[1] == (
        "POSTROUTING CNI-HOSTPORT-MASQ MASQUERADE 10.0.1.4 -> 10.0.1.1"
        " (hairpin: -s 10.0.1.0/24)"
    )


def test_only_the_pods_node_and_protocol_answer() -> None:
    s = sim(cluster_text())
    assert s.probe("external/laptop", "node/node-2", 8080).verdict is Verdict.REFUSED
    udp = s.probe("external/laptop", "node/node-1", 8080, "UDP")
    assert udp.verdict is Verdict.REFUSED
    assert nat_hops(udp) == []


def test_host_ip_limits_the_addresses() -> None:
    port = "{containerPort: 80, hostPort: 8080, hostIP: 10.100.0.2}"
    s = sim(cluster_text(port=port))
    at_node = s.probe("external/laptop", "node/node-1", 8080)
    assert at_node.verdict is Verdict.DELIVERED
    assert "-d 10.100.0.2 DNAT" in nat_hops(at_node)[0]
    # cbr0's address is local too, but not the hostIP
    assert s.probe("default/near", "10.0.1.1", 8080).verdict is Verdict.REFUSED


def test_calico_reports_a_32_so_only_the_pod_itself_is_masqueraded() -> None:
    s = sim(cluster_text(cni="calico", network="bgp"))
    near = s.probe("default/near", "node/node-1", 8080)
    assert near.verdict is Verdict.DELIVERED
    assert not any("SETMARK" in h for h in nat_hops(near))
    assert dnat_chain("k8s-pod-network", WEB) in nat_hops(near)[0]


def test_kube_proxy_comes_first_on_the_same_port() -> None:
    text = (
        cluster_text(port="{containerPort: 80, hostPort: 30080}")
        + """
  - apply:
      - {apiVersion: v1, kind: Pod, metadata: {name: other, labels: {app: other}},
         spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 80}]}]}}
      - {apiVersion: v1, kind: Service, metadata: {name: other},
         spec: {type: NodePort, selector: {app: other},
                ports: [{port: 80, nodePort: 30080}]}}
"""
    )
    scenario, _ = load_scenario_text(text)
    from dataplane.scenario import Runner

    runner = Runner(scenario)
    runner.run()
    trace = runner.sim.probe("external/laptop", "node/node-1", 30080)
    assert trace.endpoint == "default/other"
    assert nat_hops(trace) == []


def test_a_second_pod_on_the_same_host_port_is_refused() -> None:
    text = cluster_text().replace(
        "  - {apiVersion: v1, kind: Pod, metadata: {name: near},\n"
        "     spec: {nodeName: node-1, containers: [{name: c}]}}",
        "  - {apiVersion: v1, kind: Pod, metadata: {name: near},\n"
        "     spec: {nodeName: node-1, containers: [{name: c, ports:"
        " [{containerPort: 81, hostPort: 8080}]}]}}",
    )
    with pytest.raises(TopologyError) as err:
        load_scenario_text(text)
    assert str(err.value) == (
        "<string>:11: Pod default/near: cannot place pod default/near: hostPort"
        " 8080/TCP is already pod default/web's on node 'node-1' (kubelet admits one"
        " pod per hostIP, hostPort and protocol of a node: the NodePorts check)"
    )


@pytest.mark.parametrize(
    ("port", "message"),
    [
        (
            "{containerPort: 80, hostPort: 8080, hostIP: 'not-an-ip'}",
            "spec.containers[0].ports[0].hostIP: expected an IPv4 address like"
            " 10.100.0.2, got 'not-an-ip'",
        ),
    ],
)
def test_bad_host_ports_are_errors(port: str, message: str) -> None:
    with pytest.raises(TopologyError) as err:
        load_scenario_text(cluster_text(port=port))
    assert str(err.value) == f"<string>:10: Pod default/web: {message}"


def test_a_host_network_pods_host_port_must_be_its_container_port() -> None:
    text = cluster_text().replace(
        "spec: {nodeName: node-1, containers: [{name: web,",
        "spec: {nodeName: node-1, hostNetwork: true, containers: [{name: web,",
    )
    with pytest.raises(TopologyError) as err:
        load_scenario_text(text)
    assert str(err.value) == (
        "<string>:10: Pod default/web: spec.containers[0].ports[0].hostPort: 8080: must"
        " match containerPort 80 when hostNetwork is true"
    )


def test_cilium_refuses_host_ports(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(cluster_text(cni="cilium", network="vxlan"))
    result = run_cli("run", path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {path}:10: Pod default/web: spec.containers[0].ports[0].hostPort:"
        " hostPort 8080 is not modelled with cni: cilium (Cilium serves hostPorts in"
        " its BPF datapath with kube-proxy replacement, or through the portmap plugin"
        " when chained); allowed: hostPort with cni: flannel or calico, whose"
        " manifests chain the CNI portmap plugin"
    )
    assert "Traceback" not in result.stdout + result.stderr


DEPLOYMENT = """
name: t
cluster:
  nodes: [{name: node-1}, {name: node-2}]
manifests:
  - {apiVersion: v1, kind: Pod, metadata: {name: x}, spec: {nodeName: node-2, containers: [{name: c}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: y}, spec: {nodeName: node-2, containers: [{name: c}]}}
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: edge}
    spec:
      replicas: REPLICAS
      selector: {matchLabels: {app: edge}}
      template:
        metadata: {labels: {app: edge}}
        spec: {containers: [{name: e, ports: [{containerPort: 80, hostPort: 80}]}]}
steps:
  - probe: {from: default/edge-0, to: default/edge-1, port: 80}
"""


def test_the_scheduler_spreads_pods_over_free_host_ports() -> None:
    # node-1 holds coredns-0 and node-2 x and y: edge-0 goes to node-1, and edge-1, the
    # nodes tied at two pods, would go to node-1 too (node order) but for its hostPort;
    # edge-2 fits nowhere
    scenario, _ = load_scenario_text(DEPLOYMENT.replace("REPLICAS", "2"))
    nodes = {p.name: p.node for p in scenario.cluster.pods.values()}
    assert (nodes["edge-0"], nodes["edge-1"]) == ("node-1", "node-2")
    with pytest.raises(TopologyError) as err:
        load_scenario_text(DEPLOYMENT.replace("REPLICAS", "3"))
    assert str(err.value) == (
        "<string>:16: Deployment default/edge: spec.template.spec: no node has hostPort"
        " 80/TCP free for another pod (the scheduler's NodePorts filter; nodes: node-1,"
        " node-2)"
    )
