"""Fields a live cluster fills in, so that a dump of a real cluster keeps its addresses.

`kubectl get nodes,ns,pods,svc,netpol -A -o yaml` prints what the cluster decided: a Node's
`spec.podCIDR(s)` (kube-controller-manager's node IPAM) and `status.addresses` (kubelet), a
Pod's `spec.nodeName` (the scheduler), `status.podIP(s)` (the CNI plugin) and
`status.hostIP`, a Service's `spec.clusterIP(s)` (the API server's allocator), and
`metadata.ownerReferences` (the controllers).  Here:
- Node objects define the cluster's nodes (name, first IPv4 InternalIP, IPv4 podCIDR,
  labels), checked like `cluster.nodes`;
- a Pod's `status.podIP` is its address (it must lie in its node's podCIDR, or be the node's
  address for a hostNetwork pod, and be free), `status.hostIP` must be its node's address;
- a Pod whose controller (`ownerReferences` with `controller: true`) is a workload of the
  same manifests belongs to it: the workload creates no pods of its own.  A ReplicaSet owned
  by a Deployment makes the Deployment's pods its own (and so do pods of a ReplicaSet left out
  of the dump, named `<deployment>-<pod-template-hash>` as the Deployment controller names it).
IPv6 addresses of dual-stack objects are skipped with a warning (the model is IPv4-only).
"""

# Pydantic copies mutable defaults per instance, so `= []` is safe here.
# ruff: noqa: RUF012

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from topology import names
from topology.diagnostic import to_topology_error
from topology.errors import TopologyError
from topology.fields import Ignored, StrictModel
from topology.kubeschema import ObjectMeta
from topology.manifest import KubeObject, Origin, describe_object
from topology.model import ClusterConfig, Cni, Loc, Pod
from topology.scenario import Manifest
from topology.yamlsource import PathPart

POD_TEMPLATE_HASH = "pod-template-hash"
Path = tuple[PathPart, ...]


class NodeAddressSpec(StrictModel):
    type: str
    address: str


class NodeSpecModel(StrictModel):
    pod_cidr: str | None = Field(default=None, alias="podCIDR")
    pod_cidrs: list[str] | None = Field(default=None, alias="podCIDRs")
    taints: Ignored = None
    unschedulable: Ignored = None
    provider_id: Ignored = Field(default=None, alias="providerID")
    external_id: Ignored = Field(default=None, alias="externalID")
    config_source: Ignored = None


class NodeStatusModel(StrictModel):
    addresses: list[NodeAddressSpec] = []
    capacity: Ignored = None
    allocatable: Ignored = None
    conditions: Ignored = None
    daemon_endpoints: Ignored = None
    images: Ignored = None
    node_info: Ignored = None
    phase: Ignored = None
    volumes_attached: Ignored = None
    volumes_in_use: Ignored = None
    config: Ignored = None
    runtime_handlers: Ignored = None
    features: Ignored = None


class NodeObject(StrictModel):
    api_version: Literal["v1"] | None = None
    kind: Literal["Node"]
    metadata: ObjectMeta
    spec: NodeSpecModel = NodeSpecModel()
    status: NodeStatusModel = NodeStatusModel()


class PodIPSpec(StrictModel):
    ip: str


class PodConditionSpec(StrictModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    last_probe_time: Ignored = None
    last_transition_time: Ignored = None
    reason: Ignored = None
    message: Ignored = None
    observed_generation: Ignored = None


class PodStatusModel(StrictModel):
    pod_ip: str | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIPSpec] | None = Field(default=None, alias="podIPs")
    host_ip: str | None = Field(default=None, alias="hostIP")
    host_ips: list[PodIPSpec] | None = Field(default=None, alias="hostIPs")
    phase: Ignored = None  # Succeeded, Failed: the pod is inert (topology.kinds)
    conditions: list[PodConditionSpec] | None = None
    container_statuses: Ignored = None
    init_container_statuses: Ignored = None
    ephemeral_container_statuses: Ignored = None
    message: Ignored = None
    reason: Ignored = None
    nominated_node_name: Ignored = None
    qos_class: Ignored = None
    start_time: Ignored = None
    resize: Ignored = None
    resource_claim_statuses: Ignored = None
    observed_generation: Ignored = None


class OwnerReferenceSpec(StrictModel):
    api_version: str
    kind: str
    name: str
    uid: Ignored = None
    controller: bool | None = None
    block_owner_deletion: Ignored = None


_OWNERS = TypeAdapter(list[OwnerReferenceSpec])


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """One node as written, before the address plan checks it (`topology.config`)."""

    name: str
    ip: IPv4Address | None
    pod_cidr: IPv4Network | None
    labels: Mapping[str, str]
    loc: Loc
    # (key among name, ip, podCIDR; reason) -> the error at the field it came from
    fail: Callable[[str, str], TopologyError] = field(compare=False)


def _v4(text: str) -> IPv4Address | Literal[False] | None:
    """An IPv4 address, None for IPv6, False for neither."""
    try:
        ip = ip_address(text)
    except ValueError:
        return False
    return ip if isinstance(ip, IPv4Address) else None


def _v4_net(text: str) -> IPv4Network | Literal[False] | None:
    try:
        net = ip_network(text, strict=True)
    except ValueError:
        return False
    return net if isinstance(net, IPv4Network) else None


def _validate(model: Any, data: Any, origin: Origin, prefix: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise to_topology_error(
            err, model, lambda parts: origin.loc(parts), prefix=prefix, obj=origin.ref
        ) from None


def node_entry(manifest: Manifest, warnings: list[str]) -> NodeEntry:
    """A Node object as a node of the cluster."""
    origin = Origin(describe_object(manifest.data), manifest)
    node: NodeObject = _validate(NodeObject, manifest.data, origin, ())
    name = node.metadata.name
    origin = Origin(f"Node {name}", manifest)
    reason = names.dns1123_subdomain(name)
    if reason is not None:
        raise origin.error(("metadata", "name"), reason)
    paths: dict[str, Path] = {"name": ("metadata", "name"), "": ()}
    ip = None
    for index, addr in enumerate(node.status.addresses):
        if addr.type != "InternalIP":
            continue
        where: Path = ("status", "addresses", index, "address")
        parsed = _v4(addr.address)
        if parsed is False:
            raise origin.error(where, f"{addr.address!r} is not an IP address")
        if parsed is None:
            warnings.append(origin.warning(where, "IPv6 address skipped (IPv4 only)"))
        elif ip is None:
            ip, paths["ip"] = parsed, where
    pod_cidr = None
    texts: list[tuple[str, Path]] = []
    if node.spec.pod_cidr is not None:
        texts.append((node.spec.pod_cidr, ("spec", "podCIDR")))
    texts += [
        (t, ("spec", "podCIDRs", i)) for i, t in enumerate(node.spec.pod_cidrs or ())
    ]
    for text, where in texts:
        net = _v4_net(text)
        if net is False:
            raise origin.error(where, f"{text!r} is not a valid CIDR")
        if net is None:
            if where[-1] != "podCIDR":
                warnings.append(
                    origin.warning(where, "IPv6 podCIDR skipped (IPv4 only)")
                )
        elif pod_cidr is None:
            pod_cidr, paths["podCIDR"] = net, where
        elif net != pod_cidr:
            raise origin.error(
                where,
                f"{net} differs from podCIDR {pod_cidr} (one IPv4 podCIDR per node)",
            )

    if pod_cidr is None:
        # A CNI with its own IPAM (Calico, Cilium cluster-pool) leaves spec.podCIDR empty.
        warnings.append(
            origin.warning(
                (),
                "no IPv4 spec.podCIDR (the CNI plugin allocates pod addresses itself?):"
                " the node gets the default 10.0.N.0/24, N its position",
            )
        )

    def fail(key: str, reason: str) -> TopologyError:
        return origin.error(paths.get(key, ()), reason)

    return NodeEntry(
        name, ip, pod_cidr, dict(node.metadata.labels), origin.loc(()), fail
    )


@dataclass(frozen=True, slots=True)
class PodStatus:
    """A Pod's live addresses (None where the object does not say) and its Ready
    condition."""

    pod_ip: IPv4Address | None = None
    host_ip: IPv4Address | None = None
    pod_ip_path: Path = ("status", "podIP")
    host_ip_path: Path = ("status", "hostIP")
    ready: bool = True


def pod_status(obj: KubeObject, warnings: list[str]) -> PodStatus:
    """The addresses and readiness a Pod object's `status` records."""
    raw = getattr(obj.model, "status", None)
    if raw is None:
        return PodStatus()
    status: PodStatusModel = _validate(PodStatusModel, raw, obj.origin, ("status",))
    found: dict[str, tuple[IPv4Address, Path]] = {}
    for key, single, many in (
        ("podIP", status.pod_ip, status.pod_ips),
        ("hostIP", status.host_ip, status.host_ips),
    ):
        texts: list[tuple[str, Path]] = (
            [] if single is None else [(single, ("status", key))]
        )
        texts += [
            (p.ip, ("status", f"{key}s", i, "ip")) for i, p in enumerate(many or ())
        ]
        for text, where in texts:
            if key in found and text == str(found[key][0]):
                continue  # podIPs[0] repeats podIP
            parsed = _v4(text)
            if parsed is False:
                raise obj.origin.error(where, f"{text!r} is not an IP address")
            if parsed is None:
                if where[-1] == "ip":
                    warnings.append(
                        obj.origin.warning(where, "IPv6 address skipped (IPv4 only)")
                    )
                continue
            if key not in found:
                found[key] = (parsed, where)
            elif found[key][0] != parsed:
                raise obj.origin.error(
                    where, f"{parsed} differs from {key} {found[key][0]}"
                )
    pod = found.get("podIP")
    host = found.get("hostIP")
    return PodStatus(
        pod and pod[0],
        host and host[0],
        pod[1] if pod else ("status", "podIP"),
        host[1] if host else ("status", "hostIP"),
        is_ready(status.conditions),
    )


def is_ready(conditions: list[PodConditionSpec] | None) -> bool:
    """Whether a pod is ready (podutil.IsPodReady): its `Ready` condition is "True".  A
    pod whose status lists no conditions at all is taken as ready, since a hand-written
    manifest describes a running pod; one that lists conditions without `Ready` is not
    (the kubelet always reports it)."""
    if conditions is None:
        return True
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def controller_of(obj: KubeObject) -> tuple[str, str] | None:
    """(kind, name) of the object's controller (`ownerReferences[].controller: true`)."""
    raw = obj.model.metadata.owner_references
    if raw is None:
        return None
    try:
        refs = _OWNERS.validate_python(raw)
    except ValidationError as err:
        raise to_topology_error(
            err,
            list[OwnerReferenceSpec],
            lambda parts: obj.origin.loc(parts),
            prefix=("metadata", "ownerReferences"),
            obj=obj.ref,
        ) from None
    for ref in refs:
        if ref.controller:
            return ref.kind, ref.name
    return None


def _raw_controller(data: Mapping[str, Any]) -> tuple[str, str] | None:
    meta = data.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, dict) else None
    for ref in refs if isinstance(refs, list) else ():
        if isinstance(ref, dict) and ref.get("controller") is True:
            kind, name = ref.get("kind"), ref.get("name")
            if isinstance(kind, str) and isinstance(name, str):
                return kind, name
    return None


def _raw_meta(data: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]]:
    meta = data.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    namespace = meta.get("namespace")
    labels = meta.get("labels")
    return (
        namespace if isinstance(namespace, str) and namespace else "default",
        str(meta.get("name")),
        labels if isinstance(labels, dict) else {},
    )


def adopted_workloads(manifests: Iterable[Manifest]) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of the workloads whose pods the manifests hold already."""
    out: set[tuple[str, str, str]] = set()
    for manifest in manifests:
        data = manifest.data
        kind = data.get("kind")
        owner = _raw_controller(data)
        if kind not in ("Pod", "ReplicaSet") or owner is None:
            continue
        namespace, _, labels = _raw_meta(data)
        out.add((owner[0], namespace, owner[1]))
        template_hash = labels.get(POD_TEMPLATE_HASH)
        if (
            kind == "Pod"
            and owner[0] == "ReplicaSet"
            and isinstance(template_hash, str)
        ):
            suffix = f"-{template_hash}"
            if owner[1].endswith(suffix):
                out.add(("Deployment", namespace, owner[1].removesuffix(suffix)))
    return out


def owns(kind: str, name: str, pod: Pod) -> str | None:
    """The owner through which workload `kind/name` owns `pod` (its own name, or for a
    Deployment the ReplicaSet `<name>-<pod-template-hash>` of a dump's pod), or None.

    >>> p = Pod("d", "web-5f-x", "n", IPv4Address("10.0.1.2"),
    ...         {POD_TEMPLATE_HASH: "5f"}, owner="ReplicaSet/web-5f")
    >>> owns("Deployment", "web", p), owns("Deployment", "api", p)
    ('ReplicaSet/web-5f', None)
    """
    if pod.owner == f"{kind}/{name}":
        return pod.owner
    template_hash = pod.labels.get(POD_TEMPLATE_HASH)
    if kind == "Deployment" and pod.owner == f"ReplicaSet/{name}-{template_hash}":
        return pod.owner
    return None


def live_pod_ips(manifests: Iterable[Manifest]) -> list[tuple[str, IPv4Address]]:
    """(node, podIP) of every Pod manifest that records both (to hold before allocation)."""
    out = []
    for manifest in manifests:
        data = manifest.data
        spec, status = data.get("spec"), data.get("status")
        if data.get("kind") != "Pod" or not isinstance(spec, dict):
            continue
        if not isinstance(status, dict) or spec.get("hostNetwork") is True:
            continue
        node, text = spec.get("nodeName"), status.get("podIP")
        if isinstance(node, str) and isinstance(text, str):
            ip = _v4(text)
            if ip:
                out.append((node, ip))
    return out


def template_labels(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The labels a Pod or a workload gives its pods (raw data, before validation)."""
    if data.get("kind") == "Pod":
        return _raw_meta(data)[2]
    spec = data.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    meta = template.get("metadata") if isinstance(template, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


def host_port_refusal(obj: KubeObject, spec_path: Path, config: ClusterConfig) -> None:
    """Refuse a `hostPort` where no portmap plugin serves it: Cilium (with kube-proxy
    replacement it serves hostPorts in its BPF datapath, bpf/lib/nodeport.h, and with
    `cni.chainingMode: portmap` through the plugin; neither is modelled)."""
    if config.cni is not Cni.CILIUM:
        return
    model: Any = obj.model  # a Pod or a workload (an EndpointSlice has no spec)
    spec = model.spec
    pod_spec = spec.template.spec if spec_path != ("spec",) else spec
    if pod_spec.host_network:
        return  # the node's own socket
    for ci, container in enumerate(pod_spec.containers):
        for pi, port in enumerate(container.ports):
            if port.host_port:
                raise obj.origin.error(
                    (*spec_path, "containers", ci, "ports", pi, "hostPort"),
                    f"hostPort {port.host_port} is not modelled with cni: cilium"
                    " (Cilium serves hostPorts in its BPF datapath with kube-proxy"
                    " replacement, or through the portmap plugin when chained);"
                    " allowed: hostPort with cni: flannel or calico, whose manifests"
                    " chain the CNI portmap plugin",
                )


def nodes_field_conflict(entries: Sequence[NodeEntry], nodes_loc: Loc) -> TopologyError:
    """The error for Node objects beside `cluster.nodes`."""
    return entries[0].fail(
        "",
        f"Node objects define the cluster's nodes, and cluster.nodes does too (at"
        f" {nodes_loc}): keep one of them",
    )
