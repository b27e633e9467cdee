"""A cluster running on this kernel: namespaces, listeners and rules, and jobs run on it.

`LiveCluster` follows the simulator: it is built from the simulator's fabric, takes every
later fabric (after an `apply`, `delete` or `label` step) and rebuilds what changed: the
namespaces when pods or nodes moved, otherwise only the nftables rules of every node.  It
always ends removed (`close()`, also on SIGINT and SIGTERM through the caller's `finally`)
unless asked to keep it.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dataplane.fabric import Fabric, layout_of
from dataplane.kernel import cniplugins, dns, netns, nft, owner, sysctls
from dataplane.kernel.build import KernelCluster
from dataplane.kernel.capture import Captures
from dataplane.kernel.felix import add_felix_rules
from dataplane.kernel.policies import add_policy_rules
from dataplane.kernel.probe import (
    DEFAULT_TIMEOUT,
    Job,
    KernelVerdict,
    Listeners,
    run_jobs,
)
from dataplane.kernel.report import Part
from dataplane.kernel.services import (
    ServiceRules,
    add_masquerade,
    add_service_rules,
)
from dataplane.netns import Kind, NetnsKind
from topology.workload import COREDNS


@dataclass(frozen=True, slots=True)
class Flow:
    """One conntrack entry: the original direction and the reply's source (the
    endpoint, after a DNAT)."""

    proto: str
    src: str
    sport: int
    dst: str
    dport: int
    reply_src: str
    node: str = ""  # the node whose table holds it


def parse_flow(line: str, node: str = "") -> Flow | None:
    """A line of `conntrack -L`.

    >>> parse_flow("tcp      6 119 SYN_SENT src=10.0.1.3 dst=10.96.0.20 sport=41000 "
    ...     "dport=80 [UNREPLIED] src=10.0.2.2 dst=10.0.1.3 sport=8080 dport=41000 mark=0",
    ...     "node-1")
    Flow(proto='tcp', src='10.0.1.3', sport=41000, dst='10.96.0.20', dport=80, reply_src='10.0.2.2', node='node-1')
    """
    words = line.split()
    values: dict[str, list[str]] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if eq:
            values.setdefault(key, []).append(value)
    src, dst, sport, dport = (
        values.get(k, []) for k in ("src", "dst", "sport", "dport")
    )
    if not words or len(src) < 2 or len(dst) < 1 or not sport or not dport:
        return None
    return Flow(words[0], src[0], int(sport[0]), dst[0], int(dport[0]), src[1], node)


@dataclass(frozen=True, slots=True)
class Pin:
    """Send a probe's connection to the endpoint the simulator chose for it."""

    service: str  # NS/NAME
    port_index: int
    pod: str  # NS/NAME of the endpoint
    # The source address the connection has where kube-proxy picks, when not the
    # client's own: a client masqueraded on the way (a pod to another node's nodePort
    # leaves its node SNATed) reaches the picking node from that node's address.
    saddr: str | None = None
    daddr: str = ""  # the Service address and port the client connects to
    dport: int = 0


class LiveCluster:
    """One fabric on this kernel (see the module docstring)."""

    def __init__(self, fabric: Fabric, scenario: str = "") -> None:
        self.fabric = fabric
        self.scenario = scenario  # written into the owner record
        self.claim: owner.Claim | None = None
        self.run_id = ""
        self.reaped: list[owner.RunSet] = []  # orphaned sets removed before the build
        self.kc: KernelCluster | None = None
        # the runtime's CNI state (host-local's), kept across rebuilds as a node keeps
        # /var/lib/cni while pods come and go
        self.cni: cniplugins.CniRuntime | None = None
        self.listeners: Listeners | None = None
        self.captures: Captures | None = None  # every device, for the devices crossed
        # per node (its kernel netns): the Service rules (for pins), a conntrack socket
        self.services: dict[str, ServiceRules] = {}
        self.conntrack: dict[str, socket.socket] = {}
        self._layout: tuple[object, ...] = ()
        self._pins_loaded = False
        self.rebuilds = 0
        # what a builder other than the fabric made, beside the model (docker_live)
        self.built: list[Part] = []

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> LiveCluster:
        """Reap what provably ended runs left (`owner.reap`), claim a run id (its owner
        record is written before the first namespace), and build."""
        self.reaped, _left = owner.reap()
        self.claim = owner.claim(self.scenario)
        self.run_id = self.claim.run_id
        self.cni = cniplugins.CniRuntime(self.run_id)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        self.kc = KernelCluster.build(self.fabric, self.run_id, self.cni)
        self._layout = layout_of(self.fabric.cluster)
        self.listeners = Listeners()
        for ns in self.fabric.netns.values():
            for (protocol, port), sock in ns.sockets.items():
                app = self._coredns if sock.owner == COREDNS else None
                self.listeners.listen(self.kc.names[ns.id], protocol, port, app)
        self.listeners.start()
        self.captures = Captures(
            (self.kc.names[ns.id], ifname, (ns.id, ifname))
            for ns in self.fabric.netns.values()
            for ifname, iface in ns.interfaces.items()
            if iface.kind is not Kind.BRIDGE  # capture.py: a promiscuous bridge
        )
        self.load_rules()
        for ns in self.fabric.netns.values():
            if ns.kind is NetnsKind.HOST:
                with netns.inside(self.kc.names[ns.id]):
                    self.conntrack[self.kc.names[ns.id]] = netns.conntrack_socket()

    def forget_connections(self) -> None:
        """Empty every node's conntrack table: each simulator walk starts without
        connections, and a probe with fixed ports (a crafted or replayed packet) must not
        find the entry an earlier step left (it would pass as ESTABLISHED)."""
        for sock in self.conntrack.values():
            netns.flush_conntrack(sock)

    def forget_path_mtus(self, fabric_ids: Iterable[str]) -> None:
        """Drop the path MTU exceptions of these namespaces (`ip route flush cache`:
        writing net.ipv4.route.flush bumps fnhe_genid), so that the next probe sends as
        a fresh walk of the simulator does (dataplane.pmtu)."""
        assert self.kc is not None
        for fabric_id in sorted(set(fabric_ids)):
            with netns.inside(self.kc.names[fabric_id]):
                netns.sysctl("net.ipv4.route.flush", 1)

    def connections(self) -> list[Flow]:
        """Every node's conntrack entries now (`conntrack -L`, the conntrack tool), to
        read which endpoint kube-proxy's random pick chose for each connection."""
        assert self.kc is not None
        out: list[Flow] = []
        for ns in self.fabric.netns.values():
            if ns.kind is not NetnsKind.HOST:
                continue
            done = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.kc.names[ns.id],
                    "conntrack",
                    "-L",
                    "-f",
                    "ipv4",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            out += [
                f
                for line in done.stdout.splitlines()
                if (f := parse_flow(line, ns.node))
            ]
        return out

    def _coredns(self, data: bytes) -> bytes | None:
        return dns.answer(self.fabric.cluster, data)

    def load_rules(self) -> None:
        """Generate and load every node's table from the current cluster."""
        assert self.kc is not None
        self._pins_loaded = False  # a new table has empty pin maps
        cluster = self.fabric.cluster
        for ns in self.fabric.netns.values():
            if ns.kind is not NetnsKind.HOST:
                continue
            rs = nft.Ruleset()
            kernel_ns = self.kc.names[ns.id]
            self.services[kernel_ns] = add_service_rules(rs, cluster, ns)
            add_felix_rules(rs, cluster)
            add_policy_rules(rs, cluster, ns)
            add_masquerade(rs, cluster, ns)
            nft.load(kernel_ns, rs.commands())
            with netns.inside(kernel_ns):
                for key, value in sysctls.kube_proxy(cluster):
                    netns.sysctl(key, value)

    def update(self, fabric: Fabric) -> None:
        """Take the simulator's fabric after a change to the cluster."""
        layout = layout_of(fabric.cluster)
        self.fabric = fabric
        if layout != self._layout:
            self._teardown()
            self.rebuilds += 1
            self._build()
        else:
            self.load_rules()

    def _teardown(self) -> None:
        if self.captures is not None:
            self.captures.close()
            self.captures = None
        for sock in self.conntrack.values():
            sock.close()
        self.conntrack.clear()
        if self.listeners is not None:
            self.listeners.close()
            self.listeners = None
        if self.kc is not None:
            self.kc.close()
            self.kc = None
        self.services.clear()

    def close(self) -> None:
        """Remove every namespace of this run (whatever state it is in), then its owner
        record."""
        try:
            self._teardown()
        finally:
            if self.claim is not None:
                netns.remove_all(f"{self.run_id}-")
                cniplugins.remove_state(self.run_id)
                self.claim.release()

    def keep(self) -> list[str]:
        """Leave the namespaces up (`--keep`): the owner record says so; the names."""
        if self.claim is not None:
            self.claim.keep()
        return self.names()

    def names(self) -> list[str]:
        return self.kc.all_names() if self.kc is not None else []

    def kernel_ns(self, fabric_id: str) -> str:
        assert self.kc is not None
        return self.kc.names[fabric_id]

    # -- running jobs ----------------------------------------------------------------------
    def run(
        self,
        jobs: Sequence[Job],
        pins: Sequence[Pin | None] = (),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[KernelVerdict]:
        """Run `jobs` at once; `pins[i]` (if any) pins client `jobs[i]`'s connection."""
        try:
            pinned: list[tuple[Pin, tuple[str, str, int, str, int]]] = []
            for job, pin in zip(jobs, pins, strict=False):
                flow = job.flow() if pin is not None else None
                if pin is not None and flow is not None:
                    if pin.saddr is not None:
                        flow = (pin.saddr, *flow[1:])
                    pinned.append((pin, flow))
            if pinned or self._pins_loaded:  # a stale pin could catch a reused port
                for kernel_ns, rules in self.services.items():
                    cmds = rules.flush()
                    for pin, flow in pinned:
                        cmds += rules.pin(pin.service, pin.port_index, flow, pin.pod)
                    if cmds:
                        nft.load(kernel_ns, cmds)
                self._pins_loaded = bool(pinned)
            self.forget_connections()
            assert self.kc is not None
            self.kc.forget_neighbours()
        except BaseException:
            for job in jobs:
                job.close()
            raise
        return run_jobs(jobs, timeout, self.kc.resolving)
