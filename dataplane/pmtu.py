"""Path MTU exceptions: what a "fragmentation needed" teaches the host that sent the
packet, for the packets it sends next.

An ICMP "fragmentation needed" (type 3 code 4, RFC 1191) that reaches the socket of the
packet it quotes makes the kernel record a next-hop exception for the quoted destination
(`ipv4_sk_update_pmtu()` -> `__ip_rt_update_pmtu()`: the advertised MTU, at least
net.ipv4.route.min_pmtu, 552; it expires after net.ipv4.route.mtu_expires, 600 s).  From
then on a socket of that namespace that sets DF (IP_PMTUDISC_DO, a TCP socket) gets
EMSGSIZE for a larger packet to that destination, at the sender, before anything leaves
(`__ip_append_data()`: the route's `dst_mtu()` includes the exception).  A raw socket with
IP_HDRINCL is checked against the device MTU only (`raw_send_hdrinc()`), so a crafted
packet still leaves and meets the router again.

The exceptions live in the walk state: a replay (one state for the whole capture) learns
them; every probe starts without any, as `verify` makes every kernel namespace start
(`ip route flush cache`, which drops the exceptions: `fnhe_genid_bump()`).
"""

from __future__ import annotations

from dataplane.packet import ICMP, ICMP_DEST_UNREACH, UNREACH_FRAG_NEEDED

MIN_PMTU = 552  # net.ipv4.route.min_pmtu


def learn(pmtu: dict[tuple[str, str], int], netns: str, error: ICMP) -> int | None:
    """Record what a "fragmentation needed" delivered to a socket of `netns` teaches;
    the path MTU now known to the quoted destination, or None for another message."""
    quote = error.quote
    if (
        (error.type, error.code) != (ICMP_DEST_UNREACH, UNREACH_FRAG_NEEDED)
        or quote is None
        or quote.ip is None
        or error.mtu <= 0
    ):
        return None
    mtu = max(error.mtu, MIN_PMTU)
    key = (netns, quote.ip.dst)
    pmtu[key] = min(mtu, pmtu.get(key, mtu))
    return pmtu[key]


def path_mtu(
    pmtu: dict[tuple[str, str], int], netns: str, dst: str, dev_mtu: int
) -> int:
    """The MTU a socket of `netns` sending to `dst` is held to."""
    return min(dev_mtu, pmtu.get((netns, dst), dev_mtu))
