"""Address management: lowest free addresses, MACs, ClusterIPs, NodePorts, exhaustion."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.topology.conftest import ErrorFn, LoadFn, scenario_text
from topology.change import apply, delete
from topology.ipam import (
    PodAddresses,
    Pool,
    ServiceAddresses,
    dns_ip,
    kubernetes_ip,
    mac_for,
)
from topology.scenario import Manifest


@pytest.mark.parametrize(
    ("ip", "mac"),
    [("10.0.1.3", "0a:58:0a:00:01:03"), ("192.168.255.254", "0a:58:c0:a8:ff:fe")],
    ids=["pod", "high"],
)
def test_mac_for(ip: str, mac: str) -> None:
    assert mac_for(IPv4Address(ip)) == mac


def test_pod_addresses_lowest_free_and_reuse() -> None:
    pool = PodAddresses(IPv4Network("10.0.1.0/29"))
    got = [pool.allocate() for _ in range(6)]
    assert [str(ip) for ip in got[:5]] == [f"10.0.1.{i}" for i in range(2, 7)]
    assert got[5] is None  # .7 is the broadcast address, .1 the bridge
    pool.release(IPv4Address("10.0.1.4"))
    assert str(pool.allocate()) == "10.0.1.4"


@settings(derandomize=True, database=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=60))
def test_pool_always_hands_out_the_lowest_free(ops: list[tuple[bool, int]]) -> None:
    pool = Pool(2, 30)
    taken: set[int] = set()
    for allocate, value in ops:
        if allocate:
            got = pool.allocate()
            free = [v for v in range(2, 31) if v not in taken]
            assert got == (free[0] if free else None)
            if got is not None:
                taken.add(got)
        else:
            pool.release(value + 2)
            taken.discard(value + 2)


def test_service_addresses_skip_reserved() -> None:
    cidr = IPv4Network("10.96.0.0/12")
    pool = ServiceAddresses(cidr, [kubernetes_ip(cidr)])
    got = [str(pool.allocate()) for _ in range(9)]
    assert got == [f"10.96.0.{i}" for i in (2, 3, 4, 5, 6, 7, 8, 9, 11)]
    assert pool.claim(dns_ip(cidr)) is None  # explicitly, .10 may be taken
    assert pool.claim(dns_ip(cidr)) == "10.96.0.10 is already allocated"
    assert pool.claim(IPv4Address("10.95.0.1")) is not None


def test_a_freed_address_waits_for_the_round_robin(load: LoadFn) -> None:
    # CNI host-local (flannel's IPAM) searches on from the last address it handed out
    scenario, _ = load(
        scenario_text(
            """
            manifests:
              - {kind: Pod, metadata: {name: a}, spec: {nodeName: node-1, containers: [{name: c}]}}
              - {kind: Pod, metadata: {name: b}, spec: {nodeName: node-1, containers: [{name: c}]}}
              - kind: Service
                metadata: {name: s1}
                spec: {type: NodePort, ports: [{port: 80}]}
            """
        )
    )
    cluster = delete(scenario.cluster, ["pod/default/a", "service/default/s1"])
    new = [
        Manifest({"kind": "Pod", "metadata": {"name": "d"}, "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]}}),
        Manifest({"kind": "Service", "metadata": {"name": "s2"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
    ]  # fmt: skip
    cluster, _ = apply(cluster, new)
    assert str(cluster.pods["default/d"].ip) == "10.0.1.5"  # not a's .3, freed
    assert str(cluster.last_pod_ips["node-1"]) == "10.0.1.5"
    s2 = cluster.services["default/s2"]
    assert (str(s2.cluster_ip), s2.ports[0].node_port) == ("10.96.0.2", 30000)


def test_the_round_robin_comes_round_to_a_freed_address(load: LoadFn) -> None:
    # a /29 holds pods .2 to .6 (.1 the bridge, .7 the broadcast): past .6 the search
    # starts again from .2, host-local's range start after its gateway
    pods = "".join(
        f"  - {{kind: Pod, metadata: {{name: p{i}}}, spec: {{nodeName: n1,"
        " containers: [{name: c}]}}\n"
        for i in range(5)
    )
    text = (
        "name: round\ncluster:\n  dns: false\n"
        "  nodes: [{name: n1, ip: 10.100.0.2, podCIDR: 10.0.1.0/29}]\n"
        f"manifests:\n{pods}steps:\n  - probe: {{from: default/p0, to: default/p2}}\n"
    )
    scenario, _ = load(text)
    cluster = delete(scenario.cluster, ["pod/default/p1"])
    pod = {"kind": "Pod", "metadata": {"name": "q"}, "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}}  # fmt: skip
    cluster, _ = apply(cluster, [Manifest(pod)])
    assert str(cluster.pods["default/q"].ip) == "10.0.1.3"  # p1's, the only free one
    cluster = delete(cluster, ["pod/default/p0", "pod/default/p4"])
    pod["metadata"] = {"name": "r"}
    cluster, _ = apply(cluster, [Manifest(pod)])
    assert str(cluster.pods["default/r"].ip) == "10.0.1.6"  # after .3: .4, .5 taken


def test_pod_cidr_exhausted(load_error: ErrorFn) -> None:
    text = scenario_text(
        """
        cluster:
          dns: false
          nodes: [{name: n1, podCIDR: 10.0.1.0/30}]
        manifests:
          - apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web}
            spec:
              replicas: 2
              selector: {matchLabels: {app: w}}
              template: {metadata: {labels: {app: w}}, spec: {containers: [{name: c}]}}
        """
    )
    err = load_error(text)
    assert str(err) == (
        "lab.yaml:10: Deployment default/web: spec.replicas: 2 replicas do not fit: the"
        " podCIDRs of the nodes they may run on have 1 free pod addresses (n1 10.0.1.0/30)"
    )


def test_pod_cidr_exhausted_by_pods(load_error: ErrorFn) -> None:
    pod = "  - {apiVersion: v1, kind: Pod, metadata: {name: %s}, spec: {containers: [{name: c}]}}\n"
    text = scenario_text(
        "cluster:\n  dns: false\n  nodes: [{name: n1, podCIDR: 10.0.1.0/30}]\n"
        "manifests:\n" + pod % "a" + pod % "b"
    )
    assert str(load_error(text)) == (
        "lab.yaml:7: Pod default/b: cannot place pod default/b: podCIDR"
        " 10.0.1.0/30 of node 'n1' is exhausted (1 pod addresses in use)"
    )


def test_explicit_addresses_are_kept_from_earlier_automatic_ones(load: LoadFn) -> None:
    scenario, _ = load(
        scenario_text(
            """
            manifests:
              - kind: Service
                metadata: {name: auto}
                spec: {type: NodePort, ports: [{port: 80}]}
              - kind: Service
                metadata: {name: fixed}
                spec: {type: NodePort, clusterIP: 10.96.0.2, ports: [{port: 80, nodePort: 30000}]}
            """
        )
    )
    svcs = scenario.cluster.services
    assert (
        str(svcs["default/auto"].cluster_ip),
        svcs["default/auto"].ports[0].node_port,
    ) == (
        "10.96.0.3",
        30001,
    )
    assert (
        str(svcs["default/fixed"].cluster_ip),
        svcs["default/fixed"].ports[0].node_port,
    ) == (
        "10.96.0.2",
        30000,
    )
