"""Kubernetes `hostPort`: the CNI portmap plugin's rules on the pod's node.

kubelet hands a pod's hostPorts to the CNI plugins as `runtimeConfig.portMappings`;
the `portmap` plugin that flannel's and Calico's manifests chain after their own writes,
in the nat table of the pod's node (containernetworking/plugins
plugins/meta/portmap/portmap_iptables.go):
- `PREROUTING` and `OUTPUT`: `-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT`,
  appended, so after kube-proxy's `KUBE-SERVICES` (a connection kube-proxy DNATed is not
  looked at again: DNAT ends the nat chain);
- `CNI-HOSTPORT-DNAT`: `-p PROTO -m multiport --destination-ports P,... -j CNI-DN-<hash>`,
  one chain per container (`CNI-DN-` and the first hex digits of SHA-512(network name +
  container id), 28 characters: pkg/utils `MustFormatChainNameWithPrefix`);
- `CNI-DN-<hash>`, per mapping: `-s <the pod's network> -p PROTO --dport HP [-d HOSTIP]
  -j CNI-HOSTPORT-SETMARK` (hairpin: a pod of the node's subnet, with flannel's /24 any
  pod of the node, with Calico's /32 the pod itself), `-s 127.0.0.1 ... -j
  CNI-HOSTPORT-SETMARK` (the node's localhost), then `-j DNAT --to-destination
  POD_IP:CONTAINER_PORT`;
- `CNI-HOSTPORT-SETMARK` sets mark 0x2000, and `POSTROUTING -j CNI-HOSTPORT-MASQ` (put
  first) masquerades marked packets (`dataplane.masquerade`).
So a hostPort answers on every local address of the node (or on `hostIP` alone): from
outside, from other nodes' pods and from the node itself; the pod sees the client's
address, but a pod of the same node's subnet and the node's localhost are masqueraded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from dataplane.masquerade import mark_hostport
from dataplane.netfilter import (
    PRIORITY_DSTNAT,
    Hook,
    HookContext,
    HookPoint,
    HookResult,
)
from dataplane.packet import Packet
from topology.model import Cluster, Cni, Pod, Protocol

NAME = "portmap"
NETWORK = "cbr0"  # the CNI network name of flannel's conflist (kube-flannel.yml)
CALICO_NETWORK = "k8s-pod-network"  # calico.yaml's conflist
CHAIN_LENGTH = 28  # pkg/utils maxChainLength
PROTOCOLS = {6: Protocol.TCP, 17: Protocol.UDP, 132: Protocol.SCTP}


def container_id(pod_key: str) -> str:
    """The pod sandbox's id (64 hex digits) as this project's runtime gives it: stable
    for a pod, so the chain names are the same every run."""
    return hashlib.sha256(pod_key.encode()).hexdigest()


def network_name(cluster: Cluster) -> str:
    return CALICO_NETWORK if cluster.config.cni is Cni.CALICO else NETWORK


def dnat_chain(network: str, pod_key: str) -> str:
    """`CNI-DN-<hash>` of a pod's container.

    >>> dnat_chain("cbr0", "default/web")
    'CNI-DN-76111baea4ad72da20878'
    """
    digest = hashlib.sha512((network + container_id(pod_key)).encode()).hexdigest()
    return f"CNI-DN-{digest}"[:CHAIN_LENGTH]


@dataclass(frozen=True, slots=True)
class Mapping:
    """One entry of kubelet's `portMappings` and the rules portmap wrote for it."""

    pod: str  # NS/NAME
    pod_ip: str
    network: IPv4Network  # the pod's address's network (prevResult), hairpin's `-s`
    host_port: int
    protocol: Protocol
    container_port: int
    host_ip: IPv4Address | None
    chain: str

    def runtime_config(self) -> dict[str, object]:
        """As kubelet passes it (`portMappings`: lower-case protocol, hostIP "")."""
        return {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol.value.lower(),
            "hostIP": str(self.host_ip) if self.host_ip is not None else "",
        }


def pod_network(cluster: Cluster, pod: Pod) -> IPv4Network:
    """The network of the pod's address as its CNI plugin reports it: the node's podCIDR
    (flannel's host-local), a /32 (Calico)."""
    if cluster.config.cni is Cni.CALICO:
        return IPv4Network(f"{pod.ip}/32")
    return cluster.node(pod.node).pod_cidr


def mappings(cluster: Cluster, pod: Pod) -> list[Mapping]:
    """A pod's hostPorts, in the order of its containers and ports."""
    if pod.host_network:
        return []
    net, chain = pod_network(cluster, pod), dnat_chain(network_name(cluster), pod.key)
    return [
        Mapping(
            pod.key,
            str(pod.ip),
            net,
            p.host_port,
            p.protocol,
            p.port,
            p.host_ip,
            chain,
        )
        for p in pod.ports()
        if p.host_port is not None
    ]


_TABLES: dict[int, tuple[Cluster, dict[str, list[Mapping]]]] = {}


def table(cluster: Cluster) -> dict[str, list[Mapping]]:
    """Every node's mappings (node name -> mappings), computed once per cluster."""
    found = _TABLES.get(id(cluster))
    if found is not None and found[0] is cluster:
        return found[1]
    out: dict[str, list[Mapping]] = {}
    for pod in cluster.pods.values():
        for m in mappings(cluster, pod):
            out.setdefault(pod.node, []).append(m)
    if len(_TABLES) >= 8:
        _TABLES.pop(next(iter(_TABLES)))
    _TABLES[id(cluster)] = (cluster, out)
    return out


def dnat(pkt: Packet, ctx: HookContext) -> HookResult:
    """nat PREROUTING / OUTPUT `-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT`."""
    ip = pkt.ip
    if ip is None or not ctx.is_new or ctx.bridged:
        return None
    if ctx.ct is not None and ctx.ct.dnat is not None:
        return None  # KUBE-SERVICES DNATed it first: the nat chain ended there
    entries = table(ctx.cluster).get(ctx.node)
    if not entries or not ctx.netns.is_local(ip.dst):
        return None
    proto = PROTOCOLS.get(ip.proto)
    for m in entries:
        if m.protocol is not proto or m.host_port != pkt.dport:
            continue
        if m.host_ip is not None and str(m.host_ip) != ip.dst:
            continue
        head = (
            f"{NAME}: {ctx.point} -> CNI-HOSTPORT-DNAT -> {m.chain}: {proto} dport"
            f" {m.host_port}" + (f" -d {m.host_ip}" if m.host_ip is not None else "")
        )
        src = IPv4Address(ip.src)
        why = None
        if src in m.network:
            why = f"hairpin: -s {m.network}"
        elif ip.src == "127.0.0.1":
            why = "-s 127.0.0.1: the node's localhost"
        if why is not None:
            mark_hostport(ctx, why)
        detail = (
            f"{head} DNAT -> {m.pod_ip}:{m.container_port} (hostPort {m.host_port}"
            f" of {m.pod})"
            + (f"; CNI-HOSTPORT-SETMARK ({why})" if why is not None else "")
        )
        return ctx.dnat(pkt, m.pod_ip, m.container_port, detail)
    return None


def hooks() -> list[Hook]:
    """After kube-proxy's at the same priority (the order `system_hooks` lists them)."""
    return [
        Hook(HookPoint.PREROUTING, PRIORITY_DSTNAT, NAME, dnat, new_only=True),
        Hook(HookPoint.OUTPUT, PRIORITY_DSTNAT, NAME, dnat, new_only=True),
    ]
