"""The records devices hand back to the walker: what a device emits.

An emission is a packet leaving an interface (`Xmit`), arriving at one (`Rx`), handed to a
namespace's IP layer by a local sender (`Out`), re-entering a bridge after a bridged DNAT
(`Bridged`), or flooded copies that only captures see (`Unseen`).  Devices return them and never call one another; only `dataplane.walker`
follows them.  This module depends on nothing but the packet, so every device can import it.
They are named tuples (immutable, and made dozens of times per walk at a quarter of the cost
of a frozen dataclass).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from dataplane.packet import Packet


class Xmit(NamedTuple):
    pkt: Packet
    netns: str
    ifname: str


class Rx(NamedTuple):
    pkt: Packet
    netns: str
    ifname: str
    port: str | None = None  # the bridge port, when a bridge hands a frame up to IP


class Out(NamedTuple):
    """A locally generated packet entering the IP layer of `netns` (OUTPUT path)."""

    pkt: Packet
    netns: str


class Bridged(NamedTuple):
    """A frame that br_netfilter bridges after a DNAT (`bridged_dnat`): its new
    destination is on the bridge it came from, so it re-enters the bridge's forwarding as
    from `in_port`, keeping its conntrack context (no routing, no TTL decrement)."""

    pkt: Packet
    netns: str
    bridge: str
    in_port: str
    ctx: Any  # the HookContext of PREROUTING (its conntrack entry goes on)
    src_mac: str  # bridged, not routed: the sender's MAC stays


class Unseen(NamedTuple):
    """Copies of a flood out of bridge ports whose receivers drop them unseen (not their
    MAC, an ARP request for someone else): nothing acts on them, so they cost no step of
    the walk, but Linux sends them and tcpdump on each end sees them, so a walk that keeps
    captures records their frames.  `copies`: (port, peer namespace id, peer ifname)."""

    pkt: Packet
    netns: str
    copies: tuple[tuple[str, str, str], ...]


Emission = Xmit | Rx | Out | Bridged | Unseen

__all__ = ["Bridged", "Emission", "Out", "Rx", "Unseen", "Xmit"]
