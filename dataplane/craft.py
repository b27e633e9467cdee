"""Crafted packets from scenario data: scapy layer names and fields, or hex bytes.

Values are data, never code, and never a question to this machine: a layer is looked up by
name in a fixed table (`LAYERS`), and only the fields the walk carries are accepted, each
checked for its type and range before scapy sees it.  Every address field takes an IPv4
literal or one of the scenario's endpoints (`dst: y/b`), never a host name (scapy's
`IPField`/`Emph`/`DestIPField` would resolve it with this machine's resolver); MAC fields
take `aa:bb:cc:dd:ee:ff` only (scapy's `DestMACField` would ask the host's routing table
and ARP); ports are numbers (a port name would be looked up in the host's services table).
Addresses the user leaves out are filled as the sending kernel would (the source from the
route, the link header from ARP), never from this machine's own tables.  A packet is at
most 65535 bytes from its IP header on (the IPv4 total length field, RFC 791).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from dataplane.packet import IP_HLEN, Packet, from_scapy, scapy_ready
from topology.errors import TopologyError
from topology.scenario import LayerSpec
from topology.yamlsource import format_path

MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
IP_MAX_LEN = 65535  # the IPv4 total length field is 16 bits (RFC 791)
TCP_FLAGS = "FSRPAUECN"  # scapy's names of the 9 TCP flag bits, lowest first
IP_FLAGS = {"MF": 1, "DF": 2}  # RFC 791; the reserved ("evil") bit is not carried

ENDPOINTS = "NS/POD, node/NAME, external/NAME, svc/NS/NAME"


@dataclass(frozen=True, slots=True)
class Kind:
    """What one field accepts: `int` (a range), `address`, `mac`, `ip-flags`,
    `tcp-flags`, `load` (text or bytes) or `size` (a number of zero bytes)."""

    name: str
    low: int = 0
    high: int = 0

    def allowed(self) -> str:
        if self.name in ("int", "size"):
            return f"a whole number {self.low}-{self.high}"
        return {
            "address": f"an IPv4 address or an endpoint ({ENDPOINTS})",
            "mac": "a MAC address aa:bb:cc:dd:ee:ff",
            "ip-flags": "DF, MF, DF+MF or a number 0-3",
            "tcp-flags": f"letters of {TCP_FLAGS} (S, SA, PA, ...) or a number 0-511",
            "load": "text or bytes",
        }[self.name]


U8, U16, U32 = Kind("int", 0, 0xFF), Kind("int", 0, 0xFFFF), Kind("int", 0, 0xFFFFFFFF)
ADDRESS, ETHER = Kind("address"), Kind("mac")

# The layers and fields a `send` step accepts: exactly what the walk carries (see
# `dataplane.packet`); scapy fills lengths and checksums.
LAYERS: dict[str, dict[str, Kind]] = {
    "Ether": {"dst": ETHER, "src": ETHER, "type": U16},
    "IP": {
        "src": ADDRESS,
        "dst": ADDRESS,
        "ttl": U8,
        "tos": U8,
        "id": U16,
        "flags": Kind("ip-flags"),
        "frag": Kind("int", 0, 0x1FFF),
        "proto": U8,
    },
    "TCP": {
        "sport": U16,
        "dport": U16,
        "seq": U32,
        "ack": U32,
        "flags": Kind("tcp-flags"),
        "window": U16,
    },
    "UDP": {"sport": U16, "dport": U16},
    "ICMP": {"type": U8, "code": U8, "id": U16, "seq": U16},
    "SCTP": {"sport": U16, "dport": U16, "tag": U32},
    "SCTPChunkInit": {},
    "SCTPChunkInitAck": {},
    "SCTPChunkAbort": {},
    "Raw": {"load": Kind("load"), "size": Kind("size", 0, IP_MAX_LEN - IP_HLEN)},
}


# Header bytes each layer adds to the IPv4 total length (Ether is below it).
HEADER_LEN = {"Ether": 0, "IP": 20, "TCP": 20, "UDP": 8, "ICMP": 8, "SCTP": 12,
              "SCTPChunkInit": 20, "SCTPChunkInitAck": 20, "SCTPChunkAbort": 4,
              "Raw": 0}  # fmt: skip


def _scapy_classes() -> dict[str, Any]:
    scapy_ready()
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


def _fail(message: str, *where: int | str) -> TopologyError:
    return TopologyError(message, field=format_path(("send", "packet", *where)))


def check_field(
    layer: str, name: str, value: object, address: Callable[[str], str], index: int = 0
) -> Any:
    """A field's value as scapy takes it, or a TopologyError saying what is allowed.

    >>> check_field("IP", "ttl", 2, str), check_field("TCP", "flags", "SA", str)
    (2, 18)
    """
    fields = LAYERS[layer]
    where = (index, layer, name)
    kind = fields.get(name)
    if kind is None:
        allowed = ", ".join(fields) or "none"
        raise _fail(f"not a field of {layer} (allowed: {allowed})", *where)
    bad = _fail(f"{value!r} is not allowed (allowed: {kind.allowed()})", *where)
    if kind.name in ("int", "size"):
        if type(value) is not int:  # bool is an int, 1e3 a float: neither is a field
            raise bad
        if not kind.low <= value <= kind.high:
            raise _fail(
                f"{value} is out of range (allowed: {kind.low}-{kind.high})", *where
            )
        return value
    if kind.name == "address":
        return _address(value, address, bad)
    if kind.name == "mac":
        if not isinstance(value, str) or not MAC.fullmatch(value):
            raise bad
        return value.lower()
    if kind.name == "ip-flags":
        return _flags(value, IP_FLAGS, bad)
    if kind.name == "tcp-flags":
        return _flags(value, {f: 1 << i for i, f in enumerate(TCP_FLAGS)}, bad)
    assert kind.name == "load"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise bad


def _address(value: object, address: Callable[[str], str], bad: Exception) -> str:
    """An IPv4 literal, or an endpoint's address; a host name is refused, not resolved."""
    if not isinstance(value, str):
        raise bad
    text = address(value)
    try:
        return str(IPv4Address(text))
    except ValueError:
        raise bad from None


def _flags(value: object, names: Mapping[str, int], bad: Exception) -> int:
    """Flag names joined by `+` or `,` (`DF`, `S+A`), letters (`SA`), or a number."""
    top = sum(names.values())
    if type(value) is int:
        if not 0 <= value <= top:
            raise bad
        return value
    if not isinstance(value, str):
        raise bad
    parts = [p for p in re.split(r"[+,| ]", value) if p]
    if all(len(n) == 1 for n in names):  # TCP: letters, `SA` as well as `S+A`
        parts = [c for p in parts for c in p]
    bits = 0
    for part in parts:
        if part not in names:
            raise bad
        bits |= names[part]
    return bits


def from_layers(specs: tuple[LayerSpec, ...], address: Callable[[str], str]) -> Packet:
    """Build a packet from layer specs, outermost first (`[IP: {...}, TCP: {...}]`)."""
    classes = _scapy_classes()
    spkt: Any = None
    has_ether_dst = False
    total = 0  # the IPv4 total length so far, checked before any bytes are made
    for j, spec in enumerate(specs):
        if spec.name not in LAYERS:
            raise _fail(
                f"layer {spec.name!r} is not supported (allowed: {', '.join(LAYERS)})",
                j,
            )
        fields = {
            k: check_field(spec.name, k, v, address, j) for k, v in spec.fields.items()
        }
        total += HEADER_LEN[spec.name]
        if spec.name == "Raw":
            if "size" in fields and "load" in fields:
                raise _fail("give load or size, not both", j, "Raw")
            load = fields.pop("load", None)
            size = fields.pop("size", None)
            total += len(load) if load is not None else size or 0
            if total > IP_MAX_LEN:
                raise _fail(
                    f"the packet would be {total} bytes, longer than {IP_MAX_LEN} "
                    "(the IPv4 maximum total length)",
                    j,
                    "Raw",
                )
            fields["load"] = load if load is not None else bytes(size or 0)
        if spec.name == "IP":
            fields.setdefault("src", "0.0.0.0")  # the kernel picks it from the route
        if spec.name == "Ether":
            has_ether_dst = "dst" in fields
            # Never let scapy fill the link header: DestMACField asks the host's ARP.
            fields.setdefault("dst", "ff:ff:ff:ff:ff:ff")
            fields.setdefault("src", "00:00:00:00:00:00")
        layer = classes[spec.name](**fields)
        spkt = layer if spkt is None else spkt / layer
    if spkt is None:
        raise TopologyError("a packet needs at least one layer", field="send.packet")
    try:
        # Reading the bytes back gives the values the wire would carry.
        spkt = spkt.__class__(bytes(spkt))
    except Exception as err:  # scapy raises many kinds on odd stacks
        raise TopologyError(
            f"{spkt.summary()}: the layers do not make a packet "
            f"({type(err).__name__}: {err})",
            field="send.packet",
        ) from err
    from scapy.layers.l2 import Ether

    if isinstance(spkt, Ether) and not has_ether_dst:
        spkt = spkt.payload  # no link destination: the sender's ARP fills it
    try:
        pkt = from_scapy(spkt)
    except (ValueError, AttributeError) as err:
        raise TopologyError(str(err), field="send.packet") from err
    if pkt.ip is not None and pkt.ip_len() > IP_MAX_LEN:
        raise TopologyError(
            f"the packet is {pkt.ip_len()} bytes, longer than {IP_MAX_LEN} "
            "(the IPv4 maximum total length)",
            field="send.packet",
        )
    return pkt


def from_hex(text: str) -> Packet:
    """A packet from hex bytes, from the IP header on, dissected as strictly as a
    captured packet (`dataplane.dissect`)."""
    from dataplane.dissect import Malformed, dissect_ip

    try:
        raw = bytes.fromhex("".join(text.split()))
    except ValueError as err:
        raise TopologyError(f"hex: {err}", field="send.packet.hex") from err
    if len(raw) > IP_MAX_LEN:
        raise TopologyError(
            f"hex: {len(raw)} bytes, longer than {IP_MAX_LEN} (the IPv4 maximum "
            "total length)",
            field="send.packet.hex",
        )
    try:
        return dissect_ip(raw)
    except Malformed as err:
        raise TopologyError(f"hex: malformed: {err}", field="send.packet.hex") from None
    except ValueError as err:
        raise TopologyError(f"hex: {err}", field="send.packet.hex") from None
