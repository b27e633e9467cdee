"""A mutable working copy of a `Cluster`, used while one change is applied.

`ClusterState(cluster)` copies the object mappings and rebuilds the allocators (pod addresses
per node, ClusterIPs, NodePorts, pod counts per node) from what the cluster holds, so that a
change never mutates the cluster it started from; `freeze()` hands back the new `Cluster`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from ipaddress import IPv4Address

from topology.errors import TopologyError
from topology.ipam import PodAddresses, ServiceAddresses, node_ports
from topology.model import Cluster, Cni, ContainerPort, Loc, Namespace, NodeSpec, Pod
from topology.normalize import NAMESPACE_NAME_LABEL, PodTemplate
from topology.workload import MAX_PODS, Scheduler


@dataclass(frozen=True, slots=True)
class PodCondition:
    """What a Pod object's status and metadata say of its lifecycle: its `Ready`
    condition and whether it is being deleted (`metadata.deletionTimestamp`); its fields
    are those of `Pod`.  (A pod whose phase is Succeeded or Failed is skipped as inert:
    `topology.kinds`.)"""

    ready: bool = True
    terminating: bool = False


RUNNING = PodCondition()  # ready, not terminating


class ClusterState:
    """Object mappings plus allocators; every change goes through its methods."""

    def __init__(self, cluster: Cluster) -> None:
        self.config = cluster.config
        self.namespaces = dict(cluster.namespaces)
        self.pods = dict(cluster.pods)
        self.services = dict(cluster.services)
        self.policies = dict(cluster.policies)
        self.workloads = dict(cluster.workloads)
        self.endpoint_slices = dict(cluster.endpoint_slices)
        self.admin_policies = dict(cluster.admin_policies)
        nodes = self.config.nodes
        self.scheduler = Scheduler(nodes, [p.node for p in self.pods.values()])
        used: dict[str, list[IPv4Address]] = {n.name: [] for n in nodes}
        for pod in self.pods.values():
            if not pod.host_network:
                used[pod.node].append(pod.ip)
        self.addresses = {
            n.name: PodAddresses(
                n.pod_cidr, used[n.name], self.config, cluster.last_pod_ips.get(n.name)
            )
            for n in nodes
        }
        # Calico's IPAM hands out blocks; a node here has one (docs/model.md)
        calico = self.config.cni is Cni.CALICO
        self.range_name = "IPAM block" if calico else "podCIDR"
        self.service_ips = ServiceAddresses(
            self.config.service_cidr,
            [s.cluster_ip for s in self.services.values() if s.cluster_ip is not None],
        )
        self.node_ports = node_ports(
            {
                p.node_port
                for s in self.services.values()
                for p in s.ports
                if p.node_port
            }
        )

    def view(self) -> Cluster:
        """The cluster as it is now, sharing this state's mappings (read it, then drop it)."""
        return Cluster(
            self.config,
            self.namespaces,
            self.pods,
            self.services,
            self.policies,
            self.workloads,
            self.endpoint_slices,
            self.admin_policies,
            last_pod_ips={
                node: pool.last_given
                for node, pool in self.addresses.items()
                if pool.last_given is not None
            },
        )

    def freeze(self) -> Cluster:
        """The resulting cluster; the state must not be used afterwards."""
        return self.view()

    def ensure_namespace(self, name: str) -> None:
        if name not in self.namespaces:
            self.namespaces[name] = Namespace(name, {NAMESPACE_NAME_LABEL: name})

    def add_pod(
        self,
        namespace: str,
        name: str,
        node: NodeSpec,
        template: PodTemplate,
        owner: str | None,
        loc: Loc,
        obj: str | None = None,
        ip: IPv4Address | None = None,
        condition: PodCondition = RUNNING,
    ) -> Pod:
        """Place a pod on `node` with the next free address of its podCIDR
        (`PodAddresses.allocate`), or `ip`, claimed before with `claim_pod_ip`, in
        `condition`."""
        if len(self.pods) >= MAX_PODS:
            raise TopologyError(
                f"cannot create pod {namespace}/{name}: the cluster has {MAX_PODS} pods"
                f" (allowed: at most {MAX_PODS})",
                loc,
                obj,
            )
        self._check_host_ports(namespace, name, node, template, loc, obj)
        if template.host_network:
            ip = node.ip
        elif ip is None:
            pool = self.addresses[node.name]
            allocated = pool.allocate()
            if allocated is None:
                raise TopologyError(
                    f"cannot place pod {namespace}/{name}: {self.range_name}"
                    f" {node.pod_cidr} of node"
                    f" {node.name!r} is exhausted ({pool.capacity} pod addresses in use)",
                    loc,
                    obj,
                )
            ip = allocated
        assert ip is not None
        pod = Pod(
            namespace=namespace,
            name=name,
            node=node.name,
            ip=ip,
            labels=template.labels,
            containers=template.containers,
            host_network=template.host_network,
            owner=owner,
            **asdict(condition),
            loc=loc,
        )
        self.pods[pod.key] = pod
        self.scheduler.placed(node.name)
        return pod

    def host_port_holder(
        self, key: str, node: str, template: PodTemplate
    ) -> tuple[ContainerPort, Pod] | None:
        """A hostPort of `template` (port, protocol, hostIP) that another pod of `node`
        holds, and that pod; None when all are free.  hostIP unset (0.0.0.0) conflicts
        with any (the scheduler's NodePorts filter, kubelet's NodePorts admission)."""
        for port in (p for c in template.containers for p in c.ports):
            if port.host_port is None:
                continue
            for other in self.pods.values():
                if other.node != node or other.key == key:
                    continue
                for theirs in other.ports():
                    if (
                        theirs.host_port == port.host_port
                        and theirs.protocol is port.protocol
                        and (
                            None in (theirs.host_ip, port.host_ip)
                            or theirs.host_ip == port.host_ip
                        )
                    ):
                        return port, other
        return None

    def _check_host_ports(
        self,
        namespace: str,
        name: str,
        node: NodeSpec,
        template: PodTemplate,
        loc: Loc,
        obj: str | None,
    ) -> None:
        """Refuse a pod whose hostPort another pod of the node holds: kubelet admits no
        second pod on it (the NodePorts check)."""
        key = f"{namespace}/{name}"
        found = self.host_port_holder(key, node.name, template)
        if found is not None:
            port, other = found
            raise TopologyError(
                f"cannot place pod {key}: hostPort {port.host_port}/{port.protocol} is"
                f" already pod {other.key}'s on node {node.name!r} (kubelet admits one"
                " pod per hostIP, hostPort and protocol of a node: the NodePorts check)",
                loc,
                obj,
            )

    def claim_pod_ip(self, node: NodeSpec, ip: IPv4Address) -> str | None:
        """Take a pod address a live object records; the reason it cannot be, or None."""
        reason = self.addresses[node.name].claim(ip)
        if reason is None:
            return None
        holder = next(
            (p.key for p in self.pods.values() if p.ip == ip and not p.host_network),
            None,
        )
        if holder is not None:
            return f"{ip} is already the address of pod {holder}"
        return f"{reason} of node {node.name!r}"

    def update_pod(
        self,
        key: str,
        template: PodTemplate,
        loc: Loc,
        condition: PodCondition = RUNNING,
    ) -> None:
        """Change a pod's labels, containers and condition in place (address and node
        kept)."""
        pod = self.pods[key]
        self.pods[key] = replace(
            pod,
            labels=template.labels,
            containers=template.containers,
            loc=loc,
            **asdict(condition),
        )

    def remove_pod(self, key: str) -> Pod:
        pod = self.pods.pop(key)
        self.scheduler.removed(pod.node)
        if not pod.host_network:
            self.addresses[pod.node].release(pod.ip)
        return pod

    def remove_service(self, key: str) -> None:
        svc = self.services.pop(key)
        if svc.cluster_ip is not None:
            self.service_ips.release(svc.cluster_ip)
        for port in svc.ports:
            if port.node_port is not None:
                self.node_ports.release(port.node_port)

    def remove_namespace(self, name: str) -> None:
        """Delete a namespace and everything in it."""
        prefix = f"{name}/"
        for key in [k for k in self.pods if k.startswith(prefix)]:
            self.remove_pod(key)
        for key in [k for k in self.services if k.startswith(prefix)]:
            self.remove_service(key)
        for mapping in (self.policies, self.workloads):
            for key in [k for k in mapping if k.startswith(prefix)]:
                del mapping[key]
        del self.namespaces[name]
