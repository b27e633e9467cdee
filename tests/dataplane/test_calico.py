"""Calico's node as its CNI plugin, IPAM and Felix build it (docs/model.md, "CNI profiles")."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.cni import PLUGINS
from dataplane.cni.calico import veth_name
from dataplane.fabric import build_fabric
from dataplane.netns import Kind
from dataplane.packet import ICMP, IP, UDP, Packet
from dataplane.sim import Simulator
from topology.errors import TopologyError
from topology.loader import load_scenario_text
from topology.model import MODELLED_CNIS, Cluster, Protocol
from topology.scenario import Verdict

PODS = """
manifests:
  - {kind: Pod, apiVersion: v1, metadata: {name: a}, spec: {nodeName: node-1, containers: [{name: c}]}}
  - {kind: Pod, apiVersion: v1, metadata: {name: b}, spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}}
  - {kind: Pod, apiVersion: v1, metadata: {name: c}, spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 80}]}]}}
steps: [{probe: {from: default/a, to: default/c, port: 80}}]
"""


def calico(cluster: str = "", network: str = "ipip", dns: bool = False) -> Cluster:
    text = (
        f"name: t\ncluster:\n  cni: calico\n  network: {network}\n  dns: {str(dns).lower()}\n"
        + cluster
        + PODS
    )
    scenario, _ = load_scenario_text(text, "lab.yaml")
    return scenario.cluster


def error(cluster: str) -> str:
    with pytest.raises(TopologyError) as e:
        load_scenario_text("name: t\ncluster:\n" + cluster + PODS, "lab.yaml")
    return str(e.value)


def test_every_modelled_cni_has_a_plugin() -> None:
    assert set(PLUGINS) == set(MODELLED_CNIS)


def test_blocks_of_the_pool_in_node_order_and_the_tunnel_takes_the_first() -> None:
    c = calico()
    assert [str(n.pod_cidr) for n in c.nodes] == ["192.168.0.0/26", "192.168.0.64/26"]
    assert [str(c.pods[k].ip) for k in ("default/a", "default/b", "default/c")] == [
        "192.168.0.1",
        "192.168.0.2",
        "192.168.0.65",
    ]
    bgp = calico(network="bgp")
    assert str(bgp.pods["default/a"].ip) == "192.168.0.0"  # no tunnel: .0 is a pod's
    own = calico("  calico: {ipPool: 172.20.0.0/22, blockSize: 28}\n")
    assert [str(n.pod_cidr) for n in own.nodes] == ["172.20.0.0/28", "172.20.0.16/28"]
    assert own.config.pod_mtu == 1480


def test_the_pod_end_is_a_slash_32_routed_to_169_254_1_1() -> None:
    fab = build_fabric(calico())
    pod = fab.netns["pod:default/a"]
    assert pod.routes.show() == [
        "169.254.1.1/32 dev eth0 scope link",
        "default via 169.254.1.1 dev eth0",
    ]
    eth0 = pod.interfaces["eth0"]
    assert [str(a) for a in eth0.addrs] == ["192.168.0.1/32"]
    assert eth0.mtu == 1480
    cali = veth_name(c := calico().pods["default/a"])
    assert cali.startswith("cali") and len(cali) == 15
    assert eth0.peer == ("node-1", cali)
    host = fab.netns["node-1"].interfaces[cali]
    assert (host.mac, host.proxy_arp, host.master) == ("ee:ee:ee:ee:ee:ee", True, None)
    assert fab.netns["node-1"].permanent_neigh[(cali, str(c.ip))] == eth0.mac


def test_ipip_node_tables() -> None:
    fab = build_fabric(calico())
    node = fab.netns["node-1"]
    a, b = (veth_name(calico().pods[k]) for k in ("default/a", "default/b"))
    assert sorted(node.routes.show()) == sorted(
        [
            "10.100.0.0/24 dev eth0 proto kernel scope link src 10.100.0.2",
            "default via 10.100.0.1 dev eth0",
            "blackhole 192.168.0.0/26 proto bird",
            "192.168.0.64/26 via 10.100.0.3 dev tunl0 proto bird onlink",
            f"192.168.0.1/32 dev {a} scope link",
            f"192.168.0.2/32 dev {b} scope link",
        ]
    )
    tunl0 = node.interfaces["tunl0"]
    assert (tunl0.kind, tunl0.mtu, [str(x) for x in tunl0.addrs]) == (
        Kind.IPIP,
        1480,
        ["192.168.0.0/32"],
    )
    assert not any(i.kind is Kind.BRIDGE for i in node.interfaces.values())


def test_vxlan_and_bgp_node_tables() -> None:
    fab = build_fabric(calico(network="vxlan"))
    node = fab.netns["node-1"]
    dev = node.interfaces["vxlan.calico"]
    assert (dev.kind, dev.vni, dev.vxlan_port, dev.mtu) == (
        Kind.VXLAN,
        4096,
        4789,
        1450,
    )
    shown = node.routes.show()
    assert "192.168.0.64/26 via 192.168.0.64 dev vxlan.calico proto 80 onlink" in shown
    assert "blackhole 192.168.0.0/26 proto 80" in shown
    remote = build_fabric(calico(network="vxlan")).netns["node-2"].interfaces
    mac = remote["vxlan.calico"].mac
    assert node.permanent_neigh[("vxlan.calico", "192.168.0.64")] == mac
    assert fab.vxlan_fdb[("node-1", mac)] == "10.100.0.3"
    bgp = build_fabric(calico(network="bgp")).netns["node-1"]
    assert "192.168.0.64/26 via 10.100.0.3 dev eth0 proto bird" in bgp.routes.show()
    assert {"tunl0", "vxlan.calico"}.isdisjoint(bgp.interfaces)


def test_proxy_arp_and_the_felix_chains_in_a_same_node_walk() -> None:
    c = calico()
    a, b = (veth_name(c.pods[k]) for k in ("default/a", "default/b"))
    t = Simulator(c).probe("default/a", "default/b", 80)
    assert t.verdict is Verdict.DELIVERED
    details = [h.detail for h in t.hops]
    assert (
        "who-has 169.254.1.1 from 192.168.0.1: reply 169.254.1.1 is-at"
        " ee:ee:ee:ee:ee:ee" in details
    )
    assert any(
        d.startswith(f"netpol: cali-fw-{a} (egress of default/a)") for d in details
    )
    assert any(
        d.startswith(f"netpol: cali-tw-{b} (ingress of default/b)") for d in details
    )
    assert "ip_forward: ttl 64 -> 63" in details  # routed, not bridged


def test_ipip_outer_header_inherits_the_ttl_and_costs_20_bytes() -> None:
    t = Simulator(calico()).probe("default/a", "default/c", 80)
    encap = next(h for h in t.hops if h.event == "encap")
    outer = encap.packet
    assert outer is not None and outer.ip is not None and outer.inner is not None
    assert (outer.ip.src, outer.ip.dst, outer.ip.proto) == (
        "10.100.0.2",
        "10.100.0.3",
        4,
    )
    assert outer.ip.ttl == outer.inner.ip.ttl == 63  # type: ignore[union-attr]
    assert outer.ip_len() == outer.inner.ip_len() + 20
    assert t.verdict is Verdict.DELIVERED


def test_a_denied_ingress_names_the_tw_chain() -> None:
    policy = """  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: deny}
    spec: {podSelector: {}, policyTypes: [Ingress]}
"""
    text = "name: t\ncluster: {cni: calico, dns: false}\n" + PODS.replace(
        "steps:", policy + "steps:"
    )
    scenario, _ = load_scenario_text(text, "lab.yaml")
    c = scenario.cluster
    t = Simulator(c).probe("default/a", "default/c", 80)
    assert t.verdict is Verdict.DENIED_INGRESS and t.policy == "default/deny"
    drop = next(h for h in t.hops if h.reason is not None)
    assert drop.node == "node-2"
    assert drop.detail.startswith(f"netpol: cali-tw-{veth_name(c.pods['default/c'])}")


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        (
            "  cni: calico\n  dns: false\n  calico: {blockSize: 31}\n",
            "lab.yaml:9: Pod default/b: cannot place pod default/b: IPAM block"
            " 192.168.0.0/31 of node 'node-1' is exhausted (1 pod addresses in use)",
        ),
        (
            "  cni: calico\n  network: host-gw\n",
            "lab.yaml:4: cluster.network: 'host-gw' is not allowed with cni: calico"
            " (allowed: ipip, vxlan, bgp)",
        ),
        (
            "  cni: calico\n  bridge: br0\n",
            "lab.yaml:4: cluster.bridge: cni: calico does not use bridge (Calico builds"
            " no bridge)",
        ),
        (
            "  cni: calico\n  vxlanPort: 4789\n",
            "lab.yaml:4: cluster.vxlanPort: cni: calico does not use vxlanPort (network"
            " ipip has no VXLAN device)",
        ),
        (
            "  calico: {blockSize: 24}\n",
            "lab.yaml:3: cluster.calico: cni: flannel does not use calico (it configures"
            " cni: calico)",
        ),
        (
            "  cni: calico\n  nodes: [{name: n1, podCIDR: 10.0.1.0/24}]\n",
            "lab.yaml:4: cluster.nodes[0].podCIDR: cni: calico does not use podCIDR"
            " (Calico's IPAM gives each node a block of cluster.calico.ipPool)",
        ),
        (
            "  cni: calico\n  calico: {ipPool: 10.96.0.0/16}\n",
            "lab.yaml:4: cluster.calico.ipPool: 10.96.0.0/16 overlaps serviceCIDR"
            " 10.96.0.0/12",
        ),
        (
            "  cni: calico\n  calico: {ipPool: 192.168.0.0/24, blockSize: 20}\n",
            "lab.yaml:4: cluster.calico.blockSize: /20 blocks do not fit in ipPool"
            " 192.168.0.0/24 (allowed: 24-32)",
        ),
        (
            "  cni: calico\n  calico: {ipPool: 192.168.0.0/26, blockSize: 26}\n",
            "lab.yaml:2: cluster: ipPool 192.168.0.0/26 has 1 blocks of /26, none left"
            " for node 'node-2' (allowed: a larger pool or a longer blockSize)",
        ),
    ],
    ids=[
        "block-full",
        "network",
        "bridge",
        "vxlanPort",
        "calico-key",
        "podCIDR",
        "pool",
        "blockSize",
        "no-block",
    ],
)
def test_what_a_cni_does_not_use_or_have_is_an_error(
    cluster: str, message: str
) -> None:
    assert error(cluster) == message


def test_tunl0_is_captured_as_raw_ip_and_eth0_as_ip_in_ip(tmp_path: Path) -> None:
    from scapy.layers.inet import IP
    from scapy.utils import rdpcap

    from dataplane.pcap import LINKTYPE_RAW, PcapSink

    sink = PcapSink(tmp_path)
    sink.add(Simulator(calico()).probe("default/a", "default/c", 80))
    sink.close()
    raw = (tmp_path / "node-1_host_tunl0.pcap").read_bytes()
    assert int.from_bytes(raw[20:24], "little") == LINKTYPE_RAW
    syn = rdpcap(str(tmp_path / "node-1_host_tunl0.pcap"))[0]
    assert (syn[IP].src, syn[IP].dst) == ("192.168.0.1", "192.168.0.65")
    outer = rdpcap(str(tmp_path / "node-1_host_eth0.pcap"))
    tunnelled = [p for p in outer if IP in p and p[IP].proto == 4]
    assert tunnelled and tunnelled[0][IP].payload[IP].dst == "192.168.0.65"


EXTERNAL = "  externals: [{name: laptop, ip: 192.0.2.10}]\n"


@pytest.mark.parametrize("network", ["ipip", "vxlan", "bgp"])
def test_felix_drops_what_a_workload_sends_to_the_vxlan_port(network: str) -> None:
    sim = Simulator(calico(network=network))
    t = sim.probe("default/a", "default/c", 4789, Protocol.UDP)
    assert t.verdict is Verdict.DROPPED
    drop = next(h for h in t.hops if h.reason is not None)
    assert (drop.node, drop.event) == ("node-1", "FORWARD")
    assert drop.detail == (
        f"felix: cali-fw-{veth_name(sim.cluster.pods['default/a'])}: Drop VXLAN"
        " encapped packets originating in workloads (allowVXLANPacketsFromWorkloads:"
        " false)"
    )
    # the node is no workload: its datagram reaches c, which has no socket on 4789
    node = sim.probe("node/node-1", "default/c", 4789, Protocol.UDP)
    assert node.verdict is Verdict.REFUSED


def test_felix_drops_ip_in_ip_that_a_workload_sends() -> None:
    sim = Simulator(calico(network="bgp"))
    inner = Packet(ip=IP("192.168.0.1", "192.168.0.65", 1), l4=ICMP(8, id=1))
    t = sim.send("default/a", Packet(ip=IP("", "10.100.0.3", 4), inner=inner))
    assert t.verdict is Verdict.DROPPED
    assert "Drop IPinIP encapped packets originating in workloads" in t.explanation


@pytest.mark.parametrize(
    ("network", "outer", "message"),
    [
        (
            "ipip",
            Packet(
                ip=IP("192.0.2.10", "10.100.0.2", 4),
                inner=Packet(ip=IP("192.0.2.10", "192.168.0.1", 1), l4=ICMP(8, id=1)),
            ),
            "felix: cali-INPUT: Drop IPIP packets from non-Calico hosts (192.0.2.10 is"
            " not in cali40all-hosts-net)",
        ),
        (
            "vxlan",
            Packet(ip=IP("192.0.2.10", "10.100.0.2", 17), l4=UDP(40000, 4789)),
            "felix: cali-INPUT: Drop IPv4 VXLAN packets from non-allowed hosts"
            " (192.0.2.10 is not in cali40all-vxlan-net)",
        ),
    ],
)
def test_felix_takes_tunnel_packets_only_from_the_clusters_hosts(
    network: str, outer: Packet, message: str
) -> None:
    sim = Simulator(calico(EXTERNAL, network=network))
    t = sim.send("external/laptop", outer)
    assert t.verdict is Verdict.DROPPED
    drop = next(h for h in t.hops if h.reason is not None)
    assert (drop.node, drop.event, drop.detail) == ("node-1", "INPUT", message)
    # between the nodes the tunnel works (the walk of a pod's packet crosses it)
    assert (
        Simulator(calico(network=network)).probe("default/a", "default/c", 80).verdict
        is Verdict.DELIVERED
    )
