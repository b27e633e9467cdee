"""What is derived from a cluster once and kept while the cluster is the same object.

A `Cluster` never changes (an `apply` makes a new one), so a table built from it (the
Service table, the IPVS virtual servers, the set of node addresses) stays true for as long
as the walk holds that cluster object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from topology.model import Cluster

T = TypeVar("T")


def once_per_cluster(
    store: dict[int, tuple[Cluster, T]], cluster: Cluster, build: Callable[[Cluster], T]
) -> T:
    """`build(cluster)`, made once per cluster object and kept in `store` (at most 8
    clusters are kept)."""
    hit = store.get(id(cluster))
    if hit is not None and hit[0] is cluster:
        return hit[1]
    if len(store) >= 8:
        store.clear()
    made = build(cluster)
    store[id(cluster)] = (cluster, made)
    return made
