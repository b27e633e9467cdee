"""Scheduling and workload pods: which pods a workload owns, their names, and their nodes.

The scheduler is deliberately simple and deterministic: `spec.nodeName` if set, else among the
nodes matching `spec.nodeSelector` the one with the fewest pods (every pod counts, kube-system
and hostNetwork ones included), ties broken by node order.  Affinity, taints and resources are
accepted without effect.  Workload pods are `<workload>-<ordinal>`; a DaemonSet's are
`<daemonset>-<node>`, one on every eligible node.

A cluster holds at most `MAX_PODS` pods, the limit of
kubernetes.io/docs/setup/best-practices/cluster-large ("No more than 150,000 total pods"):
`replicas` is an int32, and 2,000,000,000 replicas must fail at once rather than allocate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from topology.model import (
    Container,
    ContainerPort,
    LabelSelector,
    NodeSpec,
    Protocol,
    ServicePort,
)
from topology.normalize import PodTemplate, WorkloadDraft
from topology.selectors import matches_map

MAX_PODS = 150_000
COREDNS = "coredns"
KUBE_DNS = "kube-dns"
KUBE_SYSTEM = "kube-system"
DNS_LABELS = {"k8s-app": KUBE_DNS}

COREDNS_TEMPLATE = PodTemplate(
    labels=DNS_LABELS,
    containers=(
        Container(
            COREDNS,
            (
                ContainerPort(53, Protocol.UDP, "dns"),
                ContainerPort(53, Protocol.TCP, "dns-tcp"),
            ),
        ),
    ),
)
COREDNS_DRAFT = WorkloadDraft(LabelSelector(DNS_LABELS), COREDNS_TEMPLATE, 1)
KUBE_DNS_PORTS = (
    ServicePort(53, "dns", Protocol.UDP, "dns"),
    ServicePort(53, "dns-tcp", Protocol.TCP, "dns-tcp"),
)
KUBERNETES_PORTS = (ServicePort(443, 6443, Protocol.TCP, "https"),)


def owner_ref(kind: str, name: str) -> str:
    """The `Pod.owner` of a workload's pods.

    >>> owner_ref("Deployment", "httpd")
    'Deployment/httpd'
    """
    return f"{kind}/{name}"


def eligible(template: PodTemplate, node: NodeSpec) -> bool:
    """Whether a pod from `template` may run on `node` (nodeName, nodeSelector)."""
    if template.node_name is not None and template.node_name != node.name:
        return False
    return matches_map(template.node_selector, node.labels)


def desired_pods(
    name: str, draft: WorkloadDraft, nodes: Sequence[NodeSpec]
) -> list[tuple[str, NodeSpec | None]]:
    """The pods a workload wants: (pod name, fixed node or None to schedule), in order.

    >>> draft = WorkloadDraft(LabelSelector({"a": "b"}), PodTemplate({"a": "b"}, ()), 2)
    >>> [n for n, _ in desired_pods("web", draft, ())]
    ['web-0', 'web-1']
    """
    if draft.replicas is None:
        return [(f"{name}-{n.name}", n) for n in nodes if eligible(draft.template, n)]
    start = draft.ordinal_start
    return [(f"{name}-{i}", None) for i in range(start, start + draft.replicas)]


class Scheduler:
    """Pod counts per node, and the choice of the least loaded eligible node."""

    __slots__ = ("counts", "index", "nodes")

    def __init__(
        self, nodes: Sequence[NodeSpec], pod_nodes: Sequence[str] = ()
    ) -> None:
        self.nodes = tuple(nodes)
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.counts = [0] * len(self.nodes)
        for node in pod_nodes:
            self.counts[self.index[node]] += 1

    def node(self, name: str) -> NodeSpec | None:
        i = self.index.get(name)
        return None if i is None else self.nodes[i]

    def pick(
        self, template: PodTemplate, fits: Callable[[NodeSpec], bool] | None = None
    ) -> NodeSpec | None:
        """The node for a new pod (None when no node is eligible); `fits`: the
        scheduler's other filters (NodePorts: the pod's hostPorts free on the node)."""
        if template.node_name is not None:
            node = self.node(template.node_name)
            return node if node is not None and eligible(template, node) else None
        if not template.node_selector and fits is None:
            return self.nodes[min(range(len(self.nodes)), key=self.counts.__getitem__)]
        candidates = [
            i
            for i, n in enumerate(self.nodes)
            if eligible(template, n) and (fits is None or fits(n))
        ]
        if not candidates:
            return None
        return self.nodes[min(candidates, key=self.counts.__getitem__)]

    def placed(self, node: str) -> None:
        self.counts[self.index[node]] += 1

    def removed(self, node: str) -> None:
        self.counts[self.index[node]] -= 1
