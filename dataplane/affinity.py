"""`sessionAffinity: ClientIP`: the client addresses each node's kube-proxy remembers.

kube-proxy programs affinity per endpoint and per node:
- iptables mode (pkg/proxy/iptables/proxier.go): the Service chain first tries, for each
  endpoint, `-m recent --name KUBE-SEP-… --rcheck --seconds T --reap -j KUBE-SEP-…`, and the
  endpoint chain records the client with `-m recent --name KUBE-SEP-… --set` before its DNAT
  (xt_recent: one list per endpoint chain, in the node's network namespace);
- nftables mode (pkg/proxy/nftables/proxier.go): `ip saddr @affinity-… goto endpoint-…` in
  the Service chain, `update @affinity-… { ip saddr }` in the endpoint chain, the set
  declared with `flags dynamic,timeout; timeout Ts`.

Either way a NEW connection from a client whose last NEW connection through that endpoint
chain is less than T seconds old (`sessionAffinityConfig.clientIP.timeoutSeconds`, 10800 by
default) goes to the same endpoint, and every such connection restarts the clock; an older
entry is expired and the choice is made afresh.  Only NEW connections consult or refresh the
lists (they are in the nat table); later packets follow conntrack.

The clock is the packets' own: a replay sets `now` to each captured packet's timestamp.  A
probe step has no clock and starts from a fresh walk state, so it starts with no entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Recent:
    """A remembered client: the endpoint it went to and how long ago (seconds)."""

    endpoint: str  # the endpoint's key (NS/POD, or its address)
    age: float


@dataclass(slots=True)
class AffinityTable:
    """The affinity entries of every node: (netns, Service port, client) -> (endpoint,
    time of the client's last NEW connection through it)."""

    now: float = 0.0  # the current packet's time in seconds (0 without a clock)
    entries: dict[tuple[str, str, str], tuple[str, float]] = field(default_factory=dict)

    def recall(self, netns: str, port: str, client: str, timeout: int) -> Recent | None:
        """The endpoint `client` last went to through Service port `port` on `netns`,
        while that is less than `timeout` seconds ago (`--rcheck --seconds`)."""
        hit = self.entries.get((netns, port, client))
        if hit is None:
            return None
        age = self.now - hit[1]
        return Recent(hit[0], age) if 0 <= age < timeout else None

    def remember(self, netns: str, port: str, client: str, endpoint: str) -> None:
        """Record that `client` went to `endpoint` now (`--set`, `update @affinity`)."""
        self.entries[(netns, port, client)] = (endpoint, self.now)
