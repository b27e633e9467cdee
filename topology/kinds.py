"""Which Kubernetes kinds a scenario models, and what happens to the others.

Real manifests (a chart's `helm template` output, a dump of a live cluster) hold many kinds.
Each object falls in one class:
- **modelled**: Namespace, Node, Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet,
  Service, NetworkPolicy (networking.k8s.io), EndpointSlice (discovery.k8s.io) are read
  and validated;
- **inert**: kinds that do not affect the network (ConfigMap, Secret, RBAC, storage,
  autoscaling, ...) are skipped, with ONE summary warning of counts by kind;
- **unmodelled**: kinds that do affect the network but are not modelled (Ingress, the
  Gateway API, vendor policies, Endpoints, Jobs, ...) are skipped with a warning
  naming each object, because the traffic they shape is not simulated;
- **unknown**: any other kind (a custom resource, or a modelled name in another API group:
  a Knative Service) is skipped with a warning naming it.
A Pod whose `status.phase` is `Succeeded` or `Failed` (a finished Job's pod, in a dump) holds
no address any more (kubelet tears its sandbox down), so it is skipped as inert too.
With `strict`, every skipped object is an error instead (but a finished pod: that it holds
no address is what the cluster says, so it stays in the summary).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from topology.kubeschema import API_VERSIONS
from topology.manifest import SUPPORTED_KINDS, Origin, describe_object
from topology.scenario import Manifest

NODE = "Node"
MODELLED_KINDS = SUPPORTED_KINDS

INERT_KINDS = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CSINode",
        "CSIStorageCapacity",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "ConfigMap",
        "ControllerRevision",
        "CustomResourceDefinition",
        "Event",
        "FlowSchema",
        "HorizontalPodAutoscaler",
        "Lease",
        "LimitRange",
        "MutatingWebhookConfiguration",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "PodTemplate",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "ResourceQuota",
        "Role",
        "RoleBinding",
        "RuntimeClass",
        "Secret",
        "ServiceAccount",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VerticalPodAutoscaler",
        "VolumeAttachment",
    }
)

# Kinds that shape traffic but are not simulated: what a reader should know about each.
UNMODELLED_KINDS: dict[str, str] = {
    "Ingress": "its HTTP routing is not modelled",
    "IngressClass": "ingress controllers are not modelled",
    "Gateway": "the Gateway API is not modelled",
    "GatewayClass": "the Gateway API is not modelled",
    "HTTPRoute": "the Gateway API is not modelled",
    "GRPCRoute": "the Gateway API is not modelled",
    "TCPRoute": "the Gateway API is not modelled",
    "TLSRoute": "the Gateway API is not modelled",
    "UDPRoute": "the Gateway API is not modelled",
    "ReferenceGrant": "the Gateway API is not modelled",
    "BackendTLSPolicy": "the Gateway API is not modelled",
    "CiliumNetworkPolicy": "Cilium policies are not modelled",
    "CiliumClusterwideNetworkPolicy": "Cilium policies are not modelled",
    "GlobalNetworkPolicy": "Calico policies are not modelled",
    "GlobalNetworkSet": "Calico policies are not modelled",
    "NetworkSet": "Calico policies are not modelled",
    "HostEndpoint": "Calico policies are not modelled",
    "AdminNetworkPolicy": "admin network policies are not modelled yet",
    "BaselineAdminNetworkPolicy": "admin network policies are not modelled yet",
    "ClusterNetworkPolicy": "cluster network policies are not modelled yet",
    "Endpoints": "endpoints are derived from Services and pods here (planned)",
    "ServiceCIDR": "serviceCIDR is cluster.serviceCIDR",
    "IPAddress": "ClusterIPs are allocated from cluster.serviceCIDR",
    "Job": "its pods are not created (pods of a dump load as plain Pods)",
    "CronJob": "its pods are not created (pods of a dump load as plain Pods)",
    "ReplicationController": "its pods are not created (use a ReplicaSet)",
}
# A modelled kind's name under another API group is that vendor's own kind.
_VENDOR_GROUPS = {
    "crd.projectcalico.org": "Calico",
    "projectcalico.org": "Calico",
}
_FINISHED_PHASES = ("Succeeded", "Failed")


def group_of(api_version: Any) -> str:
    """The API group of an apiVersion ("" for the core group).

    >>> group_of("networking.k8s.io/v1"), group_of("v1"), group_of(None)
    ('networking.k8s.io', '', '')
    """
    if not isinstance(api_version, str) or "/" not in api_version:
        return ""
    return api_version.split("/", 1)[0]


def classify(data: Mapping[str, Any]) -> str:
    """`modelled`, `inert`, `unmodelled` or `unknown` (what is not a string kind is
    `modelled`, so that validation explains it).

    >>> classify({"kind": "ConfigMap"}), classify({"kind": "Ingress"})
    ('inert', 'unmodelled')
    >>> classify({"kind": "NetworkPolicy", "apiVersion": "projectcalico.org/v3"})
    'unmodelled'
    >>> classify({"kind": "Widget", "apiVersion": "example.com/v1"})
    'unknown'
    """
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        return "modelled"
    if kind in MODELLED_KINDS:
        group = group_of(data.get("apiVersion"))
        if group in _VENDOR_GROUPS:
            return "unmodelled"
        if not _is_kubernetes_group(group):
            return "unknown"  # another project's kind of that name (a Knative Service)
        if kind == "Pod" and _phase(data) in _FINISHED_PHASES:
            return "inert"
        return "modelled"
    if kind in INERT_KINDS:
        return "inert"
    if kind in UNMODELLED_KINDS:
        return "unmodelled"
    return "unknown"


def _is_kubernetes_group(group: str) -> bool:
    """Whether an API group is Kubernetes' own (the core group, `apps`, `*.k8s.io`, ...):
    a modelled kind there with the wrong version is an error that names the right one.

    >>> _is_kubernetes_group("apps"), _is_kubernetes_group("serving.knative.dev")
    (True, False)
    """
    return "." not in group or group.endswith(".k8s.io")


def _phase(data: Mapping[str, Any]) -> Any:
    status = data.get("status")
    return status.get("phase") if isinstance(status, dict) else None


def _label(data: Mapping[str, Any]) -> str:
    """The kind as the summary counts it (`Pod (Succeeded)` for a finished pod)."""
    kind = str(data.get("kind"))
    return f"{kind} ({_phase(data)})" if kind == "Pod" else kind


class KindFilter:
    """Keeps the modelled objects of one scenario and collects the warnings about the rest."""

    def __init__(self, strict: bool, shown: str) -> None:
        self.strict = strict
        self.shown = shown
        self.inert: Counter[str] = Counter()
        self.notes: list[str] = []

    def keep(self, manifests: Iterable[Manifest]) -> list[Manifest]:
        out = []
        for manifest in manifests:
            verdict = classify(manifest.data)
            if verdict == "modelled":
                out.append(manifest)
            else:
                self.skip(manifest, verdict)
        return out

    def skip(self, manifest: Manifest, verdict: str) -> None:
        data = manifest.data
        origin = Origin(describe_object(data), manifest)
        kind = str(data.get("kind"))
        group = group_of(data.get("apiVersion"))
        if verdict == "inert":
            if kind == "Pod":
                reason = (
                    f"a finished pod (status.phase {_phase(data)}) holds no address;"
                    " it does not affect the network"
                )
            else:
                reason = f"kind {kind} does not affect the network"
        elif verdict == "unmodelled":
            vendor = _VENDOR_GROUPS.get(group)
            note = (
                f"{vendor} policies are not modelled"
                if vendor
                else UNMODELLED_KINDS[kind]
            )
            what = f"{kind} ({data.get('apiVersion')})" if vendor else kind
            reason = f"kind {what} affects the network but is not modelled ({note})"
        elif kind in MODELLED_KINDS:
            modelled = API_VERSIONS.get(kind, "v1")
            reason = (
                f"{kind} of apiVersion {data.get('apiVersion')!r} is another API's kind,"
                f" not modelled (the modelled {kind} is apiVersion {modelled})"
            )
        else:
            api = data.get("apiVersion")
            shown = "no apiVersion" if api is None else f"apiVersion {api!r}"
            reason = (
                f"unknown kind {kind!r} ({shown}) is not modelled (modelled:"
                f" {', '.join(MODELLED_KINDS)})"
            )
        finished = kind == "Pod" and verdict == "inert"
        if (
            self.strict and not finished
        ):  # a finished pod is modelled: it has no address
            raise origin.error(("kind",), f"{reason}; --strict rejects it")
        if verdict == "inert":
            self.inert[_label(data)] += 1
        else:
            self.notes.append(origin.warning(("kind",), f"{reason}; skipped"))

    def warnings(self) -> list[str]:
        """The summary line of inert objects, then one line per other skipped object."""
        out = []
        if self.inert:
            total = sum(self.inert.values())
            counts = ", ".join(f"{k} {n}" for k, n in sorted(self.inert.items()))
            words = "object that does" if total == 1 else "objects that do"
            out.append(
                f"{self.shown}: skipped {total} {words} not affect the network"
                f" ({counts})"
            )
        return out + self.notes


def expand_lists(
    data: Mapping[str, Any], path: tuple[str | int, ...] = ()
) -> Iterable[tuple[tuple[str | int, ...], Mapping[str, Any]]]:
    """The objects of `kind: List` and typed lists (`PodList`, ...), with their paths;
    any other object is itself.  Items of a typed list take its kind and apiVersion when
    they leave them out (as the API server's list responses do).

    >>> [p for p, _ in expand_lists({"kind": "List", "items": [{"kind": "Pod"}]})]
    [('items', 0)]
    """
    kind = data.get("kind")
    items = data.get("items")
    if not (isinstance(kind, str) and kind.endswith("List") and "items" in data):
        yield path, data
        return
    origin_kind = kind.removesuffix("List")
    if items is None:
        return
    if not isinstance(items, list):
        yield (*path, "items"), items  # not an object: the caller says so
        return
    for index, item in enumerate(items):
        where = (*path, "items", index)
        if not isinstance(item, dict):
            yield where, item
            continue
        if origin_kind and "kind" not in item:
            item = {"kind": origin_kind, **item}
            if "apiVersion" in data and "apiVersion" not in item:
                item["apiVersion"] = data["apiVersion"]
        yield from expand_lists(item, where)
