"""Verify at scale: the kernel's one ARP table for the whole machine never overflows.

With 50 nodes and 1,000 pods, 300 probes at once made more learnt neighbour entries than
`gc_thresh3` (1024) and the kernel dropped packets ("neighbour table overflow"): 39
probes the simulator delivers were denied.  Now every batch starts with the run's learnt
entries forgotten and holds no more probes than the table takes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale import scenario_text
from dataplane.kernel import netns, owner, verify
from dataplane.kernel.build import ATF_PERM
from dataplane.kernel.live import LiveCluster
from dataplane.kernel.probe import Client, ProbeSpec
from dataplane.sim import Simulator
from tests.dataplane.builders import tiny_cluster
from topology.loader import load_scenario
from topology.model import NetworkMode, Protocol


def arp_entries(kernel_ns: str) -> tuple[int, int]:
    """(learnt, permanent) entries of a namespace's ARP table."""
    with netns.inside(kernel_ns):
        lines = Path("/proc/thread-self/net/arp").read_text().splitlines()[1:]
    perm = sum(1 for line in lines if int(line.split()[2], 16) & ATF_PERM)
    return len(lines) - perm, perm


def test_batches_hold_at_most_their_budget() -> None:
    items = [object() for _ in range(10)]
    cost = {
        id(it): c for it, c in zip(items, [3, 3, 3, 5, 1, 9, 1, 1, 1, 1], strict=True)
    }
    batches = verify.split(items, 4, 8, lambda it: cost[id(it)])  # type: ignore[arg-type]
    assert [[cost[id(it)] for it in b] for b in batches] == [
        [3, 3],
        [3, 5],
        [1],
        [9],
        [1, 1, 1, 1],
    ]


def test_the_budget_leaves_a_quarter_of_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(netns, "neighbour_table_limit", lambda: 1024)
    assert verify.neighbour_budget() == 768


@pytest.mark.kernel
def test_learnt_neighbours_are_forgotten_and_permanent_ones_stay() -> None:
    cluster = LiveCluster(Simulator(tiny_cluster()).fabric).start()
    try:
        a, node1 = cluster.kernel_ns("pod:default/a"), cluster.kernel_ns("node-1")
        spec = ProbeSpec(a, Protocol.TCP, "10.0.2.2", 80)
        cluster.kc.forget_neighbours()  # type: ignore[union-attr]
        [before] = cluster.run([Client(spec)])
        assert before.verdict is not None and before.verdict.value == "delivered"
        assert arp_entries(a)[0] == 1  # the pod learnt its gateway
        learnt, permanent = arp_entries(node1)
        assert learnt >= 1 and permanent == 1  # flannel.1's entry for node-2
        assert cluster.kc.forget_neighbours() >= 3  # type: ignore[union-attr]
        assert arp_entries(a) == (0, 0)
        assert arp_entries(node1) == (0, 1)
    finally:
        cluster.close()


@pytest.mark.kernel
@pytest.mark.parametrize("mode", list(NetworkMode), ids=[m.value for m in NetworkMode])
def test_a_batch_makes_no_more_neighbours_than_it_is_charged(
    mode: NetworkMode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = scenario_text(nodes=4, pods=24, probes=40, seed=7)
    path = tmp_path / "scale.yaml"
    path.write_text(text.replace("network: vxlan", f"network: {mode.value}"))
    scenario, _ = load_scenario(path)
    charged: list[int] = []
    real_split = verify.split

    def one_batch(items, size, budget, cost):  # type: ignore[no-untyped-def]
        charged.append(sum(cost(it) for it in items))
        return real_split(items, size, 10**6, cost)

    monkeypatch.setattr(verify, "split", one_batch)
    report = verify.verify(scenario, keep=True)
    try:
        assert report.count("agree") == len(report.rows) == 40
        learnt = sum(arp_entries(name)[0] for name in report.kept)
        assert 0 < learnt <= charged[0]
    finally:
        [run] = [r for r in owner.run_sets() if set(r.names) == set(report.kept)]
        owner.remove(run)


@pytest.mark.kernel
def test_a_batch_the_table_overflowed_in_runs_again_in_halves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "scale.yaml"
    path.write_text(scenario_text(nodes=3, pods=12, probes=20, seed=3))
    scenario, _ = load_scenario(path)
    sizes: list[int] = []
    real_run = verify.Verifier.run_batch
    overflows = [0]

    def run_batch(self: verify.Verifier, batch: list[object]) -> object:
        sizes.append(len(batch))
        if len(sizes) == 1:
            overflows[0] += 5  # as if another run had filled the table meanwhile
        return real_run(self, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(verify.Verifier, "run_batch", run_batch)
    monkeypatch.setattr(netns, "neighbour_overflows", lambda: overflows[0])
    report = verify.verify(scenario)
    assert sizes == [20, 10, 10]
    assert report.neighbour_overflows == 5
    assert report.count("agree") == len(report.rows) == 20
