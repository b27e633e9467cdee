"""Pydantic schema of a scenario file (SCENARIO-FORMAT.md), and its JSON Schema for editors.

The loader validates a file piece by piece with these models (the top level, the `cluster`,
then each step with the model of its one step key) so that every error points at one key;
`scenario_json_schema()` publishes the same models as one JSON Schema.  Kubernetes objects have
their own models in `topology.kubeschema`.
"""

# Pydantic copies mutable defaults per instance, so `= []` and `= {}` are safe here.
# ruff: noqa: RUF012

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

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

NetworkName = Literal["vxlan", "host-gw", "routed"]
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
STEP_KEYS = ("probe", "send", "matrix", "apply", "delete", "label", "replay")


class NodeModel(StrictModel):
    name: DNSSubdomain
    ip: IPv4 | None = None
    pod_cidr: CIDR | None = Field(default=None, alias="podCIDR")
    labels: Labels = {}


class ExternalPortModel(StrictModel):
    port: Port
    protocol: ProtocolName = "TCP"


class ExternalModel(StrictModel):
    name: DNSLabel
    ip: IPv4
    ports: list[ExternalPortModel] = []


class ClusterModel(StrictModel):
    network: NetworkName = "vxlan"
    vxlan_port: Port = 8472
    bridge: IfName = "cbr0"
    mtu: Annotated[int, Field(ge=68, le=65535)] = 1500
    node_cidr: CIDR = Field(default=IPv4Network("10.100.0.0/24"), alias="nodeCIDR")
    gateway: IPv4 | None = Field(
        default=None, description="Default: the first host of nodeCIDR."
    )
    service_cidr: CIDR = Field(default=IPv4Network("10.96.0.0/12"), alias="serviceCIDR")
    cluster_domain: DNSSubdomain = "cluster.local"
    dns: bool = True
    nodes: list[NodeModel] | None = Field(
        default=None,
        min_length=1,
        description="Default: node-1 10.100.0.2 10.0.1.0/24, node-2 10.100.0.3 10.0.2.0/24.",
    )
    externals: list[ExternalModel] = []


def _verdict_word(value: Any) -> Any:
    if isinstance(value, str):
        return {"verdict": value}
    if not isinstance(value, dict):
        raise invalid(
            "expected a verdict word or a mapping {verdict, policy, via, endpoint},"
            f" got {describe(value)}"
        )
    return value


class ExpectModel(StrictModel):
    verdict: VerdictWord | None = None
    policy: str | None = None
    via: list[str] = []
    endpoint: str | None = None


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
    from_: str = Field(alias="from")
    to: str
    port: PortOrName | None = None
    protocol: ProbeProtocol = "TCP"
    expect: ExpectField | None = None


class MatrixExpectModel(StrictModel):
    denied: list[Pair] | None = None
    allowed: list[Pair] | None = None


class MatrixModel(StrictModel):
    from_: EndpointList = Field(default=None, alias="from")
    to: EndpointList = None
    port: PortOrName | None = Field(
        default=None, description="Default 80 (none for ICMP)."
    )
    protocol: ProbeProtocol = "TCP"
    expect: MatrixExpectModel | None = None


class HexPacketModel(StrictModel):
    hex: str


def _keep(value: Any) -> Any:
    return value


LayerItem = dict[str, dict[str, Any] | None]


class SendModel(StrictModel):
    at: str
    packet: Annotated[
        Any,
        BeforeValidator(_keep, json_schema_input_type=list[LayerItem] | HexPacketModel),
        Field(
            description="Layers, outermost first ([{IP: {...}}, {TCP: {...}}]), or {hex}"
        ),
    ]
    expect: ExpectField | None = None


class LabelModel(StrictModel):
    pod: str | None = None
    namespace: str | None = None
    set: Labels = {}
    remove: list[LabelKey] = []


class ReplayModel(StrictModel):
    pcap: str
    at: str | None = None
    expect: dict[VerdictWord, NonNegative] | None = None
    keep_traces: NonNegative | None = Field(
        default=None,
        alias="keepTraces",
        description="How many packets keep their trace (default 100)",
    )


class FileRef(StrictModel):
    file: str


ManifestItem = Annotated[
    dict[str, Any], BeforeValidator(_keep, json_schema_input_type=KubeModel | FileRef)
]


class _StepItem(StrictModel):
    name: str | None = None


class ProbeItem(_StepItem):
    probe: ProbeModel


class SendItem(_StepItem):
    send: SendModel


class MatrixItem(_StepItem):
    matrix: MatrixModel


class ApplyItem(_StepItem):
    apply: list[ManifestItem]


class DeleteItem(_StepItem):
    delete: list[str] = Field(min_length=1)


class LabelItem(_StepItem):
    label: LabelModel


class ReplayItem(_StepItem):
    replay: ReplayModel


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
    """The whole file; steps are only checked to be mappings here, then one by one."""

    name: str
    description: str = ""
    cluster: ClusterModel = ClusterModel()
    manifests: list[ManifestItem] = []
    steps: list[StepField] = Field(min_length=1)


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (for editors and `dataplane schema`)."""
    schema = ScenarioModel.model_json_schema()
    schema["title"] = "dataplane scenario"
    return schema
