"""Endpoints as the EndpointSlice controller and kube-proxy make them: pod readiness,
terminating and terminal pods, publishNotReadyAddresses, topology hints, and
sessionAffinity's timeout across a replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.dns import records
from dataplane.flowhash import pick_index
from dataplane.kubeproxy_endpoints import Backend, cluster_endpoints, endpoints
from dataplane.packet import IP, TCP, Packet, to_bytes
from dataplane.replay import Captured, iter_capture, replay, replay_packets
from dataplane.scenario import Runner
from dataplane.sim import Simulator
from dataplane.trace import Trace, Verdict
from tests.io.helpers import run_cli
from topology.errors import TopologyError
from topology.loader import load_scenario, load_scenario_text

ROOT = Path(__file__).resolve().parents[2] / "scenarios"
LINKTYPE_RAW = 101


def _load(manifests: str, cluster: str = "") -> Simulator:
    text = (
        "name: t\n"
        + (f"cluster:\n{cluster}" if cluster else "")
        + "manifests:\n"
        + manifests
        + "steps:\n  - probe: {from: node/node-1, to: node/node-2}\n"
    )
    scenario, _ = load_scenario_text(text, "lab.yaml")
    return Simulator(scenario.cluster)


def _pod(name: str, node: str, labels: str, extra: str = "") -> str:
    return (
        f"  - {{kind: Pod, metadata: {{name: {name}, labels: {labels}{extra}}},"
        f" spec: {{nodeName: {node}, containers: [{{name: w, ports:"
        " [{containerPort: 8080}]}]}"
    )


def _dnat(trace: Trace) -> str:
    return next(h.detail for h in trace.hops if "kube-proxy: ClusterIP" in h.detail)


# -- the pod's status and metadata --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "meta", "ready", "terminating"),
    [
        ("", "", True, False),
        (", status: {podIP: 10.0.1.9}", "", True, False),
        (", status: {conditions: [{type: Ready, status: 'True'}]}", "", True, False),
        (", status: {conditions: [{type: Ready, status: 'False'}]}", "", False, False),
        (", status: {conditions: [{type: Ready, status: Unknown}]}", "", False, False),
        (", status: {conditions: [{type: PodScheduled, status: 'True'}]}", "", False, False),
        ("", ", deletionTimestamp: '2026-12-01T14:00:00Z'", True, True),
        ("", ", deletionTimestamp: 2026-12-01T14:00:00Z", True, True),
        (", status: {phase: Running}", "", True, False),
    ],
    ids=["no-status", "no-conditions", "ready", "not-ready", "unknown", "no-ready-condition",
         "deleted", "deleted-unquoted", "running"],
)  # fmt: skip
def test_a_pods_status_gives_its_condition(
    status: str, meta: str, ready: bool, terminating: bool
) -> None:
    text = (
        "  - {kind: Pod, metadata: {name: p" + meta + "}, spec: {nodeName: node-1,"
        " containers: [{name: c}]}" + status + "}\n"
    )
    pod = _load(text).cluster.pods["default/p"]
    assert (pod.ready, pod.terminating) == (ready, terminating)


SERVICE = "  - kind: Service\n    metadata: {name: web}\n    spec:\n"
ERRORS = [
    ("affinity-config-without-affinity", SERVICE + "      ports: [{port: 80}]\n      sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n", "Service default/web: spec.sessionAffinityConfig: must not be set when session affinity is None (allowed with sessionAffinity: ClientIP)"),
    ("timeout-zero", SERVICE + "      ports: [{port: 80}]\n      sessionAffinity: ClientIP\n      sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n", "Service default/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0: must be greater than 0 and at most 86400"),
    ("timeout-over-a-day", SERVICE + "      ports: [{port: 80}]\n      sessionAffinity: ClientIP\n      sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n", "spec.sessionAffinityConfig.clientIP.timeoutSeconds: 86401: must be greater than 0 and at most 86400"),
    ("traffic-distribution", SERVICE + "      ports: [{port: 80}]\n      trafficDistribution: Nearby\n", "trafficDistribution: 'Nearby' is not allowed (allowed: PreferClose, PreferSameZone, PreferSameNode)"),
    ("condition-status", "  - {kind: Pod, metadata: {name: p}, spec: {containers: [{name: c}]}, status: {conditions: [{type: Ready, status: Maybe}]}}\n", "status.conditions[0].status: 'Maybe' is not allowed (allowed: True, False, Unknown)"),
    ("hint-without-name", "  - {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s, labels: {kubernetes.io/service-name: x}}, addressType: IPv4, endpoints: [{addresses: [10.0.1.9], hints: {forZones: [{}]}}]}\n", "EndpointSlice default/s: endpoints[0].hints.forZones[0]: missing required key 'name'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("manifest", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_errors(manifest: str, message: str) -> None:
    with pytest.raises(TopologyError) as info:
        _load(manifest)
    assert str(info.value).startswith("lab.yaml:")
    assert message in str(info.value)


def test_the_cli_exits_2_on_a_bad_timeout(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: t\nmanifests:\n"
        + ERRORS[1][1]
        + "steps:\n  - probe: {from: node/node-1, to: node/node-2}\n"
    )
    r = run_cli("run", bad)
    assert r.exit_code == 2
    assert "timeoutSeconds: 0: must be greater than 0 and at most 86400" in r.stderr
    assert "Traceback" not in r.stderr


# -- the endpoints the controller writes --------------------------------------------------

PODS = (
    _pod("web-0", "node-1", "{app: web}") + ", status: {conditions: [{type: Ready, status: 'True'}]}}\n"
    + _pod("web-1", "node-2", "{app: web}") + ", status: {conditions: [{type: Ready, status: 'False'}]}}\n"
    + _pod("web-2", "node-2", "{app: web}", ", deletionTimestamp: '2026-12-01T14:00:00Z'") + "}\n"
    + _pod("web-3", "node-1", "{app: web}", ", deletionTimestamp: '2026-12-01T14:00:00Z'")
    + ", status: {conditions: [{type: Ready, status: 'False'}]}}\n"
    + _pod("web-4", "node-1", "{app: web}") + ", status: {phase: Succeeded}}\n"
)  # fmt: skip


def _conditions(backends: tuple[Backend, ...]) -> list[tuple[str, bool, bool, bool]]:
    return [(b.key, b.ready, b.serving, b.terminating) for b in backends]


@pytest.mark.parametrize("publish", [False, True], ids=["default", "publish"])
def test_pod_to_endpoint_conditions(publish: bool) -> None:
    spec = "      selector: {app: web}\n      ports: [{port: 80, targetPort: 8080}]\n"
    if publish:
        spec += "      publishNotReadyAddresses: true\n"
    sim = _load(PODS + SERVICE + spec)
    svc = sim.cluster.services["default/web"]
    got = _conditions(endpoints(sim.cluster, svc, svc.ports[0]))
    # podToEndpoint: serving = Ready, terminating = deletionTimestamp set,
    # ready = publishNotReadyAddresses or (serving and not terminating); web-4 (Succeeded)
    # is no endpoint (ShouldPodBeInEndpoints; the loader skips it as inert).
    assert got == [
        ("default/web-0", True, True, False),
        ("default/web-1", publish, False, False),
        ("default/web-2", publish, True, True),
        ("default/web-3", publish, False, True),
    ]


def test_dns_answers_the_ready_endpoints_of_a_headless_service() -> None:
    spec = (
        "      clusterIP: None\n      selector: {app: web}\n      ports: [{port: 80}]\n"
    )
    sim = _load(PODS + SERVICE + spec)
    record = records(sim.cluster, "web.default.svc.cluster.local")
    assert record.addresses == (str(sim.cluster.pods["default/web-0"].ip),)


def test_pod_readiness_scenario_traces_say_why() -> None:
    scenario, _ = load_scenario(ROOT / "kube-proxy" / "pod-readiness.yaml")
    steps = Runner(scenario).run().steps
    assert not [s for s in steps if s.failed]
    draining = steps[4].trace
    assert draining is not None
    assert (
        "a choice among 1 cluster-wide, serving and terminating: no endpoint is ready"
        in _dnat(draining)
    )
    refused = steps[2].trace
    assert refused is not None and refused.verdict is Verdict.REFUSED
    assert any(
        "default/unready:80 has no endpoints -> REJECT" in h.detail
        for h in refused.hops
    )


# -- topology -----------------------------------------------------------------------------


def _b(key: str, node: str, zones: tuple[str, ...] = (), nodes: tuple[str, ...] = (),
       ready: bool = True) -> Backend:  # fmt: skip
    return Backend(key, "10.0.0.1", 80, node, ready, ready, False, None, zones, nodes)


@pytest.mark.parametrize(
    ("every", "node", "zone", "keys", "why"),
    [
        ((_b("a", "n1", ("z1",)), _b("b", "n3", ("z2",))), "n1", "z1", ["a"],
         "hinted for zone z1 (PreferSameZone: n1 is in z1)"),
        ((_b("a", "n1", ("z1",)), _b("b", "n3")), "n1", "z1", ["a", "b"],
         "cluster-wide (topology hints ignored: one or more endpoints is missing a zone hint)"),
        ((_b("a", "n1", ("z1",)), _b("b", "n3", ("z2",))), "n1", "", ["a", "b"],
         "cluster-wide (topology hints ignored: node n1 is missing label topology.kubernetes.io/zone)"),
        ((_b("a", "n1", ("z1",)), _b("b", "n3", ("z1",))), "n2", "z3", ["a", "b"],
         "cluster-wide (topology hints ignored: no hints were provided for zone z3)"),
        ((_b("a", "n1", ("z1",), ("n1",)), _b("b", "n2", ("z1",), ("n2",))), "n2", "z1", ["b"],
         "hinted for node n2 (PreferSameNode)"),
        # no endpoint hinted for this node: the zone hints still apply
        ((_b("a", "n1", ("z1",), ("n1",)), _b("b", "n3", ("z2",), ("n3",))), "n2", "z1", ["a"],
         "hinted for zone z1 (PreferSameZone: n2 is in z1)"),
        # an endpoint that is not ready has no say (nor any hint)
        ((_b("a", "n1", ("z1",)), _b("b", "n3", ready=False)), "n1", "z1", ["a"],
         "hinted for zone z1 (PreferSameZone: n1 is in z1)"),
        ((_b("a", "n1"), _b("b", "n3")), "n1", "z1", ["a", "b"], "cluster-wide"),
    ],
    ids=["same-zone", "a-hint-missing", "node-without-zone", "no-hint-for-zone",
         "same-node", "node-hints-miss-this-node", "not-ready-ignored", "no-hints"],
)  # fmt: skip
def test_categorize_endpoints(
    every: tuple[Backend, ...], node: str, zone: str, keys: list[str], why: str
) -> None:
    got = cluster_endpoints(every, node, zone)
    assert [b.key for b in got.endpoints] == keys
    assert got.why == why


def test_the_controller_hints_ready_endpoints_for_their_zone_and_node() -> None:
    scenario, _ = load_scenario(ROOT / "kube-proxy" / "topology-hints.yaml")
    cluster = scenario.cluster
    for name, zones, nodes in (
        ("web", ("zone-a",), ()),
        ("cache", ("zone-a",), ("node-1",)),
    ):
        svc = cluster.services[f"default/{name}"]
        first = endpoints(cluster, svc, svc.ports[0])[0]
        assert (first.zone, first.for_zones, first.for_nodes) == (
            "zone-a",
            zones,
            nodes,
        )


def test_endpoint_slice_hints_are_read() -> None:
    slice_ = (
        "  - {kind: Service, metadata: {name: x}, spec: {ports: [{port: 80}]}}\n"
        "  - apiVersion: discovery.k8s.io/v1\n    kind: EndpointSlice\n"
        "    metadata: {name: s, labels: {kubernetes.io/service-name: x}}\n"
        "    addressType: IPv4\n    ports: [{port: 8080}]\n    endpoints:\n"
        "      - {addresses: [10.0.1.9], zone: z1, hints: {forZones: [{name: z1}],"
        " forNodes: [{name: node-1}]}}\n"
        "      - {addresses: [10.0.2.9], zone: z2}\n"
    )
    sim = _load(slice_)
    svc = sim.cluster.services["default/x"]
    got = endpoints(sim.cluster, svc, svc.ports[0])
    assert [(b.key, b.zone, b.for_zones, b.for_nodes) for b in got] == [
        ("10.0.1.9", "z1", ("z1",), ("node-1",)),
        ("10.0.2.9", "z2", (), ()),
    ]


def test_topology_scenario_holds_and_names_the_hints() -> None:
    scenario, _ = load_scenario(ROOT / "kube-proxy" / "topology-hints.yaml")
    steps = Runner(scenario).run().steps
    assert not [s.message for s in steps if s.failed]
    first = steps[0].trace
    assert first is not None
    assert (
        "(endpoint 1 of 1: a choice among 1 hinted for zone zone-a"
        " (PreferSameZone: node-1 is in zone-a);"
    ) in _dnat(first)


# -- sessionAffinity across a replay ------------------------------------------------------

AFFINITY = """
name: t
manifests:
  - {kind: Pod, metadata: {name: client}, spec: {nodeName: node-1, containers: [{name: c}]}}
  - {kind: Pod, metadata: {name: web-0, labels: {app: web}}, spec: {nodeName: node-1, containers: [{name: w, ports: [{containerPort: 8080}]}]}}
  - {kind: Pod, metadata: {name: web-1, labels: {app: web}}, spec: {nodeName: node-2, containers: [{name: w, ports: [{containerPort: 8080}]}]}}
  - kind: Service
    metadata: {name: web}
    spec:
      clusterIP: 10.96.0.80
      selector: {app: web}
      sessionAffinity: ClientIP
      sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
      ports: [{port: 80, targetPort: 8080}]
steps:
  - probe: {from: default/client, to: svc/default/web, port: 80}
"""  # fmt: skip
MODES = ("iptables", "nftables")


def _syns(sim: Simulator, at: list[tuple[float, int]]) -> list[Trace]:
    client = str(sim.cluster.pods["default/client"].ip)
    records = [
        Captured(
            i + 1,
            LINKTYPE_RAW,
            to_bytes(Packet(ip=IP(client, "10.96.0.80", 6), l4=TCP(sport, 80, "S"))),
            time=t,
        )
        for i, (t, sport) in enumerate(at)
    ]
    traces = replay_packets(sim, records).traces
    assert len(traces) == len(at)
    return traces


def _affinity_sim(mode: str) -> Simulator:
    text = AFFINITY.replace(
        "manifests:", f"cluster:\n  kubeProxy: {{mode: {mode}}}\nmanifests:"
    )
    scenario, _ = load_scenario_text(text, "lab.yaml")
    return Simulator(scenario.cluster)


@pytest.mark.parametrize("mode", MODES)
def test_a_client_sticks_within_the_timeout_and_re_chooses_after(mode: str) -> None:
    sim = _affinity_sim(mode)
    # 20 connections 2 s apart: one endpoint; without affinity the flows would spread.
    sticky = _syns(sim, [(2.0 * i, 41000 + i) for i in range(20)])
    assert {t.endpoint for t in sticky} == {sticky[0].endpoint}
    client = sim.cluster.pods["default/client"].ip
    assert f"no choice of {client} within timeoutSeconds 60" in _dnat(sticky[0])
    later = _dnat(sticky[1])
    assert (
        f"sessionAffinity ClientIP: {client} last chose it 2 s ago,"
        " within timeoutSeconds 60"
    ) in later
    if mode == "iptables":
        assert "(-m recent --name KUBE-SEP-" in later
        assert "--rcheck --seconds 60 --reap -j KUBE-SEP-" in later
    else:
        assert "(ip saddr @affinity-" in later and "goto endpoint-" in later
    free = _affinity_sim(mode)
    spread = [
        t.endpoint
        for i in range(20)
        for t in _syns(free, [(200.0 * i, 41000 + i)])  # a fresh state each
    ]
    assert len(set(spread)) == 2


def test_each_new_connection_restarts_the_clock_and_an_entry_expires_at_the_timeout() -> (
    None
):
    sim = _affinity_sim("iptables")
    client = str(sim.cluster.pods["default/client"].ip)

    # Find source ports whose flow hash picks each endpoint.
    def port_for(index: int, start: int) -> int:
        port = start
        while pick_index(f"6 {client} {port} 10.96.0.80 80", 2) != index:
            port += 1
        return port

    to_0, to_1, to_1_again = port_for(0, 42000), port_for(1, 43000), port_for(1, 44000)
    fresh = port_for(1, 45000)
    # 0 s: web-0 by hash; 59 s and 118 s: still web-0 (each within 60 s of the last,
    # though their hashes pick web-1); 178 s: exactly 60 s after the last - expired -
    # web-1 by hash.
    traces = _syns(sim, [(0, to_0), (59, to_1), (118, to_1_again), (178, fresh)])
    assert [t.endpoint for t in traces] == ["default/web-0"] * 3 + ["default/web-1"]
    assert "last chose it 59 s ago" in _dnat(traces[2])
    assert f"no choice of {client} within timeoutSeconds 60" in _dnat(traces[3])


def test_capture_timestamps_are_read() -> None:
    capture = ROOT / "captures" / "affinity.pcap"
    scenario, _ = load_scenario(ROOT / "kube-proxy" / "session-affinity.yaml")
    result = replay(Simulator(scenario.cluster), capture)
    assert result.counts() == {"delivered": 4, "refused": 2}
    times = [c.time for c in iter_capture(capture)]
    base = times[0]
    assert [t - base for t in times] == [0, 50, 100, 150, 220, 230]
