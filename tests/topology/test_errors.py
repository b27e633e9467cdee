"""Every class of bad input: a TopologyError naming file:line, the object, the field, the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.topology.conftest import ErrorFn, LoadFn
from topology.errors import SimError, TopologyError

STEP = "steps:\n  - probe: {from: default/a, to: default/b}\n"


def pod(extra_meta: str = "", spec: str = "containers: [{name: web}]") -> str:
    return (
        f"  - kind: Pod\n    metadata: {{name: a{extra_meta}}}\n    spec: {{{spec}}}\n"
    )


# (id, scenario text, expected str(error)) -- the text always starts "name: t" on line 1.
EXACT = [
    (
        "yaml-syntax",
        "name: t\nsteps: [\n  - probe: {from: a\n",
        "lab.yaml:3: invalid YAML: did not find expected node content"
        " (while parsing a flow node at line 3)",
    ),
    ("duplicate-key", "name: t\nname: u\n" + STEP, "lab.yaml:2: duplicate key 'name'"),
    (
        "bad-network",
        "name: t\ncluster:\n  network: vxlam\n" + STEP,
        "lab.yaml:3: cluster.network: 'vxlam' is not allowed"
        " (allowed: vxlan, host-gw, routed)",
    ),
    (
        "unknown-cluster-key",
        "name: t\ncluster:\n  mtu: 1400\n  nodez: []\n" + STEP,
        "lab.yaml:4: cluster: unknown key 'nodez' (allowed: network, vxlanPort, bridge,"
        " mtu, nodeCIDR, gateway, serviceCIDR, clusterDomain, dns, nodes, externals,"
        " kubeProxy, gatewayRoutes, runtime, cni, calico)",
    ),
    (
        "unknown-top-key",
        "name: t\nstep: []\n" + STEP,
        "lab.yaml:2: unknown key 'step' (allowed: name, description, cluster, manifests,"
        " compose, steps)",
    ),
    ("missing-name", STEP, "lab.yaml:1: missing required key 'name'"),
    (
        "no-steps",
        "name: t\nsteps: []\n",
        "lab.yaml:2: steps: at least 1 item(s) required",
    ),
    (
        "bridge-too-long",
        "name: t\ncluster: {bridge: a-very-long-bridge}\n" + STEP,
        "lab.yaml:2: cluster.bridge: 'a-very-long-bridge' is not a valid interface name"
        " (1-15 characters, no '/', ':' or whitespace, not '.' or '..')",
    ),
    (
        "bridge-is-eth0",
        "name: t\ncluster: {bridge: eth0}\n" + STEP,
        "lab.yaml:2: cluster.bridge: 'eth0' is already a device of every node"
        " (eth0, flannel.1, lo)",
    ),
    (
        "vxlan-port-range",
        "name: t\ncluster:\n  vxlanPort: 70000\n" + STEP,
        "lab.yaml:3: cluster.vxlanPort: 70000 is out of range (allowed: 1-65535)",
    ),
    (
        "vxlan-port-string",
        "name: t\ncluster:\n  vxlanPort: '8472'\n" + STEP,
        "lab.yaml:3: cluster.vxlanPort: expected an integer, got '8472' (a string)",
    ),
    (
        "mtu-low",
        "name: t\ncluster:\n  mtu: 100\n" + STEP,
        "lab.yaml:3: cluster.mtu: 100 leaves 50 bytes inside VXLAN"
        " (allowed: at least 118 with network vxlan)",
    ),
    (
        "node-cidr-host-bits",
        "name: t\ncluster:\n  nodeCIDR: 10.100.0.1/24\n" + STEP,
        "lab.yaml:3: cluster.nodeCIDR: '10.100.0.1/24' has host bits set"
        " (did you mean 10.100.0.0/24?)",
    ),
    (
        "bad-cidr",
        "name: t\ncluster:\n  serviceCIDR: 10.96.0.0/33\n" + STEP,
        "lab.yaml:3: cluster.serviceCIDR: '10.96.0.0/33' is not a valid CIDR (allowed: an"
        " IPv4 CIDR a.b.c.d/N, N from 0 to 32)",
    ),
    (
        "gateway-outside",
        "name: t\ncluster:\n  gateway: 10.1.0.1\n" + STEP,
        "lab.yaml:3: cluster.gateway: 10.1.0.1 is not a host address of nodeCIDR"
        " 10.100.0.0/24",
    ),
    (
        "node-ip-outside",
        "name: t\ncluster:\n  nodes:\n    - name: n1\n      ip: 10.200.0.2\n" + STEP,
        "lab.yaml:5: cluster.nodes[0].ip: 10.200.0.2 is not a host address of nodeCIDR"
        " 10.100.0.0/24",
    ),
    (
        "node-ip-duplicate",
        "name: t\ncluster:\n  nodes:\n    - {name: n1, ip: 10.100.0.5}\n"
        "    - {name: n2, ip: 10.100.0.5}\n" + STEP,
        "lab.yaml:5: cluster.nodes[1].ip: 10.100.0.5 is already the address of node 'n1'",
    ),
    (
        "node-ip-gateway",
        "name: t\ncluster:\n  nodes: [{name: n1, ip: 10.100.0.1}]\n" + STEP,
        "lab.yaml:3: cluster.nodes[0].ip: 10.100.0.1 is the gateway's address",
    ),
    (
        "node-name-duplicate",
        "name: t\ncluster:\n  nodes:\n    - name: n1\n    - name: n1\n" + STEP,
        "lab.yaml:5: cluster.nodes[1].name: duplicate node name 'n1'",
    ),
    (
        "pod-cidr-overlap",
        "name: t\ncluster:\n  nodes:\n    - {name: n1, podCIDR: 10.0.0.0/16}\n"
        "    - name: n2\n      podCIDR: 10.0.2.0/24\n" + STEP,
        "lab.yaml:6: cluster.nodes[1].podCIDR: podCIDR 10.0.2.0/24 of node 'n2' overlaps"
        " podCIDR 10.0.0.0/16 of node 'n1'",
    ),
    (
        "pod-cidr-in-service-cidr",
        "name: t\ncluster:\n  nodes:\n    - {name: n1, podCIDR: 10.96.1.0/24}\n" + STEP,
        "lab.yaml:4: cluster.nodes[0].podCIDR: podCIDR 10.96.1.0/24 of node 'n1' overlaps"
        " serviceCIDR 10.96.0.0/12",
    ),
    (
        "pod-cidr-in-node-cidr",
        "name: t\ncluster:\n  nodeCIDR: 10.0.0.0/16\n" + STEP,
        "lab.yaml:3: cluster.nodeCIDR: podCIDR 10.0.1.0/24 of node 'node-1' overlaps"
        " nodeCIDR 10.0.0.0/16",
    ),
    (
        "external-inside-cluster",
        "name: t\ncluster:\n  externals:\n    - {name: x, ip: 10.0.2.9}\n" + STEP,
        "lab.yaml:4: cluster.externals[0].ip: 10.0.2.9 is inside podCIDR of node 'node-2'"
        " 10.0.2.0/24 (an external host is outside the cluster)",
    ),
    (
        "unsupported-kind",
        "name: t\nmanifests:\n  - apiVersion: v1\n    kind: [Pod]\n"
        "    metadata: {name: i}\n" + STEP,
        "lab.yaml:4: default/i: kind: kind ['Pod'] is not supported (supported:"
        " Namespace, Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Service,"
        " NetworkPolicy, EndpointSlice, AdminNetworkPolicy, BaselineAdminNetworkPolicy,"
        " ClusterNetworkPolicy, Node)",
    ),
    (
        "missing-kind",
        "name: t\nmanifests:\n  - metadata: {name: i}\n" + STEP,
        "lab.yaml:3: default/i: missing required key 'kind' (supported: Namespace, Pod,"
        " Deployment, ReplicaSet, StatefulSet, DaemonSet, Service, NetworkPolicy,"
        " EndpointSlice, AdminNetworkPolicy, BaselineAdminNetworkPolicy,"
        " ClusterNetworkPolicy, Node)",
    ),
    (
        "wrong-api-version",
        "name: t\nmanifests:\n  - apiVersion: extensions/v1beta1\n    kind: Deployment\n"
        "    metadata: {name: d}\n" + STEP,
        "lab.yaml:3: Deployment default/d: apiVersion: Deployment is not served by"
        " apiVersion 'extensions/v1beta1' (allowed: apps/v1)",
    ),
    (
        "unknown-pod-field",
        "name: t\nmanifests:\n  - kind: Pod\n    metadata: {name: a}\n    spec:\n"
        "      containers: [{name: web}]\n      hostNetwrk: true\n" + STEP,
        "lab.yaml:7: Pod default/a: spec: unknown key 'hostNetwrk' (allowed: containers,"
        " nodeName, nodeSelector, hostNetwork, initContainers, ephemeralContainers,"
        " volumes, restartPolicy, terminationGracePeriodSeconds, activeDeadlineSeconds,"
        " dnsPolicy, dnsConfig, serviceAccountName, serviceAccount,"
        " automountServiceAccountToken, hostPID, hostIPC, hostUsers,"
        " shareProcessNamespace, securityContext, imagePullSecrets, hostname, subdomain,"
        " setHostnameAsFQDN, affinity, schedulerName, tolerations,"
        " topologySpreadConstraints, hostAliases, priorityClassName, priority,"
        " preemptionPolicy, readinessGates, runtimeClassName, enableServiceLinks,"
        " overhead, os, schedulingGates, resourceClaims)",
    ),
    (
        "service-port-range",
        "name: t\nmanifests:\n  - kind: Service\n    metadata: {name: web}\n    spec:\n"
        "      ports:\n        - port: 70000\n" + STEP,
        "lab.yaml:7: Service default/web: spec.ports[0].port: 70000 is out of range"
        " (allowed: 1-65535)",
    ),
    (
        "missing-metadata-name",
        "name: t\nmanifests:\n  - kind: Pod\n    metadata: {labels: {a: b}}\n"
        "    spec: {containers: [{name: c}]}\n" + STEP,
        "lab.yaml:4: Pod: metadata: missing required key 'name'",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in EXACT], ids=[c[0] for c in EXACT]
)
def test_exact_message(load_error: ErrorFn, text: str, expected: str) -> None:
    err = load_error(text)
    assert str(err) == expected
    assert isinstance(err, SimError) and isinstance(err, ValueError)


# (id, manifests YAML starting at line 3, expected line, parts of the message)
MANIFEST_ERRORS = [
    ("bad-pod-name", pod().replace("name: a}", "name: A_1}"), 4, ["Pod default/A_1: metadata.name: 'A_1' is not a valid name"]),
    ("bad-service-name", "  - kind: Service\n    metadata: {name: 1web}\n    spec: {ports: [{port: 80}]}\n", 4, ["metadata.name: '1web' is not a valid name", "starting with a letter"]),
    ("bad-label-key", pod(", labels: {-app: x}"), 4, ["metadata.labels: '-app' is not a valid label key"]),
    ("bad-label-value", pod(", labels: {app: 'a b'}"), 4, ["metadata.labels.app: 'a b' is not a valid label value"]),
    ("label-value-number", pod(", labels: {v: 1}"), 4, ["metadata.labels.v: expected a string, got 1 (a number)"]),
    ("container-port-range", pod(spec="containers: [{name: w, ports: [{containerPort: 0}]}]"), 5, ["spec.containers[0].ports[0].containerPort: 0 is out of range (allowed: 1-65535)"]),
    ("container-port-string", pod(spec="containers: [{name: w, ports: [{containerPort: '80'}]}]"), 5, ["containerPort: expected an integer, got '80' (a string)"]),
    ("protocol", pod(spec="containers: [{name: w, ports: [{containerPort: 80, protocol: ICMP}]}]"), 5, ["protocol: 'ICMP' is not allowed (allowed: TCP, UDP, SCTP)"]),
    ("port-name-long", pod(spec="containers: [{name: w, ports: [{containerPort: 80, name: a-very-long-port-name}]}]"), 5, ["name: 'a-very-long-port-name' is not a valid port name"]),
    ("port-name-digits", pod(spec="containers: [{name: w, ports: [{containerPort: 80, name: '8080'}]}]"), 5, ["at least one letter"]),
    ("no-containers", pod(spec="containers: []"), 5, ["spec.containers: at least 1 item(s) required"]),
    ("duplicate-container", pod(spec="containers: [{name: w}, {name: w}]"), 5, ["spec.containers[1].name: duplicate container name 'w'"]),
    ("unknown-node", pod(spec="nodeName: node-9, containers: [{name: w}]"), 5, ["spec.nodeName: no node 'node-9' (nodes: node-1, node-2)"]),
    ("no-node-matches", pod(spec="nodeSelector: {disk: ssd}, containers: [{name: w}]"), 5, ["spec.nodeSelector: no node matches disk=ssd"]),
    ("missing-namespace", pod(", namespace: nope"), 4, ["metadata.namespace: namespace 'nope' does not exist (namespaces: default, kube-system)"]),
    ("duplicate-object", pod() + pod(), 7, ["Pod default/a: metadata.name: duplicate Pod default/a (first at lab.yaml:3)"]),
    ("bad-operator", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      podSelector: {matchExpressions: [{key: a, operator: Equals}]}\n", 6, ["spec.podSelector.matchExpressions[0].operator: 'Equals' is not allowed (allowed: In, NotIn, Exists, DoesNotExist)"]),
    ("in-without-values", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      podSelector:\n        matchExpressions:\n          - {key: a, operator: In}\n", 8, ["matchExpressions[0].values: values must be non-empty for operator In"]),
    ("exists-with-values", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      podSelector:\n        matchExpressions:\n          - key: a\n            operator: Exists\n            values: [x]\n", 10, ["values: values must be empty for operator Exists"]),
    ("bad-ipblock", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      ingress:\n        - from:\n            - ipBlock: {cidr: 10.0.0.0/40}\n", 8, ["spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.0/40' is not a valid CIDR"]),
    ("ipv6-ipblock", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      egress:\n        - to:\n            - ipBlock: {cidr: '::/0'}\n", 8, ["IPv6 is not supported"]),
    ("except-outside", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      ingress:\n        - from:\n            - ipBlock:\n                cidr: 10.0.0.0/16\n                except: [10.1.0.0/24]\n", 10, ["ipBlock.except[0]: 10.1.0.0/24 must be a strict subset of cidr 10.0.0.0/16"]),
    ("peer-empty", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      ingress:\n        - from:\n            - {}\n", 8, ["spec.ingress[0].from[0]: must specify a peer"]),
    ("peer-both", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      ingress:\n        - from:\n            - {ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}\n", 8, ["may not specify both ipBlock and another peer"]),
    ("end-port-below", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      ingress:\n        - ports:\n            - port: 80\n              endPort: 70\n", 9, ["spec.ingress[0].ports[0].endPort: 70 is below port 80 (allowed: >= port)"]),
    ("end-port-named", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      ingress:\n        - ports:\n            - {port: http, endPort: 90}\n", 8, ["endPort: may not be given with a named port ('http')"]),
    ("policy-type", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      policyTypes: [ingress]\n", 6, ["spec.policyTypes[0]: 'ingress' is not allowed (allowed: Ingress, Egress)"]),
    ("selector-mismatch", "  - apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: d}\n    spec:\n      selector: {matchLabels: {app: web}}\n      template:\n        metadata:\n          labels: {app: db}\n        spec: {containers: [{name: c}]}\n", 10, ["Deployment default/d: spec.template.metadata.labels: selector does not match template labels (selector: app=web; labels: app=db)"]),
    ("empty-selector", "  - apiVersion: apps/v1\n    kind: ReplicaSet\n    metadata: {name: d}\n    spec:\n      selector: {}\n      template: {spec: {containers: [{name: c}]}}\n", 7, ["spec.selector: empty selector is invalid for a ReplicaSet"]),
    ("replicas-negative", "  - apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: d}\n    spec:\n      replicas: -1\n      selector: {matchLabels: {a: b}}\n      template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c}]}}\n", 7, ["spec.replicas: -1 is out of range (allowed: >= 0)"]),
    ("service-unnamed-ports", "  - kind: Service\n    metadata: {name: web}\n    spec:\n      ports:\n        - port: 80\n        - port: 81\n", 7, ["spec.ports[0]: missing required key 'name'"]),
    ("service-type", "  - kind: Service\n    metadata: {name: web}\n    spec: {type: ExternalName, externalName: a.b}\n", 5, ["spec.type: 'ExternalName' is not allowed (allowed: ClusterIP, NodePort, LoadBalancer)"]),
    ("service-ip-outside", "  - kind: Service\n    metadata: {name: web}\n    spec:\n      clusterIP: 10.0.0.5\n      ports: [{port: 80}]\n", 6, ["spec.clusterIP: 10.0.0.5 is not a usable address of serviceCIDR 10.96.0.0/12"]),
    ("service-ip-taken", "  - kind: Service\n    metadata: {name: web}\n    spec:\n      clusterIP: 10.96.0.10\n      ports: [{port: 80}]\n", 6, ["spec.clusterIP: 10.96.0.10 is already the clusterIP of Service kube-system/kube-dns"]),
    ("service-ip-garbage", "  - kind: Service\n    metadata: {name: web}\n    spec:\n      clusterIP: nope\n      ports: [{port: 80}]\n", 6, ["'nope' is not a valid clusterIP"]),
    ("node-port-clusterip", "  - kind: Service\n    metadata: {name: web}\n    spec:\n      ports:\n        - {port: 80, nodePort: 30080}\n", 7, ["spec.ports[0].nodePort: may not be used when type is ClusterIP"]),
    ("node-port-range", "  - kind: Service\n    metadata: {name: web}\n    spec:\n      type: NodePort\n      ports:\n        - {port: 80, nodePort: 8080}\n", 8, ["nodePort: 8080 is out of range (allowed: 30000-32767)"]),
    ("node-port-taken", "  - kind: Service\n    metadata: {name: a1}\n    spec: {type: NodePort, ports: [{port: 80, nodePort: 30080}]}\n  - kind: Service\n    metadata: {name: a2}\n    spec:\n      type: NodePort\n      ports: [{port: 80, nodePort: 30080}]\n", 10, ["Service default/a2: spec.ports[0].nodePort: 30080 is already allocated"]),
    ("headless-nodeport", "  - kind: Service\n    metadata: {name: web}\n    spec:\n      type: NodePort\n      clusterIP: None\n", 6, ["spec.type: a headless Service (clusterIP: None) may not be NodePort"]),
    ("service-no-ports", "  - kind: Service\n    metadata: {name: web}\n    spec:\n      selector: {app: a}\n", 5, ["spec.ports: at least one port is required"]),
    ("etp-clusterip", "  - kind: Service\n    metadata: {name: web}\n    spec:\n      externalTrafficPolicy: Local\n      ports: [{port: 80}]\n", 6, ["may only be set when type is NodePort or LoadBalancer"]),
    ("target-port-name", "  - kind: Service\n    metadata: {name: web}\n    spec:\n      ports: [{port: 80, targetPort: '8080'}]\n", 6, ["spec.ports[0].targetPort: '8080' is not a valid port name"]),
    ("unresolvable-ref", "  - kind: NetworkPolicy\n    metadata: {name: p}\n    spec:\n      ingress:\n        - from:\n            - ipBlock: {cidr: '${ip:x/zz}/32'}\n", 8, ["NetworkPolicy default/p: spec.ingress[0].from[0].ipBlock.cidr: cannot resolve '${ip:x/zz}/32': endpoint 'x/zz': no namespace 'x' (namespaces: default, kube-system)"]),
    ("ref-to-later-pod", pod(", annotations: {peer: '${ip:default/b}'}") + pod().replace("name: a}", "name: b}"), 4, ["Pod default/a: metadata.annotations.peer: cannot resolve '${ip:default/b}': endpoint 'default/b': no pod 'b' in namespace 'default' (no pods)"]),
    ("ref-dns-name", pod(", annotations: {peer: '${ip:web}'}"), 4, ["endpoint 'web': a DNS name has no address here"]),
    ("manifest-file-missing", "  - file: nope.yaml\n", 3, ["manifests[0].file: cannot read manifest file 'nope.yaml'"]),
    ("manifest-not-mapping", "  - 42\n", 3, ["manifests[0]: expected a mapping, got 42 (a number)"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("manifests", "line", "parts"),
    [c[1:] for c in MANIFEST_ERRORS],
    ids=[c[0] for c in MANIFEST_ERRORS],
)
def test_manifest_errors(
    load_error: ErrorFn, manifests: str, line: int, parts: list[str]
) -> None:
    err = load_error("name: t\nmanifests:\n" + manifests + STEP)
    message = str(err)
    assert message.startswith(f"lab.yaml:{line}: "), message
    for part in parts:
        assert part in message, message


# (id, steps YAML starting at line 3, expected line, parts)
STEP_ERRORS = [
    ("unknown-step", "  - prob: {from: a, to: b}\n", 3, ["steps[0].prob: unknown key 'prob' (allowed: name, probe, send, matrix, apply, delete, label, replay)"]),
    ("two-steps", "  - probe: {from: a, to: b}\n    matrix: {}\n", 4, ["steps[0].matrix: one step per item (found probe, matrix)"]),
    ("no-step-key", "  - name: lonely\n", 3, ["steps[0]: missing the step key"]),
    ("step-not-mapping", "  - probe\n", 3, ["steps[0]: expected a mapping, got 'probe' (a string)"]),
    ("missing-to", "  - probe:\n      from: a\n", 3, ["steps[0].probe: missing required key 'to'"]),
    ("unknown-probe-key", "  - probe:\n      from: a\n      to: b\n      prot: UDP\n", 6, ["steps[0].probe: unknown key 'prot' (allowed: from, to, port, protocol, expect)"]),
    ("icmp-port", "  - probe: {from: a, to: b, protocol: ICMP, port: 80}\n", 3, ["steps[0].probe.port: ICMP takes no port"]),
    ("bad-protocol", "  - probe: {from: a, to: b, protocol: tcp}\n", 3, ["steps[0].probe.protocol: 'tcp' is not allowed (allowed: TCP, UDP, SCTP, ICMP)"]),
    ("bad-verdict", "  - probe:\n      from: a\n      to: b\n      expect: alowed\n", 6, ["steps[0].probe.expect.verdict: 'alowed' is not allowed (allowed: delivered, allowed, denied,"]),
    ("expect-type", "  - probe: {from: a, to: b, expect: 5}\n", 3, ["steps[0].probe.expect: expected a verdict word or a mapping {verdict, policy, via, endpoint, sourceIP}, got 5 (a number)"]),
    ("bad-port", "  - probe: {from: a, to: b, port: 0}\n", 3, ["steps[0].probe.port: 0 is out of range (allowed: 1-65535)"]),
    ("bad-port-type", "  - probe: {from: a, to: b, port: [80]}\n", 3, ["expected a port number or a port name, got a list"]),
    ("matrix-both", "  - matrix:\n      expect: {denied: [], allowed: []}\n", 4, ["steps[0].matrix.expect: give exactly one of denied or allowed"]),
    ("matrix-pair", "  - matrix:\n      expect:\n        denied: [x/a to y/b]\n", 5, ["steps[0].matrix.expect.denied[0]: 'x/a to y/b' is not a pair"]),
    ("matrix-from", "  - matrix: {from: everyone}\n", 3, ["steps[0].matrix.from: expected 'all' or a list of endpoints, got 'everyone' (a string)"]),
    ("label-both", "  - label: {pod: x/a, namespace: x}\n", 3, ["steps[0].label: give exactly one of pod (NS/NAME) or namespace (NAME)"]),
    ("label-pod-form", "  - label:\n      pod: a\n", 4, ["steps[0].label.pod: 'a' is not NS/NAME"]),
    ("label-bad-key", "  - label:\n      pod: x/a\n      set: {'bad key': v}\n", 5, ["steps[0].label.set: 'bad key' is not a valid label key"]),
    ("label-managed", "  - label: {namespace: x, remove: [kubernetes.io/metadata.name]}\n", 3, ["kubernetes.io/metadata.name is managed by Kubernetes"]),
    ("delete-kind", "  - delete:\n      - configmap/default/x\n", 4, ["delete 'configmap/default/x': unknown kind 'configmap'"]),
    ("delete-form", "  - delete:\n      - pod/x\n", 4, ["delete 'pod/x': expected pod/NS/NAME"]),
    ("replay-missing", "  - replay:\n      pcap: nope.pcap\n", 4, ["steps[0].replay.pcap: no such capture file: 'nope.pcap'"]),
    ("replay-verdict", "  - replay:\n      pcap: lab.yaml\n      expect: {ok: 1}\n", 5, ["steps[0].replay.expect.ok: 'ok' is not allowed"]),
    ("send-layer", "  - send:\n      at: x/a\n      packet:\n        - {IP: {}, TCP: {}}\n", 6, ["steps[0].send.packet[0]: a layer is a mapping with one key"]),
    ("send-fields", "  - send:\n      at: x/a\n      packet:\n        - IP: 5\n", 6, ["steps[0].send.packet[0].IP: the fields of IP are a mapping"]),
    ("send-hex", "  - send:\n      at: x/a\n      packet:\n        hex: 450\n", 5, ["steps[0].send.packet: expected a list of layers or {hex:"]),
    ("send-hex-odd", "  - send:\n      at: x/a\n      packet:\n        hex: '450'\n", 6, ["steps[0].send.packet.hex: not an even number of hex digits"]),
    ("apply-validated-at-load", "  - apply:\n      - kind: Service\n        metadata: {name: web}\n        spec: {ports: [{port: 99999}]}\n", 6, ["Service default/web: spec.ports[0].port: 99999 is out of range"]),
    ("apply-node", "  - apply:\n      - {kind: Node, metadata: {name: n}}\n", 4, ["Node n: a step cannot add or change a Node (nodes are fixed when the scenario loads; nodes: node-1, node-2)"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("steps", "line", "parts"),
    [c[1:] for c in STEP_ERRORS],
    ids=[c[0] for c in STEP_ERRORS],
)
def test_step_errors(
    load_error: ErrorFn, steps: str, line: int, parts: list[str]
) -> None:
    err = load_error("name: t\nsteps:\n" + steps)
    message = str(err)
    assert message.startswith(f"lab.yaml:{line}: "), message
    for part in parts:
        assert part in message, message


def test_apply_with_reference_is_checked_in_full_only_when_run(
    load: LoadFn, load_error: ErrorFn
) -> None:
    # What needs the addresses (the clusterIP a reference gives) waits for the step ...
    text = (
        "name: t\nsteps:\n  - apply:\n      - kind: Service\n        metadata: {name: w}\n"
        "        spec: {ports: [{port: %s}], clusterIP: '${ip:x/a}'}\n"
    )
    scenario, _ = load(text % 80)
    assert len(scenario.steps) == 1
    # ... but the schema is checked at load time, with a placeholder address.
    assert str(load_error(text % 99999)) == (
        "lab.yaml:6: Service default/w: spec.ports[0].port: 99999 is out of range"
        " (allowed: 1-65535)"
    )


def test_error_inside_manifest_file_names_that_file(
    tmp_path: Path, load_error: ErrorFn
) -> None:
    (tmp_path / "objs.yaml").write_text(
        "kind: Namespace\nmetadata: {name: x}\n---\nkind: Service\nmetadata: {name: web}\n"
        "spec:\n  ports: [{port: 0}]\n"
    )
    err = load_error("name: t\nmanifests:\n  - file: objs.yaml\n" + STEP)
    assert str(err) == (
        "objs.yaml:7: Service default/web: spec.ports[0].port: 0 is out of range"
        " (allowed: 1-65535)"
    )
    assert err.loc is not None and err.loc.line == 7
    assert (err.obj, err.field) == ("Service default/web", "spec.ports[0].port")


def test_yaml_error_inside_manifest_file(tmp_path: Path, load_error: ErrorFn) -> None:
    (tmp_path / "objs.yaml").write_text("kind: Pod\nmetadata: {name: [}\n")
    err = load_error("name: t\nmanifests:\n  - file: objs.yaml\n" + STEP)
    assert str(err).startswith("objs.yaml:2: invalid YAML")


def test_scenario_must_be_one_document(load_error: ErrorFn) -> None:
    err = load_error("name: t\n" + STEP + "---\nname: u\n")
    assert str(err) == "lab.yaml:5: a scenario is one YAML document (found 2)"


@pytest.mark.parametrize(
    "text", ["", "# nothing\n", "---\n"], ids=["empty", "comment", "marker"]
)
def test_empty_scenario(load_error: ErrorFn, text: str) -> None:
    assert str(load_error(text)) == "lab.yaml:1: the scenario file is empty"


def test_topology_error_is_a_value_error() -> None:
    assert issubclass(TopologyError, ValueError)
