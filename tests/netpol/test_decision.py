"""The pure decision (`dataplane.netpol.decide`): every rule of NetworkPolicy semantics on
hand-built clusters, and the prose that explains each verdict."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane import netpol_text
from dataplane.netpol import (
    Decision,
    Direction,
    egress_decision,
    index_of,
    ingress_decision,
    port_matches,
)
from tests.netpol.clusters import (
    SERVER,
    block,
    expr,
    namespaces,
    pods,
    policy,
    port,
    rule,
    sel,
    with_labels,
    xyz,
)
from topology.model import (
    Cluster,
    LabelSelector,
    NetworkPolicy,
    Pod,
    PolicyPort,
    Protocol,
    Requirement,
    SelectorOp,
)
from topology.selectors import matches


def connect(
    cluster: Cluster, src: str, dst: str, dport: int | None = 80, proto: str = "TCP"
) -> tuple[Decision, Decision]:
    """(egress of src, ingress of dst) for pods given as `NS/NAME`."""
    s, d = cluster.pods[src], cluster.pods[dst]
    protocol = Protocol(proto)
    return (
        egress_decision(cluster, s, str(d.ip), dport, protocol),
        ingress_decision(cluster, d, str(s.ip), dport, protocol),
    )


def allowed(
    cluster: Cluster, src: str, dst: str, dport: int | None = 80, proto: str = "TCP"
) -> bool:
    e, i = connect(cluster, src, dst, dport, proto)
    return e.allowed and i.allowed


@dataclass(frozen=True)
class Case:
    id: str
    policies: tuple[NetworkPolicy, ...]
    src: str
    dst: str
    allowed: bool
    dport: int | None = 80
    proto: str = "TCP"


A_ONLY = sel(pod="a")
CASES = [
    Case("no policy: not isolated", (), "y/b", "x/a", True),
    Case("default deny ingress", (policy("x/deny", types=("Ingress",)),), "y/b", "x/a", False),
    Case("deny ingress leaves egress alone", (policy("x/deny"),), "x/a", "y/b", True),
    Case("ingress [{}] allows all", (policy("x/deny"), policy("x/all", ingress=(rule(),))), "y/b", "x/a", True),
    Case("egress isolation", (policy("x/deny", types=("Egress",)),), "x/a", "y/b", False),
    Case("egress [{}] allows all", (policy("x/e", egress=(rule(),), types=("Egress",)),), "x/a", "y/b", True),
    Case("podSelector alone: same namespace", (policy("x/p", A_ONLY, (rule(pods(sel(pod="b"))),)),), "x/b", "x/a", True),
    Case("podSelector alone: not another namespace", (policy("x/p", A_ONLY, (rule(pods(sel(pod="b"))),)),), "y/b", "x/a", False),
    Case("namespaceSelector alone", (policy("x/p", A_ONLY, (rule(namespaces(sel(ns="y"))),)),), "y/c", "x/a", True),
    Case("namespaceSelector alone: other namespace", (policy("x/p", A_ONLY, (rule(namespaces(sel(ns="y"))),)),), "z/c", "x/a", False),
    Case("both in one peer: AND holds", (policy("x/p", A_ONLY, (rule(namespaces(sel(ns="y"), sel(pod="c"))),)),), "y/c", "x/a", True),
    Case("both in one peer: AND fails", (policy("x/p", A_ONLY, (rule(namespaces(sel(ns="y"), sel(pod="c"))),)),), "y/b", "x/a", False),
    Case("two peers: OR", (policy("x/p", A_ONLY, (rule(namespaces(sel(ns="y")), pods(sel(pod="c"))),)),), "x/c", "x/a", True),
    Case("empty namespaceSelector: every namespace", (policy("x/p", A_ONLY, (rule(namespaces()),)),), "z/b", "x/a", True),
    Case("matchExpressions In", (policy("x/p", A_ONLY, (rule(namespaces(expr("ns", "In", "y", "z"))),)),), "z/b", "x/a", True),
    Case("matchExpressions NotIn", (policy("x/p", A_ONLY, (rule(namespaces(expr("ns", "NotIn", "z"))),)),), "z/b", "x/a", False),
    Case("matchExpressions Exists", (policy("x/p", A_ONLY, (rule(pods(expr("pod", "Exists"))),)),), "x/b", "x/a", True),
    Case("matchExpressions DoesNotExist", (policy("x/p", A_ONLY, (rule(pods(expr("pod", "DoesNotExist"))),)),), "x/b", "x/a", False),
    Case("policy selector by expression", (policy("x/p", expr("pod", "In", "a", "b")),), "y/a", "x/b", False),
    Case("ipBlock matches pod addresses", (policy("x/p", A_ONLY, (rule(block("10.0.2.0/24")),)),), "y/a", "x/a", True),
    Case("ipBlock except", (policy("x/p", A_ONLY, (rule(block("10.0.2.0/24", "10.0.2.0/30")),)),), "x/b", "x/a", False),
    Case("port number", (policy("x/p", A_ONLY, (rule(ports=(port(80),)),)),), "y/a", "x/a", True),
    Case("other port", (policy("x/p", A_ONLY, (rule(ports=(port(80),)),)),), "y/a", "x/a", False, 81),
    Case("protocol defaults to TCP, so UDP misses", (policy("x/p", A_ONLY, (rule(ports=(port(80),)),)),), "y/a", "x/a", False, 80, "UDP"),
    Case("UDP port", (policy("x/p", A_ONLY, (rule(ports=(port(81, "UDP"),)),)),), "y/a", "x/a", True, 81, "UDP"),
    Case("SCTP without port: every SCTP port", (policy("x/p", A_ONLY, (rule(ports=(port(None, "SCTP"),)),)),), "y/a", "x/a", True, 81, "SCTP"),
    Case("endPort range", (policy("x/p", A_ONLY, (rule(ports=(port(79, end=81),)),)),), "y/a", "x/a", True, 81),
    Case("endPort range excludes", (policy("x/p", A_ONLY, (rule(ports=(port(81, end=90),)),)),), "y/a", "x/a", False, 80),
    Case("named port on the destination", (policy("x/p", A_ONLY, (rule(ports=(port("serve-81-tcp"),)),)),), "y/a", "x/a", True, 81),
    Case("named port of another protocol", (policy("x/p", A_ONLY, (rule(ports=(port("serve-81-udp"),)),)),), "y/a", "x/a", False, 81),
    Case("no ports: ICMP too", (policy("x/p", A_ONLY, (rule(),)),), "y/a", "x/a", True, None, "ICMP"),
    Case("ports never match ICMP", (policy("x/p", A_ONLY, (rule(ports=(port(80),)),)),), "y/a", "x/a", False, None, "ICMP"),
    Case("egress named port resolved on the destination", (policy("y/e", sel(pod="a"), egress=(rule(ports=(port("serve-80-tcp"),)),), types=("Egress",)),), "y/a", "x/b", True),
    Case("stacked: union of two policies", (policy("x/one", A_ONLY, (rule(pods(sel(pod="b"))),)), policy("x/two", A_ONLY, (rule(namespaces(sel(ns="z"))),))), "z/c", "x/a", True),
    Case("policyTypes [Egress] ignores ingress rules", (policy("x/p", A_ONLY, (rule(pods(sel(pod="b"))),), types=("Egress",)),), "x/b", "x/a", True),
    Case("the destination must admit even if the source does", (policy("y/e", egress=(rule(),)), policy("x/i", A_ONLY, ())), "y/a", "x/a", False),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_semantics(case: Case) -> None:
    cluster = xyz(*case.policies)
    assert allowed(cluster, case.src, case.dst, case.dport, case.proto) is case.allowed


def test_allowed_names_the_policy_rule_and_peer() -> None:
    p = policy(
        "x/test-np",
        A_ONLY,
        (
            rule(
                namespaces(sel(project="dev")),
                pods(sel(role="frontend")),
                ports=(port(80),),
            ),
        ),
    )
    cluster = with_labels(xyz(p), "x/b", {"role": "frontend"})
    _, d = connect(cluster, "x/b", "x/a")
    assert d.allowed and d.policy == "x/test-np" and d.match is not None
    assert d.match[1:] == (0, 1)
    assert netpol_text.explain(d) == (
        "allowed by x/test-np ingress rule 0 peer 1 (podSelector role=frontend), ports TCP 80"
    )
    assert netpol_text.summary(d).startswith(
        "ingress of x/a: allowed by x/test-np ingress rule 0"
    )


def test_a_drop_says_why_each_rule_does_not_admit() -> None:
    p = policy(
        "x/test-np",
        A_ONLY,
        (
            rule(
                namespaces(sel(project="dev")),
                pods(sel(role="frontend")),
                ports=(port(80),),
            ),
            rule(block("10.0.0.0/24"), ports=(port(80),)),
            rule(ports=(port(443),)),
        ),
    )
    _, d = connect(xyz(p), "x/b", "x/a")
    assert not d.allowed and d.policy == "x/test-np"
    text = netpol_text.explain(d)
    assert text.startswith(
        "denied: x/a is isolated for ingress by x/test-np, and no rule admits traffic "
        "from x/b on TCP 80: "
    )
    assert (
        "peer 0 (namespaceSelector project=dev): namespace x has no label project"
        in text
    )
    assert "peer 1 (podSelector role=frontend): x/b has no label role" in text
    assert (
        "rule 1: peer 0 (ipBlock 10.0.0.0/24): 10.0.2.2 is not in 10.0.0.0/24" in text
    )
    assert "rule 2: TCP 80 is not among its ports (TCP 443)" in text


@pytest.mark.parametrize(
    ("peer", "src", "why"),
    [
        (pods(sel(pod="b")), "y/b", "y/b is in namespace y; a podSelector alone selects pods of x only"),
        (pods(sel(pod="c")), "x/b", "x/b has pod=b, not pod=c"),
        (namespaces(expr("ns", "In", "z")), "y/b", "namespace y has ns=y, not in (z)"),
        (namespaces(expr("ns", "NotIn", "y")), "y/b", "namespace y has ns=y, which is in (y)"),
        (pods(expr("role", "Exists")), "x/b", "x/b has no label role (wants role to exist)"),
        (pods(expr("pod", "DoesNotExist")), "x/b", "x/b has label pod=b (wants no pod)"),
        (block("10.0.2.0/24", "10.0.2.0/30"), "x/b", "10.0.2.2 is in 10.0.2.0/24 but also in except 10.0.2.0/30"),
    ],
    ids=["namespace", "label value", "In", "NotIn", "Exists", "DoesNotExist", "except"],
)  # fmt: skip
def test_each_kind_of_miss_is_explained(peer: object, src: str, why: str) -> None:
    from topology.model import PolicyPeer

    assert isinstance(peer, PolicyPeer)
    _, d = connect(xyz(policy("x/p", A_ONLY, (rule(peer),))), src, "x/a")
    assert not d.allowed
    assert why in netpol_text.explain(d)


def test_named_port_miss_shows_what_the_name_means_on_the_destination() -> None:
    p = policy("x/p", A_ONLY, (rule(ports=(port("serve-81-tcp"), port("metrics"))),))
    _, d = connect(xyz(p), "y/a", "x/a", 80)
    assert (
        "TCP 80 is not among its ports (TCP 'serve-81-tcp' (= 81 on x/a), "
        "TCP 'metrics' (not a TCP port of x/a))"
    ) in netpol_text.explain(d)


def test_egress_to_a_non_pod_is_matched_by_ipblock_only() -> None:
    p = policy(
        "x/e",
        A_ONLY,
        egress=(rule(block("10.0.0.0/24"), namespaces(), ports=(port(5978), port("serve-80-tcp"))),),
        types=("Egress",),
    )  # fmt: skip
    cluster = xyz(p)
    a = cluster.pods["x/a"]
    assert egress_decision(cluster, a, "10.0.0.10", 5978, Protocol.TCP).allowed
    d = egress_decision(cluster, a, "192.0.2.10", 5978, Protocol.TCP)
    assert not d.allowed
    text = netpol_text.explain(d)
    assert "to external mirror (192.0.2.10) on TCP 5978" in text
    assert (
        "external mirror (192.0.2.10) is not a pod; selectors match pods only" in text
    )
    d = egress_decision(cluster, a, "10.0.0.10", 80, Protocol.TCP)
    assert "TCP 'serve-80-tcp' (a named port matches pods only)" in netpol_text.explain(
        d
    )


def test_no_rules_and_not_isolated_in_prose() -> None:
    cluster = xyz(policy("x/deny", types=("Ingress", "Egress")))
    e, i = connect(cluster, "y/a", "x/a")
    assert e.allowed and not e.isolated and e.policy is None
    assert (
        netpol_text.explain(e)
        == "y/a is not isolated for egress (no NetworkPolicy selects it for Egress)"
    )
    assert netpol_text.summary(e) == "y/a not isolated for egress -> accept"
    assert not i.allowed and i.policy == "x/deny"
    assert netpol_text.explain(i).endswith(
        "x/deny has no ingress rules (it admits nothing)"
    )


def test_multiline_explanation_lists_rules_and_peers() -> None:
    p = policy("x/p", A_ONLY, (rule(pods(sel(role="fe")), namespaces(sel(ns="q"))),))
    _, d = connect(xyz(p), "y/b", "x/a")
    lines = netpol_text.explain(d, multiline=True).splitlines()
    assert lines[1] == "  - x/p ingress rule 0:"
    assert lines[2].startswith("      peer 0 (podSelector role=fe): ")
    assert lines[3].startswith("      peer 1 (namespaceSelector ns=q): ")


def test_the_node_a_pod_runs_on_is_always_allowed() -> None:
    cluster = xyz(policy("x/deny", types=("Ingress", "Egress")))
    a = cluster.pods[
        "x/a"
    ]  # on node-1: 10.100.0.2, bridge 10.0.1.1, flannel.1 10.0.1.0
    for ip in ("10.100.0.2", "10.0.1.1", "10.0.1.0"):
        d = ingress_decision(cluster, a, ip, 80, Protocol.TCP)
        assert d.allowed and d.own_node, ip
        assert (
            "traffic between a pod and its node is always allowed"
            in netpol_text.explain(d)
        )
    other = ingress_decision(cluster, a, "10.100.0.3", 80, Protocol.TCP)
    assert not other.allowed
    assert "node node-2 (10.100.0.3) is not a pod" not in netpol_text.explain(
        other
    )  # no rules at all


def test_host_network_pods_are_neither_selected_nor_selected_as_peers() -> None:
    host = Pod("x", "agent", "node-2", IPv4Address("10.100.0.3"), {"pod": "a"}, SERVER, host_network=True)  # fmt: skip
    p = policy("x/p", A_ONLY, (rule(pods(sel(pod="a"))),), types=("Ingress", "Egress"))
    cluster = xyz(p, extra=(host,))
    index = index_of(cluster)
    assert index.isolating(host, Direction.INGRESS) == ()
    d = ingress_decision(cluster, cluster.pods["x/a"], "10.100.0.3", 80, Protocol.TCP)
    assert not d.allowed
    assert (
        "node node-2 (10.100.0.3) is not a pod (hostNetwork pods count as their node)"
        in netpol_text.explain(d)
    )


def test_index_is_built_once_per_cluster_object() -> None:
    a, b = xyz(), xyz()
    assert index_of(a) is index_of(a)
    assert index_of(a) is not index_of(b)
    assert index_of(b).cluster is b


def test_a_label_change_is_a_new_cluster_and_a_new_answer() -> None:
    cluster = xyz(policy("x/p", A_ONLY, (rule(pods(sel(role="frontend"))),)))
    assert not allowed(cluster, "x/b", "x/a")
    assert allowed(with_labels(cluster, "x/b", {"role": "frontend"}), "x/b", "x/a")
    assert allowed(with_labels(cluster, "x/a", {"pod": "other"}), "x/b", "x/a")


@pytest.mark.parametrize(
    ("item", "dport", "proto", "expected"),
    [
        (PolicyPort(Protocol.TCP, 80), 80, Protocol.TCP, True),
        (PolicyPort(Protocol.TCP, 80), 80, Protocol.UDP, False),
        (PolicyPort(Protocol.TCP, 80, 80), 80, Protocol.TCP, True),
        (PolicyPort(Protocol.TCP, 80, 90), 91, Protocol.TCP, False),
        (PolicyPort(Protocol.UDP), 5353, Protocol.UDP, True),
        (PolicyPort(Protocol.TCP), None, Protocol.ICMP, False),
        (PolicyPort(Protocol.SCTP, "serve-80-sctp"), 80, Protocol.SCTP, True),
        (PolicyPort(Protocol.TCP, "serve-80-sctp"), 80, Protocol.TCP, False),
    ],
)
def test_port_matches(
    item: PolicyPort, dport: int | None, proto: Protocol, expected: bool
) -> None:
    dst = xyz().pods["x/a"]
    assert port_matches(item, dport, proto, dst) is expected


LABELS = st.dictionaries(st.sampled_from(["app", "role", "env"]), st.sampled_from(["a", "b", "c"]), max_size=3)  # fmt: skip
REQUIREMENTS = st.builds(
    lambda key, op, values: Requirement(key, op, () if op in (SelectorOp.EXISTS, SelectorOp.DOES_NOT_EXIST) else tuple(values)),
    st.sampled_from(["app", "role", "env"]),
    st.sampled_from(list(SelectorOp)),
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2),
)  # fmt: skip
SELECTORS = st.builds(
    lambda labels, reqs: LabelSelector(labels, tuple(reqs)),
    LABELS,
    st.lists(REQUIREMENTS, max_size=2),
)


@settings(max_examples=300, derandomize=True, database=None)
@given(SELECTORS, LABELS)
def test_the_miss_finder_agrees_with_the_selector_semantics(
    selector: LabelSelector, labels: dict[str, str]
) -> None:
    index = index_of(xyz())
    miss = index.term_miss(selector, frozenset(labels.items()), labels)
    assert (miss is None) is matches(selector, labels)
