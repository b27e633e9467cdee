"""A scenario from a dump of a live cluster (`dataplane import`).

`kubectl get nodes,ns,pods,svc,netpol -A -o yaml` prints a `kind: List`.  What the dump
does not say is inferred, and the scenario says so in comments:
- `nodeCIDR`: the smallest network holding every node's InternalIP, at least a /24; the
  gateway is its first host unless a node has that address;
- `serviceCIDR`: the kubeadm default 10.96.0.0/12 when it holds every clusterIP with
  `default/kubernetes` at its first address, else the smallest network that does (the
  API server gives `default/kubernetes` the first address of `--service-cluster-ip-range`);
- `dns`: on when the dump holds Service `kube-system/kube-dns` at `.10` of that range;
- `network`: the default (vxlan): the CNI plugin's mode is not in the objects;
- `clusterDomain`: the default (cluster.local).
The objects stay in the dump, which the scenario includes (`{file: manifests/NAME}`); the
starter step is a reachability matrix over every pod on the first TCP port found (the
command adds the verdicts the simulator gives as its `expect`, a baseline to keep).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any

from topology.errors import TopologyError
from topology.kinds import NODE, classify
from topology.live import node_entry
from topology.loader import objects_of
from topology.scenario import Manifest
from topology.yamlsource import load_documents

KUBEADM_SERVICE_CIDR = IPv4Network("10.96.0.0/12")
MIN_NODE_PREFIX = 24
DEFAULT_PORT = 80


@dataclass(frozen=True, slots=True)
class Imported:
    """The scenario text, and what a reader should know about the inference."""

    text: str  # ends with the matrix step, whose `expect` the caller may add
    notes: tuple[str, ...]
    port: int


def covering(ips: Sequence[IPv4Address], longest: int = 32) -> IPv4Network:
    """The smallest network holding every address (its prefix at most `longest`).

    >>> covering([IPv4Address("172.18.0.2"), IPv4Address("172.18.0.3")], 24)
    IPv4Network('172.18.0.0/24')
    >>> covering([IPv4Address("10.96.0.1"), IPv4Address("10.96.141.27")])
    IPv4Network('10.96.0.0/16')
    """
    low, high = int(min(ips)), int(max(ips))
    prefix = min(longest, 32 - (low ^ high).bit_length())
    return IPv4Network((low, prefix), strict=False)


def service_cidr(
    ips: Sequence[IPv4Address], kubernetes: IPv4Address | None
) -> IPv4Network:
    """The serviceCIDR of a dump (see the module doc).

    >>> service_cidr([IPv4Address("10.96.0.1"), IPv4Address("10.96.0.10")], None)
    IPv4Network('10.96.0.0/12')
    >>> service_cidr([IPv4Address("10.43.0.1"), IPv4Address("10.43.9.5")],
    ...              IPv4Address("10.43.0.1"))
    IPv4Network('10.43.0.0/20')
    """
    first = KUBEADM_SERVICE_CIDR.network_address + 1
    if all(ip in KUBEADM_SERVICE_CIDR for ip in ips) and kubernetes in (None, first):
        return KUBEADM_SERVICE_CIDR
    if kubernetes is None:
        return covering(ips, 30)
    base = int(kubernetes) - 1
    for prefix in range(30, 0, -1):
        net = IPv4Network((base, prefix), strict=False)
        if int(net.network_address) == base and all(ip in net for ip in ips):
            return net
    raise TopologyError(  # pragma: no cover - a /1 holding .1 always exists
        f"no serviceCIDR has {kubernetes} as its first address and holds every clusterIP"
    )


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def objects_in(text: str, shown: str) -> list[Manifest]:
    """The objects of every YAML document of a manifest file's text."""
    out = []
    for doc in load_documents(text, shown):
        out.extend(objects_of(doc))
    return out


def _cluster_ips(services: Iterable[Manifest]) -> dict[str, IPv4Address]:
    out = {}
    for svc in services:
        ip = _get(svc.data, "spec", "clusterIP")
        if not isinstance(ip, str) or ip in ("", "None"):
            continue
        try:
            parsed = ip_address(ip)
        except ValueError:
            continue  # loading the scenario reports it at its line
        if isinstance(parsed, IPv4Address):
            namespace = _get(svc.data, "metadata", "namespace") or "default"
            out[f"{namespace}/{_get(svc.data, 'metadata', 'name')}"] = parsed
    return out


def _first_port(pods: Sequence[Manifest]) -> int:
    """The first TCP containerPort of a pod outside kube-* namespaces (else of any pod)."""
    for system in (False, True):
        for pod in pods:
            namespace = str(_get(pod.data, "metadata", "namespace") or "default")
            if namespace.startswith("kube-") != system:
                continue
            if _get(pod.data, "spec", "hostNetwork") is True:
                continue
            for container in _get(pod.data, "spec", "containers") or ():
                for port in _get(container, "ports") or ():
                    number = _get(port, "containerPort")
                    proto = _get(port, "protocol") or "TCP"
                    if isinstance(number, int) and proto == "TCP":
                        return number
    return DEFAULT_PORT


def import_dump(text: str, shown: str, include: str | None, name: str) -> Imported:
    """The scenario for a dump's text; `include` is the path the scenario includes it by
    (None: `manifests: []`, to load the scenario with the dump given beside it)."""
    return scenario_for(objects_in(text, shown), shown, include, name)


def scenario_for(
    objects: list[Manifest], shown: str, include: str | None, name: str
) -> Imported:
    """The scenario for the objects of a dump (or of a folder of manifests, `shown`)."""
    kept = [m for m in objects if classify(m.data) == "modelled"]
    warnings: list[str] = []
    nodes = [node_entry(m, warnings) for m in kept if m.data.get("kind") == NODE]
    notes: list[str] = []
    lines = [
        f"name: {name}",
        "description: |",
        f"  A live cluster, imported by `dataplane import` from {os.path.basename(shown)}:",
        "  its nodes, addresses and objects as the dump records them.",
        "cluster:",
        "  network: vxlan  # not in the dump: the CNI plugin's mode (vxlan, host-gw, routed)",
    ]
    node_ips = [n.ip for n in nodes if n.ip is not None]
    if node_ips:
        cidr = covering(node_ips, MIN_NODE_PREFIX)
        lines.append(f"  nodeCIDR: {cidr}  # inferred: holds every node's InternalIP")
        gateway = cidr.network_address + 1
        if gateway in node_ips:
            taken = set(node_ips)
            gateway = next(h for h in cidr.hosts() if h not in taken)
            lines.append(
                f"  gateway: {gateway}  # the first host of nodeCIDR is a node"
            )
    else:
        notes.append(
            "the dump holds no Node with an InternalIP: default nodes are used"
        )
    services = [m for m in kept if m.data.get("kind") == "Service"]
    ips = _cluster_ips(services)
    dns = "kube-system/kube-dns" in ips
    if ips:
        net = service_cidr(list(ips.values()), ips.get("default/kubernetes"))
        lines.append(f"  serviceCIDR: {net}  # inferred: holds every clusterIP")
        if dns and ips["kube-system/kube-dns"] != net.network_address + 10:
            dns = False
            notes.append(
                f"kube-dns is at {ips['kube-system/kube-dns']}, not .10 of {net}:"
                " the simulated resolver would not reach it, so dns is off"
            )
    lines.append(f"  dns: {'true' if dns else 'false'}")
    lines.append("  clusterDomain: cluster.local  # the default: not in the dump")
    lines += (
        ["manifests:", f"  - {{file: {include}}}"] if include else ["manifests: []"]
    )
    pods = [m for m in kept if m.data.get("kind") == "Pod"]
    port = _first_port(pods)
    lines += [
        "steps:",
        f"  - name: who reaches whom on port {port}",
        "    matrix:",
        f"      port: {port}",
    ]
    notes.extend(warnings)
    return Imported("\n".join(lines) + "\n", tuple(notes), port)


__all__ = [
    "Imported",
    "covering",
    "import_dump",
    "objects_in",
    "scenario_for",
    "service_cidr",
]
