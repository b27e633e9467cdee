"""A `runtime: docker` scenario on this kernel: the hosts as for Kubernetes nodes, then a
real Docker Engine on each making the projects (`dataplane.kernel.docker_engine`).

`DockerLive` is a `LiveCluster` for the verifier: the same listeners, jobs, conntrack
read-back and teardown, with three differences:
- what `dataplane.kernel.build` builds from the simulator's fabric is only what no Docker
  Engine makes (`host_fabric`): each host's namespace with its loopback and underlay
  port and their routes, the externals, the gateway and the underlay; every container
  namespace, docker0, `br-*` bridge and veth of the simulator's fabric is left out;
- the containers' namespaces are the Engine's (named `<run id>-pod-<host>.<name>` with
  `netns.adopt`), mapped to the simulator's container namespaces by host and container
  name; a container of the model that the Engine did not make is an error;
- no rule is loaded by the project: every iptables rule is dockerd's, but the
  scenario's `dockerUser` rules, which go into dockerd's `DOCKER-USER` chain.
Its `close()` kills every process of the run (`dataplane.kernel.leftovers`: dockerd,
containerd, the shims, docker-proxy, the containers) and removes its state directory and
cgroups before the namespaces go.
"""

from __future__ import annotations

from dataplane.fabric import Fabric
from dataplane.kernel import dns, leftovers, netns, sysctls
from dataplane.kernel.build import (
    NAME_MAX,
    KernelCluster,
    Netlink,
    doing,
    fit,
    short_id,
)
from dataplane.kernel.docker_engine import UPSTREAM_DNS, Engine, EngineError, Seen
from dataplane.kernel.live import LiveCluster
from dataplane.kernel.probe import Listeners
from dataplane.kernel.report import Part
from dataplane.netns import Kind, Netns, NetnsKind
from dataplane.routing import RoutingTable
from topology.docker import EMBEDDED_DNS_OWNER, DockerRuntime

# the devices of a host that are the Engine's, never built from the simulator's fabric
ENGINE_KINDS = frozenset({Kind.BRIDGE, Kind.VETH})


def host_fabric(fabric: Fabric) -> Fabric:
    """The part of `fabric` that no Docker Engine makes (see the module docstring)."""
    out = Fabric(fabric.cluster, segments=fabric.segments)
    for ns in fabric.netns.values():
        if ns.kind is NetnsKind.POD:
            continue  # a container's namespace: the Engine's
        if ns.kind is not NetnsKind.HOST:
            out.add(ns)
            continue
        kept = {n: i for n, i in ns.interfaces.items() if i.kind not in ENGINE_KINDS}
        routes = RoutingTable()
        for route in ns.routes:
            if route.blackhole or route.oif in kept:
                routes.add(route)
        host = Netns(ns.id, ns.kind, ns.node, ns.label, routes=routes)
        host.forwarding = ns.forwarding
        host.permanent_neigh = {
            k: v for k, v in ns.permanent_neigh.items() if k[0] in kept
        }
        for iface in kept.values():
            host.add_interface(iface)
        out.add(host)
    return out


class DockerLive(LiveCluster):
    """One `runtime: docker` fabric on this kernel (see the module docstring)."""

    def __init__(self, fabric: Fabric, scenario: str = "") -> None:
        super().__init__(fabric, scenario)
        self.engine: Engine | None = None
        self.seen: list[Seen] = []  # every container as the Engine reports it

    def _build(self) -> None:
        runtime = self.fabric.cluster.docker
        assert runtime is not None
        self.kc = KernelCluster.build(host_fabric(self.fabric), self.run_id)
        kc = self.kc
        hosts = {
            ns.node: kc.names[ns.id]
            for ns in self.fabric.netns.values()
            if ns.kind is NetnsKind.HOST
        }
        self.engine = Engine(
            self.run_id,
            leftovers.state_dir(self.run_id),
            leftovers.cgroup_parent(self.run_id),
        )
        self.engine.start(hosts)
        self.engine.build(runtime.projects)
        self.engine.user_rules(runtime.hosts)
        self.seen = self.engine.inspect()
        self.built = built_parts(runtime, self.seen)
        self._adopt(hosts)
        self.listeners = Listeners()
        for ns in self.fabric.netns.values():
            for (protocol, port), sock in ns.sockets.items():
                if sock.owner == EMBEDDED_DNS_OWNER:
                    # the Engine's embedded DNS answers 127.0.0.11:53 (its nat rules
                    # in the container's namespace take the queries first); this
                    # socket is its upstream (`UPSTREAM_DNS`), where it forwards from
                    # the same namespace the names it does not know: NXDOMAIN.  Bound
                    # to that address only: the container's own addresses have no
                    # server on 53, in the model as in the Engine
                    self.listeners.listen(
                        kc.names[ns.id], protocol, port, self._upstream, UPSTREAM_DNS
                    )
                    continue
                self.listeners.listen(kc.names[ns.id], protocol, port)
        self.listeners.start()
        for name in hosts.values():
            with netns.inside(name):
                self.conntrack[name] = netns.conntrack_socket()

    def _upstream(self, data: bytes) -> bytes | None:
        return dns.answer(self.fabric.cluster, data)

    def _adopt(self, hosts: dict[str, str]) -> None:
        """Name each container namespace of the model after the Engine's container of
        the same host and name, and set it up as `build` sets up its own (sysctls)."""
        assert self.kc is not None
        kc = self.kc
        by_name = {(c.host, c.name): c for c in self.seen}
        room = NAME_MAX - len(self.run_id) - 1
        for ns in self.fabric.netns.values():
            if ns.kind is not NetnsKind.POD:
                continue
            assert ns.pod is not None
            seen = by_name.get((ns.node, ns.pod.name))
            if seen is None:
                raise EngineError(
                    ns.node,
                    f"finding container {ns.pod.name}",
                    "the simulator has it, Docker Engine did not make it (made: "
                    + ", ".join(n for h, n in by_name if h == ns.node)
                    + ")",
                )
            if seen.network_mode == "host":
                kc.names[ns.id] = hosts[ns.node]
                continue
            name = f"{self.run_id}-{fit(short_id(ns), room)}"
            with doing(name, f"naming the namespace of container {seen.name}"):
                netns.adopt(name, seen.pid)
            kc.names[ns.id] = name
            self._tune(name, ns)

    def _tune(self, name: str, ns: Netns) -> None:
        """What `build` sets in its own namespaces (`sysctls`: Docker Engine has set
        the container's own already)."""
        assert self.kc is not None
        with netns.inside(name):
            for key, value in sysctls.namespace(ns):
                netns.sysctl(key, value)
            for iface in ns.interfaces.values():
                for k, v in sysctls.device(iface):
                    netns.sysctl(k, v)
            self.kc.ipr[name] = Netlink()  # its learnt ARP entries are forgotten too

    def load_rules(self) -> None:
        """Nothing: every rule of a Docker host is dockerd's own (the `dockerUser` ones
        are inserted once, when the Engine has made the projects)."""

    def close(self) -> None:
        """Kill every process of the run and remove its state, then the namespaces."""
        try:
            if self.run_id:
                leftovers.remove(self.run_id)
            if self.engine is not None:
                self.engine.forget()
        finally:
            self.engine = None
            super().close()


def built_parts(runtime: DockerRuntime, seen: list[Seen]) -> list[Part]:
    """What the simulator's Docker model says each container is, beside what Docker
    Engine made of the same compose input: its address on each network and its
    published ports (`HOST_IP:PORT/PROTO -> PORT/PROTO`)."""
    by_name = {(c.host, c.name): c for c in seen}
    out: list[Part] = []
    for host in runtime.hosts.values():
        for c in host.containers:
            who = f"{host.name}/{c.name}"
            made = by_name.get((host.name, c.name))
            if made is None:
                out.append(Part(f"container {who}", "made", "not made"))
                continue
            model = {a.network: str(a.ip) for a in c.attachments}
            for net in sorted(model.keys() | made.addresses.keys()):
                out.append(
                    Part(
                        f"address of {who} on {net}",
                        model.get(net, "-"),
                        made.addresses.get(net, "-"),
                    )
                )
            ports = {
                p.host_text: f"{p.container_port}/{p.protocol.value.lower()}"
                f" on {p.network}"
                for p in c.ports
            }
            on = {k: f"{v} on {made.port_network}" for k, v in made.ports.items()}
            for key in sorted(ports.keys() | on.keys()):
                out.append(
                    Part(
                        f"published {key} of {who}",
                        ports.get(key, "-"),
                        on.get(key, "-"),
                    )
                )
    return out
