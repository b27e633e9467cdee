"""Where the kernel cannot carry a cluster's packets (Cilium's BPF datapath), `verify`
still compares each walk's routing decisions with the kernel's FIB
(`dataplane.kernel.routes`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.kernel.live import LiveCluster
from dataplane.kernel.probe import KernelVerdict
from dataplane.kernel.report import MISMATCH, NOT_COMPARABLE, Row
from dataplane.kernel.routes import route_parts
from dataplane.kernel.verify import verify
from dataplane.sim import Simulator
from topology.loader import load_scenario

pytestmark = pytest.mark.kernel

CILIUM = Path(__file__).resolve().parent.parent.parent / "scenarios" / "cilium"


def test_cilium_probes_are_not_comparable_but_their_routes_agree() -> None:
    scenario, _ = load_scenario(CILIUM / "cross-node-vxlan.yaml")
    report = verify(scenario)
    assert {r.status for r in report.rows} == {NOT_COMPARABLE}
    assert {r.kernel.detail for r in report.rows} == {"not comparable: BPF datapath"}
    first = report.rows[0]
    by_name = {p.name: p for p in first.parts}
    hop = by_name["route node-1/host 10.0.1.2"]
    assert (hop.sim, hop.kernel) == (
        "via 10.0.1.1 dev cilium_vxlan mtu 1450",
        "via 10.0.1.1 dev cilium_vxlan mtu 1450",
    )
    pod = by_name["route node-1/pod default/a 10.0.1.2"]
    assert pod.kernel == "via 10.0.0.1 dev eth0 mtu 1450"
    assert all(p.agrees for r in report.rows for p in r.parts)
    assert sum(len(r.parts) for r in report.rows) >= 30


def test_geneve_without_the_module_says_so() -> None:
    scenario, _ = load_scenario(CILIUM / "cross-node-geneve.yaml")
    report = verify(scenario)
    assert {r.status for r in report.rows} == {NOT_COMPARABLE}
    (detail,) = {r.kernel.detail for r in report.rows}
    assert detail.startswith("not comparable: BPF datapath")
    if "geneve" in detail:  # this kernel cannot make cilium_geneve: no route to compare
        assert detail.endswith("(and this kernel has no geneve module)")
        assert not any(r.parts for r in report.rows)


def test_a_route_the_kernel_does_not_have_is_a_mismatch() -> None:
    scenario, _ = load_scenario(CILIUM / "cross-node-vxlan.yaml")
    sim = Simulator(scenario.cluster)
    trace = sim.probe("default/a", "default/c", 80)
    live = LiveCluster(sim.fabric, "route test").start()
    try:
        assert live.kc is not None
        kc = live.kc
        ipr = kc.ipr[kc.names["node-1"]]
        ipr.route("del", dst="10.0.1.0/24")  # the kernel loses node-2's podCIDR route
        parts = route_parts(trace, sim.fabric, {"node-1": ipr})
    finally:
        live.close()
    (wrong,) = [p for p in parts if not p.agrees]
    assert (wrong.name, wrong.sim, wrong.kernel) == (
        "route node-1/host 10.0.1.2",
        "via 10.0.1.1 dev cilium_vxlan mtu 1450",
        "via 10.100.0.1 dev eth0 mtu 1500",
    )
    row = Row(
        1, "probe", "t", trace.verdict, "", KernelVerdict(None, "BPF"), parts=parts
    )
    assert row.status == MISMATCH


def test_a_group_is_routed_without_its_gateway() -> None:
    """`ip route get 224.0.0.1` from a pod whose default route has a gateway: the kernel
    shows none (RTN_MULTICAST: a group is on the link), and neither does the simulator
    (generated seed 87)."""
    from dataplane.kernel.routes import simulator_route

    scenario, _ = load_scenario(CILIUM / "cross-node-vxlan.yaml")
    sim = Simulator(scenario.cluster)
    pod = next(ns for ns in sim.fabric.netns.values() if ns.label == "pod default/a")
    assert simulator_route(pod, "224.0.0.1") == "dev eth0 mtu 1450"
    assert simulator_route(pod, "10.0.1.2") == "via 10.0.0.1 dev eth0 mtu 1450"
