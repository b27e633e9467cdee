"""Longest-prefix match equals brute force; routes print as `ip route` does."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from dataplane.routing import Route, RoutingTable

prefixes = st.builds(
    lambda addr, plen: IPv4Network(f"{IPv4Address(addr)}/{plen}", strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)


@given(st.lists(prefixes, max_size=25), st.integers(0, 2**32 - 1))
def test_lookup_is_the_longest_matching_prefix(
    nets: list[IPv4Network], addr: int
) -> None:
    table = RoutingTable()
    for i, net in enumerate(nets):
        table.add(Route(net, f"if{i}"))
    dst = IPv4Address(addr)
    matching = [n for n in nets if dst in n]
    got = table.lookup(dst)
    if not matching:
        assert got is None
    else:
        assert got is not None
        assert got.dst.prefixlen == max(n.prefixlen for n in matching)
        assert dst in got.dst


def test_route_text_is_ip_route_text() -> None:
    r1 = Route(
        IPv4Network("10.0.2.0/24"),
        "flannel.1",
        via=IPv4Address("10.0.2.0"),
        onlink=True,
    )
    r2 = Route(
        IPv4Network("10.0.1.0/24"), "cbr0", src=IPv4Address("10.0.1.1"), proto="kernel"
    )
    r3 = Route(IPv4Network("0.0.0.0/0"), "eth0", via=IPv4Address("10.0.1.1"))
    assert str(r1) == "10.0.2.0/24 via 10.0.2.0 dev flannel.1 onlink"
    assert str(r2) == "10.0.1.0/24 dev cbr0 proto kernel scope link src 10.0.1.1"
    assert str(r3) == "default via 10.0.1.1 dev eth0"


def test_metric_breaks_ties() -> None:
    t = RoutingTable()
    t.add(Route(IPv4Network("10.0.0.0/8"), "a", metric=100))
    t.add(Route(IPv4Network("10.0.0.0/8"), "b", metric=10))
    hit = t.lookup("10.1.2.3")
    assert hit is not None
    assert hit.oif == "b"
