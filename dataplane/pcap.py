"""Captures: one pcap per device, as `tcpdump -i DEVICE` in its namespace would have seen it.

The walker notes every frame a device sees (`Trace.frames`): a frame leaving or entering a
veth end, a node's `eth0` on the underlay (the outer VXLAN frame included), the inner frame
on `flannel.1` (before encapsulation and after decapsulation), every frame entering the pod
bridge by a port or sent through it by the node (tcpdump puts the bridge in promiscuous
mode, so it sees bridged frames too), and `lo`.  Flooded frames that a namespace ignores are
in its capture as well, as they would be on a real wire.

File names are `NODE_NETNS_DEVICE.pcap` with NETNS one of `host` (a node's own namespace,
hostNetwork pods included), `pod-NS-NAME`, `external-NAME` and `gateway`:
`node-1_pod-default-a_eth0.pcap`, `node-1_host_cbr0.pcap`, `node-2_host_flannel.1.pcap`,
`gateway_gateway_eth0.pcap`, `external_external-web_eth0.pcap`.  Only devices that saw a
frame get a file.

Timestamps are deterministic: frame seen at hop N of the K-th walk (K from 0) is stamped
`EPOCH + K s + N µs` (EPOCH is 2024-01-01 00:00:00 UTC), so Wireshark's time column reads
the hop number in microseconds, and captures of the same scenario are byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dataplane.packet import Packet, to_bytes

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.trace import Frame, Trace

EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
LINKTYPE_ETHERNET = 1


@dataclass(frozen=True, slots=True)
class Record:
    """One frame of one capture file."""

    sec: int
    usec: int
    packet: Packet


def netns_name(netns_id: str) -> str:
    """The NETNS part of a capture's file name.

    >>> netns_name("pod:default/a"), netns_name("node-1"), netns_name("external:web")
    ('pod-default-a', 'host', 'external-web')
    """
    kind, sep, rest = netns_id.partition(":")
    if sep and kind == "pod":
        return "pod-" + rest.replace("/", "-")
    if sep and kind == "external":
        return f"external-{rest}"
    return "gateway" if netns_id == "gateway" else "host"


def capture_name(frame: Frame) -> str:
    """`NODE_NETNS_DEVICE.pcap` of the device that saw `frame`."""
    return f"{frame.node}_{netns_name(frame.netns)}_{frame.device}.pcap"


def captures(traces: Iterable[Trace]) -> dict[str, list[Record]]:
    """Every device's frames, in the order it saw them, with their timestamps."""
    files: dict[str, list[Record]] = {}
    for k, trace in enumerate(traces):
        for f in trace.frames:
            sec, usec = divmod(f.seq, 1_000_000)
            rec = Record(EPOCH + k + sec, usec, f.packet)
            files.setdefault(capture_name(f), []).append(rec)
    return dict(sorted(files.items()))


def write_pcaps(traces: Iterable[Trace], directory: str | Path) -> dict[str, int]:
    """Write one pcap per device into `directory` (created if needed); returns the number
    of frames per file name.  Existing files of the same names are replaced."""
    from scapy.utils import PcapWriter

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    raw: dict[int, bytes] = {}  # one packet is seen by several devices: build it once
    counts: dict[str, int] = {}
    for name, records in captures(traces).items():
        writer = PcapWriter(
            str(out / name), linktype=LINKTYPE_ETHERNET, endianness="<", sync=False
        )
        try:
            writer.write_header(None)
            for rec in records:
                assert rec.packet.eth is not None, "a frame on a wire has a link header"
                data = raw.get(id(rec.packet))
                if data is None:
                    data = raw[id(rec.packet)] = to_bytes(rec.packet)
                writer.write_packet(data, sec=rec.sec, usec=rec.usec)
        finally:
            writer.close()
        counts[name] = len(records)
    return counts


__all__ = ["EPOCH", "Record", "capture_name", "captures", "netns_name", "write_pcaps"]
