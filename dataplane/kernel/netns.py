"""Named network namespaces on this machine, as `ip netns` makes them, without a fork.

A namespace is created the way iproute2's `ip netns add` does it (`unshare(CLONE_NEWNET)`,
then a bind mount of the new namespace on `/run/netns/NAME`), but by the calling *thread*
only, which goes straight back to where it was: `setns(2)` of a network namespace changes
the calling thread, never the process.  `inside(name)` runs a block in a namespace the same
way; a socket (or netlink socket) created there stays in that namespace for its whole life,
so one process can serve listeners and clients in many namespaces from one thread.

Every name starts with `PREFIX` (`dpv`) and the run's id, so that everything a run made can
be found and removed (`remove_all`), even after a crash; who made a run id, and whether
it has ended, is in its owner record (`dataplane.kernel.owner`).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import socket
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

PREFIX = "dpv"  # every namespace `dataplane verify` creates is named dpv<run id>-...
RUN_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
# dpv<pid in hex>[g<n>]-<short id>: the process that made it, and a retry counter
_RUN_ID = re.compile(rf"^({PREFIX}[0-9a-f]+(?:g[0-9]+)?)-")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _setns(fd: int) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


def _self_fd() -> int:
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def path_of(name: str) -> Path:
    return RUN_DIR / name


def _share_run_dir() -> None:
    """Make /run/netns a shared mount, as `ip netns add` does (lib/namespace.c)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    run = str(RUN_DIR).encode()
    if _libc.mount(b"", run, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    _check(_libc.mount(run, run, b"none", MS_BIND | MS_REC, None), "mount --bind")
    _check(
        _libc.mount(b"", run, b"none", MS_SHARED | MS_REC, None), "mount --make-shared"
    )


def create(name: str) -> None:
    """`ip netns add NAME`, by this thread alone; the thread ends where it started."""
    _share_run_dir()
    path = path_of(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    home = _self_fd()
    try:
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            src = b"/proc/thread-self/ns/net"
            _check(
                _libc.mount(src, str(path).encode(), b"none", MS_BIND, None), "mount"
            )
        finally:
            _setns(home)
    except OSError:
        os.unlink(path)
        raise
    finally:
        os.close(home)


def adopt(name: str, pid: int) -> None:
    """Name the network namespace of process `pid` (one another program made, such as a
    container of dockerd): a bind mount of `/proc/PID/ns/net` on `/run/netns/NAME`, as
    `ip netns attach NAME PID` does; `remove(name)` lets go of it."""
    _share_run_dir()
    path = path_of(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        src = f"/proc/{pid}/ns/net".encode()
        _check(_libc.mount(src, str(path).encode(), b"none", MS_BIND, None), "mount")
    except OSError:
        os.unlink(path)
        raise


def remove(name: str) -> None:
    """`ip netns del NAME`: the namespace goes once nothing else holds it."""
    path = path_of(name)
    _libc.umount2(str(path).encode(), MNT_DETACH)
    with suppress(FileNotFoundError):
        os.unlink(path)


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace `name`; always come back."""
    fd = os.open(path_of(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = _self_fd()
        try:  # a signal may stop the block anywhere, even before setns: go home
            _setns(fd)
            yield
        finally:
            _setns(home)
            os.close(home)
    finally:
        os.close(fd)


def _sysctl_path(key: str | tuple[str, ...]) -> Path:
    parts = key.split(".") if isinstance(key, str) else key
    return Path("/proc/sys", *parts)


def sysctl(key: str | tuple[str, ...], value: str | int) -> bool:
    """Write sysctl `key` (`net.ipv4.ip_forward`, or its parts when a device name has a
    dot) in the calling thread's namespace; False if it does not exist."""
    path = _sysctl_path(key)
    try:
        path.write_text(f"{value}\n")
    except FileNotFoundError:
        return False
    return True


def read_sysctl(key: str | tuple[str, ...]) -> str | None:
    try:
        return _sysctl_path(key).read_text().strip()
    except FileNotFoundError:
        return None


def proc_is_ours() -> bool:
    """Whether `/proc` is this process's PID namespace's (`/proc/self` names our pid).

    It is not in a PID namespace made without its own `/proc` (`unshare --pid --fork`
    alone): the programs run there see their own pids, which the `/proc` they are given
    does not know; the CNI plugins then fail to open their own network namespace
    (containernetworking/plugins `ns.GetCurrentNS`: `/proc/PID/task/TID/ns/net`)."""
    return os.readlink("/proc/self") == str(os.getpid())


def execute(
    name: str,
    argv: list[str],
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program in namespace `name` (`ip netns exec NAME ...`), with `env` as its
    whole environment if given; what it did, whatever its exit status.

    Where `/proc` is not this PID namespace's (`proc_is_ours`), the program gets one
    that is: `unshare --mount-proc` mounts it in a mount namespace of the program's own
    (private, as `ip netns exec`'s is a slave of ours: nothing reaches the host's)."""
    if not proc_is_ours():
        argv = ["unshare", "--mount-proc", "--", *argv]
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def run(name: str, argv: list[str], stdin: str | None = None) -> str:
    """Run a program in namespace `name` (`ip netns exec NAME ...`); its stdout."""
    proc = execute(name, argv, stdin)
    if proc.returncode != 0:
        raise OSError(
            errno.EIO,
            f"ip netns exec {name} {' '.join(argv)}: {proc.stderr.strip()}",
        )
    return proc.stdout


def listing(prefix: str = PREFIX) -> list[str]:
    """The namespaces whose name starts with `prefix`."""
    try:
        names = os.listdir(RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def run_id_of(name: str) -> str | None:
    """The run id a namespace name starts with, or None if it is not one of ours.

    >>> run_id_of("dpv1a2b-pod-default.a"), run_id_of("dpv1a2bg2-node-1"), run_id_of("x")
    ('dpv1a2b', 'dpv1a2bg2', None)
    """
    m = _RUN_ID.match(name)
    return m.group(1) if m else None


def run_ids() -> set[str]:
    """Every run id that has namespaces here."""
    return {r for n in listing() if (r := run_id_of(n)) is not None}


def remove_all(prefix: str) -> list[str]:
    """Remove every namespace whose name starts with `prefix`; the names removed."""
    names = listing(prefix)
    for name in names:
        remove(name)
    return names


SIOCETHTOOL = 0x8946
ETHTOOL_GLINK = 0x0000000A


def sync_link(sock: socket.socket, ifname: str) -> bool:
    """Ask `ifname` for its link state (`ethtool IFNAME`).

    The kernel handles a device's carrier change in its linkwatch work, up to a second
    later for a bridge; until then the device has no queue and drops what it is sent.
    ETHTOOL_GLINK runs that work for the device at once (`ethtool_op_get_link` calls
    `linkwatch_sync_dev`).  `sock` must be a socket of the device's namespace.
    """
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GLINK, 0))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
    ifreq += bytes(40 - len(ifreq))
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    except OSError:
        return False
    return bool(struct.unpack_from("II", value.raw)[1])


NETLINK_NETFILTER = 12
CT_FLUSH = (1 << 8) | 2  # NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
NLM_F_REQUEST_ACK = 0x1 | 0x4


def conntrack_socket() -> socket.socket:
    """A ctnetlink socket of the calling thread's namespace (open it `inside()`)."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)


def flush_conntrack(sock: socket.socket) -> None:
    """`conntrack -F` for IPv4 in the socket's namespace: a DELETE without a tuple."""
    msg = struct.pack("=IHHII", 20, CT_FLUSH, NLM_F_REQUEST_ACK, 1, 0)
    msg += struct.pack("=BBH", socket.AF_INET, 0, 0)  # struct nfgenmsg
    sock.send(msg)
    reply = sock.recv(4096)
    error = struct.unpack_from("=i", reply, 16)[0] if len(reply) >= 20 else 0
    if error < 0:
        raise OSError(-error, f"conntrack flush: {os.strerror(-error)}")


GC_THRESH3_DEFAULT = 1024  # net.ipv4.neigh.default.gc_thresh3 (ip-sysctl.rst)


def neighbour_table_limit() -> int:
    """The kernel's hard limit of learnt ARP entries, for all namespaces together
    (net.ipv4.neigh.default.gc_thresh3; only the initial namespace shows it)."""
    value = read_sysctl("net.ipv4.neigh.default.gc_thresh3")
    return int(value) if value is not None and value.isdigit() else GC_THRESH3_DEFAULT


def neighbour_overflows() -> int:
    """How often the kernel's ARP table refused a new entry since boot: the sum over CPUs
    of `table_fulls` in /proc/net/stat/arp_cache ("neighbour table overflow")."""
    try:
        lines = Path("/proc/net/stat/arp_cache").read_text().splitlines()
    except FileNotFoundError:
        return 0
    column = lines[0].split().index("table_fulls")
    return sum(int(line.split()[column], 16) for line in lines[1:])
