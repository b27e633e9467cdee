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

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

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
)
from topology.kubebase import KubeStrictModel as KubeStrictModel
from topology.kubebase import ObjectBase
from topology.kubebase import ObjectMeta as ObjectMeta
from topology.kubebase import ProtocolName as ProtocolName
from topology.sliceschema import EndpointSliceObject as EndpointSliceObject

API_VERSIONS: dict[str, str] = {
    "Namespace": "v1",
    "Pod": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "EndpointSlice": "discovery.k8s.io/v1",
}
WORKLOAD_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet")


class ContainerPortSpec(KubeStrictModel):
    container_port: Port = Field(
        description="A port the pod listens on (every containerPort is a listening socket)."
    )
    protocol: ProtocolName | None = Field(
        default=None, description="TCP (default), UDP or SCTP."
    )
    name: PortName | None = Field(
        default=None,
        description="Port name (IANA_SVC_NAME), for targetPort and NetworkPolicy ports by name.",
    )
    host_port: Annotated[int, Field(ge=0, le=65535)] | None = Field(
        default=None, description="The node's port CNI portmap DNATs here (0: none)."
    )  # 0: unset; on a hostNetwork pod it must equal containerPort
    host_ip: str | None = Field(
        default=None, alias="hostIP", description="The node address the hostPort takes."
    )


class ContainerSpec(KubeStrictModel):
    name: DNSLabel = Field(
        description="Container name (a DNS-1123 label), for the endpoint NS/POD/CONTAINER."
    )
    ports: list[ContainerPortSpec] = Field(
        default=[],
        description="Its listening ports; every container of a pod shares one network namespace.",
    )
    image: str | None = Field(
        default=None, description="Accepted (a string); no effect on the dataplane."
    )
    command: list[str] | None = Field(
        default=None, description="Accepted (strings); no effect on the dataplane."
    )
    args: list[str] | None = Field(
        default=None, description="Accepted (strings); no effect on the dataplane."
    )
    working_dir: str | None = Field(
        default=None, description="Accepted (a string); no effect on the dataplane."
    )
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
    containers: list[ContainerSpec] = Field(
        min_length=1, description="At least one container."
    )
    node_name: str | None = Field(
        default=None,
        description="Run on this node. Default: nodeSelector, then the eligible node with the fewest pods (ties by node order).",
    )
    node_selector: Labels = Field(
        default={}, description="Only nodes with these labels are eligible."
    )
    host_network: bool = Field(
        default=False,
        description="Run in the node's network namespace (default false); NetworkPolicy never selects it.",
    )
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
    key: LabelKey = Field(description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] | None = Field(
        default=None,
        description="Values for In and NotIn (non-empty); none for Exists and DoesNotExist.",
    )


class LabelSelectorSpec(KubeStrictModel):
    match_labels: Labels = Field(
        default={},
        description="Labels that must all match (ANDed with matchExpressions).",
    )
    match_expressions: list[SelectorRequirement] = Field(
        default=[], description="Requirements that must all hold."
    )


class TemplateMeta(KubeStrictModel):
    labels: Labels = Field(
        default={},
        description="Labels of every pod of the workload (must match its selector).",
    )
    annotations: Annotations = Field(
        default={},
        description="Accepted (at most 256 KiB); no effect on the dataplane.",
    )
    name: Ignored = None
    namespace: Ignored = None
    generate_name: Ignored = None
    creation_timestamp: Ignored = None


class PodTemplateSpec(KubeStrictModel):
    metadata: TemplateMeta = Field(
        default=TemplateMeta(), description="The pods' labels."
    )
    spec: PodSpec = Field(description="The pods' spec.")


class NamespaceObject(ObjectBase):
    kind: Literal["Namespace"] = Field(description="Namespace.")
    spec: Ignored = None
    status: Ignored = None


class PodObject(ObjectBase):
    kind: Literal["Pod"] = Field(description="Pod.")
    spec: PodSpec = Field(
        description="The pod's containers, node and network namespace."
    )
    status: Ignored = None


class _WorkloadSpec(KubeStrictModel):
    selector: LabelSelectorSpec = Field(
        description="Which pods are the workload's (must match the template's labels)."
    )
    template: PodTemplateSpec = Field(description="The pods it creates.")
    min_ready_seconds: Ignored = None
    revision_history_limit: Ignored = None


class DeploymentSpec(_WorkloadSpec):
    replicas: NonNegative = Field(
        default=1, description="Number of pods, named NAME-0, NAME-1, ... (default 1)."
    )
    strategy: Ignored = None
    progress_deadline_seconds: Ignored = None
    paused: Ignored = None


class ReplicaSetSpec(_WorkloadSpec):
    replicas: NonNegative = Field(
        default=1, description="Number of pods, named NAME-0, NAME-1, ... (default 1)."
    )


class StatefulSetOrdinals(KubeStrictModel):
    start: NonNegative = Field(default=0, description="The first ordinal (default 0).")


class StatefulSetSpec(_WorkloadSpec):
    replicas: NonNegative = Field(
        default=1, description="Number of pods, named NAME-<ordinal> (default 1)."
    )
    ordinals: StatefulSetOrdinals | None = Field(
        default=None, description="Where pod ordinals start."
    )
    service_name: Ignored = None
    volume_claim_templates: Ignored = None
    pod_management_policy: Ignored = None
    update_strategy: Ignored = None
    persistent_volume_claim_retention_policy: Ignored = None


class DaemonSetSpec(_WorkloadSpec):
    update_strategy: Ignored = None


class DeploymentObject(ObjectBase):
    kind: Literal["Deployment"] = Field(description="Deployment.")
    spec: DeploymentSpec = Field(description="Replicas, selector and pod template.")
    status: Ignored = None


class ReplicaSetObject(ObjectBase):
    kind: Literal["ReplicaSet"] = Field(description="ReplicaSet.")
    spec: ReplicaSetSpec = Field(description="Replicas, selector and pod template.")
    status: Ignored = None


class StatefulSetObject(ObjectBase):
    kind: Literal["StatefulSet"] = Field(description="StatefulSet.")
    spec: StatefulSetSpec = Field(
        description="Replicas, selector, ordinals and pod template."
    )
    status: Ignored = None


class DaemonSetObject(ObjectBase):
    kind: Literal["DaemonSet"] = Field(
        description="DaemonSet: one pod per eligible node, named NAME-NODE."
    )
    spec: DaemonSetSpec = Field(description="Selector and pod template.")
    status: Ignored = None


class ServicePortSpec(KubeStrictModel):
    port: Port = Field(description="The Service port.")
    target_port: PortOrName | None = Field(
        default=None,
        description="The backend port, a number or a container port name (resolved per pod). Default: port.",
    )
    protocol: ProtocolName | None = Field(
        default=None, description="TCP (default), UDP or SCTP."
    )
    name: DNSLabel | None = Field(  # validateServicePort: ValidateDNS1123Label
        default=None,
        description="Port name, a DNS label (required when there are several ports).",
    )
    node_port: Port | None = Field(
        default=None,
        description="NodePort (NodePort and LoadBalancer). Default: allocated from 30000-32767.",
    )
    app_protocol: Ignored = None


class ClientIPConfigSpec(KubeStrictModel):
    timeout_seconds: int | None = Field(
        default=None,
        description="1-86400 seconds after a client's last new connection (default 10800).",
    )  # its range is checked in normalize, with the API server's message


class SessionAffinityConfigSpec(KubeStrictModel):
    client_ip: ClientIPConfigSpec | None = Field(
        default=None, alias="clientIP", description="sessionAffinity ClientIP."
    )


class ServiceSpec(KubeStrictModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] | None = Field(
        default=None,
        description="ClusterIP (default), NodePort or LoadBalancer (NodePort plus status.loadBalancer.ingress).",
    )
    selector: Labels | None = Field(
        default=None,
        description="Endpoints are the ready pods with these labels; none: no endpoints.",
    )
    ports: list[ServicePortSpec] = Field(default=[], description="The Service ports.")
    cluster_ip: str | None = Field(
        default=None,
        alias="clusterIP",
        description="An address inside serviceCIDR, 'None' (headless: DNS answers the pods' addresses) or '' (allocate one, the default).",
    )
    cluster_ips: list[str] | None = Field(
        default=None,
        alias="clusterIPs",
        description="At most one address, equal to clusterIP (IPv4 only, no dual stack).",
    )
    external_traffic_policy: Literal["Cluster", "Local"] | None = Field(
        default=None,
        description="Cluster (default) or Local (keep the client address, local endpoints only).",
    )
    internal_traffic_policy: Literal["Cluster", "Local"] | None = Field(
        default=None, description="Cluster (default) or Local (local endpoints only)."
    )
    session_affinity: Literal["None", "ClientIP"] | None = Field(
        default=None,
        description="None (default) or ClientIP (the endpoint depends on the client address only).",
    )
    load_balancer_ip: IPv4 | None = Field(
        default=None,
        alias="loadBalancerIP",
        description="The external address of a LoadBalancer when status.loadBalancer.ingress gives none.",
    )
    session_affinity_config: SessionAffinityConfigSpec | None = Field(
        default=None,
        description="clientIP.timeoutSeconds: how long a client sticks (ClientIP only).",
    )
    load_balancer_source_ranges: list[str] | None = Field(
        default=None, description="CIDRs that may reach the LoadBalancer addresses."
    )
    load_balancer_class: Ignored = None
    external_ips: list[IPv4] | None = Field(
        default=None, alias="externalIPs", description="Addresses routed to the nodes."
    )
    ip_families: Ignored = None
    ip_family_policy: Ignored = None
    publish_not_ready_addresses: bool | None = Field(
        default=None,
        description="Pods that are not ready (or terminating) are ready endpoints.",
    )
    allocate_load_balancer_node_ports: Ignored = None
    health_check_node_port: Ignored = None
    traffic_distribution: (
        Literal["PreferClose", "PreferSameZone", "PreferSameNode"] | None
    ) = Field(
        default=None,
        description="PreferClose / PreferSameZone (zone hints) or PreferSameNode (node hints too).",
    )


class LoadBalancerIngress(KubeStrictModel):
    ip: IPv4 | None = Field(
        default=None, description="An external address of the LoadBalancer."
    )
    hostname: Ignored = None
    ip_mode: Literal["VIP", "Proxy"] | None = Field(
        default=None, description="VIP (default) or Proxy (KEP-1860)."
    )
    ports: Ignored = None


class LoadBalancerStatus(KubeStrictModel):
    ingress: list[LoadBalancerIngress] = Field(
        default=[], description="External addresses of a LoadBalancer Service."
    )


class ServiceStatus(KubeStrictModel):
    load_balancer: LoadBalancerStatus = Field(
        default=LoadBalancerStatus(),
        description="The LoadBalancer's external addresses.",
    )
    conditions: Ignored = None


class ServiceObject(ObjectBase):
    kind: Literal["Service"] = Field(description="Service.")
    spec: ServiceSpec = Field(
        default=ServiceSpec(), description="Type, selector, ports and traffic policies."
    )
    status: ServiceStatus = Field(
        default=ServiceStatus(),
        description="Only status.loadBalancer.ingress[].ip and .ipMode are read.",
    )


class IPBlockSpec(KubeStrictModel):
    cidr: str = Field(
        description="An IPv4 CIDR (host bits set: a warning, the network is meant)."
    )  # host bits are allowed, with a warning (normalize)
    except_: list[str] = Field(
        default=[], alias="except", description="CIDRs inside cidr that are excluded."
    )


class PeerSpec(KubeStrictModel):
    pod_selector: LabelSelectorSpec | None = Field(
        default=None,
        description="Pods with these labels (in the policy's namespace, or in the namespaces of namespaceSelector).",
    )
    namespace_selector: LabelSelectorSpec | None = Field(
        default=None,
        description="Namespaces with these labels ({} = every namespace); ANDed with podSelector in one peer.",
    )
    ip_block: IPBlockSpec | None = Field(
        default=None, description="Addresses in a CIDR (not alongside the selectors)."
    )


class PolicyPortSpec(KubeStrictModel):
    protocol: ProtocolName | None = Field(
        default=None, description="TCP (default), UDP or SCTP."
    )
    port: PortOrName | None = Field(
        default=None,
        description="A port number or a named port of the destination pod. Default: every port.",
    )
    end_port: Port | None = Field(
        default=None,
        description="Last port of a range starting at port (a number, not below it).",
    )


class IngressRuleSpec(KubeStrictModel):
    from_: list[PeerSpec] | None = Field(
        default=None,
        alias="from",
        description="Peers admitted (ORed). Default: every source.",
    )
    ports: list[PolicyPortSpec] | None = Field(
        default=None, description="Ports admitted (ORed). Default: every port."
    )


class EgressRuleSpec(KubeStrictModel):
    to: list[PeerSpec] | None = Field(
        default=None, description="Peers admitted (ORed). Default: every destination."
    )
    ports: list[PolicyPortSpec] | None = Field(
        default=None, description="Ports admitted (ORed). Default: every port."
    )


class NetworkPolicySpec(KubeStrictModel):
    pod_selector: LabelSelectorSpec = Field(
        default=LabelSelectorSpec(),
        description="The pods the policy selects ({} = every pod of its namespace).",
    )
    policy_types: list[Literal["Ingress", "Egress"]] | None = Field(
        default=None,
        description="Ingress, Egress. Default: Ingress, plus Egress when egress is a non-empty list.",
    )
    ingress: list[IngressRuleSpec] | None = Field(
        default=None,
        description="Rules admitting incoming traffic (ORed); none with Ingress: deny all.",
    )
    egress: list[EgressRuleSpec] | None = Field(
        default=None,
        description="Rules admitting outgoing traffic (ORed); none with Egress: deny all.",
    )


class NetworkPolicyObject(ObjectBase):
    kind: Literal["NetworkPolicy"] = Field(description="NetworkPolicy.")
    spec: NetworkPolicySpec = Field(
        default=NetworkPolicySpec(),
        description="Selected pods, policy types and rules.",
    )
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
    | EndpointSliceObject
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
    "EndpointSlice": EndpointSliceObject,
}
