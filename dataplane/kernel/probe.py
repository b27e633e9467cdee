"""Probes as real traffic: listeners in the destination namespaces, clients in the sources.

Listeners: one socket per listening port of the fabric (every `containerPort`, the ports of
hostNetwork pods and of external hosts), all served by one thread: a TCP (or SCTP)
connection is accepted and closed, a UDP datagram is echoed back (the simulator's UDP
sockets answer with a datagram).  ICMP echo is the kernel's own.

Clients: the first packet of a connection from a socket opened in the source namespace,
with `IP_RECVERR` so that an ICMP error reaches the socket with its type, code and sender
(`ip(7)`, "IP_RECVERR"); TCP `connect()`, UDP `send()` then `recv()`, ICMP through a ping
socket.  Every probe of a batch runs at once in one `poll()` loop, each with its own short
deadline, so a denied probe costs its timeout once per batch, not once per probe.

What the socket learns is turned into the verdict words (`verdict_of_icmp`,
`verdict_of_errno`): a reply is `delivered`, ECONNREFUSED or port unreachable `refused`,
silence `denied`, ENETUNREACH / EHOSTUNREACH `no-route` / `unreachable`, EMSGSIZE or
fragmentation needed `too-big`, time exceeded `ttl-exceeded`.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dataplane.kernel import netns
from dataplane.kernel.sysctls import NEIGHBOUR_FAILS
from topology.model import Protocol
from topology.scenario import Verdict

IP_TTL = 2  # the cmsg type of IP_RECVTTL's answer
IP_MTU_DISCOVER = 10
IP_RECVERR = 11
IP_RECVTTL = 12
IP_MTU = 14
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_DO = 2
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
ICMP_ERRORS = (3, 11, 12)  # destination unreachable, time exceeded, parameter problem
DEFAULT_TIMEOUT = (
    0.5  # seconds of silence that make a probe `denied` (but see run_jobs)
)
RECHECK = 0.1  # seconds between looks at the neighbour tables while ARP is under way
UDP_PAYLOAD = b"dataplane probe\n"  # what the simulator's UDP probe carries
DNS_PORT = (
    53  # ... except to port 53, where it is a DNS query (dataplane.dns.PROBE_QUERY)
)
PING_DATA = 56
HEADERS = {Protocol.TCP: 40, Protocol.UDP: 28, Protocol.ICMP: 28, Protocol.SCTP: 32}

ICMP_NAMES = {
    (3, 0): "net unreachable",
    (3, 1): "host unreachable",
    (3, 2): "protocol unreachable",
    (3, 3): "port unreachable",
    (3, 4): "fragmentation needed",
    (3, 9): "net administratively prohibited",
    (3, 10): "host administratively prohibited",
    (3, 13): "communication administratively prohibited",
    (11, 0): "time to live exceeded",
    (11, 1): "fragment reassembly time exceeded",
}


def verdict_of_icmp(type_: int, code: int) -> Verdict:
    """What an ICMP error means, in verdict words.

    >>> verdict_of_icmp(11, 0), verdict_of_icmp(3, 4), verdict_of_icmp(3, 1)
    (<Verdict.TTL_EXCEEDED: 'ttl-exceeded'>, <Verdict.TOO_BIG: 'too-big'>, <Verdict.UNREACHABLE: 'unreachable'>)
    """
    if type_ == 11:
        return Verdict.TTL_EXCEEDED if code == 0 else Verdict.DROPPED
    if type_ == 3:
        if code == 0:
            return Verdict.NO_ROUTE
        if code == 4:
            return Verdict.TOO_BIG
        if code in (2, 3, 9, 10, 13):  # nothing there, or a REJECT rule
            return Verdict.REFUSED
        return Verdict.UNREACHABLE
    return Verdict.DROPPED


def verdict_of_errno(code: int) -> Verdict:
    """What a socket error means, in verdict words.

    >>> verdict_of_errno(errno.ECONNREFUSED), verdict_of_errno(errno.ENETUNREACH)
    (<Verdict.REFUSED: 'refused'>, <Verdict.NO_ROUTE: 'no-route'>)
    """
    return {
        errno.ECONNREFUSED: Verdict.REFUSED,
        errno.ENETUNREACH: Verdict.NO_ROUTE,
        errno.EHOSTUNREACH: Verdict.UNREACHABLE,
        errno.EMSGSIZE: Verdict.TOO_BIG,
        errno.EPERM: Verdict.DENIED,  # a netfilter drop of a locally sent packet
        # a broadcast destination without SO_BROADCAST (dataplane.addrtype)
        errno.EACCES: Verdict.DROPPED,
        errno.ETIMEDOUT: Verdict.DENIED,
        # a blackhole route (fib_props: RTN_BLACKHOLE is -EINVAL), the simulator's
        # no-route with EINVAL (Stack.output; dataplane.kernel.routes reads it so too)
        errno.EINVAL: Verdict.NO_ROUTE,
    }.get(code, Verdict.DROPPED)


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One probe: from a kernel namespace to an address, as the simulator sends it."""

    netns: str
    protocol: Protocol
    dst: str
    dport: int = 0
    ttl: int = 64
    size: int | None = None  # IP total length
    df: bool | None = None  # None: the simulator's default (TCP and SCTP set DF)


@dataclass(frozen=True, slots=True)
class KernelVerdict:
    """What the kernel said; `verdict` None when it cannot say (`detail` tells why).

    `answer_from` and `answer_ttl`: the source and the TTL on arrival of what answered
    the client (a reply datagram, an echo reply, an ICMP error), where a socket can
    tell ("" and 0 where it cannot: a TCP handshake, silence, a local error);
    `dns_answer`: what the name of a probe by DNS name resolved to."""

    verdict: Verdict | None
    detail: str
    seconds: float = 0.0
    sport: int = 0
    answer_from: str = ""
    answer_ttl: int = 0
    # a probe by DNS name: the addresses the name resolved to (empty: it did not)
    dns_answer: tuple[str, ...] = ()


def ttl_of(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The TTL an `IP_RECVTTL` socket was told in a message's ancillary data (0: none)."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_TTL and len(data) >= 4:
            return int(struct.unpack_from("=i", data)[0])
    return 0


@dataclass(frozen=True, slots=True)
class ErrQueue:
    """One `sock_extended_err` from the socket's error queue."""

    errno: int
    origin: int
    type: int
    code: int
    info: int
    offender: str
    ttl: int = 0  # the ICMP error's TTL on arrival (IP_RECVTTL)

    def verdict(self) -> KernelVerdict:
        if self.origin == SO_EE_ORIGIN_ICMP:
            name = ICMP_NAMES.get(
                (self.type, self.code), f"type {self.type} code {self.code}"
            )
            mtu = f", mtu {self.info}" if (self.type, self.code) == (3, 4) else ""
            return KernelVerdict(
                verdict_of_icmp(self.type, self.code),
                f"ICMP {name}{mtu} from {self.offender}",
                answer_from=self.offender,
                answer_ttl=self.ttl,
            )
        text = os.strerror(self.errno)
        return KernelVerdict(
            verdict_of_errno(self.errno),
            f"local error {errno.errorcode.get(self.errno, self.errno)} "
            f"({text}{f', mtu={self.info}' if self.info else ''})",
        )


def read_errqueue(sock: socket.socket) -> ErrQueue | None:
    """The first error of the socket's error queue (`recvmsg(MSG_ERRQUEUE)`), or None.

    ICMP messages that are advice, not errors, are passed over, as `ping` does: a
    redirect (a router telling an on-link sender of a better next hop, which the routed
    mode's gateway sends a node for another node's pod) or a source quench.
    """
    while True:
        try:
            _data, anc, _flags, _addr = sock.recvmsg(
                2048, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT
            )
        except OSError:  # nothing queued (EAGAIN), or nothing to read
            return None
        for level, kind, data in anc:
            if level == socket.IPPROTO_IP and kind == IP_RECVERR and len(data) >= 16:
                err, origin, type_, code, _pad, info, _data2 = struct.unpack_from(
                    "=IBBBBII", data
                )
                if origin == SO_EE_ORIGIN_ICMP and type_ not in ICMP_ERRORS:
                    break  # advice: read the next entry
                offender = ""
                if len(data) >= 24:
                    offender = socket.inet_ntoa(data[20:24])
                return ErrQueue(err, origin, type_, code, info, offender, ttl_of(anc))
        else:
            return None


def has_sctp() -> bool:
    """Whether this kernel speaks SCTP (the module may be missing or blacklisted)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


# -- listeners -------------------------------------------------------------------------------
class Listeners:
    """Every listening socket of a built cluster, served by one thread."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.sockets: list[socket.socket] = []
        # what each server saw: (kernel netns, protocol, local port, peer port, peer
        # address) -> for UDP, the datagram's TTL on arrival (0: not known)
        self.seen: dict[tuple[str, Protocol, int, int, str], int] = {}
        self._wake_r, self._wake_w = os.pipe()
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread: threading.Thread | None = None
        self._stop = False

    def listen(
        self,
        kernel_ns: str,
        protocol: Protocol,
        port: int,
        app: Callable[[bytes], bytes | None] | None = None,
        bind: str = "0.0.0.0",
    ) -> bool:
        """Open a listener for `port`/`protocol` in `kernel_ns` (from the calling thread);
        False when this kernel cannot (SCTP without the module).  A UDP listener echoes
        each datagram, or sends what `app` answers to it (None: echo).  It is bound to
        the wildcard address, as agnhost's servers are, unless `bind` names one."""
        if protocol is Protocol.SCTP and not has_sctp():
            return False
        with netns.inside(kernel_ns):
            if protocol is Protocol.UDP:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            elif protocol is Protocol.SCTP:
                s = socket.socket(
                    socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP
                )
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setblocking(False)
        s.bind((bind, port))
        if protocol is not Protocol.UDP:
            s.listen(128)
        else:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        self.sockets.append(s)
        self.selector.register(
            s, selectors.EVENT_READ, (protocol, app, kernel_ns, port)
        )
        return True

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._serve, name="dataplane-listeners", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            for key, _mask in self.selector.select(timeout=1.0):
                if key.data is None:
                    return
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                protocol, app, kernel_ns, port = key.data
                try:
                    if protocol is Protocol.UDP:
                        data, anc, _flags, addr = sock.recvmsg(65535, 64)
                        self.seen[(kernel_ns, protocol, port, addr[1], addr[0])] = (
                            ttl_of(anc)
                        )
                        reply = app(data) if app is not None else None
                        sock.sendto(data if reply is None else reply, addr)
                    else:
                        conn, addr = sock.accept()
                        self.seen[(kernel_ns, protocol, port, addr[1], addr[0])] = 0
                        conn.close()
                except OSError:
                    continue

    def close(self) -> None:
        self._stop = True
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        for s in self.sockets:
            s.close()
        self.sockets.clear()
        self.selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


# -- jobs --------------------------------------------------------------------------------
class Job:
    """Something the poll loop runs: opened, started, fed events until it has a result."""

    result: KernelVerdict | None = None
    started: float = 0.0
    sport: int = 0

    def fds(self) -> list[tuple[int, int]]:
        """The descriptors to watch, with their poll masks."""
        return []

    def start(self) -> None:
        self.started = time.perf_counter()

    def on_event(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def flow(self) -> tuple[str, str, int, str, int] | None:
        """The connection it will open (saddr, l4proto, sport, daddr, dport), if known."""
        return None

    def deadline(self, timeout: float) -> float:
        """When silence becomes the answer."""
        return self.started + timeout

    def timed_out(self, timeout: float) -> None:
        self.finish(Verdict.DENIED, f"no answer within {timeout:g} s")

    def close(self) -> None:
        return None

    def finish(
        self, verdict: Verdict | None, detail: str, source: str = "", ttl: int = 0
    ) -> None:
        """The result; `source` and `ttl`: the answer's, where the socket saw them."""
        if self.result is None:
            took = time.perf_counter() - self.started if self.started else 0.0
            self.result = KernelVerdict(verdict, detail, took, self.sport, source, ttl)


def _df(spec: ProbeSpec) -> bool:
    if spec.df is not None:
        return spec.df
    return spec.protocol in (Protocol.TCP, Protocol.SCTP)


def _payload(spec: ProbeSpec) -> bytes:
    if spec.protocol is Protocol.ICMP:
        data = PING_DATA if spec.size is None else spec.size - HEADERS[Protocol.ICMP]
        return struct.pack("!BBHHH", 8, 0, 0, 0, 1) + bytes(max(data, 0))
    if spec.size is not None:
        return bytes(max(spec.size - HEADERS[spec.protocol], 0))
    if spec.dport == DNS_PORT:
        from dataplane.dns import PROBE_QUERY

        return PROBE_QUERY.to_bytes()
    return UDP_PAYLOAD


SOCKET_KINDS = {
    Protocol.TCP: (socket.SOCK_STREAM, 0),
    Protocol.UDP: (socket.SOCK_DGRAM, 0),
    Protocol.ICMP: (socket.SOCK_DGRAM, socket.IPPROTO_ICMP),  # a ping socket
    Protocol.SCTP: (socket.SOCK_STREAM, socket.IPPROTO_SCTP),
}


def source_address(kernel_ns: str, dst: str) -> tuple[str, int] | None:
    """The source address and path MTU the kernel of `kernel_ns` picks for `dst` (a UDP
    `connect()` routes without sending anything); None when there is no route."""
    with netns.inside(kernel_ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        try:
            s.connect((dst, 9))
        except OSError:
            return None
        return s.getsockname()[0], s.getsockopt(socket.IPPROTO_IP, IP_MTU)


class Client(Job):
    """A probe: the first packet of a connection from a socket in the source namespace."""

    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec
        self.sock: socket.socket | None = None
        self.src: str | None = None  # the source address the kernel will use
        if spec.protocol is Protocol.TCP and spec.size is not None:
            self.finish(
                None, "not comparable: a TCP socket cannot put a payload on its SYN"
            )
            return
        if spec.protocol is Protocol.SCTP and not has_sctp():
            self.finish(
                None,
                "not comparable: this kernel has no SCTP "
                "(socket(IPPROTO_SCTP): Protocol not supported)",
            )
            return
        kind, proto = SOCKET_KINDS[spec.protocol]
        with netns.inside(spec.netns):
            s = socket.socket(socket.AF_INET, kind, proto)
        self.sock = s
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, spec.ttl)
        pmtu = IP_PMTUDISC_DO if _df(spec) else IP_PMTUDISC_DONT
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, pmtu)
        if spec.protocol in (Protocol.TCP, Protocol.SCTP):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.bind(("0.0.0.0", 0))
        self.sport = s.getsockname()[1]
        found = source_address(spec.netns, spec.dst)
        self.src = found[0] if found else None

    def mark(self, tos: int) -> bool:
        """Send with this TOS byte (`IP_TOS`: dataplane.kernel.capture tells the probe's
        frames by it); False when there is no socket to mark."""
        if self.sock is None or self.result is not None:
            return False
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        return True

    def flow(self) -> tuple[str, str, int, str, int] | None:
        spec = self.spec
        if self.src is None or self.sock is None or spec.protocol is Protocol.ICMP:
            return None
        return (self.src, spec.protocol.value.lower(), self.sport, spec.dst, spec.dport)

    def fds(self) -> list[tuple[int, int]]:
        if self.sock is None or self.result is not None:
            return []
        mask = select.POLLIN | select.POLLERR
        if self.spec.protocol in (Protocol.TCP, Protocol.SCTP):
            mask |= select.POLLOUT  # connect() completes: writable
        return [(self.sock.fileno(), mask)]

    def start(self) -> None:
        """connect() for TCP and SCTP, a datagram, or an echo request."""
        super().start()
        s, spec = self.sock, self.spec
        if s is None or self.result is not None:
            return
        try:
            if spec.protocol in (Protocol.TCP, Protocol.SCTP):
                code = s.connect_ex((spec.dst, spec.dport))
                if code not in (0, errno.EINPROGRESS):
                    self._local_failure(code)
            elif spec.protocol is Protocol.UDP:
                s.connect((spec.dst, spec.dport))
                s.send(_payload(spec))
            else:
                s.sendto(_payload(spec), (spec.dst, 0))
                self.sport = s.getsockname()[1]  # the echo id the ping socket got
        except OSError as err:
            self._local_failure(err.errno or 0)

    def _local_failure(self, code: int) -> None:
        assert self.sock is not None
        queued = read_errqueue(self.sock)
        if queued is not None:
            v = queued.verdict()
            self.finish(v.verdict, v.detail, v.answer_from, v.answer_ttl)
            return
        name = errno.errorcode.get(code, str(code))
        self.finish(verdict_of_errno(code), f"local error {name} ({os.strerror(code)})")

    def on_event(self, fd: int, events: int) -> None:
        """The socket is readable, writable or has an error: what does it say?"""
        s, spec = self.sock, self.spec
        assert s is not None
        queued = read_errqueue(s)
        if queued is not None:
            v = queued.verdict()
            self.finish(v.verdict, v.detail, v.answer_from, v.answer_ttl)
            return
        if spec.protocol in (Protocol.TCP, Protocol.SCTP):
            code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            peer = f"{spec.dst}:{spec.dport}"
            if code == 0 and events & select.POLLOUT:
                what = "SYN-ACK" if spec.protocol is Protocol.TCP else "INIT-ACK"
                self.finish(Verdict.DELIVERED, f"{what} from {peer}: connected")
            elif code == errno.ECONNREFUSED:
                what = "RST" if spec.protocol is Protocol.TCP else "ABORT"
                self.finish(Verdict.REFUSED, f"{what} from {peer}: ECONNREFUSED")
            elif code:
                self._local_failure(code)
            return
        try:
            data, anc, _flags, addr = s.recvmsg(65535, 64)
        except BlockingIOError:
            return
        except OSError as err:
            self._local_failure(err.errno or 0)
            return
        source, ttl = addr[0] if addr else spec.dst, ttl_of(anc)
        if spec.protocol is Protocol.ICMP:
            if data[:1] == b"\x00":
                self.finish(Verdict.DELIVERED, f"echo reply from {source}", source, ttl)
            return
        self.finish(
            Verdict.DELIVERED,
            f"datagram of {len(data)} bytes back from {source}:{spec.dport}",
            source,
            ttl,
        )

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def run_jobs(
    jobs: Sequence[Job],
    timeout: float = DEFAULT_TIMEOUT,
    resolving: Callable[[], bool] = lambda: False,
) -> list[KernelVerdict]:
    """Start every job at once and wait until each has a result or its deadline: silence
    for `timeout` is `denied`, unless the kernel is still resolving a neighbour then
    (`resolving`: an INCOMPLETE entry somewhere): an unanswered one fails after
    `NEIGHBOUR_FAILS` (3 s at the default sysctls) and only then sends its "host
    unreachable", so the deadline moves on while one is resolving, up to that time,
    and `timeout` more once none is.  Every job is closed on the way out."""
    wait = timeout  # the silence that is `denied`, moved on while ARP is under way
    longest = timeout + NEIGHBOUR_FAILS
    waited_for_arp = False
    poller = select.poll()
    owner: dict[int, Job] = {}
    watched: dict[int, list[int]] = {}  # id(job) -> its registered descriptors

    def watch(job: Job) -> None:
        for fd in watched.pop(id(job), []):
            poller.unregister(fd)
            del owner[fd]
        if job.result is not None:
            return
        fds = job.fds()
        for fd, mask in fds:
            poller.register(fd, mask)
            owner[fd] = job
        watched[id(job)] = [fd for fd, _mask in fds]

    try:
        for job in jobs:
            job.start()
            watch(job)
        while owner:
            pending = {id(j): j for j in owner.values()}.values()
            now = time.perf_counter()
            deadline = min(j.deadline(wait) for j in pending)
            if now >= deadline:
                if wait < longest and resolving():
                    wait, waited_for_arp = min(longest, wait + RECHECK), True
                    continue
                if waited_for_arp:  # the neighbour failed: its error is on its way
                    wait, waited_for_arp = wait + timeout, False
                    continue
                for job in list(pending):
                    if now >= job.deadline(wait):
                        job.timed_out(wait)
                        watch(job)
                continue
            for fd, events in poller.poll(max(1, int((deadline - now) * 1000) + 1)):
                ready = owner.get(fd)
                if ready is not None:
                    ready.on_event(fd, events)
                    watch(ready)
        return [j.result or KernelVerdict(None, "no result") for j in jobs]
    finally:
        for job in jobs:
            job.close()
