"""apply / delete / label: pure changes that return a new cluster."""

from __future__ import annotations

from typing import Any

import pytest

from tests.topology.conftest import REFERENCE, LoadFn
from topology.change import (
    apply,
    build_cluster,
    delete,
    initial_cluster,
    label,
    parse_ref,
)
from topology.config import default_config
from topology.errors import TopologyError
from topology.model import Cluster
from topology.scenario import LabelStep, Manifest


def m(
    kind: str, name: str, spec: dict[str, Any] | None = None, **meta: Any
) -> Manifest:
    data: dict[str, Any] = {"kind": kind, "metadata": {"name": name, **meta}}
    if spec is not None:
        data["spec"] = spec
    return Manifest(data)


def deployment(
    name: str, replicas: int, labels: dict[str, str], port: int = 80
) -> Manifest:
    return m(
        "Deployment",
        name,
        {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, **labels}},
                "spec": {
                    "containers": [{"name": "c", "ports": [{"containerPort": port}]}]
                },
            },
        },
    )


@pytest.fixture
def cluster(load: LoadFn) -> Cluster:
    scenario, _ = load(REFERENCE)
    return scenario.cluster


def pod_ips(cluster: Cluster, prefix: str) -> dict[str, str]:
    return {k: str(p.ip) for k, p in cluster.pods.items() if k.startswith(prefix)}


def test_apply_returns_a_new_cluster(cluster: Cluster) -> None:
    before = dict(cluster.pods)
    new, warnings = apply(
        cluster,
        [
            m("Namespace", "x"),
            m("Pod", "p", {"containers": [{"name": "c"}]}, namespace="x"),
        ],
    )
    assert "x/p" in new.pods and "x" in new.namespaces
    assert dict(cluster.pods) == before and "x" not in cluster.namespaces
    assert warnings == []


def test_build_cluster_equals_apply_on_initial() -> None:
    objects = [deployment("web", 2, {})]
    built, _ = build_cluster(default_config(), objects)
    applied, _ = apply(initial_cluster(default_config()), objects)
    assert built == applied


def test_scale_up_and_down(cluster: Cluster) -> None:
    up, _ = apply(cluster, [deployment("web", 3, {})])
    first = pod_ips(up, "default/web-")
    assert list(first) == ["default/web-0", "default/web-1", "default/web-2"]
    down, _ = apply(up, [deployment("web", 1, {})])
    assert pod_ips(down, "default/web-") == {"default/web-0": first["default/web-0"]}
    again, _ = apply(down, [deployment("web", 2, {})])
    assert list(pod_ips(again, "default/web-")) == ["default/web-0", "default/web-1"]
    assert again.workloads["default/web"].replicas == 2


def test_template_change_updates_pods_in_place(cluster: Cluster) -> None:
    first, _ = apply(cluster, [deployment("web", 2, {"v": "1"})])
    second, _ = apply(first, [deployment("web", 2, {"v": "2"}, port=8080)])
    for key in ("default/web-0", "default/web-1"):
        old, new = first.pods[key], second.pods[key]
        assert (new.ip, new.node) == (old.ip, old.node)
        assert new.labels == {"app": "web", "v": "2"}
        assert new.ports()[0].port == 8080


def test_workload_selector_is_immutable(cluster: Cluster) -> None:
    first, _ = apply(cluster, [deployment("web", 1, {})])
    changed = deployment("web", 1, {"x": "y"})
    changed.data["spec"]["selector"] = {"matchLabels": {"x": "y"}}
    with pytest.raises(
        TopologyError, match=r"spec.selector: field is immutable \(was app=web"
    ):
        apply(first, [changed])


def test_daemonset_follows_node_selector(cluster: Cluster) -> None:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "c"}]},
        },
    }
    first, _ = apply(cluster, [m("DaemonSet", "agent", spec)])
    assert set(pod_ips(first, "default/agent-")) == {
        "default/agent-node-1",
        "default/agent-node-2",
    }
    spec["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "node-2"}
    second, _ = apply(first, [m("DaemonSet", "agent", spec)])
    assert pod_ips(second, "default/agent-") == {
        "default/agent-node-2": str(first.pods["default/agent-node-2"].ip)
    }


def test_pod_reapply_updates_labels_only(cluster: Cluster) -> None:
    spec: dict[str, Any] = {
        "nodeName": "node-1",
        "containers": [
            {"name": "web", "ports": [{"containerPort": 80, "name": "http"}]}
        ],
    }
    new, _ = apply(cluster, [m("Pod", "a", spec, labels={"app": "a2"})])
    assert new.pods["default/a"].labels == {"app": "a2"}
    assert new.pods["default/a"].ip == cluster.pods["default/a"].ip
    spec["containers"][0]["ports"][0]["containerPort"] = 81
    with pytest.raises(TopologyError, match="pod updates may not change containers"):
        apply(cluster, [m("Pod", "a", spec)])


def test_pod_name_taken_by_workload_pod(cluster: Cluster) -> None:
    first, _ = apply(cluster, [deployment("web", 1, {})])
    with pytest.raises(
        TopologyError, match="pod default/web-0 already exists, owned by Deployment/web"
    ):
        apply(first, [m("Pod", "web-0", {"containers": [{"name": "c"}]})])


def test_service_reapply_keeps_addresses(cluster: Cluster) -> None:
    svc = m("Service", "web", {"type": "NodePort", "ports": [{"port": 80}]})
    first, _ = apply(cluster, [svc])
    second, _ = apply(
        first,
        [
            m(
                "Service",
                "web",
                {
                    "type": "NodePort",
                    "ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "b"}],
                },
            )
        ],
    )
    a, b = first.services["default/web"], second.services["default/web"]
    assert a.cluster_ip == b.cluster_ip
    assert [p.node_port for p in b.ports] == [30000, 30001]
    with pytest.raises(TopologyError, match=r"spec\.clusterIP: field is immutable"):
        apply(first, [m("Service", "web", {"clusterIP": "None"})])


def test_policy_and_namespace_reapply(cluster: Cluster) -> None:
    first, _ = apply(
        cluster,
        [
            m("NetworkPolicy", "p", {"podSelector": {}}),
            m("Namespace", "x", labels={"a": "1"}),
        ],
    )
    second, warnings = apply(
        first,
        [
            m("NetworkPolicy", "p", {"podSelector": {}, "egress": [{}]}),
            m("Namespace", "x", labels={"b": "2", "kubernetes.io/metadata.name": "y"}),
        ],
    )
    assert second.policies["default/p"].policy_types == ("Ingress", "Egress")
    assert second.namespaces["x"].labels == {
        "b": "2",
        "kubernetes.io/metadata.name": "x",
    }
    assert (
        len(warnings) == 1
        and "is set by Kubernetes to 'x' ('y' ignored)" in warnings[0]
    )


def test_duplicate_in_one_apply(cluster: Cluster) -> None:
    with pytest.raises(TopologyError, match="duplicate NetworkPolicy default/p"):
        apply(cluster, [m("NetworkPolicy", "p", {}), m("NetworkPolicy", "p", {})])


def test_apply_without_resolving_refs(cluster: Cluster) -> None:
    policy = m(
        "NetworkPolicy",
        "p",
        {"ingress": [{"from": [{"ipBlock": {"cidr": "${ip:default/a}/32"}}]}]},
    )
    resolved, _ = apply(cluster, [policy])
    block = resolved.policies["default/p"].ingress[0].peers[0].ip_block
    assert block is not None and str(block.cidr) == "10.0.1.3/32"
    with pytest.raises(TopologyError, match="is not a valid CIDR"):
        apply(cluster, [policy], resolve_refs=False)


@pytest.mark.parametrize(
    ("ref", "gone"),
    [
        ("pod/default/a", "pods:default/a"),
        ("Pod/default/a", "pods:default/a"),
        ("po/default/a", "pods:default/a"),
        ("service/default/web", "services:default/web"),
        ("svc/default/web", "services:default/web"),
        ("networkpolicy/default/p", "policies:default/p"),
        ("NetworkPolicy/default/p", "policies:default/p"),
        ("deployment/default/web", "workloads:default/web"),
        ("deploy/default/web", "workloads:default/web"),
        ("namespace/x", "namespaces:x"),
    ],
    ids=lambda v: v,
)
def test_delete(cluster: Cluster, ref: str, gone: str) -> None:
    full, _ = apply(
        cluster,
        [
            m("Namespace", "x"),
            m("Pod", "q", {"containers": [{"name": "c"}]}, namespace="x"),
            m("Service", "web", {"ports": [{"port": 80}]}),
            m("NetworkPolicy", "p", {}),
            deployment("web", 2, {}),
        ],
    )
    after = delete(full, [ref])
    mapping, key = gone.split(":")
    assert key in getattr(full, mapping) and key not in getattr(after, mapping)
    if ref.startswith("deploy"):
        assert not pod_ips(after, "default/web-")
    if ref.startswith("namespace"):
        assert "x/q" not in after.pods


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("pod/default/zz", "delete 'pod/default/zz': no pod 'zz' in namespace 'default' (pods: a, b, c)"),
        ("pod/nope/a", "delete 'pod/nope/a': no namespace 'nope' (namespaces: default, kube-system)"),
        ("statefulset/kube-system/coredns", "no statefulset 'coredns' in namespace 'kube-system' (no statefulsets there)"),
        ("networkpolicy/default/p", "no networkpolicy 'p' in namespace 'default' (no networkpolicys there)"),
        ("namespace/default", "namespace 'default' may not be deleted"),
        ("namespace/zz", "no namespace 'zz' (namespaces: default, kube-system)"),
        ("pods/default/a", "unknown kind 'pods'"),
        ("namespace/a/b", "expected namespace/NAME"),
    ],
    ids=["pod", "namespace-of-pod", "wrong-kind", "policy", "protected", "namespace", "plural",
         "form"],
)  # fmt: skip
def test_delete_errors(cluster: Cluster, ref: str, message: str) -> None:
    with pytest.raises(TopologyError) as info:
        delete(cluster, [ref])
    assert message in str(info.value)


def test_deleting_coredns_deployment_removes_its_pod(cluster: Cluster) -> None:
    after = delete(cluster, ["deployment/kube-system/coredns"])
    assert "kube-system/coredns-0" not in after.pods
    assert "kube-system/kube-dns" in after.services


def test_label_pod_and_namespace(cluster: Cluster) -> None:
    new = label(cluster, LabelStep("pod", "default/a", {"role": "frontend"}, ("app",)))
    assert new.pods["default/a"].labels == {"role": "frontend"}
    assert cluster.pods["default/a"].labels == {"app": "a"}
    new = label(new, LabelStep("namespace", "default", {"project": "dev"}))
    assert new.namespaces["default"].labels == {
        "kubernetes.io/metadata.name": "default",
        "project": "dev",
    }


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (LabelStep("pod", "default/zz"), "label: no pod 'zz' in namespace 'default' (pods: a, b, c)"),
        (LabelStep("namespace", "zz"), "label: no namespace 'zz'"),
        (LabelStep("namespace", "default", remove=("kubernetes.io/metadata.name",)), "is managed by Kubernetes"),
        (LabelStep("pod", "default/a", {"bad key": "v"}), "'bad key' is not a valid label key"),
        (LabelStep("node", "node-1"), "cannot label a 'node'"),
    ],
    ids=["pod", "namespace", "managed", "bad-key", "kind"],
)  # fmt: skip
def test_label_errors(cluster: Cluster, step: LabelStep, message: str) -> None:
    with pytest.raises(TopologyError) as info:
        label(cluster, step)
    assert message in str(info.value)


def test_parse_ref_short_names() -> None:
    assert parse_ref("sts/x/db") == ("StatefulSet", "x", "db")
    assert parse_ref("ns/x") == ("Namespace", "", "x")
