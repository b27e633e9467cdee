"""kube-dns on the kernel: a CoreDNS stand-in behind the real sockets, and a pod's resolver.

On a Docker host the server is the upstream of the Engine's embedded DNS instead (every
name NXDOMAIN), and the resolver a container's (`resolver`).

The server answers, on the CoreDNS pod's own UDP port 53, what CoreDNS's `kubernetes`
plugin answers for an A query: `SVC.NS.svc.DOMAIN` is the Service's ClusterIP (a headless
Service's ready selected pods, sorted by name; no pod: no record), `A-B-C-D.NS.pod.DOMAIN`
is that address, anything else NXDOMAIN (the cluster has no upstream); any other query
type gets an empty answer.  A datagram that is not a DNS query is echoed, like every other
UDP listener.

The resolver is glibc's `res_search` with kubelet's /etc/resolv.conf for `dnsPolicy:
ClusterFirst` (nameserver: kube-dns's ClusterIP; search NS.svc.DOMAIN svc.DOMAIN DOMAIN;
ndots:5): each candidate name is one A query over UDP from the pod's namespace, through
kube-proxy's DNAT and the policies like any packet; NXDOMAIN or an empty answer goes on to
the next name; a query that gets no answer, or an error, ends the probe with that verdict.
"""

from __future__ import annotations

import select
import socket
import struct
import time
import zlib
from dataclasses import replace
from ipaddress import IPv4Address

from dataplane.dns import DOCKER_RESOLV_CONF
from dataplane.kernel import netns
from dataplane.kernel.probe import IP_RECVERR, Client, Job, ProbeSpec, read_errqueue
from dataplane.kernel.services import selected_pods
from topology.ipam import dns_ip
from topology.model import Cluster, Pod, Service
from topology.scenario import Verdict

NOERROR, NXDOMAIN = 0, 3
RCODES = {
    0: "no A record",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    5: "REFUSED",
}  # RFC 1035 4.1.1
QTYPE_A = 1
DNS_PORT = 53
NDOTS = 5


def encode_name(name: str) -> bytes:
    """A domain name in wire form.

    >>> encode_name("api.shop.")
    b'\\x03api\\x04shop\\x00'
    """
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def query(qname: str, ident: int) -> bytes:
    """An A query with recursion desired."""
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + encode_name(qname)
        + struct.pack("!HH", QTYPE_A, 1)
    )


def parse_question(msg: bytes) -> tuple[int, int, str, int, int] | None:
    """(id, flags, qname, qtype, end of the question) of a one-question message."""
    if len(msg) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", msg[:6])
    if qdcount != 1:
        return None
    labels, off = [], 12
    while off < len(msg):
        n = msg[off]
        off += 1
        if n == 0:
            break
        if n > 63 or off + n > len(msg):
            return None
        labels.append(msg[off : off + n].decode("ascii", "replace"))
        off += n
    else:
        return None
    if off + 4 > len(msg):
        return None
    qtype = struct.unpack("!H", msg[off : off + 2])[0]
    return ident, flags, ".".join(labels) + ".", qtype, off + 4


def records(cluster: Cluster, qname: str) -> tuple[int, list[str], Service | None]:
    """CoreDNS's answer for an A query: (rcode, addresses, the Service it names); on a
    Docker host the embedded DNS's upstream's, which knows none of the scenario's names
    (`docker_live`: the names the Engine knows it answers itself)."""
    if cluster.docker is not None:
        return NXDOMAIN, [], None
    name = qname.rstrip(".").lower()
    domain = cluster.config.cluster_domain.lower()
    if not name.endswith("." + domain):
        return NXDOMAIN, [], None
    labels = name[: -len(domain) - 1].split(".")
    if len(labels) == 3 and labels[2] == "svc":
        svc = cluster.services.get(f"{labels[1]}/{labels[0]}")
        if svc is None:
            return NXDOMAIN, [], None
        if svc.cluster_ip is not None:
            return NOERROR, [str(svc.cluster_ip)], svc
        return NOERROR, [str(p.ip) for p in selected_pods(cluster, svc)], svc
    if len(labels) == 3 and labels[2] == "pod" and labels[1] in cluster.namespaces:
        try:
            return NOERROR, [str(IPv4Address(labels[0].replace("-", ".")))], None
        except ValueError:
            return NXDOMAIN, [], None
    return NXDOMAIN, [], None


def answer(cluster: Cluster, msg: bytes) -> bytes | None:
    """The server's reply to a datagram, or None when it is not a DNS query."""
    q = parse_question(msg)
    if q is None or q[1] & 0x8000:
        return None
    ident, flags, qname, qtype, end = q
    rcode, addrs = NOERROR, list[str]()
    if qtype == QTYPE_A:
        rcode, addrs, _svc = records(cluster, qname)
    head = struct.pack(
        "!HHHHHH",
        ident,
        0x8400 | (flags & 0x0100) | 0x0080 | rcode,
        1,
        len(addrs),
        0,
        0,
    )
    body = msg[12:end]
    for a in addrs:
        body += struct.pack("!HHHIH", 0xC00C, QTYPE_A, 1, 5, 4) + socket.inet_aton(a)
    return head + body


def parse_answer(msg: bytes, ident: int) -> tuple[int, list[str]] | None:
    """(rcode, A addresses) of a reply to query `ident`, or None if it is not one."""
    q = parse_question(msg)
    if q is None or q[0] != ident or not q[1] & 0x8000:
        return None
    rcode = q[1] & 0x000F
    ancount = struct.unpack("!H", msg[6:8])[0]
    off, addrs = q[4], []
    for _ in range(ancount):
        if off + 12 > len(msg):
            break
        if msg[off] & 0xC0 == 0xC0:
            off += 2
        else:
            while off < len(msg) and msg[off]:
                off += msg[off] + 1
            off += 1
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off : off + 10])
        off += 10
        if rtype == QTYPE_A and rdlen == 4:
            addrs.append(socket.inet_ntoa(msg[off : off + 4]))
        off += rdlen
    return rcode, addrs


def candidates(cluster: Cluster, pod: Pod, name: str) -> list[str]:
    """The absolute names res_search asks for, in order (search list, ndots:5)."""
    domain = cluster.config.cluster_domain
    search = (f"{pod.namespace}.svc.{domain}", f"svc.{domain}", domain)
    if name.endswith("."):
        return [name]
    searched = [f"{name}.{d}." for d in search]
    if name.count(".") >= NDOTS:
        return [f"{name}.", *searched]
    return [*searched, f"{name}."]


def nameserver(cluster: Cluster) -> str:
    return str(dns_ip(cluster.config.service_cidr))


def resolver(cluster: Cluster, pod: Pod, name: str) -> tuple[str, list[str]]:
    """The nameserver a probe asks and the names it asks for, in order: kube-dns with
    kubelet's search path, or on a Docker host the Engine's embedded DNS with a
    container's resolv.conf (`dataplane.dns.DOCKER_RESOLV_CONF`: no search, ndots:0)."""
    if cluster.docker is not None:
        conf = DOCKER_RESOLV_CONF
        return conf.nameserver, conf.candidates(name)
    return nameserver(cluster), candidates(cluster, pod, name)


class DnsProbe(Job):
    """A probe to a name: the DNS exchanges, then the connection to the first address.

    The connection's socket is opened (and can be pinned) before the lookup, to the
    address the model says the name has; if the real answer differs, it is reopened.
    """

    def __init__(
        self, cluster: Cluster, kernel_ns: str, pod: Pod, name: str, then: ProbeSpec
    ) -> None:
        self.kernel_ns = kernel_ns
        self.server, self.names = resolver(cluster, pod, name)
        self.answer: tuple[str, ...] = ()  # the addresses of the answer that resolved
        self.rcodes: list[str] = []  # each name's answer that did not resolve
        self.then = then
        self.client = Client(then)
        self.sock: socket.socket | None = None
        self.index = -1
        self.ident = 0
        self.stage_started = 0.0
        self.connecting = False
        self.sport = self.client.sport

    def flow(self) -> tuple[str, str, int, str, int] | None:
        return self.client.flow()

    def deadline(self, timeout: float) -> float:
        return self.stage_started + timeout

    def fds(self) -> list[tuple[int, int]]:
        if self.result is not None:
            return []
        if self.connecting:
            return self.client.fds()
        assert self.sock is not None
        return [(self.sock.fileno(), select.POLLIN | select.POLLERR)]

    def start(self) -> None:
        super().start()
        self._next_query()

    def _next_query(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.index += 1
        qname = self.names[self.index]
        with netns.inside(self.kernel_ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        self.sock = s
        self.ident = zlib.crc32(qname.encode()) & 0xFFFF
        self.stage_started = time.perf_counter()
        try:
            s.connect((self.server, DNS_PORT))
            s.send(query(qname, self.ident))
        except OSError:
            self._failed()

    def _failed(self) -> None:
        assert self.sock is not None
        queued = read_errqueue(self.sock)
        qname = self.names[self.index]
        if queued is not None:
            v = queued.verdict()
            self.finish(v.verdict, f"the DNS query for {qname} failed: {v.detail}")
        else:
            self.finish(Verdict.DROPPED, f"the DNS query for {qname} failed")

    def timed_out(self, timeout: float) -> None:
        what = (
            f"the DNS query for {self.names[self.index]}"
            if not self.connecting
            else "the connection"
        )
        self.finish(Verdict.DENIED, f"{what}: no answer within {timeout:g} s")

    def on_event(self, fd: int, events: int) -> None:
        if self.connecting:
            self.client.on_event(fd, events)
            if self.client.result is not None:
                r = self.client.result
                self.finish(
                    r.verdict,
                    f"{self.names[self.index]} -> {self.then.dst}: {r.detail}",
                )
            return
        assert self.sock is not None
        if read_errqueue(self.sock) is not None or events & select.POLLERR:
            self._failed()
            return
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self._failed()
            return
        got = parse_answer(data, self.ident)
        if got is None:
            return
        rcode, addrs = got
        if rcode == NOERROR and addrs:
            self.answer = tuple(addrs)
            # the address the model connects to when the answer holds it: Docker's
            # embedded DNS shuffles several (libnetwork resolver.go `shuffleAddr`), and
            # the answer is compared as a set (the part `DNS answer`)
            self._connect(self.then.dst if self.then.dst in addrs else addrs[0])
        elif self.index + 1 < len(self.names):
            self.rcodes.append(RCODES.get(rcode, f"rcode {rcode}"))
            self._next_query()
        else:
            self.rcodes.append(RCODES.get(rcode, f"rcode {rcode}"))
            self.finish(
                Verdict.NXDOMAIN,
                "NXDOMAIN or no A record for "
                + ", ".join(
                    f"{n} ({c})" for n, c in zip(self.names, self.rcodes, strict=True)
                ),
            )

    def _connect(self, addr: str) -> None:
        if addr != self.then.dst:
            self.client.close()
            self.then = replace(self.then, dst=addr)
            self.client = Client(self.then)
        self.connecting = True
        self.stage_started = time.perf_counter()
        self.client.start()
        if self.client.result is not None:
            r = self.client.result
            self.finish(r.verdict, f"{self.names[self.index]} -> {addr}: {r.detail}")

    def finish(
        self, verdict: Verdict | None, detail: str, source: str = "", ttl: int = 0
    ) -> None:
        """The result, with the addresses the name resolved to."""
        if self.result is None:
            super().finish(verdict, detail, source, ttl)
            assert self.result is not None
            self.result = replace(self.result, dns_answer=self.answer)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.client.close()
