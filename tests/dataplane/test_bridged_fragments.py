"""Fragments bridged between two pods of one node (issue 13, causes 1 and 2):
br_netfilter reassembles them before conntrack and the policy (nf_defrag_ipv4), and
refragments on the way out through its fake route, whose MTU is fixed at 1500."""

from __future__ import annotations

import pytest

from dataplane.sim import Simulator
from dataplane.trace import DropReason, Trace, Verdict
from topology.loader import load_scenario_text

# Two pods of node-1 and a policy admitting a -> b on UDP 53 (also the kernel check's
# cluster: tests/kernel/test_oracle.py).
PAIR = """
name: bridged-fragments
cluster: {network: MODE, mtu: MTU}
manifests:
  - kind: Pod
    metadata: {name: a, labels: {app: a}}
    spec: {nodeName: node-1, containers: [{name: c, image: x}]}
  - kind: Pod
    metadata: {name: b, labels: {app: b}}
    spec: {nodeName: node-1, containers: [{name: c, image: x,
      ports: [{containerPort: 53, protocol: UDP}]}]}
  - kind: NetworkPolicy
    metadata: {name: b-dns-from-a}
    spec:
      podSelector: {matchLabels: {app: b}}
      policyTypes: [Ingress]
      ingress: [{from: [{podSelector: {matchLabels: {app: a}}}],
                 ports: [{protocol: UDP, port: 53}]}]
"""
SAME_NODE = (
    PAIR
    + """steps:
  - probe: {from: default/a, to: default/b, port: 53, protocol: UDP}
"""
)


def probe(size: int, mode: str = "vxlan", mtu: int = 1500) -> Trace:
    text = SAME_NODE.replace("MODE", mode).replace("MTU", str(mtu))
    scenario, _ = load_scenario_text(text)
    return Simulator(scenario.cluster).probe(
        "default/a", "default/b", 53, "UDP", size=size
    )


def test_the_policy_judges_the_reassembled_datagram() -> None:
    """3000 bytes leave a in three fragments; only the first has ports, but the policy
    admits port 53, because node-1 reassembles before FORWARD."""
    t = probe(3000)
    assert t.verdict is Verdict.DELIVERED, t.explanation
    defrag = [h for h in t.hops if h.node == "node-1" and h.event == "defrag"]
    assert defrag and defrag[0].netns == "host"
    assert not any(h.reason is DropReason.POLICY_INGRESS for h in t.hops)


def test_the_bridge_refragments_at_the_largest_fragment() -> None:
    t = probe(3000)
    out = [
        h.packet.ip_len()
        for h in t.hops
        if h.node == "node-1"
        and h.netns == "pod default/b"
        and h.event == "recv"
        and h.direction == "request"
        and h.packet is not None
        and h.packet.ip is not None
    ]
    assert out == [1444, 1444, 152]


@pytest.mark.parametrize(
    ("mtu", "verdict"), [(1500, Verdict.DELIVERED), (9000, Verdict.DROPPED)]
)
def test_fragments_larger_than_1500_die_on_the_bridge(
    mtu: int, verdict: Verdict
) -> None:
    """host-gw with jumbo frames: 8980-byte fragments cannot be remade through
    br_netfilter's 1500-byte fake route (IpFragFails), and nothing tells the sender."""
    t = probe(20000, "host-gw", mtu)
    assert t.verdict is verdict, t.explanation
    if verdict is Verdict.DROPPED:
        drop = next(h for h in t.hops if h.reason is DropReason.FRAG_FAILED)
        assert (drop.node, drop.device) == ("node-1", "cbr0")
        assert "IpFragFails" in drop.detail
        assert not any(h.direction == "reply" for h in t.hops)
