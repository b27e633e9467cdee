"""`kubectl apply` on a working copy of the cluster: create, replace, reconcile workloads.

Objects are processed Namespaces first, then Pods and workloads in file order, then Services,
then NetworkPolicies and the cluster-wide admin policies.  Each object's `${ip:ENDPOINT}` references are resolved just before it
is validated, against the cluster as it is at that moment.  A workload is reconciled: more
replicas add pods, fewer remove the highest ordinals, a changed template updates its pods in
place (keeping their addresses); a pod that may no longer run on its node is recreated.
ClusterIPs and nodePorts that Services ask for by value are kept from the automatic
allocation of the Services before them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from topology.adminpolicy import any_draft
from topology.endpoint import substitute
from topology.errors import TopologyError
from topology.kubeschema import WORKLOAD_KINDS
from topology.live import (
    PodStatus,
    adopted_workloads,
    controller_of,
    host_port_refusal,
    live_pod_ips,
    pod_status,
    template_labels,
)
from topology.manifest import (
    KubeObject,
    Origin,
    describe_object,
    has_refs,
    parse_manifest,
)
from topology.model import (
    ADMIN_KINDS,
    BUILTIN,
    AdminPolicy,
    EndpointSlice,
    Loc,
    Namespace,
    NodeSpec,
    Service,
    ServicePort,
    ServiceType,
    Workload,
)
from topology.normalize import PodTemplate, ServiceDraft, WorkloadDraft
from topology.scenario import Manifest
from topology.selectors import format_selector
from topology.state import ClusterState, PodCondition
from topology.workload import (
    COREDNS,
    DNS_LABELS,
    KUBE_SYSTEM,
    MAX_PODS,
    desired_pods,
    eligible,
    owner_ref,
)
from topology.yamlsource import PathPart

# Pods and workloads: 1
_RANK = {
    "Namespace": 0,
    "Service": 2,
    "EndpointSlice": 2,
    "NetworkPolicy": 3,
    **dict.fromkeys(ADMIN_KINDS, 3),
}


class Applier:
    """Applies manifests to a ClusterState, kubectl-apply style (see the module doc)."""

    def __init__(
        self, state: ClusterState, warnings: list[str], resolve_refs: bool
    ) -> None:
        self.state = state
        self.warnings = warnings
        self.resolve_refs = resolve_refs

    def run(self, manifests: Sequence[Manifest]) -> None:
        def rank(i: int) -> tuple[int, int]:
            kind = manifests[i].data.get("kind")
            return (_RANK.get(kind, 1) if isinstance(kind, str) else 0, i)

        self.hold_explicit(manifests)
        self.adopted = adopted_workloads(manifests)
        self.replace_builtin_dns(manifests)
        seen: dict[tuple[str, str], Loc] = {}
        for index in sorted(range(len(manifests)), key=rank):
            manifest = manifests[index]
            if self.resolve_refs and has_refs(manifest.data):
                manifest = self.resolve(manifest)
            obj = parse_manifest(manifest)
            ident = (obj.kind, obj.key)
            if ident in seen:
                raise obj.origin.error(
                    ("metadata", "name"),
                    f"duplicate {obj.kind} {obj.key} (first at {seen[ident]})",
                )
            seen[ident] = obj.origin.loc(())
            self.one(obj)

    def hold_explicit(self, manifests: Sequence[Manifest]) -> None:
        """Keep the clusterIPs and nodePorts that Services ask for by value from automatic
        allocation to the Services before them (lowest-free allocation would collide)."""
        for manifest in manifests:
            spec = manifest.data.get("spec")
            if manifest.data.get("kind") != "Service" or not isinstance(spec, dict):
                continue
            ip = spec.get("clusterIP")
            if isinstance(ip, str) and ip.count(".") == 3:
                with contextlib.suppress(ValueError):
                    self.state.service_ips.hold(IPv4Address(ip))
            ports = spec.get("ports")  # not validated yet: anything may be here
            for port in ports if isinstance(ports, list) else ():
                number = port.get("nodePort") if isinstance(port, dict) else None
                if isinstance(number, int) and not isinstance(number, bool):
                    self.state.node_ports.hold(number)
        for node, ip in live_pod_ips(manifests):
            if node in self.state.addresses:
                self.state.addresses[node].hold(ip)

    def replace_builtin_dns(self, manifests: Sequence[Manifest]) -> None:
        """Pods labelled k8s-app=kube-dns in kube-system (a dump's CoreDNS) replace the
        built-in `coredns-0`, so that kube-dns's endpoints are the cluster's own."""
        state, key = self.state, f"{KUBE_SYSTEM}/{COREDNS}"
        builtin = state.workloads.get(key)
        if builtin is None or builtin.loc != BUILTIN:
            return
        for manifest in manifests:
            data = manifest.data
            meta = data.get("metadata")
            if data.get("kind") not in ("Pod", *WORKLOAD_KINDS) or not isinstance(
                meta, dict
            ):
                continue
            labels = template_labels(data)
            if meta.get("namespace") == KUBE_SYSTEM and all(
                labels.get(k) == v for k, v in DNS_LABELS.items()
            ):
                owner = owner_ref(builtin.kind, builtin.name)
                for pod_key in [
                    k
                    for k, p in state.pods.items()
                    if p.owner == owner and p.namespace == KUBE_SYSTEM
                ]:
                    state.remove_pod(pod_key)
                del state.workloads[key]
                return

    def resolve(self, manifest: Manifest) -> Manifest:
        """The manifest with every `${ip:...}` replaced, as the cluster is now."""
        origin = Origin(describe_object(manifest.data), manifest)
        view = self.state.view()

        def walk(value: Any, path: tuple[PathPart, ...]) -> Any:
            if isinstance(value, str):
                try:
                    return substitute(value, view)
                except TopologyError as err:
                    raise origin.error(
                        path, f"cannot resolve {value!r}: {err.reason}"
                    ) from None
            if isinstance(value, dict):
                return {k: walk(v, (*path, k)) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, (*path, i)) for i, v in enumerate(value)]
            return value

        return Manifest(walk(manifest.data, ()), manifest.loc, manifest.lines)

    def one(self, obj: KubeObject) -> None:
        result = any_draft(obj, self.warnings)
        if isinstance(result, AdminPolicy):  # cluster-scoped: no namespace to check
            self.state.admin_policies[result.key] = result
            return
        if isinstance(result, Namespace):
            self.state.namespaces[obj.name] = result
            return
        if obj.namespace not in self.state.namespaces:
            raise obj.origin.error(
                ("metadata", "namespace"),
                f"namespace {obj.namespace!r} does not exist"
                f" (namespaces: {', '.join(self.state.namespaces)})",
            )
        if isinstance(result, PodTemplate):
            self.pod(obj, result)
        elif isinstance(result, WorkloadDraft):
            self.workload(obj, result)
        elif isinstance(result, ServiceDraft):
            self.service(obj, result)
        elif isinstance(result, EndpointSlice):
            self.state.endpoint_slices[obj.key] = result
        else:
            self.state.policies[obj.key] = result

    def place(
        self, obj: KubeObject, template: PodTemplate, spec: tuple[PathPart, ...]
    ) -> NodeSpec:
        state = self.state
        host_ports = [p for c in template.containers for p in c.ports if p.host_port]
        fits = None
        if host_ports and template.node_name is None:

            def fits(n: NodeSpec) -> bool:
                return state.host_port_holder("", n.name, template) is None

        node = state.scheduler.pick(template, fits)
        if node is not None:
            return node
        nodes = state.config.nodes
        listing = ", ".join(n.name for n in nodes)
        if (
            template.node_name is not None
            and state.scheduler.node(template.node_name) is None
        ):
            raise obj.origin.error(
                (*spec, "nodeName"),
                f"no node {template.node_name!r} (nodes: {listing})",
            )
        if fits is not None and state.scheduler.pick(template) is not None:
            shown = ", ".join(f"{p.host_port}/{p.protocol}" for p in host_ports)
            raise obj.origin.error(
                spec,
                f"no node has hostPort {shown} free for another pod (the scheduler's"
                f" NodePorts filter; nodes: {listing})",
            )
        shown = ",".join(f"{k}={v}" for k, v in template.node_selector.items())
        raise obj.origin.error(
            (*spec, "nodeSelector"), f"no node matches {shown} (nodes: {listing})"
        )

    def pod(self, obj: KubeObject, template: PodTemplate) -> None:
        state, loc = self.state, obj.origin.loc(())
        host_port_refusal(obj, ("spec",), state.config)
        live = pod_status(obj, self.warnings)
        controller = controller_of(obj)
        owner = None if controller is None else owner_ref(*controller)
        old = state.pods.get(obj.key)
        # podToEndpoint (k8s.io/endpointslice): a pod is terminating once its
        # deletionTimestamp is set.
        condition = PodCondition(
            live.ready, obj.model.metadata.deletion_timestamp is not None
        )
        if old is None:
            node = self.place(obj, template, ("spec",))
            ip = self.live_ip(obj, template, node, live)
            state.add_pod(
                obj.namespace,
                obj.name,
                node,
                template,
                owner,
                loc,
                obj.ref,
                ip,
                condition,
            )
            return
        if old.owner is not None and old.owner != owner:
            raise obj.origin.error(
                ("metadata", "name"),
                f"pod {obj.key} already exists, owned by {old.owner}",
            )
        changed = [
            what
            for what, differs in (
                ("containers", old.containers != template.containers),
                ("hostNetwork", old.host_network != template.host_network),
                ("nodeName", template.node_name not in (None, old.node)),
                ("status.podIP", live.pod_ip not in (None, old.ip)),
            )
            if differs
        ]
        if changed:
            raise obj.origin.error(
                ("spec",),
                f"pod updates may not change {', '.join(changed)} (delete the pod first)",
            )
        state.update_pod(obj.key, template, loc, condition)

    def live_ip(
        self, obj: KubeObject, template: PodTemplate, node: NodeSpec, live: PodStatus
    ) -> IPv4Address | None:
        """The pod address `status` records, checked against its node (None: allocate)."""
        if live.host_ip is not None and live.host_ip != node.ip:
            raise obj.origin.error(
                live.host_ip_path,
                f"{live.host_ip} is not the address of node {node.name!r} ({node.ip})",
            )
        ip = live.pod_ip
        if ip is None:
            return None
        if template.node_name is None:
            raise obj.origin.error(
                live.pod_ip_path,
                "a pod address needs spec.nodeName (the node the pod runs on)",
            )
        if template.host_network:
            if ip != node.ip:
                raise obj.origin.error(
                    live.pod_ip_path,
                    f"{ip} is not the address of node {node.name!r} ({node.ip}); a"
                    " hostNetwork pod has its node's address",
                )
            return None
        reason = self.state.claim_pod_ip(node, ip)
        if reason is not None:
            raise obj.origin.error(live.pod_ip_path, reason)
        return ip

    def workload(self, obj: KubeObject, wd: WorkloadDraft) -> None:
        state, loc = self.state, obj.origin.loc(())
        host_port_refusal(obj, ("spec", "template", "spec"), state.config)
        owner = owner_ref(obj.kind, obj.name)
        old = state.workloads.get(obj.key)
        if old is not None and old.kind != obj.kind:
            raise obj.origin.error(
                ("metadata", "name"),
                f"a {old.kind} named {obj.name!r} already exists in namespace"
                f" {obj.namespace!r} (workload pods are named NAME-ORDINAL, so workload"
                " names are shared across kinds here)",
            )
        if old is not None and old.selector != wd.selector:
            raise obj.origin.error(
                ("spec", "selector"),
                f"field is immutable (was {format_selector(old.selector)}; delete the"
                f" {obj.kind} first)",
            )
        self.check_replicas(obj, wd, old is not None)
        desired = desired_pods(obj.name, wd, state.config.nodes)
        if (obj.kind, obj.namespace, obj.name) in self.adopted:
            # A dump: the pods this workload owns are objects of the same manifests.
            state.workloads[obj.key] = Workload(
                obj.kind, obj.namespace, obj.name, len(desired), loc, wd.selector
            )
            return
        if old is not None:
            wanted = {name for name, _ in desired}
            stale = [
                p.key
                for p in state.pods.values()
                if p.owner == owner
                and p.namespace == obj.namespace
                and p.name not in wanted
            ]
            for key in reversed(stale):
                state.remove_pod(key)
        template = wd.template
        for name, fixed in desired:
            key = f"{obj.namespace}/{name}"
            current = state.pods.get(key)
            if current is not None:
                if current.owner != owner:
                    by = current.owner or "a Pod manifest"
                    raise obj.origin.error(
                        ("metadata", "name"),
                        f"pod {key} already exists (created by {by})",
                    )
                node = state.config.nodes[state.scheduler.index[current.node]]
                if (
                    eligible(template, node)
                    and current.host_network == template.host_network
                ):
                    state.update_pod(key, template, loc)
                    continue
                state.remove_pod(key)
            node = fixed or self.place(obj, template, ("spec", "template", "spec"))
            state.add_pod(obj.namespace, name, node, template, owner, loc, obj.ref)
        state.workloads[obj.key] = Workload(
            obj.kind, obj.namespace, obj.name, len(desired), loc, wd.selector
        )

    def check_replicas(self, obj: KubeObject, wd: WorkloadDraft, exists: bool) -> None:
        """Fail before creating anything when `replicas` pods cannot all exist."""
        if wd.replicas is None:
            return
        state, owner = self.state, owner_ref(obj.kind, obj.name)
        own = [
            p
            for p in (state.pods.values() if exists else ())
            if p.owner == owner and p.namespace == obj.namespace
        ]
        where = ("spec", "replicas")
        others = len(state.pods) - len(own)
        if others + wd.replicas > MAX_PODS:
            raise obj.origin.error(
                where,
                f"{wd.replicas} replicas do not fit: the cluster may hold {MAX_PODS} pods"
                f" and has {others} others",
            )
        if wd.template.host_network:
            return
        nodes = [n for n in state.config.nodes if eligible(wd.template, n)]
        if not nodes:
            return  # `place` says why no node fits
        free = sum(state.addresses[n.name].free for n in nodes)
        free += sum(1 for p in own if not p.host_network)
        if wd.replicas > free:
            listing = ", ".join(f"{n.name} {n.pod_cidr}" for n in nodes[:8])
            more = " ..." if len(nodes) > 8 else ""
            raise obj.origin.error(
                where,
                f"{wd.replicas} replicas do not fit: the podCIDRs of the nodes they may"
                f" run on have {free} free pod addresses ({listing}{more})",
            )

    def service(self, obj: KubeObject, sd: ServiceDraft) -> None:
        state = self.state
        old = state.services.get(obj.key)
        if old is not None:
            same = sd.headless == (old.cluster_ip is None) and sd.requested_ip in (
                None,
                old.cluster_ip,
            )
            if not same:
                raise obj.origin.error(
                    ("spec", "clusterIP"),
                    f"field is immutable (the Service has clusterIP {old.cluster_ip or 'None'};"
                    " delete it first)",
                )
            ip = old.cluster_ip
            for port in old.ports:
                if port.node_port is not None:
                    state.node_ports.release(port.node_port)
        elif sd.headless:
            ip = None
        elif sd.requested_ip is not None:
            reason = state.service_ips.claim(sd.requested_ip)
            if reason is not None:
                holder = next(
                    (
                        s.key
                        for s in state.services.values()
                        if s.cluster_ip == sd.requested_ip
                    ),
                    None,
                )
                if holder is not None:
                    reason = f"{sd.requested_ip} is already the clusterIP of Service {holder}"
                raise obj.origin.error(("spec", "clusterIP"), reason)
            ip = sd.requested_ip
        else:
            ip = state.service_ips.allocate()
            if ip is None:
                raise obj.origin.error(
                    (), f"serviceCIDR {state.config.service_cidr} is exhausted"
                )
        ports = self.node_ports(obj, sd.service, old)
        state.services[obj.key] = replace(sd.service, cluster_ip=ip, ports=ports)

    def node_ports(
        self, obj: KubeObject, svc: Service, old: Service | None
    ) -> tuple[ServicePort, ...]:
        if svc.type is ServiceType.CLUSTER_IP:
            return svc.ports
        pool = self.state.node_ports
        claimed: set[int] = set()
        for index, p in enumerate(svc.ports):
            if p.node_port is not None and p.node_port not in claimed:
                if not pool.claim(p.node_port):
                    raise obj.origin.error(
                        ("spec", "ports", index, "nodePort"),
                        f"{p.node_port} is already allocated",
                    )
                claimed.add(p.node_port)
        previous = {
            (p.port, p.protocol): p.node_port
            for p in (old.ports if old else ())
            if p.node_port
        }
        out = []
        for p in svc.ports:
            number = p.node_port
            if number is None:
                kept = previous.get((p.port, p.protocol))
                number = (
                    kept if kept is not None and pool.claim(kept) else pool.allocate()
                )
                if number is None:
                    raise obj.origin.error(
                        ("spec", "ports"), "no free NodePort left (30000-32767)"
                    )
            out.append(replace(p, node_port=number))
        return tuple(out)
