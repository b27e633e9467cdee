"""The records devices hand back to the walker: what a device emits.

An emission is a packet leaving an interface (`Xmit`), arriving at one (`Rx`), handed to a
namespace's IP layer by a local sender (`Out`), or re-entering a bridge after a bridged DNAT
(`Bridged`).  Devices return them and never call one another; only `dataplane.walker`
follows them.  This module depends on nothing but the packet, so every device can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataplane.packet import Packet


@dataclass(frozen=True, slots=True)
class Xmit:
    pkt: Packet
    netns: str
    ifname: str


@dataclass(frozen=True, slots=True)
class Rx:
    pkt: Packet
    netns: str
    ifname: str
    port: str | None = None  # the bridge port, when a bridge hands a frame up to IP


@dataclass(frozen=True, slots=True)
class Out:
    """A locally generated packet entering the IP layer of `netns` (OUTPUT path)."""

    pkt: Packet
    netns: str
    raw: bool = False  # a crafted packet from a raw socket (`dataplane send`)


@dataclass(frozen=True, slots=True)
class Bridged:
    """A frame that br_netfilter bridges after a DNAT (`bridged_dnat`): its new
    destination is on the bridge it came from, so it re-enters the bridge's forwarding as
    from `in_port`, keeping its conntrack context (no routing, no TTL decrement)."""

    pkt: Packet
    netns: str
    bridge: str
    in_port: str
    ctx: Any  # the HookContext of PREROUTING (its conntrack entry goes on)
    src_mac: str  # bridged, not routed: the sender's MAC stays


Emission = Xmit | Rx | Out | Bridged

__all__ = ["Bridged", "Emission", "Out", "Rx", "Xmit"]
