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

The admin tiers (AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy)
are part of the same decision: `tiers` says which of their rules decided for which of
those parties (an ANP Deny or a BANP that closes the workload, an ANP Allow that opens
it: `outside: denied by ANP 'no-internet' (priority 10) ingress rule 0`), and the
Allow/Accept rules of the tiers that select the workload are listed among `admitted`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from dataplane.netpol import Direction, Party, PolicyIndex, Side, judge, prepare
from dataplane.netpol_index import index_of
from dataplane.netpol_text import admin_peer_text, admin_rule_text
from topology.model import AdminAction, Cluster, Pod, PolicyPeer, Protocol, Tier
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
    tiers: tuple[str, ...] = ()  # the admin-tier rules that decided for those parties

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
            "tiers": list(self.tiers),
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


# (allowed|denied, the admin rule that decided) -> the parties it decided for
Decided = dict[tuple[str, str], list[str]]
NEW_POD = "new pod in "


def _judged(
    index: PolicyIndex, side: Side, who: str, peer: Party, decided: Decided
) -> bool:
    """Whether `peer` is admitted, noting in `decided` the admin rule that decided."""
    d = judge(index, side, peer)
    if d.tier in (Tier.ADMIN.value, Tier.BASELINE.value):
        verdict = d.admin if d.tier == Tier.ADMIN.value else d.baseline
        assert verdict is not None and verdict.match is not None
        apol, ri, _ = verdict.match
        word = "allowed" if d.allowed else "denied"
        rule = admin_rule_text(apol, Direction.INGRESS, ri)
        decided.setdefault((word, rule), []).append(who)
    return d.allowed


def _parties_text(who: list[str]) -> str:
    """`new pod in dev, prod; any namespace`: the new pods' namespaces in one run."""
    spaces = [w.removeprefix(NEW_POD) for w in who if w.startswith(NEW_POD)]
    others = [w for w in who if not w.startswith(NEW_POD)]
    return "; ".join(([NEW_POD + ", ".join(spaces)] if spaces else []) + others)


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
            decided: Decided = {}

            allowed = partial(_judged, index, side, decided=decided)
            new_in = tuple(
                ns
                for ns in own
                if allowed(
                    NEW_POD + ns,
                    party(ns, dict(cluster.namespaces[ns].labels)),
                )
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
            tier_words = [
                f"{admin_peer_text(p)} ({admin_rule_text(apol, Direction.INGRESS, ri)})"
                # the Baseline tier is asked only for pods no NetworkPolicy isolates
                for apol, ri, arule, _miss in (
                    *side.admin,
                    *(() if side.isolating else side.baseline),
                )
                if arule is not None and arule.action is AdminAction.ALLOW
                for p in arule.peers
            ]
            if side.isolating:
                admitted = [*tier_words, *words]
            elif side.admin or side.baseline:
                admitted = [*tier_words, "everyone the tiers do not decide for"]
            else:
                admitted = ["everyone"]
            any_ns = allowed("any namespace", elsewhere)
            from_outside = allowed("outside", outside)
            found.append(
                Exposure(
                    key,
                    cp.port,
                    cp.protocol,
                    bool(side.isolating),
                    any_ns,
                    from_outside,
                    new_in,
                    tuple(dict.fromkeys(admitted)),
                    tuple(
                        f"{_parties_text(who)}: {word} by {rule}"
                        for (word, rule), who in decided.items()
                    ),
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
            head
            + ("; admits: " + ", ".join(r.admitted) if r.admitted else "")
            + ("; tiers: " + "; ".join(r.tiers) if r.tiers else "")
        )
    return lines


__all__ = ["Exposure", "exposure", "text"]
