"""The flannel profiles' pods on the kernel are attached by the upstream CNI plugins
(containernetworking-plugins: loopback, bridge + host-local as flannel delegates them,
portmap), and everything they made is removed with CNI DEL, even after a failure."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dataplane import portmap
from dataplane.fabric import build_fabric
from dataplane.kernel import cniplugins, netns, owner
from dataplane.kernel.build import KernelBuildError, KernelCluster
from tests.dataplane.builders import tiny_cluster
from topology.loader import load_scenario_text
from topology.model import Cni, NetworkMode

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        cniplugins.missing() is not None, reason=str(cniplugins.missing())
    ),
]

THREE_PODS = """
name: three pods
cluster:
  network: host-gw
  nodes: [{name: node-1, ip: 10.100.0.2}, {name: node-2, ip: 10.100.0.3}]
manifests:
  - {apiVersion: v1, kind: Pod, metadata: {name: a, labels: {app: a}},
     spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: b, labels: {app: b}},
     spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: c, labels: {app: c}},
     spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 80}]}]}}
steps:
  - probe: {from: default/a, to: default/c, port: 80}
"""


@pytest.fixture(scope="module")
def built() -> Iterator[KernelCluster]:
    scenario, _ = load_scenario_text(THREE_PODS)
    kc = KernelCluster.build(build_fabric(scenario.cluster))
    try:
        yield kc
    finally:
        kc.close()


def host_local(kc: KernelCluster, node: str) -> dict[str, str]:
    """host-local's files for a node: address -> what the file holds."""
    assert kc.cni is not None
    folder = kc.cni.state / node / "cbr0"
    return {p.name: p.read_text() for p in folder.iterdir() if p.name != "lock"}


def test_every_pod_is_attached_by_the_plugins(built: KernelCluster) -> None:
    kc = built
    pods = {"pod:default/a", "pod:default/b", "pod:default/c"}
    assert kc.attached == {*pods, "pod:kube-system/coredns-0"}
    assert kc.plugin_made["pod:default/a"] == {"lo", "eth0"}
    assert "cbr0" in kc.plugin_made["node-1"]
    side = kc.kernel_side()
    made = side["pod interfaces, addresses, routes, bridge ports"]
    assert made.startswith(f"the upstream CNI plugins {cniplugins.version()} (Debian")
    assert cniplugins.version()[0].isdigit(), cniplugins.version()
    assert side["pod addresses (IPAM)"] == (
        f"CNI host-local plugin {cniplugins.version()}, checked against the"
        " simulator's IPAM"
    )


def test_host_local_chose_the_simulators_addresses(built: KernelCluster) -> None:
    kc = built
    pods = kc.fabric.cluster.pods
    assert kc.ipam_asked == []
    files = host_local(kc, "node-1")
    # host-local's record: the container id and the interface, per address
    for key in ("default/a", "default/b", "kube-system/coredns-0"):
        want = f"{portmap.container_id(key)}\neth0"  # read_text: CRLF as LF
        assert files[str(pods[key].ip)] == want, (key, files)
    assert files["last_reserved_ip.0"] == str(pods["default/b"].ip)
    assert str(pods["default/c"].ip) in host_local(kc, "node-2")


def test_the_bridge_plugin_made_the_pods_devices(built: KernelCluster) -> None:
    kc = built
    pod_ns = kc.names["pod:default/a"]
    link = kc.ipr[pod_ns].link_lookup(ifname="eth0")
    assert link
    (eth0,) = kc.ipr[pod_ns].get_links(link[0])
    assert eth0.get_attr("IFLA_MTU") == kc.fabric.cluster.config.pod_mtu
    routes = netns.run(pod_ns, ["ip", "route"]).splitlines()
    assert "default via 10.0.1.1 dev eth0 " in routes
    # flannel's delegate: a route to its Network (here the podCIDRs' supernet)
    assert "10.0.0.0/22 via 10.0.1.1 dev eth0 " in routes
    node_ns = kc.names["node-1"]
    ports = netns.run(node_ns, ["bridge", "-d", "link", "show"])
    veth = kc.fabric.netns["pod:default/a"].interfaces["eth0"].peer
    assert veth is not None
    line = next(i for i, t in enumerate(ports.splitlines()) if veth[1] in t)
    assert "hairpin on" in ports.splitlines()[line + 1]


def test_addresses_the_scenario_gives_are_asked_for() -> None:
    # tiny_cluster gives a 10.0.1.3 and b 10.0.1.4 (as a dump's status.podIP would):
    # host-local, left to choose, gives a 10.0.1.2; the model's address is asked for
    kc = KernelCluster.build(build_fabric(tiny_cluster(NetworkMode.VXLAN)))
    try:
        assert kc.ipam_asked == [
            "host-local chose 10.0.1.2 for pod default/a, the model has 10.0.1.3"
        ]
        files = host_local(kc, "node-1")
        assert set(files) == {"10.0.1.3", "10.0.1.4", "last_reserved_ip.0"}
        assert (
            "asked for where it chose otherwise"
            in (kc.kernel_side()["pod addresses (IPAM)"])
        )
    finally:
        kc.close()


def test_close_runs_cni_del_then_removes_the_state() -> None:
    scenario, _ = load_scenario_text(THREE_PODS)
    kc = KernelCluster.build(build_fabric(scenario.cluster))
    try:
        assert kc.cni is not None
        state = kc.cni.state
        assert kc.cni.detach_all() == []
        # DEL released every address (host-local keeps only its cursor) and removed
        # the pod's eth0 (and with it the host end)
        assert set(host_local(kc, "node-1")) == {"last_reserved_ip.0"}
        assert not kc.ipr[kc.names["pod:default/a"]].link_lookup(ifname="eth0")
        # the addresses are remembered for a rebuild
        assert kc.cni.held["default/a"] == ("node-1", IPv4Address("10.0.1.3"))
    finally:
        kc.close()
    assert not state.exists()
    assert netns.listing(f"{kc.run_id}-") == []


def test_a_rebuild_gives_every_pod_its_address_back() -> None:
    # LiveCluster keeps one runtime across rebuilds, as a node keeps /var/lib/cni
    scenario, _ = load_scenario_text(THREE_PODS)
    fabric = build_fabric(scenario.cluster)
    claim = owner.claim("test rebuild")
    runtime = cniplugins.CniRuntime(claim.run_id)
    try:
        KernelCluster.build(fabric, claim.run_id, runtime).close()
        last = runtime.state / "node-1" / "cbr0" / "last_reserved_ip.0"
        assert last.read_text() == "10.0.1.4"
        kc = KernelCluster.build(fabric, claim.run_id, runtime)
        try:
            assert kc.ipam_asked == []
            assert runtime.held == {}
            assert last.read_text() == "10.0.1.4"  # put back after the asked ones
        finally:
            kc.close()
    finally:
        netns.remove_all(f"{claim.run_id}-")
        cniplugins.remove_state(claim.run_id)
        claim.release()
    assert not runtime.state.exists()


def test_a_plugin_that_fails_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # portmap refuses the second pod: what the first pod and the second's bridge made
    # is deleted (CNI DEL: host-local's addresses released), then every namespace
    for plugin in ("loopback", "bridge", "host-local"):
        (tmp_path / plugin).symlink_to(cniplugins.CNI_PATH / plugin)
    log = tmp_path / "calls"
    fake = tmp_path / "portmap"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$CNI_COMMAND $CNI_CONTAINERID" >> {log}\n'
        f'if [ "$CNI_COMMAND" = ADD ] && [ $(grep -c ADD {log}) -ge 3 ]; then\n'
        '  echo \'{"code": 999, "msg": "no room for port 8080"}\'; exit 1\n'
        "fi\n"
        "cat >/dev/null; echo '{}'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(cniplugins, "CNI_PATH", tmp_path)
    scenario, _ = load_scenario_text(THREE_PODS)
    claim = owner.claim("test failing plugin")
    runtime = cniplugins.CniRuntime(claim.run_id)
    try:
        with pytest.raises(KernelBuildError) as err:
            KernelCluster.build(build_fabric(scenario.cluster), claim.run_id, runtime)
        third = scenario.cluster.pods["default/b"].key
        assert str(err.value) == (
            f"namespace {claim.run_id}-node-1: running the CNI plugins: CNI ADD of pod"
            f" {third} (portmap plugin, CNI_IFNAME=eth0): no room for port 8080 (EIO)"
        )
        assert netns.listing(f"{claim.run_id}-") == []
        assert runtime.attached == []
        deleted = [line for line in log.read_text().splitlines() if "DEL" in line]
        assert (
            len(deleted) == 3
        )  # each attachment's portmap (the pods' DELs side by side)
        assert f"DEL {portmap.container_id(third)}" in deleted  # the half-made one too
        left = {
            p.name
            for d in runtime.state.glob("*/cbr0")
            for p in d.iterdir()
            if p.name[0].isdigit() and p.name != "last_reserved_ip.0"
        }
        assert left == set()  # bridge DEL released every address
    finally:
        netns.remove_all(f"{claim.run_id}-")
        cniplugins.remove_state(claim.run_id)
        claim.release()


def test_the_delegate_is_flannels() -> None:
    cluster = tiny_cluster(NetworkMode.VXLAN)
    cfg = cluster.config
    conf = cniplugins.delegate(cfg, cfg.nodes[0], Path("/x"))
    assert conf == {
        "cniVersion": "0.3.1",
        "name": "cbr0",
        "type": "bridge",
        "bridge": "cbr0",
        "hairpinMode": True,
        "isDefaultGateway": True,
        "isGateway": True,
        "ipMasq": False,
        "mtu": 1450,
        "ipam": {
            "type": "host-local",
            "dataDir": "/x",
            "ranges": [[{"subnet": "10.0.1.0/24"}]],
            "routes": [{"dst": "10.0.0.0/22"}],
        },
    }
    assert json.loads(json.dumps(conf)) == conf
    assert cniplugins.uses_plugins(cfg)
    assert not cniplugins.uses_plugins(
        type(cfg)(cni=Cni.CALICO, network=cfg.network, nodes=cfg.nodes)
    )


STEPS = (
    THREE_PODS.replace("name: three pods", "name: pods come and go")
    + """
  - delete: [pod/default/b]
  - apply:
      - {apiVersion: v1, kind: Pod, metadata: {name: d, labels: {app: d}},
         spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}}
  - probe: {from: default/d, to: default/c, port: 80}
  - probe: {from: default/c, to: default/d, port: 80}
"""
)


def test_after_delete_and_apply_host_local_and_the_simulator_agree() -> None:
    # the rebuilt cluster: a and coredns-0 ask for their addresses back, d is new and
    # host-local gives it the next after the last it ever handed out (b's .4): .5, as
    # the simulator does (without its last_reserved_ip put back, it would be .4)
    from dataplane.kernel.verify import verify

    scenario, _ = load_scenario_text(STEPS)
    report = verify(scenario)
    assert [r.status for r in report.rows] == ["agree"] * 3
    assert report.kernel_side["pod addresses (IPAM)"] == (
        f"CNI host-local plugin {cniplugins.version()}, checked against the"
        " simulator's IPAM"
    )
    last = report.rows[-1]
    assert last.kernel.detail == "SYN-ACK from 10.0.1.5:80: connected"


HOSTPORT = Path(__file__).resolve().parents[2] / "scenarios" / "hostport.yaml"


@pytest.mark.parametrize(
    ("cni", "network", "chain_of"),
    [("flannel", "vxlan", "cbr0"), ("calico", "bgp", "k8s-pod-network")],
)
def test_portmap_writes_the_chains_the_simulator_names(
    cni: str, network: str, chain_of: str
) -> None:
    # the real plugin's per-container chain is the one the simulator's trace names,
    # and its rules are the DNAT, hairpin and localhost marks the simulator models
    text = HOSTPORT.read_text().replace(
        "  network: vxlan\n", f"  cni: {cni}\n  network: {network}\n"
    )
    scenario, _ = load_scenario_text(text)
    kc = KernelCluster.build(build_fabric(scenario.cluster))
    try:
        web = scenario.cluster.pods["default/web"]
        chain = portmap.dnat_chain(chain_of, web.key)
        rules = netns.run(kc.names["node-1"], ["iptables-save", "-t", "nat"])
        net = "10.0.1.0/24" if cni == "flannel" else f"{web.ip}/32"
        for rule in (
            "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
            "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
            f"-A {chain} -s {net} -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
            f"-A {chain} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080"
            " -j CNI-HOSTPORT-SETMARK",
            f"-A {chain} -p tcp -m tcp --dport 8080 -j DNAT --to-destination"
            f" {web.ip}:80",
            f"-A {chain} -p udp -m udp --dport 5353 -j DNAT --to-destination"
            f" {web.ip}:53",
        ):
            assert rule in rules.splitlines(), (rule, rules)
        assert "CNI-DN" not in netns.run(kc.names["node-2"], ["iptables-save"])
        assert "hostPort nat rules" in kc.kernel_side()
    finally:
        kc.close()
    assert kc.del_errors == []


def test_calico_host_ports_agree_with_the_kernel() -> None:
    from dataplane.kernel.verify import verify

    text = HOSTPORT.read_text().replace(
        "  network: vxlan\n", "  cni: calico\n  network: bgp\n"
    )
    scenario, _ = load_scenario_text(text)
    report = verify(scenario)
    bad = [
        (r.step, r.title, r.sim, r.kernel.detail)
        for r in report.rows
        if r.status != "agree"
    ]
    assert bad == []


def test_verify_json_says_what_built_each_part() -> None:
    from tests.io.helpers import run_cli

    result = run_cli("verify", "-o", "json", HOSTPORT)
    assert result.exit_code == 0, result.stderr
    side = json.loads(result.stdout)["kernel_side"]
    version = cniplugins.version()
    assert side["hostPort nat rules"] == (
        f"the CNI portmap plugin {version} with kubelet's portMappings (iptables-nft)"
    )
    assert side["pod addresses (IPAM)"].startswith(f"CNI host-local plugin {version}")
    assert side["namespaces, node devices, underlay, other routes and neighbours"] == (
        "pyroute2 from the simulator's own model (dataplane.fabric.build_fabric)"
    )
    assert (
        "flanneld's backend rules"
        in side[
            "flannel vxlan: node routes to the other podCIDRs, flannel.1, its neighbours"
            " and FDB"
        ]
    )
