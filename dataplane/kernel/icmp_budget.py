"""Every probe of `verify` meets full ICMP error buckets on the kernel, as every walk of
the simulator does (`dataplane.icmp_limit`).

The kernel keeps its per-destination buckets (`net.ipv4.icmp_ratelimit`, 1000 ms a
token, 6 at most: `inet_peer_xrlim_allow()`) across probes, and probes of one batch run
at once.  So the errors the simulator's traces send are counted per (sender namespace,
destination): a batch holds at most a burst of them for each, and before a batch runs,
`wait()` sleeps until the kernel's buckets have refilled enough (one token a second).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from dataplane.icmp_limit import ICMP_RATELIMIT_MS, XRLIM_BURST_FACTOR, is_rate_limited
from dataplane.packet import ICMP
from dataplane.trace import Trace

Key = tuple[str, str, str]  # node, namespace label, destination of the error
T = TypeVar("T")
MARGIN = 0.05  # seconds of slack for the kernel's jiffies against our clock
FULL = XRLIM_BURST_FACTOR * ICMP_RATELIMIT_MS / 1000  # seconds to refill a bucket


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
            out[(hop.node, hop.netns, pkt.ip.dst)] += 1
    return out


def within_burst(
    batches: Sequence[list[T]], need: Callable[[T], Counter[Key]]
) -> list[list[T]]:
    """The batches cut further so that none needs more than a burst for one key."""
    out: list[list[T]] = []
    for batch in batches:
        current: list[T] = []
        used: Counter[Key] = Counter()
        for item in batch:
            n = need(item)
            if current and any(used[k] + v > XRLIM_BURST_FACTOR for k, v in n.items()):
                out.append(current)
                current, used = [], Counter()
            current.append(item)
            used.update(n)
        if current:
            out.append(current)
    return out


@dataclass(slots=True)
class Buckets:
    """What the kernel's buckets hold, as far as our clock tells (seconds of credit)."""

    credit: dict[Key, tuple[float, float]] = field(default_factory=dict)  # key -> at
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
        if short <= 0:
            return 0.0
        self.sleep(short)
        return short

    def spend(self, need: Counter[Key]) -> None:
        now = self.clock()
        token = ICMP_RATELIMIT_MS / 1000
        for k, n in need.items():
            self.credit[k] = (min(FULL, self.held(k, now)) - n * token, now)
