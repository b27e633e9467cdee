"""kube-dns: the DNS message, the CoreDNS server behind Service `kube-system/kube-dns`, and
the stub resolver of a pod, so that a probe to a name walks the real DNS exchange.

- `DNSMessage` is the application payload of the query and of the answer (`Packet.app`);
  its wire form is built with scapy's DNS layer, lazily and once per distinct message.
- CoreDNS (the `kubernetes` plugin, `pods insecure`) answers A queries for
  `SVC.NS.svc.DOMAIN` (the ClusterIP; for a headless Service the addresses of its ready
  selected pods, NODATA when there is none) and `A-B-C-D.NS.pod.DOMAIN`; every other name is
  NXDOMAIN (it would be forwarded upstream, and the simulated cluster has no upstream).  It
  is registered in `dataplane.sockets.APPS` under the owner of the coredns pod's socket, its
  container name `coredns`.
- The resolver is glibc's `res_search` with the `/etc/resolv.conf` kubelet writes for
  `dnsPolicy: ClusterFirst`: `nameserver <kube-dns ClusterIP>`, `search NS.svc.DOMAIN
  svc.DOMAIN DOMAIN`, `options ndots:5`.  A name with fewer than 5 dots is tried with each
  search domain first and then as it is; a name ending in `.` only as it is.  Each try is
  one A query over UDP from port 50000 + i; NXDOMAIN and NODATA go on to the next name.

`resolve_by_dns` is the first phase of `Simulator.probe` to a name: the queries leave the
pod, meet kube-proxy's DNAT to the CoreDNS pod and the egress policies like any packet, and
the answer comes back the same way; the trace holds both phases in order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from functools import lru_cache
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from dataplane.dns_records import NOERROR, NXDOMAIN, SERVFAIL, records
from dataplane.emission import Out
from dataplane.netns import Netns, Socket
from dataplane.packet import IP, IPPROTO_UDP, UDP, Packet, scapy_ready
from dataplane.sockets import APPS
from dataplane.trace import DropReason, Hop, Trace, Verdict
from dataplane.walker import Client, WalkState
from topology.docker import EMBEDDED_DNS
from topology.dockercluster import serves_dns
from topology.endpoint import Endpoint, EndpointKind, pod_text
from topology.errors import TopologyError
from topology.ipam import dns_ip
from topology.model import Cluster, Pod
from topology.workload import COREDNS

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.sim import Simulator
    from dataplane.walker import Walker

DNS_PORT = 53
RESOLVER_PORT = 50000  # source port of the first query; the i-th uses RESOLVER_PORT + i
NDOTS = 5
TTL = 5  # the kubernetes plugin's default `ttl`
RCODES = {NOERROR: "NOERROR", SERVFAIL: "SERVFAIL", NXDOMAIN: "NXDOMAIN"}
# The event of the resolver's hops that open the lookup and then the connection.
PHASE = "phase"
CONNECT = "connect to"


@dataclass(frozen=True, slots=True)
class DNSMessage:
    """One DNS query or answer with a single question; `qname` is absolute (ends in `.`)."""

    id: int
    qname: str
    qtype: str = "A"
    response: bool = False
    rcode: int = NOERROR
    answers: tuple[str, ...] = ()  # A record addresses
    ttl: int = TTL

    def to_bytes(self) -> bytes:
        return _wire(self)

    def reply(self, rcode: int, answers: tuple[str, ...] = ()) -> DNSMessage:
        """The answer to this query (same id and question)."""
        return replace(self, response=True, rcode=rcode, answers=answers)

    @property
    def resolved(self) -> bool:
        return self.response and self.rcode == NOERROR and bool(self.answers)

    def __str__(self) -> str:
        if not self.response:
            return f"DNS query {self.id:#06x} {self.qtype}? {self.qname}"
        if self.rcode != NOERROR:
            return f"DNS {RCODES.get(self.rcode, self.rcode)} {self.qname}"
        if not self.answers:
            return f"DNS NOERROR {self.qname} (no {self.qtype} record)"
        return f"DNS answer {self.qname} A {' '.join(self.answers)}"

    @classmethod
    def from_bytes(cls, data: bytes) -> DNSMessage | None:
        """Parse a one-question DNS message (a crafted or replayed datagram), or None."""
        scapy_ready()
        from scapy.layers.dns import DNS

        try:
            msg = DNS(data)
            question = msg.qd[0]
            qname = question.qname.decode()
            qtype = question.sprintf("%qtype%")
            answers = tuple(str(rr.rdata) for rr in (msg.an or []) if rr.type == 1)
        except Exception:
            return None
        return cls(msg.id, qname, qtype, bool(msg.qr), int(msg.rcode), answers)


@lru_cache(maxsize=1024)
def _wire(msg: DNSMessage) -> bytes:
    scapy_ready()
    from scapy.layers.dns import DNS, DNSQR, DNSRR

    question = DNSQR(qname=msg.qname, qtype=msg.qtype)
    if not msg.response:
        return bytes(DNS(id=msg.id, rd=1, qd=question))
    records = [
        DNSRR(rrname=msg.qname, type="A", ttl=msg.ttl, rdata=a) for a in msg.answers
    ]
    answer = DNS(
        id=msg.id, qr=1, aa=1, rd=1, ra=1, rcode=msg.rcode, qd=question, an=records
    )
    return bytes(answer)


# -- CoreDNS ---------------------------------------------------------------------------


def coredns(w: Walker, ns: Netns, sock: Socket, pkt: Packet) -> DNSMessage | None:
    """The CoreDNS application: the answer to a DNS query datagram (None: not DNS)."""
    query = (
        pkt.app if isinstance(pkt.app, DNSMessage) else DNSMessage.from_bytes(pkt.data)
    )
    if query is None or query.response:
        return None
    if query.qtype != "A":
        return query.reply(NOERROR)  # only A records are modelled: NODATA
    found = records(w.cluster, query.qname)
    return query.reply(found.rcode, found.addresses)


APPS[COREDNS] = coredns


# -- the resolver ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvConf:
    """A pod's /etc/resolv.conf as kubelet writes it for dnsPolicy ClusterFirst."""

    nameserver: str
    search: tuple[str, ...]
    ndots: int = NDOTS

    def __str__(self) -> str:
        return (
            f"nameserver {self.nameserver}; search {' '.join(self.search)}; "
            f"options ndots:{self.ndots}"
        )

    def candidates(self, name: str) -> list[str]:
        """The absolute names the resolver asks for, in order (res_search).

        >>> conf = ResolvConf("10.96.0.10", ("x.svc.cluster.local", "cluster.local"))
        >>> conf.candidates("web")
        ['web.x.svc.cluster.local.', 'web.cluster.local.', 'web.']
        >>> conf.candidates("web.x.svc.cluster.local.")
        ['web.x.svc.cluster.local.']
        """
        if name.endswith("."):
            return [name]
        searched = [f"{name}.{domain}." for domain in self.search]
        if name.count(".") >= self.ndots:
            return [f"{name}.", *searched]
        return [*searched, f"{name}."]


def resolv_conf(cluster: Cluster, pod: Pod) -> ResolvConf:
    """The resolv.conf of `pod` (kubelet: --cluster-dns is kube-dns's ClusterIP)."""
    domain = cluster.config.cluster_domain
    search = (f"{pod.namespace}.svc.{domain}", f"svc.{domain}", domain)
    return ResolvConf(str(dns_ip(cluster.config.service_cidr)), search)


def answered(cluster: Cluster, pod: Pod, name: str) -> str | None:
    """The first name of `pod`'s search list that CoreDNS answers with an address (what
    `getent hosts NAME` in the pod would find), or None; no packet is walked."""
    for qname in resolv_conf(cluster, pod).candidates(name):
        if records(cluster, qname).addresses:
            return qname
    return None


def query_id(qname: str) -> int:
    """A deterministic DNS id (a real resolver picks it at random)."""
    return zlib.crc32(qname.encode()) & 0xFFFF


# What a UDP probe to port 53 carries: a real query (`dig probe. A`), so that the server
# and Wireshark see a DNS message, not a malformed one.  `probe.` is outside every cluster
# domain: CoreDNS answers NXDOMAIN, which still is a datagram back.
PROBE_QUERY = DNSMessage(query_id("probe."), "probe.")


def note(trace: Trace, ns: Netns, event: str, detail: str) -> None:
    """A hop of the resolver itself (no packet moves)."""
    trace.hops.append(Hop(len(trace.hops) + 1, ns.node, ns.label, "", event, detail))


def resolve_by_dns(
    sim: Simulator, src: Endpoint, dst: Endpoint, trace: Trace, state: WalkState
) -> Endpoint | None:
    """Walk the DNS exchange(s) for the name `dst` from pod `src` into `trace`.

    Returns what the name resolved to (a Service, a headless Service's first pod, or an
    address), ready for the connection phase; or None when the probe ends here: the name
    does not resolve (`nxdomain`) or an exchange failed (its verdict is the probe's).
    """
    assert dst.name is not None
    pod, cluster = src.pod, sim.cluster
    if pod is None or pod.host_network:
        raise TopologyError(
            f"endpoint {dst.text!r}: a DNS name is resolved through kube-dns by a pod "
            f"on the pod network (dnsPolicy ClusterFirst); {src.text!r} uses its "
            "node's resolver (use such a pod as source, or svc/NS/NAME as destination)"
        )
    docker_conf = _docker_conf(cluster, src, dst)
    if not cluster.config.dns and docker_conf is None:
        raise TopologyError(
            f"endpoint {dst.text!r}: the cluster runs no kube-dns (cluster.dns is "
            "false); use svc/NS/NAME or an address"
        )
    ns = sim.netns_of(src)
    conf = docker_conf or resolv_conf(cluster, pod)
    names = conf.candidates(dst.name)
    note(
        trace,
        ns,
        PHASE,
        f"DNS lookup of {dst.name!r}: /etc/resolv.conf: {conf}; "
        f"A queries in order: {', '.join(names)}",
    )
    for i, qname in enumerate(names):
        port = RESOLVER_PORT + i
        query = DNSMessage(query_id(qname), qname)
        pkt = Packet(
            ip=IP("0.0.0.0", conf.nameserver, IPPROTO_UDP),
            l4=UDP(port, DNS_PORT),
            app=query,
        )
        client = Client(ns.id, IPPROTO_UDP, port, conf.nameserver, DNS_PORT)
        sim.walk(trace.title, [Out(pkt, ns.id)], client, state, trace)
        if trace.verdict is not Verdict.DELIVERED:
            trace.explanation = f"the DNS query for {qname} failed: {trace.explanation}"
            return None
        answer = _answer_in(trace, ns, port)
        trace.verdict, trace.reason, trace.explanation = None, None, ""
        trace.policy = trace.endpoint = None
        if answer.resolved:
            return _resolved(cluster, trace, ns, dst, qname, answer)
        more = "the next name" if i + 1 < len(names) else "no name is left"
        note(trace, ns, "dns", f"{answer}: {more}")
    trace.verdict, trace.reason = Verdict.NXDOMAIN, DropReason.NXDOMAIN
    trace.explanation = (
        f"{dst.name!r} does not resolve: NXDOMAIN (or no A record) for "
        f"{', '.join(names)}{_pod_hint(cluster, dst.name)}"
    )
    return None


def _docker_conf(cluster: Cluster, src: Endpoint, dst: Endpoint) -> ResolvConf | None:
    """A container's resolv.conf for Docker's embedded DNS (`dataplane.docker_dns`);
    an error for a container on docker0 only, whose resolver is the host's."""
    if cluster.docker is None:
        return None
    assert src.pod is not None
    if not serves_dns(cluster.docker, src.pod):
        raise TopologyError(
            f"endpoint {dst.text!r}: {src.text!r} is on the default bridge only, which"
            " has no embedded DNS (its resolv.conf is the host's, and the simulated"
            " hosts have no upstream resolver); attach it to a user-defined network"
        )
    # sandbox_dns_unix.go: `nameserver 127.0.0.11`, `options ndots:0`, no search domains
    return ResolvConf(str(EMBEDDED_DNS), (), ndots=0)


def _pod_hint(cluster: Cluster, name: str) -> str:
    """A note when the name is a pod's: a pod's name is not a DNS name in Kubernetes (the
    DNS specification gives pods only `A-B-C-D.NS.pod` names and, with a headless
    Service as `subdomain`, `HOSTNAME.SUBDOMAIN.NS.svc` names, which are not modelled)."""
    pods = [pod_text(p) for p in cluster.pods.values() if p.name == name.rstrip(".")]
    if not pods:
        return ""
    return (
        f" ({' and '.join(pods)} {'is a pod' if len(pods) == 1 else 'are pods'}, and a "
        f"pod's name is not a DNS name: write {pods[0]} to reach the pod)"
    )


def phases(trace: Trace) -> tuple[list[Hop], list[Hop] | None]:
    """The hops of a probe's DNS lookup and those of its connection (None when the probe
    ended in the lookup); a probe to an address has no lookup: `([], hops)`."""
    hops = trace.hops
    if not hops or hops[0].event != PHASE:
        return [], list(hops)
    for i, hop in enumerate(hops):
        if hop.event == PHASE and hop.detail.startswith(CONNECT):
            return hops[:i], hops[i + 1 :]
    return list(hops), None


def _answer_in(trace: Trace, ns: Netns, port: int) -> DNSMessage:
    """The answer the resolver's socket received (the last hop that handed it one)."""
    for hop in reversed(trace.hops):
        pkt = hop.packet
        if (
            pkt is not None
            and hop.netns == ns.label
            and isinstance(pkt.app, DNSMessage)
            and pkt.app.response
            and pkt.dport == port
        ):
            return pkt.app
    raise AssertionError("a delivered DNS exchange without an answer")


def _resolved(
    cluster: Cluster,
    trace: Trace,
    ns: Netns,
    dst: Endpoint,
    qname: str,
    answer: DNSMessage,
) -> Endpoint:
    ip = answer.answers[0]
    found = records(cluster, qname)
    text = dst.text
    if found.service is not None and found.service.cluster_ip is not None:
        what = f"Service {found.service.key}'s ClusterIP"
        ep = Endpoint(
            EndpointKind.SERVICE, service=found.service, ip=IPv4Address(ip), text=text
        )
    elif found.service is not None:
        first = found.pods[0]
        what = f"headless Service {found.service.key}: pod {first.key}"
        ep = Endpoint(
            EndpointKind.POD,
            pod=first,
            container=first.containers[0].name if first.containers else None,
            node=cluster.node(first.node),
            ip=first.ip,
            text=text,
        )
        trace.endpoint = first.key
    else:
        what = "an address"
        ep = Endpoint(EndpointKind.IP, ip=IPv4Address(ip), text=text)
    note(trace, ns, "dns", f"{answer}: {dst.name} is {ip} ({what})")
    which = "the first address of the answer"
    if cluster.docker is not None and len(answer.answers) > 1:
        # libnetwork resolver.go handleIPQuery: `shuffleAddr` (math/rand) on every answer
        which += (
            " (Docker Engine's embedded DNS shuffles the addresses of every answer, so"
            " any may be first: here they are in creation order)"
        )
    note(trace, ns, PHASE, f"{CONNECT} {ip}, {which}")
    return ep
