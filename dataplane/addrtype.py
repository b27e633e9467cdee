"""Destinations that are not a unicast host: broadcast, multicast and 0.0.0.0.

Linux classifies a destination by the `local` routing table (`inet_addr_type()`): besides
the `local` routes of its own addresses, `fib_add_ifaddr()` adds a `broadcast` route for
the directed broadcast of every address whose prefix is shorter than /31 (10.0.1.255 for
10.0.1.1/24; the network address is an ordinary unicast destination), and
255.255.255.255 is the limited broadcast everywhere; 224.0.0.0/4 is multicast.  What
follows from that, as this kernel shows it:

- a socket sending to a broadcast without `SO_BROADCAST`: `connect()`/`sendto()` fail
  with EACCES (`ip4_datagram_connect()`, `udp_sendmsg()`, `ping_v4_sendmsg()`,
  `raw_sendmsg()`); a TCP `connect()` to a broadcast or multicast address fails with
  ENETUNREACH (`tcp_v4_connect()`: RTCF_BROADCAST | RTCF_MULTICAST);
- a datagram to a multicast group leaves (IP_MULTICAST_TTL 1, to the group's Ethernet
  address on the route's device, no gateway: `multicast_mac`; a bridge floods it, and
  no router forwards it), and nothing answers the sender's connected socket: an echo request to a group is ignored
  (net.ipv4.icmp_echo_ignore_broadcasts=1), a member's UDP reply comes from its own
  unicast address, which a socket connected to the group does not take;
- a packet routed to another subnet's broadcast is taken locally by the router that owns
  that subnet (`ip_route_input_slow()`: RTN_BROADCAST -> `brd_input`;
  net.ipv4.conf.all.bc_forwarding=0), and nothing answers it: no RST
  (`tcp_v4_send_reset()` answers only RTN_LOCAL), no ICMP error (`icmp_send()` never
  answers a broadcast), no echo reply (icmp_echo_ignore_broadcasts);
- 0.0.0.0 is this host: a socket connecting to it is connected to 127.0.0.1
  (`ip_route_output_key_hash_rcu()`: no daddr -> INADDR_LOOPBACK on `lo`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dataplane.netns import Netns
from dataplane.packet import IPPROTO_TCP, Packet
from dataplane.trace import DropReason, Verdict

LIMITED_BROADCAST = "255.255.255.255"
ANY = "0.0.0.0"
LOOPBACK = "127.0.0.1"


def is_multicast(ip: str) -> bool:
    """224.0.0.0/4.

    >>> is_multicast("224.0.0.1"), is_multicast("10.0.1.255")
    (True, False)
    """
    return 224 <= int(ip.split(".", 1)[0]) <= 239


def is_broadcast(ns: Netns, ip: str) -> bool:
    """Whether `ip` is a `broadcast` route of `ns`'s local table: the limited broadcast
    or the directed broadcast of one of its addresses shorter than /31."""
    return ip == LIMITED_BROADCAST or ns.is_broadcast(ip)


def connected_peer(dst: str) -> str:
    """The address a socket connecting to `dst` is connected to.

    >>> connected_peer("0.0.0.0"), connected_peer("10.0.2.2")
    ('127.0.0.1', '10.0.2.2')
    """
    return LOOPBACK if dst == ANY else dst


@dataclass(frozen=True, slots=True)
class Refusal:
    """A local send that fails (errno) or that nothing will answer (errno "")."""

    errno: str
    verdict: Verdict
    reason: DropReason
    detail: str
    leaves: bool = False  # the datagram still goes out (to a multicast group)


def multicast_mac(group: str) -> str:
    """The Ethernet address a group's datagrams go to (RFC 1112, `ip_eth_mc_map()`:
    01:00:5e and the group's low 23 bits).

    >>> multicast_mac("224.0.0.1"), multicast_mac("239.129.2.3")
    ('01:00:5e:00:00:01', '01:00:5e:01:02:03')
    """
    _, b, c, d = (int(x) for x in group.split("."))
    return f"01:00:5e:{b & 0x7F:02x}:{c:02x}:{d:02x}"


def local_send(ns: Netns, pkt: Packet, raw: bool) -> Refusal | None:
    """What the sending socket of `ns` meets for a non-unicast destination, or None
    (`raw`: a crafted packet from a raw socket, not a connecting TCP socket)."""
    ip = pkt.ip
    assert ip is not None
    tcp = ip.proto == IPPROTO_TCP and not raw
    broadcast = is_broadcast(ns, ip.dst)
    if not broadcast and not is_multicast(ip.dst):
        return None
    what = "broadcast" if broadcast else "multicast"
    if tcp:
        return Refusal(
            "ENETUNREACH",
            Verdict.NO_ROUTE,
            DropReason.NO_ROUTE,
            f"{ip.dst} is a {what} address: connect() fails with ENETUNREACH "
            "(tcp_v4_connect refuses RTCF_BROADCAST | RTCF_MULTICAST routes)",
        )
    if broadcast:
        return Refusal(
            "EACCES",
            Verdict.DROPPED,
            DropReason.BROADCAST,
            f"{ip.dst} is a broadcast address here and the socket has no "
            "SO_BROADCAST: the send fails with EACCES (Permission denied)",
        )
    return Refusal(
        "",
        Verdict.DROPPED,
        DropReason.NOT_FOR_US,
        f"{ip.dst} is a multicast group: the datagram leaves with IP_MULTICAST_TTL 1 "
        "and nothing answers the connected socket (echo requests to a group are "
        "ignored, net.ipv4.icmp_echo_ignore_broadcasts=1; a member replies from its "
        "own address, which a socket connected to the group does not take)",
        leaves=True,
    )


def taken_locally(ns: Netns, dst: str) -> str | None:
    """Why a received packet for a broadcast or multicast `dst` ends in `ns` without an
    answer, or None for a unicast destination."""
    if is_broadcast(ns, dst):
        return (
            f"{dst} is a broadcast address here: taken locally, not forwarded "
            "(RTN_BROADCAST, net.ipv4.conf.all.bc_forwarding=0), and nothing answers "
            "a broadcast (no RST, no ICMP error, icmp_echo_ignore_broadcasts=1)"
        )
    if is_multicast(dst):
        return (
            f"{dst} is a multicast group: not forwarded (no multicast routing), and "
            "no member answers a socket connected to the group"
        )
    return None
