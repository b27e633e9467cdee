"""The sysctls `dataplane verify` sets on the kernel side: the kernel's defaults for a new
namespace, plus exactly those that the components of a real node set (issue 13), each
named with its upstream source in `SET`.

Everything else keeps the default of a namespace made by `ip netns add` (this kernel's,
`net.core.devconf_inherit_init_net` 0: nothing copied from the initial namespace): IPv6
on (link-local addresses, router and neighbour solicitations, MLD: the probes are IPv4,
the captures match on IPv4 and a probe's TOS mark, `dataplane.kernel.capture`), ARP
giving up after `mcast_solicit` (3) tries `retrans_time_ms` (1000) apart, so an
unanswered neighbour takes 3 s (`NEIGHBOUR_FAILS`, which the probes wait for:
`dataplane.kernel.probe.DEFAULT_TIMEOUT`), the per-namespace ICMP budget of
`icmp_msgs_per_sec`/`icmp_msgs_burst` (1000/s, 50; `dataplane.kernel.icmp_budget` paces
the batches under it), `rp_filter` 0, `icmp_ratelimit` 1000, `icmp_ratemask` 0x1818.

What is set, by whom:

- `net.ipv4.ip_forward=1` on a node: the Kubernetes container-runtime prerequisite
  (kubeadm's preflight check `/proc/sys/net/ipv4/ip_forward` contents must be 1), which
  the CNI bridge plugin also writes on every ADD (plugins/main/bridge/bridge.go
  `ip.EnableForward`), Docker Engine at start (libnetwork `setupIPForwarding`) and
  flannel's and Calico's installs require; on the gateway and the other routers of the
  model because they are routers (`Netns.forwarding`). Turning it on also sets every
  `conf.*.forwarding` and turns `conf.all.accept_redirects` off (`inet_forward_change`).
- `net.bridge.bridge-nf-call-iptables=1` on a node: the same prerequisite (kubeadm's
  preflight check); it is also br_netfilter's default in every namespace
  (`brnf_net_init`), so the write changes nothing once the module is loaded.
- `net.ipv4.conf.<cali…>.proxy_arp=1` and `net.ipv4.neigh.<cali…>.proxy_delay=0` on
  Calico's host ends: Felix (felix/dataplane/linux/endpoint_mgr.go,
  `configureInterface`).
- `net.ipv4.conf.all.route_localnet=1` on a node, in kube-proxy's iptables mode with
  localhost NodePorts (pkg/proxy/iptables/proxier.go, `EnsureSysctl(sysctlRouteLocalnet,
  1)`); `net.netfilter.nf_conntrack_tcp_timeout_established=86400` and
  `nf_conntrack_tcp_timeout_close_wait=3600` on a node: kube-proxy's conntrack defaults
  (cmd/kube-proxy/app/server_linux.go, `setupConntrack`; `conntrack.tcpEstablishedTimeout`
  24h and `tcpCloseWaitTimeout` 1h), written once its rules loaded nf_conntrack. Its
  `nf_conntrack_max` is host-wide (only the initial namespace may write it): not set.
- `net.ipv4.ping_group_range=0 2147483647` and `net.ipv4.ip_unprivileged_port_start=0`
  in a pod: the container runtime (containerd's CRI `enable_unprivileged_icmp` and
  `enable_unprivileged_ports`, on by default since containerd 2.0; Docker Engine for
  every container not on the host network, daemon/oci_linux.go, since 20.10).
  `ping_group_range` in the other namespaces (nodes, the gateway, external hosts) is the
  prober's own: its ICMP client is a ping socket (`icmp(7)`, `ping_init_sock`), and the
  range decides only who may open one, never what a packet meets.

Not set although a real component sets it: Felix's `rp_filter=1` on workload interfaces
(the simulator does not model reverse-path filtering; the nodes keep 0, the default).
kubelet sets no network sysctl (its `setupKernelTunables` writes `vm.*` and `kernel.*`).
"""

from __future__ import annotations

from dataplane.kernel.services import localhost_node_ports
from dataplane.netns import Interface, Netns, NetnsKind
from topology.model import Cluster

Setting = tuple[str | tuple[str, ...], str | int]

# the kernel's defaults that make an unanswered neighbour FAILED (ip-sysctl.rst, neigh/
# default: mcast_solicit 3, retrans_time_ms 1000; neigh_timer_handler gives up after the
# last of the broadcasts, neigh_max_probes)
MCAST_SOLICIT = 3
RETRANS_TIME_MS = 1000
NEIGHBOUR_FAILS = MCAST_SOLICIT * RETRANS_TIME_MS / 1000  # seconds
PING_GROUP_RANGE = "0 2147483647"
# kube-proxy's KubeProxyConntrackConfiguration defaults (pkg/proxy/apis/config/v1alpha1)
CONNTRACK_TCP_ESTABLISHED = 86400
CONNTRACK_TCP_CLOSE_WAIT = 3600

# who sets each sysctl (a device's part as <dev>), for the README, `verify -o json` and
# the tests that read them back
SET: dict[str, str] = {
    "net.ipv4.ip_forward": (
        "nodes: the container-runtime prerequisite (kubeadm preflight), the CNI bridge "
        "plugin's ip.EnableForward, Docker Engine; routers of the model"
    ),
    "net.bridge.bridge-nf-call-iptables": (
        "nodes: the container-runtime prerequisite (kubeadm preflight); br_netfilter's "
        "default"
    ),
    "net.ipv4.conf.<dev>.proxy_arp": "Calico's host ends: Felix (configureInterface)",
    "net.ipv4.neigh.<dev>.proxy_delay": "Calico's host ends: Felix (configureInterface)",
    "net.ipv4.conf.all.route_localnet": (
        "nodes, iptables mode with localhost NodePorts: kube-proxy"
    ),
    "net.netfilter.nf_conntrack_tcp_timeout_established": "nodes: kube-proxy (24h)",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": "nodes: kube-proxy (1h)",
    "net.ipv4.ping_group_range": (
        "pods: the container runtime (containerd, Docker Engine); elsewhere the "
        "prober's ping sockets"
    ),
    "net.ipv4.ip_unprivileged_port_start": (
        "pods: the container runtime (containerd, Docker Engine)"
    ),
}


def namespace(ns: Netns) -> list[Setting]:
    """What a namespace gets before its first device."""
    out: list[Setting] = [("net.ipv4.ping_group_range", PING_GROUP_RANGE)]
    if ns.kind is NetnsKind.POD:
        out.append(("net.ipv4.ip_unprivileged_port_start", 0))
    if ns.forwarding:
        out.append(("net.ipv4.ip_forward", 1))
    if ns.kind is NetnsKind.HOST:
        # br_netfilter: bridged IPv4 frames pass the ip hooks (PREROUTING, FORWARD,
        # POSTROUTING), as kube-proxy and every NetworkPolicy implementation require.
        out.append(("net.bridge.bridge-nf-call-iptables", 1))
    return out


def device(iface: Interface) -> list[Setting]:
    """What one device gets: proxy ARP where the fabric has it (Calico's host ends),
    answering at once (Felix's configureInterface: proxy_arp=1, proxy_delay=0)."""
    if not iface.proxy_arp:
        return []
    return [
        (("net", "ipv4", "conf", iface.ifname, "proxy_arp"), 1),
        (("net", "ipv4", "neigh", iface.ifname, "proxy_delay"), 0),
    ]


def kube_proxy(cluster: Cluster) -> list[Setting]:
    """What kube-proxy sets on a node once its rules are loaded: its conntrack timeouts
    (server_linux.go `setupConntrack`) and, for localhost NodePorts,
    `net.ipv4.conf.all.route_localnet=1` (proxier.go, `EnsureSysctl(sysctlRouteLocalnet,
    1)`: without it a packet from 127.0.0.1 DNATed to a pod is a martian on output)."""
    out: list[Setting] = [
        (
            "net.netfilter.nf_conntrack_tcp_timeout_established",
            CONNTRACK_TCP_ESTABLISHED,
        ),
        ("net.netfilter.nf_conntrack_tcp_timeout_close_wait", CONNTRACK_TCP_CLOSE_WAIT),
    ]
    if localhost_node_ports(cluster):
        out.append(("net.ipv4.conf.all.route_localnet", 1))
    return out
