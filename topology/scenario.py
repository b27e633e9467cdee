"""Scenario records: the steps of a scenario file and their expectations (docs/scenario-format.md).

Values that may hold `${ip:ENDPOINT}` references stay as text here; they are resolved against
the cluster when the step runs (`topology.endpoint.substitute`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from topology.model import BUILTIN, Cluster, Loc, Protocol


class Verdict(StrEnum):
    """The verdict words of docs/scenario-format.md (`allowed` is an alias of `delivered`)."""

    DELIVERED = "delivered"
    # in expectations: any denial; as a verdict: a firewall's rule (Docker's filter)
    DENIED = "denied"
    DENIED_EGRESS = "denied-egress"
    DENIED_INGRESS = "denied-ingress"
    REFUSED = "refused"
    NO_ROUTE = "no-route"
    UNREACHABLE = "unreachable"
    NXDOMAIN = "nxdomain"
    TTL_EXCEEDED = "ttl-exceeded"
    TOO_BIG = "too-big"
    DROPPED = "dropped"

    def satisfies(self, expected: Verdict) -> bool:
        """Whether this (actual) verdict meets an expected one (`denied` covers both)."""
        if expected is Verdict.DENIED:
            return self in (
                Verdict.DENIED,
                Verdict.DENIED_EGRESS,
                Verdict.DENIED_INGRESS,
            )
        return self is expected


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a `probe` or `send` step expects; None fields are not checked."""

    verdict: Verdict | None = None
    policy: str | None = None
    via: tuple[str, ...] = ()
    endpoint: str | None = None
    source_ip: str | None = None  # an endpoint or address: the source the server saw


@dataclass(frozen=True, slots=True)
class ProbeStep:
    src: str
    dst: str
    port: int | str | None = None
    protocol: Protocol = Protocol.TCP
    expect: Expectation | None = None
    name: str | None = None
    loc: Loc = BUILTIN


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One layer of a crafted packet: a scapy layer name and its fields (data, never code)."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendStep:
    at: str
    layers: tuple[LayerSpec, ...] = ()  # outermost first
    hex: str | None = None  # raw bytes from the IP header on, instead of `layers`
    expect: Expectation | None = None
    name: str | None = None
    loc: Loc = BUILTIN


@dataclass(frozen=True, slots=True)
class MatrixExpect:
    """Exactly one of the two lists is given; every other pair has the opposite outcome."""

    denied: tuple[str, ...] | None = None
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class MatrixStep:
    src: tuple[str, ...] | None = None  # None: all pods that are not hostNetwork
    dst: tuple[str, ...] | None = None
    port: int | str | None = 80
    protocol: Protocol = Protocol.TCP
    expect: MatrixExpect | None = None
    name: str | None = None
    loc: Loc = BUILTIN


@dataclass(frozen=True, slots=True)
class Manifest:
    """One Kubernetes object as written (plain data), with where it was written.

    `lines` maps a dotted field path (`spec.ports[0].port`) to its line, for error messages.
    """

    data: Mapping[str, Any]
    loc: Loc = BUILTIN
    lines: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApplyStep:
    objects: tuple[Manifest, ...]
    name: str | None = None
    loc: Loc = BUILTIN


@dataclass(frozen=True, slots=True)
class DeleteStep:
    refs: tuple[str, ...]  # "kind/ns/name" (or "namespace/name")
    name: str | None = None
    loc: Loc = BUILTIN


@dataclass(frozen=True, slots=True)
class LabelStep:
    kind: str  # "pod" | "namespace"
    target: str  # "ns/name" for a pod, "name" for a namespace
    set: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    name: str | None = None
    loc: Loc = BUILTIN


@dataclass(frozen=True, slots=True)
class ReplayStep:
    pcap: Path
    at: str | None = None
    expect: Mapping[str, int] | None = None  # verdict word -> count
    name: str | None = None
    loc: Loc = BUILTIN
    keep_traces: int | None = None  # packets kept with their trace (None: the default)


Step = (
    ProbeStep | SendStep | MatrixStep | ApplyStep | DeleteStep | LabelStep | ReplayStep
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A loaded scenario: the cluster before step 1 and the steps in order."""

    name: str
    path: Path | None
    cluster: Cluster
    steps: tuple[Step, ...]
    description: str = ""
