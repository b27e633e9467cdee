"""Endpoint forms, their errors, and `${ip:...}` substitution."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from tests.topology.conftest import REFERENCE, LoadFn, scenario_text
from topology.endpoint import (
    EndpointKind,
    close_matches,
    ip_of,
    owner_of,
    qualify,
    resolve_endpoint,
    substitute,
    substitute_deep,
)
from topology.errors import TopologyError
from topology.model import Cluster

LAB = REFERENCE.replace(
    "steps:",
    """  - kind: Namespace
    metadata: {name: node}
  - kind: Pod
    metadata: {name: p, namespace: node}
    spec: {containers: [{name: c}]}
  - kind: Service
    metadata: {name: web}
    spec: {selector: {app: a}, ports: [{port: 80}]}
  - kind: Service
    metadata: {name: hl}
    spec: {clusterIP: None, selector: {app: a}}
cluster:
  externals: [{name: db, ip: 192.0.2.7}]
steps:""",
)


@pytest.fixture
def cluster(load: LoadFn) -> Cluster:
    scenario, _ = load(LAB)
    return scenario.cluster


@pytest.mark.parametrize(
    ("text", "kind", "ip", "detail"),
    [
        ("default/a", EndpointKind.POD, "10.0.1.3", "web"),
        ("pod/default/a", EndpointKind.POD, "10.0.1.3", "web"),
        ("pod/node/p", EndpointKind.POD, "10.0.2.3", "c"),
        ("default/c/side", EndpointKind.CONTAINER, "10.0.2.2", "side"),
        ("pod/default/c/side", EndpointKind.CONTAINER, "10.0.2.2", "side"),
        ("node/node-2", EndpointKind.NODE, "10.100.0.3", None),
        ("external/db", EndpointKind.EXTERNAL, "192.0.2.7", None),
        ("svc/default/web", EndpointKind.SERVICE, "10.96.0.2", None),
        ("svc/default/hl", EndpointKind.SERVICE, None, None),
        ("10.0.2.2", EndpointKind.IP, "10.0.2.2", None),
        ("localhost", EndpointKind.IP, "127.0.0.1", None),
        ("web", EndpointKind.DNS, None, None),
        ("web.default.svc.cluster.local", EndpointKind.DNS, None, None),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_resolve_endpoint(
    cluster: Cluster, text: str, kind: EndpointKind, ip: str | None, detail: str | None
) -> None:
    ep = resolve_endpoint(cluster, text)
    assert (ep.kind, ep.text) == (kind, text)
    assert ep.ip == (IPv4Address(ip) if ip else None)
    assert ep.container == detail
    if kind in (EndpointKind.POD, EndpointKind.CONTAINER):
        assert (
            ep.pod is not None and ep.node is not None and ep.node.name == ep.pod.node
        )
    if kind is EndpointKind.DNS:
        assert ep.name == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default/zz", "endpoint 'default/zz': no pod 'zz' in namespace 'default' (pods: a, b, c)"),
        ("x/a", "endpoint 'x/a': no namespace 'x' (namespaces: default, kube-system, node)"),
        ("default/c/nope", "endpoint 'default/c/nope': pod default/c has no container 'nope' (containers: web, side)"),
        ("node/node-9", "endpoint 'node/node-9': no node 'node-9' (nodes: node-1, node-2)"),
        ("node/p/c", "expected node/NAME (write pod/node/... for a namespace named 'node')"),
        ("external/www", "no external host 'www' (externals: db)"),
        ("svc/default/nope", "no service 'nope' in namespace 'default' (services: kubernetes, web, hl)"),
        ("svc/web", "expected svc/NS/NAME"),
        ("a/b/c/d", "too many '/'"),
        ("default//a", "empty part"),
        ("10.0.2.300", "not a valid IPv4 address"),
        ("bad_name!", "is not a valid DNS name"),
    ],
    ids=["pod", "namespace", "container", "node", "node-form", "external", "service",
         "svc-form", "slashes", "empty", "ip", "dns"],
)  # fmt: skip
def test_endpoint_errors(cluster: Cluster, text: str, message: str) -> None:
    with pytest.raises(TopologyError) as info:
        resolve_endpoint(cluster, text)
    assert message in str(info.value)


def test_long_listings_are_truncated(load: LoadFn) -> None:
    scenario, _ = load(
        scenario_text(
            """
            manifests:
              - apiVersion: apps/v1
                kind: Deployment
                metadata: {name: w}
                spec:
                  replicas: 20
                  selector: {matchLabels: {a: b}}
                  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c}]}}
            """
        )
    )
    with pytest.raises(TopologyError, match=r"w-11, \.\.\. \(8 more\)\)"):
        resolve_endpoint(scenario.cluster, "default/zz")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("default/c", "10.0.2.2"),
        ("node/node-1", "10.100.0.2"),
        ("svc/kube-system/kube-dns", "10.96.0.10"),
        ("external/db", "192.0.2.7"),
        ("10.1.2.3", "10.1.2.3"),
    ],
    ids=["pod", "node", "service", "external", "literal"],
)
def test_ip_of(cluster: Cluster, text: str, expected: str) -> None:
    assert str(ip_of(cluster, text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("web.default", "a DNS name has no address here"), ("svc/default/hl", "headless")],
    ids=["dns", "headless"],
)
def test_ip_of_errors(cluster: Cluster, text: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        ip_of(cluster, text)


def test_substitute(cluster: Cluster) -> None:
    assert substitute("cidr: ${ip:default/a}/32", cluster) == "cidr: 10.0.1.3/32"
    assert (
        substitute("${ip:node/node-1} ${ip: default/c }", cluster)
        == "10.100.0.2 10.0.2.2"
    )
    assert substitute("no reference $HOME ${x}", cluster) == "no reference $HOME ${x}"
    nested = {"a": ["${ip:default/b}", 5, {"b": "${ip:external/db}"}]}
    assert substitute_deep(nested, cluster) == {
        "a": ["10.0.1.4", 5, {"b": "192.0.2.7"}]
    }
    with pytest.raises(TopologyError, match="endpoint 'default/zz'"):
        substitute("${ip:default/zz}", cluster)


def test_owner_of(cluster: Cluster) -> None:
    pod = owner_of(cluster, IPv4Address("10.0.1.4"))
    assert pod is not None and pod.kind is EndpointKind.POD and pod.text == "default/b"
    node = owner_of(cluster, IPv4Address("10.100.0.3"))
    assert node is not None and node.text == "node/node-2"
    ext = owner_of(cluster, IPv4Address("192.0.2.7"))
    assert ext is not None and ext.kind is EndpointKind.EXTERNAL
    assert owner_of(cluster, IPv4Address("8.8.8.8")) is None


@pytest.mark.parametrize(
    ("text", "namespace", "expected"),
    [
        ("a", "default", "default/a"),
        ("p", "node", "pod/node/p"),  # a namespace named like a form's head
        ("pod/a", "default", "default/a"),
        ("pod/zz", "default", "pod/default/zz"),  # resolve_endpoint lists the pods
        ("svc/web", "default", "svc/default/web"),
        ("web", "default", "web"),  # no pod: a DNS name
        ("a", "node", "a"),
        ("default/b", "node", "default/b"),
        ("node/node-1", "default", "node/node-1"),
        ("10.0.1.3", "default", "10.0.1.3"),
        ("localhost", "default", "localhost"),
    ],
    ids=["pod", "head-namespace", "pod-form", "pod-form-missing", "svc-form", "dns",
         "other-namespace", "full", "node", "ip", "localhost"],
)  # fmt: skip
def test_qualify(cluster: Cluster, text: str, namespace: str, expected: str) -> None:
    assert qualify(cluster, text, namespace) == expected


def test_qualify_an_unknown_namespace(cluster: Cluster) -> None:
    with pytest.raises(TopologyError) as info:
        qualify(cluster, "a", "prod")
    assert str(info.value) == (
        "namespace 'prod' does not exist (namespaces: default, kube-system, node)"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("p", ["pod/node/p"]),  # exactly that name elsewhere: only it
        ("WEB", ["svc/default/web"]),
        ("web.default", ["svc/default/web"]),
        ("coredns-1", ["kube-system/coredns-0"]),
        ("zzzz", []),
    ],
    ids=["exact", "case", "dns-name", "typo", "none"],
)
def test_close_matches(cluster: Cluster, name: str, expected: list[str]) -> None:
    assert close_matches(cluster, name) == expected
