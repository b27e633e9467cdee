"""The building blocks of the Compose parser (`topology.compose`): where a value was
written (`Source`, with its warnings), key and address checks, and the `ports` and
`expose` syntaxes of the Compose Specification (spec.md "ports": the short syntax
`[HOST:]CONTAINER[/PROTOCOL]` with `HOST` `[IP:](port | range)`, and the long syntax).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address
from typing import Any

from topology.errors import TopologyError
from topology.fields import describe
from topology.model import Loc, Protocol
from topology.yamlsource import LineTree, PathPart, format_path

PORT_KEYS = frozenset(
    ["target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"]
)

_SHORT_PORT = re.compile(
    r"(?:(?:(?P<ip>[0-9.]+):)?(?P<published>[0-9]*(?:-[0-9]+)?):)?"
    r"(?P<target>[0-9]+(?:-[0-9]+)?)(?:/(?P<proto>[A-Za-z]+))?\Z"
)
PROTOCOLS = {"tcp": Protocol.TCP, "udp": Protocol.UDP, "sctp": Protocol.SCTP}


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One `ports` item: container ports `target` (a range `first..last`), host ports
    `published` (None: Docker picks free ones from 32768 upward, a range: the first free
    one in it), the host address (None: every address, 0.0.0.0)."""

    target: tuple[int, int]
    published: tuple[int, int] | None
    host_ip: IPv4Address | None
    protocol: Protocol
    loc: Loc


class Source:
    """Where a compose mapping was written: its file, its lines and its path there, and
    the warnings collected while reading it."""

    def __init__(
        self, file: str, lines: LineTree, prefix: tuple[PathPart, ...], notes: list[str]
    ) -> None:
        self.file = file
        self.lines = lines
        self.prefix = prefix
        self.notes = notes

    def loc(self, parts: Sequence[PathPart]) -> Loc:
        return Loc(self.file, self.lines.line_at((*self.prefix, *parts)))

    def fail(self, obj: str, parts: Sequence[PathPart], reason: str) -> TopologyError:
        return TopologyError(reason, self.loc(parts), obj, format_path(parts) or None)

    def warn(self, obj: str, parts: Sequence[PathPart], reason: str) -> None:
        where = ": ".join(
            p for p in (str(self.loc(parts)), obj, format_path(parts)) if p
        )
        self.notes.append(f"{where}: {reason}")


def mapping(
    src: Source, obj: str, parts: tuple[PathPart, ...], value: Any
) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise src.fail(obj, parts, f"expected a mapping, got {describe(value)}")
    return value


def keys(
    src: Source, obj: str, parts: tuple[PathPart, ...], data: Mapping[str, Any],
    allowed: frozenset[str], unmodelled: frozenset[str] = frozenset(),
) -> None:  # fmt: skip
    for key in data:
        if key.startswith("x-"):
            continue  # extension fields (spec.md "Extension")
        if key in unmodelled:
            src.warn(obj, (*parts, key), f"{key} is not modelled (ignored)")
        elif key not in allowed:
            raise src.fail(
                obj, (*parts, key),
                f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})",
            )  # fmt: skip


def address(
    src: Source, obj: str, parts: tuple[PathPart, ...], value: Any
) -> IPv4Address:
    try:
        if not isinstance(value, str):
            raise AddressValueError
        return IPv4Address(value)
    except (AddressValueError, ValueError):
        raise src.fail(
            obj, parts, f"{describe(value)} is not an IPv4 address"
        ) from None


def _range(text: str) -> tuple[int, int] | None:
    first, _, last = text.partition("-")
    lo, hi = int(first), int(last or first)
    if not 1 <= lo <= hi <= 65535:
        return None
    return lo, hi


def _protocol(
    src: Source, obj: str, parts: tuple[PathPart, ...], value: Any
) -> Protocol:
    proto = PROTOCOLS.get(value) if isinstance(value, str) else None
    if proto is None:
        raise src.fail(
            obj, parts, f"{describe(value)} is not a protocol (allowed: tcp, udp, sctp)"
        )
    return proto


def ports(
    src: Source, obj: str, parts: tuple[PathPart, ...], value: Any
) -> tuple[PortSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise src.fail(obj, parts, f"expected a list, got {describe(value)}")
    out = []
    for i, item in enumerate(value):
        at = (*parts, i)
        spec = (
            _long_port(src, obj, at, item)
            if isinstance(item, dict)
            else _short_port(src, obj, at, item)
        )
        span = spec.target[1] - spec.target[0]
        if (
            spec.published is not None
            and span
            and spec.published[1] - spec.published[0] != span
        ):
            raise src.fail(
                obj, at,
                f"{spec.published[1] - spec.published[0] + 1} host ports for {span + 1}"
                " container ports (a range publishes one host port per container port)",
            )  # fmt: skip
        out.append(spec)
    return tuple(out)


def _short_port(src: Source, obj: str, at: tuple[PathPart, ...], item: Any) -> PortSpec:
    text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
    match = _SHORT_PORT.match(text) if isinstance(text, str) else None
    why = (
        '[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], e.g. "8080:80",'
        ' "127.0.0.1:8080:80/udp", "9090-9091:8080-8081"'
    )
    if match is None:
        raise src.fail(
            obj, at, f"{describe(item)} is not a port mapping (allowed: {why})"
        )
    target = _range(match["target"])
    published = _range(match["published"]) if match["published"] else None
    if target is None or (match["published"] and published is None):
        raise src.fail(
            obj, at, f"{describe(item)}: a port is 1-65535 (ranges low-high)"
        )
    host_ip = None
    if match["ip"] is not None:
        try:
            host_ip = IPv4Address(match["ip"])
        except ValueError:
            raise src.fail(
                obj, at, f"{describe(item)}: host IP {match['ip']!r} is not an IPv4"
                f" address (allowed: {why})",
            ) from None  # fmt: skip
    proto = _protocol(src, obj, at, (match["proto"] or "tcp").lower())
    return PortSpec(target, published, host_ip, proto, src.loc(at))


def _long_port(
    src: Source, obj: str, at: tuple[PathPart, ...], item: dict[str, Any]
) -> PortSpec:
    keys(src, obj, at, item, PORT_KEYS)
    mode = item.get("mode", "host")
    if mode not in ("host", "ingress"):
        raise src.fail(
            obj,
            (*at, "mode"),
            f"{describe(mode)} is not a port mode (allowed: host, ingress)",
        )
    if mode == "ingress":  # swarm's routing mesh: a single Engine publishes on the host
        src.warn(obj, (*at, "mode"), "mode ingress is not modelled (published as host)")
    raw_target = item.get("target")
    if isinstance(raw_target, bool) or not isinstance(raw_target, int | str):
        raise src.fail(
            obj,
            (*at, "target"),
            f"expected a container port, got {describe(raw_target)}",
        )
    target = (
        _range(str(raw_target)) if re.fullmatch(r"[0-9]+", str(raw_target)) else None
    )
    if target is None:
        raise src.fail(
            obj,
            (*at, "target"),
            f"{describe(raw_target)} is not a port (allowed: 1-65535)",
        )
    published = None
    raw = item.get("published")
    if raw is not None:
        text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        if not isinstance(text, str) or not re.fullmatch(r"[0-9]+(-[0-9]+)?", text):
            raise src.fail(
                obj, (*at, "published"), f"{describe(raw)} is not a port or a range"
            )
        published = _range(text)
        if published is None:
            raise src.fail(
                obj, (*at, "published"), f"{describe(raw)}: a port is 1-65535"
            )
    host_ip = item.get("host_ip")
    ip = None if host_ip is None else address(src, obj, (*at, "host_ip"), host_ip)
    proto = _protocol(src, obj, (*at, "protocol"), item.get("protocol", "tcp"))
    return PortSpec(target, published, ip, proto, src.loc(at))


def expose(
    src: Source, obj: str, parts: tuple[PathPart, ...], value: Any
) -> tuple[tuple[int, Protocol], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise src.fail(obj, parts, f"expected a list, got {describe(value)}")
    out: list[tuple[int, Protocol]] = []
    for i, item in enumerate(value):
        text = (
            str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        )
        match = (
            re.fullmatch(r"([0-9]+(?:-[0-9]+)?)(?:/([A-Za-z]+))?", text)
            if isinstance(text, str)
            else None
        )
        span = _range(match[1]) if match else None
        if match is None or span is None:
            raise src.fail(
                obj, (*parts, i),
                f"{describe(item)} is not a port (allowed: PORT, PORT-PORT, with /tcp or /udp)",
            )  # fmt: skip
        proto = _protocol(src, obj, (*parts, i), (match[2] or "tcp").lower())
        out.extend((p, proto) for p in range(span[0], span[1] + 1))
    return tuple(out)


__all__ = [
    "PROTOCOLS",
    "PortSpec",
    "Source",
    "address",
    "expose",
    "keys",
    "mapping",
    "ports",
]
