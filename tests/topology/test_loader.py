"""Loading scenarios: defaults, the reference topology, workloads, references, files, steps."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from tests.topology.conftest import REFERENCE, LoadFn, scenario_text
from topology.loader import load_scenario
from topology.model import NetworkMode, Protocol, ServiceType
from topology.scenario import (
    ApplyStep,
    DeleteStep,
    Expectation,
    LabelStep,
    LayerSpec,
    MatrixExpect,
    MatrixStep,
    ProbeStep,
    ReplayStep,
    SendStep,
    Verdict,
)

MINIMAL = "name: t\nsteps:\n  - probe: {from: default/a, to: default/b}\n"


def ips(scenario: Any) -> dict[str, str]:
    return {k: str(p.ip) for k, p in scenario.cluster.pods.items()}


def nodes_of(scenario: Any) -> dict[str, str]:
    return {k: p.node for k, p in scenario.cluster.pods.items()}


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("network", NetworkMode.VXLAN),
        ("vxlan_port", 8472),
        ("bridge", "cbr0"),
        ("mtu", 1500),
        ("node_cidr", IPv4Network("10.100.0.0/24")),
        ("gateway", IPv4Address("10.100.0.1")),
        ("service_cidr", IPv4Network("10.96.0.0/12")),
        ("cluster_domain", "cluster.local"),
        ("dns", True),
        ("externals", ()),
        ("pod_mtu", 1450),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_cluster_defaults(load: LoadFn, attribute: str, expected: object) -> None:
    scenario, warnings = load(MINIMAL)
    assert getattr(scenario.cluster.config, attribute) == expected
    assert warnings == []


def test_default_nodes(load: LoadFn) -> None:
    scenario, _ = load(MINIMAL)
    got = [(n.name, str(n.ip), str(n.pod_cidr)) for n in scenario.cluster.nodes]
    assert got == [
        ("node-1", "10.100.0.2", "10.0.1.0/24"),
        ("node-2", "10.100.0.3", "10.0.2.0/24"),
    ]
    assert scenario.cluster.nodes[0].bridge_ip == IPv4Address("10.0.1.1")
    assert scenario.cluster.nodes[0].labels["kubernetes.io/hostname"] == "node-1"


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        (
            "nodes: [{name: a}, {name: b, ip: 10.100.0.9}, {name: c}]",
            [("a", "10.100.0.2", "10.0.1.0/24"), ("b", "10.100.0.9", "10.0.2.0/24"),
             ("c", "10.100.0.10", "10.0.3.0/24")],
        ),
        (
            "nodes: [{name: a}, {name: b, ip: 10.100.0.3}, {name: c}]",
            [("a", "10.100.0.2", "10.0.1.0/24"), ("b", "10.100.0.3", "10.0.2.0/24"),
             ("c", "10.100.0.4", "10.0.3.0/24")],
        ),
        (
            "nodes: [{name: a}, {name: b, ip: 10.100.0.2}]",
            [("a", "10.100.0.3", "10.0.1.0/24"), ("b", "10.100.0.2", "10.0.2.0/24")],
        ),
        (
            "{gateway: 10.100.0.254, nodes: [{name: a}, {name: b, podCIDR: 10.1.0.0/16}]}",
            [("a", "10.100.0.1", "10.0.1.0/24"), ("b", "10.100.0.2", "10.1.0.0/16")],
        ),
        (
            "{nodeCIDR: 192.168.0.0/16, nodes: [{name: a}, {name: b}, {name: c}]}",
            [("a", "192.168.0.2", "10.0.1.0/24"), ("b", "192.168.0.3", "10.0.2.0/24"),
             ("c", "192.168.0.4", "10.0.3.0/24")],
        ),
    ],
    ids=["after-explicit", "explicit-next", "skip-explicit", "gateway-elsewhere", "nodecidr"],
)  # fmt: skip
def test_node_defaults(
    load: LoadFn, cluster: str, expected: list[tuple[str, str, str]]
) -> None:
    text = scenario_text(
        f"cluster:\n  {cluster}" if cluster[0] == "n" else f"cluster: {cluster}"
    )
    scenario, _ = load(text)
    got = [(n.name, str(n.ip), str(n.pod_cidr)) for n in scenario.cluster.nodes]
    assert got == expected


def test_cluster_keys_are_read(load: LoadFn) -> None:
    text = scenario_text(
        """
        cluster:
          network: host-gw
          vxlanPort: 4789
          bridge: docker0
          mtu: 9000
          serviceCIDR: 172.20.0.0/16
          clusterDomain: example.org
          dns: false
          externals:
            - {name: web, ip: 203.0.113.10, ports: [{port: 80}, {port: 53, protocol: UDP}]}
        """
    )
    scenario, _ = load(text)
    cfg = scenario.cluster.config
    assert (cfg.network, cfg.vxlan_port, cfg.bridge, cfg.mtu) == (
        NetworkMode.HOST_GW,
        4789,
        "docker0",
        9000,
    )
    assert cfg.pod_mtu == 9000
    assert cfg.cluster_domain == "example.org"
    assert cfg.externals[0].ports[1].protocol is Protocol.UDP
    assert cfg.externals[0].ip == IPv4Address("203.0.113.10")
    # Without DNS: no coredns pod, no kube-dns service; `default/kubernetes` at .1.
    assert not scenario.cluster.pods
    assert {k: str(s.cluster_ip) for k, s in scenario.cluster.services.items()} == {
        "default/kubernetes": "172.20.0.1"
    }


def test_reference_topology_addresses(load: LoadFn) -> None:
    scenario, warnings = load(REFERENCE)
    assert warnings == []
    assert ips(scenario) == {
        "kube-system/coredns-0": "10.0.1.2",
        "default/a": "10.0.1.3",
        "default/b": "10.0.1.4",
        "default/c": "10.0.2.2",
    }
    cluster = scenario.cluster
    dns = cluster.services["kube-system/kube-dns"]
    assert str(dns.cluster_ip) == "10.96.0.10"
    assert dns.selector == {"k8s-app": "kube-dns"}
    assert [(p.name, p.port, p.protocol, p.target_port) for p in dns.ports] == [
        ("dns", 53, Protocol.UDP, "dns"),
        ("dns-tcp", 53, Protocol.TCP, "dns-tcp"),
    ]
    api = cluster.services["default/kubernetes"]
    assert (str(api.cluster_ip), api.ports[0].port, api.ports[0].target_port) == (
        "10.96.0.1",
        443,
        6443,
    )
    assert api.selector is None
    coredns = cluster.pods["kube-system/coredns-0"]
    assert coredns.labels == {"k8s-app": "kube-dns"}
    assert coredns.owner == "Deployment/coredns"
    assert [(p.port, p.protocol, p.name) for p in coredns.ports()] == [
        (53, Protocol.UDP, "dns"),
        (53, Protocol.TCP, "dns-tcp"),
    ]
    assert cluster.workloads["kube-system/coredns"].replicas == 1
    assert [c.name for c in cluster.pods["default/c"].containers] == ["web", "side"]
    assert cluster.pods["default/a"].named_port("http") == 80
    assert cluster.pods["default/a"].loc.line == 3
    assert {n: ns.labels for n, ns in cluster.namespaces.items()} == {
        "default": {"kubernetes.io/metadata.name": "default"},
        "kube-system": {"kubernetes.io/metadata.name": "kube-system"},
    }


def test_loading_is_deterministic(load: LoadFn) -> None:
    first, _ = load(REFERENCE)
    second, _ = load(REFERENCE)
    assert first.cluster == second.cluster


def workload(kind: str, name: str, spec: str = "", labels: str = "{app: w}") -> str:
    return f"""
  - apiVersion: apps/v1
    kind: {kind}
    metadata: {{name: {name}}}
    spec:
      selector: {{matchLabels: {labels}}}
      template:
        metadata: {{labels: {labels}}}
        spec: {{containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}
{spec}"""


@pytest.mark.parametrize(
    ("kind", "spec", "names"),
    [
        ("Deployment", "      replicas: 2", ["httpd-0", "httpd-1"]),
        ("Deployment", "", ["httpd-0"]),
        ("ReplicaSet", "      replicas: 3", ["httpd-0", "httpd-1", "httpd-2"]),
        ("StatefulSet", "      replicas: 2", ["httpd-0", "httpd-1"]),
        ("StatefulSet", "      replicas: 2\n      ordinals: {start: 5}", ["httpd-5", "httpd-6"]),
        ("Deployment", "      replicas: 0", []),
        ("DaemonSet", "", ["httpd-node-1", "httpd-node-2"]),
    ],
    ids=["deployment", "replicas-default", "replicaset", "statefulset", "ordinals", "zero",
         "daemonset"],
)  # fmt: skip
def test_workload_pod_names(
    load: LoadFn, kind: str, spec: str, names: list[str]
) -> None:
    text = scenario_text("manifests:" + workload(kind, "httpd", spec))
    scenario, _ = load(text)
    pods = [p for p in scenario.cluster.pods.values() if p.namespace == "default"]
    assert [p.name for p in pods] == names
    assert all(p.owner == f"{kind}/httpd" and p.labels == {"app": "w"} for p in pods)
    assert scenario.cluster.workloads["default/httpd"].replicas == len(names)


def test_daemonset_pod_runs_on_its_node(load: LoadFn) -> None:
    text = scenario_text(
        "cluster: {nodes: [{name: a}, {name: b, labels: {gpu: 'yes'}}, {name: c}]}\n"
        "manifests:"
        + workload("DaemonSet", "agent")
        + workload("DaemonSet", "gpu", "", "{app: g}").replace(
            "spec: {containers", "spec: {nodeSelector: {gpu: 'yes'}, containers"
        )
    )
    scenario, _ = load(text)
    assert nodes_of(scenario) == {
        "kube-system/coredns-0": "a",
        "default/agent-a": "a",
        "default/agent-b": "b",
        "default/agent-c": "c",
        "default/gpu-b": "b",
    }
    assert ips(scenario)["default/agent-a"] == "10.0.1.3"


@pytest.mark.parametrize(
    ("dns", "expected"),
    [
        ("false", ["node-1", "node-2", "node-3", "node-1", "node-2"]),
        ("true", ["node-2", "node-3", "node-1", "node-2", "node-3"]),
    ],
    ids=["no-dns", "dns-first"],
)
def test_scheduling_fewest_pods_ties_by_node_order(
    load: LoadFn, dns: str, expected: list[str]
) -> None:
    text = scenario_text(
        f"cluster: {{dns: {dns}, nodes: [{{name: node-1}}, {{name: node-2}}, {{name: node-3}}]}}\n"
        "manifests:" + workload("Deployment", "web", "      replicas: 5")
    )
    scenario, _ = load(text)
    got = [p.node for p in scenario.cluster.pods.values() if p.namespace == "default"]
    assert got == expected


def test_host_network_pod_takes_node_ip_and_counts_for_scheduling(load: LoadFn) -> None:
    text = scenario_text(
        """
        cluster: {dns: false}
        manifests:
          - kind: Pod
            metadata: {name: agent}
            spec: {hostNetwork: true, containers: [{name: a, ports: [{containerPort: 9100}]}]}
          - kind: Pod
            metadata: {name: p1}
            spec: {containers: [{name: a}]}
          - kind: Pod
            metadata: {name: p2}
            spec: {nodeName: node-1, containers: [{name: a}]}
        """
    )
    scenario, _ = load(text)
    pods = scenario.cluster.pods
    assert (pods["default/agent"].node, str(pods["default/agent"].ip)) == (
        "node-1",
        "10.100.0.2",
    )
    assert pods["default/agent"].host_network
    assert (pods["default/p1"].node, str(pods["default/p1"].ip)) == (
        "node-2",
        "10.0.2.2",
    )
    assert str(pods["default/p2"].ip) == "10.0.1.2"  # hostNetwork consumed no address


def test_namespaces_first_then_pods_services_policies(load: LoadFn) -> None:
    text = scenario_text(
        """
        manifests:
          - apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: only-a, namespace: x}
            spec:
              podSelector: {}
              ingress: [{from: [{ipBlock: {cidr: "${ip:x/a}/32"}}]}]
          - kind: Service
            metadata: {name: web, namespace: x}
            spec: {selector: {app: a}, ports: [{port: 80}]}
          - kind: Pod
            metadata: {name: a, namespace: x, labels: {app: a}}
            spec: {containers: [{name: web}]}
          - kind: Namespace
            metadata: {name: x, labels: {team: blue}}
        """
    )
    scenario, _ = load(text)
    cluster = scenario.cluster
    assert str(cluster.pods["x/a"].ip) == "10.0.2.2"
    assert cluster.namespaces["x"].labels == {
        "team": "blue",
        "kubernetes.io/metadata.name": "x",
    }
    policy = cluster.policies["x/only-a"]
    block = policy.ingress[0].peers[0].ip_block
    assert block is not None and block.cidr == IPv4Network("10.0.2.2/32")
    assert str(cluster.services["x/web"].cluster_ip) == "10.96.0.2"


def test_ip_references_in_pods_resolve_against_earlier_objects(load: LoadFn) -> None:
    text = scenario_text(
        """
        cluster:
          externals: [{name: db, ip: 192.0.2.7}]
        manifests:
          - kind: Pod
            metadata: {name: a, annotations: {peer: "${ip:external/db} ${ip:node/node-2}"}}
            spec: {containers: [{name: web, env: [{name: DNS, value: "${ip:svc/kube-system/kube-dns}"}]}]}
          - kind: Pod
            metadata: {name: b, annotations: {peer: "${ip: default/a }"}}
            spec: {containers: [{name: web}]}
        """
    )
    scenario, _ = load(text)
    # Annotations are accepted without effect; their substitution happened before validation
    # (an unresolvable one would have failed).
    assert set(scenario.cluster.pods) >= {"default/a", "default/b"}


def test_manifest_files_load_every_document(tmp_path: Path) -> None:
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "pods.yaml").write_text(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: f1}\nspec: {containers: [{name: a}]}\n"
        "---\n# empty document\n---\nkind: Pod\nmetadata: {name: f2}\n"
        "spec: {containers: [{name: a}]}\n"
    )
    (tmp_path / "lab.yaml").write_text(
        scenario_text(
            """
            manifests:
              - {file: more/pods.yaml}
            """,
            "steps:\n  - apply: [{file: more/pods.yaml}]\n",
        )
    )
    scenario, _ = load_scenario(tmp_path / "lab.yaml")
    assert {"default/f1", "default/f2"} <= set(scenario.cluster.pods)
    assert scenario.cluster.pods["default/f2"].loc.file.endswith("more/pods.yaml")
    assert scenario.cluster.pods["default/f2"].loc.line == 9
    step = scenario.steps[0]
    assert isinstance(step, ApplyStep)
    assert [m.data["metadata"]["name"] for m in step.objects] == ["f1", "f2"]
    assert scenario.path == tmp_path / "lab.yaml"


def test_services_are_normalized(load: LoadFn) -> None:
    text = scenario_text(
        """
        manifests:
          - kind: Service
            metadata: {name: plain}
            spec: {selector: {app: a}, ports: [{port: 80}]}
          - kind: Service
            metadata: {name: np}
            spec:
              type: NodePort
              selector: {app: a}
              ports: [{name: http, port: 80, targetPort: http}, {name: dns, port: 53, protocol: UDP}]
          - kind: Service
            metadata: {name: fixed}
            spec: {type: NodePort, clusterIP: 10.96.0.10, ports: [{port: 81, nodePort: 30001}]}
          - kind: Service
            metadata: {name: lb}
            spec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 443}]}
            status: {loadBalancer: {ingress: [{ip: 198.51.100.5}]}}
          - kind: Service
            metadata: {name: headless}
            spec: {clusterIP: None, selector: {app: a}, sessionAffinity: ClientIP}
        """
    ).replace("clusterIP: 10.96.0.10", "clusterIP: 10.96.0.20")
    scenario, _ = load(text)
    svcs = scenario.cluster.services
    plain = svcs["default/plain"]
    assert (plain.type, str(plain.cluster_ip), plain.ports[0].target_port) == (
        ServiceType.CLUSTER_IP,
        "10.96.0.2",
        80,
    )
    assert plain.ports[0].protocol is Protocol.TCP and plain.ports[0].node_port is None
    np = svcs["default/np"]
    assert [(p.target_port, p.protocol, p.node_port) for p in np.ports] == [
        ("http", Protocol.TCP, 30000),
        (53, Protocol.UDP, 30002),
    ]
    fixed = svcs["default/fixed"]
    assert (str(fixed.cluster_ip), fixed.ports[0].node_port) == ("10.96.0.20", 30001)
    lb = svcs["default/lb"]
    assert (lb.type, str(lb.load_balancer_ip), lb.external_traffic_policy) == (
        ServiceType.LOAD_BALANCER,
        "198.51.100.5",
        "Local",
    )
    assert lb.ports[0].node_port == 30003
    headless = svcs["default/headless"]
    assert headless.cluster_ip is None and headless.ports == ()
    assert headless.session_affinity == "ClientIP"


POLICY = """
manifests:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {{name: p}}
    spec:
      podSelector: {{matchLabels: {{app: web}}}}
{spec}"""


@pytest.mark.parametrize(
    ("spec", "types", "ingress", "egress"),
    [
        ("", ("Ingress",), 0, 0),
        ("      ingress: []", ("Ingress",), 0, 0),
        ("      ingress: [{}]", ("Ingress",), 1, 0),
        ("      egress: [{}]", ("Ingress", "Egress"), 0, 1),
        ("      egress: []", ("Ingress",), 0, 0),
        ("      policyTypes: [Egress]", ("Egress",), 0, 0),
        ("      policyTypes: [Egress, Ingress]\n      ingress: [{}]", ("Ingress", "Egress"), 1, 0),
    ],
    ids=["deny-ingress", "empty-ingress", "allow-all", "egress-rules", "empty-egress",
         "egress-only", "both-types"],
)  # fmt: skip
def test_policy_types_default(
    load: LoadFn, spec: str, types: tuple[str, ...], ingress: int, egress: int
) -> None:
    scenario, _ = load(scenario_text(POLICY.format(spec=spec)))
    policy = scenario.cluster.policies["default/p"]
    assert policy.policy_types == types
    assert (len(policy.ingress), len(policy.egress)) == (ingress, egress)
    assert all(not r.peers and not r.ports for r in (*policy.ingress, *policy.egress))


def test_policy_rules_are_normalized(load: LoadFn) -> None:
    spec = """\
      ingress:
        - from:
            - namespaceSelector: {matchLabels: {team: a}}
              podSelector: {matchExpressions: [{key: role, operator: NotIn, values: [db]}]}
            - ipBlock: {cidr: 10.0.1.5/4, except: [10.1.0.0/16]}
          ports: [{port: 80}, {protocol: UDP, port: 1000, endPort: 2000}, {port: http}]
"""
    scenario, warnings = load(scenario_text(POLICY.format(spec=spec)))
    rule = scenario.cluster.policies["default/p"].ingress[0]
    both, block = rule.peers
    assert both.namespace_selector is not None and both.pod_selector is not None
    assert both.pod_selector.match_expressions[0].values == ("db",)
    assert block.ip_block is not None
    assert block.ip_block.cidr == IPv4Network("0.0.0.0/4")
    assert block.ip_block.except_ == (IPv4Network("10.1.0.0/16"),)
    assert [(p.protocol, p.port, p.end_port) for p in rule.ports] == [
        (Protocol.TCP, 80, None),
        (Protocol.UDP, 1000, 2000),
        (Protocol.TCP, "http", None),
    ]
    assert warnings == [
        "lab.yaml:12: NetworkPolicy default/p: spec.ingress[0].from[1].ipBlock.cidr:"
        " 10.0.1.5/4 has host bits set; it means 0.0.0.0/4"
    ]


STEPS = """\
steps:
  - probe: {from: x/a, to: y/b, port: 80, protocol: TCP, expect: allowed}
  - name: full
    probe:
      from: x/a
      to: web.y
      port: http
      expect: {verdict: denied-ingress, policy: y/deny, via: [node-1/cbr0, gateway], endpoint: y/b}
  - probe: {from: x/a, to: 10.0.2.2, protocol: ICMP, expect: no-route}
  - matrix: {expect: {denied: ["x/a->y/b", " x/b  ->  y/b "]}}
  - matrix: {from: [x/a], to: all, protocol: ICMP, expect: {allowed: []}}
  - matrix: {from: all, port: 8080, protocol: UDP}
  - apply: [{kind: NetworkPolicy, metadata: {name: n}, spec: {podSelector: {}}}]
  - delete: [networkpolicy/default/n, Pod/x/a, namespace/y, svc/default/web]
  - label: {pod: x/a, set: {role: frontend}, remove: [app]}
  - label: {namespace: y, set: {project: dev}}
  - send:
      at: x/a
      packet: [{IP: {dst: y/b, ttl: 2, flags: DF}}, {TCP: {dport: 80, flags: S}}, {Raw: }]
      expect: {verdict: ttl-exceeded}
  - send: {at: node/node-1, packet: {hex: "4500 00AB"}}
  - replay: {pcap: flows.pcap, at: x/a, expect: {allowed: 12, denied: 3}}
"""


def test_steps_are_converted(load: LoadFn, tmp_path: Path) -> None:
    (tmp_path / "flows.pcap").write_bytes(b"")
    scenario, _ = load("name: t\n" + STEPS)
    s = scenario.steps
    assert s[0] == ProbeStep(
        "x/a", "y/b", 80, Protocol.TCP, Expectation(Verdict.DELIVERED), loc=s[0].loc
    )
    assert (s[0].loc.file, s[0].loc.line) == ("lab.yaml", 3)
    assert s[1] == ProbeStep(
        "x/a",
        "web.y",
        "http",
        Protocol.TCP,
        Expectation(
            Verdict.DENIED_INGRESS, "y/deny", ("node-1/cbr0", "gateway"), "y/b"
        ),
        "full",
        s[1].loc,
    )
    assert isinstance(s[2], ProbeStep)
    assert (s[2].port, s[2].protocol) == (None, Protocol.ICMP)
    assert s[3] == MatrixStep(
        None, None, 80, Protocol.TCP, MatrixExpect(denied=("x/a -> y/b", "x/b -> y/b")),
        loc=s[3].loc,
    )  # fmt: skip
    assert s[4] == MatrixStep(
        ("x/a",), None, None, Protocol.ICMP, MatrixExpect(allowed=()), loc=s[4].loc
    )
    assert isinstance(s[5], MatrixStep)
    assert (s[5].port, s[5].protocol, s[5].expect) == (8080, Protocol.UDP, None)
    assert isinstance(s[6], ApplyStep) and s[6].objects[0].loc.line == 14
    assert s[7] == DeleteStep(
        ("networkpolicy/default/n", "Pod/x/a", "namespace/y", "svc/default/web"),
        loc=s[7].loc,
    )
    assert s[8] == LabelStep("pod", "x/a", {"role": "frontend"}, ("app",), loc=s[8].loc)
    assert s[9] == LabelStep("namespace", "y", {"project": "dev"}, loc=s[9].loc)
    assert isinstance(s[10], SendStep)
    assert s[10].layers == (
        LayerSpec("IP", {"dst": "y/b", "ttl": 2, "flags": "DF"}),
        LayerSpec("TCP", {"dport": 80, "flags": "S"}),
        LayerSpec("Raw", {}),
    )
    assert s[10].expect == Expectation(Verdict.TTL_EXCEEDED)
    assert isinstance(s[11], SendStep)
    assert (s[11].hex, s[11].layers) == ("450000ab", ())
    assert s[12] == ReplayStep(
        tmp_path / "flows.pcap", "x/a", {"delivered": 12, "denied": 3}, loc=s[12].loc
    )


def test_description_and_name(load: LoadFn) -> None:
    scenario, _ = load("name: lab\ndescription: hello\n" + MINIMAL[8:])
    assert (scenario.name, scenario.description, scenario.path) == (
        "lab",
        "hello",
        None,
    )


def test_accepted_without_effect_fields(load: LoadFn) -> None:
    text = scenario_text(
        """
        manifests:
          - apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: web
              annotations: {note: x}
              creationTimestamp: null
              uid: 1234
            spec:
              replicas: 1
              strategy: {type: RollingUpdate}
              revisionHistoryLimit: 3
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}, annotations: {a: b}}
                spec:
                  restartPolicy: Always
                  tolerations: [{operator: Exists}]
                  affinity: {}
                  volumes: [{name: v, emptyDir: {}}]
                  containers:
                    - name: web
                      image: nginx:1.27
                      imagePullPolicy: IfNotPresent
                      command: [nginx]
                      args: [-g, daemon off;]
                      env: [{name: A, value: "1"}]
                      resources: {limits: {cpu: 100m}}
                      readinessProbe: {httpGet: {path: /, port: 80}}
                      volumeMounts: [{name: v, mountPath: /data}]
                      ports: [{containerPort: 80, protocol: TCP, hostPort: 8080}]
            status: {replicas: 1}
        """
    )
    scenario, _ = load(text)
    assert scenario.cluster.pods["default/web-0"].ports()[0].port == 80


def big_scenario(deployments: int, replicas: int, nodes: int) -> str:
    """100 nodes, and Deployments with a Service and a NetworkPolicy each."""
    out = ["name: big", "cluster:", "  nodeCIDR: 10.100.0.0/16", "  nodes:"]
    out += [f"    - name: node-{i}" for i in range(1, nodes + 1)]
    out += ["manifests:"]
    for d in range(deployments):
        out.append(
            f"""\
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: app-{d}}}
    spec:
      replicas: {replicas}
      selector: {{matchLabels: {{app: app-{d}}}}}
      template:
        metadata: {{labels: {{app: app-{d}}}}}
        spec:
          containers: [{{name: web, image: nginx, ports: [{{containerPort: 80, name: http}}]}}]
  - kind: Service
    metadata: {{name: svc-{d}}}
    spec: {{selector: {{app: app-{d}}}, ports: [{{port: 80, targetPort: http}}]}}
  - kind: NetworkPolicy
    metadata: {{name: np-{d}}}
    spec:
      podSelector: {{matchLabels: {{app: app-{d}}}}}
      ingress: [{{from: [{{podSelector: {{}}}}], ports: [{{port: http}}]}}]"""
        )
    out.append(
        "steps:\n  - probe: {from: default/app-0-0, to: svc/default/svc-1, port: 80}\n"
    )
    return "\n".join(out)


def test_load_5000_pods(load: LoadFn) -> None:
    # How fast this is, bench/bench_walk.py measures (never a timed test).
    text = big_scenario(50, 100, 100)
    scenario, _ = load(text)
    assert len(scenario.cluster.pods) == 5001
    assert len(scenario.cluster.services) == 52
    assert str(scenario.cluster.pods["default/app-49-99"].ip).startswith("10.0.")
