"""What the rest of the simulator reads of the Docker model (`topology.docker`): one pod
record per container network namespace, the names Docker's embedded DNS answers, and
the cluster of a `runtime: docker` scenario."""

from __future__ import annotations

from topology.compose import ComposeProject
from topology.docker import LOOPBACK_IP, DockerContainer, DockerRuntime, build_runtime
from topology.model import (
    Cluster,
    ClusterConfig,
    Container,
    ContainerPort,
    Namespace,
    NodeSpec,
    Pod,
)


def networks_of(runtime: DockerRuntime, pod: Pod) -> tuple[str, ...]:
    """The user-defined networks of a container namespace (its owner's attachments)."""
    host = runtime.hosts[pod.node]
    owner = host.container(pod.name)
    assert owner is not None
    return tuple(
        a.network for a in owner.attachments if host.network(a.network).user_defined
    )


def lookup(runtime: DockerRuntime, pod: Pod, qname: str) -> tuple[str, ...]:
    """The addresses the embedded DNS answers for `qname` asked from `pod`'s namespace."""
    name = qname.rstrip(".").lower()
    host = runtime.hosts[pod.node]
    found: list[str] = []
    for network in networks_of(runtime, pod):
        for c in host.containers:
            for att in c.attachments:
                if att.network == network and name in (n.lower() for n in att.names):
                    found.append(str(att.ip))
    return tuple(dict.fromkeys(found))


def serves_dns(runtime: DockerRuntime, pod: Pod) -> bool:
    """Whether the embedded DNS (127.0.0.11) serves `pod`'s namespace."""
    return bool(networks_of(runtime, pod))


def pods_of(runtime: DockerRuntime, nodes: tuple[NodeSpec, ...]) -> dict[str, Pod]:
    """One pod record per network namespace: a container with its own (bridge, none) or
    the host's (`host`) namespace, holding every container that joins it
    (`network_mode: container:`/`service:`, the pause pattern), keyed `HOST/NAME`."""
    ips = {n.name: n.ip for n in nodes}
    pods: dict[str, Pod] = {}
    for host in runtime.hosts.values():
        members: dict[str, list[DockerContainer]] = {}
        for c in host.containers:
            members.setdefault(runtime.owner(host.name, c.name).name, []).append(c)
        for c in host.containers:
            if c.joins is not None:
                continue
            if c.network_mode == "host":
                ip = ips[host.name]
            elif c.attachments:
                ip = c.attachments[0].ip
            else:  # `none`: only lo
                ip = LOOPBACK_IP
            pod = Pod(
                host.name, c.name, host.name, ip,
                {"com.docker.compose.project": c.project,
                 "com.docker.compose.service": c.service},
                tuple(
                    Container(m.name, tuple(ContainerPort(p, proto) for p, proto in m.listens))
                    for m in members[c.name]
                ),
                host_network=c.network_mode == "host",
                owner=f"compose/{c.project}/{c.service}",
                loc=c.loc,
            )  # fmt: skip
            pods[pod.key] = pod
    return pods


def docker_cluster(
    config: ClusterConfig,
    projects: tuple[ComposeProject, ...],
    notes: list[str] | None = None,
) -> Cluster:
    """The cluster of a `runtime: docker` scenario: one namespace per host (no Kubernetes
    object), one pod record per container namespace, and the Docker model (its
    warnings added to `notes`)."""
    runtime = build_runtime(projects, tuple(n.name for n in config.nodes), notes)
    namespaces = {n.name: Namespace(n.name, {}, n.loc) for n in config.nodes}
    return Cluster(config, namespaces, pods_of(runtime, config.nodes), docker=runtime)
