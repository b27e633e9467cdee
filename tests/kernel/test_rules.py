"""The kernel backend's pure parts, no root needed: nftables generated from the model,
the verdict words of what a socket sees, DNS wire format, packet parsing, comparison."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from dataplane.fabric import build_fabric
from dataplane.kernel import dns, nft
from dataplane.kernel.policies import add_policy_rules
from dataplane.kernel.probe import verdict_of_errno, verdict_of_icmp
from dataplane.kernel.report import agree
from dataplane.kernel.send import parse
from dataplane.kernel.services import add_masquerade, add_service_rules
from dataplane.kernel.verify import replay_reason
from dataplane.packet import ICMP, IP, TCP, UDP, Packet
from tests.dataplane.builders import tiny_cluster
from tests.services.builders import service_cluster, web_service
from topology.model import (
    Cluster,
    IPBlock,
    LabelSelector,
    LoadBalancerIngress,
    NetworkPolicy,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Protocol,
    ServicePort,
    ServiceType,
)
from topology.scenario import Verdict


def ruleset(cluster: Cluster, node: str = "node-1") -> nft.Ruleset:
    fab = build_fabric(cluster)
    rs = nft.Ruleset()
    add_service_rules(rs, cluster, fab.netns[node])
    add_policy_rules(rs, cluster, fab.netns[node])
    add_masquerade(rs, cluster, fab.netns[node])
    return rs


def chain(rs: nft.Ruleset, name: str) -> list[dict[str, Any]]:
    """The rules of one chain, in order (the `rule` objects)."""
    return [c["add"]["rule"] for c in rs.rules if c["add"]["rule"]["chain"] == name]


def with_policy(cluster: Cluster, *policies: NetworkPolicy) -> Cluster:
    return replace(cluster, policies={p.key: p for p in policies})


def ingress_policy(*rules: PolicyRule, selector: str = "c") -> NetworkPolicy:
    return NetworkPolicy(
        "default", "p", LabelSelector({"app": selector}), ("Ingress",), ingress=rules
    )


# -- NetworkPolicy -------------------------------------------------------------------------
def test_an_isolated_pod_gets_a_chain_that_ends_in_drop_on_its_own_node_only() -> None:
    cluster = with_policy(tiny_cluster(), ingress_policy())
    on_c = ruleset(cluster, "node-2")
    base = chain(on_c, "netpol-ingress")
    assert base[0]["expr"][0]["match"]["right"] == ["established", "related"]
    jump = base[1]["expr"][0]["vmap"]
    assert jump["key"] == nft.field_("ip", "daddr")
    assert jump["data"]["set"] == [["10.0.2.2", nft.jump("ingress-default.c")]]
    rules = chain(on_c, "ingress-default.c")
    assert rules[-1]["expr"] == [nft.DROP]
    assert "isolated for ingress by default/p" in rules[-1]["comment"]
    # c's own node always reaches it: its addresses first
    own = rules[0]["expr"][0]["match"]["right"]["set"]
    assert sorted(own) == ["10.0.2.0", "10.0.2.1", "10.100.0.3"]
    assert (
        len(chain(ruleset(cluster, "node-1"), "netpol-ingress")) == 1
    )  # a and b: not isolated


def test_a_rule_is_every_peer_times_every_port() -> None:
    rule = PolicyRule(
        peers=(
            PolicyPeer(pod_selector=LabelSelector({"app": "a"})),
            PolicyPeer(
                ip_block=IPBlock(
                    IPv4Network("10.0.0.0/8"), (IPv4Network("10.0.1.0/24"),)
                )
            ),
        ),
        ports=(PolicyPort(Protocol.TCP, 80), PolicyPort(Protocol.UDP, 5000, 5010)),
    )
    rules = chain(
        ruleset(with_policy(tiny_cluster(), ingress_policy(rule)), "node-2"),
        "ingress-default.c",
    )
    admits = [r for r in rules if r["comment"] == "netpol default/p ingress rule 0"]
    assert len(admits) == 4
    first = admits[0]["expr"]
    assert first[0] == nft.match(nft.field_("ip", "saddr"), "10.0.1.3")
    assert first[1:] == [nft.l4proto(Protocol.TCP), nft.dport(80), nft.ACCEPT]
    assert admits[1]["expr"][-3:-1] == [
        nft.l4proto(Protocol.UDP),
        nft.dport(5000, 5010),
    ]
    block = admits[2]["expr"]
    assert block[0] == nft.match(
        nft.field_("ip", "saddr"), {"prefix": {"addr": "10.0.0.0", "len": 8}}
    )
    assert block[1] == nft.match(
        nft.field_("ip", "saddr"), {"prefix": {"addr": "10.0.1.0", "len": 24}}, "!="
    )


def test_a_named_port_is_resolved_on_the_destination_pod() -> None:
    ingress = PolicyRule(ports=(PolicyPort(Protocol.TCP, "http"),))
    rules = chain(
        ruleset(with_policy(tiny_cluster(), ingress_policy(ingress)), "node-2"),
        "ingress-default.c",
    )
    assert rules[1]["expr"] == [nft.l4proto(Protocol.TCP), nft.dport(80), nft.ACCEPT]
    egress = NetworkPolicy(
        "default",
        "e",
        LabelSelector({"app": "a"}),
        ("Egress",),
        egress=(
            PolicyRule(
                peers=(PolicyPeer(pod_selector=LabelSelector({"app": "c"})),),
                ports=(PolicyPort(Protocol.UDP, "dns"),),
            ),
        ),
    )
    rules = chain(
        ruleset(with_policy(tiny_cluster(), egress), "node-1"), "egress-default.a"
    )
    pairs = rules[1]["expr"][-2]["match"]["right"]["set"]
    assert pairs == [{"concat": ["10.0.2.2", 53]}]  # c's port named dns
    # egress admits in its own base chain: netpol-ingress still judges the packet
    assert rules[1]["expr"][-1] == nft.ACCEPT


def test_a_peer_that_matches_no_pod_admits_nothing() -> None:
    rule = PolicyRule(
        peers=(PolicyPeer(pod_selector=LabelSelector({"app": "nobody"})),)
    )
    rules = chain(
        ruleset(with_policy(tiny_cluster(), ingress_policy(rule)), "node-2"),
        "ingress-default.c",
    )
    assert [r["expr"][-1] for r in rules] == [nft.ACCEPT, nft.DROP]


# -- kube-proxy and masquerade ---------------------------------------------------------------
def test_a_clusterip_port_jumps_to_its_frontend_then_to_random_endpoints() -> None:
    rs = ruleset(service_cluster())
    services = chain(rs, "services")[0]["expr"][0]["vmap"]["data"]["set"]
    frontends = {
        str(k["concat"][0]) + ":" + str(k["concat"][2]): v for k, v in services
    }
    assert "10.96.0.11:80" in frontends and "10.96.0.10:53" in frontends
    web = frontends["10.96.0.11:80"]["jump"]["target"]
    pick = chain(rs, chain(rs, web)[-1]["expr"][0]["jump"]["target"])
    assert pick[0]["expr"][0]["vmap"]["data"].startswith("@pin-")
    assert pick[1]["expr"][0]["vmap"]["key"]["numgen"]["mod"] == 2  # web-0, web-1
    sep = pick[1]["expr"][0]["vmap"]["data"]["set"][0][1]["jump"]["target"]
    assert chain(rs, sep)[1]["expr"][-1] == {"dnat": {"addr": "10.0.1.5", "port": 8080}}


def test_a_service_port_without_endpoints_is_rejected_and_a_pin_is_refused() -> None:
    svc = web_service(selector={"app": "nobody"})
    cluster = service_cluster()
    cluster = replace(cluster, services={**cluster.services, svc.key: svc})
    rs = nft.Ruleset()
    fab = build_fabric(cluster)
    rules = add_service_rules(rs, cluster, fab.netns["node-1"])
    web = [r for r in chain(rs, "kube-filter") if "default/web" in r["comment"]]
    assert web[0]["expr"][-1] == nft.REJECT_PORT_UNREACHABLE
    flow = ("10.0.1.3", "tcp", 41000, "10.96.0.11", 80)
    assert rules.pin("default/web", 0, flow, "default/web-0") == []


def test_local_external_traffic_policy_without_a_local_endpoint() -> None:
    svc = web_service(
        type=ServiceType.NODE_PORT,
        external_traffic_policy="Local",
        ports=(ServicePort(80, "http", Protocol.TCP, "http", 30080),),
        selector={"app": "web"},
    )
    cluster = service_cluster(pods=())
    only_on_2 = {k: p for k, p in cluster.pods.items() if k != "default/web-0"}
    cluster = replace(
        cluster, pods=only_on_2, services={**cluster.services, svc.key: svc}
    )
    rs = ruleset(cluster, "node-1")
    ext = list(chain(rs, "ext-default.web.http"))
    comments = [r["comment"] for r in ext]
    assert any("pod traffic short-circuits" in c for c in comments)
    assert any("the node's own traffic" in c for c in comments)
    assert not any(
        "externalTrafficPolicy Local" in c for c in comments
    )  # nothing local
    drop = [r for r in chain(rs, "kube-filter") if "nodePort" in r["comment"]]
    assert drop[0]["expr"][-1] == nft.DROP


def test_a_pin_goes_only_where_the_endpoint_is_a_candidate() -> None:
    cluster = service_cluster()
    fab = build_fabric(cluster)
    rs = nft.Ruleset()
    rules = add_service_rules(rs, cluster, fab.netns["node-1"])
    flow = ("10.0.1.3", "tcp", 41000, "10.96.0.11", 80)
    to_web1 = rules.pin("default/web", 0, flow, "default/web-1")  # on node-2
    assert [c["add"]["element"]["name"] for c in to_web1] == [
        "pin-pick-default.web.http-all"
    ]
    to_web0 = rules.pin("default/web", 0, flow, "default/web-0")  # on node-1
    assert len(to_web0) == 2  # the cluster-wide and the node-local pick


def test_masquerade_spares_the_nodes_own_addresses() -> None:
    rules = chain(ruleset(tiny_cluster()), "nat-postrouting")
    assert rules[0]["expr"] == [nft.has_mark(nft.MASQ_MARK), nft.MASQUERADE]
    spared = rules[1]["expr"][2]["match"]
    assert spared["op"] == "!="
    assert sorted(spared["right"]["set"]) == ["10.0.1.0", "10.0.1.1", "10.100.0.2"]


def test_the_table_is_replaced_in_one_transaction() -> None:
    commands = nft.Ruleset().commands()
    assert [next(iter(c)) for c in commands] == ["add", "delete", "add"]


# -- what a socket sees ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("icmp", "verdict"),
    [
        ((3, 0), Verdict.NO_ROUTE),
        ((3, 1), Verdict.UNREACHABLE),
        ((3, 3), Verdict.REFUSED),
        ((3, 4), Verdict.TOO_BIG),
        ((3, 13), Verdict.REFUSED),
        ((11, 0), Verdict.TTL_EXCEEDED),
    ],
    ids=str,
)
def test_icmp_errors_become_verdict_words(
    icmp: tuple[int, int], verdict: Verdict
) -> None:
    assert verdict_of_icmp(*icmp) is verdict


def test_socket_errors_become_verdict_words() -> None:
    import errno

    assert verdict_of_errno(errno.EMSGSIZE) is Verdict.TOO_BIG
    assert verdict_of_errno(errno.EHOSTUNREACH) is Verdict.UNREACHABLE
    assert verdict_of_errno(errno.EPERM) is Verdict.DENIED
    assert verdict_of_errno(errno.EINVAL) is Verdict.NO_ROUTE  # a blackhole route


@pytest.mark.parametrize(
    ("sim", "kernel", "silent", "agrees"),
    [
        (Verdict.DELIVERED, Verdict.DELIVERED, False, True),
        (Verdict.DENIED_EGRESS, Verdict.DENIED, False, True),
        (Verdict.DROPPED, Verdict.DENIED, False, True),
        (Verdict.NO_ROUTE, Verdict.DENIED, True, True),
        (Verdict.NO_ROUTE, Verdict.DENIED, False, False),
        (Verdict.REFUSED, Verdict.DELIVERED, False, False),
        (Verdict.DENIED_INGRESS, Verdict.DELIVERED, False, False),
    ],
    ids=lambda v: str(v),
)
def test_agreement_is_what_a_socket_can_tell(
    sim: Verdict, kernel: Verdict, silent: bool, agrees: bool
) -> None:
    assert agree(sim, kernel, silent) is agrees


def test_only_the_first_packet_of_a_captured_conversation_is_replayed() -> None:
    syn = Packet(ip=IP("10.0.1.3", "10.0.2.2", 6), l4=TCP(40000, 80, "S"))
    assert replay_reason(syn, False) is None
    ack = Packet(ip=IP("10.0.1.3", "10.0.2.2", 6), l4=TCP(40000, 80, "A"))
    assert "RST" in (replay_reason(ack, False) or "")
    answer = Packet(ip=IP("10.0.2.2", "10.0.1.3", 17), l4=UDP(53, 40000))
    assert "reply" in (replay_reason(answer, True) or "")
    echo_reply = Packet(ip=IP("10.0.2.2", "10.0.1.3", 1), l4=ICMP(0, 0, 1, 1))
    assert replay_reason(echo_reply, True) is not None


def test_an_icmp_error_is_parsed_with_its_quote() -> None:
    from dataplane.packet import to_bytes

    quote = Packet(ip=IP("10.0.1.3", "10.0.2.2", 17, ttl=1), l4=UDP(40000, 53))
    err = Packet(ip=IP("10.0.1.1", "10.0.1.3", 1), l4=ICMP(11, 0, quote=quote))
    seen = parse(to_bytes(err))
    assert seen is not None and seen.quote is not None
    assert (seen.icmp_type, seen.src) == (11, "10.0.1.1")
    assert (seen.quote.dst, seen.quote.sport, seen.quote.dport) == (
        "10.0.2.2",
        40000,
        53,
    )


# -- DNS ---------------------------------------------------------------------------------------
def test_the_dns_server_answers_a_service_name_and_refuses_others() -> None:
    cluster = service_cluster()
    reply = dns.answer(cluster, dns.query("web.default.svc.cluster.local.", 7))
    assert reply is not None
    assert dns.parse_answer(reply, 7) == (dns.NOERROR, ["10.96.0.11"])
    missing = dns.answer(cluster, dns.query("web.default.cluster.local.", 8))
    assert missing is not None and dns.parse_answer(missing, 8) == (dns.NXDOMAIN, [])
    assert dns.answer(cluster, b"dataplane probe\n") is None  # not DNS: echoed


def test_a_headless_service_answers_with_its_pods() -> None:
    headless = replace(web_service(), name="web-pods", cluster_ip=None)
    cluster = service_cluster()
    cluster = replace(cluster, services={**cluster.services, headless.key: headless})
    rcode, addrs, _svc = dns.records(cluster, "web-pods.default.svc.cluster.local.")
    assert (rcode, addrs) == (dns.NOERROR, ["10.0.1.5", "10.0.2.4"])


def test_the_resolver_tries_the_search_list_before_the_name() -> None:
    cluster = service_cluster()
    pod = cluster.pods["default/a"]
    assert dns.candidates(cluster, pod, "web") == [
        "web.default.svc.cluster.local.",
        "web.svc.cluster.local.",
        "web.cluster.local.",
        "web.",
    ]
    assert dns.candidates(cluster, pod, "web.default.svc.cluster.local.") == [
        "web.default.svc.cluster.local."
    ]
    assert dns.nameserver(cluster) == str(IPv4Address("10.96.0.10"))


def test_unused_service_types_are_still_generated() -> None:
    lb = web_service(
        type=ServiceType.LOAD_BALANCER,
        load_balancer_ingress=(LoadBalancerIngress(IPv4Address("192.0.2.99")),),
    )
    cluster = service_cluster()
    cluster = replace(cluster, services={**cluster.services, lb.key: lb})
    services = chain(ruleset(cluster), "services")[0]["expr"][0]["vmap"]["data"]["set"]
    assert any(k["concat"][0] == "192.0.2.99" for k, _v in services)


@pytest.mark.parametrize(
    "name",
    [
        "netns",
        "build",
        "nft",
        "probe",
        "send",
        "dns",
        "report",
        "verify",
        "services",
        "policies",
        "owner",
        "signals",
        "capture",
        "compare",
        "live",
    ],
)
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    module = importlib.import_module(f"dataplane.kernel.{name}")
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
