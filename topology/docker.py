"""The Docker model of a `runtime: docker` scenario: what Docker Engine and Compose v2 make
of the `compose` projects, host by host.  Pure data; `dataplane.cni.docker` builds the
devices and `dataplane.docker_iptables` the rules from it.

The rules, as moby and Compose apply them by default (named per rule below):
- every host has the default bridge network `bridge` on `docker0`, 172.17.0.0/16, gateway
  172.17.0.1 (daemon `bip`/`default-address-pools`: libnetwork `ipamutils`
  `localScopeDefaultNetworks`, the first pool);
- a user-defined network without `ipam.config` takes the next pool of
  172.18.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/20 ... 192.168.240.0/20, that overlaps no
  network of its host, in creation order, gateway the first host; its bridge is
  `br-<first 12 hex digits of the network ID>` (libnetwork drivers/bridge `bridgePrefix`);
  the ID here is the SHA-256 of `HOST/NAME` (Docker's is random: the simulator needs it
  stable);
- Compose creates per project, in this order, the project's `<project>_default` network
  (when some service uses it), then the declared networks in the order written, then the
  containers service by service in the order written (`depends_on` is not read), replicas
  `<project>-<service>-1`, `-2`, ...;
- addresses per network from the first host after the gateway upward; `ipv4_address`s are
  reserved first (Docker would fail a later static address that a dynamic one took);
  MACs are `02:42` followed by the address (libnetwork `netutils.GenerateMACFromIP`);
- the gateway endpoint of a container (its default route, and where its ports are
  published) is that of its first network not internal by name, else of its first
  internal one (libnetwork sandbox.go, `_gateway_endpoint`); the networks are joined in
  the order written, and a join that moves the gateway republishes the ports (`_join`);
- `ports`: host ports as written, an omitted one the port allocator's next from 32768
  (the start of `ip_local_port_range`, libnetwork `portallocator`), per host, address
  and protocol; a taken one is Docker's error `Bind for IP:PORT failed: port is already
  allocated`; none on an internal network (a warning);
- a container listens on its `expose` ports and its `ports` targets (an image's `EXPOSE` is
  not known here).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from topology.compose import ComposeNetwork, ComposeProject, ComposeService, PortSpec
from topology.errors import TopologyError
from topology.model import (
    BUILTIN,
    Loc,
    Protocol,
)
from topology.runtime import Runtime

DOCKER0 = "docker0"
DEFAULT_BRIDGE = "bridge"  # the default network's name (`docker network ls`)
DOCKER0_SUBNET = IPv4Network("172.17.0.0/16")
EMBEDDED_DNS = IPv4Address("127.0.0.11")
EMBEDDED_DNS_OWNER = "docker-dns"  # its socket's owner (dataplane.docker_dns)
LOOPBACK_IP = IPv4Address("127.0.0.1")  # libnetwork resolver.go
EPHEMERAL_FIRST = 32768  # /proc/sys/net/ipv4/ip_local_port_range, its first port
EPHEMERAL_LAST = 60999


# The `cluster` keys of Kubernetes components (model field -> YAML key): errors in
# `runtime: docker`.
_KUBERNETES_KEYS = {
    "cni": "cni",
    "network": "network",
    "calico": "calico",
    "kube_proxy": "kubeProxy",
    "service_cidr": "serviceCIDR",
    "cluster_domain": "clusterDomain",
    "dns": "dns",
    "bridge": "bridge",
    "vxlan_port": "vxlanPort",
    "gateway_routes": "gatewayRoutes",
}


def check_cluster_keys(
    runtime: Runtime,
    given: AbstractSet[str],
    fail: Callable[[tuple[str, ...], str], TopologyError],
) -> None:
    """`runtime: docker` has no kubelet, kube-proxy, CNI, overlay or kube-dns: the
    `cluster` keys that configure them are errors there (`given`: the model's fields)."""
    if runtime is not Runtime.DOCKER:
        return
    for key, name in _KUBERNETES_KEYS.items():
        if key in given:
            raise fail(
                (name,),
                f"runtime: docker does not use {name} (a Docker host has no kubelet,"
                " kube-proxy, CNI, overlay or kube-dns)",
            )


def default_pools() -> Iterator[IPv4Network]:
    """libnetwork ipamutils' local default pools after docker0's: 172.18-31.0.0/16, then
    192.168.0.0/16 in /20s."""
    for second in range(18, 32):
        yield IPv4Network(f"172.{second}.0.0/16")
    yield from IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def network_id(host: str, name: str) -> str:
    """A network's ID (64 hex digits), stable per host and name.

    >>> network_id("host-1", "shop_default")[:12]
    '1380731d3960'
    """
    return hashlib.sha256(f"{host}/{name}".encode()).hexdigest()


def mac_of(ip: IPv4Address) -> str:
    """libnetwork `GenerateMACFromIP`: 02:42 then the four bytes of the address.

    >>> mac_of(IPv4Address("172.17.0.2"))
    '02:42:ac:11:00:02'
    """
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


@dataclass(frozen=True, slots=True)
class DockerNetwork:
    """A Docker network on one host: docker0 (`user_defined` False) or a user-defined
    bridge `br-<12 hex>`; `internal` networks have no route out and no MASQUERADE."""

    host: str
    name: str
    bridge: str
    id: str
    subnet: IPv4Network
    gateway: IPv4Address
    internal: bool = False
    user_defined: bool = True
    loc: Loc = BUILTIN


@dataclass(frozen=True, slots=True)
class NetworkAttachment:
    """A container's interface on one network: `eth0`, `eth1`, ... in attachment order;
    `names` are what the embedded DNS answers with its address there (service name,
    aliases, container name), empty on docker0."""

    network: str
    ifname: str
    ip: IPv4Address
    mac: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PublishedPort:
    """One published port: `host_ip:host_port/protocol` (host_ip None: 0.0.0.0) to the
    container's address on `network`."""

    host_ip: IPv4Address | None
    host_port: int
    protocol: Protocol
    container: str
    network: str
    container_ip: IPv4Address
    container_port: int
    loc: Loc

    @property
    def host_text(self) -> str:
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}/{self.protocol.lower()}"


@dataclass(frozen=True, slots=True)
class DockerContainer:
    """A container; `network_mode` is `bridge` (its own namespace, attached to
    `attachments`), `host`, `none` or `container` (sharing `joins`'s namespace)."""

    name: str
    host: str
    project: str
    service: str
    number: int
    hostname: str | None
    network_mode: str
    joins: str | None
    attachments: tuple[NetworkAttachment, ...]
    ports: tuple[PublishedPort, ...]
    listens: tuple[tuple[int, Protocol], ...]
    loc: Loc
    # the network of the gateway endpoint (`_gateway_endpoint`): the default route's,
    # where the ports are published (None: no network)
    gateway: str | None = None


@dataclass(frozen=True, slots=True)
class DockerHost:
    """One Docker Engine host: its networks and containers in creation order."""

    name: str
    networks: tuple[DockerNetwork, ...]
    containers: tuple[DockerContainer, ...]

    def network(self, name: str) -> DockerNetwork:
        return next(n for n in self.networks if n.name == name)

    def container(self, name: str) -> DockerContainer | None:
        return next((c for c in self.containers if c.name == name), None)

    def published(self) -> tuple[PublishedPort, ...]:
        return tuple(p for c in self.containers for p in c.ports)


@dataclass(frozen=True, slots=True)
class DockerRuntime:
    """Every Docker host of the scenario, and the parsed projects they come from."""

    projects: tuple[ComposeProject, ...]
    hosts: Mapping[str, DockerHost] = field(default_factory=dict)

    def owner(self, host: str, name: str) -> DockerContainer:
        """The container whose namespace `name` uses (itself, or the one it joins)."""
        c = self.hosts[host].container(name)
        assert c is not None
        while c.joins is not None:
            nxt = self.hosts[host].container(c.joins)
            assert nxt is not None
            c = nxt
        return c


class _Host:
    """A host being built: its networks, containers, addresses and host ports in use."""

    def __init__(self, name: str, notes: list[str]) -> None:
        self.name = name
        self.notes = notes
        gw = DOCKER0_SUBNET.network_address + 1
        self.networks: dict[str, DockerNetwork] = {
            DEFAULT_BRIDGE: DockerNetwork(
                name, DEFAULT_BRIDGE, DOCKER0, network_id(name, DEFAULT_BRIDGE),
                DOCKER0_SUBNET, gw, user_defined=False,
            )
        }  # fmt: skip
        self.used: dict[str, set[IPv4Address]] = {DEFAULT_BRIDGE: {gw}}
        self.containers: list[DockerContainer] = []
        self.holders: dict[tuple[str, IPv4Address], str] = {}  # ipv4_address owners
        self.ports: dict[
            tuple[str, Protocol, int], str
        ] = {}  # (ip, proto, port) -> owner
        # the port allocator's last port given, per (ip, proto, first, last) range
        self.last: dict[tuple[str, Protocol, int, int], int] = {}

    def create(self, project: str, net: ComposeNetwork) -> str:
        """Create (or, external, find) a project's network; its Docker name."""
        if net.external:
            if net.name not in self.networks:
                raise TopologyError(
                    f"network {net.name} declared as external, but could not be found"
                    f" on {self.name} (there: {', '.join(self.networks)})",
                    net.loc, f"network {project}/{net.key}",
                )  # fmt: skip
            return net.name
        if net.name in self.networks:
            raise TopologyError(
                f"a network {net.name!r} already exists on {self.name}",
                net.loc, f"network {project}/{net.key}",
            )  # fmt: skip
        subnet = net.subnet
        taken = [n.subnet for n in self.networks.values()]
        if subnet is None:
            subnet = next(
                (p for p in default_pools() if not any(p.overlaps(t) for t in taken)),
                None,
            )
            if subnet is None:
                raise TopologyError(
                    "could not find an available, non-overlapping IPv4 address pool"
                    " among the defaults to assign to the network",
                    net.loc, f"network {project}/{net.key}",
                )  # fmt: skip
        else:
            clash = next(
                (n for n in self.networks.values() if n.subnet.overlaps(subnet)), None
            )
            if clash is not None:
                raise TopologyError(
                    f"Pool overlaps with other one on this address space: {subnet}"
                    f" overlaps network {clash.name} ({clash.subnet}) on {self.name}",
                    net.loc, f"network {project}/{net.key}",
                )  # fmt: skip
        gateway = net.gateway or subnet.network_address + 1
        nid = network_id(self.name, net.name)
        self.networks[net.name] = DockerNetwork(
            self.name, net.name, f"br-{nid[:12]}", nid, subnet, gateway,
            net.internal, True, net.loc,
        )  # fmt: skip
        self.used[net.name] = {gateway}
        return net.name

    def address(
        self, network: str, want: IPv4Address | None, loc: Loc, obj: str,
        holder: str = "",
    ) -> IPv4Address:  # fmt: skip
        net = self.networks[network]
        used = self.used[network]
        if want is not None:
            if want not in net.subnet or want in (
                net.subnet.network_address,
                net.subnet.broadcast_address,
            ):
                raise TopologyError(
                    f"ipv4_address {want} is not a host of network {network} ({net.subnet})",
                    loc, obj,
                )  # fmt: skip
            if want in used:
                # libnetwork ipam RequestAddress: ipamapi.ErrIPAlreadyAllocated, which
                # `docker start` of the second container reports
                who = self.holders.get((network, want), "its gateway")
                raise TopologyError(
                    f"ipv4_address {want}: Address already in use on network {network}"
                    f" ({who} has it; Docker Engine refuses to start this container:"
                    " `Error response from daemon: Address already in use`)",
                    loc, obj,
                )  # fmt: skip
            used.add(want)
            self.holders[(network, want)] = holder or obj
            return want
        for ip in net.subnet.hosts():
            if ip not in used:
                used.add(ip)
                return ip
        raise TopologyError(
            f"no free address left on network {network} ({net.subnet})", loc, obj
        )

    def bind(
        self, host_ip: IPv4Address | None, proto: Protocol, port: int
    ) -> str | None:
        """Why `host_ip:port/proto` cannot be bound (None: it is free)."""
        ip = str(host_ip or "0.0.0.0")
        for other, p, n in self.ports:
            if p is proto and n == port and (other == ip or "0.0.0.0" in (ip, other)):
                return f"Bind for {ip}:{port} failed: port is already allocated"
        return None


def build_runtime(
    projects: tuple[ComposeProject, ...],
    hosts: tuple[str, ...],
    notes: list[str] | None = None,
) -> DockerRuntime:
    """The Docker model of every host (`hosts`, the nodes in order) from its projects;
    what Docker Engine would silently leave out is added to `notes` (warnings)."""
    state = {h: _Host(h, [] if notes is None else notes) for h in hosts}
    for project in projects:
        _project(state[project.node], project)
    return DockerRuntime(
        projects,
        {
            h: DockerHost(h, tuple(s.networks.values()), tuple(s.containers))
            for h, s in state.items()
        },
    )


def _uses_default(service: ComposeService) -> bool:
    return service.network_mode is None and (
        not service.networks or any(a.network == "default" for a in service.networks)
    )


def _project(host: _Host, project: ComposeProject) -> None:
    names: dict[str, str] = {}  # compose key -> Docker network name
    declared = {n.key: n for n in project.networks}
    if any(_uses_default(s) for s in project.services):
        default = declared.pop("default", None) or ComposeNetwork(
            "default",
            f"{project.project}_default",
            False,
            False,
            None,
            None,
            project.loc,
        )
        names["default"] = host.create(project.project, default)
    for key, net in declared.items():
        names[key] = host.create(project.project, net)
    statics = [
        (s, a)
        for s in project.services
        for a in s.networks
        if a.ipv4_address is not None
    ]
    for s, a in statics:
        made = host.networks[names[a.network]]
        obj = f"service {project.project}/{s.name}"
        if made.user_defined and _configured(project, a.network):
            first = s.container_name or f"{project.project}-{s.name}-1"
            host.address(made.name, a.ipv4_address, s.loc, obj, f"container {first}")
        else:
            raise TopologyError(
                f"networks.{a.network}.ipv4_address: user specified IP address is supported"
                " only when connecting to networks with user configured subnets",
                s.loc, obj,
            )  # fmt: skip
    for service in project.services:
        for number in range(1, service.replicas + 1):
            host.containers.append(_container(host, project, service, number, names))


def _configured(project: ComposeProject, key: str) -> bool:
    return any(n.key == key and n.subnet is not None for n in project.networks)


def _container(
    host: _Host, project: ComposeProject, service: ComposeService, number: int,
    names: dict[str, str],
) -> DockerContainer:  # fmt: skip
    name = service.container_name or f"{project.project}-{service.name}-{number}"
    obj = f"service {project.project}/{service.name}"
    if any(c.name == name for c in host.containers):
        raise TopologyError(
            f'Conflict. The container name "/{name}" is already in use on {host.name}',
            service.loc, obj,
        )  # fmt: skip
    mode = service.network_mode or ""
    joins = None
    if mode.startswith("service:"):
        target = mode.split(":", 1)[1]
        other = next((s for s in project.services if s.name == target), None)
        if other is None or other.replicas == 0:
            raise TopologyError(
                f"network_mode {mode}: no service {target!r} with a container in project"
                f" {project.project} (services: {', '.join(s.name for s in project.services)})",
                service.loc, obj,
            )  # fmt: skip
        joins = other.container_name or f"{project.project}-{other.name}-1"
    elif mode.startswith("container:"):
        joins = mode.split(":", 1)[1]
    if joins is not None and not any(c.name == joins for c in host.containers):
        there = ", ".join(c.name for c in host.containers) or "none"
        raise TopologyError(
            f"network_mode {mode}: no container {joins!r} on {host.name} before this one"
            f" (containers: {there})",
            service.loc, obj,
        )  # fmt: skip
    kind = "container" if joins else ("bridge" if mode in ("", "bridge") else mode)
    attachments: list[NetworkAttachment] = []
    if kind == "bridge":
        wanted = list(service.networks)
        nets: list[tuple[str, IPv4Address | None, tuple[str, ...]]]
        if mode == "bridge":
            nets = [(DEFAULT_BRIDGE, None, ())]
        elif not wanted:
            nets = [(names["default"], None, ())]
        else:
            nets = [(names[a.network], a.ipv4_address, a.aliases) for a in wanted]
        for i, (net_name, ip, aliases) in enumerate(nets):
            net = host.networks[net_name]
            if ip is not None and number > 1:  # a replica asks for its first's address
                host.address(net_name, ip, service.loc, f"container {name}")
            addr = (
                ip if ip is not None else host.address(net_name, None, service.loc, obj)
            )
            dns: tuple[str, ...] = ()
            if net.user_defined:  # the embedded DNS: service, aliases, container name
                dns = tuple(dict.fromkeys((service.name, *aliases, name)))
            attachments.append(
                NetworkAttachment(net_name, f"eth{i}", addr, mac_of(addr), dns)
            )
    gateway, ports = _join(host, service, name, attachments, obj)
    listens = tuple(
        dict.fromkeys(
            [*service.expose, *((p.container_port, p.protocol) for p in ports)]
        )
    )
    return DockerContainer(
        name, host.name, project.project, service.name, number, service.hostname,
        kind, joins, tuple(attachments), ports, listens, service.loc, gateway,
    )  # fmt: skip


def _gateway_endpoint(
    host: _Host, attachments: Iterable[NetworkAttachment]
) -> NetworkAttachment | None:
    """The sandbox's gateway endpoint (libnetwork sandbox.go `getGatewayEndpoint`, the
    first of the endpoints in `epHeap.Less` order that has a gateway): a network that is
    not internal before an internal one, then by network name (every bridge endpoint
    has a gateway, an internal one's too: drivers/bridge `Join` `SetGateway`; `priority`
    is not modelled).  Its network's gateway is the container's default route, and its
    network the one ports are published on."""
    return min(
        attachments,
        key=lambda a: (host.networks[a.network].internal, a.network),
        default=None,
    )


def _join(
    host: _Host, service: ComposeService, name: str,
    attachments: list[NetworkAttachment], obj: str,
) -> tuple[str | None, tuple[PublishedPort, ...]]:  # fmt: skip
    """The container's networks joined one by one in attachment order (the first at
    `docker start`, then `docker network connect` each other; `dataplane.kernel.
    docker_engine` makes the Engine do the same): the gateway network at the end and
    the ports published there.  When a join moves the gateway endpoint, libnetwork
    revokes the old endpoint's external connectivity (its host ports are released) and
    programs the new one's, on a network that is not internal only (endpoint.go
    `sbJoin`, `moveExtConn`); an omitted host port is allocated again, after the last
    one given (portallocator `findPort`)."""
    gateway: NetworkAttachment | None = None
    ports: tuple[PublishedPort, ...] = ()
    for i in range(len(attachments)):
        now = _gateway_endpoint(host, attachments[: i + 1])
        if now is gateway:
            continue
        for p in ports:  # RevokeExternalConnectivity: ReleasePort
            del host.ports[(str(p.host_ip or "0.0.0.0"), p.protocol, p.host_port)]
        gateway, ports = now, ()
        if now is not None and not host.networks[now.network].internal:
            ports = tuple(_publish(host, service, name, now, obj))
    if service.ports and gateway is not None and not ports:
        why = (
            f"{service.loc}: {obj}: ports are not published: every network of the"
            " service is internal (libnetwork programs no external connectivity there)"
        )
        if why not in host.notes:
            host.notes.append(why)
    return (gateway.network if gateway else None), ports


def _publish(
    host: _Host, service: ComposeService, name: str, on: NetworkAttachment, obj: str
) -> Iterator[PublishedPort]:
    """ProgramExternalConnectivity: every `ports` item, to the address on `on`."""
    for spec in service.ports:
        for offset in range(spec.target[1] - spec.target[0] + 1):
            host_port = _host_port(host, spec, offset, spec.loc, obj)
            host.ports[(str(spec.host_ip or "0.0.0.0"), spec.protocol, host_port)] = (
                name
            )
            yield PublishedPort(
                spec.host_ip, host_port, spec.protocol, name, on.network, on.ip,
                spec.target[0] + offset, spec.loc,
            )  # fmt: skip


def _host_port(host: _Host, spec: PortSpec, offset: int, loc: Loc, obj: str) -> int:
    if (
        spec.published is not None
        and spec.published[1] - spec.published[0] == spec.target[1] - spec.target[0]
    ):
        port = spec.published[0] + offset
        why = host.bind(spec.host_ip, spec.protocol, port)
        if why is not None:
            raise TopologyError(why, loc, obj)
        return port
    first, last = spec.published or (EPHEMERAL_FIRST, EPHEMERAL_LAST)
    # portallocator `findPort`: from the port after the last one this range gave (per
    # address, protocol and range; at first the range's end, so its first port), round
    # the range: a released port is not given again before the others
    key = (str(spec.host_ip or "0.0.0.0"), spec.protocol, first, last)
    start = host.last.get(key, last)
    for step in range(1, last - first + 2):
        port = first + (start - first + step) % (last - first + 1)
        if host.bind(spec.host_ip, spec.protocol, port) is None:
            host.last[key] = port
            return port
    ip = spec.host_ip or "0.0.0.0"
    raise TopologyError(
        f"Bind for {ip}:{first}-{last} failed: every port of the range is allocated",
        loc,
        obj,
    )


__all__ = [
    "DEFAULT_BRIDGE",
    "DOCKER0",
    "EMBEDDED_DNS",
    "EMBEDDED_DNS_OWNER",
    "LOOPBACK_IP",
    "DockerContainer",
    "DockerHost",
    "DockerNetwork",
    "DockerRuntime",
    "NetworkAttachment",
    "PublishedPort",
    "build_runtime",
    "mac_of",
    "network_id",
]
