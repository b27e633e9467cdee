"""`dataplane exposure`: who can open a connection to each workload, and what that
includes that does not exist yet.

For every workload (the pods of one Deployment, StatefulSet, ... or a bare pod) and each of
its ports, the ingress side of the NetworkPolicy decision (`dataplane.netpol`, the code
the walk runs) is asked about three parties that are not in the cluster:

- `any namespace`: a pod without labels in a namespace created tomorrow;
- `new pod here`: a pod without labels in each namespace that exists, the workload's own
  first (what a `podSelector: {}` or a broad `namespaceSelector` lets in);
- `outside`: an address outside the node, pod and service ranges (TEST-NET-3,
  203.0.113.0/24, RFC 5737), as a client on the internet would arrive when not masqueraded.

and the rules that admit by label are listed as the pods they would admit, existing or
not (`pods role=frontend in default`, `any pod in namespaces project=dev`).  A workload
that no policy isolates for ingress is open to all of it.  The source's own egress policy
is not part of the answer: a new pod has none, and an outside client is not a pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from dataplane.netpol import Direction, Party, judge, prepare
from dataplane.netpol_index import index_of
from topology.model import Cluster, Pod, PolicyPeer, Protocol
from topology.selectors import format_selector, is_empty

OUTSIDE = IPv4Network("203.0.113.0/24")  # TEST-NET-3 (RFC 5737)
NEW_NAMESPACE = "exposure-new-namespace"


@dataclass(frozen=True, slots=True)
class Exposure:
    workload: str  # `NS/NAME (Kind)` of the owning workload, or the pod's `NS/NAME`
    port: int
    protocol: Protocol
    isolated: bool
    any_namespace: bool
    outside: bool
    new_pod_in: tuple[str, ...]  # namespaces where a new unlabeled pod is admitted
    admitted: tuple[str, ...]  # who the rules admit, in words

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "port": self.port,
            "protocol": self.protocol.value,
            "isolated": self.isolated,
            "anyNamespace": self.any_namespace,
            "outside": self.outside,
            "newPodIn": list(self.new_pod_in),
            "admitted": list(self.admitted),
        }


def _peer_words(namespace: str, peer: PolicyPeer) -> str:
    if peer.ip_block is not None:
        out = f"ipBlock {peer.ip_block.cidr}"
        if peer.ip_block.except_:
            out += " except " + ", ".join(str(e) for e in peer.ip_block.except_)
        return out
    pods = peer.pod_selector
    spaces = peer.namespace_selector
    who = (
        "any pod" if pods is None or is_empty(pods) else f"pods {format_selector(pods)}"
    )
    if spaces is None:
        return f"{who} in {namespace}"
    if is_empty(spaces):
        return f"{who} in any namespace"
    return f"{who} in namespaces {format_selector(spaces)}"


def _free_ip(cluster: Cluster, net: IPv4Network) -> str:
    """An address of `net` that no pod, node or external holds (for a made-up party)."""
    taken = {str(p.ip) for p in cluster.pods.values()}
    taken |= {str(n.ip) for n in cluster.config.nodes}
    for host in reversed(list(net.hosts())):
        if str(host) not in taken:
            return str(host)
    return str(net.network_address)


def _workloads(cluster: Cluster) -> dict[str, Pod]:
    """One pod for each workload (its pods share labels and ports), bare pods alone."""
    out: dict[str, Pod] = {}
    for pod in sorted(cluster.pods.values(), key=lambda p: p.key):
        if pod.host_network:
            continue  # a node's traffic: policies never select it
        if pod.owner:  # "Deployment/web" -> "default/web (Deployment)"
            kind, _, name = pod.owner.partition("/")
            key = f"{pod.namespace}/{name} ({kind})"
        else:
            key = pod.key
        out.setdefault(key, pod)
    return out


def exposure(cluster: Cluster) -> list[Exposure]:
    """The exposure of every workload port, by workload then port."""
    index = index_of(cluster)
    nodes = cluster.config.nodes
    pod_net = nodes[0].pod_cidr if nodes else IPv4Network("10.0.1.0/24")
    new_ip = _free_ip(cluster, pod_net)

    def party(namespace: str, labels: dict[str, str]) -> Party:
        pod = Pod(namespace, "exposure-new-pod", "", IPv4Address(new_ip))
        return Party(new_ip, int(IPv4Address(new_ip)), pod=pod, namespace_labels=labels)

    elsewhere = party(NEW_NAMESPACE, {"kubernetes.io/metadata.name": NEW_NAMESPACE})
    out_ip = str(OUTSIDE.network_address + 1)
    outside = Party(out_ip, int(IPv4Address(out_ip)))
    found: list[Exposure] = []
    for key, pod in _workloads(cluster).items():
        own = [
            pod.namespace,
            *sorted(n for n in cluster.namespaces if n != pod.namespace),
        ]
        for cp in pod.ports():
            side = prepare(index, Direction.INGRESS, pod, cp.port, cp.protocol)
            new_in = tuple(
                ns
                for ns in own
                if judge(
                    index, side, party(ns, dict(cluster.namespaces[ns].labels))
                ).allowed
            )
            words: list[str] = []
            for pol, _ri, rule, _miss in side.steps:
                if rule is None:
                    continue
                if not rule.peers:
                    words.append(f"everyone ({pol.key})")
                words += [
                    f"{_peer_words(pol.namespace, p)} ({pol.key})" for p in rule.peers
                ]
            found.append(
                Exposure(
                    key,
                    cp.port,
                    cp.protocol,
                    bool(side.isolating),
                    judge(index, side, elsewhere).allowed,
                    judge(index, side, outside).allowed,
                    new_in,
                    tuple(dict.fromkeys(words)) if side.isolating else ("everyone",),
                )
            )
    return found


def text(rows: list[Exposure]) -> list[str]:
    """One line per workload port: `NS/WORKLOAD PORT/PROTO: ...`."""
    lines = []
    for r in rows:
        flags = [
            "not isolated" if not r.isolated else "isolated",
            f"any namespace: {'yes' if r.any_namespace else 'no'}",
            f"outside: {'yes' if r.outside else 'no'}",
            "new pod in: " + (", ".join(r.new_pod_in) or "none"),
        ]
        head = f"{r.workload} {r.port}/{r.protocol.value}: " + "; ".join(flags)
        lines.append(
            head + ("; admits: " + ", ".join(r.admitted) if r.admitted else "")
        )
    return lines


__all__ = ["Exposure", "exposure", "text"]
