"""Every probe of `verify` meets full ICMP error buckets on the kernel, as every walk of
the simulator does (`dataplane.icmp_limit`).

The kernel keeps its per-destination buckets (`net.ipv4.icmp_ratelimit`, 1000 ms a
token, 6 at most: `inet_peer_xrlim_allow()`) across probes, and probes of one batch run
at once.  So the errors the simulator's traces send are counted per (sender namespace,
destination): a batch holds at most a burst of them for each, and before a batch runs,
`wait()` sleeps until the kernel's buckets have refilled enough (one token a second).
A redirect the kernel sends (a router forwarding back out of the interface a packet came
in on) empties its sender's bucket: the simulator's "redirect" hop counts as a whole burst.

Every rate-limited error also spends the sending namespace's budget of
`icmp_msgs_per_sec` (1000/s) and `icmp_msgs_burst` (50) credits, kept per namespace
(`icmp_global_allow(net)`, net->ipv4.icmp_global_credit), at its default: an error goes
out while the namespace has a credit left, and `icmp_global_consume()` then takes a
random 0, 1 or 2 credits.  So 25 errors always go out of a full budget, and an empty one
is full again 50 ms after its last refill: a batch holds at most `HOST_BURST` errors per
sending namespace, and waits `HOST_REFILL` after the last batch whose errors it sent.
A TCP SYN whose router (or client) waits for an unanswered neighbour is sent again after
1 s and 3 s (TCP_TIMEOUT_INIT, doubled) into the same queue, and each queued packet gets
its "host unreachable" when the neighbour fails (`neigh_invalidate`): such an error
counts three times.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from dataplane.icmp_limit import ICMP_RATELIMIT_MS, IP_RT_ERROR_BURST, is_rate_limited
from dataplane.packet import ICMP, TCP
from dataplane.trace import Trace

Key = tuple[str, str, str]  # node, namespace label, destination of the error
T = TypeVar("T")
MARGIN = 0.05  # seconds of slack for the kernel's jiffies against our clock
# tokens a batch may spend per bucket: ip_error() caps it at 5 (ip_rt_error_burst), so
# 5 is what the kernel surely has, icmp_send()'s own cap being 6
BURST = IP_RT_ERROR_BURST
FULL = BURST * ICMP_RATELIMIT_MS / 1000  # seconds to refill a bucket
ICMP_MSGS_PER_SEC = 1000  # net.ipv4.icmp_msgs_per_sec (ip-sysctl.rst)
ICMP_MSGS_BURST = 50  # net.ipv4.icmp_msgs_burst
HOST_BURST = ICMP_MSGS_BURST // 2  # errors surely sent: at most 2 credits each
HOST_REFILL = ICMP_MSGS_BURST / ICMP_MSGS_PER_SEC + MARGIN  # seconds to a full budget
SYN_SENDS = 3  # SYNs sent while a neighbour fails: at 0, 1 and 3 s (NEIGHBOUR_FAILS)


def errors_sent(trace: Trace | None) -> Counter[Key]:
    """The rate-limited ICMP errors a walk sends, per (node, namespace, destination)."""
    out: Counter[Key] = Counter()
    if trace is None:
        return out
    for hop in trace.hops:
        pkt = hop.packet
        if hop.event != "icmp" or pkt is None or pkt.ip is None:
            continue
        l4 = pkt.l4
        if isinstance(l4, ICMP) and is_rate_limited(l4.type, l4.code):
            # a net unreachable of a router costs ip_error()'s token and icmp_send()'s;
            # a host unreachable for a SYN answers each of its retransmissions
            cost = 2 if (l4.type, l4.code) == (3, 0) else 1
            if (l4.type, l4.code) == (3, 1) and _quotes_tcp(l4):
                cost = SYN_SENDS
            elif (l4.type, l4.code) == (3, 0) and _quotes_tcp(l4):
                # the first SYN's error may meet the socket still locked by connect()
                # (tcp_v4_err: sock_owned_by_user, a soft error): the SYN sent again
                # 1 s later gets the one that ends connect(), 2 tokens more (seed 370)
                cost = 2 * 2
            out[(hop.node, hop.netns, pkt.ip.dst)] += cost
    return out


def _quotes_tcp(icmp: ICMP) -> bool:
    """Whether an ICMP error quotes a TCP packet."""
    return icmp.quote is not None and isinstance(icmp.quote.l4, TCP)


def sender(key: Key) -> tuple[str, str]:
    """The namespace that sends the errors of a bucket (its ICMP budget's owner)."""
    return key[0], key[1]


def redirects(trace: Trace | None) -> set[Key]:
    """The buckets a walk empties: the senders the kernel would redirect."""
    return {
        (hop.node, hop.netns, hop.packet.ip.src)
        for hop in (trace.hops if trace is not None else ())
        if hop.event == "redirect" and hop.packet is not None and hop.packet.ip
    }


def within_burst(
    batches: Sequence[list[T]],
    need: Callable[[T], Counter[Key]],
    drains: Callable[[T], set[Key]] = lambda _item: set(),
) -> list[list[T]]:
    """The batches cut further so that none needs more than a burst for one key, nor
    more than `HOST_BURST` errors of one sending namespace, nor needs a bucket that
    another probe of the batch empties (a redirect)."""
    out: list[list[T]] = []
    for batch in batches:
        current: list[T] = []
        used: Counter[Key] = Counter()
        sent: Counter[tuple[str, str]] = Counter()
        emptied: set[Key] = set()
        for item in batch:
            n, d = need(item), drains(item)
            by_sender = _by_sender(n)
            if current and (
                any(used[k] + v > BURST or k in emptied for k, v in n.items())
                or any(sent[k] + v > HOST_BURST for k, v in by_sender.items())
                or any(used[k] for k in d)
            ):
                out.append(current)
                current, used, sent, emptied = [], Counter(), Counter(), set()
            current.append(item)
            used.update(n)
            sent.update(by_sender)
            emptied |= d
        if current:
            out.append(current)
    return out


def _by_sender(need: Counter[Key]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for k, v in need.items():
        out[sender(k)] += v
    return out


@dataclass(slots=True)
class Buckets:
    """What the kernel's buckets hold, as far as our clock tells (seconds of credit),
    and when each namespace last sent errors (its ICMP budget)."""

    credit: dict[Key, tuple[float, float]] = field(default_factory=dict)  # key -> at
    last_sent: dict[tuple[str, str], float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def held(self, key: Key, now: float) -> float:
        """Seconds of credit, not capped (a new peer's bucket is full: infinite)."""
        found = self.credit.get(key)
        if found is None:
            return float("inf")
        seconds, at = found
        return seconds + (now - at)

    def wait(self, need: Counter[Key]) -> float:
        """Sleep until every bucket surely holds `need` tokens; the seconds slept."""
        now = self.clock()
        token = ICMP_RATELIMIT_MS / 1000
        short = max(
            (n * token + MARGIN - self.held(k, now) for k, n in need.items()),
            default=0.0,
        )
        for who in _by_sender(need):
            if who in self.last_sent:
                short = max(short, self.last_sent[who] + HOST_REFILL - now)
        if short <= 0:
            return 0.0
        self.sleep(short)
        return short

    def spend(self, need: Counter[Key], emptied: Iterable[Key] = ()) -> None:
        """After a batch: what its errors took, and the buckets its redirects emptied."""
        now = self.clock()
        token = ICMP_RATELIMIT_MS / 1000
        for k, n in need.items():
            self.credit[k] = (min(FULL, self.held(k, now)) - n * token, now)
            self.last_sent[sender(k)] = now
        for k in emptied:
            self.credit[k] = (0.0, now)
