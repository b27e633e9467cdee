"""The scenario JSON Schema and the translation of pydantic errors."""

from __future__ import annotations

import json

from topology.diagnostic import allowed_keys, allowed_values, annotation_at
from topology.kubeschema import PodObject
from topology.schema import (
    ClusterModel,
    ProbeModel,
    ScenarioModel,
    scenario_json_schema,
)


def test_json_schema_covers_the_format() -> None:
    schema = scenario_json_schema()
    json.dumps(schema)
    assert schema["required"] == ["name", "steps"]
    cluster = schema["$defs"]["ClusterModel"]["properties"]
    assert set(cluster) == {
        "network", "vxlanPort", "bridge", "mtu", "nodeCIDR", "gateway", "serviceCIDR",
        "clusterDomain", "dns", "nodes", "externals", "kubeProxy", "gatewayRoutes",
        "runtime", "cni", "calico",
    }  # fmt: skip
    # the CNI's default (flannel 8472, Calico 4789) when left out; every CNI's modes
    assert cluster["vxlanPort"]["default"] is None
    assert "8472" in cluster["vxlanPort"]["description"]
    assert cluster["network"]["enum"] == [
        "vxlan", "host-gw", "routed", "ipip", "bgp", "geneve", "native", None
    ]  # fmt: skip
    assert cluster["cni"]["default"] == "flannel"
    assert cluster["nodeCIDR"]["default"] == "10.100.0.0/24"
    steps = schema["properties"]["steps"]["items"]["anyOf"]
    assert len(steps) == 7
    assert {"NetworkPolicyObject", "DaemonSetObject", "FileRef"} <= set(schema["$defs"])
    assert schema["$defs"]["ProbeModel"]["additionalProperties"] is False


def test_annotation_walk_finds_models_and_choices() -> None:
    assert allowed_keys(annotation_at(ScenarioModel, ("cluster",)))[:2] == [
        "network",
        "vxlanPort",
    ]
    assert allowed_values(annotation_at(ClusterModel, ("cni",))) == [
        "flannel",
        "calico",
        "cilium",
    ]
    assert allowed_values(annotation_at(ProbeModel, ("protocol",)))[-1] == "ICMP"
    ports = annotation_at(PodObject, ("spec", "containers", 0, "ports", 0))
    assert allowed_keys(ports)[:3] == ["containerPort", "protocol", "name"]
    assert annotation_at(PodObject, ("nope",)) is None
