"""Who made a set of namespaces, and whether it is provably gone: the owner records.

Every run claims its run id (`dpv<pid hex>[g<n>]`, the prefix of every namespace it makes)
before its first namespace exists, by writing an owner record `RECORD_DIR/<run id>.json`:
its process id, its PID namespace (`/proc/self/ns/pid`), the process's start time
(field 22 of `/proc/<pid>/stat`, clock ticks since boot), the boot id
(`/proc/sys/kernel/random/boot_id`), whether the set is kept (`--keep`) and the scenario.
The record is written to a temporary file, locked with `flock(2)` and linked into place
(so a visible record is always locked while its owner lives, and two runs can never claim
the same id); the lock lives as long as the process (the kernel drops it when the process
dies, even by SIGKILL), and the record is removed after the teardown.

A set's owner is *provably gone* (`Status.ORPHANED`, or `Status.KEPT` for a `--keep` set)
when its record says another boot (namespaces do not survive a reboot, so the set is a
leftover), or, on this boot, when nobody holds the record's lock and, if the owner was in
this PID namespace, its pid is absent or belongs to a process with another start time.
`flock` locks belong to the open file, not to a PID namespace, so the lock also proves the
death of a run in another container that shares `/run`.  Removing a set also kills its
processes and removes its state (a Docker host's dockerd, shims and containers, its
data directories and cgroups: `dataplane.kernel.leftovers`).  Everything else is kept:
a live run (`LIVE`), and a set without a readable record (`UNOWNED`: made by an older
dataplane, or where `RECORD_DIR` is not this one), which is never removed automatically.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path

from dataplane.kernel import leftovers, netns

RECORD_DIR = Path("/run/dataplane")
RECORD_VERSION = 1


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def pid_namespace(pid: int | str = "self") -> str:
    """The PID namespace of a process, as `/proc/PID/ns/pid` reads (`pid:[4026531836]`)."""
    return os.readlink(f"/proc/{pid}/ns/pid")


def start_time(pid: int | str = "self") -> int | None:
    """Field 22 of `/proc/PID/stat` (starttime, clock ticks after boot); None if no such
    process.  The fields are counted after the last `)`, since `comm` may hold spaces."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True, slots=True)
class Owner:
    """An owner record: who made the namespaces `<run_id>-*`."""

    run_id: str
    pid: int
    pid_ns: str
    start_time: int
    boot_id: str
    kept: bool = False
    scenario: str = ""
    version: int = RECORD_VERSION

    @classmethod
    def of_this_process(cls, run_id: str, scenario: str = "") -> Owner:
        started = start_time()
        assert started is not None
        return cls(
            run_id, os.getpid(), pid_namespace(), started, boot_id(), False, scenario
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Owner:
        data = json.loads(text)
        return cls(
            str(data["run_id"]),
            int(data["pid"]),
            str(data["pid_ns"]),
            int(data["start_time"]),
            str(data["boot_id"]),
            bool(data.get("kept", False)),
            str(data.get("scenario", "")),
            int(data.get("version", RECORD_VERSION)),
        )


def record_path(run_id: str) -> Path:
    return RECORD_DIR / f"{run_id}.json"


class Claim:
    """This process's hold on a run id: the locked owner record."""

    def __init__(self, owner: Owner, fd: int) -> None:
        self.owner = owner
        self.run_id = owner.run_id
        self.fd: int | None = fd

    def keep(self) -> None:
        """The set stays up (`--keep`): the record says so, and the lock is let go, so
        that `verify --clean` may remove the set once this process has ended."""
        kept = replace(self.owner, kept=True)
        _write_atomically(record_path(self.run_id), kept.to_json())
        self.owner = kept
        self._unlock()

    def release(self) -> None:
        """The set is gone: remove the record, then let go of the lock."""
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            record_path(self.run_id).unlink()
        self._unlock()

    def _unlock(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def claim(scenario: str = "") -> Claim:
    """Claim a run id no namespace or record uses, with a locked owner record."""
    RECORD_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    taken = set(netns.run_ids())
    base, n = f"{netns.PREFIX}{os.getpid():x}", 0
    while True:
        run_id = base if n == 0 else f"{base}g{n}"
        n += 1
        if run_id in taken:
            continue
        owner = Owner.of_this_process(run_id, scenario)
        tmp = RECORD_DIR / f".{run_id}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, owner.to_json().encode())
            os.link(tmp, record_path(run_id))  # EEXIST: another run has this id
        except FileExistsError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        finally:
            tmp.unlink()
        return Claim(owner, fd)


class Status(Enum):
    LIVE = "live"  # its owner is alive, or cannot be proven gone: kept
    KEPT = "kept"  # made with --keep, its owner has ended: `--clean` removes it
    ORPHANED = "orphaned"  # its owner has ended without removing it: reaped
    UNOWNED = "unowned"  # no readable owner record: kept


@dataclass(frozen=True, slots=True)
class RunSet:
    """The namespaces of one run id, with the verdict on its owner and why."""

    run_id: str
    names: tuple[str, ...]
    status: Status
    reason: str
    owner: Owner | None = None


def _is_locked(path: Path) -> bool | None:
    """Whether some process holds the record's lock; None if it cannot be told."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        return True if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
    finally:
        os.close(fd)
    return False


def judge(owner: Owner, locked: bool | None) -> tuple[Status, str]:
    """Is the owner of a record provably gone?  The status and the reason, in words.

    >>> o = Owner("dpv1", 1, "pid:[1]", 5, "other-boot", kept=True)
    >>> judge(o, None)
    (<Status.KEPT: 'kept'>, 'made before this boot (boot id other-boot)')
    """
    who = f"process {owner.pid} ({owner.pid_ns})"
    if owner.boot_id != boot_id():
        gone = f"made before this boot (boot id {owner.boot_id})"
        return (Status.KEPT if owner.kept else Status.ORPHANED), gone
    if locked:
        return Status.LIVE, f"{who} holds its owner record's lock: still running"
    if owner.pid_ns == pid_namespace():
        now = start_time(owner.pid)
        if now == owner.start_time and (owner.pid != os.getpid() or not owner.kept):
            return Status.LIVE, f"{who} is running"
        gone = f"{who} has ended" + (
            f" (pid {owner.pid} is now another process)" if now is not None else ""
        )
    elif locked is None:
        return Status.LIVE, (
            f"{who} is in another PID namespace and its lock cannot be tested"
        )
    elif owner.kept:
        return Status.LIVE, (
            f"kept by {who}, in another PID namespace: whether it is still in use "
            "cannot be seen from here (run `dataplane verify --clean` there)"
        )
    else:
        gone = f"{who} has ended (it holds no lock on its owner record)"
    return (Status.KEPT if owner.kept else Status.ORPHANED), gone


def run_sets() -> list[RunSet]:
    """Every run id with namespaces or an owner record here, judged."""
    names: dict[str, list[str]] = {}
    for name in netns.listing():
        run_id = netns.run_id_of(name)
        if run_id is not None:
            names.setdefault(run_id, []).append(name)
    records = (
        {p.name.removesuffix(".json") for p in RECORD_DIR.glob(f"{netns.PREFIX}*.json")}
        if RECORD_DIR.is_dir()
        else set()
    )
    out = []
    for run_id in sorted(names.keys() | records):
        members = tuple(names.get(run_id, ()))
        path = record_path(run_id)
        try:
            owner = Owner.from_json(path.read_text())
        except FileNotFoundError:
            out.append(RunSet(run_id, members, Status.UNOWNED, "no owner record"))
            continue
        except (OSError, ValueError, KeyError, TypeError) as err:
            reason = f"its owner record {path} is unreadable ({err})"
            out.append(RunSet(run_id, members, Status.UNOWNED, reason))
            continue
        status, reason = judge(owner, _is_locked(path))
        out.append(RunSet(run_id, members, status, reason, owner))
    return out


@contextlib.contextmanager
def _reaping(run_id: str) -> Iterator[bool]:
    """Hold the record's lock while a set is removed (False: someone holds it)."""
    try:
        fd = os.open(record_path(run_id), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def remove(run: RunSet) -> bool:
    """Remove a provably ended run's namespaces, then its record; False if, by now,
    someone holds its lock (it is left alone)."""
    assert run.status in (Status.ORPHANED, Status.KEPT)
    with _reaping(run.run_id) as mine:
        if not mine:
            return False
        leftovers.remove(run.run_id)  # its dockerd, containers, state (docker runtime)
        netns.remove_all(f"{run.run_id}-")
        shutil.rmtree(cni_state(run.run_id), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            record_path(run.run_id).unlink()
    return True


def cni_state(run_id: str) -> Path:
    """Where a run's CNI plugins keep their state (host-local's `dataDir`, per node):
    removed with the run's namespaces."""
    return RECORD_DIR / f"{run_id}.cni"


def reap(
    include_kept: bool = False, only: set[str] | None = None
) -> tuple[list[RunSet], list[RunSet]]:
    """Remove every orphaned set (and, with `include_kept`, every kept one whose owner
    has ended), of the run ids `only` if given; the sets removed, and the sets left with
    the reason."""
    removed: list[RunSet] = []
    left: list[RunSet] = []
    wanted = {Status.ORPHANED, Status.KEPT} if include_kept else {Status.ORPHANED}
    for run in run_sets():
        if only is not None and run.run_id not in only:
            continue
        if run.status in wanted and remove(run):
            removed.append(run)
        else:
            left.append(run)
    return removed, left
