"""The EndpointSlice schema (discovery.k8s.io/v1), strict like the API server's decoder:
the endpoints, their conditions, zone and hints, and their ports.  kube-proxy's reading of
them is `topology.normalize.endpoint_slice`."""

# Pydantic copies mutable defaults per instance, so `= []` is safe here.

from __future__ import annotations

from typing import Literal

from pydantic import Field

from topology.fields import Ignored, IPv4, Port
from topology.kubebase import KubeStrictModel, ObjectBase, ProtocolName


class EndpointConditionsSpec(KubeStrictModel):
    ready: bool | None = Field(default=None, description="Unset: true (kube-proxy).")
    serving: bool | None = Field(default=None, description="Unset: as ready.")
    terminating: bool | None = Field(default=None, description="Unset: false.")


class HintNameSpec(KubeStrictModel):
    name: str = Field(description="A zone (forZones) or a node (forNodes).")


class EndpointHintsSpec(KubeStrictModel):
    for_zones: list[HintNameSpec] = Field(
        default=[], description="The zones whose nodes should use this endpoint."
    )
    for_nodes: list[HintNameSpec] = Field(
        default=[], description="The nodes that should use this endpoint."
    )


class EndpointSpec(KubeStrictModel):
    addresses: list[IPv4] = Field(
        min_length=1, description="kube-proxy uses the first."
    )
    conditions: EndpointConditionsSpec = Field(
        default=EndpointConditionsSpec(), description="ready, serving, terminating."
    )
    node_name: str | None = Field(default=None, description="Local to this node.")
    zone: str | None = Field(default=None, description="The zone of its node.")
    target_ref: Ignored = None
    hints: EndpointHintsSpec | None = Field(
        default=None,
        description="forZones, forNodes: where kube-proxy should prefer it (topology).",
    )
    hostname: Ignored = None
    deprecated_topology: Ignored = None


class EndpointPortSpec(KubeStrictModel):
    name: str | None = Field(default=None, description="The Service port's name.")
    port: Port = Field(description="The endpoints' port number.")
    protocol: ProtocolName | None = Field(default=None, description="Default TCP.")
    app_protocol: Ignored = None


class EndpointSliceObject(ObjectBase):
    kind: Literal["EndpointSlice"] = Field(description="EndpointSlice.")
    address_type: Literal["IPv4"] = Field(description="IPv4 only.")
    endpoints: list[EndpointSpec] = Field(default=[], description="The endpoints.")
    ports: list[EndpointPortSpec] = Field(default=[], description="Their ports.")
