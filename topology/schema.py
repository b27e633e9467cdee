"""Pydantic schema of a scenario file (docs/scenario-format.md), and its JSON Schema for editors.

The loader validates a file piece by piece with these models (the top level, the `cluster`,
then each step with the model of its one step key) so that every error points at one key;
`scenario_json_schema()` publishes the same models as one JSON Schema.  Kubernetes objects have
their own models in `topology.kubeschema`.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from topology.adminschema import AdminModel
from topology.fields import (
    CIDR,
    DNSLabel,
    DNSSubdomain,
    IfName,
    IPv4,
    LabelKey,
    Labels,
    NonNegative,
    Port,
    PortOrName,
    StrictModel,
    describe,
    invalid,
)
from topology.kubeschema import KubeModel
from topology.proxyschema import KubeProxyModel

NetworkName = Literal["vxlan", "host-gw", "routed"]  # flannel's (dataplane init)
CniName = Literal["flannel", "calico", "cilium"]
NETWORK_NAMES = ("vxlan", "host-gw", "routed", "ipip", "bgp", "geneve", "native")
ProtocolName = Literal["TCP", "UDP", "SCTP"]
ProbeProtocol = Literal["TCP", "UDP", "SCTP", "ICMP"]
VerdictWord = Literal[
    "delivered",
    "allowed",
    "denied",
    "denied-egress",
    "denied-ingress",
    "refused",
    "no-route",
    "unreachable",
    "nxdomain",
    "ttl-exceeded",
    "too-big",
    "dropped",
]
# A replay also counts the packets it could not walk as Wireshark would not decode them.
ReplayWord = Literal[VerdictWord, "malformed"]
STEP_KEYS = ("probe", "send", "matrix", "apply", "delete", "label", "replay")


class NodeModel(StrictModel):
    """One node: its name, its underlay address, its pod network and its labels."""

    name: DNSSubdomain = Field(
        description="Node name (a DNS-1123 subdomain), unique; also its label"
        " kubernetes.io/hostname."
    )
    ip: IPv4 | None = Field(
        default=None,
        description="Address on nodeCIDR. Default: the lowest free host after the"
        " previous node's, skipping the gateway and every address given explicitly.",
    )
    pod_cidr: CIDR | None = Field(
        default=None,
        alias="podCIDR",
        description="The node's pod network (/30 or shorter, overlapping no other"
        " podCIDR, nodeCIDR or serviceCIDR). Default: 10.0.N.0/24, N the node's"
        " 1-based position.",
    )
    labels: Labels = Field(
        default={},
        description="Node labels (for nodeSelector); kubernetes.io/hostname and"
        " kubernetes.io/os: linux are added.",
    )
    docker_user: list[str] = Field(
        default=[],
        alias="dockerUser",
        description="With runtime docker: the host's filter DOCKER-USER chain, in order,"
        " each rule the arguments of `iptables -A DOCKER-USER` (a subset: -s/-d, -i/-o,"
        " -p tcp|udp|icmp, --sport/--dport, -m conntrack --ctstate/--ctorigdst/"
        "--ctorigdstport, -m iprange, -j ACCEPT|DROP|RETURN|REJECT; docs/docker.md)."
        " Default: none.",
    )


class ExternalPortModel(StrictModel):
    """A listening socket of an external host."""

    port: Port = Field(description="Port number, 1-65535.")
    protocol: ProtocolName = Field(
        default="TCP", description="TCP (default), UDP or SCTP."
    )


class ExternalModel(StrictModel):
    """A host outside the cluster, behind the gateway (endpoint external/NAME)."""

    name: DNSLabel = Field(
        description="Host name (a DNS-1123 label), unique; the endpoint is"
        " external/NAME."
    )
    ip: IPv4 = Field(
        description="Its address: outside nodeCIDR, serviceCIDR and every podCIDR."
    )
    ports: list[ExternalPortModel] = Field(
        default=[],
        description="Its listening sockets; ICMP echo is always answered."
        " Default: none.",
    )


class CalicoModel(StrictModel):
    """Calico's IPAM: the IP pool and the size of the block each node is affine to."""

    ip_pool: CIDR = Field(
        default=IPv4Network("192.168.0.0/16"),
        alias="ipPool",
        description="The IPv4 pool (calico-node's CALICO_IPV4POOL_CIDR, default"
        " 192.168.0.0/16), outside nodeCIDR and serviceCIDR.",
    )
    block_size: Annotated[int, Field(ge=20, le=32)] = Field(
        default=26,
        alias="blockSize",
        description="Prefix length of the blocks the pool is split into, one per node"
        " in node order (CALICO_IPV4POOL_BLOCK_SIZE, default 26; Calico allows 20-32).",
    )


class GatewayRouteModel(StrictModel):
    """An extra route on the gateway router (the cloud's route table)."""

    cidr: CIDR = Field(description="Destination network, e.g. the service range.")
    via: str = Field(description="The node it is routed to: node/NAME.")


class ClusterModel(StrictModel):
    """The cluster: nodes, their networks, the overlay, the gateway, external hosts."""

    network: str | None = Field(
        default=None,
        # editors learn every CNI's modes; which of them the CNI offers is checked by
        # topology.config (an error naming the CNI)
        json_schema_extra={"enum": [*NETWORK_NAMES, None]},
        description="How pod traffic crosses nodes. flannel: vxlan (default;"
        " flannel.1, VNI 1, pod MTU = mtu - 50), host-gw (podCIDR via nodeIP) or"
        " routed (the gateway routes every podCIDR); calico: ipip (default; tunl0,"
        " pod MTU = mtu - 20), vxlan (vxlan.calico, VNI 4096, pod MTU = mtu - 50) or"
        " bgp (block via nodeIP); cilium: vxlan (default; cilium_vxlan, MTU - 50),"
        " geneve (cilium_geneve) or native (podCIDR via nodeIP).",
    )
    vxlan_port: Port | None = Field(
        default=None,
        alias="vxlanPort",
        description="UDP destination port of VXLAN (flannel's and Cilium's default 8472,"
        " Linux's; Calico's 4789, IANA's and Felix's vxlanPort). Only with network vxlan.",
    )
    bridge: IfName | None = Field(
        default=None,
        description="Name of every node's pod bridge (default cbr0; e.g. docker0)."
        " flannel only.",
    )
    mtu: Annotated[int, Field(ge=68, le=65535)] = Field(
        default=1500,
        description="Underlay MTU (default 1500; at least 118 with vxlan).",
    )
    node_cidr: CIDR = Field(
        default=IPv4Network("10.100.0.0/24"),
        alias="nodeCIDR",
        description="The underlay network of nodes and gateway (default"
        " 10.100.0.0/24; /29 or shorter).",
    )
    gateway: IPv4 | None = Field(
        default=None,
        description="The underlay router, which also leads to externals. Default:"
        " the first host of nodeCIDR (10.100.0.1).",
    )
    service_cidr: CIDR = Field(
        default=IPv4Network("10.96.0.0/12"),
        alias="serviceCIDR",
        description="ClusterIPs are allocated from it (default 10.96.0.0/12): .1 is"
        " default/kubernetes, .10 kube-system/kube-dns.",
    )
    cluster_domain: DNSSubdomain = Field(
        default="cluster.local", description="DNS suffix (default cluster.local)."
    )
    dns: bool = Field(
        default=True,
        description="Run kube-dns: pod kube-system/coredns-0 and Service"
        " kube-system/kube-dns (default true).",
    )
    nodes: list[NodeModel] | None = Field(
        default=None,
        min_length=1,
        description="The nodes, a list of {name, ip, podCIDR, labels} (not a count)."
        " Default: node-1 10.100.0.2 10.0.1.0/24, node-2 10.100.0.3 10.0.2.0/24.",
    )
    externals: list[ExternalModel] = Field(
        default=[],
        description="Hosts outside the cluster behind the gateway. Default: none.",
    )
    kube_proxy: KubeProxyModel = Field(
        default=KubeProxyModel(),
        alias="kubeProxy",
        description="kube-proxy's configuration (KubeProxyConfiguration fields).",
    )
    gateway_routes: list[GatewayRouteModel] = Field(
        default=[],
        alias="gatewayRoutes",
        description="Extra routes on the gateway router, [{cidr, via: node/NAME}]"
        " (e.g. the service range to a node). Default: none.",
    )
    runtime: Literal["kubernetes", "docker"] = Field(
        default="kubernetes",
        description="What every node runs: kubernetes (default) or docker (each node a"
        " Docker Engine host running the scenario's compose projects; no kubelet,"
        " kube-proxy, CNI or kube-dns).",
    )
    cni: CniName = Field(
        default="flannel",
        description="The network plugin that builds every node: flannel (default;"
        " cbr0), calico (cali* veths, /32 routes, Felix's per-endpoint chains) or"
        " cilium (lxc* veths, cilium_host, cluster-pool, no kube-proxy).",
    )
    calico: CalicoModel | None = Field(
        default=None,
        description="For Calico only (with cni calico): {ipPool, blockSize} of its IPAM."
        " Default: 192.168.0.0/16 in /26 blocks.",
    )


def _verdict_word(value: Any) -> Any:
    if isinstance(value, str):
        return {"verdict": value}
    if not isinstance(value, dict):
        raise invalid(
            "expected a verdict word or a mapping {verdict, policy, via, endpoint,"
            " sourceIP},"
            f" got {describe(value)}"
        )
    return value


class ExpectModel(StrictModel):
    """What a probe or send step expects; a key left out is not checked."""

    verdict: VerdictWord | None = Field(
        default=None,
        description="The verdict (denied matches denied-egress and denied-ingress;"
        " allowed is delivered).",
    )
    policy: str | None = Field(
        default=None,
        description="NS/NAME of the NetworkPolicy that decided (allowed by or"
        " isolated by), or KIND/NAME of the admin policy whose rule decided"
        " (AdminNetworkPolicy/NAME, BaselineAdminNetworkPolicy/default,"
        " ClusterNetworkPolicy/NAME).",
    )
    via: list[str] = Field(
        default=[],
        description="Devices the walk passes in this order (a subsequence):"
        " NODE/DEVICE, a bare NODE, or gateway.",
    )
    endpoint: str | None = Field(
        default=None, description="NS/POD of the backend a Service chose."
    )
    source_ip: str | None = Field(
        default=None,
        alias="sourceIP",
        description="The source address the destination socket saw: an endpoint"
        " (NS/POD, node/NAME: any of its addresses, external/NAME) or an address.",
    )


EXPECT_HELP = "A verdict word, or {verdict, policy, via, endpoint, sourceIP}; none: the step is not checked."
ExpectField = Annotated[
    ExpectModel,
    BeforeValidator(_verdict_word, json_schema_input_type=VerdictWord | ExpectModel),
]


def _all_or_list(value: Any) -> Any:
    if value == "all" or value is None:
        return None
    if not isinstance(value, list):
        raise invalid(f"expected 'all' or a list of endpoints, got {describe(value)}")
    return value


ENDPOINTS_HELP = (
    "all (default: every pod that is not hostNetwork) or a list of endpoints."
)
EndpointList = Annotated[
    list[str] | None,
    BeforeValidator(_all_or_list, json_schema_input_type=Literal["all"] | list[str]),
]


def _pair(value: str) -> str:
    src, arrow, dst = value.partition("->")
    if not arrow or not src.strip() or not dst.strip() or "->" in dst:
        raise invalid(
            f"{value!r} is not a pair (expected 'FROM -> TO', e.g. 'x/a -> y/b')"
        )
    return f"{src.strip()} -> {dst.strip()}"


Pair = Annotated[str, AfterValidator(_pair)]


class ProbeModel(StrictModel):
    """Can FROM connect to TO? The first packet and its reply, walked hop by hop."""

    from_: str = Field(
        alias="from",
        description="Source endpoint: NS/POD, NS/POD/CONTAINER, node/NAME,"
        " external/NAME (${ip:...} allowed).",
    )
    to: str = Field(
        description="Destination endpoint: also svc/NS/NAME, a DNS name, an IPv4"
        " address or localhost."
    )
    port: PortOrName | None = Field(
        default=None,
        description="Destination port: a number, or a port name of the destination"
        " pod (of the Service, for svc/NS/NAME or its DNS name); none for ICMP.",
    )
    protocol: ProbeProtocol = Field(
        default="TCP", description="TCP (default), UDP, SCTP or ICMP (echo)."
    )
    expect: ExpectField | None = Field(
        default=None,
        description=EXPECT_HELP,
    )


class MatrixExpectModel(StrictModel):
    """Exactly one of `denied` or `allowed`: the listed pairs, every other the opposite."""

    denied: list[Pair] | None = Field(
        default=None,
        description="Pairs 'FROM -> TO' that are denied; every other pair must be"
        " delivered.",
    )
    allowed: list[Pair] | None = Field(
        default=None,
        description="Pairs 'FROM -> TO' that are delivered; every other pair must be"
        " denied.",
    )


class MatrixModel(StrictModel):
    """The reachability truth table, printed as a grid."""

    from_: EndpointList = Field(
        default=None,
        alias="from",
        description=ENDPOINTS_HELP,
    )
    to: EndpointList = Field(
        default=None,
        description=ENDPOINTS_HELP,
    )
    port: PortOrName | None = Field(
        default=None, description="Default 80 (none for ICMP)."
    )
    protocol: ProbeProtocol = Field(
        default="TCP", description="TCP (default), UDP, SCTP or ICMP."
    )
    expect: MatrixExpectModel | None = Field(
        default=None,
        description="{denied: [pairs]} or {allowed: [pairs]}; none: printed only.",
    )


class HexPacketModel(StrictModel):
    """A packet as raw bytes."""

    hex: str = Field(
        description="The bytes from the IP header on, in hex (whitespace ignored)."
    )


def _keep(value: Any) -> Any:
    return value


LayerItem = dict[str, dict[str, Any] | None]


class SendModel(StrictModel):
    """One crafted packet, walked from where it enters."""

    at: str = Field(
        description="Where it enters: it leaves this endpoint (NS/POD, node/NAME,"
        " external/NAME) by its eth0."
    )
    packet: Annotated[
        Any,
        BeforeValidator(_keep, json_schema_input_type=list[LayerItem] | HexPacketModel),
        Field(
            description="Layers, outermost first ([{IP: {...}}, {TCP: {...}}]), or {hex}"
        ),
    ]
    expect: ExpectField | None = Field(
        default=None,
        description=EXPECT_HELP,
    )


class LabelModel(StrictModel):
    """Change the labels of one pod or one namespace (exactly one of pod, namespace)."""

    pod: str | None = Field(default=None, description="The pod, NS/NAME.")
    namespace: str | None = Field(default=None, description="The namespace, NAME.")
    set: Labels = Field(default={}, description="Labels to add or overwrite.")
    remove: list[LabelKey] = Field(default=[], description="Label keys to remove.")


class ReplayModel(StrictModel):
    """Walk every packet of a capture file, one conntrack state for the whole file."""

    pcap: str = Field(
        description="The capture (pcap or pcapng), relative to the scenario file."
    )
    at: str | None = Field(
        default=None,
        description="Where every packet enters. Default: the pod, node or external"
        " host that owns each packet's source address.",
    )
    expect: dict[ReplayWord, NonNegative] | None = Field(
        default=None,
        description="Packet counts by verdict ({delivered: 12, denied: 3}), and"
        " `malformed` for packets Wireshark would call malformed; a word left out"
        " must count 0.",
    )
    keep_traces: NonNegative | None = Field(
        default=None,
        alias="keepTraces",
        description="How many packets keep their trace (default 100)",
    )


class FileRef(StrictModel):
    """Every object of a (multi-document) YAML file."""

    file: str = Field(
        description="Path of the manifest file, relative to the scenario."
    )


ManifestItem = Annotated[
    dict[str, Any],
    BeforeValidator(_keep, json_schema_input_type=KubeModel | AdminModel | FileRef),
]


class _StepItem(StrictModel):
    name: str | None = Field(
        default=None, description="A name for the step, shown in reports."
    )


class ProbeItem(_StepItem):
    """A probe step."""

    probe: ProbeModel = Field(description="Can FROM connect to TO on PORT?")


class SendItem(_StepItem):
    """A send step."""

    send: SendModel = Field(description="Walk one crafted packet.")


class MatrixItem(_StepItem):
    """A matrix step."""

    matrix: MatrixModel = Field(description="The reachability truth table.")


class ApplyItem(_StepItem):
    """An apply step."""

    apply: list[ManifestItem] = Field(
        description="Kubernetes objects or {file: ...} to create or replace, as"
        " kubectl apply does."
    )


class DeleteItem(_StepItem):
    """A delete step."""

    delete: list[str] = Field(
        min_length=1,
        description="Objects to delete, KIND/NS/NAME (kubectl short names allowed:"
        " svc, netpol, deploy, ...), or namespace/NAME.",
    )


class LabelItem(_StepItem):
    """A label step."""

    label: LabelModel = Field(description="Change a pod's or a namespace's labels.")


class ReplayItem(_StepItem):
    """A replay step."""

    replay: ReplayModel = Field(description="Walk every packet of a capture file.")


STEP_MODELS: dict[str, type[_StepItem]] = {
    "probe": ProbeItem,
    "send": SendItem,
    "matrix": MatrixItem,
    "apply": ApplyItem,
    "delete": DeleteItem,
    "label": LabelItem,
    "replay": ReplayItem,
}

StepUnion = (
    ProbeItem | SendItem | MatrixItem | ApplyItem | DeleteItem | LabelItem | ReplayItem
)
StepField = Annotated[
    dict[str, Any], BeforeValidator(_keep, json_schema_input_type=StepUnion)
]


class ScenarioModel(StrictModel):
    """A dataplane scenario: a cluster, its Kubernetes objects, and steps (docs/scenario-format.md)."""

    # Steps are only checked to be mappings here, then one by one (see the loader).
    name: str = Field(description="The scenario's name, free text.")
    description: str = Field(default="", description="What it shows, free text.")
    cluster: ClusterModel = Field(
        default=ClusterModel(),
        description="The cluster; every key has a default (two nodes, vxlan).",
    )
    manifests: list[ManifestItem] = Field(
        default=[],
        description="Kubernetes objects present before step 1, inline or {file: ...}.",
    )
    compose: list[dict[str, Any]] = Field(
        default=[],
        description="With runtime docker: Compose projects, each {node, project, file}"
        " (a compose file relative to the scenario) or {node, project, services,"
        " networks} inline (docs/docker.md).",
    )
    steps: list[StepField] = Field(
        min_length=1,
        description="What to do, in order: each item has one of probe, send, matrix,"
        " apply, delete, label, replay (plus an optional name).",
    )


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (for editors and `dataplane schema`)."""
    schema = ScenarioModel.model_json_schema()
    schema["title"] = "dataplane scenario"
    return schema
