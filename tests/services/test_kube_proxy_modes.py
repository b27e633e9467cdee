"""kube-proxy's modes and options, LoadBalancers and the cloud's side of them, the source
address a server sees, and the errors of every new key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.kubeproxy_names import chain_names
from dataplane.scenario import Runner
from dataplane.sim import Simulator
from dataplane.trace import Trace, Verdict
from tests.io.helpers import run_cli
from topology.errors import TopologyError
from topology.loader import load_scenario, load_scenario_text
from topology.model import Protocol, ProxyMode, Service, ServicePort, ServiceType
from topology.scenario import ProbeStep

ROOT = Path(__file__).resolve().parents[2] / "scenarios" / "kube-proxy"

# -- chain names: upstream's own literals ------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "kind", "expected"),
    [
        # pkg/proxy/iptables/proxier_test.go (ns1/svc1:p80, endpoint 10.180.0.1:80)
        (ProxyMode.IPTABLES, "cluster", "KUBE-SVC-XPGD46QRK7WJZT7O"),
        (ProxyMode.IPTABLES, "endpoint", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
        # pkg/proxy/nftables/proxier_test.go, TestOverallNFTablesRules
        (ProxyMode.NFTABLES, "cluster", "service-ULMVA6XW-ns1/svc1/tcp/p80"),
        (
            ProxyMode.NFTABLES,
            "endpoint",
            "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80",
        ),
        (ProxyMode.NFTABLES, "external", "external-ULMVA6XW-ns1/svc1/tcp/p80"),
    ],
    ids=["KUBE-SVC", "KUBE-SEP", "service-", "endpoint-", "external-"],
)
def test_chain_names_are_upstreams(mode: ProxyMode, kind: str, expected: str) -> None:
    svc = Service(
        "ns1",
        "svc1",
        ServiceType.CLUSTER_IP,
        None,
        (ServicePort(80, 80, Protocol.TCP, "p80"),),
    )
    names = chain_names(mode, svc, svc.ports[0])
    got = (
        names.endpoint("10.180.0.1", 80) if kind == "endpoint" else getattr(names, kind)
    )
    assert got == expected


# -- the shipped scenarios: upstream's packet-flow tables and the lessons -----------------

SCENARIOS = sorted(ROOT.glob("*.yaml"))


def test_every_upstream_table_is_transcribed_in_both_modes() -> None:
    stems = {p.stem for p in SCENARIOS}
    for table in (
        "load-balancer",
        "no-endpoints-reject",
        "external-traffic-policy-local",
        "external-traffic-policy-cluster",
        "node-ports-default",
        "node-ports-cidrs",
        "cluster-ip-general",
        "internal-traffic-policy",
        "terminating-endpoints-local",
        "terminating-endpoints-cluster",
    ):
        assert {f"iptables-{table}", f"nftables-{table}"} <= stems


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_kube_proxy_scenarios_hold(path: Path) -> None:
    scenario, _ = load_scenario(path)
    result = Runner(scenario).run()
    failures = [f"{s.loc}: {s.title}: {s.message}" for s in result.steps if s.failed]
    assert not failures, "\n".join(failures)


def _trace(name: str, index: int) -> Trace:
    scenario, _ = load_scenario(ROOT / name)
    step = Runner(scenario).run().steps[index]
    assert step.trace is not None
    return step.trace


def _detail(trace: Trace, needle: str) -> str:
    return next(h.detail for h in trace.hops if needle in h.detail)


def test_the_gateway_says_which_node_and_why() -> None:
    trace = _trace("cloud-load-balancer.yaml", 0)
    route = _detail(trace, "multipath")
    assert route.startswith("203.0.113.7 via 10.100.0.3 dev eth0 (203.0.113.7/32):")
    assert "nexthop 1 of 1, a choice among 1" in route
    assert (
        "LoadBalancer 203.0.113.7 of default/shop: externalTrafficPolicy Local:"
        " the nodes with a ready endpoint (node-2)"
    ) in route


def test_cluster_policy_spreads_over_every_node() -> None:
    trace = _trace("cloud-load-balancer.yaml", 3)
    route = _detail(trace, "multipath")
    assert "a choice among 2" in route
    assert "externalTrafficPolicy Cluster: every node (node-1, node-2)" in route


def test_a_walk_takes_the_nexthop_the_kernel_took() -> None:
    # verify reads the cloud load balancer's node back from the kernel (the node whose
    # conntrack holds the connection) and walks again on it
    from dataplane.kernel.verify import lb_nexthop
    from dataplane.routing import nexthop_chosen_by_kernel

    scenario, _ = load_scenario(ROOT / "cloud-load-balancer.yaml")
    step = scenario.steps[3]
    assert isinstance(step, ProbeStep)
    sim = Runner(scenario).sim
    first = sim.probe(step.src, step.dst, step.port, step.protocol)
    taken = lb_nexthop(first)
    assert taken is not None and taken[1] in ("10.100.0.2", "10.100.0.3")
    other = "10.100.0.2" if taken[1] == "10.100.0.3" else "10.100.0.3"
    with nexthop_chosen_by_kernel({taken[0]: other}):
        again = sim.probe(step.src, step.dst, step.port, step.protocol)
    assert lb_nexthop(again) == (taken[0], other)
    assert "the one the kernel's hash took" in _detail(again, "multipath")
    with nexthop_chosen_by_kernel({taken[0]: "10.100.0.99"}):  # not a nexthop: ignored
        ignored = sim.probe(step.src, step.dst, step.port, step.protocol)
    assert lb_nexthop(ignored) == taken


def test_iptables_mode_names_its_chains_in_the_trace() -> None:
    trace = _trace("iptables-load-balancer.yaml", 3)  # accepted external to LB1
    dnat = _detail(trace, "PREROUTING kube-proxy")
    assert (
        "LoadBalancer 1.2.3.4:80 (default/svc1:p80): KUBE-SERVICES -> KUBE-FW-" in dnat
    )
    assert "-> KUBE-EXT-" in dnat and "-> KUBE-SVC-" in dnat and "-> KUBE-SEP-" in dnat


def test_nftables_mode_names_its_chains_and_maps_in_the_trace() -> None:
    trace = _trace("nftables-external-traffic-policy-local.yaml", 4)
    dnat = _detail(trace, "PREROUTING kube-proxy")
    assert "services @service-ips -> external-" in dnat
    assert (
        "-> local-" in dnat
        and "-default/svc1/tcp/p80__10.180.2.2/80 default/ep-remote" in dnat
    )


def test_source_ranges_drop_in_the_firewall_chain() -> None:
    trace = _trace("iptables-load-balancer.yaml", 5)  # blocked external to LB1
    assert trace.verdict is Verdict.DROPPED
    drop = _detail(trace, "KUBE-PROXY-FIREWALL")
    assert "default/svc1:p80 traffic not accepted by KUBE-FW-" in drop
    assert "203.0.113.130 is outside loadBalancerSourceRanges" in drop
    assert "(192.168.0.0/24, 203.0.113.0/25) -> DROP" in drop


def test_nftables_rejects_an_unknown_port_and_drops_an_unallocated_clusterip() -> None:
    port = _trace("nftables-cluster-ip-general.yaml", 8)
    assert port.verdict is Verdict.REFUSED
    assert "cluster-ips-check: 172.30.0.41 is a ClusterIP (@cluster-ips)" in (
        _detail(port, "cluster-ips-check")
    )
    nowhere = _trace("nftables-cluster-ip-general.yaml", 9)
    assert nowhere.verdict is Verdict.DROPPED
    assert "172.30.0.50 is in the service CIDR 172.30.0.0/16 but no Service's" in (
        _detail(nowhere, "cluster-ips-check")
    )


def test_ipmode_proxy_is_proxied_to_a_nodeport_from_the_gateway() -> None:
    trace = _trace("ipmode-proxy.yaml", 0)
    dnat = _detail(trace, "ipMode Proxy")
    assert (
        "cloud-lb: ipMode Proxy 203.0.113.10:80 of default/shop-proxied -> node-2"
        in (dnat)
    )
    assert "10.100.0.3:30082" in dnat
    assert trace.endpoint == "default/web-0"


# -- expect.sourceIP ------------------------------------------------------------------------

LB = """\
name: t
cluster:
  externals: [{name: laptop, ip: 192.0.2.10}]
  kubeProxy: {mode: MODE}
manifests:
  - apiVersion: v1
    kind: Pod
    metadata: {name: web-0, labels: {app: web}}
    spec: {nodeName: node-2, containers: [{name: w, ports: [{containerPort: 80}]}]}
  - apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      type: LoadBalancer
      selector: {app: web}
      ports: [{port: 80}]
    status: {loadBalancer: {ingress: [{ip: 203.0.113.7}]}}
steps:
  - probe: {from: external/laptop, to: 203.0.113.7, port: 80, expect: EXPECT}
"""


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_a_wrong_source_ip_expectation_fails_and_says_what_the_server_saw(
    tmp_path: Path, mode: str
) -> None:
    text = LB.replace("MODE", mode).replace(
        "EXPECT", "{verdict: delivered, sourceIP: external/laptop}"
    )
    scenario, _ = load_scenario_text(text, "lab.yaml", tmp_path)
    step = Runner(scenario).run().steps[0]
    assert step.ok is False
    # externalTrafficPolicy Cluster: the node the load balancer picked masquerades.
    assert step.message.startswith(
        "expected sourceIP external/laptop (192.0.2.10), the server saw 10."
    )


def test_sim_probe_reaches_every_ingress_address() -> None:
    scenario, _ = load_scenario(ROOT / "cloud-load-balancer.yaml")
    sim = Simulator(scenario.cluster)
    for ip in ("203.0.113.7", "203.0.113.8", "198.51.100.7"):
        trace = sim.probe("external/laptop", ip, 80)
        assert trace.verdict is Verdict.DELIVERED, ip
        assert trace.endpoint == "default/web-0"


# -- errors: located, exit 2, the allowed values named -------------------------------------

CLUSTER_ERRORS = [
    ("ipvs-sh", "  kubeProxy: {mode: ipvs, ipvs: {scheduler: sh}}\n", 3, "cluster.kubeProxy.ipvs.scheduler: scheduler sh is not modelled (allowed: rr, wrr)"),
    ("ipvs-unknown", "  kubeProxy: {mode: ipvs, ipvs: {scheduler: fastest}}\n", 3, "cluster.kubeProxy.ipvs.scheduler: 'fastest' is not an IPVS scheduler (allowed: rr, wrr)"),
    ("ipvs-scheduler-in-iptables", "  kubeProxy: {ipvs: {scheduler: wrr}}\n", 3, "cluster.kubeProxy.ipvs: ipvs options apply to mode ipvs, and mode is iptables (allowed here: iptables, or the defaults)"),
    ("ipvs-localhost", "  kubeProxy:\n    mode: ipvs\n    iptables: {localhostNodePorts: false}\n", 5, "cluster.kubeProxy.iptables.localhostNodePorts: localhostNodePorts applies to mode iptables, and mode is ipvs (allowed here: the default; ipvs mode never serves NodePorts on 127.0.0.1)"),
    ("bad-mode", "  kubeProxy: {mode: userspace}\n", 3, "cluster.kubeProxy.mode: 'userspace' is not allowed (allowed: iptables, nftables, ipvs)"),
    ("other-section", "  kubeProxy:\n    nftables: {masqueradeAll: true}\n", 4, "cluster.kubeProxy.nftables: nftables options apply to mode nftables, and mode is iptables (allowed here: iptables, or the defaults)"),
    ("primary-mixed", "  kubeProxy: {nodePortAddresses: [primary, 10.0.0.0/8]}\n", 3, "cluster.kubeProxy.nodePortAddresses[0]: 'primary' may not be combined with CIDRs"),
    ("npa-not-cidr", "  kubeProxy: {nodePortAddresses: [eth0]}\n", 3, "cluster.kubeProxy.nodePortAddresses[0]: 'eth0' is not a CIDR (allowed: 'primary', or CIDRs such as 10.100.0.0/24)"),
    ("via-not-node", "  gatewayRoutes: [{cidr: 10.96.0.0/12, via: default/a}]\n", 3, "cluster.gatewayRoutes[0].via: 'default/a' is not a node (allowed: node/NAME, one of node/node-1, node/node-2)"),
    ("route-twice", "  gatewayRoutes: [{cidr: 10.96.0.0/12, via: node/node-1}, {cidr: 10.96.0.0/12, via: node/node-2}]\n", 3, "cluster.gatewayRoutes[1].cidr: duplicate route to 10.96.0.0/12"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [c[1:] for c in CLUSTER_ERRORS],
    ids=[c[0] for c in CLUSTER_ERRORS],
)
def test_cluster_errors(tmp_path: Path, body: str, line: int, message: str) -> None:
    text = (
        "name: t\ncluster:\n"
        + body
        + "steps:\n  - probe: {from: node/node-1, to: node/node-2}\n"
    )
    with pytest.raises(TopologyError) as info:
        load_scenario_text(text, "lab.yaml", tmp_path)
    assert str(info.value) == f"lab.yaml:{line}: {message}"


SERVICE = "  - kind: Service\n    metadata: {name: web}\n    spec:\n"
SERVICE_ERRORS = [
    ("ranges-on-clusterip", SERVICE + "      ports: [{port: 80}]\n      loadBalancerSourceRanges: [10.0.0.0/8]\n", "Service default/web: spec.loadBalancerSourceRanges: may only be used when type is LoadBalancer"),
    ("range-not-cidr", SERVICE + "      type: LoadBalancer\n      ports: [{port: 80}]\n      loadBalancerSourceRanges: [10.0.0.0/40]\n", "Service default/web: spec.loadBalancerSourceRanges[0]: '10.0.0.0/40' is not a valid CIDR"),
    ("external-ip-loopback", SERVICE + "      ports: [{port: 80}]\n      externalIPs: [127.0.0.2]\n", "Service default/web: spec.externalIPs[0]: 127.0.0.2 is in the loopback (127.0.0.0/8) range (allowed: a unicast address)"),
    ("ipmode-bad", SERVICE + "      type: LoadBalancer\n      ports: [{port: 80}]\n    status: {loadBalancer: {ingress: [{ip: 1.2.3.4, ipMode: Direct}]}}\n", "ipMode: 'Direct' is not allowed (allowed: VIP, Proxy)"),
    ("ipmode-without-ip", SERVICE + "      type: LoadBalancer\n      ports: [{port: 80}]\n    status: {loadBalancer: {ingress: [{ipMode: Proxy}]}}\n", "status.loadBalancer.ingress[0].ipMode: may not be set without ip"),
]  # fmt: skip


SLICE = (
    "  - apiVersion: discovery.k8s.io/v1\n    kind: EndpointSlice\n"
    "    metadata: {name: s, labels: LABELS}\n    addressType: TYPE\n"
    "    ports: PORTS\n    endpoints: [{addresses: [10.0.1.9]}]\n"
)
SLICE_ERRORS = [
    ("no-service-label", SLICE.replace("LABELS", "{}").replace("TYPE", "IPv4").replace("PORTS", "[]"), "EndpointSlice default/s: metadata.labels: missing label kubernetes.io/service-name (the Service this slice belongs to; kube-proxy ignores a slice without it)"),
    ("ipv6", SLICE.replace("LABELS", "{kubernetes.io/service-name: x}").replace("TYPE", "IPv6").replace("PORTS", "[]"), "addressType: 'IPv6' is not allowed (allowed: IPv4)"),
    ("duplicate-port", SLICE.replace("LABELS", "{kubernetes.io/service-name: x}").replace("TYPE", "IPv4").replace("PORTS", "[{name: a, port: 1}, {name: a, port: 2}]"), "EndpointSlice default/s: ports[1].name: duplicate port name 'a' (TCP)"),
]  # fmt: skip


MANIFEST_ERRORS = [*SERVICE_ERRORS, *SLICE_ERRORS]


@pytest.mark.parametrize(
    ("manifest", "message"),
    [c[1:] for c in MANIFEST_ERRORS],
    ids=[c[0] for c in MANIFEST_ERRORS],
)
def test_manifest_errors(tmp_path: Path, manifest: str, message: str) -> None:
    text = (
        "name: t\nmanifests:\n"
        + manifest
        + "steps:\n  - probe: {from: node/node-1, to: node/node-2}\n"
    )
    with pytest.raises(TopologyError) as info:
        load_scenario_text(text, "lab.yaml", tmp_path)
    assert str(info.value).startswith("lab.yaml:")
    assert message in str(info.value)


def test_the_cli_exits_2_on_a_bad_kube_proxy_option(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: t\ncluster:\n  kubeProxy: {mode: ipvs, ipvs: {scheduler: lc}}\n"
        "steps:\n  - probe: {from: node/node-1, to: node/node-2}\n"
    )
    r = run_cli("run", bad)
    assert r.exit_code == 2
    assert "cluster.kubeProxy.ipvs.scheduler: scheduler lc is not modelled" in r.stderr
    assert "Traceback" not in r.stderr


# -- EndpointSlices ---------------------------------------------------------------------


def test_a_serving_terminating_endpoint_is_used_when_none_is_ready() -> None:
    trace = _trace("endpoint-slices.yaml", 1)
    assert trace.verdict is Verdict.DELIVERED and trace.endpoint == "default/web-0"
    dnat = _detail(trace, "PREROUTING kube-proxy")
    assert "serving and terminating: no endpoint is ready" in dnat


def test_a_not_ready_endpoint_takes_no_traffic() -> None:
    scenario, _ = load_scenario(ROOT / "endpoint-slices.yaml")
    sim = Simulator(scenario.cluster)
    picks = {
        sim.probe(f"default/{src}", "svc/default/api", 80).endpoint
        for src in ("client", "web-0", "web-1")
    }
    assert picks == {"default/web-1"}
