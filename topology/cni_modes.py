"""The network plugins (CNIs) a cluster may name and the network modes of each.

Apart from `topology.model` (which re-exports every name) so that what only needs the names
(`dataplane init`'s options, listed by `dataplane --help`) need not build the model's records.
"""

from __future__ import annotations

from enum import StrEnum


class Cni(StrEnum):
    """The network plugin that builds every node (docs/scenario-format.md, `cluster.cni`)."""

    FLANNEL = "flannel"
    CALICO = "calico"
    CILIUM = "cilium"


class NetworkMode(StrEnum):
    """How pod traffic crosses nodes with flannel (docs/scenario-format.md,
    `cluster.network`): its backends."""

    VXLAN = "vxlan"
    HOST_GW = "host-gw"
    ROUTED = "routed"


class CalicoMode(StrEnum):
    """Calico's `cluster.network`: the IP pool's encapsulation (ipipMode, vxlanMode:
    Always) or none (BGP-learned routes between nodes)."""

    IPIP = "ipip"
    VXLAN = "vxlan"
    BGP = "bgp"


class CiliumMode(StrEnum):
    """Cilium's `cluster.network` (`tunnel-protocol`, or `routing-mode: native`)."""

    VXLAN = "vxlan"
    GENEVE = "geneve"
    NATIVE = "native"


# A network mode of some CNI: `is NetworkMode.VXLAN` means flannel's vxlan only.
Network = NetworkMode | CalicoMode | CiliumMode
# The network modes of each CNI, its default first (docs/scenario-format.md, `cluster.cni`):
# flannel's backends; Calico's IP pool encapsulations (ipipMode/vxlanMode, or neither: BGP
# routes); Cilium's tunnel protocols and native routing.
CNI_NETWORKS: dict[Cni, tuple[Network, ...]] = {
    Cni.FLANNEL: tuple(NetworkMode),
    Cni.CALICO: tuple(CalicoMode),
    Cni.CILIUM: tuple(CiliumMode),
}
# The CNIs `dataplane.cni` builds; a scenario naming another is refused, never approximated.
MODELLED_CNIS = (Cni.FLANNEL, Cni.CALICO, Cni.CILIUM)
# Modes whose devices are not built yet: refused, never approximated (none today).
PLANNED_NETWORKS: frozenset[tuple[Cni, Network]] = frozenset()
