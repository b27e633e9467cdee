"""Pydantic schemas of the cluster-wide policy kinds of SIG Network's network-policy-api:
AdminNetworkPolicy and BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`,
`apis/v1alpha1/adminnetworkpolicy_types.go`, `baselineadminnetworkpolicy_types.go`,
`shared_types.go`) and ClusterNetworkPolicy (`v1alpha2`,
`apis/v1alpha2/clusternetworkpolicy_types.go`).

The bounds are the CRDs' OpenAPI ones (`+kubebuilder:validation:Minimum/Maximum/MinItems/
MaxItems/MaxLength/Enum`); the "exactly one field" rules (`MinProperties=1`,
`MaxProperties=1`) and the CEL rules (`self.start < self.end`, no named port with
networks/nodes peers, BANP named `default`) are checked in `topology.adminpolicy`, which
turns these models into `topology.model.AdminPolicy` records.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from topology.fields import Ignored, Port, PortName
from topology.kubeschema import (
    KubeStrictModel,
    LabelSelectorSpec,
    ObjectMeta,
    ProtocolName,
)

Priority = Annotated[int, Field(ge=0, le=1000)]
RuleName = Annotated[str, Field(max_length=100)]
# `CIDR`: isCIDR(self), MaxLength=43; parsed (IPv4 only here) in topology.adminpolicy,
# after `${ip:...}` references are expanded (no text over 43 characters parses as a CIDR,
# so the length is not a schema rule: the editor's schema sees the unexpanded text).
CIDRText = str
# `DomainName`: the CRD's pattern, checked in topology.adminpolicy.
DomainName = str


class NamespacedPodSpec(KubeStrictModel):
    """`NamespacedPod`: pods in namespaces (both selectors required in v1alpha1)."""

    namespace_selector: LabelSelectorSpec = Field(
        description="Namespaces whose pods may match ({} = every namespace)."
    )
    pod_selector: LabelSelectorSpec = Field(
        description="Pods with these labels in those namespaces ({} = every pod)."
    )


class NamespacedPodV2(KubeStrictModel):
    """v1alpha2 `NamespacedPod`: `namespaceSelector` optional, `podSelector` required."""

    namespace_selector: LabelSelectorSpec = Field(
        default=LabelSelectorSpec(),
        description="Namespaces whose pods may match (default {} = every namespace).",
    )
    pod_selector: LabelSelectorSpec = Field(
        description="Pods with these labels in those namespaces ({} = every pod)."
    )


class SubjectSpec(KubeStrictModel):
    """`AdminNetworkPolicySubject`: exactly one of `namespaces`, `pods`."""

    namespaces: LabelSelectorSpec | None = Field(
        default=None, description="Every pod of the namespaces with these labels."
    )
    pods: NamespacedPodSpec | None = Field(
        default=None, description="Pods by namespace AND pod labels."
    )


class IngressPeerSpec(KubeStrictModel):
    """`AdminNetworkPolicyIngressPeer`: exactly one of `namespaces`, `pods`."""

    namespaces: LabelSelectorSpec | None = Field(
        default=None, description="Every pod of the namespaces with these labels."
    )
    pods: NamespacedPodSpec | None = Field(
        default=None, description="Pods by namespace AND pod labels."
    )


class BaselineEgressPeerSpec(IngressPeerSpec):
    """`BaselineAdminNetworkPolicyEgressPeer`: also `nodes` and `networks`."""

    nodes: LabelSelectorSpec | None = Field(
        default=None, description="The addresses of the nodes with these labels."
    )
    networks: Annotated[list[CIDRText], Field(min_length=1, max_length=25)] | None = (
        Field(default=None, description="CIDRs (any address in them, pods' too).")
    )


class EgressPeerSpec(BaselineEgressPeerSpec):
    """`AdminNetworkPolicyEgressPeer`: also `domainNames` (NPEP-133)."""

    domain_names: (
        Annotated[list[DomainName], Field(min_length=1, max_length=25)] | None
    ) = Field(
        default=None,
        description="FQDNs or *.NAME: the addresses the DNS answers for them.",
    )


class PortNumberSpec(KubeStrictModel):
    protocol: ProtocolName = Field(
        default="TCP", description="TCP (default), UDP, SCTP."
    )
    port: Port = Field(description="The destination port.")


class PortRangeSpec(KubeStrictModel):
    protocol: ProtocolName = Field(
        default="TCP", description="TCP (default), UDP, SCTP."
    )
    start: Port = Field(description="First port (below end).")
    end: Port = Field(description="Last port (above start).")


class AdminPortSpec(KubeStrictModel):
    """`AdminNetworkPolicyPort`: exactly one of `portNumber`, `namedPort`, `portRange`."""

    port_number: PortNumberSpec | None = Field(default=None, description="A port.")
    named_port: PortName | None = Field(
        default=None, description="A containerPort name of the destination pod."
    )
    port_range: PortRangeSpec | None = Field(
        default=None, description="An inclusive range of ports."
    )


Peers100 = Annotated[list[IngressPeerSpec], Field(min_length=1, max_length=100)]
Ports100 = Annotated[list[AdminPortSpec], Field(min_length=1, max_length=100)]


class ANPIngressRuleSpec(KubeStrictModel):
    name: RuleName = Field(default="", description="The rule's name (traces show it).")
    action: Literal["Allow", "Deny", "Pass"] = Field(description="Allow, Deny or Pass.")
    from_: Peers100 = Field(alias="from", description="Sources (ORed), at least one.")
    ports: Ports100 | None = Field(
        default=None, description="Destination ports (ORed). Default: every port."
    )


class ANPEgressRuleSpec(KubeStrictModel):
    name: RuleName = Field(default="", description="The rule's name (traces show it).")
    action: Literal["Allow", "Deny", "Pass"] = Field(description="Allow, Deny or Pass.")
    to: Annotated[list[EgressPeerSpec], Field(min_length=1, max_length=100)] = Field(
        description="Destinations (ORed), at least one."
    )
    ports: Ports100 | None = Field(
        default=None, description="Destination ports (ORed). Default: every port."
    )


class BANPIngressRuleSpec(KubeStrictModel):
    name: RuleName = Field(default="", description="The rule's name (traces show it).")
    action: Literal["Allow", "Deny"] = Field(description="Allow or Deny.")
    from_: Peers100 = Field(alias="from", description="Sources (ORed), at least one.")
    ports: Ports100 | None = Field(
        default=None, description="Destination ports (ORed). Default: every port."
    )


class BANPEgressRuleSpec(KubeStrictModel):
    name: RuleName = Field(default="", description="The rule's name (traces show it).")
    action: Literal["Allow", "Deny"] = Field(description="Allow or Deny.")
    to: Annotated[list[BaselineEgressPeerSpec], Field(min_length=1, max_length=100)] = (
        Field(description="Destinations (ORed), at least one.")
    )
    ports: Ports100 | None = Field(
        default=None, description="Destination ports (ORed). Default: every port."
    )


class ANPSpec(KubeStrictModel):
    priority: Priority = Field(description="0-1000; lower values are checked first.")
    subject: SubjectSpec = Field(description="The pods the policy applies to.")
    ingress: Annotated[list[ANPIngressRuleSpec], Field(max_length=100)] | None = Field(
        default=None, description="Ingress rules, first match wins (at most 100)."
    )
    egress: Annotated[list[ANPEgressRuleSpec], Field(max_length=100)] | None = Field(
        default=None, description="Egress rules, first match wins (at most 100)."
    )


class BANPSpec(KubeStrictModel):
    subject: SubjectSpec = Field(description="The pods the policy applies to.")
    ingress: Annotated[list[BANPIngressRuleSpec], Field(max_length=100)] | None = Field(
        default=None, description="Ingress rules, first match wins."
    )
    egress: Annotated[list[BANPEgressRuleSpec], Field(max_length=100)] | None = Field(
        default=None, description="Egress rules, first match wins."
    )


# -- v1alpha2 ClusterNetworkPolicy ------------------------------------------------------------
class CNPRangeSpec(KubeStrictModel):
    start: Port = Field(description="First port (below end).")
    end: Port = Field(description="Last port (above start).")


class CNPPortSpec(KubeStrictModel):
    """`Port`: exactly one of `number`, `range`."""

    number: Port | None = Field(default=None, description="A port.")
    range: CNPRangeSpec | None = Field(default=None, description="A port range.")


class CNPProtocolPortSpec(KubeStrictModel):
    """`ClusterNetworkPolicyProtocolTCP/UDP/SCTP` (MinProperties=1)."""

    destination_port: CNPPortSpec | None = Field(
        default=None, description="The destination port or range."
    )


class CNPProtocolSpec(KubeStrictModel):
    """`ClusterNetworkPolicyProtocol`: exactly one of tcp, udp, sctp,
    destinationNamedPort."""

    tcp: CNPProtocolPortSpec | None = Field(default=None, description="TCP match.")
    udp: CNPProtocolPortSpec | None = Field(default=None, description="UDP match.")
    sctp: CNPProtocolPortSpec | None = Field(default=None, description="SCTP match.")
    destination_named_port: PortName | None = Field(
        default=None, description="A containerPort name of the destination pod."
    )


class CNPIngressPeerSpec(KubeStrictModel):
    namespaces: LabelSelectorSpec | None = Field(
        default=None, description="Every pod of the namespaces with these labels."
    )
    pods: NamespacedPodV2 | None = Field(
        default=None, description="Pods by namespace AND pod labels."
    )


class CNPEgressPeerSpec(CNPIngressPeerSpec):
    nodes: LabelSelectorSpec | None = Field(
        default=None, description="The addresses of the nodes with these labels."
    )
    networks: Annotated[list[CIDRText], Field(min_length=1, max_length=25)] | None = (
        Field(default=None, description="CIDRs (any address in them, pods' too).")
    )
    domain_names: (
        Annotated[list[DomainName], Field(min_length=1, max_length=25)] | None
    ) = Field(
        default=None,
        description="FQDNs or *.NAME: the addresses the DNS answers for them.",
    )


Protocols25 = Annotated[list[CNPProtocolSpec], Field(min_length=1, max_length=25)]
CNPAction = Literal["Accept", "Deny", "Pass"]


class CNPIngressRuleSpec(KubeStrictModel):
    name: RuleName = Field(default="", description="The rule's name (traces show it).")
    action: CNPAction = Field(description="Accept, Deny or Pass.")
    from_: Annotated[list[CNPIngressPeerSpec], Field(min_length=1, max_length=25)] = (
        Field(alias="from", description="Sources (ORed), at least one.")
    )
    protocols: Protocols25 | None = Field(
        default=None, description="Protocols and ports (ORed). Default: all."
    )


class CNPEgressRuleSpec(KubeStrictModel):
    name: RuleName = Field(default="", description="The rule's name (traces show it).")
    action: CNPAction = Field(description="Accept, Deny or Pass.")
    to: Annotated[list[CNPEgressPeerSpec], Field(min_length=1, max_length=25)] = Field(
        description="Destinations (ORed), at least one."
    )
    protocols: Protocols25 | None = Field(
        default=None, description="Protocols and ports (ORed). Default: all."
    )


class CNPSubjectSpec(KubeStrictModel):
    namespaces: LabelSelectorSpec | None = Field(
        default=None, description="Every pod of the namespaces with these labels."
    )
    pods: NamespacedPodV2 | None = Field(
        default=None, description="Pods by namespace AND pod labels."
    )


class CNPSpec(KubeStrictModel):
    tier: Literal["Admin", "Baseline"] = Field(description="Admin or Baseline.")
    priority: Priority = Field(description="0-1000 in its tier; lower first.")
    subject: CNPSubjectSpec = Field(description="The pods the policy applies to.")
    ingress: Annotated[list[CNPIngressRuleSpec], Field(max_length=25)] | None = Field(
        default=None, description="Ingress rules, first match wins (at most 25)."
    )
    egress: Annotated[list[CNPEgressRuleSpec], Field(max_length=25)] | None = Field(
        default=None, description="Egress rules, first match wins (at most 25)."
    )


class _ClusterObject(KubeStrictModel):
    api_version: str | None = Field(
        default=None, description="May be left out; when given it must match the kind."
    )
    kind: str
    metadata: ObjectMeta = Field(description="Name and labels (cluster-scoped).")
    status: Ignored = None


class AdminNetworkPolicyObject(_ClusterObject):
    kind: Literal["AdminNetworkPolicy"] = Field(description="AdminNetworkPolicy.")
    spec: ANPSpec = Field(description="Priority, subject and rules.")


class BaselineAdminNetworkPolicyObject(_ClusterObject):
    kind: Literal["BaselineAdminNetworkPolicy"] = Field(
        description="BaselineAdminNetworkPolicy (a singleton named default)."
    )
    spec: BANPSpec = Field(description="Subject and rules.")


class ClusterNetworkPolicyObject(_ClusterObject):
    kind: Literal["ClusterNetworkPolicy"] = Field(description="ClusterNetworkPolicy.")
    spec: CNPSpec = Field(description="Tier, priority, subject and rules.")


AdminModel = (
    AdminNetworkPolicyObject
    | BaselineAdminNetworkPolicyObject
    | ClusterNetworkPolicyObject
)
ADMIN_MODELS: dict[str, type[AdminModel]] = {
    "AdminNetworkPolicy": AdminNetworkPolicyObject,
    "BaselineAdminNetworkPolicy": BaselineAdminNetworkPolicyObject,
    "ClusterNetworkPolicy": ClusterNetworkPolicyObject,
}
ADMIN_API_VERSIONS = {
    "AdminNetworkPolicy": "policy.networking.k8s.io/v1alpha1",
    "BaselineAdminNetworkPolicy": "policy.networking.k8s.io/v1alpha1",
    "ClusterNetworkPolicy": "policy.networking.k8s.io/v1alpha2",
}
