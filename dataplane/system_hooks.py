"""The hooks every node namespace starts with: one list, one place.

kube-proxy's NAT, masquerade and the NetworkPolicy filter are ordinary hooks; this module
says which ones a node gets.
"""

from __future__ import annotations

from dataplane import kubeproxy, masquerade, netpol_hook
from dataplane.netfilter import Hook
from dataplane.netns import Netns
from topology.model import Cluster


def for_node(cluster: Cluster, ns: Netns) -> list[Hook]:
    """The system hooks of node namespace `ns`."""
    return [*kubeproxy.hooks(), *netpol_hook.hooks(), *masquerade.hooks()]
