"""The reachability matrix: the fast path (policy per equivalence class, one walk per kind
of path) equals walking every pair, on random clusters and random policies; the grid."""

from __future__ import annotations

import functools
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.matrix import Matrix, compute_matrix, walk_matrix
from dataplane.netfilter import ACCEPT, Drop
from dataplane.netpol_ports import admits, port_table
from dataplane.result import CODE
from dataplane.sim import Simulator
from dataplane.trace import Verdict
from tests.netpol.clusters import nodes, policy, xyz
from topology.model import (
    ADMIN_KINDS,
    AdminAction,
    AdminPeer,
    AdminPolicy,
    AdminRule,
    Cluster,
    ClusterConfig,
    Container,
    ContainerPort,
    External,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkMode,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    PortSpec,
    Protocol,
    Requirement,
    SelectorOp,
    Tier,
)

KEYS = ["app", "role"]
VALUES = ["a", "b"]
NS_NAMES = ["x", "y", "z"]
PORT_CHOICES = [
    ContainerPort(80, Protocol.TCP, "http"),
    ContainerPort(81, Protocol.UDP, "dns"),
    ContainerPort(80, Protocol.SCTP, "sctp"),
    ContainerPort(8080, Protocol.TCP, "alt"),
]

labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)


@st.composite
def selectors(draw: st.DrawFn) -> LabelSelector:
    labels = draw(labels_st)
    reqs = []
    for _ in range(draw(st.integers(0, 1))):
        op = draw(st.sampled_from(list(SelectorOp)))
        values = ()
        if op in (SelectorOp.IN, SelectorOp.NOT_IN):
            values = tuple(
                draw(
                    st.lists(
                        st.sampled_from(VALUES), min_size=1, max_size=2, unique=True
                    )
                )
            )
        reqs.append(Requirement(draw(st.sampled_from([*KEYS, "team"])), op, values))
    return LabelSelector(labels, tuple(reqs))


@st.composite
def peers(draw: st.DrawFn, pod_ips: list[str]) -> PolicyPeer:
    kind = draw(st.sampled_from(["pod", "ns", "both", "block"]))
    if kind == "block":
        cidr = draw(st.sampled_from(["10.0.0.0/8", "10.0.1.0/24", "10.0.2.0/24", "0.0.0.0/0", "192.0.2.0/24", "10.100.0.0/24", *(f"{ip}/32" for ip in pod_ips)]))  # fmt: skip
        net = IPv4Network(cidr)
        excepts: tuple[IPv4Network, ...] = ()
        inner = [
            f"{ip}/32"
            for ip in pod_ips
            if IPv4Address(ip) in net and net.prefixlen < 32
        ]
        if inner and draw(st.booleans()):
            excepts = (IPv4Network(draw(st.sampled_from(inner))),)
        return PolicyPeer(ip_block=IPBlock(net, excepts))
    pod_sel = draw(selectors()) if kind in ("pod", "both") else None
    ns_sel = draw(selectors()) if kind in ("ns", "both") else None
    return PolicyPeer(pod_selector=pod_sel, namespace_selector=ns_sel)


@st.composite
def policy_ports(draw: st.DrawFn) -> PolicyPort:
    proto = draw(st.sampled_from([Protocol.TCP, Protocol.UDP, Protocol.SCTP]))
    number = draw(
        st.sampled_from([None, 80, 81, 8080, 79, "http", "dns", "sctp", "alt"])
    )
    end = None
    if isinstance(number, int) and draw(st.booleans()):
        end = number + draw(st.integers(0, 2))
    return PolicyPort(proto, number, end)


@st.composite
def rules(draw: st.DrawFn, pod_ips: list[str]) -> PolicyRule:
    ps = draw(st.lists(peers(pod_ips), max_size=2))
    ports = draw(st.lists(policy_ports(), max_size=2))
    return PolicyRule(tuple(ps), tuple(ports))


@st.composite
def ns_selectors(draw: st.DrawFn) -> LabelSelector:
    """Namespace selectors that often match: {} (every namespace), by name or team."""
    return draw(
        st.sampled_from(
            [
                LabelSelector(),
                *(LabelSelector({"kubernetes.io/metadata.name": n}) for n in NS_NAMES),
                LabelSelector({"team": "a"}),
                LabelSelector({}, (Requirement("team", SelectorOp.NOT_IN, ("b",)),)),
            ]
        )
    )


@st.composite
def admin_peers(draw: st.DrawFn, pod_ips: list[str], egress: bool) -> AdminPeer:
    kinds = ["namespaces", "pods", *(["networks", "nodes"] if egress else [])]
    kind = draw(st.sampled_from(kinds))
    if kind == "namespaces":
        return AdminPeer(namespace_selector=draw(ns_selectors()))
    if kind == "pods":
        return AdminPeer(
            namespace_selector=draw(ns_selectors()), pod_selector=draw(selectors())
        )
    if kind == "nodes":
        zone = draw(st.sampled_from([{}, {"zone": "a"}, {"zone": "b"}]))
        return AdminPeer(node_selector=LabelSelector(zone))
    cidrs = ["10.0.0.0/8", "10.0.1.0/24", "0.0.0.0/0", "10.100.0.0/24", "192.0.2.0/24", *(f"{ip}/32" for ip in pod_ips)]  # fmt: skip
    nets = draw(st.lists(st.sampled_from(cidrs), min_size=1, max_size=2, unique=True))
    return AdminPeer(networks=tuple(IPv4Network(n) for n in nets))


@st.composite
def admin_ports(draw: st.DrawFn) -> tuple[PolicyPort, ...]:
    """A rule's ports as topology.adminpolicy builds them (a named port: one per
    protocol)."""
    out: list[PolicyPort] = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["number", "range", "named"]))
        proto = draw(st.sampled_from([Protocol.TCP, Protocol.UDP, Protocol.SCTP]))
        if kind == "named":
            name = draw(st.sampled_from(["http", "dns", "sctp", "alt", "none"]))
            out += [
                PolicyPort(p, name) for p in (Protocol.TCP, Protocol.UDP, Protocol.SCTP)
            ]
        else:
            number = draw(st.sampled_from([79, 80, 81, 8080]))
            end = number + draw(st.integers(1, 2)) if kind == "range" else None
            out.append(PolicyPort(proto, number, end))
    return tuple(out)


@st.composite
def admin_rules(
    draw: st.DrawFn, pod_ips: list[str], egress: bool, baseline: bool
) -> AdminRule:
    actions = [AdminAction.ALLOW, AdminAction.DENY]
    if not baseline or draw(st.booleans()):  # a Baseline CNP may Pass too
        actions.append(AdminAction.PASS)
    peers = draw(st.lists(admin_peers(pod_ips, egress), min_size=1, max_size=2))
    if any(p.networks or p.node_selector is not None for p in peers):
        # the CRD's CEL rule: no named port with networks/nodes peers
        ports = tuple(p for p in draw(admin_ports()) if not isinstance(p.port, str))
    else:
        ports = draw(admin_ports())
    return AdminRule(draw(st.sampled_from(actions)), tuple(peers), ports, "r")


@st.composite
def admin_policies(
    draw: st.DrawFn, pod_ips: list[str], count: int
) -> list[AdminPolicy]:
    """ANPs, CNPs of both tiers and maybe the BANP, priorities often equal."""
    out: list[AdminPolicy] = []
    banp = False
    for i in range(count):
        kind = draw(st.sampled_from(list(ADMIN_KINDS)))
        if kind == "BaselineAdminNetworkPolicy" and banp:
            kind = "AdminNetworkPolicy"
        banp = banp or kind == "BaselineAdminNetworkPolicy"
        tier = {
            "AdminNetworkPolicy": Tier.ADMIN,
            "BaselineAdminNetworkPolicy": Tier.BASELINE,
        }.get(kind) or draw(st.sampled_from(list(Tier)))
        base = kind == "BaselineAdminNetworkPolicy"
        name = "default" if base else f"a{i}"
        priority = None if base else draw(st.integers(0, 2))
        if draw(st.booleans()):
            subject = AdminPeer(namespace_selector=draw(ns_selectors()))
        else:
            subject = AdminPeer(
                namespace_selector=draw(ns_selectors()), pod_selector=draw(selectors())
            )
        no_pass = base
        ingress = tuple(
            draw(st.lists(admin_rules(pod_ips, False, no_pass), max_size=2))
        )
        egress = tuple(draw(st.lists(admin_rules(pod_ips, True, no_pass), max_size=2)))
        if base:  # a BANP has no Pass
            ingress, egress = (
                tuple(r for r in rs if r.action is not AdminAction.PASS)
                for rs in (ingress, egress)
            )
        out.append(AdminPolicy(kind, name, tier, priority, subject, ingress, egress))
    return out


@st.composite
def clusters(
    draw: st.DrawFn, max_pods: int = 6, max_policies: int = 4, max_admin: int = 3
) -> Cluster:
    mode = draw(st.sampled_from(list(NetworkMode)))
    node_specs = tuple(
        replace(n, labels={"zone": draw(st.sampled_from(["a", "b"]))})
        for n in nodes(draw(st.integers(1, 3)))
    )
    ns_count = draw(st.integers(1, 3))
    namespaces: dict[str, Namespace] = {}
    for n in NS_NAMES[:ns_count]:
        team = draw(
            st.dictionaries(st.just("team"), st.sampled_from(VALUES), max_size=1)
        )
        namespaces[n] = Namespace(n, {"kubernetes.io/metadata.name": n, **team})
    pods: list[Pod] = []
    next_host = {n.name: 2 for n in node_specs}
    for i in range(draw(st.integers(1, max_pods))):
        node = draw(st.sampled_from(node_specs))
        host_network = draw(st.integers(0, 9)) == 0
        if host_network:
            ip = node.ip
        else:
            ip = node.pod_cidr.network_address + next_host[node.name]
            next_host[node.name] += 1
        ports = tuple(
            draw(st.lists(st.sampled_from(PORT_CHOICES), max_size=3, unique=True))
        )
        pods.append(
            Pod(
                draw(st.sampled_from(list(namespaces))),
                f"p{i}",
                node.name,
                ip,
                draw(labels_st),
                (Container("c", ports),),
                host_network=host_network,
            )
        )
    pod_ips = [str(p.ip) for p in pods if not p.host_network]
    policies: list[NetworkPolicy] = []
    for i in range(draw(st.integers(0, max_policies))):
        ingress = tuple(draw(st.lists(rules(pod_ips), max_size=2)))
        egress = tuple(draw(st.lists(rules(pod_ips), max_size=2)))
        types = draw(
            st.sampled_from([None, ("Ingress",), ("Egress",), ("Ingress", "Egress")])
        )
        ns = draw(st.sampled_from(list(namespaces)))
        policies.append(
            policy(f"{ns}/np{i}", draw(selectors()), ingress, egress, types)
        )
    externals = (External("ext", IPv4Address("192.0.2.10"), (PortSpec(80),)),)
    cfg = ClusterConfig(
        network=mode,
        nodes=node_specs,
        dns=False,
        externals=externals if draw(st.booleans()) else (),
    )
    admin = draw(admin_policies(pod_ips, draw(st.integers(0, max_admin))))
    return Cluster(
        cfg,
        namespaces,
        {p.key: p for p in pods},
        policies={p.key: p for p in policies},
        admin_policies={p.key: p for p in admin},
    )


COMBOS = [(80, Protocol.TCP), (81, Protocol.UDP), (80, Protocol.SCTP), (8080, Protocol.TCP), (None, Protocol.ICMP)]  # fmt: skip


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(clusters(), st.sampled_from(COMBOS))
def test_the_matrix_equals_walking_every_pair(
    cluster: Cluster, combo: tuple[int | None, Protocol]
) -> None:
    port, proto = combo
    sim = Simulator(cluster)
    names = [p.key for p in cluster.pods.values() if not p.host_network]
    fast = compute_matrix(sim, names, names, port, proto)
    walked = walk_matrix(sim, names, names, port, proto)
    assert compute_matrix(sim, names, names, port, proto).counts() == walked.counts()
    assert fast.grid() == walked.grid()
    assert fast.rows == walked.rows  # denied-egress and denied-ingress told apart too


@settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(clusters(max_pods=14, max_policies=8), st.sampled_from(COMBOS), st.data())
def test_larger_matrices_with_any_endpoints_equal_the_walk(
    cluster: Cluster, combo: tuple[int | None, Protocol], data: st.DataObject
) -> None:
    """Sources and targets drawn from every pod (hostNetwork too), node and external
    host, repeated and in any order: the cells, the counts read off the blocks and single
    cells all equal walking every pair."""
    port, proto = combo
    sim = Simulator(cluster)
    every = [
        *cluster.pods,
        *(f"node/{n.name}" for n in cluster.config.nodes),
        *(f"external/{e.name}" for e in cluster.config.externals),
    ]
    pick = st.lists(st.sampled_from(every), min_size=1, max_size=10)
    sources, targets = data.draw(pick), data.draw(pick)
    fast = compute_matrix(sim, sources, targets, port, proto)
    walked = walk_matrix(sim, sources, targets, port, proto)
    i, j = (
        data.draw(st.integers(0, len(sources) - 1)),
        data.draw(st.integers(0, len(targets) - 1)),
    )
    assert fast.verdict(i, j) is walked.verdict(i, j)
    assert fast.counts() == walked.counts()
    assert fast.rows == walked.rows


def test_the_grid_reads_like_the_upstream_e2e_tests() -> None:
    m = Matrix(["x/a", "x/b"], ["x/a", "x/b", "y/c"], [".EI", "R.."])
    assert m.grid().splitlines() == [
        "from \\ to  1 2 3",
        "1 x/a      . E I",
        "2 x/b      - . .",
        "           1 x/a",
        "           2 x/b",
        "           3 y/c",
        ". delivered",
        "E denied by egress policy (of the source)",
        "I denied by ingress policy (of the destination)",
        "- does not listen on this port (refused: RST, ICMP port unreachable, ABORT)",
    ]
    assert m.denied() == {("x/a", "x/b"), ("x/a", "y/c"), ("x/b", "x/a")}
    assert m.verdict(0, 1) is Verdict.DENIED_EGRESS
    assert m.counts() == {
        "delivered": 3,
        "denied-egress": 1,
        "denied-ingress": 1,
        "refused": 1,
    }


def test_mixed_endpoints_and_user_hooks_fall_back_to_walking() -> None:
    deny = policy("x/deny", LabelSelector({"pod": "a"}), types=("Ingress",))
    sim = Simulator(xyz(deny))
    sources = ["x/a", "node/node-2", "y/b"]
    targets = ["x/a", "external/vault", "y/c"]
    fast = compute_matrix(sim, sources, targets, 80, Protocol.TCP)
    assert fast.rows == walk_matrix(sim, sources, targets, 80, Protocol.TCP).rows
    assert fast.verdict(1, 0) is Verdict.DENIED_INGRESS  # node-2 is not x/a's node

    def no_udp(pkt: object, ctx: object) -> object:
        ip = getattr(pkt, "ip", None)
        return Drop("no UDP here") if ip is not None and ip.proto == 17 else ACCEPT

    sim.add_hook("FORWARD", no_udp, name="no-udp")  # type: ignore[arg-type]
    names = ["x/a", "y/b", "z/c"]
    fast = compute_matrix(sim, names, names, 81, Protocol.UDP)
    assert fast.rows == walk_matrix(sim, names, names, 81, Protocol.UDP).rows
    assert fast.verdict(1, 2) is Verdict.DROPPED


@pytest.mark.parametrize(
    ("sources", "to_x_a"),
    [
        (["node/node-1"], Verdict.DELIVERED),  # x/a's own node: always allowed
        (["external/vault", "node/node-2"], Verdict.DENIED_INGRESS),
        (["x/a", "node/node-1"], Verdict.DELIVERED),
    ],
    ids=["own-node", "external-and-node", "pod-and-node"],
)
def test_sources_that_are_not_pods_get_the_walks_verdicts(
    sources: list[str], to_x_a: Verdict
) -> None:
    """Regression: a matrix whose sources are all nodes or external hosts raised
    IndexError; their rows are the walk's."""
    deny = policy("x/deny", LabelSelector({"pod": "a"}), types=("Ingress",))
    sim = Simulator(xyz(deny))
    targets = ["x/a", "y/b", "z/c"]
    fast = compute_matrix(sim, sources, targets, 80, Protocol.TCP)
    walked = walk_matrix(sim, sources, targets, 80, Protocol.TCP)
    assert fast.rows == walked.rows
    assert fast.counts() == walked.counts()
    assert fast.verdict(len(sources) - 1, 0) is to_x_a


def test_a_named_port_resolves_on_each_destination() -> None:
    sim = Simulator(xyz())
    names = ["x/a", "y/b"]
    m = compute_matrix(sim, names, names, "serve-81-udp", Protocol.UDP)
    assert m.rows == walk_matrix(sim, names, names, "serve-81-udp", Protocol.UDP).rows
    # A destination without a TCP port of that name is a `-` column, not an abort.
    tcp = compute_matrix(sim, names, names, "serve-81-udp", Protocol.TCP)
    assert tcp.rows == ["--", "--"] == walk_matrix(sim, names, names, "serve-81-udp", Protocol.TCP).rows  # fmt: skip
    assert tcp.verdict(0, 0) is None and tcp.counts() == {"no-port": 4}
    assert tcp.legend() == {"-": "no port named 'serve-81-udp' on that pod"}


STEP_SCENARIO = """\
name: matrix step
cluster: {dns: false}
manifests:
  - {apiVersion: v1, kind: Pod, metadata: {name: a, labels: {app: a}}, spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: b, labels: {app: b}}, spec: {nodeName: node-2, containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}}
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: only-a}
    spec:
      podSelector: {matchLabels: {app: a}}
      ingress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]
steps:
  - matrix: {port: 80, expect: {denied: []}}
  - matrix: {port: 80, expect: {allowed: [default/a -> default/a, default/b -> default/b, default/a -> default/b]}}
  - matrix: {port: 80, expect: {denied: [default/a -> default/c]}}
"""


def test_a_matrix_step_says_which_cells_differ(tmp_path: Path) -> None:
    from dataplane.scenario import Runner
    from topology.errors import TopologyError
    from topology.loader import load_scenario

    f = tmp_path / "m.yaml"
    f.write_text(STEP_SCENARIO)
    scenario, _ = load_scenario(f)
    runner = Runner(scenario)
    wrong = runner.run_step(1, scenario.steps[0])
    assert wrong.ok is False
    assert (
        wrong.message
        == "default/b -> default/a: expected delivered, got denied-ingress"
    )
    assert (wrong.expected, wrong.actual) == (
        "0 pair(s) not delivered",
        "1 pair(s) not delivered",
    )
    grid = wrong.data["matrix"]["grid"]
    assert grid.splitlines()[1:3] == ["1 default/a  . .", "2 default/b  I ."]
    assert wrong.data["matrix"]["rows"] == ["..", "I."]
    right = runner.run_step(2, scenario.steps[1])
    assert right.ok is True
    with pytest.raises(
        TopologyError,
        match="matrix pair 'default/a -> default/c' is not a cell of this matrix",
    ):
        runner.run_step(3, scenario.steps[2])


PORT_QUERIES = [
    (port, proto)
    for proto in (Protocol.TCP, Protocol.UDP, Protocol.SCTP)
    for port in (79, 80, 81, 82, 8080, 8081, 1, 65535)
] + [(None, Protocol.ICMP)]


@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(clusters(max_pods=8, max_policies=6))
def test_the_admitted_ports_of_every_pair_agree_with_per_port_matrices(
    cluster: Cluster,
) -> None:
    """`port_table` (every protocol and port in one pass) says a port is admitted exactly
    when the one-port matrix does not deny it (E or I)."""
    sim = Simulator(cluster)
    names = [p.key for p in cluster.pods.values() if not p.host_network]
    table = port_table(sim, names, names)
    for port, proto in PORT_QUERIES:
        m = compute_matrix(sim, names, names, port, proto)
        for i in range(len(names)):
            for j in range(len(names)):
                denied = m.code(i, j) in "EI"
                admitted = admits(table.ports(i, j), proto, port)
                assert admitted is not denied, (names[i], names[j], port, proto)


def test_admitted_ports_merge_into_ranges() -> None:
    web = policy(
        "x/web",
        LabelSelector({"pod": "a"}),
        ingress=(
            PolicyRule(
                (),
                (
                    PolicyPort(Protocol.TCP, 80),
                    PolicyPort(Protocol.TCP, 81, 90),
                    PolicyPort(Protocol.UDP, "serve-81-udp"),
                ),
            ),
        ),
    )
    sim = Simulator(xyz(web))
    table = port_table(sim, ["y/b"], ["x/a", "x/b"])
    assert table.ports(0, 0) == (
        (Protocol.TCP, ((80, 90),)),
        (Protocol.UDP, ((81, 81),)),
    )
    assert table.ports(0, 1) == (
        (Protocol.TCP, ((1, 65535),)),
        (Protocol.UDP, ((1, 65535),)),
        (Protocol.SCTP, ((1, 65535),)),
        (Protocol.ICMP, ((0, 0),)),
    )
    with pytest.raises(ValueError, match="admitted ports are computed between pods"):
        port_table(sim, ["node/node-1"], ["x/a"])


@functools.cache
def _generated_cluster() -> tuple[Simulator, list[str]]:
    """The benchmarks' generated cluster (`bench.clusters`: every peer and port form,
    admin policies of every tier), small: loaded from its YAML like the benchmarks'."""
    from bench.clusters import cluster_yaml
    from topology.loader import load_scenario_text

    scenario, _ = load_scenario_text(cluster_yaml(400, 160, nodes=4, admin=12))
    names = [p.key for p in scenario.cluster.pods.values() if not p.host_network]
    assert len(names) == 400
    return Simulator(scenario.cluster), names


@functools.cache
def _generated(port: int) -> Matrix:
    sim, names = _generated_cluster()
    return compute_matrix(sim, names, names, port, Protocol.TCP)


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(st.sampled_from([8080, 5432, 6379]), st.integers(0, 399), st.integers(0, 399))
def test_a_generated_cluster_of_400_pods_agrees_with_the_walk(
    port: int, i: int, j: int
) -> None:
    """At the benchmarks' shape (40 namespaces, 160 policies, 12 admin policies), each
    cell read off the blocks, its row and the counts equal the walk of that pair."""
    (sim, names), m = _generated_cluster(), _generated(port)
    walked = sim.probe(names[i], names[j], port, Protocol.TCP, capture=False)
    assert m.code(i, j) == CODE[walked.verdict or Verdict.DROPPED]
    assert m.rows[i][j] == m.code(i, j)
    assert sum(m.counts().values()) == len(names) ** 2
