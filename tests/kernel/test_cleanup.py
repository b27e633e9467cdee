"""A run leaves nothing behind: no namespace, no device, no socket, nothing changed in the
root namespace, even when a probe fails half-way or the process is told to stop."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataplane.kernel import cniplugins, netns, owner
from dataplane.kernel.live import LiveCluster
from dataplane.kernel.probe import Client, ProbeSpec
from dataplane.kernel.signals import Stopped, stopping
from dataplane.kernel.verify import verify
from dataplane.sim import Simulator
from tests.dataplane.builders import tiny_cluster
from topology.loader import load_scenario
from topology.model import Protocol

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent.parent


def root_state() -> dict[str, str]:
    """What the root namespace looks like: devices, routes, neighbours, rules, sysctls."""

    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    links = "\n".join(
        sorted(
            line.split(":")[1].strip() for line in run("ip", "-o", "link").splitlines()
        )
    )
    return {
        "links": links,
        "routes": run("ip", "route", "show", "table", "all"),
        "rules": run("nft", "list", "ruleset"),
        "forwarding": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        "ping_group_range": Path("/proc/sys/net/ipv4/ping_group_range").read_text(),
    }


def mine() -> list[str]:
    """The namespaces of runs of this process (`dpv<pid>-...`, `dpv<pid>g<n>-...`)."""
    base = f"{netns.PREFIX}{os.getpid():x}"
    return [
        n
        for n in netns.listing(base)
        if (run_id := netns.run_id_of(n)) == base or f"{run_id}".startswith(base + "g")
    ]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def before() -> tuple[dict[str, str], set[str], list[str]]:
    return root_state(), open_fds(), mine()


def test_a_run_leaves_nothing_behind(
    before: tuple[dict[str, str], set[str], list[str]],
) -> None:
    state, fds, names = before
    scenario, _ = load_scenario(ROOT / "scenarios" / "networkpolicy-lab.yaml")
    report = verify(scenario)
    assert report.rows and report.ok
    assert mine() == names
    assert root_state() == state
    assert open_fds() <= fds  # every socket and netlink handle closed


def test_a_probe_failing_half_way_leaves_nothing_behind(
    before: tuple[dict[str, str], set[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, fds, names = before
    started: list[Client] = []
    real_start = Client.start

    def failing_start(self: Client) -> None:
        started.append(self)
        if len(started) == 3:
            raise RuntimeError("a probe broke")
        real_start(self)

    monkeypatch.setattr(Client, "start", failing_start)
    scenario, _ = load_scenario(ROOT / "scenarios" / "cross-node-vxlan.yaml")
    with pytest.raises(RuntimeError, match="a probe broke"):
        verify(scenario)
    assert len(started) == 3
    assert mine() == names
    assert root_state() == state
    assert open_fds() <= fds


# Ctrl-C raises KeyboardInterrupt even where the parent shell ignores SIGINT.
CLI = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = ['dataplane', *sys.argv[1:]]; runpy.run_module('dataplane.cli', "
    "run_name='__main__')"
)


@pytest.mark.parametrize(
    ("sig", "status", "message"),
    [
        (
            signal.SIGTERM,
            128 + signal.SIGTERM,
            "stopped by SIGTERM: every namespace of the run was removed\n",
        ),
        (signal.SIGINT, 130, "interrupted: every namespace of the run was removed\n"),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_removes_every_namespace(
    sig: signal.Signals, status: int, message: str
) -> None:
    argv = [
        sys.executable,
        "-c",
        CLI,
        "verify",
        "-q",
        "scenarios/conformance/02-selectors.yaml",
    ]
    with subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        mine = f"dpv{proc.pid:x}-"  # the run id names the process that made it
        deadline = time.monotonic() + 20
        while not netns.listing(mine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert netns.listing(mine), "verify never built its namespaces"
        time.sleep(0.5)  # probes are running
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == status, err
    assert err == message
    assert netns.listing(mine) == []
    assert not owner.record_path(mine.rstrip("-")).exists()


def test_keep_leaves_the_namespaces_and_clean_removes_them() -> None:
    argv = [
        sys.executable,
        "-m",
        "dataplane.cli",
        "verify",
        "--keep",
        "-q",
        "scenarios/same-node.yaml",
    ]
    with subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    kept = netns.listing(f"dpv{proc.pid:x}-")
    assert (
        f"dpv{proc.pid:x}-node-1" in kept and f"dpv{proc.pid:x}-pod-default.a" in kept
    )
    assert (
        f"ip netns exec dpv{proc.pid:x}-node-1" in out
        and f"dataplane verify --clean dpv{proc.pid:x}" in out
    )
    assert "cbr0" in netns.run(
        f"dpv{proc.pid:x}-node-1", ["ip", "-o", "link", "show", "cbr0"]
    )
    # the CNI plugins' state (host-local's) is kept with the namespaces...
    state = owner.cni_state(f"dpv{proc.pid:x}")
    assert state.exists() == (cniplugins.missing() is None)
    cleaned = subprocess.run(
        [
            sys.executable,
            "-m",
            "dataplane.cli",
            "verify",
            "--clean",
            f"dpv{proc.pid:x}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cleaned.returncode == 0
    assert cleaned.stdout.startswith("removed ")
    assert netns.listing(f"dpv{proc.pid:x}-") == []
    assert not state.exists()  # ...and removed with them


def test_a_conntrack_flush_stays_in_its_namespace() -> None:
    sim = Simulator(tiny_cluster())
    cluster = LiveCluster(sim.fabric).start()
    try:
        a = cluster.kernel_ns("pod:default/a")
        cluster.run([Client(ProbeSpec(a, Protocol.UDP, "10.0.2.2", 53))])
        node1, node2 = cluster.kernel_ns("node-1"), cluster.kernel_ns("node-2")

        def entries(name: str) -> int:
            return netns.run(name, ["cat", "/proc/net/nf_conntrack"]).count("\n")

        assert entries(node1) and entries(node2)
        netns.flush_conntrack(cluster.conntrack[node1])
        assert entries(node1) == 0
        assert entries(node2) > 0
    finally:
        cluster.close()


def test_a_signal_inside_a_netlink_call_waits_for_the_call(
    monkeypatch: pytest.MonkeyPatch,
    before: tuple[dict[str, str], set[str], list[str]],
) -> None:
    # SIGTERM lands while pyroute2's event loop waits for the kernel's answer: raised
    # there, it left the request's coroutine on a loop the teardown closed ("Exception
    # ignored in CoreMessageQueue.get ... RuntimeError: Event loop is closed").
    from pyroute2.netlink.core import CoreMessageQueue

    real_get = CoreMessageQueue.get
    sent: list[int] = []

    async def get(self: CoreMessageQueue, tag: int) -> object:
        if len(sent) == 0:  # the signal arrives while the loop waits for the kernel
            sent.append(signal.SIGTERM)
            self.event_loop.call_soon(os.kill, os.getpid(), signal.SIGTERM)
        return await real_get(self, tag)

    monkeypatch.setattr(CoreMessageQueue, "get", get)
    state, _fds, names = before
    cluster = LiveCluster(Simulator(tiny_cluster()).fabric)
    with stopping(), pytest.raises(Stopped) as stop:
        cluster.start()
    assert stop.value.status == 128 + signal.SIGTERM
    assert sent == [signal.SIGTERM]
    gc.collect()  # an abandoned coroutine would complain now (warnings are errors)
    assert netns.listing(f"{cluster.run_id}-") == []
    assert not owner.record_path(cluster.run_id).exists()
    assert mine() == names
    assert root_state() == state
