"""The one deterministic stand-in for the kernel's per-flow random choices.

Linux picks at random where this simulator must not: kube-proxy's endpoint
(`-m statistic --mode random`, nftables `numgen random`), a multipath route's nexthop
(`fib_multipath_hash_policy=1` hashes the 5-tuple with a random seed), a cloud load
balancer's node.  Each is `pick_index(flow, n)`: the flow's keyed BLAKE2b-64 modulo n, a
well-mixed hash (neighbouring clients and ports land on independent choices), the same
on every run (docs/model.md, "Endpoint choice").
"""

from __future__ import annotations

import hashlib

from dataplane.packet import Packet

PICK_KEY = b"kube-proxy"


def pick_index(flow: str, n: int) -> int:
    """The flow's keyed BLAKE2b-64 modulo `n`.

    >>> pick_index("6 10.0.1.3 40000 10.96.0.11 80", 2), pick_index("10.0.1.3", 1)
    (0, 0)
    """
    digest = hashlib.blake2b(flow.encode(), key=PICK_KEY, digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def flow_of(pkt: Packet) -> str:
    """`"<proto> <src> <sport> <dst> <dport>"` of a packet (proto the IP protocol number)."""
    ip = pkt.ip
    assert ip is not None
    return f"{ip.proto} {ip.src} {pkt.sport} {ip.dst} {pkt.dport}"
