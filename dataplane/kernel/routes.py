"""What `verify` compares where the kernel cannot carry a cluster's packets: the route
each namespace picks and the MTU of the device the packet leaves by.

Cilium's node is its BPF programs (bpf_lxc, bpf_host, bpf_overlay), which nothing here
loads, so no probe of a cilium scenario runs as traffic: each is "not comparable: BPF
datapath".  The devices and routes under those programs are ordinary kernel objects,
though (the pods' `eth0` with a /32 and `default via` the router address, the
`cilium_host`/`cilium_net` pair, the `lxc` host ends, `cilium_vxlan` and the routes to
the other nodes' podCIDRs).  `verify` builds them (`LiveCluster`) and, at every routing
decision of the simulator's walk, asks the kernel's FIB of that namespace (`ip route get
DST`, RTM_GETROUTE: `inet_rtm_getroute`, `fib_lookup`) for the same destination; the part
`route NODE/NETNS DST` compares the result (local, blackhole, unreachable, or the gateway
and the output device) and the output device's MTU.  A route part that differs makes the
probe a mismatch although its verdict is not comparable.
"""

from __future__ import annotations

import errno
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from dataplane.addrtype import is_multicast
from dataplane.fabric import Fabric
from dataplane.kernel.report import Part
from dataplane.netns import Netns
from dataplane.trace import Trace

RTN_LOCAL, RTN_BLACKHOLE, RTN_UNREACHABLE = 2, 6, 7  # linux/rtnetlink.h route types


def route_parts(trace: Trace, fabric: Fabric, ipr_of: dict[str, Any]) -> list[Part]:
    """One part per (namespace, destination) the walk routed: what the simulator's table
    gives beside what the kernel's FIB gives (`ipr_of`: fabric namespace id -> the
    pyroute2 socket of its kernel namespace)."""
    by_label = {(ns.node, ns.label): ns for ns in fabric.netns.values()}
    seen: set[tuple[str, str]] = set()
    out: list[Part] = []
    for hop in trace.hops:
        pkt = hop.packet
        if hop.event != "route" or pkt is None or pkt.ip is None:
            continue
        ns = by_label.get((hop.node, hop.netns))
        if ns is None or ns.id not in ipr_of or (ns.id, pkt.ip.dst) in seen:
            continue
        seen.add((ns.id, pkt.ip.dst))
        sim = simulator_route(ns, pkt.ip.dst)
        out.append(
            Part(
                f"route {hop.node}/{hop.netns} {pkt.ip.dst}",
                sim,
                kernel_route(ipr_of[ns.id], pkt.ip.dst, sim),
            )
        )
    return out


def simulator_route(ns: Netns, dst: str) -> str:
    """The simulator's answer, worded as `kernel_route` words the kernel's."""
    if any(i.has_addr(dst) for i in ns.interfaces.values()):
        return "local"
    route = ns.routes.lookup(dst)
    if route is None:
        return "unreachable"
    if route.blackhole:
        return "blackhole"
    mtu = ns.interfaces[route.oif].mtu if route.oif in ns.interfaces else 0
    if route.nexthops:
        hops = ",".join(str(h) for h in route.nexthops)
        return f"multipath via {hops} dev {route.oif} mtu {mtu}"
    # a group is on the link: the kernel's route to it has no gateway (RTN_MULTICAST,
    # `ip route get` shows none), and the walk sends to the group there too (Stack)
    gateway = route.via is not None and not is_multicast(dst)
    via = f"via {route.via} " if gateway else ""
    return f"{via}dev {route.oif} mtu {mtu}"


def kernel_route(ipr: Any, dst: str, sim: str) -> str:
    """`ip route get DST` in one kernel namespace, worded as `simulator_route` words it
    (a multipath route's chosen nexthop stands for the route when it is one of the
    simulator's nexthops: the choice is the flow hash's)."""
    try:
        (msg,) = ipr.route("get", dst=dst)
    except NetlinkError as err:
        if err.code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "unreachable"
        if err.code == errno.EINVAL:
            return "blackhole"  # fib_props: RTN_BLACKHOLE is -EINVAL
        return f"error {errno.errorcode.get(err.code, err.code)}"
    kind = msg["type"]
    if kind == RTN_LOCAL:
        return "local"
    if kind == RTN_BLACKHOLE:
        return "blackhole"
    if kind == RTN_UNREACHABLE:
        return "unreachable"
    (link,) = ipr.get_links(msg.get_attr("RTA_OIF"))
    dev, mtu = link.get_attr("IFLA_IFNAME"), link.get_attr("IFLA_MTU")
    gateway = msg.get_attr("RTA_GATEWAY")
    if sim.startswith("multipath via ") and gateway is not None:
        nexthops = sim.removeprefix("multipath via ").split(" ", 1)[0].split(",")
        if gateway in nexthops and sim.endswith(f" dev {dev} mtu {mtu}"):
            return sim
    via = f"via {gateway} " if gateway is not None else ""
    return f"{via}dev {dev} mtu {mtu}"
