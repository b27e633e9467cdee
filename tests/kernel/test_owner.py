"""Owner records: a run's namespaces are removed only when its owner has provably ended.

`verify --clean` and the reaping at the start of every run must never touch a live run,
wherever its process is (another PID namespace, another container), and must remove what
a killed run left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dataplane.kernel import netns, owner
from dataplane.kernel.owner import Owner, Status, judge

ROOT = Path(__file__).resolve().parent.parent.parent
CLI = [sys.executable, "-m", "dataplane.cli", "verify"]
# networkpolicy-lab has denied probes: with a long timeout the run waits in its probes
LONG = [*CLI, "-q", "--timeout", "120", "scenarios/networkpolicy-lab.yaml"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def me(**changes: object) -> Owner:
    """An owner record of this process, with some fields changed."""
    return replace(Owner.of_this_process("dpvtest"), **changes)  # type: ignore[arg-type]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    ("record", "locked", "status", "reason"),
    [
        (lambda: me(boot_id="0-other"), None, Status.ORPHANED, "made before this boot"),
        (
            lambda: me(boot_id="0-other", kept=True),
            False,
            Status.KEPT,
            "made before this boot",
        ),
        (lambda: me(pid_ns="pid:[1]"), True, Status.LIVE, "holds its owner record"),
        (lambda: me(), False, Status.LIVE, "is running"),
        (lambda: me(pid=dead_pid()), False, Status.ORPHANED, "has ended"),
        (lambda: me(start_time=1), False, Status.ORPHANED, "is now another process"),
        (lambda: me(pid=dead_pid(), kept=True), False, Status.KEPT, "has ended"),
        (lambda: me(pid_ns="pid:[1]"), False, Status.ORPHANED, "holds no lock"),
        (
            lambda: me(pid_ns="pid:[1]", kept=True),
            False,
            Status.LIVE,
            "another PID namespace",
        ),
        (lambda: me(pid_ns="pid:[1]"), None, Status.LIVE, "cannot be tested"),
    ],
    ids=[
        "another boot",
        "another boot, kept",
        "lock held, another PID namespace",
        "this PID namespace, process alive",
        "this PID namespace, pid absent",
        "this PID namespace, pid reused",
        "kept, process ended",
        "another PID namespace, no lock",
        "kept in another PID namespace",
        "another PID namespace, lock untestable",
    ],
)
def test_an_owner_is_gone_only_when_it_can_be_proven(
    record: object, locked: bool | None, status: Status, reason: str
) -> None:
    assert callable(record)
    got_status, got_reason = judge(record(), locked)
    assert got_status is status
    assert reason in got_reason


def test_a_record_reads_back_and_field_22_is_the_start_time() -> None:
    mine = Owner.of_this_process("dpvtest", "x.yaml")
    assert Owner.from_json(mine.to_json()) == mine
    stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    assert mine.start_time == int(stat[19])  # field 22: fields 1-2 are pid and (comm)
    assert mine.pid_ns == os.readlink("/proc/self/ns/pid")


# -- with real namespaces --------------------------------------------------------------
def wait_for_run(pid: int, timeout: float = 60) -> str:
    """The run id of the verify process `pid` once its namespaces exist."""
    run_id = f"{netns.PREFIX}{pid:x}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            r
            for r in owner.run_sets()
            if r.owner is not None and r.owner.start_time == owner.start_time(pid)
        ]
        if found and len(found[0].names) > 5:
            return found[0].run_id
        time.sleep(0.1)
    raise AssertionError(f"verify ({run_id}...) never built its namespaces")


def sets_of(run_id: str) -> tuple[list[str], bool]:
    return netns.listing(f"{run_id}-"), owner.record_path(run_id).exists()


@pytest.fixture
def long_run() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        LONG, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=60)


@pytest.mark.kernel
def test_the_next_run_reaps_what_a_killed_run_left(
    long_run: subprocess.Popen[str],
) -> None:
    run_id = wait_for_run(long_run.pid)
    long_run.send_signal(signal.SIGKILL)
    long_run.wait(timeout=30)
    names, has_record = sets_of(run_id)
    assert names and has_record  # SIGKILL: no finally, no handler ran
    after = cli("-q", "scenarios/same-node.yaml")
    assert after.returncode == 0, after.stderr
    assert (
        f"reaped {len(names)} namespaces of {run_id}: process {long_run.pid} "
        f"({owner.pid_namespace()}) has ended"
    ) in after.stderr
    assert sets_of(run_id) == ([], False)


@pytest.mark.kernel
def test_clean_keeps_a_live_run_and_says_why(long_run: subprocess.Popen[str]) -> None:
    run_id = wait_for_run(long_run.pid)
    cleaned = cli("--clean", f"{run_id}-node-1")
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.startswith("removed 0 namespaces of 0 runs\n")
    names, has_record = sets_of(run_id)
    assert names and has_record
    assert (
        f"kept {run_id} ({len(names)} namespaces): process {long_run.pid} "
        f"({owner.pid_namespace()}) holds its owner record's lock: still running"
    ) in cleaned.stdout


@pytest.mark.kernel
def test_a_run_in_another_pid_namespace_is_kept_until_it_ends() -> None:
    # `unshare --pid --fork`: the run's process is pid 1 of a new PID namespace, a pid
    # that means something else here; only its lock says whether it is alive.
    argv = ["unshare", "--pid", "--fork", *LONG]
    with subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + 60
        found: list[owner.RunSet] = []
        while not found and time.monotonic() < deadline:
            time.sleep(0.2)
            found = [
                r
                for r in owner.run_sets()
                if r.owner is not None
                and r.owner.pid_ns != owner.pid_namespace()
                and r.owner.scenario.endswith("networkpolicy-lab.yaml")
                and len(r.names) > 5
            ]
        if not found:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"the run in the new PID namespace never built: {err}")
        run = found[0]
        assert run.owner is not None and run.owner.pid == 1
        assert run.status is Status.LIVE
        removed, left = owner.reap(include_kept=True, only={run.run_id})
        assert removed == [] and [r.run_id for r in left] == [run.run_id]
        assert sets_of(run.run_id)[0]
        # SIGKILL to its pid 1 (the verify process; unshare's child) ends the namespace
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()
        os.kill(int(children.split()[0]), signal.SIGKILL)
        proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # pid 1's death ends every process of the ns
        [now] = [r for r in owner.run_sets() if r.run_id == run.run_id]
        if now.status is Status.ORPHANED:
            break
        time.sleep(0.1)
    assert now.status is Status.ORPHANED, now.reason
    assert "holds no lock on its owner record" in now.reason
    assert owner.remove(now)
    assert sets_of(run.run_id) == ([], False)


@pytest.mark.kernel
def test_a_set_without_an_owner_record_is_kept() -> None:
    run_id = f"{netns.PREFIX}{os.getpid():x}g999"  # as an older dataplane named it
    netns.create(f"{run_id}-node-1")
    try:
        cleaned = cli("--clean", run_id)
        assert cleaned.returncode == 0, cleaned.stderr
        assert netns.listing(f"{run_id}-") == [f"{run_id}-node-1"]
        assert f"kept {run_id} (1 namespaces): no owner record" in cleaned.stdout
    finally:
        netns.remove(f"{run_id}-node-1")


@pytest.mark.kernel
def test_a_new_run_does_not_reap_a_kept_set() -> None:
    kept = cli("--keep", "-q", "scenarios/same-node.yaml")
    assert kept.returncode == 0, kept.stderr
    run_id = kept.stdout.split("ip netns exec ", 1)[1].split("-", 1)[0]
    try:
        after = cli("-q", "scenarios/same-node.yaml")
        assert after.returncode == 0, after.stderr
        assert run_id not in after.stderr
        names, has_record = sets_of(run_id)
        assert names and has_record
        [run] = [r for r in owner.run_sets() if r.run_id == run_id]
        assert run.status is Status.KEPT
    finally:
        [run] = [r for r in owner.run_sets() if r.run_id == run_id]
        owner.remove(run)
    assert sets_of(run_id) == ([], False)


@pytest.mark.kernel
def test_clean_of_an_unknown_run_is_an_error() -> None:
    cleaned = cli("--clean", "dpv0g424242")
    assert cleaned.returncode == 2
    assert cleaned.stdout == ""
    assert cleaned.stderr.startswith(
        "error: no namespaces and no owner record of run dpv0g424242 (runs here: "
    )
