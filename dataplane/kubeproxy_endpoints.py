"""A Service port's endpoints, as the EndpointSlice controller writes them and kube-proxy
sorts them.

The EndpointSlice controller (pkg/controller/endpointslice; `podToEndpoint` and
`ShouldPodBeInEndpoints` in k8s.io/endpointslice): every pod of the Service's namespace whose
labels match its selector is an endpoint (a pod whose phase is Succeeded or Failed is not
one: it is skipped as inert, `topology.kinds`), with

    serving     = the pod's Ready condition
    terminating = metadata.deletionTimestamp is set
    ready       = spec.publishNotReadyAddresses or (serving and not terminating)

its node (`nodeName`) and its node's `topology.kubernetes.io/zone` label (`zone`).  With
`trafficDistribution` PreferClose, PreferSameZone or PreferSameNode the controller hints every
ready endpoint for its own zone (`hints.forZones`), and with PreferSameNode for its own node
too (`hints.forNodes`) (k8s.io/endpointslice/trafficdist, `preferCloseHeuristic`).  A Service
with EndpointSlices in the manifests uses those instead, conditions and hints as written.

kube-proxy (pkg/proxy/topology.go, `CategorizeEndpoints`), for the node it runs on:
- the Cluster-policy endpoints are the ready ones, narrowed by topology when the hints are
  usable (`topologyModeFromHints`): every ready endpoint has node hints and one is hinted for
  this node (PreferSameNode: those hinted for it), else every ready endpoint has zone hints
  and one is hinted for this node's zone (PreferSameZone: those hinted for it), else none;
  no ready endpoint at all: the serving-terminating ones, topology ignored (KEP-1672);
- the Local-policy endpoints are the ready ones on this node, else its serving-terminating
  ones;
- a Service port "has endpoints" when any is ready or serving-terminating anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from topology.model import Cluster, EndpointSlice, Pod, Service, ServicePort
from topology.selectors import matches_map

ZONE_LABEL = "topology.kubernetes.io/zone"  # v1.LabelTopologyZone
SAME_NODE = "PreferSameNode"
SAME_ZONE = "PreferSameZone"


@dataclass(frozen=True, slots=True)
class Backend:
    """One endpoint of a Service port: its address, the port its targetPort names, the node
    it is local to, its EndpointSlice conditions and its topology (zone, hints)."""

    key: str  # NS/POD, or the address of an EndpointSlice endpoint that is no pod
    ip: str
    port: int
    node: str | None
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    zone: str | None = None
    for_zones: tuple[str, ...] = ()
    for_nodes: tuple[str, ...] = ()

    @property
    def condition(self) -> str:
        """`ready`, `serving and terminating`, or what keeps it from being used."""
        if self.ready:
            return "ready"
        if self.serving:
            return "serving and terminating" if self.terminating else "serving"
        return "terminating, not serving" if self.terminating else "not ready"


@dataclass(frozen=True, slots=True)
class Topology:
    """The endpoints Cluster-policy traffic uses on one node, and why."""

    endpoints: tuple[Backend, ...]
    mode: str  # "", PreferSameZone or PreferSameNode
    why: str  # the scope as the trace words it


def usable(backends: tuple[Backend, ...]) -> tuple[Backend, ...]:
    """The endpoints traffic may use: the ready ones; when none is ready, the
    serving-terminating ones (KEP-1672)."""
    ready = tuple(b for b in backends if b.ready)
    return ready or tuple(b for b in backends if b.serving and b.terminating)


def topology_mode(every: tuple[Backend, ...], node: str, zone: str) -> tuple[str, str]:
    """`topologyModeFromHints`: the topology mode on `node` (in `zone`, '' when the node
    has no zone label) and, when the hints are not used, why (kube-proxy's log line)."""
    ready = [b for b in every if b.ready]
    if not ready or not any(b.for_zones or b.for_nodes for b in ready):
        return "", ""
    if all(b.for_nodes for b in ready) and any(node in b.for_nodes for b in ready):
        return SAME_NODE, ""
    if not all(b.for_zones for b in ready):
        return "", "one or more endpoints is missing a zone hint"
    if any(zone in b.for_zones for b in ready):
        return SAME_ZONE, ""
    if not zone:
        return "", f"node {node} is missing label {ZONE_LABEL}"
    return "", f"no hints were provided for zone {zone}"


def cluster_endpoints(every: tuple[Backend, ...], node: str, zone: str) -> Topology:
    """The Cluster-policy endpoints on `node` (module docstring)."""
    mode, ignored = topology_mode(every, node, zone)
    if mode == SAME_NODE:
        hinted = tuple(b for b in every if b.ready and node in b.for_nodes)
        return Topology(hinted, mode, f"hinted for node {node} ({mode})")
    if mode == SAME_ZONE:
        hinted = tuple(b for b in every if b.ready and zone in b.for_zones)
        why = f"hinted for zone {zone} ({mode}: {node} is in {zone})"
        return Topology(hinted, mode, why)
    why = "cluster-wide"
    if ignored:
        why += f" (topology hints ignored: {ignored})"
    return Topology(usable(every), "", why)


def _is_ready_endpoint(service: Service, pod: Pod) -> bool:
    return service.publish_not_ready_addresses or (pod.ready and not pod.terminating)


def _endpoint_pods(cluster: Cluster, service: Service) -> tuple[Pod, ...]:
    """Every pod the Service selects, by key."""
    selector = service.selector
    if selector is None:
        return ()
    found = (
        pod
        for pod in cluster.pods.values()
        if pod.namespace == service.namespace and matches_map(selector, pod.labels)
    )
    return tuple(sorted(found, key=lambda p: p.key))


def selected_pods(cluster: Cluster, service: Service) -> tuple[Pod, ...]:
    """The pods whose endpoints are ready (what a headless Service's DNS name answers),
    sorted by pod key (none without a selector)."""
    return tuple(
        p for p in _endpoint_pods(cluster, service) if _is_ready_endpoint(service, p)
    )


def endpoints(
    cluster: Cluster, service: Service, port: ServicePort
) -> tuple[Backend, ...]:
    """The endpoints of one Service port, sorted by key: those of its EndpointSlices when
    the manifests hold any (`slice_endpoints`), else the selected pods (module docstring)."""
    slices = [
        s
        for s in cluster.endpoint_slices.values()
        if s.namespace == service.namespace and s.service == service.name
    ]
    if slices:
        return slice_endpoints(cluster, slices, port)
    zones = {n.name: n.labels.get(ZONE_LABEL) or None for n in cluster.nodes}
    close = service.traffic_distribution is not None
    out: list[Backend] = []
    for pod in _endpoint_pods(cluster, service):
        if isinstance(port.target_port, str):
            number = pod.named_port(port.target_port, port.protocol)
            if number is None:
                continue  # this pod has no containerPort of that name
        else:
            number = port.target_port
        ready = _is_ready_endpoint(service, pod)
        zone = zones.get(pod.node)
        hinted = close and ready
        out.append(
            Backend(
                pod.key,
                str(pod.ip),
                number,
                pod.node,
                ready,
                pod.ready,
                pod.terminating,
                zone,
                (zone,) if hinted and zone else (),
                (pod.node,)
                if hinted and service.traffic_distribution == SAME_NODE
                else (),
            )
        )
    return tuple(out)


def slice_endpoints(
    cluster: Cluster, slices: list[EndpointSlice], port: ServicePort
) -> tuple[Backend, ...]:
    """The endpoints EndpointSlices give a Service port (pkg/proxy/endpointslicecache.go):
    each slice port whose name is the Service port's name ('' for an unnamed one) and whose
    protocol is its protocol, with every endpoint of that slice, once per address and port;
    an endpoint is named by the pod that holds its address, else by the address."""
    owner = {str(p.ip): p.key for p in cluster.pods.values() if not p.host_network}
    found: dict[tuple[str, int], Backend] = {}
    for sl in slices:
        for sp in sl.ports:
            if sp.name != (port.name or "") or sp.protocol is not port.protocol:
                continue
            for e in sl.endpoints:
                ip = str(e.ip)
                found.setdefault(
                    (ip, sp.port),
                    Backend(
                        owner.get(ip, ip),
                        ip,
                        sp.port,
                        e.node,
                        e.ready,
                        e.serving,
                        e.terminating,
                        e.zone,
                        e.for_zones or (),
                        e.for_nodes or (),
                    ),
                )
    return tuple(sorted(found.values(), key=lambda b: (b.key, b.port)))
