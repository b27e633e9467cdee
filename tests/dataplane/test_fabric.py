"""The devices and tables built from the model are the ones docs/model.md shows for Linux."""

from __future__ import annotations

import pytest

from dataplane.fabric import build_fabric, mac_for, veth_name
from dataplane.netns import Kind
from tests.dataplane.builders import tiny_cluster
from topology.model import NetworkMode


def test_pod_routes_are_the_reference_tables() -> None:
    fab = build_fabric(tiny_cluster())
    pod = fab.netns["pod:default/a"]
    assert pod.routes.show() == [
        "10.0.1.0/24 dev eth0 proto kernel scope link src 10.0.1.3",
        "default via 10.0.1.1 dev eth0",
    ]
    eth0 = pod.interfaces["eth0"]
    assert eth0.mac == "0a:58:0a:00:01:03"
    assert eth0.mtu == 1450
    assert eth0.peer == ("node-1", veth_name("default/a"))


def test_node_routes_neighbours_and_fdb_in_vxlan_mode() -> None:
    fab = build_fabric(tiny_cluster())
    node = fab.netns["node-1"]
    assert sorted(node.routes.show()) == sorted(
        [
            "10.0.1.0/24 dev cbr0 proto kernel scope link src 10.0.1.1",
            "10.0.2.0/24 via 10.0.2.0 dev flannel.1 onlink",
            "10.100.0.0/24 dev eth0 proto kernel scope link src 10.100.0.2",
            "default via 10.100.0.1 dev eth0",
        ]
    )
    vtep2 = mac_for("10.0.2.0")
    assert node.permanent_neigh == {("flannel.1", "10.0.2.0"): vtep2}
    assert fab.vxlan_fdb[("node-1", vtep2)] == "10.100.0.3"
    flannel = node.interfaces["flannel.1"]
    assert (flannel.kind, flannel.mtu, flannel.vni, flannel.vxlan_port) == (
        Kind.VXLAN,
        1450,
        1,
        8472,
    )
    assert [str(a) for a in flannel.addrs] == ["10.0.1.0/32"]
    port = node.interfaces[veth_name("default/a")]
    assert port.master == "cbr0"
    assert port.hairpin


@pytest.mark.parametrize(
    ("mode", "route", "pod_mtu"),
    [
        (NetworkMode.HOST_GW, "10.0.2.0/24 via 10.100.0.3 dev eth0", 1500),
        (NetworkMode.ROUTED, None, 1500),
    ],
    ids=["host-gw", "routed"],
)
def test_other_modes_route_without_encapsulation(
    mode: NetworkMode, route: str | None, pod_mtu: int
) -> None:
    fab = build_fabric(tiny_cluster(mode))
    node = fab.netns["node-1"]
    assert "flannel.1" not in node.interfaces
    remote = [r for r in node.routes.show() if r.startswith("10.0.2.0/24")]
    assert remote == ([route] if route else [])
    assert fab.netns["pod:default/a"].interfaces["eth0"].mtu == pod_mtu
    gw = fab.netns["gateway"].routes.show()
    if mode is NetworkMode.ROUTED:
        assert "10.0.1.0/24 via 10.100.0.2 dev eth0" in gw
        assert "10.0.2.0/24 via 10.100.0.3 dev eth0" in gw
    else:
        assert not any(r.startswith("10.0.") and "via" in r for r in gw)


def test_externals_hang_off_the_gateway() -> None:
    fab = build_fabric(tiny_cluster())
    ext = fab.netns["external:web"]
    assert ext.routes.show() == [
        "10.100.0.1/32 dev eth0 scope link src 10.0.0.5",
        "default via 10.100.0.1 dev eth0",
    ]
    assert (
        "10.0.0.5/32 dev ext0 scope link src 10.100.0.1"
        in fab.netns["gateway"].routes.show()
    )
