"""Docker Engine as the way of building a node (`cluster.runtime: docker`).

What it builds from the Docker model (`topology.docker`), as dockerd's bridge driver does
(moby libnetwork drivers/bridge: `setup_device.go`, `setup_ipv4_linux.go`, `bridge_linux.go`
`createEndpoint`):
- per host: `docker0` (172.17.0.1/16) and one bridge `br-<12 hex>` per user-defined
  network, each with its gateway address and connected route, `default via <gateway>` on
  `eth0`, and Docker's iptables (`dataplane.docker_iptables`) instead of kube-proxy,
  masquerade and NetworkPolicy;
- per container namespace: `eth0`, `eth1`, ... one per network (a veth whose host end
  `veth<7 hex>` is a port of that network's bridge; hairpin off, as with the userland
  proxy), the connected route of each, and `default via` the gateway of the gateway
  endpoint's network, an internal one's too (libnetwork sandbox.go `updateGateway`;
  Docker Engine 25 and later give an internal network no gateway, moby#46603);
  `network_mode: none` leaves only `lo`; `host` is the host's namespace; containers of
  `network_mode: container:`/`service:` are sockets of the namespace they join.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Interface
from typing import TYPE_CHECKING

from dataplane import docker_iptables
from dataplane.cni.common import (
    DEFAULT,
    CniPlugin,
    default_route,
    host_namespace,
    mac_from_name,
)
from dataplane.netns import Interface, Kind, Netns
from dataplane.routing import Route
from topology.docker import EMBEDDED_DNS, EMBEDDED_DNS_OWNER, DockerRuntime
from topology.dockercluster import serves_dns
from topology.model import NodeSpec, Pod, Protocol
from topology.runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.fabric import Fabric


def host_veth(container: str, network: str) -> str:
    """The host end of a container's veth: `veth` + 7 hex digits (Docker's are random;
    these are stable per container and network).

    >>> host_veth("shop-web-1", "bridge")
    'veth4db2596'
    """
    return "veth" + hashlib.sha1(f"{container}/{network}".encode()).hexdigest()[:7]


def _runtime(fab: Fabric) -> DockerRuntime:
    runtime = fab.cluster.docker
    assert runtime is not None
    return runtime


def build_node(fab: Fabric, node: NodeSpec) -> Netns:
    ns, _ = host_namespace(fab, node)
    mtu = fab.cluster.config.mtu
    for net in _runtime(fab).hosts[node.name].networks:
        addr = IPv4Interface(f"{net.gateway}/{net.subnet.prefixlen}")
        ns.add_interface(
            Interface(net.bridge, Kind.BRIDGE, mac_from_name(net.id), mtu, (addr,))
        )
        ns.routes.add(Route(net.subnet, net.bridge, src=net.gateway, proto="kernel"))
        fab.bridge_ports.setdefault((ns.id, net.bridge), [])
    default_route(fab, ns)
    return ns


def build_container(fab: Fabric, pod: Pod, ns: Netns) -> None:
    """A container's own namespace: one veth per network it is attached to."""
    runtime = _runtime(fab)
    host = runtime.hosts[pod.node]
    container = host.container(pod.name)
    assert container is not None
    joined = [c.name for c in pod.containers if c.name != pod.name]
    # `network_mode: container:`/`service:` (the pause pattern): one namespace, said so
    shared = f" (netns shared with {', '.join(joined)})" if joined else ""
    ns.label = f"container {pod.name}{shared}"
    mtu = fab.cluster.config.mtu
    host_ns = fab.netns[pod.node]
    for att in container.attachments:
        net = host.network(att.network)
        addr = IPv4Interface(f"{att.ip}/{net.subnet.prefixlen}")
        veth = host_veth(pod.name, net.name)
        ns.add_interface(
            Interface(
                att.ifname, Kind.VETH, att.mac, mtu, (addr,), peer=(host_ns.id, veth)
            )
        )
        ns.routes.add(Route(net.subnet, att.ifname, src=att.ip, proto="kernel"))
        host_ns.add_interface(
            Interface(
                veth, Kind.VETH, mac_from_name(veth), mtu,
                peer=(ns.id, att.ifname), master=net.bridge,
            )
        )  # fmt: skip
        fab.bridge_ports.setdefault((host_ns.id, net.bridge), []).append(veth)
        fab.owner_of_ip[str(att.ip)] = ns.id
    if serves_dns(runtime, pod) and (Protocol.UDP, 53) not in ns.sockets:
        ns.listen(Protocol.UDP, 53, EMBEDDED_DNS_OWNER, str(EMBEDDED_DNS))
    if container.gateway is not None:  # the gateway endpoint's (topology.docker)
        gw = next(a for a in container.attachments if a.network == container.gateway)
        ns.routes.add(Route(DEFAULT, gw.ifname, via=host.network(gw.network).gateway))


def no_gateway_routes(fab: Fabric, gw: Netns) -> None:
    """Docker hosts announce no container network to the underlay router."""


PLUGIN = CniPlugin(
    Runtime.DOCKER,
    build_node,
    build_container,
    no_gateway_routes,
    list,
    system_hooks=docker_iptables.hooks,
)
