"""kube-dns: the DNS message on the wire, CoreDNS's records, the resolver, and probes by name."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dataplane import ACCEPT, Drop
from dataplane.dns import (
    NOERROR,
    NXDOMAIN,
    DNSMessage,
    ResolvConf,
    records,
    resolv_conf,
)
from dataplane.netfilter import HookContext, HookResult
from dataplane.packet import IP, UDP, Packet
from dataplane.sim import Simulator
from dataplane.trace import DropReason, Trace, Verdict
from tests.services.builders import DNS_IP, WEB_IP, pod, service_cluster, web_service
from topology.errors import TopologyError
from topology.model import ServicePort

CONF = ResolvConf(
    DNS_IP, ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")
)
SIM = Simulator(service_cluster())


def dns_packets(trace: Trace) -> list[tuple[str, str, DNSMessage]]:
    """(direction, where, message) of every hop that carries a DNS message."""
    return [
        (h.direction, h.where, h.packet.app)
        for h in trace.hops
        if h.packet is not None and isinstance(h.packet.app, DNSMessage)
    ]


# -- the message ------------------------------------------------------------------------


def test_a_query_is_a_real_dns_message() -> None:
    from scapy.layers.dns import DNS

    query = DNSMessage(0x1234, "web.default.svc.cluster.local.")
    wire = DNS(query.to_bytes())
    assert (wire.id, wire.qr, wire.rd, wire.qdcount) == (0x1234, 0, 1, 1)
    assert wire.qd[0].qname == b"web.default.svc.cluster.local."


def test_an_answer_carries_its_a_records_and_parses_back() -> None:
    answer = DNSMessage(7, "web.default.svc.cluster.local.").reply(
        NOERROR, ("10.0.1.5", "10.0.2.4")
    )
    parsed = DNSMessage.from_bytes(answer.to_bytes())
    assert parsed == answer
    assert (
        str(answer) == "DNS answer web.default.svc.cluster.local. A 10.0.1.5 10.0.2.4"
    )


def test_nxdomain_on_the_wire() -> None:
    from scapy.layers.dns import DNS

    wire = DNS(DNSMessage(7, "nope.").reply(NXDOMAIN).to_bytes())
    assert (wire.qr, wire.aa, wire.rcode, wire.ancount) == (1, 1, 3, 0)


def test_garbage_is_not_a_dns_message() -> None:
    assert DNSMessage.from_bytes(b"dataplane probe\n") is None


# -- CoreDNS's records ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qname", "rcode", "addresses"),
    [
        ("web.default.svc.cluster.local.", NOERROR, (WEB_IP,)),
        ("WEB.Default.svc.cluster.local", NOERROR, (WEB_IP,)),
        ("kube-dns.kube-system.svc.cluster.local.", NOERROR, (DNS_IP,)),
        ("web.kube-system.svc.cluster.local.", NXDOMAIN, ()),
        ("web.svc.cluster.local.", NXDOMAIN, ()),
        ("web.default.svc.cluster.local.default.svc.cluster.local.", NXDOMAIN, ()),
        ("10-0-1-5.default.pod.cluster.local.", NOERROR, ("10.0.1.5",)),
        ("10-0-1-5.nowhere.pod.cluster.local.", NXDOMAIN, ()),
        ("web.", NXDOMAIN, ()),
        ("example.com.", NXDOMAIN, ()),
    ],
)
def test_records(qname: str, rcode: int, addresses: tuple[str, ...]) -> None:
    found = records(SIM.cluster, qname)
    assert (found.rcode, found.addresses) == (rcode, addresses)


def test_a_headless_service_answers_with_its_ready_pods() -> None:
    headless = web_service(name="web-pods", cluster_ip=None)
    idle = replace(pod("web-2", "node-1", "10.0.1.9", {"app": "web"}), ready=False)
    cluster = service_cluster(SIM.cluster.config.network, headless, pods=(idle,))
    found = records(cluster, "web-pods.default.svc.cluster.local.")
    assert found.addresses == ("10.0.1.5", "10.0.2.4")
    empty = web_service(name="none", cluster_ip=None, selector={"app": "x"})
    nodata = records(
        service_cluster(cluster.config.network, empty), "none.default.svc.cluster.local"
    )
    assert (nodata.rcode, nodata.addresses) == (NOERROR, ())


# -- the resolver -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tried"),
    [
        (
            "web",
            [
                "web.default.svc.cluster.local.",
                "web.svc.cluster.local.",
                "web.cluster.local.",
                "web.",
            ],
        ),
        (
            "web.default",
            [
                "web.default.default.svc.cluster.local.",
                "web.default.svc.cluster.local.",
                "web.default.cluster.local.",
                "web.default.",
            ],
        ),
        ("web.default.svc.cluster.local.", ["web.default.svc.cluster.local."]),
        (
            "a.b.c.d.e.f",
            [
                "a.b.c.d.e.f.",
                "a.b.c.d.e.f.default.svc.cluster.local.",
                "a.b.c.d.e.f.svc.cluster.local.",
                "a.b.c.d.e.f.cluster.local.",
            ],
        ),
    ],
    ids=["short", "name.ns", "absolute", "ndots-reached"],
)
def test_the_search_path_and_ndots(name: str, tried: list[str]) -> None:
    assert CONF.candidates(name) == tried


def test_kubelet_writes_the_pods_namespace_first() -> None:
    p = SIM.cluster.pods["kube-system/coredns-0"]
    conf = resolv_conf(SIM.cluster, p)
    assert str(conf) == (
        "nameserver 10.96.0.10; search kube-system.svc.cluster.local svc.cluster.local "
        "cluster.local; options ndots:5"
    )


# -- probes by name ---------------------------------------------------------------------


def test_a_probe_by_name_walks_the_dns_exchange_then_the_connection() -> None:
    trace = SIM.probe("default/a", "web", 80)
    assert trace.verdict is Verdict.DELIVERED and trace.endpoint == "default/web-0"
    assert trace.title == "TCP default/a -> web:80"
    phases = [h for h in trace.hops if h.event == "phase"]
    assert phases[
        0
    ].seq == 1 and "/etc/resolv.conf: nameserver 10.96.0.10; search " in (
        phases[0].detail
    )
    assert phases[1].detail == f"connect to {WEB_IP}, the first address of the answer"
    messages = dns_packets(trace)
    query = messages[0]
    assert query[:2] == ("request", "node-1 pod default/a")
    assert str(query[2]).startswith(
        "DNS query 0x"
    ) and "A? web.default.svc.cluster.local." in str(query[2])
    answer = messages[-1]
    assert answer[:2] == ("reply", "node-1 pod default/a")
    assert answer[2].answers == (WEB_IP,)
    # kube-proxy sent the query to CoreDNS and un-DNATed the answer.
    dns_nat = [h for h in trace.hops if h.event == "nat" and h.seq < phases[1].seq]
    assert [str(d) for d in dns_nat[0].diffs] == [f"ip.dst: {DNS_IP} -> 10.0.2.3"]
    assert [str(d) for d in dns_nat[1].diffs] == [f"ip.src: 10.0.2.3 -> {DNS_IP}"]
    # ... and only then the connection, to the ClusterIP the answer named.
    conn_nat = [h for h in trace.hops if h.event == "nat" and h.seq > phases[1].seq]
    assert str(conn_nat[0].diffs[0]) == f"ip.dst: {WEB_IP} -> 10.0.1.5"


def test_each_search_domain_is_one_exchange() -> None:
    trace = SIM.probe("default/a", "web.default.svc.cluster.local", 80)
    queries = [
        m.qname for d, _, m in dns_packets(trace) if not m.response and d == "request"
    ]
    assert list(dict.fromkeys(queries)) == [
        "web.default.svc.cluster.local.default.svc.cluster.local.",
        "web.default.svc.cluster.local.svc.cluster.local.",
        "web.default.svc.cluster.local.cluster.local.",
        "web.default.svc.cluster.local.",
    ]
    notes = [h.detail for h in trace.hops if h.event == "dns"]
    assert notes[0].startswith("DNS NXDOMAIN web.default.svc.cluster.local.default.svc")
    assert notes[-1].endswith(
        f"web.default.svc.cluster.local is {WEB_IP} (Service default/web's ClusterIP)"
    )


def test_a_name_that_does_not_exist_is_nxdomain() -> None:
    trace = SIM.probe("default/a", "nope", 80)
    assert trace.verdict is Verdict.NXDOMAIN and trace.reason is DropReason.NXDOMAIN
    assert "'nope' does not resolve" in trace.explanation
    assert not any(
        h.event == "phase" and h.detail.startswith("connect") for h in trace.hops
    )


def test_a_named_port_is_resolved_on_the_service_the_name_found() -> None:
    svc = web_service(ports=(ServicePort(8443, "http", name="web"),))
    trace = Simulator(service_cluster(SIM.cluster.config.network, svc)).probe(
        "default/a", "web.default", "web"
    )
    assert trace.title == "TCP default/a -> web.default:8443"
    assert trace.verdict is Verdict.DELIVERED


def test_a_headless_name_connects_to_the_first_pod_without_kube_proxy() -> None:
    headless = web_service(name="web-pods", cluster_ip=None)
    trace = Simulator(service_cluster(SIM.cluster.config.network, headless)).probe(
        "default/c", "web-pods", 8080
    )
    assert trace.verdict is Verdict.DELIVERED and trace.endpoint == "default/web-0"
    connect = next(
        h.seq for h in trace.hops if h.detail.startswith("connect to 10.0.1.5")
    )
    assert not any(h.event == "nat" for h in trace.hops[connect:])


def test_a_denied_query_is_the_probes_verdict() -> None:
    sim = Simulator(service_cluster())

    def no_dns(pkt: Packet, ctx: HookContext) -> HookResult:
        if pkt.dport == 53:
            return Drop("no DNS here")
        return ACCEPT

    sim.add_hook("FORWARD", no_dns, name="no-dns")
    trace = sim.probe("default/a", "web", 80)
    assert trace.verdict is Verdict.DROPPED
    assert trace.explanation.startswith(
        "the DNS query for web.default.svc.cluster.local. failed: dropped at node-1 host"
    )
    assert not any(h.detail.startswith("connect") for h in trace.hops)


def test_coredns_gone_means_the_query_is_refused() -> None:
    cluster = service_cluster()
    cluster = replace(
        cluster, pods={k: p for k, p in cluster.pods.items() if "coredns" not in k}
    )
    trace = Simulator(cluster).probe("default/a", "web", 80)
    assert trace.verdict is Verdict.REFUSED
    assert "kube-system/kube-dns:dns has no endpoints" in str(
        [h.detail for h in trace.hops]
    )


def test_a_udp_probe_to_coredns_that_is_not_dns_is_echoed() -> None:
    trace = SIM.probe("default/a", "svc/kube-system/kube-dns", 53, "UDP")
    assert trace.verdict is Verdict.DELIVERED


def test_a_crafted_dns_datagram_is_answered() -> None:
    query = DNSMessage(99, "kube-dns.kube-system.svc.cluster.local.")
    pkt = Packet(ip=IP("", DNS_IP, 17), l4=UDP(5000, 53), data=query.to_bytes())
    trace = SIM.send("default/b", pkt)
    answers = [m for _, _, m in dns_packets(trace) if m.response]
    assert answers and answers[0].answers == (DNS_IP,)


@pytest.mark.parametrize(
    ("src", "error"),
    [
        ("node/node-1", "uses its node's resolver"),
        ("external/laptop", "uses its node's resolver"),
    ],
)
def test_only_pods_resolve_through_kube_dns(src: str, error: str) -> None:
    with pytest.raises(TopologyError, match=error):
        SIM.probe(src, "web", 80)


def test_a_cluster_without_dns_cannot_resolve() -> None:
    cluster = service_cluster()
    cluster = replace(cluster, config=replace(cluster.config, dns=False))
    with pytest.raises(TopologyError, match="runs no kube-dns"):
        Simulator(cluster).probe("default/a", "web", 80)


def test_a_headless_service_has_no_clusterip_to_probe() -> None:
    headless = web_service(cluster_ip=None)
    sim = Simulator(service_cluster(SIM.cluster.config.network, headless))
    with pytest.raises(
        TopologyError, match=r"headless .* probe its DNS name web\.default"
    ):
        sim.probe("default/a", "svc/default/web", 80)
