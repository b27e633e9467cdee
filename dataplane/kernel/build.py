"""The simulator's fabric, built on this machine's kernel with pyroute2.

Nothing is derived again here: every namespace, interface (name, MAC, MTU, addresses),
veth pair, bridge port (with hairpin), VXLAN device (VNI, port, local address, FDB and
permanent neighbour entries), IP-in-IP device (Calico's `tunl0`), proxy ARP on a device,
and route (blackhole and `proto bird` ones included) comes from
`dataplane.fabric.build_fabric`, so the kernel and the simulator walk the same thing.  A
kernel without the ipip (geneve) module refuses `tunl0` (`cilium_geneve`):
`NoTunnelModule`, which `dataplane verify` reports as "not comparable".  What the fabric calls an L2 segment (the
underlay switch) becomes a namespace holding a bridge `br0`, and every interface plugged
into the segment becomes a veth pair whose other end is a port of that bridge.

Kernel namespaces are named `<run id>-<short id>` (`dpv1a2b-node-1`,
`dpv1a2b-pod-default.a`, `dpv1a2b-gateway`, `dpv1a2b-ext-web`, `dpv1a2b-underlay`), so
`ip netns exec` finds them.  Each namespace starts cold (no neighbours, no FDB entries, no
conntrack), as every walk of the simulator does, with the kernel's default sysctls plus
exactly those that a node's components set (`dataplane.kernel.sysctls`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from dataplane import portmap
from dataplane.fabric import Fabric
from dataplane.kernel import cniplugins, flanneld, netns, owner, signals, sysctls
from dataplane.netns import Interface, Kind, Netns, NetnsKind

UNDERLAY_BRIDGE = "br0"
RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80
NUD_INCOMPLETE = 0x01
RT_SCOPE_LINK = 253
RTN_BLACKHOLE = 6
# /etc/iproute2/rt_protos: the routing daemons' numbers (Calico's BIRD, Felix's own 80)
RT_PROTOS = {"static": 4, "boot": 3, "bird": 12, "80": 80}
ATF_PERM = 0x04  # /proc/net/arp flags: a permanent entry (linux/if_arp.h)
# A namespace name is a file in /run/netns: at most NAME_MAX (255, linux/limits.h) bytes;
# an interface name at most IFNAMSIZ - 1 (15, linux/if.h) bytes.
NAME_MAX = 255
IFNAMSIZ = 16


class KernelBuildError(OSError):
    """The kernel refused a step of the build: which namespace, what, and why."""

    def __init__(self, code: int, kernel_ns: str, what: str, why: str) -> None:
        super().__init__(code, why)
        self.kernel_ns, self.what = kernel_ns, what
        name = errno.errorcode.get(code, str(code))
        self.message = f"namespace {kernel_ns}: {what}: {why} ({name})"

    def __str__(self) -> str:
        return self.message


class NoTunnelModule(KernelBuildError):
    """This kernel cannot make a tunnel device the fabric has (no ipip or geneve
    module)."""


class IpamDisagrees(KernelBuildError):
    """host-local handed a pod another address than the simulator's IPAM."""


# What built each part of the fabric on the kernel (`verify -o json`: `kernel_side`)
FROM_MODEL = "pyroute2 from the simulator's own model (dataplane.fabric.build_fabric)"


@contextmanager
def doing(kernel_ns: str, what: str) -> Iterator[None]:
    """Turn a refusal (pyroute2's NetlinkError, an OSError) into a `KernelBuildError`
    that names the namespace and the step."""
    try:
        yield
    except KernelBuildError:
        raise
    except NetlinkError as err:
        code = int(err.code)
        why = os.strerror(code) if code > 0 else str(err)
        raise KernelBuildError(code, kernel_ns, what, why) from err
    except OSError as err:
        code = err.errno or errno.EIO
        raise KernelBuildError(code, kernel_ns, what, err.strerror or str(err)) from err


@contextmanager
def adding_tunnel(kernel_ns: str, what: str, module: str) -> Iterator[None]:
    """`doing`, for a tunnel device that needs a kernel module: a refusal is a
    `NoTunnelModule` ("this kernel has no MODULE module"), not comparable."""
    try:
        with doing(kernel_ns, what):
            yield
    except KernelBuildError as err:
        raise NoTunnelModule(
            err.errno or errno.EOPNOTSUPP,
            kernel_ns,
            what,
            f"this kernel has no {module} module",
        ) from err


class Netlink:
    """pyroute2's IPRoute for one namespace (opened by a thread inside it), each call
    finishing before a stop signal is raised (`signals.shielded`)."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute

        with signals.shielded():
            self._ipr = IPRoute()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._ipr, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with signals.shielded():
                return method(*args, **kwargs)

        return call


def fit(name: str, limit: int) -> str:
    """`name`, or, when it is longer than `limit` bytes, its start and a hash of all of
    it (deterministic: the same model name always gives the same kernel name).

    >>> fit("node-1", 15)
    'node-1'
    >>> fit("pod-default." + "a" * 250, 40)
    'pod-default.aaaaaaaaaaaaaaaaaaa~a3cf3826'
    """
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    head = name.encode()[: limit - len(digest) - 1].decode(errors="ignore")
    return f"{head}~{digest}"


def short_id(ns: Netns) -> str:
    """The readable part of a kernel namespace name.

    >>> from dataplane.netns import NetnsKind
    >>> short_id(Netns("pod:default/a", NetnsKind.POD, "node-1", ""))
    'pod-default.a'
    """
    if ns.kind is NetnsKind.POD:
        return "pod-" + ns.id.removeprefix("pod:").replace("/", ".", 1)
    if ns.kind is NetnsKind.EXTERNAL:
        return "ext-" + ns.id.removeprefix("external:")
    return ns.id


@dataclass(slots=True)
class KernelCluster:
    """A fabric built in real namespaces; `close()` removes every one of them."""

    run_id: str
    fabric: Fabric
    claim: owner.Claim | None = None  # the owner record, when this cluster made it
    names: dict[str, str] = field(default_factory=dict)  # fabric netns id -> kernel
    segments: dict[str, str] = field(default_factory=dict)  # segment -> kernel netns
    ports: dict[tuple[str, str], str] = field(default_factory=dict)  # segment port
    shortened: dict[str, str] = field(default_factory=dict)  # kernel name cut -> model
    ipr: dict[str, Netlink] = field(default_factory=dict)  # kernel netns -> IPRoute
    ifindex: dict[tuple[str, str], int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    # the upstream CNI plugins (flannel profiles): who runs them, which fabric netns ids
    # they attached (pods), and the host devices they made (fabric netns id -> ifnames)
    cni: cniplugins.CniRuntime | None = None
    own_cni: bool = False  # this cluster made `cni` (and removes its state)
    attached: set[str] = field(default_factory=set)
    plugin_made: dict[str, set[str]] = field(default_factory=dict)
    del_errors: list[str] = field(default_factory=list)  # CNI DELs that failed
    # host-local chose another address than the model's: the model's was asked for
    ipam_asked: list[str] = field(default_factory=list)

    # -- names -----------------------------------------------------------------------------
    def name_of(self, fabric_id: str) -> str:
        return self.names[fabric_id]

    def _assign_names(self) -> None:
        room = NAME_MAX - len(self.run_id) - 1 - len("~99")
        taken: set[str] = set()
        for ns in self.fabric.netns.values():
            base = fit(short_id(ns), room)
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base}~{n}"
            taken.add(name)
            self.names[ns.id] = f"{self.run_id}-{name}"
            if base != short_id(ns):
                self.shortened[self.names[ns.id]] = ns.id
        for seg in self.fabric.segments:
            name = fit(seg, room) if seg not in taken else f"{fit(seg, room)}~seg"
            self.segments[seg] = f"{self.run_id}-{name}"
            for i, (ns_id, ifname) in enumerate(
                self.fabric.segments[seg].ports.items()
            ):
                node = self.fabric.netns[ns_id].node
                port = f"u-{node}"
                self.ports[(ns_id, ifname)] = port if len(port) < IFNAMSIZ else f"u{i}"

    # -- building --------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        fabric: Fabric,
        run_id: str | None = None,
        cni: cniplugins.CniRuntime | None = None,
    ) -> KernelCluster:
        """Create every namespace, device, address, route and neighbour of `fabric`,
        under `run_id` (the caller's claim), or under a run id it claims itself
        (`owner.claim`: the owner record, released by `close()`).  The pods of the
        flannel profiles are attached by the upstream CNI plugins (`cniplugins`), run
        by `cni` (the caller's, kept across rebuilds) or by a runtime of this cluster.

        On any failure what was made so far is removed (CNI DEL, then the namespaces)
        before the error propagates; a refusal of the kernel is a `KernelBuildError`
        naming the namespace and the step.
        """
        claim = owner.claim() if run_id is None else None
        kc = cls(claim.run_id if claim is not None else str(run_id), fabric, claim)
        plugins = cniplugins.uses_plugins(fabric.cluster.config)
        if (plugins or portmap.table(fabric.cluster)) and not cniplugins.missing():
            kc.own_cni = cni is None
            kc.cni = cni if cni is not None else cniplugins.CniRuntime(kc.run_id)
        if plugins and kc.cni is not None:
            kc.attached = {
                ns.id for ns in fabric.netns.values() if ns.kind is NetnsKind.POD
            }
        kc._assign_names()
        try:
            kc._build()
        except BaseException:
            kc.close()
            raise
        return kc

    def _create_ns(self, name: str, ns: Netns | None) -> None:
        with doing(name, "creating the namespace"):
            netns.create(name)
        self.created.append(name)
        with netns.inside(name):
            for key, value in sysctls.namespace(ns) if ns is not None else []:
                with doing(name, f"setting sysctl {_dotted(key)} = {value}"):
                    netns.sysctl(key, value)
            with doing(name, "opening a netlink socket"):
                self.ipr[name] = Netlink()

    def _build(self) -> None:
        fab = self.fabric
        for name in self.segments.values():
            self._create_ns(name, None)
            with doing(name, f"adding bridge {UNDERLAY_BRIDGE}"):
                self.ipr[name].link(
                    "add",
                    ifname=UNDERLAY_BRIDGE,
                    kind="bridge",
                    mtu=fab.cluster.config.mtu,
                    br_forward_delay=0,
                    br_stp_state=0,
                )
        for ns in fab.netns.values():
            self._create_ns(self.names[ns.id], ns)
        by_plugin = {fab.netns[p].node for p in self.attached}
        for ns in fab.netns.values():  # bridges first: veths plug into them
            for iface in ns.interfaces.values():
                if iface.kind is Kind.BRIDGE and ns.id in by_plugin:
                    # the bridge plugin makes it with the first pod (ensureBridge)
                    self.plugin_made.setdefault(ns.id, set()).add(iface.ifname)
                elif iface.kind is Kind.BRIDGE:
                    with doing(self.names[ns.id], f"adding bridge {iface.ifname}"):
                        self._ip(ns).link(
                            "add",
                            ifname=iface.ifname,
                            kind="bridge",
                            address=iface.mac,
                            mtu=iface.mtu,
                            br_forward_delay=0,
                            br_stp_state=0,
                            br_nf_call_iptables=1,
                        )
        done: set[tuple[str, str]] = set()
        for ns in fab.netns.values():
            for iface in ns.interfaces.values():
                if iface.kind is Kind.VETH and (ns.id, iface.ifname) not in done:
                    assert iface.peer is not None
                    if ns.id in self.attached or iface.peer[0] in self.attached:
                        continue  # the bridge plugin makes this pair
                    done.update({(ns.id, iface.ifname), iface.peer})
                    self._veth(ns, iface)
                elif iface.kind is Kind.ETH:
                    self._segment_port(ns, iface)
        by_flanneld = flanneld.programs(fab.cluster.config)
        for ns in fab.netns.values():  # VXLAN devices need their underlay device
            for iface in ns.interfaces.values():
                if iface.kind is Kind.VXLAN and by_flanneld:
                    # flanneld's vxlan backend makes it (`_flanneld`)
                    self.plugin_made.setdefault(ns.id, set()).add(iface.ifname)
                elif iface.kind is Kind.VXLAN:
                    self._vxlan(ns, iface)
                elif iface.kind is Kind.IPIP:
                    self._ipip(ns, iface)
                elif iface.kind is Kind.GENEVE:
                    self._geneve(ns, iface)
        self._attach_pods()
        for ns in fab.netns.values():
            self._configure(ns)
        for name in self.segments.values():
            ipr = self.ipr[name]
            for port in self.ports.values():
                idx = ipr.link_lookup(ifname=port)
                if idx:
                    with doing(name, f"plugging {port} into {UNDERLAY_BRIDGE}"):
                        ipr.link(
                            "set",
                            index=idx[0],
                            master=self._index(name, UNDERLAY_BRIDGE),
                            state="up",
                        )
            with doing(name, f"setting {UNDERLAY_BRIDGE} and lo up"):
                ipr.link("set", index=self._index(name, UNDERLAY_BRIDGE), state="up")
                ipr.link("set", index=self._index(name, "lo"), state="up")
        for ns in fab.netns.values():
            self._routes(ns)
            if by_flanneld and ns.kind is NetnsKind.HOST:
                self._flanneld(ns)
        self._portmap_alone()
        self.settle()

    def _portmap_alone(self) -> None:
        """hostPorts of pods the model built (Calico's, whose own CNI plugin is not
        packaged): the real portmap plugin, given the result Calico's plugin would
        have returned (the pod's /32 on eth0) as `prevResult`."""
        fab = self.fabric
        if self.cni is None:
            return
        for ns in fab.netns.values():
            if ns.kind is not NetnsKind.POD or ns.id in self.attached:
                continue
            assert ns.pod is not None
            found = portmap.mappings(fab.cluster, ns.pod)
            if not found:
                continue
            node_ns, pod_ns = self.names[ns.node], self.names[ns.id]
            try:
                self.cni.attach_portmap(
                    portmap.network_name(fab.cluster),
                    ns.pod.key,
                    ns.node,
                    node_ns,
                    pod_ns,
                    IPv4Interface(f"{ns.pod.ip}/{found[0].network.prefixlen}"),
                    [m.runtime_config() for m in found],
                )
            except cniplugins.CniError as err:
                raise KernelBuildError(
                    errno.EIO, node_ns, "running the CNI plugins", err.strerror or ""
                ) from err

    def forget_neighbours(self) -> int:
        """Delete every neighbour entry the kernel learnt, in every namespace (the
        PERMANENT ones the fabric programs stay); how many.

        Each simulator walk starts with cold neighbour tables, and the kernel's ARP table
        (`arp_tbl`) is one for the whole machine, shared by every network namespace:
        `neigh_alloc` refuses a new entry once `gc_thresh3` (1024 by default, a sysctl
        that only the initial namespace shows, as net.ipv4.neigh.default.gc_thresh3)
        entries exist that are younger than 5 s (`neigh_forced_gc` spares those), and the
        packet is dropped ("neighbour table overflow", `table_fulls` in
        /proc/net/stat/arp_cache).  A batch of probes across a large cluster makes
        thousands of entries in a second; forgetting them between batches (which
        `dataplane.kernel.verify` sizes to the table) keeps every probe's state clean.
        """
        removed = 0
        for name, ipr in self.ipr.items():
            with netns.inside(name):
                lines = Path("/proc/thread-self/net/arp").read_text().splitlines()[1:]
            for line in lines:
                ip, _hw, flags, _mac, _mask, dev = line.split()
                if int(flags, 16) & ATF_PERM:
                    continue
                with suppress(NetlinkError):  # gone already (timer, device down)
                    ipr.neigh("del", dst=ip, ifindex=self._index(name, dev))
                removed += 1
        return removed

    def resolving(self) -> bool:
        """Whether some namespace of the cluster still resolves a neighbour (an
        INCOMPLETE entry: packets queued for it, `ip neigh` shows them): an unanswered
        one fails only after `sysctls.NEIGHBOUR_FAILS`, and then its packets get "host
        unreachable"."""
        for ipr in self.ipr.values():
            with suppress(NetlinkError):
                if ipr.get_neighbours(family=socket.AF_INET, state=NUD_INCOMPLETE):
                    return True
        return False

    def settle(self) -> None:
        """Make every device's new carrier state take effect now (see `netns.sync_link`)."""
        for seg_ns in self.segments.values():
            self._sync(seg_ns, [UNDERLAY_BRIDGE, *self.ports.values()])
        for ns in self.fabric.netns.values():
            self._sync(self.names[ns.id], list(ns.interfaces))

    def _sync(self, kernel_ns: str, ifnames: list[str]) -> None:
        with netns.inside(kernel_ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            for ifname in ifnames:
                netns.sync_link(sock, ifname)

    def _ip(self, ns: Netns) -> Any:
        return self.ipr[self.names[ns.id]]

    def _index(self, kernel_ns: str, ifname: str) -> int:
        known = self.ifindex.get((kernel_ns, ifname))
        if known is not None:
            return known
        found = self.ipr[kernel_ns].link_lookup(ifname=ifname)
        if not found:
            raise KernelBuildError(
                errno.ENODEV, kernel_ns, f"looking up {ifname}", "no such device"
            )
        self.ifindex[(kernel_ns, ifname)] = int(found[0])
        return int(found[0])

    def _fd(self, kernel_ns: str) -> int:
        return os.open(netns.path_of(kernel_ns), os.O_RDONLY | os.O_CLOEXEC)

    def _veth(self, ns: Netns, iface: Interface) -> None:
        assert iface.peer is not None
        peer_ns = self.fabric.netns[iface.peer[0]]
        peer = peer_ns.interfaces[iface.peer[1]]
        self._add_veth(
            ns, iface, self.names[peer_ns.id], peer.ifname, peer.mac, peer.mtu
        )

    def _segment_port(self, ns: Netns, iface: Interface) -> None:
        """A node's (or the gateway's) eth0, plugged into its segment's bridge."""
        port = self.ports[(ns.id, iface.ifname)]
        self._add_veth(
            ns, iface, self.segments[iface.segment or ""], port, None, iface.mtu
        )

    def _add_veth(
        self,
        ns: Netns,
        iface: Interface,
        peer_kernel_ns: str,
        peer_ifname: str,
        peer_mac: str | None,
        peer_mtu: int,
    ) -> None:
        """A veth pair: `iface` in `ns`, its peer created in `peer_kernel_ns`."""
        peer: dict[str, object] = {"ifname": peer_ifname, "mtu": peer_mtu}
        if peer_mac is not None:
            peer["address"] = peer_mac
        fd = self._fd(peer_kernel_ns)
        what = f"adding veth {iface.ifname} (peer {peer_ifname} in {peer_kernel_ns})"
        try:
            peer["net_ns_fd"] = fd
            with doing(self.names[ns.id], what):
                self._ip(ns).link(
                    "add",
                    ifname=iface.ifname,
                    kind="veth",
                    address=iface.mac,
                    mtu=iface.mtu,
                    peer=peer,
                )
        finally:
            os.close(fd)

    def _vxlan(self, ns: Netns, iface: Interface) -> None:
        ipr = self._ip(ns)
        with doing(self.names[ns.id], f"adding VXLAN device {iface.ifname}"):
            ipr.link(
                "add",
                ifname=iface.ifname,
                kind="vxlan",
                address=iface.mac,
                mtu=iface.mtu,
                vxlan_id=iface.vni,
                vxlan_port=iface.vxlan_port,
                vxlan_local=str(iface.vxlan_local),
                vxlan_link=self._index(self.names[ns.id], iface.vxlan_dev),
                vxlan_learning=0,  # flannel: `nolearning`, the FDB is programmed
            )

    def _geneve(self, ns: Netns, iface: Interface) -> None:
        """Cilium's cilium_geneve: a collect-metadata Geneve device on its port, as the
        agent makes it (pkg/datapath/linux: `geneve external dstport 6081`)."""
        name = self.names[ns.id]
        what = f"adding Geneve device {iface.ifname}"
        with adding_tunnel(name, what, "geneve"):
            self._ip(ns).link(
                "add",
                ifname=iface.ifname,
                kind="geneve",
                address=iface.mac,
                mtu=iface.mtu,
                geneve_collect_metadata=1,
                geneve_port=iface.vxlan_port,
            )

    def _ipip(self, ns: Netns, iface: Interface) -> None:
        """Calico's tunl0: the ipip module's fallback device, which it makes in every
        namespace once loaded (ipip_init_net); made here when it is not there yet."""
        ipr = self._ip(ns)
        name = self.names[ns.id]
        if not ipr.link_lookup(ifname=iface.ifname):
            what = f"adding IP-in-IP device {iface.ifname}"
            with adding_tunnel(name, what, "ipip"):
                ipr.link("add", ifname=iface.ifname, kind="ipip")
        with doing(name, f"setting the MTU of {iface.ifname}"):
            ipr.link("set", index=self._index(name, iface.ifname), mtu=iface.mtu)

    def _attach_pods(self) -> None:
        """CNI ADD for every pod the plugins attach (`cniplugins`), in the model's
        order, pods that held an address before a rebuild first; then the host end
        renamed to the model's name and host-local's address checked against the
        simulator's IPAM."""
        if self.cni is None:
            return
        fab, cfg = self.fabric, self.fabric.cluster.config
        pods = [fab.netns[p] for p in fab.netns if p in self.attached]
        held = self.cni.held
        pods.sort(key=lambda ns: _pod_key(ns) not in held)
        for ns in pods:
            key, eth0 = _pod_key(ns), ns.interfaces["eth0"]
            assert eth0.peer is not None
            node, host_veth = fab.netns[eth0.peer[0]], eth0.peer[1]
            ip = eth0.addrs[0].ip
            before = held.pop(key, None)
            again = before == (ns.node, ip)
            spec = fab.cluster.node(ns.node)
            node_ns, pod_ns = self.names[node.id], self.names[ns.id]
            try:
                assert ns.pod is not None
                ports = [
                    m.runtime_config() for m in portmap.mappings(fab.cluster, ns.pod)
                ]
                att = self.cni.attach(
                    cfg,
                    spec,
                    key,
                    node_ns,
                    pod_ns,
                    ports,
                    ask=ip if again else None,
                    keep_last=again,
                )
                why = cniplugins.differs(att, ip)
                if why is not None and not again:
                    # not host-local's to choose: the scenario gives the address (a
                    # dump's status.podIP, a hand-made cluster), or the IPAMs differ
                    self.ipam_asked.append(why)
                    self.del_errors += self.cni.detach(att)
                    att = self.cni.attach(
                        cfg, spec, key, node_ns, pod_ns, ports, ask=ip
                    )
                    why = cniplugins.differs(att, ip)
            except cniplugins.CniError as err:
                raise KernelBuildError(
                    errno.EIO, node_ns, "running the CNI plugins", err.strerror or ""
                ) from err
            if why is not None:
                raise IpamDisagrees(errno.EADDRNOTAVAIL, pod_ns, "CNI ADD", why)
            self.plugin_made.setdefault(ns.id, set()).update(ns.interfaces)
            self.plugin_made.setdefault(node.id, set()).add(host_veth)
            ipr = self.ipr[node_ns]
            with doing(node_ns, f"renaming {att.host_veth} to {host_veth}"):
                idx = self._index(node_ns, att.host_veth)
                ipr.link("set", index=idx, state="down")
                ipr.link("set", index=idx, ifname=host_veth)
                ipr.link("set", index=idx, state="up")
                self.ifindex[(node_ns, host_veth)] = idx

    def _flanneld(self, ns: Netns) -> None:
        """What flanneld's backend programs on a node, from the leases (`flanneld`)."""
        name = self.names[ns.id]
        with doing(
            name, f"programming flanneld's {self.fabric.cluster.config.network}"
        ):
            flanneld.program(
                self.ipr[name],
                lambda ifname: self._index(name, ifname),
                self.fabric.cluster.config,
                ns.node,
            )

    def kernel_side(self) -> dict[str, str]:
        """What built each part of the fabric on this kernel (`verify -o json`)."""
        cfg = self.fabric.cluster.config
        parts: dict[str, str] = {}
        if self.cni is not None:
            version = cniplugins.version()
            parts["pod interfaces, addresses, routes, bridge ports"] = (
                f"the upstream CNI plugins {version} (Debian {cniplugins.PACKAGE}):"
                " bridge + host-local as flannel delegates them, portmap chained,"
                " loopback"
            )
            asked = "; ".join(self.ipam_asked)
            parts["pod addresses (IPAM)"] = (
                f"CNI host-local plugin {version}, checked against the simulator's IPAM"
                + (
                    f"; the model's address asked for where it chose otherwise: {asked}"
                    if asked
                    else ""
                )
            )
        if self.cni is not None and portmap.table(self.fabric.cluster):
            parts["hostPort nat rules"] = (
                f"the CNI portmap plugin {cniplugins.version()} with kubelet's"
                " portMappings (iptables-nft)"
            )
        if self.cni is None and cniplugins.uses_plugins(cfg):
            parts["pod interfaces, addresses, routes, bridge ports"] = (
                f"{FROM_MODEL}: {cniplugins.missing()}"
            )
        if flanneld.programs(cfg):
            parts[
                f"flannel {cfg.network}: node routes to the other podCIDRs"
                + (
                    ", flannel.1, its neighbours and FDB"
                    if cfg.network.value == "vxlan"
                    else ""
                )
            ] = (
                "flanneld's backend rules (dataplane/kernel/flanneld.py) applied to the"
                " node leases, not the simulator's fabric (flanneld is not packaged)"
            )
        parts["namespaces, node devices, underlay, other routes and neighbours"] = (
            FROM_MODEL
        )
        return parts

    def _configure(self, ns: Netns) -> None:
        """Device sysctls (proxy ARP), addresses, bridge masters, hairpin, and every
        device up (those the CNI plugins made get nothing more)."""
        ipr = self._ip(ns)
        name = self.names[ns.id]
        with netns.inside(name):
            for iface in ns.interfaces.values():
                for key, value in sysctls.device(iface):
                    with doing(name, f"setting sysctl {_dotted(key)} = {value}"):
                        netns.sysctl(key, value)
        made = self.plugin_made.get(ns.id, set())
        for iface in ns.interfaces.values():
            if iface.ifname in made:
                continue
            idx = self._index(name, iface.ifname)
            for addr in iface.addrs:
                if iface.kind is Kind.LOOPBACK:
                    continue  # lo has 127.0.0.1/8 already
                with doing(name, f"adding address {addr} to {iface.ifname}"):
                    ipr.addr(
                        "add",
                        index=idx,
                        address=str(addr.ip),
                        prefixlen=addr.network.prefixlen,
                    )
            with doing(name, f"setting {iface.ifname} up"):
                if iface.master is not None:
                    ipr.link("set", index=idx, master=self._index(name, iface.master))
                    if iface.hairpin:
                        ipr.brport(
                            "set", index=idx, mode=1
                        )  # IFLA_BRPORT_MODE: hairpin
                ipr.link("set", index=idx, state="up")

    def _routes(self, ns: Netns) -> None:
        ipr = self._ip(ns)
        name = self.names[ns.id]
        cfg = self.fabric.cluster.config
        by_flanneld = flanneld.programs(cfg) and ns.kind is NetnsKind.HOST
        overlay = flanneld.overlay_routes(cfg, ns.node) if by_flanneld else set()
        for route in ns.routes if ns.id not in self.attached else ():
            if is_automatic(ns, route.dst, route.oif, route.proto):
                continue  # the kernel added it with the address
            if route.dst in overlay:
                continue  # flanneld's (`_flanneld`)
            spec: dict[str, Any] = {"dst": str(route.dst)}
            if route.proto in RT_PROTOS and route.proto != "static":
                spec["proto"] = RT_PROTOS[route.proto]
            if route.blackhole:
                spec["type"] = RTN_BLACKHOLE
                with doing(name, f"adding route {route}"):
                    ipr.route("add", **spec)
                continue
            spec["oif"] = self._index(name, route.oif)
            if route.nexthops:
                # `ip route add DST nexthop via A dev eth0 nexthop via B dev eth0`: the
                # cloud load balancer's routes (dataplane.cloudlb); the kernel hashes flows.
                spec["multipath"] = [
                    {"gateway": str(h), "oif": spec["oif"]} for h in route.nexthops
                ]
                del spec["oif"]
            elif route.via is not None:
                spec["gateway"] = str(route.via)
            else:
                spec["scope"] = RT_SCOPE_LINK
            if route.onlink:
                spec["flags"] = RTNH_F_ONLINK
            if route.src is not None:
                spec["prefsrc"] = str(route.src)
            if route.metric:
                spec["priority"] = route.metric
            via = f" via {route.via}" if route.via is not None else ""
            with doing(name, f"adding route {route.dst}{via} dev {route.oif}"):
                ipr.route("add", **spec)
        for (ifname, ip), mac in ns.permanent_neigh.items():
            if by_flanneld and ifname == flanneld.VTEP:
                continue
            with doing(name, f"adding neighbour {ip} lladdr {mac} dev {ifname}"):
                ipr.neigh(
                    "add",
                    dst=ip,
                    lladdr=mac,
                    ifindex=self._index(name, ifname),
                    state=NUD_PERMANENT,
                )
        for (ns_id, mac), remote in self.fabric.vxlan_fdb.items():
            if ns_id != ns.id or by_flanneld:
                continue
            vxlan = next(i for i in ns.interfaces.values() if i.kind is Kind.VXLAN)
            with doing(name, f"adding fdb {mac} dst {remote} dev {vxlan.ifname}"):
                ipr.fdb(
                    "add",
                    ifindex=self._index(name, vxlan.ifname),
                    lladdr=mac,
                    dst=remote,
                )

    # -- tearing down ----------------------------------------------------------------------
    def close(self) -> None:
        """Remove every namespace this cluster created (their devices go with them),
        then its owner record if it made one."""
        for ipr in self.ipr.values():
            ipr.close()
        self.ipr.clear()
        if self.cni is not None:
            self.del_errors += self.cni.detach_all()
            if self.own_cni:
                cniplugins.remove_state(self.run_id)
        for name in self.created:
            netns.remove(name)
        self.created.clear()
        if self.claim is not None:
            netns.remove_all(f"{self.run_id}-")
            self.claim.release()

    def all_names(self) -> list[str]:
        return [*self.segments.values(), *self.names.values()]


def _pod_key(ns: Netns) -> str:
    """`NS/NAME` of a pod's namespace."""
    return ns.pod.key if ns.pod is not None else ns.id.removeprefix("pod:")


def is_automatic(ns: Netns, dst: object, oif: str, proto: str) -> bool:
    """Whether the kernel makes this route itself: the prefix route of an address."""
    if proto != "kernel":
        return False
    iface = ns.interfaces.get(oif)
    if iface is None:
        return False
    return any(
        isinstance(a, IPv4Interface) and a.network == dst and a.network.prefixlen < 32
        for a in iface.addrs
    )


def _dotted(key: str | tuple[str, ...]) -> str:
    return key if isinstance(key, str) else ".".join(key)


def has_ip_vs() -> bool:
    """Whether this kernel has IPVS (kube-proxy's ipvs mode): the ip_vs module loaded or
    built in, which makes `/proc/net/ip_vs` (in every namespace) and `/sys/module/ip_vs`
    (its parameters, such as conn_tab_bits)."""
    return Path("/proc/net/ip_vs").exists() or Path("/sys/module/ip_vs").exists()


def has_ipip() -> bool:
    """Whether this kernel makes IP-in-IP devices (the ipip module may be missing): tried
    in a namespace of its own under the project's prefix, removed at once."""
    claim = owner.claim("ipip check")
    name = f"{claim.run_id}-ipipcheck"
    try:
        netns.create(name)
        with netns.inside(name):
            ipr = Netlink()
        try:
            if ipr.link_lookup(ifname="tunl0"):
                return True  # the module is loaded: its fallback device is here
            ipr.link("add", ifname="tunl0", kind="ipip")
            return True
        except NetlinkError:
            return False
        finally:
            ipr.close()
    finally:
        netns.remove(name)
        claim.release()
