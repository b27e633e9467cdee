"""The oracle's own rules (issue 13), without a kernel: what a client heard, and where
kube-proxy picked the endpoint of a pinned connection."""

from __future__ import annotations

from dataplane.kernel.report import agree, heard_nothing
from dataplane.kernel.verify import picked_from
from dataplane.packet import IP, TCP, Packet
from dataplane.sim import Simulator
from dataplane.trace import FieldDiff, Hop, Trace
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
