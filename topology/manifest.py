"""One Kubernetes manifest, checked against its kind's schema, with its origin for errors.

`parse_manifest` is the structural half of "validated as the API server would": a supported
kind in the right apiVersion, the schema of `topology.kubeschema`, a valid name.  The rest (the
object's own cross-field rules) is `topology.normalize`; what depends on the cluster
(namespaces, nodes, free addresses) is `topology.change`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from topology import kubeschema, names
from topology.adminschema import ADMIN_API_VERSIONS, ADMIN_MODELS, AdminModel
from topology.diagnostic import to_topology_error
from topology.errors import TopologyError
from topology.kubeschema import KubeModel
from topology.model import Loc
from topology.scenario import Manifest
from topology.yamlsource import LineMap, LineTree, PathPart, format_path, line_for

# Every kind read from manifests, with its one served apiVersion.
MODELS: dict[str, type[KubeModel | AdminModel]] = {
    **kubeschema.MODELS,
    **ADMIN_MODELS,
}
API_VERSIONS = {**kubeschema.API_VERSIONS, **ADMIN_API_VERSIONS}
SUPPORTED_KINDS = (*MODELS, "Node")  # Node objects: topology.live
# Kinds without a namespace (of those a scenario may hold; `kubectl api-resources`).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "Node",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "CustomResourceDefinition",
        "IngressClass",
        "GatewayClass",
        "CiliumClusterwideNetworkPolicy",
        "GlobalNetworkPolicy",
        "GlobalNetworkSet",
        "HostEndpoint",
        "AdminNetworkPolicy",
        "BaselineAdminNetworkPolicy",
        "ClusterNetworkPolicy",
    }
)
REF_PATTERN = re.compile(r"\$\{ip:([^}]*)\}")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an object was written, to turn a field path into an error or a warning."""

    ref: str  # "Service default/web", "Namespace x"
    manifest: Manifest

    def loc(self, parts: Sequence[PathPart]) -> Loc:
        if not parts:  # the object's own line: no need to flatten its line map
            return self.manifest.loc
        line = line_for(self.manifest.lines, parts) or self.manifest.loc.line
        return Loc(self.manifest.loc.file, line)

    def error(self, parts: Sequence[PathPart], reason: str) -> TopologyError:
        return TopologyError(
            reason, self.loc(parts), self.ref, format_path(parts) or None
        )

    def warning(self, parts: Sequence[PathPart], reason: str) -> str:
        return str(self.error(parts, reason))


@dataclass(frozen=True, slots=True)
class KubeObject:
    """A manifest that passed its kind's schema."""

    kind: str
    namespace: str  # "" for a Namespace
    name: str
    model: KubeModel | AdminModel
    origin: Origin

    @property
    def key(self) -> str:
        """`NS/NAME` (a Namespace: `NAME`), the key of `Cluster` mappings."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def ref(self) -> str:
        return self.origin.ref


def manifest_from(data: Mapping[str, Any], lines: LineTree, file: str) -> Manifest:
    """A Manifest record for one object read from YAML."""
    return Manifest(data, Loc(file, lines.line), LineMap(lines))


def has_refs(data: Any) -> bool:
    """Whether any string inside `data` holds an `${ip:...}` reference.

    >>> has_refs({"spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "${ip:x/a}/32"}}]}]}})
    True
    """
    # repr() walks nested plain data in C; a reference cannot be split by its escaping.
    return "${ip:" in repr(data)


def without_refs(data: Any, address: str = "192.0.2.1") -> Any:
    """A copy of `data` with every `${ip:...}` replaced by `address` (TEST-NET-1).

    What the schema checks does not depend on which address a reference resolves to, so
    an `apply` step's objects are checked at load time in this form.

    >>> without_refs({"cidr": "${ip:x/a}/32", "n": [1]})
    {'cidr': '192.0.2.1/32', 'n': [1]}
    """
    if isinstance(data, str):
        return REF_PATTERN.sub(address, data)
    if isinstance(data, dict):
        return {k: without_refs(v, address) for k, v in data.items()}
    if isinstance(data, list):
        return [without_refs(v, address) for v in data]
    return data


def describe_object(data: Mapping[str, Any]) -> str:
    """`Kind ns/name` as far as the raw data tells (for errors before validation).

    >>> describe_object({"kind": "Service", "metadata": {"name": "web"}})
    'Service default/web'
    """
    kind = data.get("kind")
    kind_text = kind if isinstance(kind, str) and kind else ""
    meta = data.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    if not isinstance(name, str):
        return kind_text or "object"
    if kind_text in CLUSTER_SCOPED:
        return f"{kind} {name}"
    namespace = meta.get("namespace")
    namespace = namespace if isinstance(namespace, str) and namespace else "default"
    return f"{kind_text} {namespace}/{name}".strip()


def parse_manifest(manifest: Manifest) -> KubeObject:
    """Check one object's kind, apiVersion, schema and name."""
    data = manifest.data
    origin = Origin(describe_object(data), manifest)
    kind = data.get("kind")
    if "kind" not in data:
        raise origin.error(
            (), f"missing required key 'kind' (supported: {', '.join(SUPPORTED_KINDS)})"
        )
    if not isinstance(kind, str) or kind not in MODELS:
        raise origin.error(
            ("kind",),
            f"kind {kind!r} is not supported (supported: {', '.join(SUPPORTED_KINDS)})",
        )
    api_version = data.get("apiVersion")
    if api_version is not None and api_version != API_VERSIONS[kind]:
        raise origin.error(
            ("apiVersion",),
            f"{kind} is not served by apiVersion {api_version!r}"
            f" (allowed: {API_VERSIONS[kind]})",
        )
    model_type = MODELS[kind]
    try:
        model = model_type.model_validate(data)
    except ValidationError as err:
        raise to_topology_error(err, model_type, origin.loc, obj=origin.ref) from None
    name = model.metadata.name
    check = {
        "Namespace": names.dns1123_label,
        "Service": names.dns1035_label,
    }.get(kind, names.dns1123_subdomain)
    reason = check(name)
    if reason is not None:
        raise origin.error(("metadata", "name"), reason)
    namespace = (
        ""
        if kind == "Namespace" or kind in CLUSTER_SCOPED
        else model.metadata.namespace or "default"
    )
    return KubeObject(kind, namespace, name, model, origin)
