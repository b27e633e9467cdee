"""ICMP error rate limiting: the per-destination token bucket of `icmpv4_xrlim_allow()`.

Before a router (or host) sends a rate-limited ICMP error, `icmpv4_xrlim_allow()` asks
the inet_peer of the error's destination for a token (`inet_peer_xrlim_allow()`, shared
with ICMP redirects): a token is `net.ipv4.icmp_ratelimit` (1000 ms) of credit, the bucket
holds `XRLIM_BURST_FACTOR` (6) of them and a new peer starts full (`rate_last = jiffies -
60 HZ`).  Which types are limited is `net.ipv4.icmp_ratemask` (0x1818: destination
unreachable, source quench, time exceeded, parameter problem), except "fragmentation
needed", which path MTU discovery must always get (`icmpv4_mask_allow()`); errors to a
local address go over `lo` and are never limited.  Echo replies are not errors.

The bucket is shared with ICMP redirects: a router that forwards a packet back out of the
interface it came in on would redirect its sender (`ip_rt_send_redirect()`, send_redirects
and shared_media on by default), and that resets the sender's peer (`rate_tokens = 0`,
`rate_last = now`), so no error goes to that sender for the next second (`spend_all`).
The redirect itself is sent to a peer once per `ip_rt_redirect_load` (20 ms, doubled per
redirect already sent): within one walk only the first redirect to a sender goes out
(`redirect_allowed`).

A router without a route for a forwarded packet answers through `ip_error()`, which first
takes its own token from the same bucket (`ip_rt_error_cost` 1 s, capped at
`ip_rt_error_burst` 5 s) and then calls `icmp_send()`, which takes another: a burst holds
only two "net unreachable" errors (`take_route_error_token`).

Within one walk, or one replay (its packets share a walk state), no time passes: the
bucket of each (namespace, destination) spends its burst of 6 and stays empty, so the
seventh error to one destination is not sent, as Linux does for a burst.  Not modelled:
the namespace's budget of `icmp_msgs_per_sec`/`icmp_msgs_burst` (1000/s, 50), whose
`icmp_global_consume()` spends a random 0-2 credits per message (at least 25 errors
of a namespace always go out; `dataplane verify` keeps its batches within that).
"""

from __future__ import annotations

from dataplane.packet import ICMP_DEST_UNREACH, UNREACH_FRAG_NEEDED

ICMP_RATELIMIT_MS = 1000  # net.ipv4.icmp_ratelimit (ip-sysctl.rst)
ICMP_RATEMASK = 0x1818  # net.ipv4.icmp_ratemask: types 3, 4, 11, 12
XRLIM_BURST_FACTOR = 6  # include/net/inetpeer.h: a bucket holds 6 tokens
IP_RT_ERROR_BURST = 5  # net/ipv4/route.c: ip_rt_error_burst = 5 * HZ
NR_ICMP_TYPES = 18


def is_rate_limited(type_: int, code: int) -> bool:
    """Whether an ICMP message of this type and code spends a token.

    >>> is_rate_limited(3, 3), is_rate_limited(11, 0), is_rate_limited(3, 4)
    (True, True, False)
    >>> is_rate_limited(0, 0)
    False
    """
    if type_ > NR_ICMP_TYPES:
        return False
    if type_ == ICMP_DEST_UNREACH and code == UNREACH_FRAG_NEEDED:
        return False
    return bool((1 << type_) & ICMP_RATEMASK)


def take_token(tokens: dict[tuple[str, str], int], netns: str, peer: str) -> bool:
    """Spend one token of `netns`'s bucket for `peer`; False when it is empty."""
    key = (netns, peer)
    left = tokens.get(key, XRLIM_BURST_FACTOR)
    if left <= 0:
        return False
    tokens[key] = left - 1
    return True


def spend_all(tokens: dict[tuple[str, str], int], netns: str, peer: str) -> None:
    """A redirect to `peer` from `netns`: its bucket is empty (ip_rt_send_redirect)."""
    tokens[(netns, peer)] = 0


def redirect_allowed(
    redirects: dict[tuple[str, str], int], netns: str, peer: str
) -> bool:
    """Whether `netns` sends `peer` an ICMP redirect now (ip_rt_send_redirect(): the
    first one to a peer at once, the next only after `ip_rt_redirect_load << n_redirects`,
    which no walk lasts)."""
    key = (netns, peer)
    sent = redirects.get(key, 0)
    redirects[key] = sent + 1
    return sent == 0


def take_route_error_token(
    tokens: dict[tuple[str, str], int], netns: str, peer: str
) -> bool:
    """ip_error() for a forwarded packet without a route: its token (the bucket capped at
    ip_rt_error_burst), then icmp_send()'s; False when either is missing."""
    key = (netns, peer)
    left = min(tokens.get(key, XRLIM_BURST_FACTOR), IP_RT_ERROR_BURST)
    if left < 1:
        tokens[key] = left
        return False
    tokens[key] = left - 1
    return take_token(tokens, netns, peer)
