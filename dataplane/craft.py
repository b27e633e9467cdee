"""Crafted packets from scenario data: scapy layer names and fields, or hex bytes.

Values are data, never code: a layer is looked up by name in a fixed table of scapy
classes and its fields are set by name; scapy itself rejects unknown fields.  Addresses the
user leaves out are filled as the sending kernel would (the source from the route, the
link header from ARP), never from this machine's own tables (scapy would read them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from dataplane.packet import Packet, from_scapy
from topology.errors import TopologyError
from topology.scenario import LayerSpec

ADDRESS_FIELDS = {"src", "dst"}
MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def _layers() -> dict[str, Any]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.sctp import SCTP, SCTPChunkAbort, SCTPChunkInit, SCTPChunkInitAck
    from scapy.packet import Raw

    return {
        "Ether": Ether,
        "IP": IP,
        "TCP": TCP,
        "UDP": UDP,
        "ICMP": ICMP,
        "SCTP": SCTP,
        "SCTPChunkInit": SCTPChunkInit,
        "SCTPChunkInitAck": SCTPChunkInitAck,
        "SCTPChunkAbort": SCTPChunkAbort,
        "Raw": Raw,
    }


def from_layers(specs: tuple[LayerSpec, ...], address: Callable[[str], str]) -> Packet:
    """Build a packet from layer specs, outermost first (`[IP: {...}, TCP: {...}]`)."""
    table = _layers()
    spkt: Any = None
    has_ether_dst = False
    for spec in specs:
        cls = table.get(spec.name)
        if cls is None:
            raise TopologyError(
                f"layer {spec.name!r} is not supported (allowed: {', '.join(table)})",
                field="send.packet",
            )
        fields = dict(spec.fields)
        if spec.name == "Raw" and "size" in fields:
            size = fields.pop("size")
            if not isinstance(size, int) or size < 0:
                raise TopologyError(
                    f"Raw size {size!r} must be a whole number >= 0",
                    field="send.packet.Raw.size",
                )
            fields["load"] = bytes(size)
        for k, v in list(fields.items()):
            if k in ADDRESS_FIELDS:
                fields[k] = _address_value(spec.name, k, v, address)
        if spec.name == "IP":
            fields.setdefault("src", "0.0.0.0")  # the kernel picks it from the route
        if spec.name == "Ether":
            has_ether_dst = "dst" in fields
            fields.setdefault("src", "00:00:00:00:00:00")
        if spec.name == "IP" and isinstance(fields.get("flags"), str):
            fields["flags"] = fields["flags"].replace(",", "+")
        try:
            layer = cls(**fields)
        except Exception as err:  # scapy raises many kinds (KeyError for a port name)
            raise TopologyError(f"{spec.name}: {err}", field="send.packet") from err
        spkt = layer if spkt is None else spkt / layer
    if spkt is None:
        raise TopologyError("a packet needs at least one layer", field="send.packet")
    try:
        # Building the bytes checks every value against its field (ranges, types, MACs);
        # reading them back gives the values the wire would carry.
        spkt = spkt.__class__(bytes(spkt))
    except Exception as err:  # scapy raises many kinds (struct.error, KeyError, ...)
        raise TopologyError(
            f"{spkt.summary()}: a field value does not fit its field "
            f"({type(err).__name__}: {err})",
            field="send.packet",
        ) from err
    from scapy.layers.l2 import Ether

    if isinstance(spkt, Ether) and not has_ether_dst:
        spkt = spkt.payload  # no link destination: the sender's ARP fills it
    try:
        return from_scapy(spkt)
    except (ValueError, AttributeError) as err:
        raise TopologyError(str(err), field="send.packet") from err


def _address_value(
    layer: str, name: str, value: object, address: Callable[[str], str]
) -> str:
    """An address field: an endpoint or IPv4 address (IP), or a MAC (Ether); never a
    host name, which scapy would resolve through this machine's DNS."""
    if not isinstance(value, str):
        raise TopologyError(
            f"{layer}.{name}: {value!r} is not an address",
            field=f"send.packet.{layer}.{name}",
        )
    if layer == "Ether":
        if not MAC.fullmatch(value):
            raise TopologyError(
                f"Ether.{name}: {value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)",
                field=f"send.packet.Ether.{name}",
            )
        return value
    text = address(value)
    try:
        IPv4Address(text)
    except ValueError:
        raise TopologyError(
            f"{layer}.{name}: {value!r} is neither an IPv4 address nor an "
            "endpoint (NS/POD, node/NAME, external/NAME, svc/NS/NAME)",
            field=f"send.packet.{layer}.{name}",
        ) from None
    return text


def from_hex(text: str) -> Packet:
    """A packet from hex bytes, from the IP header on."""
    from scapy.layers.inet import IP

    try:
        raw = bytes.fromhex("".join(text.split()))
    except ValueError as err:
        raise TopologyError(f"hex: {err}", field="send.packet.hex") from err
    if len(raw) < 20 or raw[0] >> 4 != 4:
        raise TopologyError(
            "hex: not an IPv4 packet (it must start at the IP header)",
            field="send.packet.hex",
        )
    try:
        return from_scapy(IP(raw))
    except ValueError as err:
        raise TopologyError(f"hex: {err}", field="send.packet.hex") from err
