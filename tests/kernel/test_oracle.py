"""The oracle's own rules (issue 13), without a kernel: what a client heard, and where
kube-proxy picked the endpoint of a pinned connection."""

from __future__ import annotations

import pytest

from dataplane.kernel.report import agree, heard_nothing
from dataplane.kernel.verify import picked_from
from dataplane.packet import IP, TCP, Packet
from dataplane.sim import Simulator
from dataplane.trace import FieldDiff, Hop, Trace
from tests.dataplane.test_bridged_fragments import PAIR
from topology.loader import load_scenario_text
from topology.scenario import Verdict

DENIED_BEHIND_A_NAME = """
name: denied-behind-a-name
cluster: {network: vxlan}
manifests:
  - {kind: Pod, metadata: {name: web, labels: {app: web}}, spec: {nodeName: node-2,
     containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]}}
  - {kind: Pod, metadata: {name: client}, spec: {nodeName: node-1,
     containers: [{name: c, image: busybox}]}}
  - {kind: Service, metadata: {name: web}, spec: {selector: {app: web},
     ports: [{port: 80}]}}
  - kind: NetworkPolicy
    metadata: {name: deny-web}
    spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}
steps: [{probe: {from: default/client, to: web, port: 80}}]
"""


def test_a_dns_answer_is_no_answer_to_the_connection() -> None:
    """The lookup's answer reaches the client; the connection then hears nothing, as a
    kernel client would: silent, so it agrees with the kernel's silence."""
    scenario, _ = load_scenario_text(DENIED_BEHIND_A_NAME)
    sim = Simulator(scenario.cluster)
    trace = sim.probe("default/client", "web", 80)
    ns = sim.netns_of(sim.resolve("default/client"))
    assert trace.verdict is Verdict.DENIED_INGRESS
    assert any(h.direction == "reply" and h.event == "deliver" for h in trace.hops)
    assert heard_nothing(trace, ns.node, ns.label)
    assert agree(trace.verdict, Verdict.DENIED, heard_nothing(trace, ns.node, ns.label))


def _hop(seq: int, src: str, dst: str, *diffs: FieldDiff) -> Hop:
    pkt = Packet(ip=IP(src, dst, 6), l4=TCP(40000, 30080, "S"))
    return Hop(seq, "node-2", "host", "", "nat", "", pkt, diffs)


def test_the_pin_takes_the_source_the_picking_node_sees() -> None:
    """A client masqueraded before kube-proxy's pick reaches the picking node from the
    masquerading node's address: the pin's key must carry that address."""
    trace = Trace("t")
    trace.hops = [
        _hop(1, "10.0.1.3", "10.100.0.3"),
        _hop(
            2, "10.100.0.2", "10.100.0.3", FieldDiff("ip.src", "10.0.1.3", "10.100.0.2")
        ),
        _hop(
            3, "10.100.0.2", "10.0.2.2", FieldDiff("ip.dst", "10.100.0.3", "10.0.2.2")
        ),
    ]
    assert picked_from(trace, "10.100.0.3") == "10.100.0.2"
    trace.hops = [trace.hops[0], trace.hops[2]]
    trace.hops[1] = _hop(
        3, "10.0.1.3", "10.0.2.2", FieldDiff("ip.dst", "10.100.0.3", "10.0.2.2")
    )
    assert picked_from(trace, "10.100.0.3") is None


# -- on this kernel: the simulator's answers for each cause of issue 13 ---------------------

CAUSES = """
name: issue-13-causes
cluster: {network: vxlan}
manifests:
  - kind: Pod
    metadata: {name: hn}
    spec:
      nodeName: node-1
      hostNetwork: true
      containers: [{name: s, image: agnhost, ports: [{containerPort: 8081, protocol: UDP}]}]
  - kind: Pod
    metadata: {name: a}
    spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{containerPort: 80},
      {containerPort: 53, protocol: UDP}]}]}
  - kind: Pod
    metadata: {name: b}
    spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{containerPort: 53,
      protocol: UDP}]}]}
  - kind: Pod
    metadata: {name: c}
    spec: {nodeName: node-2, containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
steps:
STEPS
"""

# cause 3: broadcast, multicast and 0.0.0.0; cause 4: the wildcard-bound UDP server
ADDRESS_PROBES = [
    *(
        f"  - probe: {{from: default/a, to: '{dst}', port: 53, protocol: {p}}}"
        for dst in (
            "10.0.1.255",
            "255.255.255.255",
            "224.0.0.1",
            "10.0.2.255",
            "0.0.0.0",
        )
        for p in ("UDP", "TCP")
    ),
    *(
        f"  - probe: {{from: default/a, to: '{dst}', protocol: ICMP}}"
        for dst in ("10.0.1.255", "224.0.0.1", "10.0.2.255", "0.0.0.0")
    ),
    "  - probe: {from: default/a, to: '10.100.0.2', port: 8081, protocol: UDP}",
    "  - probe: {from: default/c, to: '10.100.0.2', port: 8081, protocol: UDP}",
    "  - probe: {from: default/a, to: '10.0.1.1', port: 8081, protocol: UDP}",
]


def verify_steps(steps: list[str]) -> list[str]:
    from dataplane.kernel.report import MISMATCH
    from dataplane.kernel.verify import verify

    scenario, _ = load_scenario_text(CAUSES.replace("STEPS", "\n".join(steps)))
    report = verify(scenario)
    assert report.rows
    return [
        f"step {r.step} {r.title}: simulator {r.sim} ({r.sim_detail}), kernel "
        f"{r.kernel.verdict} ({r.kernel.detail})"
        for r in report.rows
        if r.status == MISMATCH
    ]


@pytest.mark.kernel
def test_non_unicast_destinations_and_the_wildcard_udp_server_agree() -> None:
    wrong = verify_steps(ADDRESS_PROBES)
    assert not wrong, "\n".join(wrong)


@pytest.mark.kernel
def test_a_neighbour_that_never_answers_is_waited_for() -> None:
    """Unassigned addresses of a podCIDR, on the node (the bridge) and across: ARP at its
    defaults gives up after 3 s, then "host unreachable" (EHOSTUNREACH at the client);
    the probes wait for it instead of calling the silence `denied`."""
    from dataplane.kernel.report import MISMATCH
    from dataplane.kernel.sysctls import NEIGHBOUR_FAILS
    from dataplane.kernel.verify import verify

    steps = [
        f"  - probe: {{from: default/a, to: '{dst}', port: 80, protocol: {p}}}"
        for dst in ("10.0.1.77", "10.0.2.77")
        for p in ("TCP", "UDP")
    ]
    scenario, _ = load_scenario_text(CAUSES.replace("STEPS", "\n".join(steps)))
    report = verify(scenario)
    assert len(report.rows) == 4
    for row in report.rows:
        assert row.status != MISMATCH, (row.title, row.sim, row.kernel)
        assert row.kernel.verdict is Verdict.UNREACHABLE, (row.title, row.kernel)
        assert row.kernel.seconds >= NEIGHBOUR_FAILS - 0.1, (row.title, row.kernel)


FRAGMENTS = (
    PAIR
    + """steps:
  - send:
      at: default/a
      packet: [{IP: {dst: default/b}}, {UDP: {sport: 40000, dport: 53}},
               {Raw: {size: SIZE}}]
"""
)


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("mode", "mtu", "size", "verdict"),
    [
        ("vxlan", 1500, 2972, Verdict.DELIVERED),
        ("host-gw", 9000, 19972, Verdict.DROPPED),
    ],
    ids=["policy-sees-the-datagram", "fragments-over-1500-die"],
)
def test_bridged_fragments_agree(
    mode: str, mtu: int, size: int, verdict: Verdict
) -> None:
    from dataplane.kernel.report import MISMATCH
    from dataplane.kernel.verify import verify

    text = FRAGMENTS.replace("MODE", mode).replace("MTU", str(mtu))
    scenario, _ = load_scenario_text(text.replace("SIZE", str(size)))
    report = verify(scenario)
    assert len(report.rows) == 1
    row = report.rows[0]
    assert row.status != MISMATCH, (row.sim, row.sim_detail, row.kernel)
    assert row.sim is verdict, row.sim_detail


def test_batches_hold_at_most_a_burst_per_destination() -> None:
    from collections import Counter

    from dataplane.kernel.icmp_budget import within_burst

    key = ("node-2", "pod default/c", "10.0.1.3")
    other = ("node-2", "pod default/c", "10.0.1.4")
    need = {i: Counter({key: 1}) for i in range(10)} | {10: Counter({other: 5})}
    batches = within_burst([list(range(11))], need.__getitem__)
    # a burst is 5 tokens: ip_error() caps the bucket at ip_rt_error_burst
    assert batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10]]
    drains = {3: {key}}
    cut = within_burst(
        [list(range(6))],
        lambda i: Counter({other: 1}) if i != 4 else Counter({key: 1}),
        lambda i: drains.get(i, set()),
    )
    assert cut == [[0, 1, 2, 3], [4, 5]], "a redirect and an error to one peer: apart"


def test_a_batch_waits_for_the_kernels_bucket_to_refill() -> None:
    from collections import Counter

    from dataplane.kernel.icmp_budget import MARGIN, Buckets

    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    buckets = Buckets(clock=lambda: now[0], sleep=sleep)
    key = ("gateway", "gateway", "10.100.0.2")
    assert buckets.wait(Counter({key: 5})) == 0.0  # a new peer: full
    buckets.spend(Counter({key: 5}))
    now[0] += 1.5
    waited = buckets.wait(Counter({key: 4}))
    assert waited == pytest.approx(4 + MARGIN - 1.5)
    buckets.spend(Counter({key: 4}))
    now[0] += 100
    assert buckets.wait(Counter({key: 5})) == pytest.approx(0.0)
    buckets.spend(Counter(), emptied=[key])  # a redirect: nothing left
    assert buckets.wait(Counter({key: 2})) == pytest.approx(2 + MARGIN)


def test_a_namespace_sends_at_most_half_its_icmp_budget_a_batch() -> None:
    """icmp_msgs_burst is 50 credits and each error takes 0 to 2 of them: a batch holds at
    most 25 errors of one sending namespace, whatever their destinations."""
    from collections import Counter

    from dataplane.kernel.icmp_budget import HOST_BURST, within_burst

    assert HOST_BURST == 25
    need = {i: Counter({("node-1", "host", f"10.0.1.{i}"): 1}) for i in range(30)}
    need[30] = Counter({("node-2", "host", "10.0.1.1"): 1})  # another namespace's
    batches = within_burst([list(range(31))], need.__getitem__)
    assert batches == [list(range(25)), list(range(25, 31))]


def test_a_batch_waits_for_the_namespaces_icmp_budget_to_refill() -> None:
    from collections import Counter

    from dataplane.kernel.icmp_budget import HOST_REFILL, MARGIN, Buckets

    now = [100.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    buckets = Buckets(clock=lambda: now[0], sleep=sleep)
    first = ("node-1", "host", "10.0.1.3")
    buckets.spend(Counter({first: 1}))
    now[0] += 0.01
    # another destination (its bucket full), the same sender: 50 credits at 1000/s
    waited = buckets.wait(Counter({("node-1", "host", "10.0.1.4"): 1}))
    assert waited == pytest.approx(0.05 + MARGIN - 0.01)
    assert pytest.approx(0.05 + MARGIN) == HOST_REFILL
    assert buckets.wait(Counter({("node-2", "host", "10.0.1.4"): 1})) == 0.0


def test_a_host_unreachable_for_a_syn_counts_every_retransmission() -> None:
    """A SYN waits 3 s for a neighbour that never answers (default sysctls): it is sent
    at 0, 1 and 3 s into the same queue, and each copy gets its host unreachable."""
    from dataplane.kernel.icmp_budget import errors_sent
    from dataplane.packet import ICMP, UDP

    def error(quoted: Packet) -> Trace:
        trace = Trace("t")
        icmp = ICMP(3, 1, quote=quoted)
        pkt = Packet(ip=IP(src="10.100.0.2", dst="10.0.1.3", proto=1), l4=icmp)
        trace.hops.append(Hop(1, "node-2", "host", "", "icmp", "", pkt))
        return trace

    syn = Packet(ip=IP(src="10.0.1.3", dst="10.0.2.9", proto=6), l4=TCP(40000, 80))
    datagram = Packet(ip=IP(src="10.0.1.3", dst="10.0.2.9", proto=17), l4=UDP(4, 53))
    key = ("node-2", "host", "10.0.1.3")
    assert errors_sent(error(syn))[key] == 3
    assert errors_sent(error(datagram))[key] == 1


def test_a_net_unreachable_for_a_syn_counts_its_retransmission_too() -> None:
    """A router's net unreachable costs ip_error()'s token and icmp_send()'s; for a SYN,
    the first may be a soft error (the socket still locked by connect()), so the SYN
    sent again 1 s later costs as much again (generated seed 370)."""
    from dataplane.kernel.icmp_budget import errors_sent
    from dataplane.packet import ICMP, UDP

    def error(quoted: Packet) -> Trace:
        trace = Trace("t")
        icmp = ICMP(3, 0, quote=quoted)
        pkt = Packet(ip=IP(src="10.100.0.1", dst="192.0.2.10", proto=1), l4=icmp)
        trace.hops.append(Hop(1, "gateway", "gateway", "", "icmp", "", pkt))
        return trace

    syn = Packet(ip=IP(src="192.0.2.10", dst="10.0.1.3", proto=6), l4=TCP(40000, 80))
    datagram = Packet(ip=IP(src="192.0.2.10", dst="10.0.1.3", proto=17), l4=UDP(4, 53))
    key = ("gateway", "gateway", "192.0.2.10")
    assert errors_sent(error(syn))[key] == 4
    assert errors_sent(error(datagram))[key] == 2


def test_silence_waits_while_a_neighbour_is_resolved() -> None:
    """The deadline moves on while the kernel resolves a neighbour (its "host unreachable"
    comes after 3 s at the default sysctls), then `timeout` more; not without one."""
    import socket
    import time

    from dataplane.kernel.probe import Job, run_jobs

    class Quiet(Job):
        def __init__(self) -> None:
            self.a, self.b = socket.socketpair()

        def fds(self) -> list[tuple[int, int]]:
            return [] if self.result is not None else [(self.a.fileno(), 1)]

        def close(self) -> None:
            self.a.close()
            self.b.close()

    t0 = time.perf_counter()
    assert run_jobs([Quiet()], 0.05)[0].verdict is Verdict.DENIED
    assert time.perf_counter() - t0 < 0.5
    until = time.perf_counter() + 0.4
    t0 = time.perf_counter()
    [got] = run_jobs([Quiet()], 0.05, lambda: time.perf_counter() < until)
    took = time.perf_counter() - t0
    assert got.verdict is Verdict.DENIED
    assert 0.45 <= took < 1.5, took  # 0.4 s resolving, then 0.05 s more


@pytest.mark.kernel
def test_more_errors_than_a_burst_are_paced_not_lost() -> None:
    """Ten port unreachables from pod c to pod a: the kernel keeps its default
    icmp_ratelimit, so verify runs them as two batches, a second apart per token."""
    steps = [
        f"  - probe: {{from: default/a, to: default/c, port: {5000 + i}, protocol: UDP}}"
        for i in range(10)
    ]
    wrong = verify_steps(steps)
    assert not wrong, "\n".join(wrong)


def test_a_part_that_differs_makes_a_mismatch() -> None:
    from dataplane.kernel.probe import KernelVerdict
    from dataplane.kernel.report import MISMATCH, Part, Row

    kernel = KernelVerdict(Verdict.DELIVERED, "SYN-ACK")
    same = Row(
        1, "probe", "t", Verdict.DELIVERED, "", kernel, parts=[Part("x", "1", "1")]
    )
    assert same.status == "agree"
    other = Row(
        1,
        "probe",
        "t",
        Verdict.DELIVERED,
        "",
        kernel,
        parts=[Part("server saw", "10.0.1.3", "10.0.1.1")],
    )
    assert other.status == MISMATCH
    assert [p.name for p in other.differs()] == ["server saw"]
    assert other.to_dict()["parts"] == [
        {
            "part": "server saw",
            "simulator": "10.0.1.3",
            "kernel": "10.0.1.1",
            "agree": False,
        }
    ]


def test_the_simulator_says_what_the_server_and_the_client_saw() -> None:
    from dataplane.kernel.report import sim_seen

    scenario, _ = load_scenario_text(HOST_UDP_SERVICE)
    sim = Simulator(scenario.cluster)
    trace = sim.probe("default/c", "svc/default/web", 80, "UDP")
    ns = sim.netns_of(sim.resolve("default/c"))
    seen = sim_seen(trace, ns.node, ns.label)
    assert trace.verdict is Verdict.DELIVERED
    assert (seen.server_node, seen.server_netns) == ("node-1", "pod default/web")
    assert seen.server_dport == 8080 and seen.server_src == "10.0.2.2"
    assert seen.server_ttl == 62  # node-2 and node-1 forwarded it
    assert seen.answer_from == str(scenario.cluster.services["default/web"].cluster_ip)
    assert seen.answer_ttl == 62


HOST_UDP_SERVICE = """
name: parts
cluster: {network: vxlan}
manifests:
  - kind: Pod
    metadata: {name: web, labels: {app: web}}
    spec: {nodeName: node-1, containers: [{name: w, image: agnhost,
      ports: [{containerPort: 8080, protocol: UDP}]}]}
  - kind: Pod
    metadata: {name: c}
    spec: {nodeName: node-2, containers: [{name: c, image: x}]}
  - kind: Service
    metadata: {name: web}
    spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080, protocol: UDP}]}
steps:
  - probe: {from: default/c, to: svc/default/web, port: 80, protocol: UDP}
"""


@pytest.mark.kernel
def test_the_kernel_side_shows_every_part() -> None:
    from dataplane.kernel.verify import verify

    scenario, _ = load_scenario_text(HOST_UDP_SERVICE)
    (row,) = verify(scenario).rows
    assert row.status == "agree", [(p.name, p.sim, p.kernel) for p in row.parts]
    assert [p.name for p in row.parts] == [
        "endpoint chosen",
        "devices",
        "ttl on arrival",
        "server",
        "endpoint",
        "server saw",
        "server ttl",
        "answer from",
        "answer ttl",
    ]


@pytest.mark.kernel
def test_the_kernel_captures_the_devices_the_simulator_crossed() -> None:
    # across nodes over VXLAN, through a Service: the pod's eth0, its veth, cbr0,
    # flannel.1 and eth0 of both nodes (the outer frame counted by its inner packet),
    # the server's veth and eth0; the kernel's captures (marked by IP_TOS) say the same
    from dataplane.kernel.capture import sim_devices
    from dataplane.kernel.verify import verify

    scenario, _ = load_scenario_text(HOST_UDP_SERVICE)
    sim = Simulator(scenario.cluster)
    crossed = sim_devices(sim.probe("default/c", "svc/default/web", 80, "UDP"))
    devices = {(ns, dev) for ns, dev, _ttl in crossed}
    assert {("node-1", "flannel.1"), ("node-2", "flannel.1"), ("node-1", "eth0")} <= (
        devices
    )
    assert ("pod:default/c", "eth0", 64) in crossed
    assert ("pod:default/web", "eth0", 62) in crossed  # two routers: node-2, node-1
    (row,) = verify(scenario).rows
    parts = {p.name: p for p in row.parts}
    assert parts["devices"].agrees
    assert parts["devices"].kernel == f"{len(devices)} devices"
    assert parts["ttl on arrival"].agrees


def test_a_device_only_one_side_saw_is_named() -> None:
    from dataplane.kernel.compare import devices_parts

    devices, ttls = devices_parts(
        {("node-1", "eth0", 63), ("node-1", "cbr0", 63)},
        {("node-1", "eth0", 64), ("node-2", "eth0", 63)},
        {"node-1": "node-1 host", "node-2": "node-2 host"},
    )
    assert not devices.agrees
    assert devices.sim == "2 devices, only here: node-1 host cbr0"
    assert devices.kernel == "2 devices, only here: node-2 host eth0"
    assert not ttls.agrees
    assert (ttls.sim, ttls.kernel) == (
        "1 device, node-1 host eth0: 63",
        "1 device, node-1 host eth0: 64",
    )


def test_the_simulator_walks_again_with_the_kernels_choice() -> None:
    from dataplane.kubeproxy import chosen_by_kernel

    scenario, _ = load_scenario_text(TWO_ENDPOINTS)
    sim = Simulator(scenario.cluster)
    own = sim.probe("default/c", "svc/default/web", 80)
    other = "default/web-1" if own.endpoint == "default/web-0" else "default/web-0"
    with chosen_by_kernel({"default/web:80": other}):
        again = sim.probe("default/c", "svc/default/web", 80)
    assert again.endpoint == other
    assert any("the kernel's kube-proxy chose" in h.detail for h in again.hops)
    with chosen_by_kernel({"default/web:80": "default/c"}):  # not an endpoint: ignored
        assert sim.probe("default/c", "svc/default/web", 80).endpoint == own.endpoint
    assert sim.probe("default/c", "svc/default/web", 80).endpoint == own.endpoint


TWO_ENDPOINTS = """
name: two-endpoints
manifests:
  - kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: w, image: nginx, ports: [{containerPort: 80}]}]}
  - kind: Pod
    metadata: {name: c}
    spec: {nodeName: node-1, containers: [{name: c, image: x}]}
  - kind: Service
    metadata: {name: web}
    spec: {selector: {app: web}, ports: [{port: 80}]}
steps:
  - probe: {from: default/c, to: svc/default/web, port: 80}
"""
