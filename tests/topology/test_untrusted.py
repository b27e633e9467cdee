"""Hostile or careless input: every defect found by fuzzing and review, one test each.

Each test loads a whole scenario (the path a user's file takes) and asserts the exact error,
or that what the API server accepts is accepted with its meaning.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.topology.conftest import ErrorFn, LoadFn, scenario_text
from topology.errors import TopologyError
from topology.loader import load_scenario
from topology.model import LabelSelector

DEPLOYMENT = """
manifests:
  - apiVersion: apps/v1
    kind: {kind}
    metadata: {{name: web}}
    spec:
      {extra}
      selector: {{matchLabels: {{app: w}}}}
      template:
        metadata: {{labels: {{app: w}}}}
        spec: {{containers: [{{name: c}}]{spec}}}
"""


def workload(extra: str, kind: str = "Deployment", spec: str = "") -> str:
    return scenario_text(DEPLOYMENT.format(kind=kind, extra=extra, spec=spec))


# -- YAML -------------------------------------------------------------------------------

# 720 bytes: a valid scenario whose only trick is an alias bomb inside `env`, a field the
# simulator ignores.  Expanded, it is 10**9 strings; before the alias limit, loading it used
# more than 5 GB and never finished.
ENV_BOMB = """\
name: bomb
manifests:
  - apiVersion: v1
    kind: Pod
    metadata: {name: a}
    spec:
      containers:
        - name: c
          env:
            - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]
            - &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
            - &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
            - &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
            - &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
            - &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
            - &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
            - &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
            - [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
steps:
  - probe: {from: default/a, to: default/a}
"""


def test_alias_bomb_in_an_ignored_field_is_refused(load_error: ErrorFn) -> None:
    assert len(ENV_BOMB) == 720
    assert str(load_error(ENV_BOMB)) == (
        "lab.yaml:14: YAML aliases expand to more than 100000 values (the limit is"
        " 100000; a 'billion laughs' file?)"
    )


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(
        b"name: t\ndescription: caf\xe9\nsteps:\n  - probe: {from: a, to: b}\n"
    )
    with pytest.raises(TopologyError) as info:
        load_scenario(path)
    assert str(info.value) == (
        f"{path}:2: not UTF-8 text (byte 0xe9 at line 2, column 17; YAML files are read"
        " as UTF-8)"
    )


def test_a_manifest_file_that_is_not_utf8(tmp_path: Path, load: LoadFn) -> None:
    (tmp_path / "pod.yaml").write_bytes(b"kind: Pod\n\xff\n")
    with pytest.raises(TopologyError) as info:
        load(scenario_text("manifests:\n  - file: pod.yaml\n"))
    assert str(info.value) == (
        "pod.yaml:2: not UTF-8 text (byte 0xff at line 2, column 1; YAML files are read"
        " as UTF-8)"
    )


def test_a_control_character_names_its_line(load_error: ErrorFn) -> None:
    text = scenario_text("description: |\n  one\n  two \x1b[31m red\n")
    assert str(load_error(text)) == (
        "lab.yaml:4: invalid YAML: unacceptable character U+001B: control characters"
        " are not allowed (YAML allows tab, newline and printable characters)"
    )


def test_a_huge_integer_is_refused_before_conversion(load_error: ErrorFn) -> None:
    text = workload(f"replicas: {'9' * 5000}")
    assert str(load_error(text)) == (
        "lab.yaml:7: invalid YAML: an integer of 5000 characters (allowed: at most 80;"
        " the largest Kubernetes integer, int64, has 19 digits)"
    )


def test_a_timestamp_is_text_as_in_kubectl(load: LoadFn) -> None:
    scenario, _ = load(
        scenario_text(
            "manifests:\n  - {apiVersion: v1, kind: Pod, metadata: {name: a, labels:"
            " {day: 2024-01-31}}, spec: {containers: [{name: c}]}}\n"
        )
    )
    assert scenario.cluster.pods["default/a"].labels["day"] == "2024-01-31"


# -- the cluster section ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        (
            "serviceCIDR: 10.96.0.0/29",
            "lab.yaml:3: cluster.serviceCIDR: 10.96.0.0/29 is too small: kube-dns takes its"
            " .10 and default/kubernetes its .1 (allowed: a prefix of /28 or shorter; or"
            " set dns: false)",
        ),
        (
            "serviceCIDR: 10.96.0.0/32",
            "lab.yaml:3: cluster.serviceCIDR: 10.96.0.0/32 is too small: kube-dns takes its"
            " .10 and default/kubernetes its .1 (allowed: a prefix of /28 or shorter; or"
            " set dns: false)",
        ),
        (
            "serviceCIDR: 10.96.0.0/31\n  dns: false",
            "lab.yaml:3: cluster.serviceCIDR: 10.96.0.0/31 is too small: default/kubernetes"
            " takes its .1 (allowed: a prefix of /30 or shorter)",
        ),
        (
            "serviceCIDR: 10.0.0.0/8",
            "lab.yaml:3: cluster.serviceCIDR: 10.0.0.0/8 is too large (allowed: a prefix of"
            " /12 or longer, as kube-apiserver's --service-cluster-ip-range)",
        ),
        (
            "serviceCIDR: 224.0.0.0/16",
            "lab.yaml:3: cluster.serviceCIDR: 224.0.0.0/16 overlaps the multicast"
            " (224.0.0.0/4) range (allowed: unicast ranges)",
        ),
        (
            "nodeCIDR: 127.0.0.0/24",
            "lab.yaml:3: cluster.nodeCIDR: 127.0.0.0/24 overlaps the loopback"
            " (127.0.0.0/8) range (allowed: unicast ranges)",
        ),
        (
            "nodes: [{name: n1, podCIDR: 169.254.1.0/24}]",
            "lab.yaml:3: cluster.nodes[0].podCIDR: podCIDR 169.254.1.0/24 of node 'n1'"
            " overlaps the link-local (169.254.0.0/16) range",
        ),
    ],
    ids=[
        "service-29-dns",
        "service-32-dns",
        "service-31",
        "service-too-large",
        "service-multicast",
        "node-loopback",
        "pod-link-local",
    ],
)
def test_address_ranges(load_error: ErrorFn, cluster: str, message: str) -> None:
    assert str(load_error(scenario_text(f"cluster:\n  {cluster}\n"))) == message


def test_a_small_service_cidr_without_dns_is_enough(load: LoadFn) -> None:
    scenario, _ = load(
        scenario_text("cluster:\n  serviceCIDR: 10.96.0.0/30\n  dns: false\n")
    )
    assert (
        str(scenario.cluster.services["default/kubernetes"].cluster_ip) == "10.96.0.1"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nodeCIDR", "10.100.0.0/255.255.255.0"),
        ("serviceCIDR", "10.96.0.0/255.240.0.0"),
        ("serviceCIDR", "10.96.0.0/0.15.255.255"),
    ],
    ids=["node-netmask", "service-netmask", "service-hostmask"],
)
def test_netmask_cidrs_are_refused(load_error: ErrorFn, field: str, value: str) -> None:
    assert str(load_error(scenario_text(f"cluster:\n  {field}: {value}\n"))) == (
        f"lab.yaml:3: cluster.{field}: '{value}' is not a valid CIDR (the prefix length"
        " is a number 0-32, not a netmask)"
    )


EXTERNAL = "cluster:\n  externals:\n    - {name: ext, ip: 192.0.2.10}\n    - {name: two, ip: %s}\n"


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("192.0.2.10", "192.0.2.10 is already the address of external 'ext'"),
        (
            "255.255.255.255",
            "255.255.255.255 is in the reserved or the limited broadcast (240.0.0.0/4)"
            " range (allowed: a unicast host address)",
        ),
        (
            "10.100.0.255",
            "10.100.0.255 is inside nodeCIDR 10.100.0.0/24 (an external host is outside"
            " the cluster)",
        ),
        (
            "239.1.2.3",
            "239.1.2.3 is in the multicast (224.0.0.0/4) range (allowed: a unicast host"
            " address)",
        ),
        (
            "127.0.0.1",
            "127.0.0.1 is in the loopback (127.0.0.0/8) range (allowed: a unicast host"
            " address)",
        ),
        (
            "0.0.0.0",
            "0.0.0.0 is in the 'this network' (0.0.0.0/8) range (allowed: a unicast host"
            " address)",
        ),
        (
            "10.0.2.7",
            "10.0.2.7 is inside podCIDR of node 'node-2' 10.0.2.0/24 (an external host is"
            " outside the cluster)",
        ),
        (
            "10.96.0.1",
            "10.96.0.1 is inside serviceCIDR 10.96.0.0/12 (an external host is outside"
            " the cluster)",
        ),
    ],
    ids=[
        "duplicate",
        "broadcast",
        "node-broadcast",
        "multicast",
        "loopback",
        "unspecified",
        "pod-range",
        "service-range",
    ],
)
def test_external_addresses(load_error: ErrorFn, ip: str, reason: str) -> None:
    err = load_error(scenario_text(EXTERNAL % ip))
    assert str(err) == f"lab.yaml:5: cluster.externals[1].ip: {reason}"


def test_too_many_nodes(load_error: ErrorFn) -> None:
    nodes = "".join(
        f"    - {{name: n{i}, podCIDR: 10.{i // 256}.{i % 256}.0/24}}\n"
        for i in range(5001)
    )
    text = scenario_text(f"cluster:\n  nodeCIDR: 172.16.0.0/16\n  nodes:\n{nodes}")
    assert str(load_error(text)) == (
        "lab.yaml:4: cluster.nodes: 5001 nodes (allowed: at most 5000)"
    )


# -- workloads --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "kind", "line", "field", "value"),
    [
        ("replicas: 2147483648", "Deployment", 7, "spec.replicas", 2147483648),
        ("replicas: -1", "ReplicaSet", 7, "spec.replicas", -1),
        (
            "ordinals: {start: 2147483648}",
            "StatefulSet",
            7,
            "spec.ordinals.start",
            2**31,
        ),
    ],
    ids=["replicas-int32", "replicas-negative", "ordinal-int32"],
)
def test_int32_fields(
    load_error: ErrorFn, extra: str, kind: str, line: int, field: str, value: int
) -> None:
    bound = "allowed: >= 0" if value < 0 else "allowed: <= 2147483647"
    assert str(load_error(workload(extra, kind))) == (
        f"lab.yaml:{line}: {kind} default/web: {field}: {value} is out of range ({bound})"
    )


def test_two_billion_replicas_fail_at_once(load_error: ErrorFn) -> None:
    # A valid int32: the podCIDRs (two /24s) hold 506 pods.  Nothing is allocated first.
    assert str(load_error(workload("replicas: 2000000000"))) == (
        "lab.yaml:7: Deployment default/web: spec.replicas: 2000000000 replicas do not"
        " fit: the cluster may hold 150000 pods and has 1 others"
    )


def test_replicas_beyond_the_free_pod_addresses(load_error: ErrorFn) -> None:
    assert str(load_error(workload("replicas: 1000"))) == (
        "lab.yaml:7: Deployment default/web: spec.replicas: 1000 replicas do not fit:"
        " the podCIDRs of the nodes they may run on have 505 free pod addresses"
        " (node-1 10.0.1.0/24, node-2 10.0.2.0/24)"
    )


def test_host_network_replicas_are_capped_by_the_pod_limit(load_error: ErrorFn) -> None:
    err = load_error(workload("replicas: 150000", spec=", hostNetwork: true"))
    assert "150000 replicas do not fit: the cluster may hold 150000 pods" in str(err)


def test_an_image_is_a_string(load_error: ErrorFn) -> None:
    text = scenario_text(
        "manifests:\n  - apiVersion: v1\n    kind: Pod\n    metadata: {name: a}\n"
        "    spec:\n      containers:\n        - name: c\n          image: {a: 1}\n"
    )
    assert str(load_error(text)) == (
        "lab.yaml:9: Pod default/a: spec.containers[0].image: expected a string,"
        " got a mapping"
    )


# -- Services ---------------------------------------------------------------------------

SERVICE = """
manifests:
  - apiVersion: v1
    kind: Service
    metadata: {{name: web}}
    spec:
      selector: {{app: w}}
      ports: [{{port: 80, {port}}}]
"""


def test_a_service_port_name_is_a_dns_label(load: LoadFn) -> None:
    # validateServicePort: ValidateDNS1123Label, so longer than an IANA_SVC_NAME's 15.
    scenario, _ = load(scenario_text(SERVICE.format(port="name: http-frontend-port")))
    assert (
        scenario.cluster.services["default/web"].ports[0].name == "http-frontend-port"
    )


@pytest.mark.parametrize(
    ("port", "field", "value"),
    [
        ("name: Http", "name", "Http"),
        ("targetPort: http-frontend-port", "targetPort", "http-frontend-port"),
        ("targetPort: web--ui", "targetPort", "web--ui"),
    ],
    ids=["name-uppercase", "target-too-long", "target-double-dash"],
)
def test_service_port_names(
    load_error: ErrorFn, port: str, field: str, value: str
) -> None:
    err = load_error(scenario_text(SERVICE.format(port=port)))
    assert err.field == f"spec.ports[0].{field}"
    assert err.reason.startswith(f"{value!r} is not a valid ")


def test_a_container_port_name_is_an_iana_svc_name(load_error: ErrorFn) -> None:
    text = scenario_text(
        "manifests:\n  - {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers:"
        " [{name: c, ports: [{containerPort: 80, name: http-frontend-port}]}]}}\n"
    )
    assert str(load_error(text)) == (
        "lab.yaml:3: Pod default/a: spec.containers[0].ports[0].name: 'http-frontend-port'"
        " is not a valid port name (at most 15 lowercase letters, digits and '-', with at"
        " least one letter, no '--', not starting or ending with '-')"
    )


# -- NetworkPolicies --------------------------------------------------------------------

POLICY = """
manifests:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {{name: p}}
    spec:
      podSelector:
      ingress:
        - from:
            - {peer}
"""


def test_a_null_pod_selector_selects_every_pod(load: LoadFn) -> None:
    # The network-policy-api conformance suite creates exactly this; Go decodes the
    # non-pointer spec.podSelector from null as the empty selector.
    scenario, _ = load(scenario_text(POLICY.format(peer="{podSelector: {}}")))
    policy = scenario.cluster.policies["default/p"]
    assert policy.pod_selector == LabelSelector()


def test_a_null_peer_namespace_selector_is_absent(load: LoadFn) -> None:
    # Peer selectors are pointers: null is nil, "not given" (pods of the policy's own
    # namespace), not the empty selector (every namespace).
    text = POLICY.format(
        peer="{podSelector: {matchLabels: {a: b}}, namespaceSelector: null}"
    )
    scenario, _ = load(scenario_text(text))
    (peer,) = scenario.cluster.policies["default/p"].ingress[0].peers
    assert peer.namespace_selector is None
    assert peer.pod_selector == LabelSelector({"a": "b"})


def test_a_peer_of_nulls_is_no_peer(load_error: ErrorFn) -> None:
    text = POLICY.format(peer="{podSelector: null, namespaceSelector: null}")
    assert str(load_error(scenario_text(text))) == (
        "lab.yaml:10: NetworkPolicy default/p: spec.ingress[0].from[0]: must specify a"
        " peer (allowed: podSelector, namespaceSelector, ipBlock)"
    )


@pytest.mark.parametrize(
    ("block", "field", "value"),
    [
        ("{cidr: 10.0.0.0/255.0.0.0}", "cidr", "10.0.0.0/255.0.0.0"),
        (
            "{cidr: 10.0.0.0/8, except: [10.1.0.0/255.255.0.0]}",
            "except[0]",
            "10.1.0.0/255.255.0.0",
        ),
    ],
    ids=["cidr", "except"],
)
def test_ip_block_netmasks_are_refused(
    load_error: ErrorFn, block: str, field: str, value: str
) -> None:
    err = load_error(scenario_text(POLICY.format(peer=f"ipBlock: {block}")))
    assert str(err) == (
        f"lab.yaml:10: NetworkPolicy default/p: spec.ingress[0].from[0].ipBlock.{field}:"
        f" '{value}' is not a valid CIDR (the prefix length is a number 0-32, not a"
        " netmask)"
    )


def test_ip_block_host_bits_are_still_a_warning(load: LoadFn) -> None:
    _, warnings = load(scenario_text(POLICY.format(peer="ipBlock: {cidr: 10.0.0.1/8}")))
    assert warnings == [
        "lab.yaml:10: NetworkPolicy default/p: spec.ingress[0].from[0].ipBlock.cidr:"
        " 10.0.0.1/8 has host bits set; it means 10.0.0.0/8"
    ]


def test_annotations_are_bounded_as_the_api_server_bounds_them(
    load: LoadFn, load_error: ErrorFn
) -> None:
    def pod(size: int) -> str:
        return scenario_text(
            "manifests:\n  - apiVersion: v1\n    kind: Pod\n    metadata:\n      name: a\n"
            f"      annotations: {{note: {'x' * size}}}\n"
            "    spec: {containers: [{name: c}]}\n"
        )

    load(pod(262140))  # key and value: 262144 bytes, the limit
    assert str(load_error(pod(262141))) == (
        "lab.yaml:7: Pod default/a: metadata.annotations: annotations take 262145 bytes"
        " (allowed: at most 262144)"
    )


def test_a_host_port_is_a_port_or_zero(load: LoadFn, load_error: ErrorFn) -> None:
    def pod(host_port: int) -> str:
        return scenario_text(
            "manifests:\n  - {apiVersion: v1, kind: Pod, metadata: {name: a}, spec:"
            " {containers: [{name: c, ports: [{containerPort: 80, hostPort:"
            f" {host_port}}}]}}]}}}}\n"
        )

    load(pod(0))
    assert str(load_error(pod(65536))) == (
        "lab.yaml:3: Pod default/a: spec.containers[0].ports[0].hostPort: 65536 is out"
        " of range (allowed: <= 65535)"
    )


@pytest.mark.parametrize("ports", ["1.5", "-1", "{a: 1}", "web"])
def test_service_ports_of_the_wrong_type(load_error: ErrorFn, ports: str) -> None:
    # Found by bench_fuzz: the nodePort reservation read `ports` before validation.
    text = scenario_text(
        "manifests:\n  - apiVersion: v1\n    kind: Service\n    metadata: {name: web}\n"
        f"    spec:\n      type: NodePort\n      ports: {ports}\n"
    )
    err = load_error(text)
    assert str(err).startswith(
        "lab.yaml:8: Service default/web: spec.ports: expected a list"
    )
