"""The CNI plugin point: one module per way of building a node, one registry entry each.

`plugin_of(cluster)` is the CNI (or, with `runtime: docker`, Docker Engine's bridge
driver: `dataplane.cni.docker`) that `dataplane.fabric.build_fabric` asks to build the
devices, routes and policy hooks of `cluster` (`cluster.cni` in the scenario).  Adding a
CNI is adding a module with a `PLUGIN` (a `CniPlugin`, see `dataplane.cni.common`) and a
line in `PLUGINS` (docs/model.md, "Adding a CNI").  A CNI that the scenario schema accepts
but that is not here is refused by `topology.config` (`cni: NAME is not modelled yet`),
never approximated by another.
"""

from __future__ import annotations

from dataplane.cni import calico, cilium, docker, flannel
from dataplane.cni.common import CniPlugin
from topology.model import Cluster, Cni
from topology.runtime import Runtime

PLUGINS: dict[Cni, CniPlugin] = {
    Cni.FLANNEL: flannel.PLUGIN,
    Cni.CALICO: calico.PLUGIN,
    Cni.CILIUM: cilium.PLUGIN,
}


class NotModelled(ValueError):
    """A CNI without a module here."""


def plugin_of(cluster: Cluster) -> CniPlugin:
    """The CNI that builds `cluster`."""
    if cluster.config.runtime is Runtime.DOCKER:
        return docker.PLUGIN
    cni = cluster.config.cni
    found = PLUGINS.get(cni)
    if found is None:
        raise NotModelled(f"cni: {cni} is not modelled yet")
    return found


def mode_name(cluster: Cluster) -> str:
    """How a trace names the network: `vxlan` (flannel's, as before), `calico ipip`."""
    cfg = cluster.config
    if cfg.runtime is Runtime.DOCKER:
        return "docker"
    if cfg.cni is Cni.FLANNEL:
        return cfg.network.value
    return f"{cfg.cni} {cfg.network}"


__all__ = ["PLUGINS", "CniPlugin", "NotModelled", "mode_name", "plugin_of"]
