"""Routing tables with longest-prefix match, as `ip route` shows them.

A route is `DST [via GW] dev OIF [onlink] [scope link] [src SRC] [proto kernel]`; the lookup
takes the longest matching prefix (then the lowest metric), like the kernel's FIB for the
main table.  Tables are tiny (a pod has two routes, a node one per other node), so the lookup
scans prefix lengths from /32 down with a dict per length.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

from dataplane.flowhash import pick_index


def _ip_int(text: str) -> int:
    """A dotted quad as an integer (socket.inet_aton is ~10x faster than ipaddress)."""
    return int.from_bytes(socket.inet_aton(text), "big")


@dataclass(frozen=True, slots=True)
class Route:
    dst: IPv4Network
    oif: str
    via: IPv4Address | None = None
    src: IPv4Address | None = None
    onlink: bool = False
    proto: str = "static"  # "kernel" for connected routes, "bird" for Calico's
    metric: int = 0
    blackhole: bool = (
        False  # `blackhole DST`: discard (fib_props RTN_BLACKHOLE, -EINVAL)
    )
    # A multipath route (`nexthop via A nexthop via B`): `via` is None and each packet
    # takes one of these by the hash of its flow (`multipath`); `comment` says who wrote it.
    nexthops: tuple[IPv4Address, ...] = ()
    comment: str = ""
    # `via` and `src` as text, written once: the walk reads them for every packet, and an
    # IPv4Address writes its text anew each time.
    via_text: str = field(default="", init=False, repr=False, compare=False)
    src_text: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.via is not None:
            object.__setattr__(self, "via_text", str(self.via))
        if self.src is not None:
            object.__setattr__(self, "src_text", str(self.src))

    def __str__(self) -> str:
        dst = "default" if self.dst.prefixlen == 0 else str(self.dst)
        if self.blackhole:
            return f"blackhole {dst} proto {self.proto}"
        parts = [dst]
        if self.nexthops:
            hops = " ".join(f"nexthop via {h} dev {self.oif}" for h in self.nexthops)
            return f"{dst} proto {self.proto} {hops}"
        if self.via is not None:
            parts.append(f"via {self.via}")
        parts.append(f"dev {self.oif}")
        if self.proto not in ("static", "kernel", "boot"):
            parts.append(f"proto {self.proto}")
        if self.onlink:
            parts.append("onlink")
        if self.proto == "kernel":
            parts.append("proto kernel scope link")
        elif self.via is None:
            parts.append("scope link")
        if self.src is not None:
            parts.append(f"src {self.src}")
        return " ".join(parts)


@dataclass(slots=True)
class RoutingTable:
    """The main table of one namespace."""

    routes: list[Route] = field(default_factory=list)
    _by_len: dict[int, dict[int, Route]] = field(default_factory=dict)
    _lens: list[int] = field(default_factory=list)
    # answers by destination text, forgotten when a route is added (a walk asks the same
    # table for the same few addresses again and again)
    _known: dict[str, Route | None] = field(default_factory=dict)

    def add(self, route: Route) -> None:
        self._known.clear()
        self.routes.append(route)
        bucket = self._by_len.setdefault(route.dst.prefixlen, {})
        key = int(route.dst.network_address)
        old = bucket.get(key)
        if old is None or route.metric < old.metric:
            bucket[key] = route
        self._lens = sorted(self._by_len, reverse=True)

    def lookup(self, dst: IPv4Address | str) -> Route | None:
        """Longest-prefix match; None when no route (the kernel's ENETUNREACH).

        >>> t = RoutingTable()
        >>> t.add(Route(IPv4Network("0.0.0.0/0"), "eth0", via=IPv4Address("10.0.1.1")))
        >>> t.add(Route(IPv4Network("10.0.1.0/24"), "eth0", proto="kernel"))
        >>> str(t.lookup("10.0.1.7"))
        '10.0.1.0/24 dev eth0 proto kernel scope link'
        >>> str(t.lookup("10.0.2.2"))
        'default via 10.0.1.1 dev eth0'
        """
        if isinstance(dst, IPv4Address):
            return self._match(int(dst))
        try:
            return self._known[dst]
        except KeyError:
            found = self._known[dst] = self._match(_ip_int(dst))
            return found

    def _match(self, addr: int) -> Route | None:
        for plen in self._lens:
            mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
            hit = self._by_len[plen].get(addr & mask)
            if hit is not None:
                return hit
        return None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.routes)

    def show(self) -> list[str]:
        """`ip route` output, most specific first."""
        return [str(r) for r in sorted(self.routes, key=lambda r: -r.dst.prefixlen)]


# route destination (`203.0.113.9/32`) -> the nexthop a real kernel's hash chose for it
_CHOSEN: ContextVar[Mapping[str, str] | None] = ContextVar(
    "kernel_nexthop", default=None
)


@contextmanager
def nexthop_chosen_by_kernel(choice: Mapping[str, str]) -> Iterator[None]:
    """Walks inside the block take, on each multipath route named by its destination, the
    nexthop the kernel took (`dataplane verify` reads it back: the node whose conntrack
    holds the connection), when it is one of the route's nexthops."""
    token = _CHOSEN.set(choice)
    try:
        yield
    finally:
        _CHOSEN.reset(token)


def multipath(route: Route, flow: str) -> tuple[Route, str]:
    """The nexthop a flow takes on a multipath route, as the route it amounts to, and why.

    Linux hashes the flow (`fib_multipath_hash_policy=1`: the 5-tuple, with a random seed);
    here the seed is `dataplane.flowhash`'s fixed key.
    """
    n = len(route.nexthops)
    index = pick_index(flow, n)
    why = (
        f"multipath: nexthop {index + 1} of {n}, a choice among {n} by the flow hash"
        f" (blake2b({flow!r}) % {n} = {index})"
    )
    forced = (_CHOSEN.get() or {}).get(str(route.dst))
    texts = [str(h) for h in route.nexthops]
    if forced in texts:
        index = texts.index(forced)
        why = f"multipath: nexthop {index + 1} of {n}, the one the kernel's hash took"
    chosen = replace(route, via=route.nexthops[index], nexthops=())
    if route.comment:
        why += f"; {route.comment}"
    return chosen, why
