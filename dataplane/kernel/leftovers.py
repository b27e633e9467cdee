"""What a run starts beside its namespaces, found again by its run id and removed.

A Docker host of `dataplane verify` (`dataplane.kernel.docker_engine`) runs a real
`dockerd`, which starts its own `containerd`, one `containerd-shim-runc-v2` per container
(it reparents itself to init, so it outlives a killed dockerd), `docker-proxy` per
published port, and the containers' own processes.  Everything of run `dpv…` is findable
without any record of it, so that the next run can remove what a killed one left
(`dataplane.kernel.owner.remove` calls `remove`):

- processes: those whose network namespace is one of the run's (`/run/netns/<run id>-*`:
  dockerd, containerd, the shims, docker-proxy, a container's processes once its
  namespace is named there), those in a cgroup under `/<run id>` (dockerd's
  `--cgroup-parent`: every container), and those whose command line names the run's
  state directory (a shim's `-address …/containerd.sock`);
- the state directory `state_dir(run_id)` (dockerd's `--data-root`, `--exec-root`,
  socket, pid file, config and log): its mounts (dockerd's bind mounts of container
  namespaces under `exec-root/netns`, the containers' root filesystems) are detached
  first, deepest first, then the directory is removed;
- the cgroup directories `/sys/fs/cgroup/<controller>/<run id>` (and below), removed
  once their processes are gone (a cgroup directory with no task may be rmdir'ed).

No process is ever chosen by its name: only by the run's namespaces, cgroup or directory,
and never this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from dataplane.kernel import netns

CGROUP_ROOT = Path("/sys/fs/cgroup")
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def state_root() -> Path:
    """Where the runs' state directories are (`$TMPDIR/dataplane-engine`)."""
    return Path(tempfile.gettempdir()) / "dataplane-engine"


def state_dir(run_id: str) -> Path:
    return state_root() / run_id


def cgroup_parent(run_id: str) -> str:
    """dockerd's `--cgroup-parent` for run `run_id` (cgroupfs driver: an absolute path)."""
    return f"/{run_id}"


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def processes(run_id: str) -> list[int]:
    """The pids of every process of run `run_id` (see the module docstring)."""
    inodes = {
        i
        for name in netns.listing(f"{run_id}-")
        if (i := _inode(netns.path_of(name))) is not None
    }
    mark = f":{cgroup_parent(run_id)}/"
    whole = f":{cgroup_parent(run_id)}\n"
    state = str(state_dir(run_id)).encode()
    me = os.getpid()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            mine = _inode(entry / "ns" / "net") in inodes
            if not mine:
                cgroups = (entry / "cgroup").read_text()
                mine = mark in cgroups or whole in cgroups
            if not mine:
                mine = state in (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile, or a kernel thread
            continue
        if mine and _alive(int(entry.name)):
            out.append(int(entry.name))
    return sorted(out)


def kill(pids: list[int], wait: float = 5.0) -> list[int]:
    """SIGKILL each of `pids` and wait until they are gone; those still there."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = list(pids)
    deadline = time.monotonic() + wait
    while left and time.monotonic() < deadline:
        for pid in list(left):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # our own child: no zombie left behind
            if not _alive(pid):
                left.remove(pid)
        if left:
            time.sleep(0.02)
    return left


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def unmount_under(top: Path) -> list[str]:
    """Detach every mount at or below `top`, deepest first; the mount points."""
    prefix = str(top)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    for point in sorted(points, key=lambda p: (-p.count("/"), p)):
        _libc.umount2(point.encode(), MNT_DETACH)
    return points


def remove_cgroups(run_id: str) -> None:
    """rmdir the run's cgroup directories in every controller, deepest first."""
    if not CGROUP_ROOT.is_dir():
        return
    for controller in CGROUP_ROOT.iterdir():
        top = controller / run_id
        if not top.is_dir():
            continue
        dirs = [Path(d) for d, _subdirs, _files in os.walk(top)]
        for d in sorted(dirs, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()


def remove(run_id: str) -> list[int]:
    """Kill every process of run `run_id`, remove its mounts, state directory and
    cgroups; the pids that would not die (none, normally)."""
    left = kill(processes(run_id))
    top = state_dir(run_id)
    unmount_under(top)
    shutil.rmtree(top, ignore_errors=True)
    remove_cgroups(run_id)
    return left
