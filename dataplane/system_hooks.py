"""The hooks every node namespace starts with: one list, one place.

kube-proxy's NAT, the portmap plugin's hostPort DNAT, masquerade and the NetworkPolicy
filter are ordinary hooks; this module
says which ones a node gets.  Where the NetworkPolicy filter sits is the CNI's choice
(`dataplane.cni`: FORWARD for flannel, Felix's per-endpoint chains for Calico).
"""

from __future__ import annotations

from dataplane import kubeproxy, kubeproxy_ipvs, masquerade, portmap
from dataplane.cni import plugin_of
from dataplane.netfilter import Hook
from dataplane.netns import Netns
from topology.model import Cluster, ProxyMode


def for_node(cluster: Cluster, ns: Netns) -> list[Hook]:
    """The system hooks of node namespace `ns`."""
    plugin = plugin_of(cluster)
    if plugin.system_hooks is not None:  # Docker's iptables: no Kubernetes component
        return plugin.system_hooks(cluster, ns)
    proxy = (
        kubeproxy_ipvs.hooks
        if cluster.config.kube_proxy.mode is ProxyMode.IPVS
        else kubeproxy.hooks
    )
    services = plugin.service_hooks or proxy  # Cilium replaces kube-proxy
    policy = plugin.policy_hooks()
    if proxy is kubeproxy_ipvs.hooks and plugin.service_hooks is None:
        policy += kubeproxy_ipvs.policy_at_local_out(policy)
    # flannel's and Calico's manifests chain the portmap plugin (hostPort); Cilium's
    # hostPorts are refused (topology.live.host_port_refusal)
    hostports = portmap.hooks() if plugin.service_hooks is None else []
    return [*services(), *hostports, *policy, *masquerade.hooks()]
