"""The record of a walk: a Trace is a list of Hops and a verdict.

A hop is small and immutable: where it happened (node, namespace, device), what happened
(`event`), a one-line human detail (the route, the FDB entry, the rule) and the packet as it
was then (a frozen `dataplane.packet.Packet`, never a live scapy packet).  Rewrites carry
`FieldDiff`s.  Drops carry a `DropReason`, like errno, from which the verdict follows.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from dataplane.packet import Packet
from topology.scenario import Verdict

if TYPE_CHECKING:  # pragma: no cover
    from topology.model import Cluster

__all__ = ["DropReason", "FieldDiff", "Frame", "Hop", "Trace", "Verdict"]


class DropReason(StrEnum):
    """Why a packet's walk ended; each maps to one verdict word."""

    POLICY_EGRESS = "policy-egress"
    POLICY_INGRESS = "policy-ingress"
    HOOK = "hook"
    FILTER = "filter"  # a firewall's rule that denies (Docker's FORWARD chains)
    NO_ROUTE = "no-route"
    NEIGH_FAILED = "neigh-failed"
    TTL = "ttl-exceeded"
    MTU = "mtu-exceeded"
    PORT_CLOSED = "port-closed"
    NO_ENDPOINTS = "no-endpoints"
    NXDOMAIN = "nxdomain"
    NOT_FOR_US = "not-for-us"
    NO_SOCKET = "no-socket"
    HOP_LIMIT = "hop-limit"
    BRIDGE = "bridge"
    BROADCAST = "broadcast"  # EACCES: a broadcast destination without SO_BROADCAST
    FRAG_FAILED = "frag-failed"  # a datagram that cannot be refragmented (IpFragFails)
    ICMP_RATELIMIT = "icmp-ratelimit"  # the ICMP error that would answer was not sent

    @property
    def verdict(self) -> Verdict:
        return _VERDICT_OF[self]


# The drops of the NetworkPolicy filter (the explanation names the policy).
POLICY_DROPS = (DropReason.POLICY_EGRESS, DropReason.POLICY_INGRESS)

_VERDICT_OF = {
    DropReason.POLICY_EGRESS: Verdict.DENIED_EGRESS,
    DropReason.POLICY_INGRESS: Verdict.DENIED_INGRESS,
    DropReason.HOOK: Verdict.DROPPED,
    DropReason.FILTER: Verdict.DENIED,
    DropReason.NO_ROUTE: Verdict.NO_ROUTE,
    DropReason.NEIGH_FAILED: Verdict.UNREACHABLE,
    DropReason.TTL: Verdict.TTL_EXCEEDED,
    DropReason.MTU: Verdict.TOO_BIG,
    DropReason.PORT_CLOSED: Verdict.REFUSED,
    DropReason.NO_ENDPOINTS: Verdict.REFUSED,
    DropReason.NXDOMAIN: Verdict.NXDOMAIN,
    DropReason.NOT_FOR_US: Verdict.DROPPED,
    DropReason.NO_SOCKET: Verdict.DROPPED,
    DropReason.HOP_LIMIT: Verdict.DROPPED,
    DropReason.BRIDGE: Verdict.DROPPED,
    DropReason.BROADCAST: Verdict.DROPPED,
    DropReason.FRAG_FAILED: Verdict.DROPPED,
    DropReason.ICMP_RATELIMIT: Verdict.DROPPED,
}


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One rewritten field: renders `ip.dst: 10.96.0.10 -> 10.0.2.7`."""

    field: str
    before: str
    after: str

    def __str__(self) -> str:
        return f"{self.field}: {self.before} -> {self.after}"


class Hop(NamedTuple):
    """One thing that happened to the packet at one place.

    A named tuple rather than a frozen dataclass, as `Frame`: a walk records dozens, and a
    frozen dataclass pays `object.__setattr__` for each of its ten fields (four times the
    cost of the tuple)."""

    seq: int
    node: str  # node name, "gateway", "underlay" or "external"
    netns: str  # "pod default/a", "host", "external web", "gateway"
    device: str  # interface or device name, "" for the IP layer
    event: str  # route, arp, xmit, recv, bridge, hook, nat, encap, decap, deliver, drop, ...
    detail: str
    packet: Packet | None = None
    diffs: tuple[FieldDiff, ...] = ()
    reason: DropReason | None = None
    direction: str = "request"  # "request" or "reply"
    # A CNI with observation points of its own (Cilium's, as Hubble names them:
    # FROM_ENDPOINT, TO_OVERLAY, ...) and the BPF program that emits them; "" otherwise.
    point: str = ""
    program: str = ""

    @property
    def where(self) -> str:
        return f"{self.node} {self.netns}".strip()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "seq": self.seq,
            "node": self.node,
            "netns": self.netns,
            "device": self.device,
            "event": self.event,
            "detail": self.detail,
            "direction": self.direction,
            "packet": self.packet.summary() if self.packet is not None else None,
        }
        if self.diffs:
            d["rewrites"] = [str(x) for x in self.diffs]
        if self.reason is not None:
            d["reason"] = str(self.reason)
        if self.point:
            d["observation_point"] = self.point
            d["program"] = self.program
        return d


class Frame(NamedTuple):
    """A frame as `tcpdump -i DEVICE` in one namespace saw it (for `dataplane.pcap`).

    `seq` is the number of the hop it belongs to (the last hop recorded when it passed);
    `netns` is the namespace's id: a node's name, `pod:NS/NAME`, `external:NAME`, `gateway`.
    A named tuple rather than a frozen dataclass: the walk records dozens per probe.
    """

    seq: int
    node: str
    netns: str
    device: str
    packet: Packet


@dataclass(slots=True)
class Trace:
    """A whole walk: the hops in order and what became of the packet."""

    title: str
    hops: list[Hop] = field(default_factory=list)
    verdict: Verdict | None = None
    reason: DropReason | None = None
    explanation: str = ""
    policy: str | None = None  # the policy that decided (allowed by / isolated by)
    endpoint: str | None = None  # the backend a Service chose
    assumptions: list[str] = field(default_factory=list)
    mode: str = ""
    frames: list[Frame] = field(default_factory=list)  # what each device saw, in order
    # The cluster the walk went through (pictures and the notebook view draw it).
    cluster: Cluster | None = field(default=None, repr=False, compare=False)

    def devices(self) -> list[str]:
        """`NODE/DEVICE` of every hop in order (for `via` expectations)."""
        return [f"{h.node}/{h.device}" if h.device else h.node for h in self.hops]

    def passes(self, via: tuple[str, ...]) -> bool:
        """Whether the hops pass `via` in this order (a subsequence; a bare NODE matches
        any device of that node)."""
        it = iter(self.hops)
        for want in via:
            for h in it:
                if want in (h.node, f"{h.node}/{h.device}"):
                    break
            else:
                return False
        return True

    def to_pcap(self, directory: str | Path) -> dict[str, int]:
        """Write one pcap per device this walk crossed into `directory`
        (`NODE_NETNS_DEVICE.pcap`); returns the frame count per file name."""
        from dataplane.pcap import write_pcaps

        return write_pcaps([self], directory)

    def _repr_html_(self) -> str:
        """Jupyter shows the walk viewer inline (`dataplane.page`)."""
        # The view is looked up when a notebook displays the record, so that the record
        # does not depend on the views built on it.
        notebook_html = importlib.import_module("dataplane.page").notebook_html
        html: str = notebook_html([self], self.title)
        return html

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "mode": self.mode,
            "verdict": str(self.verdict) if self.verdict else None,
            "reason": str(self.reason) if self.reason else None,
            "explanation": self.explanation,
            "policy": self.policy,
            "endpoint": self.endpoint,
            "assumptions": list(self.assumptions),
            "hops": [h.to_dict() for h in self.hops],
        }
