"""The sysctls of a built cluster are the kernel's defaults for a new namespace, except
exactly those that `dataplane.kernel.sysctls` lists (issue 13): read back from /proc/sys
inside every namespace and compared with a namespace made fresh beside them."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dataplane.fabric import Fabric, build_fabric
from dataplane.kernel import netns, owner, sysctls
from dataplane.kernel.build import KernelCluster
from dataplane.netns import Kind, NetnsKind
from tests.dataplane.builders import tiny_cluster
from topology.cni_modes import CalicoMode, Cni
from topology.model import CalicoConfig, Cluster

pytestmark = pytest.mark.kernel

# values no setting decides: counters and what a device's own kind fixes
VOLATILE = {"nf_conntrack_count", "mtu", "stable_secret", "flush"}
Values = dict[tuple[str, ...], str]


def read_tree() -> Values:
    """Every readable sysctl under /proc/sys/net of the calling thread's namespace."""
    root = Path("/proc/sys/net")
    out: Values = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            path = Path(dirpath, f)
            if f in VOLATILE:
                continue
            try:
                out[path.relative_to("/proc/sys").parts] = " ".join(
                    path.read_text().split()
                )
            except OSError as err:  # write-only, or refused (EIO, EPERM)
                if err.errno not in (errno.EACCES, errno.EIO, errno.EPERM):
                    raise
    return out


def generic(key: tuple[str, ...], fresh: Values) -> tuple[str, ...]:
    """A device's key as what it is copied from at its creation: `conf/default`; for
    `neigh`, the table's parameters, which only the initial namespace shows as
    `neigh/default` (`neigh_parms_alloc` copies `arp_tbl.parms`), so a fresh
    namespace's `lo` shows them; `lo` itself as a fresh namespace's `lo`."""
    if key in fresh or len(key) != 5:
        return key
    if key[2] == "conf":
        return (*key[:3], "default", key[4])
    if key[2] == "neigh":
        return (*key[:3], "lo", key[4])
    return key


@pytest.fixture(scope="module")
def fresh() -> Iterator[Values]:
    claim = owner.claim("sysctl reference")
    name = f"{claim.run_id}-fresh"
    try:
        netns.create(name)
        with netns.inside(name):
            yield read_tree()
    finally:
        netns.remove(name)
        claim.release()


def calico() -> Cluster:
    """The reference topology with Calico (BGP): host ends `cali…` with proxy ARP."""
    cluster = tiny_cluster()
    config = replace(
        cluster.config, cni=Cni.CALICO, network=CalicoMode.BGP, calico=CalicoConfig()
    )
    return replace(cluster, config=config)


@pytest.fixture(params=["flannel", "calico"], scope="module")
def built(request: pytest.FixtureRequest) -> Iterator[tuple[Fabric, KernelCluster]]:
    cluster = tiny_cluster() if request.param == "flannel" else calico()
    fabric = build_fabric(cluster)
    kc = KernelCluster.build(fabric)
    try:
        yield fabric, kc
    finally:
        kc.close()


def expected(fabric: Fabric, kc: KernelCluster, ns_id: str) -> Values:
    """What the build sets in a namespace, with what the kernel derives from it:
    ip_forward=1 turns every `forwarding` on and `conf.all.accept_redirects` off
    (`inet_forward_change`); and what the CNI plugins set on the node's devices they
    make: `accept_ra` 0 (bridge.go `ensureBridge`, pkg/ip/link_linux.go
    `SetupVethWithName`: "we want to own the routes for this interface"), and on the
    pod's `eth0`: `arp_notify` 1 (pkg/ipam/ipam_linux.go `ConfigureIface`) and
    `accept_dad` 0 (bridge.go, with hairpinMode: "Disable IPv6 DAD just in case hairpin
    mode is enabled on the bridge")."""
    ns = fabric.netns[ns_id]
    out: Values = {}
    settings = sysctls.namespace(ns) + [
        s for iface in ns.interfaces.values() for s in sysctls.device(iface)
    ]
    for key, value in settings:
        out[tuple(key.split(".")) if isinstance(key, str) else key] = str(value)
    if ns.forwarding:
        for dev in ("all", "default", *ns.interfaces):
            out[("net", "ipv4", "conf", dev, "forwarding")] = "1"
        out[("net", "ipv4", "conf", "all", "accept_redirects")] = "0"
    if ns.kind is NetnsKind.HOST:
        for dev in kc.plugin_made.get(ns_id, set()):
            if ns.interfaces[dev].kind in (Kind.BRIDGE, Kind.VETH):
                out[("net", "ipv6", "conf", dev, "accept_ra")] = "0"
    if ns_id in kc.attached:
        out[("net", "ipv4", "conf", "eth0", "arp_notify")] = "1"
        out[("net", "ipv6", "conf", "eth0", "accept_dad")] = "0"
    return out


def test_every_namespace_has_the_defaults_but_the_listed_sysctls(
    fresh: Values, built: tuple[Fabric, KernelCluster]
) -> None:
    fabric, kc = built
    kinds = set()
    for ns in fabric.netns.values():
        with netns.inside(kc.names[ns.id]):
            got = read_tree()
        want = expected(fabric, kc, ns.id)
        differ = {
            "/".join(k): v
            for k, v in got.items()
            if k not in want and fresh.get(generic(k, fresh)) != v
        }
        assert differ == {}, ns.id  # set though no component sets it
        wrong = {
            "/".join(k): (got.get(k), v) for k, v in want.items() if got.get(k) != v
        }
        assert wrong == {}, ns.id  # a listed one not set as listed
        kinds.add(ns.kind)
    assert {NetnsKind.HOST, NetnsKind.POD} <= kinds


def test_the_defaults_are_the_kernels_not_the_simulators(fresh: Values) -> None:
    """What the kernel side no longer tunes: IPv6 on, ARP at 3 tries 1 s apart, the
    namespace's ICMP budget 1000/s with a burst of 50."""
    assert fresh[("net", "ipv6", "conf", "default", "disable_ipv6")] == "0"
    neigh = ("net", "ipv4", "neigh", "lo")  # the table's own: see `generic`
    assert fresh[(*neigh, "retrans_time_ms")] == str(sysctls.RETRANS_TIME_MS)
    assert fresh[(*neigh, "mcast_solicit")] == str(sysctls.MCAST_SOLICIT)
    assert fresh[("net", "ipv4", "icmp_msgs_per_sec")] == "1000"
    assert fresh[("net", "ipv4", "icmp_msgs_burst")] == "50"


def test_a_calico_host_end_answers_arp_by_proxy_at_once(
    built: tuple[Fabric, KernelCluster],
) -> None:
    fabric, kc = built
    ends = [
        (ns.id, iface.ifname)
        for ns in fabric.netns.values()
        for iface in ns.interfaces.values()
        if iface.proxy_arp
    ]
    if fabric.cluster.config.cni is not Cni.CALICO:
        assert ends == []
        return
    assert ends
    for ns_id, ifname in ends:
        with netns.inside(kc.names[ns_id]):
            assert (
                netns.read_sysctl(("net", "ipv4", "conf", ifname, "proxy_arp")) == "1"
            )
            assert (
                netns.read_sysctl(("net", "ipv4", "neigh", ifname, "proxy_delay"))
                == "0"
            )
