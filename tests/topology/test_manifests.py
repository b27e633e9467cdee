"""Real manifests: folders, Lists, helm output, JSON, kinds that are not modelled, hostPort,
and the fields a live cluster fills in (Node objects, pod and Service addresses, owners)."""

from __future__ import annotations

import json
import textwrap
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from topology.change import delete
from topology.errors import TopologyError
from topology.loader import load_scenario, load_scenario_text
from topology.scenario import Scenario

FIXTURE = Path(__file__).parent.parent / "fixtures" / "kind-dump.yaml"
STEP = "steps:\n  - probe: {from: default/a, to: default/b}\n"


def pod(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "c"}], **spec},
    }


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(
    tmp_path: Path, manifests: str, cluster: str = "", strict: bool = False
) -> tuple[Scenario, list[str]]:
    text = f"name: t\n{cluster}manifests:\n{textwrap.dedent(manifests)}{STEP}"
    return load_scenario_text(text, "lab.yaml", tmp_path, strict=strict)


def error(
    tmp_path: Path, manifests: str, cluster: str = "", strict: bool = False
) -> str:
    with pytest.raises(TopologyError) as info:
        load(tmp_path, manifests, cluster, strict)
    return str(info.value)


# --- files, folders, Lists, helm, JSON ---------------------------------------------------


def test_a_folder_is_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "objs" / "b.yaml", yaml.safe_dump(pod("b")))
    write(tmp_path / "objs" / "a" / "z.yml", yaml.safe_dump(pod("a")))
    write(tmp_path / "objs" / "c.json", json.dumps(pod("c")))
    write(tmp_path / "objs" / "README.md", "# not a manifest: skipped\n")
    scenario, warnings = load(tmp_path, "  - {file: objs}\n")
    pods = scenario.cluster.pods
    # sorted paths: objs/a/z.yml, objs/b.yaml, objs/c.json; each takes the next address
    order = [k for k in pods if k.startswith("default/")]
    assert order == ["default/a", "default/b", "default/c"]
    assert pods["default/a"].loc.file == "objs/a/z.yml"
    assert pods["default/c"].loc.file == "objs/c.json"
    assert warnings == []


def test_kind_list_and_typed_lists(tmp_path: Path) -> None:
    write(
        tmp_path / "list.yaml",
        """
        apiVersion: v1
        kind: List
        items:
        - {apiVersion: v1, kind: Namespace, metadata: {name: x}}
        - apiVersion: v1
          kind: Pod
          metadata: {name: a, namespace: x}
          spec: {containers: [{name: c}]}
        metadata: {resourceVersion: ""}
        ---
        apiVersion: v1
        kind: PodList
        items:
        - metadata: {name: b, namespace: x}
          spec: {containers: [{name: c, ports: [{containerPort: 70000}]}]}
        """,
    )
    message = error(tmp_path, "  - {file: list.yaml}\n")
    # an item of a typed list takes its kind; its errors name its own line
    assert message.startswith("list.yaml:15: Pod x/b: spec.containers[0].ports[0]")
    assert "70000 is out of range" in message


def test_helm_template_output_loads(tmp_path: Path) -> None:
    write(
        tmp_path / "chart.yaml",
        """
        ---
        # Source: shop/templates/serviceaccount.yaml
        apiVersion: v1
        kind: ServiceAccount
        metadata:
          name: shop
        ---
        # Source: shop/templates/empty.yaml
        ---
        # Source: shop/templates/configmap.yaml
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: shop}
        data: {key: value}
        ---
        # Source: shop/templates/pod.yaml
        apiVersion: v1
        kind: Pod
        metadata: {name: a}
        spec: {containers: [{name: c}]}
        """,
    )
    scenario, warnings = load(tmp_path, "  - {file: chart.yaml}\n")
    assert scenario.cluster.pods["default/a"].loc.line == 17
    assert warnings == [
        "lab.yaml: skipped 2 objects that do not affect the network"
        " (ConfigMap 1, ServiceAccount 1)"
    ]


def test_json_errors_name_their_line(tmp_path: Path) -> None:
    doc = pod("a")
    doc["spec"]["containers"][0]["ports"] = [{"containerPort": "80"}]
    write(tmp_path / "pod.json", json.dumps(doc, indent=2))
    message = error(tmp_path, "  - {file: pod.json}\n")
    assert message.startswith("pod.json:14: Pod default/a: spec.containers[0].ports[0]")


# --- kinds that are not modelled ---------------------------------------------------------

OTHER_KINDS = """
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}
  - {apiVersion: v1, kind: Secret, metadata: {name: a}}
  - {apiVersion: v1, kind: Secret, metadata: {name: b}}
  - {apiVersion: networking.k8s.io/v1, kind: Ingress, metadata: {name: web}}
  - {apiVersion: projectcalico.org/v3, kind: NetworkPolicy, metadata: {name: deny}}
  - {apiVersion: example.com/v1, kind: Widget, metadata: {name: w}}
  - {apiVersion: serving.knative.dev/v1, kind: Service, metadata: {name: k}}
"""


def test_other_kinds_are_skipped_with_warnings(tmp_path: Path) -> None:
    _, warnings = load(tmp_path, OTHER_KINDS)
    assert warnings == [
        "lab.yaml: skipped 3 objects that do not affect the network"
        " (ConfigMap 1, Secret 2)",
        "lab.yaml:7: Ingress default/web: kind: kind Ingress affects the network but is"
        " not modelled (its HTTP routing is not modelled); skipped",
        "lab.yaml:8: NetworkPolicy default/deny: kind: kind NetworkPolicy"
        " (projectcalico.org/v3) affects the network but is not modelled (Calico"
        " policies are not modelled); skipped",
        "lab.yaml:9: Widget default/w: kind: unknown kind 'Widget' (apiVersion"
        " 'example.com/v1') is not modelled (modelled: Namespace, Pod, Deployment,"
        " ReplicaSet, StatefulSet, DaemonSet, Service, NetworkPolicy, EndpointSlice,"
        " AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy,"
        " Node); skipped",
        "lab.yaml:10: Service default/k: kind: Service of apiVersion"
        " 'serving.knative.dev/v1' is another API's kind, not modelled (the modelled"
        " Service is apiVersion v1); skipped",
    ]


@pytest.mark.parametrize(
    ("kind", "line", "reason"),
    [
        ("ConfigMap", 3, "kind ConfigMap does not affect the network"),
        ("Ingress", 3, "kind Ingress affects the network but is not modelled"),
        ("Widget", 3, "unknown kind 'Widget'"),
    ],
)
def test_strict_makes_them_errors(
    tmp_path: Path, kind: str, line: int, reason: str
) -> None:
    message = error(
        tmp_path, f"  - {{apiVersion: x/v1, kind: {kind}, metadata: {{name: a}}}}\n",
        strict=True,
    )  # fmt: skip
    assert message.startswith(f"lab.yaml:{line}: {kind} default/a: kind: {reason}")
    assert message.endswith("; --strict rejects it")


def test_apply_steps_skip_them_too(tmp_path: Path) -> None:
    text = (
        "name: t\nsteps:\n  - apply:\n"
        "      - {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
    )
    _, warnings = load_scenario_text(text, "lab.yaml", tmp_path)
    assert warnings == [
        "lab.yaml: skipped 1 object that does not affect the network (ConfigMap 1)"
    ]


def test_host_port_is_modelled_without_a_warning(tmp_path: Path) -> None:
    p = pod("a")
    p["spec"]["containers"][0]["ports"] = [
        {"containerPort": 80, "hostPort": 8080, "hostIP": "10.100.0.2"}
    ]
    scenario, warnings = load(tmp_path, f"  - {json.dumps(p)}\n")
    assert warnings == []
    (port,) = scenario.cluster.pods["default/a"].ports()
    assert (port.host_port, str(port.host_ip)) == (8080, "10.100.0.2")


# --- live fields ---------------------------------------------------------------------------

NODES = """
  - apiVersion: v1
    kind: Node
    metadata: {name: n1, labels: {zone: a}}
    spec: {podCIDR: 10.244.0.0/24, podCIDRs: [10.244.0.0/24]}
    status: {addresses: [{type: InternalIP, address: 172.18.0.2}, {type: Hostname, address: n1}]}
  - apiVersion: v1
    kind: Node
    metadata: {name: n2}
    spec: {podCIDR: 10.244.1.0/24}
    status: {addresses: [{type: InternalIP, address: 172.18.0.3}]}
"""
CIDR = "cluster: {nodeCIDR: 172.18.0.0/24}\n"


def live_pod(name: str, node: str, ip: str, **status: str) -> str:
    return (
        f"  - {{kind: Pod, metadata: {{name: {name}}}, spec: {{nodeName: {node},"
        f" containers: [{{name: c}}]}}, status: {{podIP: {ip}"
        + "".join(f", {k}: {v}" for k, v in status.items())
        + "}}\n"
    )


def test_node_objects_define_the_nodes(tmp_path: Path) -> None:
    scenario, _ = load(tmp_path, NODES + live_pod("a", "n2", "10.244.1.7"), CIDR)
    nodes = scenario.cluster.nodes
    assert [(n.name, n.ip, n.pod_cidr) for n in nodes] == [
        ("n1", IPv4Address("172.18.0.2"), IPv4Network("10.244.0.0/24")),
        ("n2", IPv4Address("172.18.0.3"), IPv4Network("10.244.1.0/24")),
    ]
    assert nodes[0].labels["zone"] == "a"
    assert nodes[0].loc.line == 5
    a = scenario.cluster.pods["default/a"]
    assert (a.node, a.ip) == ("n2", IPv4Address("10.244.1.7"))


def test_node_objects_beside_cluster_nodes_are_an_error(tmp_path: Path) -> None:
    message = error(
        tmp_path, NODES, "cluster:\n  nodeCIDR: 172.18.0.0/24\n  nodes: [{name: x}]\n"
    )
    assert message == (
        "lab.yaml:7: Node n1: Node objects define the cluster's nodes, and cluster.nodes"
        " does too (at lab.yaml:4): keep one of them"
    )


def test_a_node_address_outside_node_cidr_names_the_node_field(tmp_path: Path) -> None:
    message = error(tmp_path, NODES)
    assert message == (
        "lab.yaml:8: Node n1: status.addresses[0].address: 172.18.0.2 is not a host"
        " address of nodeCIDR 10.100.0.0/24"
    )


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        (
            live_pod("a", "n1", "10.244.0.5") + live_pod("b", "n1", "10.244.0.5"),
            "lab.yaml:16: Pod default/b: status.podIP: 10.244.0.5 is already the"
            " address of pod default/a",
        ),
        (
            live_pod("a", "n1", "10.244.1.5"),
            "lab.yaml:15: Pod default/a: status.podIP: 10.244.1.5 is outside podCIDR"
            " 10.244.0.0/24 of node 'n1'",
        ),
        (
            live_pod("a", "n1", "10.244.0.1"),
            "lab.yaml:15: Pod default/a: status.podIP: 10.244.0.1 is the bridge's"
            " address (the first host of podCIDR 10.244.0.0/24) of node 'n1'",
        ),
        (
            live_pod("a", "n1", "10.244.0.5", hostIP="172.18.0.3"),
            "lab.yaml:15: Pod default/a: status.hostIP: 172.18.0.3 is not the address"
            " of node 'n1' (172.18.0.2)",
        ),
        (
            "  - {kind: Pod, metadata: {name: a}, spec: {containers: [{name: c}]},"
            " status: {podIP: 10.244.0.5}}\n",
            "lab.yaml:15: Pod default/a: status.podIP: a pod address needs spec.nodeName"
            " (the node the pod runs on)",
        ),
        (
            "  - {kind: Pod, metadata: {name: a}, spec: {nodeName: n1, hostNetwork: true,"
            " containers: [{name: c}]}, status: {podIP: 172.18.0.3}}\n",
            "lab.yaml:15: Pod default/a: status.podIP: 172.18.0.3 is not the address of"
            " node 'n1' (172.18.0.2); a hostNetwork pod has its node's address",
        ),
        (
            "  - {kind: Service, metadata: {name: s}, spec: {clusterIP: 10.112.0.5,"
            " ports: [{port: 80}]}}\n",
            "lab.yaml:15: Service default/s: spec.clusterIP: 10.112.0.5 is not a usable"
            " address of serviceCIDR 10.96.0.0/12",
        ),
        (
            "  - {kind: Service, metadata: {name: s}, spec: {clusterIP: 10.96.3.3, ports:"
            " [{port: 80}]}}\n  - {kind: Service, metadata: {name: t}, spec: {clusterIP:"
            " 10.96.3.3, ports: [{port: 80}]}}\n",
            "lab.yaml:16: Service default/t: spec.clusterIP: 10.96.3.3 is already the"
            " clusterIP of Service default/s",
        ),
    ],
    ids=[
        "two-pods-one-ip", "outside-podcidr", "bridge-ip", "host-ip", "no-node-name",
        "host-network", "cluster-ip-outside", "cluster-ip-taken",
    ],
)  # fmt: skip
def test_live_address_conflicts(tmp_path: Path, pods: str, expected: str) -> None:
    assert error(tmp_path, NODES + pods, CIDR) == expected


def test_pods_without_an_address_avoid_the_recorded_ones(tmp_path: Path) -> None:
    pods = (
        "  - {kind: Pod, metadata: {name: new}, spec: {nodeName: n1, containers:"
        " [{name: c}]}}\n" + live_pod("old", "n1", "10.244.0.2")
    )
    scenario, _ = load(tmp_path, NODES + pods, CIDR)
    ips = {k: str(p.ip) for k, p in scenario.cluster.pods.items()}
    # kube-system/coredns-0 is scheduled first, at the lowest free address
    assert ips["default/old"] == "10.244.0.2"
    assert ips["kube-system/coredns-0"] == "10.244.0.3"
    assert ips["default/new"] == "10.244.0.4"


def test_workloads_do_not_recreate_the_pods_of_a_dump(tmp_path: Path) -> None:
    owner = (
        "ownerReferences: [{apiVersion: apps/v1, kind: %s, name: %s, controller: true}]"
    )
    manifests = NODES + textwrap.indent(
        textwrap.dedent(
            f"""
            - apiVersion: apps/v1
              kind: Deployment
              metadata: {{name: web}}
              spec:
                replicas: 2
                selector: {{matchLabels: {{app: web}}}}
                template:
                  metadata: {{labels: {{app: web}}}}
                  spec: {{containers: [{{name: c}}]}}
            - kind: Pod
              metadata:
                name: web-5f7d-abcde
                labels: {{app: web, pod-template-hash: 5f7d}}
                {owner % ("ReplicaSet", "web-5f7d")}
              spec: {{nodeName: n2, containers: [{{name: c}}]}}
              status: {{podIP: 10.244.1.8}}
            - apiVersion: apps/v1
              kind: StatefulSet
              metadata: {{name: db}}
              spec:
                replicas: 1
                selector: {{matchLabels: {{app: db}}}}
                template:
                  metadata: {{labels: {{app: db}}}}
                  spec: {{containers: [{{name: c}}]}}
            - kind: Pod
              metadata:
                name: db-0
                labels: {{app: db}}
                {owner % ("StatefulSet", "db")}
              spec: {{nodeName: n1, containers: [{{name: c}}]}}
              status: {{podIP: 10.244.0.9}}
            """
        ),
        "  ",
    )
    scenario, _ = load(tmp_path, manifests, CIDR)
    pods = {k: (p.ip, p.owner) for k, p in scenario.cluster.pods.items()}
    assert pods["default/web-5f7d-abcde"] == (
        IPv4Address("10.244.1.8"),
        "ReplicaSet/web-5f7d",
    )
    assert pods["default/db-0"] == (IPv4Address("10.244.0.9"), "StatefulSet/db")
    assert not any(
        k.startswith("default/web-") and k != "default/web-5f7d-abcde" for k in pods
    )
    assert set(scenario.cluster.workloads) >= {"default/web", "default/db"}
    # deleting the Deployment deletes the pods it owns through their ReplicaSet
    after = delete(scenario.cluster, ["deployment/default/web"])
    assert "default/web-5f7d-abcde" not in after.pods
    assert "default/db-0" in after.pods


# --- a dump of a real cluster ----------------------------------------------------------------


def test_a_dump_reproduces_its_addresses_exactly(tmp_path: Path) -> None:
    (tmp_path / "dump.yaml").write_text(FIXTURE.read_text())
    scenario, warnings = load(tmp_path, "  - {file: dump.yaml}\n", CIDR)
    dump = yaml.safe_load(FIXTURE.read_text())
    cluster = scenario.cluster
    nodes = {n.name: n for n in cluster.nodes}
    pods_seen = 0
    for item in dump["items"]:
        meta = item["metadata"]
        if item["kind"] == "Node":
            node = nodes[meta["name"]]
            assert str(node.pod_cidr) == item["spec"]["podCIDR"]
            internal = [
                a for a in item["status"]["addresses"] if a["type"] == "InternalIP"
            ]
            assert str(node.ip) == internal[0]["address"]
        elif item["kind"] == "Pod" and item["status"]["phase"] == "Running":
            p = cluster.pods[f"{meta['namespace']}/{meta['name']}"]
            assert (p.node, str(p.ip)) == (
                item["spec"]["nodeName"],
                item["status"]["podIP"],
            )
            pods_seen += 1
        elif item["kind"] == "Service":
            s = cluster.services[f"{meta['namespace']}/{meta['name']}"]
            assert str(s.cluster_ip) == item["spec"]["clusterIP"]
    assert pods_seen == 9
    # the dump's CoreDNS pods replace the built-in coredns-0; the finished Job pod is gone
    assert "kube-system/coredns-0" not in cluster.pods
    assert "shop/migrate-7k4jq" not in cluster.pods
    assert warnings == [
        "lab.yaml: skipped 1 object that does not affect the network (Pod (Succeeded) 1)"
    ]


def test_run_manifests_adds_objects(tmp_path: Path) -> None:
    write(tmp_path / "lab" / "lab.yaml", "name: t\n" + STEP)
    write(tmp_path / "extra" / "p.yaml", yaml.safe_dump(pod("a")))
    scenario, _ = load_scenario(
        tmp_path / "lab" / "lab.yaml", manifests=[tmp_path / "extra"]
    )
    assert scenario.cluster.pods["default/a"].loc.file == str(
        tmp_path / "extra" / "p.yaml"
    )


def test_a_json_dump_loads_like_the_yaml_one(tmp_path: Path) -> None:
    dump = yaml.safe_load(FIXTURE.read_text())
    (tmp_path / "dump.json").write_text(json.dumps(dump, indent=4))
    (tmp_path / "dump.yaml").write_text(FIXTURE.read_text())
    from_json, _ = load(tmp_path, "  - {file: dump.json}\n", CIDR)
    from_yaml, _ = load(tmp_path, "  - {file: dump.yaml}\n", CIDR)
    assert {k: p.ip for k, p in from_json.cluster.pods.items()} == {
        k: p.ip for k, p in from_yaml.cluster.pods.items()
    }


def test_a_dump_pod_applied_again_is_updated_in_place(tmp_path: Path) -> None:
    (tmp_path / "dump.yaml").write_text(FIXTURE.read_text())
    text = (
        f"name: t\n{CIDR}manifests:\n  - {{file: dump.yaml}}\n"
        "steps:\n  - apply: [{file: dump.yaml}]\n"
    )
    scenario, _ = load_scenario_text(text, "lab.yaml", tmp_path)
    from topology.change import apply

    (step,) = scenario.steps
    after, _ = apply(scenario.cluster, step.objects)  # type: ignore[attr-defined]
    assert after.pods["shop/db-0"].ip == IPv4Address("10.244.1.9")
    assert after.pods.keys() == scenario.cluster.pods.keys()


def test_strict_still_skips_finished_pods(tmp_path: Path) -> None:
    (tmp_path / "dump.yaml").write_text(FIXTURE.read_text())
    scenario, warnings = load(tmp_path, "  - {file: dump.yaml}\n", CIDR, strict=True)
    assert "shop/migrate-7k4jq" not in scenario.cluster.pods
    assert warnings == [
        "lab.yaml: skipped 1 object that does not affect the network (Pod (Succeeded) 1)"
    ]


def test_a_node_without_pod_cidr_is_a_warning(tmp_path: Path) -> None:
    node = (
        "  - {kind: Node, metadata: {name: n1}, status: {addresses: [{type: InternalIP,"
        " address: 172.18.0.2}]}}\n"
    )
    scenario, warnings = load(tmp_path, node, CIDR)
    assert str(scenario.cluster.nodes[0].pod_cidr) == "10.0.1.0/24"
    assert warnings == [
        "lab.yaml:4: Node n1: no IPv4 spec.podCIDR (the CNI plugin allocates pod"
        " addresses itself?): the node gets the default 10.0.N.0/24, N its position"
    ]


def test_a_pod_update_may_not_move_its_address(tmp_path: Path) -> None:
    text = (
        f"name: t\n{CIDR}manifests:\n{NODES}"
        + live_pod("a", "n1", "10.244.0.5")
        + "steps:\n  - apply:\n"
        + textwrap.indent(live_pod("a", "n1", "10.244.0.6"), "    ")
    )
    scenario, _ = load_scenario_text(text, "lab.yaml", tmp_path)
    from topology.change import apply

    with pytest.raises(TopologyError, match=r"pod updates may not change status.podIP"):
        apply(scenario.cluster, scenario.steps[0].objects)  # type: ignore[attr-defined]
