"""Cilium's node as its CNI plugin, cluster-pool IPAM and BPF datapath build it
(docs/model.md, "CNI profiles": cilium)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dataplane.cni.cilium import identities, identity
from dataplane.dissect import dissect_ip
from dataplane.fabric import build_fabric
from dataplane.hubble import flow_lines
from dataplane.netns import Kind
from dataplane.packet import Geneve, to_bytes
from dataplane.pcap import write_pcaps
from dataplane.sim import Simulator
from tests.test_cli import dataplane
from topology.errors import TopologyError
from topology.graph import lxc_name
from topology.loader import load_scenario_text
from topology.model import Cluster
from topology.scenario import Verdict

PODS = """
manifests:
  - {kind: Pod, apiVersion: v1, metadata: {name: a, labels: {app: client}}, spec: {nodeName: node-1, containers: [{name: c}]}}
  - {kind: Pod, apiVersion: v1, metadata: {name: b, labels: {app: web}}, spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}}
  - {kind: Pod, apiVersion: v1, metadata: {name: c, labels: {app: web}}, spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 80}]}]}}
steps: [{probe: {from: default/a, to: default/c, port: 80}}]
"""
DENY = """  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: deny}
    spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}
"""


def cilium(cluster: str = "", network: str = "vxlan", extra: str = "") -> Cluster:
    text = (
        f"name: t\ncluster:\n  cni: cilium\n  network: {network}\n  dns: false\n"
        + cluster
        + PODS.replace("steps:", extra + "steps:")
    )
    scenario, _ = load_scenario_text(text, "lab.yaml")
    return scenario.cluster


def error(cluster: str) -> str:
    with pytest.raises(TopologyError) as e:
        load_scenario_text("name: t\ncluster:\n" + cluster + PODS, "lab.yaml")
    return str(e.value)


def test_cluster_pool_gives_each_node_a_slash_24_of_10_0_0_0_8_in_node_order() -> None:
    c = cilium()
    assert [str(n.pod_cidr) for n in c.nodes] == ["10.0.0.0/24", "10.0.1.0/24"]
    # .1 is cilium_host's router address, so the first pod gets .2
    assert [str(c.pods[k].ip) for k in ("default/a", "default/b", "default/c")] == [
        "10.0.0.2",
        "10.0.0.3",
        "10.0.1.2",
    ]
    assert c.config.pod_mtu == 1450
    assert cilium(network="native").config.pod_mtu == 1500


def test_the_pod_routes_to_cilium_host_and_its_lxc_answers_arp() -> None:
    c = cilium()
    fab = build_fabric(c)
    pod = fab.netns["pod:default/a"]
    assert pod.routes.show() == [
        "10.0.0.1/32 dev eth0 scope link",
        "default via 10.0.0.1 dev eth0",
    ]
    eth0 = pod.interfaces["eth0"]
    assert [str(x) for x in eth0.addrs] == ["10.0.0.2/32"]
    lxc = lxc_name("default/a")
    assert lxc == "lxc9efb36117d50" and len(lxc) == 15
    assert eth0.peer == ("node-1", lxc)
    host_end = fab.netns["node-1"].interfaces[lxc]
    assert (host_end.proxy_arp, host_end.master, host_end.mtu) == (True, None, 1450)
    t = Simulator(c).probe("default/a", "default/b", 80)
    assert f"who-has 10.0.0.1 from 10.0.0.2: reply 10.0.0.1 is-at {host_end.mac}" in [
        h.detail for h in t.hops
    ]


def test_vxlan_node_devices_and_routes() -> None:
    fab = build_fabric(cilium())
    node = fab.netns["node-1"]
    a, b = lxc_name("default/a"), lxc_name("default/b")
    assert sorted(node.routes.show()) == sorted(
        [
            "10.100.0.0/24 dev eth0 proto kernel scope link src 10.100.0.2",
            "default via 10.100.0.1 dev eth0",
            "10.0.0.1/32 dev cilium_host proto kernel scope link",
            "10.0.1.0/24 via 10.0.1.1 dev cilium_vxlan onlink",
            f"10.0.0.2/32 dev {a} scope link",
            f"10.0.0.3/32 dev {b} scope link",
        ]
    )
    host, net = node.interfaces["cilium_host"], node.interfaces["cilium_net"]
    assert [str(x) for x in host.addrs] == ["10.0.0.1/32"]
    assert (host.peer, net.peer) == (
        ("node-1", "cilium_net"),
        ("node-1", "cilium_host"),
    )
    dev = node.interfaces["cilium_vxlan"]
    assert (dev.kind, dev.vxlan_port, dev.mtu, dev.addrs) == (
        Kind.VXLAN,
        8472,
        1450,
        (),
    )
    assert not any(i.kind is Kind.BRIDGE for i in node.interfaces.values())
    native = build_fabric(cilium(network="native")).netns["node-1"]
    assert "10.0.1.0/24 via 10.100.0.3 dev eth0" in native.routes.show()
    assert "cilium_vxlan" not in native.interfaces


def test_geneve_node_devices_and_routes() -> None:
    node = build_fabric(cilium(network="geneve")).netns["node-1"]
    assert "10.0.1.0/24 via 10.0.1.1 dev cilium_geneve onlink" in node.routes.show()
    assert "cilium_vxlan" not in node.interfaces
    dev = node.interfaces["cilium_geneve"]
    # UDP 6081 (Cilium's tunnel-port for geneve), the same 50 bytes as VXLAN
    assert (dev.kind, dev.vxlan_port, dev.mtu) == (Kind.GENEVE, 6081, 1450)


def test_geneve_carries_the_identity_in_its_vni_and_tshark_reads_it(
    tmp_path: Path,
) -> None:
    sim = Simulator(cilium(network="geneve"))
    t = sim.probe("default/a", "default/c", 80)
    assert t.verdict is Verdict.DELIVERED
    encaps = [h for h in t.hops if h.event == "encap"]
    assert [(h.device, h.point, type(h.packet.tunnel)) for h in encaps] == [  # type: ignore[union-attr]
        ("cilium_geneve", "TO_OVERLAY", Geneve),
        ("cilium_geneve", "TO_OVERLAY", Geneve),
    ]
    assert encaps[0].detail.startswith(
        "TO_OVERLAY cil_from_container: Geneve vni 256, 10.100.0.2 -> 10.100.0.3"
        " udp/6081"
    )
    outer = encaps[0].packet
    assert outer is not None and outer.frame_len() == 54 + 50  # 54-byte inner frame
    decap = next(h for h in t.hops if h.event == "decap")
    assert (decap.node, decap.point, decap.program) == (
        "node-2",
        "FROM_OVERLAY",
        "cil_from_overlay",
    )
    write_pcaps([t], tmp_path)
    r = subprocess.run(
        [
            "tshark", "-r", str(tmp_path / "node-1_host_eth0.pcap"), "-Y", "geneve",
            "-T", "fields", "-e", "udp.dstport", "-e", "geneve.vni", "-e",
            "geneve.proto_type", "-e", "tcp.flags.str",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    first = r.stdout.splitlines()[0].split("\t")
    assert first[:3] == ["6081", "0x000100", "0x6558"]  # VNI 256: identity of a
    assert dissect_ip(to_bytes(outer)) == outer  # read back as written


def test_identities_from_256_in_pod_order_one_per_label_set() -> None:
    c = cilium()
    assert dict(identities(c)) == {
        ("k8s:app=client", "k8s:io.kubernetes.pod.namespace=default"): 256,
        ("k8s:app=web", "k8s:io.kubernetes.pod.namespace=default"): 257,
    }
    # b and c share their labels: one identity
    assert identity(c, c.pods["default/b"]) == identity(c, c.pods["default/c"]) == 257


def test_the_vni_carries_the_source_identity() -> None:
    t = Simulator(cilium()).probe("default/a", "default/c", 80)
    assert t.verdict is Verdict.DELIVERED
    encaps = [h for h in t.hops if h.event == "encap"]
    vnis = [(h.direction, h.packet.tunnel.vni) for h in encaps]  # type: ignore[union-attr]
    assert vnis == [("request", 256), ("reply", 257)]
    assert encaps[0].detail.startswith("TO_OVERLAY cil_from_container: VXLAN vni 256,")
    node = Simulator(cilium()).probe("node/node-1", "default/c", 80)
    first = next(h for h in node.hops if h.event == "encap")
    assert first.packet.tunnel.vni == 1  # type: ignore[union-attr]  # reserved:host
    assert first.program == "cil_from_host"


def test_observation_points_and_programs_of_a_cross_node_walk() -> None:
    t = Simulator(cilium()).probe("default/a", "default/c", 80)
    seen = [
        (h.node, h.device, h.point, h.program)
        for h in t.hops
        if h.point and h.direction == "request"
    ]
    a, c = lxc_name("default/a"), lxc_name("default/c")
    assert seen == [
        ("node-1", a, "FROM_ENDPOINT", "cil_from_container"),
        ("node-1", "", "POLICY_VERDICT", "cil_from_container"),
        ("node-1", "cilium_vxlan", "TO_OVERLAY", "cil_from_container"),
        ("node-2", "cilium_vxlan", "FROM_OVERLAY", "cil_from_overlay"),
        ("node-2", "", "POLICY_VERDICT", "cil_lxc_policy"),
        ("node-2", c, "TO_ENDPOINT", "cil_lxc_policy"),
    ]
    native = Simulator(cilium(network="native")).probe("default/a", "default/c", 80)
    points = [h.point for h in native.hops if h.point and h.direction == "request"]
    assert points == [
        "FROM_ENDPOINT",
        "TO_STACK",
        "POLICY_VERDICT",
        "FROM_NETWORK",
        "POLICY_VERDICT",
        "TO_ENDPOINT",
    ]
    assert native.hops[0].to_dict().get("observation_point") is None
    hop = next(h for h in native.hops if h.point == "TO_STACK")
    assert hop.to_dict()["observation_point"] == "TO_STACK"


def test_policy_at_the_endpoints_in_hubbles_words() -> None:
    c = cilium(extra=DENY)
    t = Simulator(c).probe("default/a", "default/c", 80)
    assert t.verdict is Verdict.DENIED_INGRESS and t.policy == "default/deny"
    drop = next(h for h in t.hops if h.reason is not None)
    assert drop.node == "node-2" and drop.point == "POLICY_VERDICT"
    assert drop.detail.startswith(
        f"POLICY_VERDICT cil_lxc_policy: netpol: cil_lxc_policy ({lxc_name('default/c')},"
        " ingress of default/c): denied:"
    )
    assert flow_lines(t, c) == [
        "default/a:40000 (ID:256) -> default/c:80 (ID:257) from-endpoint FORWARDED"
        " (TCP Flags: SYN)",
        "default/a:40000 (ID:256) -> default/c:80 (ID:257) to-overlay FORWARDED"
        " (TCP Flags: SYN)",
        "default/a:40000 (ID:256) -> default/c:80 (ID:257) from-overlay FORWARDED"
        " (TCP Flags: SYN)",
        "default/a:40000 (ID:256) -> default/c:80 (ID:257) policy-verdict:none INGRESS"
        " DENIED (TCP Flags: SYN)",
        "default/a:40000 (ID:256) <> default/c:80 (ID:257) Policy denied DROPPED"
        " (TCP Flags: SYN)",
    ]


def test_hubble_lines_of_a_reply_and_of_a_node() -> None:
    c = cilium()
    t = Simulator(c).probe("node/node-2", "default/b", 80)
    lines = flow_lines(t, c)
    assert lines[0] == (
        "10.100.0.3:40000 (host) -> default/b:80 (ID:257) to-overlay FORWARDED"
        " (TCP Flags: SYN)"
    )
    assert (
        "10.100.0.3:40000 (remote-node) <- default/b:80 (ID:257) from-endpoint"
        " FORWARDED (TCP Flags: SYN, ACK)"
    ) in lines


def test_run_output_hubble() -> None:
    r = dataplane("run", "scenarios/cilium/same-node.yaml", "-o", "hubble")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # a and b have the same labels (none): one identity, after kube-dns's 256
    a, b = "default/a:40000 (ID:257)", "default/b:80 (ID:257)"
    assert lines[:2] == [
        f"{a} -> {b} from-endpoint FORWARDED (TCP Flags: SYN)",
        f"{a} -> {b} to-endpoint FORWARDED (TCP Flags: SYN)",
    ]
    r = dataplane("run", "scenarios/same-node.yaml", "-o", "hubble")
    assert r.returncode == 2
    assert r.stderr == (
        "error: -o hubble: scenario 'same-node pods' has cni: flannel; Hubble observes"
        " Cilium's datapath (allowed: scenarios with cni: cilium)\n"
    )


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        (
            "  cni: cilium\n  network: geneve\n  vxlanPort: 4789\n",
            "lab.yaml:5: cluster.vxlanPort: cni: cilium does not use vxlanPort (network"
            " geneve has no VXLAN device)",
        ),
        (
            "  cni: cilium\n  network: ipip\n",
            "lab.yaml:4: cluster.network: 'ipip' is not allowed with cni: cilium"
            " (allowed: vxlan, geneve, native)",
        ),
        (
            "  cni: cilium\n  bridge: br0\n",
            "lab.yaml:4: cluster.bridge: cni: cilium does not use bridge (Cilium builds"
            " no bridge)",
        ),
        (
            "  cni: cilium\n  network: native\n  vxlanPort: 4789\n",
            "lab.yaml:5: cluster.vxlanPort: cni: cilium does not use vxlanPort (network"
            " native has no VXLAN device)",
        ),
        (
            "  cni: cilium\n  calico: {blockSize: 24}\n",
            "lab.yaml:4: cluster.calico: cni: cilium does not use calico (it configures"
            " cni: calico)",
        ),
        (
            "  cni: cilium\n  kubeProxy: {mode: nftables}\n",
            "lab.yaml:4: cluster.kubeProxy: cni: cilium does not use kubeProxy (Cilium"
            " replaces kube-proxy)",
        ),
        (
            "  cni: cilium\n  nodes: [{name: n1, podCIDR: 10.0.1.0/24}]\n",
            "lab.yaml:4: cluster.nodes[0].podCIDR: cni: cilium does not use podCIDR"
            " (Cilium's cluster-pool IPAM gives each node a /24 of 10.0.0.0/8)",
        ),
    ],
    ids=[
        "geneve",
        "network",
        "bridge",
        "vxlanPort",
        "calico-key",
        "kubeProxy",
        "podCIDR",
    ],
)
def test_what_cilium_does_not_use_or_have_is_an_error(
    cluster: str, message: str
) -> None:
    assert error(cluster) == message


SERVICE = """  - apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      type: NodePort
      selector: {app: web}
      ports: [{port: 80, targetPort: 80, nodePort: 30080}]
  - apiVersion: v1
    kind: Service
    metadata: {name: empty}
    spec: {selector: {app: none}, ports: [{port: 80}]}
"""


def test_no_kube_proxy_hooks_on_a_cilium_node() -> None:
    node = build_fabric(cilium()).netns["node-1"]
    names = {h.name for hooks in node.hooks.hooks.values() for h in hooks}  # type: ignore[union-attr]
    assert "cilium-lb" in names
    assert not any(n.startswith("kube-proxy") for n in names)


def test_socket_lb_translates_a_pods_connect_to_a_clusterip() -> None:
    c = cilium(extra=SERVICE)
    svc = c.services["default/web"]
    t = Simulator(c).probe("default/a", "svc/default/web", 80)
    assert t.verdict is Verdict.DELIVERED and t.endpoint in ("default/b", "default/c")
    first = t.hops[0]
    assert (first.netns, first.event, first.point, first.program) == (
        "pod default/a",
        "connect",
        "POST_XLATE_FWD",
        "cil_sock4_connect",
    )
    assert first.detail.startswith(
        f"cil_sock4_connect: ClusterIP {svc.cluster_ip}:80 is default/web:80 -> backend"
    )
    assert str(first.diffs[0]) == f"ip.dst: {svc.cluster_ip} -> " + str(
        c.pods[t.endpoint].ip
    )
    # the SYN leaves the pod with the backend's address; nothing DNATs it on the way
    syn = next(
        h
        for h in t.hops
        if h.event == "xmit" and h.netns == "pod default/a" and h.packet.ip  # type: ignore[union-attr]
    )
    assert syn.packet is not None and syn.packet.ip is not None
    assert syn.packet.ip.dst == str(c.pods[t.endpoint].ip)
    assert not any(h.event == "nat" for h in t.hops)
    assert flow_lines(t, c)[0].endswith("post-xlate-fwd TRANSLATED (TCP)")


def test_nodeport_in_cil_from_netdev_and_no_backend_rejected() -> None:
    c = cilium(extra=SERVICE)
    t = Simulator(c).probe("node/node-1", "node/node-2", 30080)
    assert t.verdict is Verdict.DELIVERED
    nat = next(h for h in t.hops if h.event == "nat" and h.node == "node-2")
    assert nat.detail.startswith(
        "PREROUTING cil_from_netdev: NodePort 10.100.0.3:30080 is default/web:80 ->"
    )
    t = Simulator(c).probe("default/a", "svc/default/empty", 80)
    assert t.verdict is Verdict.REFUSED
    drop = next(h for h in t.hops if h.reason is not None)
    assert "cil_from_container: default/empty:80 has no backends ->" in drop.detail
