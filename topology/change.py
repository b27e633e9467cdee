"""Changes to a cluster, as pure functions returning a new `Cluster`.

`apply` has `kubectl apply` semantics: new objects are created, an object of the same kind,
namespace and name is replaced (`topology.applier` has the details).  `delete` and `label`
are the steps of the same names; `build_cluster` makes a scenario's cluster before step 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from topology import names
from topology.applier import Applier
from topology.errors import TopologyError
from topology.ipam import dns_ip, kubernetes_ip
from topology.live import live_pod_ips, owns
from topology.model import (
    BUILTIN,
    Cluster,
    ClusterConfig,
    Loc,
    Service,
    ServicePort,
    ServiceType,
    Workload,
)
from topology.normalize import NAMESPACE_NAME_LABEL
from topology.scenario import LabelStep, Manifest
from topology.state import ClusterState
from topology.workload import (
    COREDNS,
    COREDNS_DRAFT,
    DNS_LABELS,
    KUBE_DNS,
    KUBE_DNS_PORTS,
    KUBE_SYSTEM,
    KUBERNETES_PORTS,
    owner_ref,
)

PROTECTED_NAMESPACES = ("default", KUBE_SYSTEM)
REF_KINDS = {
    "namespace": "Namespace",
    "ns": "Namespace",
    "pod": "Pod",
    "po": "Pod",
    "service": "Service",
    "svc": "Service",
    "deployment": "Deployment",
    "deploy": "Deployment",
    "replicaset": "ReplicaSet",
    "rs": "ReplicaSet",
    "statefulset": "StatefulSet",
    "sts": "StatefulSet",
    "daemonset": "DaemonSet",
    "ds": "DaemonSet",
    "networkpolicy": "NetworkPolicy",
    "netpol": "NetworkPolicy",
    "endpointslice": "EndpointSlice",
}
_REF_FORMS = (
    "namespace/NAME or KIND/NS/NAME, KIND one of namespace, pod, service, deployment,"
    " replicaset, statefulset, daemonset, networkpolicy, endpointslice"
)


def initial_cluster(
    config: ClusterConfig, recorded: Iterable[tuple[str, IPv4Address]] = ()
) -> Cluster:
    """The cluster before any manifest: namespaces, `default/kubernetes`, and kube-dns.

    CoreDNS (`kube-system/coredns-0`, a one-replica Deployment) is scheduled before anything
    else, so on the default nodes it lands on node-1 at 10.0.1.2.  It avoids the pod
    addresses that the manifests record (`recorded`: node, `status.podIP`).
    """
    state = ClusterState(Cluster(config, {}, {}))
    for node_name, ip in recorded:
        if node_name in state.addresses:
            state.addresses[node_name].hold(ip)
    state.ensure_namespace("default")
    state.ensure_namespace(KUBE_SYSTEM)
    _builtin_service(
        state,
        "default",
        "kubernetes",
        kubernetes_ip(config.service_cidr),
        KUBERNETES_PORTS,
        None,
    )
    if config.dns:
        node = state.scheduler.pick(COREDNS_DRAFT.template)
        assert node is not None  # an unconstrained pod fits any node
        owner = owner_ref("Deployment", COREDNS)
        state.add_pod(
            KUBE_SYSTEM, f"{COREDNS}-0", node, COREDNS_DRAFT.template, owner, BUILTIN
        )
        state.workloads[f"{KUBE_SYSTEM}/{COREDNS}"] = Workload(
            "Deployment", KUBE_SYSTEM, COREDNS, 1, BUILTIN, COREDNS_DRAFT.selector
        )
        _builtin_service(
            state,
            KUBE_SYSTEM,
            KUBE_DNS,
            dns_ip(config.service_cidr),
            KUBE_DNS_PORTS,
            DNS_LABELS,
        )
    return state.freeze()


def _builtin_service(
    state: ClusterState,
    namespace: str,
    name: str,
    ip: IPv4Address,
    ports: tuple[ServicePort, ...],
    selector: dict[str, str] | None,
) -> None:
    reason = state.service_ips.claim(ip)
    assert reason is None, reason
    svc = Service(namespace, name, ServiceType.CLUSTER_IP, ip, ports, selector)
    state.services[svc.key] = svc


def build_cluster(
    config: ClusterConfig, manifests: Sequence[Manifest]
) -> tuple[Cluster, list[str]]:
    """The cluster of a scenario before step 1, and the warnings validation produced."""
    return apply(initial_cluster(config, live_pod_ips(manifests)), manifests)


def apply(
    cluster: Cluster, manifests: Sequence[Manifest], resolve_refs: bool = True
) -> tuple[Cluster, list[str]]:
    """`kubectl apply` of `manifests` to `cluster`: the new cluster and the warnings."""
    warnings: list[str] = []
    state = ClusterState(cluster)
    Applier(state, warnings, resolve_refs).run(manifests)
    return state.freeze(), warnings


def parse_ref(text: str, loc: Loc | None = None) -> tuple[str, str, str]:
    """A `delete` reference as (Kind, namespace, name); namespace is "" for a Namespace.

    >>> parse_ref("networkpolicy/default/test-np")
    ('NetworkPolicy', 'default', 'test-np')
    >>> parse_ref("Namespace/x")
    ('Namespace', '', 'x')
    """
    parts = text.split("/")
    kind = REF_KINDS.get(parts[0].lower())
    if kind is None:
        raise TopologyError(
            f"delete {text!r}: unknown kind {parts[0]!r} (allowed: {_REF_FORMS})", loc
        )
    want = 2 if kind == "Namespace" else 3
    if len(parts) != want or not all(parts):
        form = "namespace/NAME" if kind == "Namespace" else f"{parts[0]}/NS/NAME"
        raise TopologyError(f"delete {text!r}: expected {form}", loc)
    return (kind, "", parts[1]) if kind == "Namespace" else (kind, parts[1], parts[2])


def delete(cluster: Cluster, refs: Sequence[str], loc: Loc | None = None) -> Cluster:
    """The cluster without the referenced objects (a namespace: with everything in it)."""
    state = ClusterState(cluster)
    for ref in refs:
        kind, namespace, name = parse_ref(ref, loc)
        if kind == "Namespace":
            if name not in state.namespaces:
                raise TopologyError(
                    f"delete {ref!r}: no namespace {name!r} ({_namespaces(state.namespaces)})",
                    loc,
                )
            if name in PROTECTED_NAMESPACES:
                raise TopologyError(
                    f"delete {ref!r}: namespace {name!r} may not be deleted", loc
                )
            state.remove_namespace(name)
            continue
        key = f"{namespace}/{name}"
        if namespace not in state.namespaces:
            raise TopologyError(
                f"delete {ref!r}: no namespace {namespace!r}"
                f" ({_namespaces(state.namespaces)})",
                loc,
            )
        if kind == "Pod" and key in state.pods:
            state.remove_pod(key)
        elif kind == "Service" and key in state.services:
            state.remove_service(key)
        elif kind == "NetworkPolicy" and key in state.policies:
            del state.policies[key]
        elif kind == "EndpointSlice" and key in state.endpoint_slices:
            del state.endpoint_slices[key]
        elif key in state.workloads and state.workloads[key].kind == kind:
            # a dump's Deployment owns its pods through their ReplicaSet (topology.live)
            owners = {
                k: owns(kind, name, p)
                for k, p in state.pods.items()
                if p.namespace == namespace
            }
            for pod_key, through in owners.items():
                if through is not None:
                    state.remove_pod(pod_key)
            for through in set(owners.values()) - {None, owner_ref(kind, name)}:
                rs_kind, _, rs_name = str(through).partition("/")
                rs = state.workloads.get(f"{namespace}/{rs_name}")
                if rs is not None and rs.kind == rs_kind:
                    del state.workloads[rs.key]
            del state.workloads[key]
        else:
            raise TopologyError(
                f"delete {ref!r}: {_missing(state, kind, namespace, name)}", loc
            )
    return state.freeze()


def _missing(state: ClusterState, kind: str, namespace: str, name: str) -> str:
    objects: dict[str, Any] = {
        "Pod": state.pods,
        "Service": state.services,
        "NetworkPolicy": state.policies,
        "EndpointSlice": state.endpoint_slices,
    }
    if kind in objects:
        here = [v.name for v in objects[kind].values() if v.namespace == namespace]
    else:
        here = [
            w.name
            for w in state.workloads.values()
            if w.kind == kind and w.namespace == namespace
        ]
    word = kind.lower()
    listing = (
        f"{word}s: {', '.join(here[:12])}" + (" ..." if len(here) > 12 else "")
        if here
        else f"no {word}s there"
    )
    return f"no {word} {name!r} in namespace {namespace!r} ({listing})"


def label(cluster: Cluster, step: LabelStep) -> Cluster:
    """The cluster with a pod's or a namespace's labels set and removed (`kubectl label`)."""
    loc = step.loc
    for key, value in step.set.items():
        reason = names.label_key(key) or names.label_value(value)
        if reason is not None:
            raise TopologyError(reason, loc, None, "label.set")
    if step.kind == "namespace":
        if NAMESPACE_NAME_LABEL in step.set or NAMESPACE_NAME_LABEL in step.remove:
            raise TopologyError(
                f"{NAMESPACE_NAME_LABEL} is managed by Kubernetes and always equals"
                " the namespace name",
                loc,
            )
        ns = cluster.namespaces.get(step.target)
        if ns is None:
            raise TopologyError(
                f"label: no namespace {step.target!r} ({_namespaces(cluster.namespaces)})",
                loc,
            )
        labels = _relabel(ns.labels, step)
        return replace(
            cluster,
            namespaces={**cluster.namespaces, step.target: replace(ns, labels=labels)},
        )
    if step.kind != "pod":
        raise TopologyError(
            f"label: cannot label a {step.kind!r} (allowed: pod, namespace)", loc
        )
    namespace, _, name = step.target.partition("/")
    pod = cluster.pods.get(step.target)
    if pod is None:
        here = [p.name for p in cluster.pods.values() if p.namespace == namespace]
        raise TopologyError(
            f"label: no pod {name!r} in namespace {namespace!r}"
            f" (pods: {', '.join(here) or 'none'})",
            loc,
        )
    return replace(
        cluster,
        pods={
            **cluster.pods,
            step.target: replace(pod, labels=_relabel(pod.labels, step)),
        },
    )


def _namespaces(namespaces: Any) -> str:
    return "namespaces: " + ", ".join(namespaces)


def _relabel(labels: Any, step: LabelStep) -> dict[str, str]:
    out = {k: v for k, v in labels.items() if k not in step.remove}
    out.update(step.set)
    return out
