"""The admin policy tiers of network-policy-api (AdminNetworkPolicy, the
BaselineAdminNetworkPolicy, ClusterNetworkPolicy) from YAML to verdicts: each action of
each tier, priorities, Pass, rule order, ports, node and network peers, the explanation,
validation errors (exact messages) and apply/delete steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dataplane import netpol_text
from dataplane.matrix import compute_matrix
from dataplane.netpol import egress_decision, ingress_decision
from dataplane.sim import Simulator
from dataplane.trace import Verdict
from topology.errors import TopologyError
from topology.loader import load_scenario
from topology.model import Cluster, Protocol

# x/a (app=a) listens on TCP 80 (http), TCP 443, UDP 53 (dns), on node-2; x/b and y/c
# (team=y) are clients; node-2 is labelled zone=b.
BASE = """\
name: tiers
cluster:
  dns: false
  nodes: [{name: node-1, labels: {zone: a}}, {name: node-2, labels: {zone: b}}]
  externals: [{name: ext, ip: 192.0.2.10, ports: [{port: 80}]}]
manifests:
  - {kind: Namespace, metadata: {name: x, labels: {team: x}}}
  - {kind: Namespace, metadata: {name: y, labels: {team: y}}}
  - kind: Pod
    metadata: {name: a, namespace: x, labels: {app: a}}
    spec:
      nodeName: node-2
      containers:
        - name: c
          ports:
            - {containerPort: 80, name: http}
            - {containerPort: 443}
            - {containerPort: 53, protocol: UDP, name: dns}
  - {kind: Pod, metadata: {name: b, namespace: x}, spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}}
  - {kind: Pod, metadata: {name: c, namespace: y}, spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}}
"""
STEPS = """\
steps:
  - probe: {from: x/b, to: x/a, port: 80}
"""
ANP = "policy.networking.k8s.io/v1alpha1"
CNP = "policy.networking.k8s.io/v1alpha2"


def cluster_of(tmp_path: Path, objects: str) -> Cluster:
    f = tmp_path / "tiers.yaml"
    f.write_text(BASE + objects + STEPS)
    scenario, _ = load_scenario(f)
    return scenario.cluster


def verdict(
    cluster: Cluster, src: str, dst: str, port: int | None, proto: str = "TCP"
) -> Verdict:
    trace = Simulator(cluster).probe(src, dst, port, Protocol(proto))
    assert trace.verdict is not None
    return trace.verdict


def admin(kind: str, name: str, fields: str, ingress: str, egress: str) -> str:
    """An admin policy object; `fields`: its spec's lines before the rules."""
    out = f"""\
  - apiVersion: {ANP}
    kind: {kind}
    metadata: {{name: {name}}}
    spec:
{fields}"""
    if ingress:
        out += "      ingress:\n" + ingress
    if egress:
        out += "      egress:\n" + egress
    return out


def anp(
    name: str, priority: int, subject: str, ingress: str = "", egress: str = ""
) -> str:
    fields = f"      priority: {priority}\n      subject: {subject}\n"
    return admin("AdminNetworkPolicy", name, fields, ingress, egress)


def banp(subject: str, ingress: str = "", egress: str = "") -> str:
    fields = f"      subject: {subject}\n"
    return admin("BaselineAdminNetworkPolicy", "default", fields, ingress, egress)


def np(name: str, spec: str) -> str:
    return f"""\
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {{name: {name}, namespace: x}}
    spec:
{spec}"""


X = "{namespaces: {matchLabels: {team: x}}}"
A = "{pods: {namespaceSelector: {matchLabels: {team: x}}, podSelector: {matchLabels: {app: a}}}}"
EVERYONE = "[{namespaces: {}}]"
ALLOW_FROM_B_80 = np(
    "allow-b",
    "      podSelector: {matchLabels: {app: a}}\n"
    "      ingress: [{from: [{podSelector: {}}], ports: [{port: 80}]}]\n",
)


def rule(
    action: str,
    peers: str = EVERYONE,
    name: str = "",
    ports: str = "",
    key: str = "from",
) -> str:
    out = f"        - action: {action}\n          {key}: {peers}\n"
    if name:
        out += f"          name: '{name}'\n"
    if ports:
        out += f"          ports: {ports}\n"
    return out


# -- the Admin tier ----------------------------------------------------------------------
def test_an_anp_deny_overrides_a_networkpolicy_allow(tmp_path: Path) -> None:
    c = cluster_of(
        tmp_path, ALLOW_FROM_B_80 + anp("deny", 10, A, rule("Deny", name="no"))
    )
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DENIED_INGRESS
    trace = Simulator(c).probe("x/b", "x/a", 80)
    assert trace.policy == "AdminNetworkPolicy/deny"


def test_an_anp_allow_overrides_a_networkpolicy_deny(tmp_path: Path) -> None:
    isolate = np("deny-all", "      podSelector: {}\n      policyTypes: [Ingress]\n")
    c = cluster_of(
        tmp_path,
        isolate + anp("ok", 1, A, rule("Allow", ports="[{portNumber: {port: 80}}]")),
    )
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DELIVERED
    assert verdict(c, "x/b", "x/a", 443) is Verdict.DENIED_INGRESS  # NetworkPolicy's


def test_a_lower_priority_number_goes_first(tmp_path: Path) -> None:
    objects = anp("allow", 5, A, rule("Allow")) + anp("deny", 6, A, rule("Deny"))
    assert verdict(cluster_of(tmp_path, objects), "x/b", "x/a", 80) is Verdict.DELIVERED
    objects = anp("allow", 7, A, rule("Allow")) + anp("deny", 6, A, rule("Deny"))
    assert (
        verdict(cluster_of(tmp_path, objects), "x/b", "x/a", 80)
        is Verdict.DENIED_INGRESS
    )


def test_equal_priorities_go_by_name(tmp_path: Path) -> None:
    """Upstream leaves it undefined; here the name decides (docs/model.md)."""
    objects = anp("b-deny", 5, A, rule("Deny")) + anp("a-allow", 5, A, rule("Allow"))
    assert verdict(cluster_of(tmp_path, objects), "x/b", "x/a", 80) is Verdict.DELIVERED


def test_the_first_matching_rule_of_a_policy_wins(tmp_path: Path) -> None:
    rules = rule("Allow", ports="[{portNumber: {port: 443}}]") + rule("Deny")
    c = cluster_of(tmp_path, anp("p", 5, A, rules))
    assert verdict(c, "x/b", "x/a", 443) is Verdict.DELIVERED
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DENIED_INGRESS


def test_pass_delegates_to_networkpolicy_then_the_baseline(tmp_path: Path) -> None:
    passing = anp(
        "pass", 1, A, rule("Pass", "[{namespaces: {matchLabels: {team: x}}}]")
    )
    deny_rest = anp("deny", 2, A, rule("Deny"))
    c = cluster_of(tmp_path, passing + deny_rest)
    assert verdict(c, "y/c", "x/a", 80) is Verdict.DENIED_INGRESS  # not passed: denied
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DELIVERED  # passed, nothing isolates
    base = banp(A, rule("Deny"))
    c = cluster_of(tmp_path, passing + deny_rest + base)
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DENIED_INGRESS  # the baseline's deny
    c = cluster_of(tmp_path, passing + deny_rest + base + ALLOW_FROM_B_80)
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DELIVERED  # NetworkPolicy decides


# -- the Baseline tier ------------------------------------------------------------------
def test_the_baseline_applies_only_where_no_networkpolicy_isolates(
    tmp_path: Path,
) -> None:
    base = banp(X, rule("Deny"))
    c = cluster_of(tmp_path, base)
    assert verdict(c, "y/c", "x/a", 80) is Verdict.DENIED_INGRESS
    c = cluster_of(tmp_path, base + ALLOW_FROM_B_80)
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DELIVERED  # x/a isolated: NP decides
    assert verdict(c, "y/c", "x/b", 80) is Verdict.DENIED_INGRESS  # x/b: the baseline


def test_baseline_allow_before_deny(tmp_path: Path) -> None:
    rules = rule("Allow", "[{namespaces: {matchLabels: {team: y}}}]") + rule("Deny")
    c = cluster_of(tmp_path, banp(A, rules))
    assert verdict(c, "y/c", "x/a", 80) is Verdict.DELIVERED
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DENIED_INGRESS


def test_a_cnp_in_each_tier(tmp_path: Path) -> None:
    def cnp(name: str, tier: str, priority: int, action: str) -> str:
        return f"""\
  - apiVersion: {CNP}
    kind: ClusterNetworkPolicy
    metadata: {{name: {name}}}
    spec:
      tier: {tier}
      priority: {priority}
      subject: {{pods: {{podSelector: {{matchLabels: {{app: a}}}}}}}}
      ingress:
        - action: {action}
          from: [{{namespaces: {{}}}}]
          protocols: [{{tcp: {{destinationPort: {{range: {{start: 80, end: 100}}}}}}}}]
"""

    c = cluster_of(tmp_path, cnp("deny", "Baseline", 0, "Deny"))
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DENIED_INGRESS
    assert verdict(c, "x/b", "x/a", 443) is Verdict.DELIVERED  # outside the range
    c = cluster_of(
        tmp_path, cnp("deny", "Baseline", 0, "Deny") + cnp("ok", "Admin", 9, "Accept")
    )
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DELIVERED
    c = cluster_of(
        tmp_path,
        cnp("pass", "Admin", 0, "Pass")
        + cnp("ok", "Admin", 9, "Accept")
        + cnp("deny", "Baseline", 0, "Deny"),
    )
    assert (
        verdict(c, "x/b", "x/a", 80) is Verdict.DENIED_INGRESS
    )  # passed to the baseline


# -- ports and peers --------------------------------------------------------------------
def test_named_ports_resolve_on_the_destination_whatever_their_protocol(
    tmp_path: Path,
) -> None:
    rules = rule("Allow", ports="[{namedPort: dns}, {namedPort: http}]") + rule("Deny")
    c = cluster_of(tmp_path, anp("named", 3, A, rules))
    assert verdict(c, "x/b", "x/a", 53, "UDP") is Verdict.DELIVERED
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DELIVERED
    assert verdict(c, "x/b", "x/a", 443) is Verdict.DENIED_INGRESS
    assert verdict(c, "x/b", "x/a", 53) is Verdict.DENIED_INGRESS  # TCP 53 is not dns


def test_port_ranges(tmp_path: Path) -> None:
    ports = "[{portRange: {start: 400, end: 443}}]"
    c = cluster_of(tmp_path, anp("range", 3, A, rule("Deny", ports=ports)))
    assert verdict(c, "x/b", "x/a", 443) is Verdict.DENIED_INGRESS
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DELIVERED


def test_network_peers_match_any_address_pods_included(tmp_path: Path) -> None:
    egress = rule("Deny", "[{networks: [192.0.2.0/24, 10.0.2.0/24]}]", key="to")
    c = cluster_of(tmp_path, anp("nets", 3, "{namespaces: {}}", egress=egress))
    assert verdict(c, "x/b", "external/ext", 80) is Verdict.DENIED_EGRESS
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DENIED_EGRESS  # x/a is 10.0.2.x
    assert verdict(c, "x/b", "y/c", 80) is Verdict.DELIVERED  # same node-1 subnet


def test_node_peers_select_node_addresses_by_label(tmp_path: Path) -> None:
    egress = rule("Deny", "[{nodes: {matchLabels: {zone: b}}}]", key="to")
    c = cluster_of(tmp_path, anp("nodes", 3, "{namespaces: {}}", egress=egress))
    b = c.pods["x/b"]
    to_node2 = egress_decision(c, b, "10.100.0.3", 22, Protocol.TCP)
    assert not to_node2.allowed and to_node2.tier == "Admin"
    assert egress_decision(c, c.pods["x/a"], "10.100.0.2", 22, Protocol.TCP).allowed
    # a pod is not a node, even on node-2
    assert egress_decision(c, b, str(c.pods["x/a"].ip), 80, Protocol.TCP).allowed


def test_every_direction_is_judged_egress_of_the_source_and_ingress_of_the_destination(
    tmp_path: Path,
) -> None:
    egress = rule("Deny", f"[{A}]", key="to")
    c = cluster_of(
        tmp_path, anp("out", 3, "{namespaces: {matchLabels: {team: y}}}", egress=egress)
    )
    assert verdict(c, "y/c", "x/a", 80) is Verdict.DENIED_EGRESS
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DELIVERED


# -- the explanation -------------------------------------------------------------------
def test_explain_names_tier_policy_priority_rule_and_why_earlier_rules_did_not_decide(
    tmp_path: Path,
) -> None:
    rules = rule("Allow", name="web", ports="[{portNumber: {port: 80}}]") + rule(
        "Deny", name="deny-all"
    )
    c = cluster_of(tmp_path, anp("a", 5, A, rules))
    d = ingress_decision(c, c.pods["x/a"], str(c.pods["x/b"].ip), 443, Protocol.TCP)
    assert netpol_text.explain(d) == (
        "denied by ANP 'a' (priority 5) ingress rule 1 'deny-all' (Deny) peer 0 "
        "(namespaces {}); before it, ANP 'a' (priority 5) ingress rule 0 'web' did not "
        "match: TCP 443 is not among its ports (TCP 80)"
    )
    d = ingress_decision(c, c.pods["x/a"], str(c.pods["x/b"].ip), 80, Protocol.TCP)
    assert netpol_text.summary(d) == (
        "ingress of x/a: allowed by ANP 'a' (priority 5) ingress rule 0 'web' (Allow) "
        "peer 0 (namespaces {}), ports TCP 80 -> accept"
    )


def test_explain_says_what_passed_and_what_the_baseline_did(tmp_path: Path) -> None:
    passing = anp(
        "p",
        1,
        A,
        rule("Pass", "[{namespaces: {matchLabels: {team: y}}}]", name="to-np"),
    )
    c = cluster_of(tmp_path, passing + banp(A, rule("Deny", name="rest")))
    d = ingress_decision(c, c.pods["x/a"], str(c.pods["y/c"].ip), 80, Protocol.TCP)
    assert netpol_text.explain(d) == (
        "ANP 'p' (priority 1) ingress rule 0 'to-np' (Pass) peer 0 (namespaces "
        "team=y) passes to NetworkPolicy; denied by BANP 'default' ingress rule 0 "
        "'rest' (Deny) peer 0 (namespaces {}) (x/a is not isolated by any "
        "NetworkPolicy for ingress)"
    )
    d = ingress_decision(c, c.pods["x/a"], str(c.pods["x/b"].ip), 80, Protocol.TCP)
    assert (
        "ANP 'p' (priority 1) ingress rule 0 'to-np' did not match: peer 0 (namespaces team=y): namespace x has team=x, not team=y"
        in netpol_text.explain(d)
    )


def test_the_cli_explains_an_admin_decision(tmp_path: Path) -> None:
    f = tmp_path / "tiers.yaml"
    f.write_text(BASE + anp("deny", 10, A, rule("Deny", name="no")) + STEPS)
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dataplane.cli import main; main()",
            "explain",
            str(f),
            "--from",
            "x/b",
            "--to",
            "x/a",
            "--port",
            "80",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1, r.stderr
    assert (
        "denied by ANP 'deny' (priority 10) ingress rule 0 'no' (Deny)"
        in r.stdout.replace("\n", " ")
    )


def test_the_matrix_honours_the_tiers(tmp_path: Path) -> None:
    c = cluster_of(
        tmp_path,
        anp("deny", 10, A, rule("Deny", "[{namespaces: {matchLabels: {team: y}}}]")),
    )
    sim = Simulator(c)
    m = compute_matrix(sim, ["x/b", "y/c"], ["x/a"], 80, Protocol.TCP)
    assert m.rows == [".", "I"]


# -- apply and delete -------------------------------------------------------------------
def test_apply_and_delete_steps(tmp_path: Path) -> None:
    f = tmp_path / "steps.yaml"
    f.write_text(
        BASE
        + f"""\
steps:
  - probe: {{from: x/b, to: x/a, port: 80, expect: delivered}}
  - apply:
      - apiVersion: {ANP}
        kind: AdminNetworkPolicy
        metadata: {{name: deny}}
        spec:
          priority: 1
          subject: {A}
          ingress: [{{action: Deny, from: {EVERYONE}}}]
  - probe: {{from: x/b, to: x/a, port: 80, expect: {{verdict: denied-ingress, policy: AdminNetworkPolicy/deny}}}}
  - delete: [anp/deny]
  - probe: {{from: x/b, to: x/a, port: 80, expect: delivered}}
"""
    )
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dataplane.cli import main; main()",
            "test",
            str(f),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_delete_of_a_missing_admin_policy(tmp_path: Path) -> None:
    from topology.change import delete

    c = cluster_of(tmp_path, anp("deny", 1, A, rule("Deny")))
    with pytest.raises(TopologyError) as err:
        delete(c, ["anp/nope"])
    assert (
        str(err.value)
        == "delete 'anp/nope': no AdminNetworkPolicy 'nope' (AdminNetworkPolicys: deny)"
    )


# -- validation as the API server does it ----------------------------------------------
# (id, the object, the line of the error within it, field, the message)
INVALID = [
    ("priority above 1000", anp("p", 1001, A, rule("Deny")), 5, "spec.priority",
     "1001 is out of range (allowed: <= 1000)"),
    ("two subject fields", anp("p", 1, "{namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}", rule("Deny")), 6, "spec.subject",
     "exactly one of namespaces, pods must be set (got namespaces, pods)"),
    ("no peer field", anp("p", 1, A, rule("Deny", "[{}]")), 9, "spec.ingress[0].from[0]",
     "exactly one of namespaces, pods must be set (got none)"),
    ("two peer fields", anp("p", 1, A, egress=rule("Deny", "[{networks: [10.0.0.0/8], nodes: {}}]", key="to")), 9, "spec.egress[0].to[0]",
     "exactly one of namespaces, pods, nodes, networks, domainNames must be set (got nodes, networks)"),
    ("Pass in a BANP", banp(A, rule("Pass")), 7, "spec.ingress[0].action",
     "'Pass' is not allowed (allowed: Allow, Deny)"),
    ("empty from", anp("p", 1, A, rule("Deny", "[]")), 9, "spec.ingress[0].from",
     "at least 1 item(s) required"),
    ("a bad CIDR", anp("p", 1, A, egress=rule("Deny", "[{networks: [10.0.0.0/33]}]", key="to")), 9, "spec.egress[0].to[0].networks[0]",
     "'10.0.0.0/33': Invalid CIDR format provided (an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8)"),
    ("named port with networks", anp("p", 1, A, egress=rule("Deny", "[{networks: [10.0.0.0/8]}]", key="to", ports="[{namedPort: http}]")), 9, "spec.egress[0].to",
     "networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for networks/nodes/domainNames"),
    ("port range backwards", anp("p", 1, A, rule("Deny", ports="[{portRange: {start: 90, end: 80}}]")), 10, "spec.ingress[0].ports[0].portRange",
     "Start port must be less than End port (start 90, end 80)"),
    ("two port fields", anp("p", 1, A, rule("Deny", ports="[{portNumber: {port: 80}, namedPort: http}]")), 10, "spec.ingress[0].ports[0]",
     "exactly one of portNumber, namedPort, portRange must be set (got portNumber, namedPort)"),
    ("unknown action", anp("p", 1, A, rule("Drop")), 8, "spec.ingress[0].action",
     "'Drop' is not allowed (allowed: Allow, Deny, Pass)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("objects", "line", "field", "what"),
    [c[1:] for c in INVALID],
    ids=[c[0] for c in INVALID],
)
def test_validation_errors(
    tmp_path: Path, objects: str, line: int, field: str, what: str
) -> None:
    f = tmp_path / "tiers.yaml"
    f.write_text(BASE + objects + STEPS)
    with pytest.raises(TopologyError) as err:
        load_scenario(f)
    first = BASE.count(
        "\n"
    )  # the object's lines follow BASE's (line: 1-based within it)
    kind = (
        "BaselineAdminNetworkPolicy default"
        if "Baseline" in objects
        else "AdminNetworkPolicy p"
    )
    assert str(err.value) == f"{f}:{first + line}: {kind}: {field}: {what}"


def test_more_than_100_rules_are_rejected(tmp_path: Path) -> None:
    rules = "".join(rule("Deny") for _ in range(101))
    f = tmp_path / "tiers.yaml"
    f.write_text(BASE + anp("p", 1, A, rules) + STEPS)
    with pytest.raises(TopologyError) as err:
        load_scenario(f)
    assert str(err.value).endswith(
        "AdminNetworkPolicy p: spec.ingress: at most 100 item(s) required"
    )


def test_the_banp_is_named_default(tmp_path: Path) -> None:
    f = tmp_path / "tiers.yaml"
    f.write_text(
        BASE + banp(A, rule("Deny")).replace("{name: default}", "{name: base}") + STEPS
    )
    with pytest.raises(TopologyError) as err:
        load_scenario(f)
    assert str(err.value).endswith(
        "BaselineAdminNetworkPolicy base: metadata.name: 'base': Only one baseline admin "
        'network policy with metadata.name="default" can be created in the cluster'
    )


HEADLESS = """\
  - {kind: Service, metadata: {name: db, namespace: y}, spec: {clusterIP: None, selector: {app: db}, ports: [{port: 80}]}}
  - {kind: Service, metadata: {name: web, namespace: x}, spec: {selector: {app: a}, ports: [{port: 80}]}}
  - {kind: Pod, metadata: {name: db, namespace: y, labels: {app: db}}, spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 80}]}]}}
"""


def fqdn(tmp_path: Path, names: str) -> Cluster:
    """x/b may reach `names` only (an Allow of a domainNames peer, then Deny all)."""
    egress = rule("Allow", f"[{{domainNames: {names}}}]", key="to") + rule(
        "Deny", "[{networks: [0.0.0.0/0]}]", key="to"
    )
    subject = "{pods: {namespaceSelector: {}, podSelector: {matchExpressions: [{key: app, operator: DoesNotExist}]}}}"
    return cluster_of(tmp_path, HEADLESS + anp("fqdn", 1, subject, egress=egress))


@pytest.mark.parametrize(
    ("names", "delivered"),
    [
        # a headless Service's name: its pods' addresses (NPEP-133 "Supported")
        ("[db.y.svc.cluster.local]", {"y/db"}),
        ("['DB.y.svc.cluster.local.']", {"y/db"}),  # case and the root's dot
        # `*.` matches one or more whole labels before the name
        ("['*.y.svc.cluster.local']", {"y/db"}),
        ("['*.svc.cluster.local']", {"y/db"}),
        ("['*.db.y.svc.cluster.local']", set()),
        # a pod's own record (`pods insecure`: A-B-C-D.NS.pod.DOMAIN)
        ("[TARGET.x.pod.cluster.local]", {"x/a"}),
        # ... of which a wildcard over NS.pod.DOMAIN covers every address
        ("['*.x.pod.cluster.local']", {"x/a", "y/db", "192.0.2.10"}),
        # a ClusterIP Service answers its ClusterIP, which no policy sees after DNAT
        ("[web.x.svc.cluster.local]", set()),
        # no upstream resolver: NXDOMAIN, no address
        ("[example.com, '*.example.com']", set()),
    ],
)
def test_domain_names_match_what_the_cluster_dns_answers(
    tmp_path: Path, names: str, delivered: set[str]
) -> None:
    probe = cluster_of(tmp_path, "")
    target = str(probe.pods["x/a"].ip).replace(".", "-")
    c = fqdn(tmp_path, names.replace("TARGET", target))
    for dst in ("x/a", "y/db", "192.0.2.10"):
        want = Verdict.DELIVERED if dst in delivered else Verdict.DENIED_EGRESS
        assert verdict(c, "x/b", dst, 80) is want, dst
    m = compute_matrix(
        Simulator(c), ["x/b"], ["x/a", "y/db", "192.0.2.10"], 80, Protocol.TCP
    )
    assert m.rows == [
        "".join("." if d in delivered else "E" for d in ("x/a", "y/db", "192.0.2.10"))
    ]


def test_a_domain_names_miss_is_explained(tmp_path: Path) -> None:
    c = fqdn(tmp_path, "[db.y.svc.cluster.local]")
    d = egress_decision(c, c.pods["x/b"], str(c.pods["x/a"].ip), 80, Protocol.TCP)
    assert not d.allowed
    text = netpol_text.explain(d)
    assert (
        f"{c.pods['x/a'].ip} is not an address the cluster's DNS answers for "
        "db.y.svc.cluster.local" in text
    ), text


def test_the_cli_exits_2_without_a_traceback(tmp_path: Path) -> None:
    f = tmp_path / "tiers.yaml"
    f.write_text(BASE + INVALID[0][1] + STEPS)
    r = subprocess.run(
        [sys.executable, "-c", "from dataplane.cli import main; main()", "run", str(f)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2
    assert "spec.priority: 1001 is out of range" in r.stderr.replace("\n", "")
    assert "Traceback" not in r.stderr


def test_connlist_honours_network_peers_to_external_ranges(tmp_path: Path) -> None:
    from dataplane.connlist import connlist, format_ports

    egress = rule(
        "Deny", "[{networks: [192.0.2.0/24]}]", key="to",
        ports="[{portNumber: {port: 80}}]",
    )  # fmt: skip
    c = cluster_of(tmp_path, anp("nets", 3, X, egress=egress))
    found = {(x.src, x.dst): format_ports(x.ports) for x in connlist(Simulator(c))}
    assert found[("x/b[Pod]", "192.0.2.0-192.0.2.255")] == (
        "TCP 1-79,81-65535; UDP 1-65535; SCTP 1-65535; ICMP"
    )
    assert found[("y/c[Pod]", "192.0.2.0-192.0.2.255")] == "All Connections"


def test_hairpin_through_a_service_is_subject_to_the_tiers_a_pod_to_itself_is_not(
    tmp_path: Path,
) -> None:
    """site-src/api-overview.md: "A Pod connecting to its own Pod IP is not subject to
    CNP. A Pod connecting to a Service IP that the service proxy load-balances back to
    the same Pod is subject to ClusterNetworkPolicy"."""
    svc = """\
  - {kind: Service, metadata: {name: web, namespace: x}, spec: {selector: {app: a}, ports: [{port: 80}]}}
"""
    c = cluster_of(tmp_path, svc + anp("deny", 1, A, rule("Deny")))
    assert verdict(c, "x/a", "svc/x/web", 80) is Verdict.DENIED_INGRESS
    assert verdict(c, "x/a", "x/a", 80) is Verdict.DELIVERED


def test_dataplane_import_keeps_admin_policies(tmp_path: Path) -> None:
    """A dump (`kubectl get ...,anp,banp -A -o yaml`) keeps them: they load and decide."""
    dump = tmp_path / "dump.yaml"
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "kind-dump.yaml"
    listing = yaml.safe_load(fixture.read_text())
    listing["items"].append(
        {
            "apiVersion": ANP,
            "kind": "AdminNetworkPolicy",
            "metadata": {"name": "deny-all", "resourceVersion": "7"},
            "spec": {
                "priority": 3,
                "subject": {"namespaces": {}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
            },
        }
    )
    dump.write_text(yaml.safe_dump(listing))
    r = subprocess.run(
        [sys.executable, "-c", "from dataplane.cli import main; main()", "import", str(dump), "-o", "kind.yaml"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    scenario, _ = load_scenario(tmp_path / "kind.yaml")
    assert list(scenario.cluster.admin_policies) == ["AdminNetworkPolicy/deny-all"]


def test_explain_all_judges_the_tiers(tmp_path: Path) -> None:
    from dataplane.explain_all import decide_all
    from dataplane.explain_tiers import TierDecisions

    c = cluster_of(tmp_path, ALLOW_FROM_B_80 + anp("deny", 1, A, rule("Deny")))
    found = decide_all(c, 80, Protocol.TCP)
    assert isinstance(found, TierDecisions)
    got = {(s.key, d.key): (p.verdict, p.deciding.tier, p.deciding.policy)
           for s, d, p in found.pairs()}  # fmt: skip
    deny = ("denied-ingress", "Admin", "AdminNetworkPolicy/deny")
    assert got[("x/b", "x/a")] == got[("y/c", "x/a")] == deny
    assert got[("x/a", "y/c")] == ("allowed", None, None)
    assert len(got) == 6


def test_an_ipv6_network_matches_no_address_in_the_walk_matrix_or_connlist(
    tmp_path: Path,
) -> None:
    """`networks` takes IPv4 or IPv6 CIDRs (apis/v1alpha2 `CIDR`); the cluster is
    IPv4-only, so `::/0` must never match (its all-zero mask would match every IPv4
    address if it were read as one)."""
    from dataplane.connlist import connlist, format_ports

    egress = rule("Deny", '[{networks: ["::/0", "fd00::1/8"]}]', key="to")
    c = cluster_of(tmp_path, anp("v6", 3, X, egress=egress))
    (peer,) = c.admin_policies["AdminNetworkPolicy/v6"].egress[0].peers
    assert [str(n) for n in peer.networks] == ["::/0", "fd00::/8"]
    assert verdict(c, "x/b", "x/a", 80) is Verdict.DELIVERED
    assert verdict(c, "x/b", "192.0.2.10", 80) is Verdict.DELIVERED
    sim = Simulator(c)
    m = compute_matrix(sim, ["x/b", "y/c"], ["x/a", "192.0.2.10"], 80, Protocol.TCP)
    assert m.rows == ["..", ".."]
    found = {(x.src, x.dst): format_ports(x.ports) for x in connlist(sim)}
    assert found[("x/b[Pod]", "x/a[Pod]")] == "All Connections"
    assert set(found.values()) == {"All Connections"}


def test_diff_explain_names_the_admin_policy_change(tmp_path: Path) -> None:
    """`diff --explain` names the admin policy behind a difference: kind, name, tier,
    priority, and the rule that matches in each version, with its action and ports."""
    from dataplane.conndiff import conndiff

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    deny = rule("Deny", "[{namespaces: {matchLabels: {team: y}}}]", name="no-y")
    before = cluster_of(
        tmp_path / "a", anp("guard", 20, A, rule("Pass", name="owners"))
    )
    after = cluster_of(tmp_path / "b", anp("guard", 5, A, deny))
    d = conndiff(before, after, explain=True)
    (change,) = d.changes
    assert (change.kind, change.src, change.dst) == ("removed", "y/c[Pod]", "x/a[Pod]")
    assert change.why == (
        "adminnetworkpolicy guard changed (ingress of x/a[Pod]: before, ANP 'guard' "
        "(priority 20) Admin tier: ingress rule 0 'owners' (Pass) matches All "
        "Connections; after, ANP 'guard' (priority 5) Admin tier: ingress rule 0 "
        "'no-y' (Deny) matches All Connections)",
    )
    added = conndiff(cluster_of(tmp_path / "a", ""), after, explain=True).changes[0].why
    assert added == (
        "adminnetworkpolicy guard added (ingress of x/a[Pod]: after, ANP 'guard' "
        "(priority 5) Admin tier: ingress rule 0 'no-y' (Deny) matches All "
        "Connections)",
    )
