"""kube-proxy's ipvs mode (dataplane.kubeproxy_ipvs): kube-ipvs0, the virtual servers and
their scheduler, the ipset rules, and the differences from iptables mode."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dataplane.kernel import verify as kernel_verify
from dataplane.kernel.report import NOT_COMPARABLE
from dataplane.netns import Kind
from dataplane.packet import (
    ARP,
    ARP_REQUEST,
    BROADCAST,
    ETH_P_ARP,
    IP,
    TCP,
    ZERO_MAC,
    Ether,
    Packet,
    to_bytes,
)
from dataplane.pcap import pcap_header
from dataplane.replay import replay
from dataplane.scenario import server_source
from dataplane.sim import Simulator
from dataplane.trace import Trace, Verdict
from dataplane.walker import WalkState
from topology.loader import load_scenario, load_scenario_text
from topology.model import Cluster

LINKTYPE_RAW = 101
ROOT = Path(__file__).resolve().parents[2] / "scenarios" / "kube-proxy"

BASE = """name: t
cluster:
  kubeProxy: KUBEPROXY
  externals: [{name: laptop, ip: 203.0.113.2, ports: []}]
manifests:
  - apiVersion: v1
    kind: Pod
    metadata: {name: client}
    spec: {nodeName: node-1, containers: [{name: c, image: busybox}]}
  - apiVersion: v1
    kind: Pod
    metadata: {name: web-0, labels: {app: web}}
    spec:
      nodeName: node-1
      containers: [{name: web, image: nginx, ports: [{containerPort: 8080}]}]
  - apiVersion: v1
    kind: Pod
    metadata: {name: web-1, labels: {app: web}}
    spec:
      nodeName: node-2
      containers: [{name: web, image: nginx, ports: [{containerPort: 8080}]}]
  - apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      type: LoadBalancer
      clusterIP: 10.96.0.80
      externalIPs: [198.51.100.9]
      sessionAffinity: AFFINITY
      selector: {app: web}
      loadBalancerSourceRanges: [203.0.113.0/24]
      ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
    status: {loadBalancer: {ingress: [{ip: 203.0.113.80}]}}
steps:
  - probe: {from: default/client, to: svc/default/web, port: 80}
"""


def cluster(
    tmp_path: Path, kube_proxy: str = "{mode: ipvs}", affinity: str = "None"
) -> Cluster:
    text = BASE.replace("KUBEPROXY", kube_proxy).replace("AFFINITY", affinity)
    scenario, _ = load_scenario_text(text, "lab.yaml", tmp_path)
    return scenario.cluster


def details(trace: Trace) -> str:
    return "\n".join(h.detail for h in trace.hops)


def syn(sim: Simulator, src: str, sport: int, dst: str, dport: int) -> Packet:
    ip = sim.cluster.pods[src].ip
    return Packet(ip=IP(str(ip), dst, 6), l4=TCP(sport, dport))


def test_kube_ipvs0_holds_every_service_address_on_every_node(tmp_path: Path) -> None:
    sim = Simulator(cluster(tmp_path))
    for node in ("node-1", "node-2"):
        dummy = sim.fabric.netns[node].interfaces["kube-ipvs0"]
        assert dummy.kind is Kind.DUMMY
        # default/kubernetes and kube-system/kube-dns are Services of every cluster
        assert set(dummy.texts) == {
            "10.96.0.1",
            "10.96.0.10",
            "10.96.0.80",
            "198.51.100.9",
            "203.0.113.80",
        }
        assert all(a.network.prefixlen == 32 for a in dummy.addrs)


def test_iptables_mode_has_no_kube_ipvs0(tmp_path: Path) -> None:
    sim = Simulator(cluster(tmp_path, "{mode: iptables}"))
    assert "kube-ipvs0" not in sim.fabric.netns["node-1"].interfaces


def test_the_trace_names_the_virtual_server_and_the_scheduler(tmp_path: Path) -> None:
    sim = Simulator(cluster(tmp_path))
    t = sim.probe("default/client", "10.96.0.80", 80)
    assert t.verdict is Verdict.DELIVERED
    assert t.endpoint == "default/web-0"
    text = details(t)
    assert (
        "INPUT ipvs: ClusterIP TCP 10.96.0.80:80 rr (default/web:80) -> real server"
        in text
    )
    assert "real server 1 of 2: a choice among 2 cluster-wide" in text
    assert "(ip_vs_nat_xmit: routed again)" in text
    assert "IPVS decrement_ttl: ttl 64 -> 63" in text


def test_rr_takes_the_real_servers_in_turn_across_one_walk_state(
    tmp_path: Path,
) -> None:
    sim = Simulator(cluster(tmp_path))
    state = WalkState()
    picks = [
        sim.send(
            "default/client", syn(sim, "default/client", p, "10.96.0.80", 80), state
        )
        for p in (40001, 40002, 40003)
    ]
    assert [t.endpoint for t in picks] == [
        "default/web-0",
        "default/web-1",
        "default/web-0",
    ]
    assert "rr: after 2 connection(s) scheduled" in details(picks[2])
    # A fresh state starts at the first real server again.
    fresh = sim.send(
        "default/client", syn(sim, "default/client", 40004, "10.96.0.80", 80)
    )
    assert fresh.endpoint == "default/web-0"


def test_rr_across_a_replayed_capture(tmp_path: Path) -> None:
    """A replay shares one walk state: its connections take the real servers in turn."""
    sim = Simulator(cluster(tmp_path))
    body = b""
    for i, sport in enumerate((40001, 40002, 40003, 40004)):
        raw = to_bytes(syn(sim, "default/client", sport, "10.96.0.80", 80))
        body += struct.pack("<IIII", i, 0, len(raw), len(raw)) + raw
    capture = tmp_path / "syns.pcap"
    capture.write_bytes(pcap_header(LINKTYPE_RAW) + body)
    result = replay(sim, capture)
    seen = [p.trace.endpoint for p in result.packets if p.trace is not None]
    assert seen == ["default/web-0", "default/web-1", "default/web-0", "default/web-1"]


def test_session_affinity_makes_the_virtual_server_persistent(tmp_path: Path) -> None:
    sim = Simulator(cluster(tmp_path, affinity="ClientIP"))
    state = WalkState()
    picks = [
        sim.send(
            "default/client", syn(sim, "default/client", p, "10.96.0.80", 80), state
        )
        for p in (40001, 40002)
    ]
    assert [t.endpoint for t in picks] == ["default/web-0", "default/web-0"]
    assert "persistent: a template for 10.0.1.3 is made" in details(picks[0])
    assert "10.0.1.3's template holds it" in details(picks[1])


def test_ipvs_mode_refuses_what_iptables_mode_routes_on(tmp_path: Path) -> None:
    ipvs = Simulator(cluster(tmp_path))
    iptables = Simulator(cluster(tmp_path, "{mode: iptables}"))
    unknown = ipvs.probe("default/client", "10.96.0.80", 443)
    assert unknown.verdict is Verdict.REFUSED
    assert "KUBE-IPVS-FILTER: 10.96.0.80 is in KUBE-IPVS-IPS (on kube-ipvs0)" in (
        details(unknown)
    )
    assert iptables.probe("default/client", "10.96.0.80", 443).verdict is (
        Verdict.NO_ROUTE
    )
    ping = ipvs.probe("default/client", "10.96.0.80", protocol="ICMP")
    assert ping.verdict is Verdict.REFUSED
    assert "and ICMP is no virtual server's" in details(ping)


def test_localhost_node_ports_are_never_served(tmp_path: Path) -> None:
    ipvs = Simulator(cluster(tmp_path))
    assert ipvs.probe("node/node-1", "127.0.0.1", 30080).verdict is Verdict.REFUSED
    iptables = Simulator(cluster(tmp_path, "{mode: iptables}"))
    assert iptables.probe("node/node-1", "127.0.0.1", 30080).verdict is (
        Verdict.DELIVERED
    )


def test_node_port_addresses_primary_leaves_the_bridge_address_out(
    tmp_path: Path,
) -> None:
    sim = Simulator(cluster(tmp_path, "{mode: ipvs, nodePortAddresses: [primary]}"))
    assert sim.probe("default/client", "node/node-1", 30080).verdict is (
        Verdict.DELIVERED
    )
    bridge = sim.fabric.netns["node-1"].interfaces["cbr0"].texts[0]
    assert sim.probe("default/client", bridge, 30080).verdict is Verdict.REFUSED
    every = Simulator(cluster(tmp_path))
    assert every.probe("default/client", bridge, 30080).verdict is Verdict.DELIVERED


def test_masquerade_all_masquerades_pod_traffic(tmp_path: Path) -> None:
    plain = Simulator(cluster(tmp_path))
    assert server_source(plain.probe("default/client", "10.96.0.80", 80)) == (
        "10.0.1.3"
    )
    sim = Simulator(cluster(tmp_path, "{mode: ipvs, iptables: {masqueradeAll: true}}"))
    t = sim.probe("default/client", "10.96.0.80", 80)
    assert t.verdict is Verdict.DELIVERED
    assert "KUBE-CLUSTER-IP dst,dst (masqueradeAll) -> KUBE-MARK-MASQ" in details(t)
    assert server_source(t) == "10.0.1.1"


def test_load_balancer_source_ranges_and_the_node_itself(tmp_path: Path) -> None:
    sim = Simulator(cluster(tmp_path))
    t = sim.probe("external/laptop", "203.0.113.80", 80)
    assert t.verdict is Verdict.DELIVERED
    blocked = sim.probe("default/client", "203.0.113.80", 80)
    assert blocked.verdict is Verdict.DROPPED
    assert "KUBE-SOURCE-RANGES-FIREWALL: 10.0.1.3 is outside" in details(blocked)
    own = sim.probe("node/node-1", "203.0.113.80", 80)
    assert own.verdict is Verdict.DROPPED
    assert "KUBE-IPVS-OUT-FILTER: -m ipvs --vaddr 203.0.113.80 --vport 80" in (
        details(own)
    )


def test_the_node_answers_arp_for_a_cluster_ip(tmp_path: Path) -> None:
    """kube-ipvs0's addresses are local: with arp_ignore=0 (strictARP off) a node answers
    ARP for them on eth0 (the reason for kube-proxy's `strictARP`)."""
    sim = Simulator(cluster(tmp_path))
    eth0 = sim.fabric.netns["node-2"].interfaces["eth0"]
    ask = Packet(
        eth=Ether(eth0.mac, BROADCAST, ETH_P_ARP),
        arp=ARP(ARP_REQUEST, eth0.mac, "10.100.0.3", ZERO_MAC, "10.96.0.80"),
    )
    t = sim.send("node/node-2", ask)
    node1 = sim.fabric.netns["node-1"].interfaces["eth0"].mac
    assert f"who-has 10.96.0.80 from 10.100.0.3: reply 10.96.0.80 is-at {node1}" in (
        details(t)
    )


@pytest.mark.parametrize("cni", ["flannel", "calico"])
def test_network_policy_holds_for_ipvs_forwarded_requests(
    tmp_path: Path, cni: str
) -> None:
    text = BASE.replace("KUBEPROXY", "{mode: ipvs}\n  cni: " + cni).replace(
        "AFFINITY", "None"
    ) + ("  - probe: {from: default/client, to: svc/default/web, port: 80}\n")
    text = text.replace(
        "steps:",
        "  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n"
        "    metadata: {name: deny}\n"
        "    spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}\n"
        "steps:",
    )
    scenario, _ = load_scenario_text(text, "lab.yaml", tmp_path)
    sim = Simulator(scenario.cluster)
    t = sim.probe("default/client", "10.96.0.80", 80)  # rr: web-0, on node-1 too
    assert t.verdict is Verdict.DENIED_INGRESS
    assert any(h.event == "OUTPUT" and "default/deny" in h.detail for h in t.hops)


def test_verify_reports_ipvs_not_comparable_without_the_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kernel_verify, "has_ip_vs", lambda: False)
    scenario, _ = load_scenario(ROOT / "ipvs-mode.yaml")
    report = kernel_verify.verify(scenario)
    assert report.rows
    for row in report.rows:
        assert row.status == NOT_COMPARABLE
        assert row.kernel.detail == "not comparable: this kernel has no ip_vs module"
