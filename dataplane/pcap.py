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
frame get a file.  A name longer than a file name may be (NAME_MAX, 255 bytes) keeps a
readable prefix and ends with a hash of the whole name (`file_name`).

Timestamps are deterministic: frame seen at hop N of the K-th walk (K from 0) is stamped
`EPOCH + K s + N µs` (EPOCH is 2024-01-01 00:00:00 UTC), so Wireshark's time column reads
the hop number in microseconds, and captures of the same scenario are byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dataplane.packet import Packet, to_bytes
from topology.errors import TopologyError

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.trace import Frame, Trace

EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IPv4, what tcpdump writes for a device without a link header
NAME_MAX = 255  # bytes in a file name (Linux limits.h, most file systems)


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


def file_name(name: str, limit: int = NAME_MAX) -> str:
    """`name` if it fits in a file name (NAME_MAX, 255 bytes on Linux), else a readable
    prefix and a hash of the whole name, the suffix kept: the same name always gives the
    same file.

    >>> file_name("node-1_host_eth0.pcap")
    'node-1_host_eth0.pcap'
    >>> len(file_name("x" * 300 + ".pcap").encode())
    255
    """
    if len(name.encode()) <= limit:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix) > 16:
        stem, suffix = name, ""
    tail = (
        "-"
        + hashlib.sha256(name.encode()).hexdigest()[:12]
        + ("." + suffix if suffix else "")
    )
    room = limit - len(tail.encode())
    prefix = stem.encode()[:room].decode(errors="ignore")  # whole characters only
    return prefix + tail


def prepare_dir(directory: str | Path) -> Path:
    """`directory`, created if needed; one that cannot be is a TopologyError."""
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise TopologyError(
            f"{out}: exists and is not a directory (captures go into a directory)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TopologyError(
            f"{out}: cannot create the directory: {err.strerror}"
        ) from None
    return out


def pcap_header(linktype: int = LINKTYPE_ETHERNET) -> bytes:
    """The pcap file header: microsecond timestamps, snaplen 65535, `linktype`."""
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)


_RECORD = struct.Struct("<IIII")


class PcapSink:
    """Writes the captures of walks as they happen, one pcap per device (memory does not
    grow with the number of walks): `add(trace)` for each walk, then `close()`.

    Existing files of the same names are replaced.  A device name too long for a file
    name is shortened (`file_name`); `renamed` maps each such capture name to its file.
    At most `MAX_OPEN` files are open at once.
    """

    MAX_OPEN = 64

    def __init__(self, directory: str | Path) -> None:
        self.dir = prepare_dir(directory)
        self.counts: dict[str, int] = {}  # file name -> frames
        self.renamed: dict[str, str] = {}
        self._open: dict[str, BinaryIO] = {}
        self._walks = 0

    def add(self, trace: Trace) -> None:
        raw: dict[
            int, bytes
        ] = {}  # one packet is seen by several devices: build it once
        for f in trace.frames:
            # an IP-in-IP device (tunl0) has no link header: its file is raw IPv4
            link = LINKTYPE_ETHERNET if f.packet.eth is not None else LINKTYPE_RAW
            data = raw.get(id(f.packet))
            if data is None:
                data = raw[id(f.packet)] = to_bytes(f.packet)
            sec, usec = divmod(f.seq, 1_000_000)
            out = self._file(capture_name(f), link)
            out.write(
                _RECORD.pack(EPOCH + self._walks + sec, usec, len(data), len(data))
            )
            out.write(data)
        self._walks += 1

    def _file(self, name: str, linktype: int = LINKTYPE_ETHERNET) -> BinaryIO:
        fname = file_name(name)
        if fname != name:
            self.renamed[name] = fname
        out = self._open.get(fname)
        if out is not None:
            self.counts[fname] += 1
            return out
        if len(self._open) >= self.MAX_OPEN:
            oldest = next(iter(self._open))
            self._open.pop(oldest).close()
        first = fname not in self.counts
        try:
            out = (self.dir / fname).open("wb" if first else "ab")
        except OSError as err:
            raise TopologyError(
                f"{self.dir / fname}: cannot write the capture: {err.strerror}"
            ) from None
        if first:
            out.write(pcap_header(linktype))
        self._open[fname] = out
        self.counts[fname] = self.counts.get(fname, 0) + 1
        return out

    def notes(self) -> list[str]:
        """What the user must be told: the captures written under another name."""
        return [
            f"capture {name} is too long for a file name ({len(name.encode())} bytes, "
            f"at most {NAME_MAX}): written as {short}"
            for name, short in sorted(self.renamed.items())
        ]

    def close(self) -> dict[str, int]:
        """Close every file; the number of frames per file name."""
        for out in self._open.values():
            out.close()
        self._open.clear()
        return dict(sorted(self.counts.items()))


def scenario_dirs(paths: Sequence[Path]) -> list[str]:
    """The subfolder of the capture directory for each of several scenario files: its
    stem, or, where stems collide (`a/lab.yaml`, `b/lab.yaml`), the stem and 8 hex digits
    of a hash of its path relative to the files' common folder, so that no two files
    share a folder and the same files always get the same folders.

    >>> scenario_dirs([Path("a/lab.yaml"), Path("b/lab.yaml"), Path("b/ttl.yaml")])
    ['lab-ffe63181', 'lab-b828f616', 'ttl']
    """
    full = [p.resolve() for p in paths]
    common = Path(os.path.commonpath(full)) if full else Path()
    stems = Counter(p.stem for p in full)
    out = []
    for p in full:
        if stems[p.stem] == 1:
            out.append(file_name(p.stem))
            continue
        rel = p.relative_to(common).as_posix() if p != common else p.name
        digest = hashlib.sha256(rel.encode()).hexdigest()[:8]
        out.append(file_name(f"{p.stem}-{digest}"))
    return out


def write_pcaps(traces: Iterable[Trace], directory: str | Path) -> dict[str, int]:
    """Write one pcap per device into `directory` (created if needed); returns the number
    of frames per file name.  Existing files of the same names are replaced."""
    sink = PcapSink(directory)
    try:
        for trace in traces:
            sink.add(trace)
    finally:
        counts = sink.close()
    return counts


__all__ = [
    "EPOCH",
    "PcapSink",
    "Record",
    "capture_name",
    "captures",
    "file_name",
    "netns_name",
    "prepare_dir",
    "scenario_dirs",
    "write_pcaps",
]
