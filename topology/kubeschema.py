"""Pydantic schemas of the supported Kubernetes kinds, strict like the API server's decoder.

Fields that shape the network are typed and checked.  Common fields that do not (container
`image`, `command`, `args`, `env`, `resources`, probes, volumes, `imagePullPolicy`,
`metadata.annotations`, a workload's `strategy`, tolerations, affinity, ...) are accepted
without effect (`Ignored`), so real manifests load unchanged; any other key is an error.
Cross-field rules (a selector matching its template, `endPort >= port`) live in
`topology.normalize`, which turns these models into `topology.model` records.

A key written with a null value is as if absent, as for the API server: Go's encoding/json
leaves a field at its zero value on `null` (a pointer nil, a map or list empty, a struct
such as NetworkPolicy `spec.podSelector` empty, so `podSelector:` selects every pod), and
that zero value is what an absent key gives.  A null peer `podSelector` or
`namespaceSelector` is therefore absent too (those are pointers), not "all".  Integers of
the API are int32 (replicas, ordinals, ports), as the decoder checks.
"""

# Pydantic copies mutable defaults per instance, so `= []` and `= {}` are safe here.
# ruff: noqa: RUF012

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from topology.fields import (
    Annotations,
    DNSLabel,
    Ignored,
    IPv4,
    LabelKey,
    Labels,
    LabelValue,
    NonNegative,
    Port,
    PortName,
    PortOrName,
    StrictModel,
)

ProtocolName = Literal["TCP", "UDP", "SCTP"]

API_VERSIONS: dict[str, str] = {
    "Namespace": "v1",
    "Pod": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
}
WORKLOAD_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet")


class KubeStrictModel(StrictModel):
    """Base of the Kubernetes models: strict, and a null value is the field's zero value."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict) and None in data.values():
            # Only fields of the model: an unknown key stays an error, null or not.
            known = {info.alias or name for name, info in cls.model_fields.items()}
            return {k: v for k, v in data.items() if v is not None or k not in known}
        return data


class ObjectMeta(KubeStrictModel):
    name: str  # its syntax depends on the kind (checked in normalize)
    namespace: DNSLabel | None = None
    labels: Labels = {}
    annotations: Annotations = {}
    generate_name: Ignored = None
    uid: Ignored = None
    resource_version: Ignored = None
    generation: Ignored = None
    creation_timestamp: Ignored = None
    deletion_timestamp: Ignored = None
    deletion_grace_period_seconds: Ignored = None
    owner_references: Ignored = None
    finalizers: Ignored = None
    managed_fields: Ignored = None
    self_link: Ignored = None


class ContainerPortSpec(KubeStrictModel):
    container_port: Port
    protocol: ProtocolName | None = None
    name: PortName | None = None
    host_port: Annotated[int, Field(ge=0, le=65535)] | None = None  # no effect; 0 unset
    host_ip: Ignored = Field(default=None, alias="hostIP")


class ContainerSpec(KubeStrictModel):
    name: DNSLabel
    ports: list[ContainerPortSpec] = []
    image: str | None = None  # no effect, but typed as the API types it
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    env: Ignored = None
    env_from: Ignored = None
    resources: Ignored = None
    resize_policy: Ignored = None
    restart_policy: Ignored = None
    volume_mounts: Ignored = None
    volume_devices: Ignored = None
    liveness_probe: Ignored = None
    readiness_probe: Ignored = None
    startup_probe: Ignored = None
    lifecycle: Ignored = None
    termination_message_path: Ignored = None
    termination_message_policy: Ignored = None
    image_pull_policy: Ignored = None
    security_context: Ignored = None
    stdin: Ignored = None
    stdin_once: Ignored = None
    tty: Ignored = None


class PodSpec(KubeStrictModel):
    containers: list[ContainerSpec] = Field(min_length=1)
    node_name: str | None = None
    node_selector: Labels = {}
    host_network: bool = False
    init_containers: Ignored = None
    ephemeral_containers: Ignored = None
    volumes: Ignored = None
    restart_policy: Ignored = None
    termination_grace_period_seconds: Ignored = None
    active_deadline_seconds: Ignored = None
    dns_policy: Ignored = None
    dns_config: Ignored = None
    service_account_name: Ignored = None
    service_account: Ignored = None
    automount_service_account_token: Ignored = None
    host_pid: Ignored = Field(default=None, alias="hostPID")
    host_ipc: Ignored = Field(default=None, alias="hostIPC")
    host_users: Ignored = None
    share_process_namespace: Ignored = None
    security_context: Ignored = None
    image_pull_secrets: Ignored = None
    hostname: Ignored = None
    subdomain: Ignored = None
    set_hostname_as_fqdn: Ignored = Field(default=None, alias="setHostnameAsFQDN")
    affinity: Ignored = None
    scheduler_name: Ignored = None
    tolerations: Ignored = None
    topology_spread_constraints: Ignored = None
    host_aliases: Ignored = None
    priority_class_name: Ignored = None
    priority: Ignored = None
    preemption_policy: Ignored = None
    readiness_gates: Ignored = None
    runtime_class_name: Ignored = None
    enable_service_links: Ignored = None
    overhead: Ignored = None
    os: Ignored = None
    scheduling_gates: Ignored = None
    resource_claims: Ignored = None


class SelectorRequirement(KubeStrictModel):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] | None = None


class LabelSelectorSpec(KubeStrictModel):
    match_labels: Labels = {}
    match_expressions: list[SelectorRequirement] = []


class TemplateMeta(KubeStrictModel):
    labels: Labels = {}
    annotations: Annotations = {}
    name: Ignored = None
    namespace: Ignored = None
    generate_name: Ignored = None
    creation_timestamp: Ignored = None


class PodTemplateSpec(KubeStrictModel):
    metadata: TemplateMeta = TemplateMeta()
    spec: PodSpec


class _Object(KubeStrictModel):
    api_version: str | None = None
    kind: str
    metadata: ObjectMeta


class NamespaceObject(_Object):
    kind: Literal["Namespace"]
    spec: Ignored = None
    status: Ignored = None


class PodObject(_Object):
    kind: Literal["Pod"]
    spec: PodSpec
    status: Ignored = None


class _WorkloadSpec(KubeStrictModel):
    selector: LabelSelectorSpec
    template: PodTemplateSpec
    min_ready_seconds: Ignored = None
    revision_history_limit: Ignored = None


class DeploymentSpec(_WorkloadSpec):
    replicas: NonNegative = 1
    strategy: Ignored = None
    progress_deadline_seconds: Ignored = None
    paused: Ignored = None


class ReplicaSetSpec(_WorkloadSpec):
    replicas: NonNegative = 1


class StatefulSetOrdinals(KubeStrictModel):
    start: NonNegative = 0


class StatefulSetSpec(_WorkloadSpec):
    replicas: NonNegative = 1
    ordinals: StatefulSetOrdinals | None = None
    service_name: Ignored = None
    volume_claim_templates: Ignored = None
    pod_management_policy: Ignored = None
    update_strategy: Ignored = None
    persistent_volume_claim_retention_policy: Ignored = None


class DaemonSetSpec(_WorkloadSpec):
    update_strategy: Ignored = None


class DeploymentObject(_Object):
    kind: Literal["Deployment"]
    spec: DeploymentSpec
    status: Ignored = None


class ReplicaSetObject(_Object):
    kind: Literal["ReplicaSet"]
    spec: ReplicaSetSpec
    status: Ignored = None


class StatefulSetObject(_Object):
    kind: Literal["StatefulSet"]
    spec: StatefulSetSpec
    status: Ignored = None


class DaemonSetObject(_Object):
    kind: Literal["DaemonSet"]
    spec: DaemonSetSpec
    status: Ignored = None


class ServicePortSpec(KubeStrictModel):
    port: Port
    target_port: PortOrName | None = None
    protocol: ProtocolName | None = None
    name: DNSLabel | None = None  # validateServicePort: ValidateDNS1123Label
    node_port: Port | None = None
    app_protocol: Ignored = None


class ServiceSpec(KubeStrictModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] | None = None
    selector: Labels | None = None
    ports: list[ServicePortSpec] = []
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")
    external_traffic_policy: Literal["Cluster", "Local"] | None = None
    internal_traffic_policy: Literal["Cluster", "Local"] | None = None
    session_affinity: Literal["None", "ClientIP"] | None = None
    load_balancer_ip: IPv4 | None = Field(default=None, alias="loadBalancerIP")
    session_affinity_config: Ignored = None
    load_balancer_source_ranges: Ignored = None
    load_balancer_class: Ignored = None
    external_ips: Ignored = Field(default=None, alias="externalIPs")
    ip_families: Ignored = None
    ip_family_policy: Ignored = None
    publish_not_ready_addresses: Ignored = None
    allocate_load_balancer_node_ports: Ignored = None
    health_check_node_port: Ignored = None
    traffic_distribution: Ignored = None


class LoadBalancerIngress(KubeStrictModel):
    ip: IPv4 | None = None
    hostname: Ignored = None
    ip_mode: Ignored = None
    ports: Ignored = None


class LoadBalancerStatus(KubeStrictModel):
    ingress: list[LoadBalancerIngress] = []


class ServiceStatus(KubeStrictModel):
    load_balancer: LoadBalancerStatus = LoadBalancerStatus()
    conditions: Ignored = None


class ServiceObject(_Object):
    kind: Literal["Service"]
    spec: ServiceSpec = ServiceSpec()
    status: ServiceStatus = ServiceStatus()


class IPBlockSpec(KubeStrictModel):
    cidr: str  # host bits are allowed, with a warning (normalize)
    except_: list[str] = Field(default=[], alias="except")


class PeerSpec(KubeStrictModel):
    pod_selector: LabelSelectorSpec | None = None
    namespace_selector: LabelSelectorSpec | None = None
    ip_block: IPBlockSpec | None = None


class PolicyPortSpec(KubeStrictModel):
    protocol: ProtocolName | None = None
    port: PortOrName | None = None
    end_port: Port | None = None


class IngressRuleSpec(KubeStrictModel):
    from_: list[PeerSpec] | None = Field(default=None, alias="from")
    ports: list[PolicyPortSpec] | None = None


class EgressRuleSpec(KubeStrictModel):
    to: list[PeerSpec] | None = None
    ports: list[PolicyPortSpec] | None = None


class NetworkPolicySpec(KubeStrictModel):
    pod_selector: LabelSelectorSpec = LabelSelectorSpec()
    policy_types: list[Literal["Ingress", "Egress"]] | None = None
    ingress: list[IngressRuleSpec] | None = None
    egress: list[EgressRuleSpec] | None = None


class NetworkPolicyObject(_Object):
    kind: Literal["NetworkPolicy"]
    spec: NetworkPolicySpec = NetworkPolicySpec()
    status: Ignored = None


KubeModel = (
    NamespaceObject
    | PodObject
    | DeploymentObject
    | ReplicaSetObject
    | StatefulSetObject
    | DaemonSetObject
    | ServiceObject
    | NetworkPolicyObject
)
WorkloadModel = (
    DeploymentObject | ReplicaSetObject | StatefulSetObject | DaemonSetObject
)

MODELS: dict[str, type[KubeModel]] = {
    "Namespace": NamespaceObject,
    "Pod": PodObject,
    "Deployment": DeploymentObject,
    "ReplicaSet": ReplicaSetObject,
    "StatefulSet": StatefulSetObject,
    "DaemonSet": DaemonSetObject,
    "Service": ServiceObject,
    "NetworkPolicy": NetworkPolicyObject,
}
