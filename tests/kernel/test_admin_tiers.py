"""The admin policy tiers on the kernel (`dataplane.kernel.policies`): the chains they
compile to, without root, and the verdicts Linux gives with them, against the simulator's.

AdminNetworkPolicy and ClusterNetworkPolicy `tier: Admin` by priority (Allow/Accept, Deny,
Pass), then NetworkPolicy, then, only where NetworkPolicy does not isolate the pod, the
BaselineAdminNetworkPolicy and ClusterNetworkPolicy `tier: Baseline`."""

from __future__ import annotations

from typing import Any

import pytest

from dataplane.fabric import build_fabric
from dataplane.kernel import nft
from dataplane.kernel.policies import add_policy_rules
from dataplane.kernel.report import AGREE
from topology.loader import load_scenario_text
from topology.model import Protocol
from topology.scenario import Verdict

# Pass at priority 10 before a Deny at 20, Allow at 10 before it too; a NetworkPolicy
# isolating ten/web; a BANP that denies everything to ten's pods it reaches.
TIERS = """
name: kernel-admin-tiers
cluster: {network: vxlan, dns: false}
manifests:
  - {kind: Namespace, metadata: {name: ten, labels: {tenant: t}}}
  - {kind: Namespace, metadata: {name: other, labels: {tenant: o}}}
  - {kind: Namespace, metadata: {name: mon}}
  - kind: Pod
    metadata: {name: web, namespace: ten, labels: {app: web}}
    spec: {nodeName: node-2, containers: [{name: c, image: x, ports: [
      {containerPort: 80, name: http}, {containerPort: 8080}]}]}
  - kind: Pod
    metadata: {name: db, namespace: ten, labels: {app: db}}
    spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [
      {containerPort: 80}, {containerPort: 8080}]}]}
  - kind: Pod
    metadata: {name: cli, namespace: other}
    spec: {nodeName: node-1, containers: [{name: c, image: x}]}
  - kind: Pod
    metadata: {name: prom, namespace: mon}
    spec: {nodeName: node-1, containers: [{name: c, image: x}]}
  - kind: NetworkPolicy
    metadata: {name: web, namespace: ten}
    spec:
      podSelector: {matchLabels: {app: web}}
      ingress:
        - from: [{namespaceSelector: {}}]
          ports: [{port: http}]
  - apiVersion: policy.networking.k8s.io/v1alpha1
    kind: AdminNetworkPolicy
    metadata: {name: first}
    spec:
      priority: 10
      subject: {namespaces: {matchLabels: {tenant: t}}}
      ingress:
        - name: owners-decide-for-mon
          action: Pass
          from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: mon}}}]
        - name: other-on-8080
          action: Allow
          from: [{namespaces: {matchLabels: {tenant: o}}}]
          ports: [{portNumber: {protocol: TCP, port: 8080}}]
  - apiVersion: policy.networking.k8s.io/v1alpha1
    kind: AdminNetworkPolicy
    metadata: {name: second}
    spec:
      priority: 20
      subject: {namespaces: {matchLabels: {tenant: t}}}
      ingress:
        - name: no-mon
          action: Deny
          from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: mon}}}]
        - name: no-other
          action: Deny
          from: [{namespaces: {matchLabels: {tenant: o}}}]
  - apiVersion: policy.networking.k8s.io/v1alpha1
    kind: BaselineAdminNetworkPolicy
    metadata: {name: default}
    spec:
      subject: {namespaces: {matchLabels: {tenant: t}}}
      ingress:
        - name: deny-all
          action: Deny
          from: [{namespaces: {}}]
steps:
  - name: Pass at priority 10 skips the Deny at 20; the NetworkPolicy admits http
    probe: {from: mon/prom, to: ten/web, port: 80}
  - name: passed, and the NetworkPolicy does not admit 8080
    probe: {from: mon/prom, to: ten/web, port: 8080}
  - name: Allow at priority 10 beats the Deny at 20 and the NetworkPolicy
    probe: {from: other/cli, to: ten/web, port: 8080}
  - name: Deny at 20 overrides the NetworkPolicy's allow
    probe: {from: other/cli, to: ten/web, port: 80}
  - name: passed, db is not isolated, so the baseline denies
    probe: {from: mon/prom, to: ten/db, port: 80}
  - name: Allow beats the baseline's Deny
    probe: {from: other/cli, to: ten/db, port: 8080}
"""

# ClusterNetworkPolicy (v1alpha2): an Admin-tier `nodes` Deny (the pod's own node too, in
# INPUT) and `domainNames` Deny, an Admin-tier `networks` Pass, a Baseline tier with Accept
# on a range and Deny.
CNP = """
name: kernel-cnp-tiers
cluster: {network: vxlan, dns: false}
manifests:
  - {kind: Namespace, metadata: {name: ten, labels: {tenant: t}}}
  - {kind: Namespace, metadata: {name: other, labels: {tenant: o}}}
  - kind: Pod
    metadata: {name: hn, namespace: other}
    spec:
      nodeName: node-1
      hostNetwork: true
      containers: [{name: s, image: agnhost, ports: [{containerPort: 8081}]}]
  - kind: Pod
    metadata: {name: web, namespace: ten, labels: {app: web}}
    spec: {nodeName: node-2, containers: [{name: c, image: x}]}
  - kind: Pod
    metadata: {name: db, namespace: ten, labels: {app: db}}
    spec: {nodeName: node-1, containers: [{name: c, image: x}]}
  - kind: Pod
    metadata: {name: cli, namespace: other, labels: {app: cli}}
    spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [
      {containerPort: 80}, {containerPort: 81}, {containerPort: 8080, name: alt}]}]}
  - kind: Service
    metadata: {name: cli, namespace: other}
    spec: {clusterIP: None, selector: {app: cli}, ports: [{port: 81}]}
  - kind: NetworkPolicy
    metadata: {name: web-out, namespace: ten}
    spec:
      podSelector: {matchLabels: {app: web}}
      policyTypes: [Egress]
      egress:
        - to: [{namespaceSelector: {matchLabels: {tenant: o}}}]
          ports: [{port: 8080}]
  - apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: nodes-guard}
    spec:
      tier: Admin
      priority: 5
      subject: {namespaces: {matchLabels: {tenant: t}}}
      egress:
        - name: no-node-8081
          action: Deny
          to: [{nodes: {}}]
          protocols: [{tcp: {destinationPort: {number: 8081}}}]
        - name: not-81-by-name
          action: Deny
          to: [{domainNames: [cli.other.svc.cluster.local]}]
          protocols: [{tcp: {destinationPort: {number: 81}}}]
  - apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: pass-other}
    spec:
      tier: Admin
      priority: 7
      subject: {namespaces: {matchLabels: {tenant: t}}}
      egress:
        - name: to-other
          action: Pass
          to: [{networks: [10.0.0.0/8]}]
  - apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: floor}
    spec:
      tier: Baseline
      priority: 3
      subject: {namespaces: {matchLabels: {tenant: t}}}
      egress:
        - name: accept-80
          action: Accept
          to: [{pods: {namespaceSelector: {matchLabels: {tenant: o}}, podSelector: {}}}]
          protocols: [{tcp: {destinationPort: {range: {start: 79, end: 81}}}}]
        - name: deny-other
          action: Deny
          to: [{namespaces: {matchLabels: {tenant: o}}}]
steps:
  - name: a nodes peer denies the pod's own node (INPUT)
    probe: {from: ten/db, to: '10.100.0.2', port: 8081}
  - name: and another pod's node (FORWARD on node-2)
    probe: {from: ten/web, to: '10.100.0.2', port: 8081}
  - name: a pod no policy selects reaches it
    probe: {from: other/cli, to: '10.100.0.2', port: 8081}
  - name: passed; db is not isolated, the Baseline tier accepts 79-81
    probe: {from: ten/db, to: other/cli, port: 80}
  - name: passed; the Baseline tier denies 8080
    probe: {from: ten/db, to: other/cli, port: 8080}
  - name: passed; web is isolated for egress, its NetworkPolicy admits 8080
    probe: {from: ten/web, to: other/cli, port: 8080}
  - name: passed; its NetworkPolicy does not admit 80, whatever the baseline says
    probe: {from: ten/web, to: other/cli, port: 80}
  - name: a domainNames peer (a headless Service's pods) denies 81 before the baseline
    probe: {from: ten/db, to: other/cli, port: 81}
"""


def _rules(text: str, node: str) -> dict[str, list[dict[str, Any]]]:
    """The policy chains of `node`, each as its rules in order."""
    scenario, _ = load_scenario_text(text)
    cluster = scenario.cluster
    rs = nft.Ruleset()
    add_policy_rules(rs, cluster, build_fabric(cluster).netns[node])
    out: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(rs.names):
        out[name] = [
            c["add"]["rule"] for c in rs.rules if c["add"]["rule"]["chain"] == name
        ]
    return out


def test_the_admin_tier_is_one_chain_per_pod_in_priority_then_rule_order() -> None:
    chains = _rules(TIERS, "node-2")  # ten/web
    admin = chains["admin-ingress-ten.web"]
    assert [(r["comment"], r["expr"][-1]) for r in admin] == [
        (
            "ANP 'first' (priority 10) ingress rule 0 'owners-decide-for-mon': Pass",
            nft.RETURN,
        ),
        ("ANP 'first' (priority 10) ingress rule 1 'other-on-8080': Allow", nft.ACCEPT),
        ("ANP 'second' (priority 20) ingress rule 0 'no-mon': Deny", nft.DROP),
        ("ANP 'second' (priority 20) ingress rule 1 'no-other': Deny", nft.DROP),
    ]
    assert admin[1]["expr"][:-1] == [
        nft.match(nft.field_("ip", "saddr"), "10.0.1.3"),  # other/cli
        nft.l4proto(Protocol.TCP),
        nft.dport(8080),
    ]
    base = chains["netpol-ingress"]
    assert [r["expr"][-1]["vmap"]["data"]["set"] for r in base[1:]] == [
        [["10.0.2.2", nft.jump("admin-ingress-ten.web")]],
        [["10.0.2.2", nft.jump("ingress-ten.web")]],  # isolated: no baseline for it
    ]
    assert "baseline-ingress-ten.web" not in chains
    assert "netpol-host" not in chains  # no egress tier here


def test_the_baseline_tier_is_asked_only_where_no_networkpolicy_isolates() -> None:
    chains = _rules(TIERS, "node-1")  # ten/db: no NetworkPolicy
    base = chains["netpol-ingress"]
    assert base[-1]["expr"][-1]["vmap"]["data"]["set"] == [
        ["10.0.1.2", nft.jump("baseline-ingress-ten.db")]
    ]
    (deny,) = chains["baseline-ingress-ten.db"]
    assert deny["comment"] == "BANP 'default' ingress rule 0 'deny-all': Deny"
    assert deny["expr"][-1] == nft.DROP


def test_cnp_peers_are_nodes_networks_and_pods_and_the_host_chain_judges_own_node() -> (
    None
):
    chains = _rules(CNP, "node-1")  # ten/db
    admin = chains["admin-egress-ten.db"]
    nodes, name, networks = (r["expr"] for r in admin)
    assert nodes == [
        nft.match(nft.field_("ip", "daddr"), {"set": ["10.100.0.2", "10.100.0.3"]}),
        nft.l4proto(Protocol.TCP),
        nft.dport(8081),
        nft.DROP,
    ]
    # cli.other.svc.cluster.local: the headless Service's pod, other/cli
    assert name == [
        nft.match(nft.field_("ip", "daddr"), "10.0.1.3"),
        nft.l4proto(Protocol.TCP),
        nft.dport(81),
        nft.DROP,
    ]
    assert networks == [
        nft.match(
            nft.field_("ip", "daddr"), {"prefix": {"addr": "10.0.0.0", "len": 8}}
        ),
        nft.RETURN,
    ]
    accept, deny = chains["baseline-egress-ten.db"]
    assert accept["expr"][-3:] == [
        nft.l4proto(Protocol.TCP),
        nft.dport(79, 81),
        nft.ACCEPT,
    ]
    assert accept["comment"].startswith(
        "CNP 'floor' (Baseline tier, priority 3) egress rule 0 'accept-80': Accept"
    )
    assert deny["expr"][-1] == nft.DROP
    # a pod's traffic to its own node meets the tiers in INPUT
    host = chains["netpol-host"]
    assert [r["expr"][-1]["vmap"]["data"]["set"] for r in host[1:]] == [
        [["10.0.1.2", nft.jump("admin-egress-ten.db")]],
        [["10.0.1.2", nft.jump("baseline-egress-ten.db")]],
    ]


def _kernel_verdicts(text: str) -> list[tuple[str, Verdict | None]]:
    from dataplane.kernel.verify import verify

    scenario, _ = load_scenario_text(text)
    report = verify(scenario)
    # `verify -o json` says how independent this part is: derived from the model
    tiers = report.kernel_side["admin policy tiers (ANP, BANP, ClusterNetworkPolicy)"]
    assert tiers.startswith("nftables chains derived from the model"), tiers
    rows = report.rows
    wrong = [
        f"{r.title}: simulator {r.sim}, kernel {r.kernel.verdict}"
        for r in rows
        if r.status != AGREE
    ]
    assert not wrong, wrong
    return [(r.title, r.kernel.verdict) for r in rows]


DELIVERED, DENIED = Verdict.DELIVERED, Verdict.DENIED


@pytest.mark.kernel
def test_allow_deny_pass_and_baseline_on_the_kernel() -> None:
    assert [v for _, v in _kernel_verdicts(TIERS)] == [
        DELIVERED,  # Pass at 10 skips the Deny at 20; the NetworkPolicy admits http
        DENIED,  # passed, and the NetworkPolicy does not admit 8080
        DELIVERED,  # Allow at 10 beats the Deny at 20 and the NetworkPolicy
        DENIED,  # the Deny at 20 overrides the NetworkPolicy's allow
        DENIED,  # passed; ten/db is not isolated, so the baseline denies
        DELIVERED,  # Allow beats the baseline's Deny
    ]


@pytest.mark.kernel
def test_cluster_network_policy_tiers_on_the_kernel() -> None:
    assert [v for _, v in _kernel_verdicts(CNP)] == [
        DENIED,  # a nodes peer denies the pod's own node (INPUT)
        DENIED,  # and another pod's node (FORWARD on node-2)
        DELIVERED,  # a pod no policy selects reaches it
        DELIVERED,  # passed; db is not isolated, the Baseline tier accepts 79-81
        DENIED,  # passed; the Baseline tier denies 8080
        DELIVERED,  # passed; web is isolated, its NetworkPolicy admits 8080
        DENIED,  # passed; its NetworkPolicy does not admit 80, whatever the baseline
        DENIED,  # a domainNames peer denies 81 before the baseline accepts it
    ]


@pytest.mark.parametrize(
    ("cluster", "then"),
    [
        ("{network: vxlan, dns: false}", []),  # isolated: NetworkPolicy admits the node
        # Felix's cali-wl-to-host runs the pod's whole egress policy (cali-fw-)
        ("{cni: calico, network: bgp, dns: false}", ["egress-ten.web"]),
    ],
)
def test_to_its_own_node_an_isolated_pod_meets_the_admin_tier(
    cluster: str, then: list[str]
) -> None:
    text = CNP.replace("cluster: {network: vxlan, dns: false}", f"cluster: {cluster}")
    host = _rules(text, "node-2")["netpol-host"]  # ten/web, isolated for egress
    targets = [
        [v["jump"]["target"] for _, v in r["expr"][-1]["vmap"]["data"]["set"]]
        for r in host[1:]
    ]
    assert targets == [["admin-egress-ten.web"], *([then] if then else [])]
