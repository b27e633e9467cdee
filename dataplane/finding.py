"""What `dataplane lint` reports: a finding (check, severity, object, field, message,
where it was written) and the helpers its messages share (the closest existing labels)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from topology.model import LabelSelector, Loc, PolicyPort


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"

    @property
    def rank(self) -> int:
        return {"error": 2, "warning": 1, "note": 0}[self.value]


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    severity: Severity
    obj: str  # `networkpolicy/NS/NAME`, `service/NS/NAME`
    field: str  # `spec.ingress[0].from[1].podSelector`
    message: str
    loc: Loc

    def __str__(self) -> str:
        return f"{self.loc}: {self.severity.value} {self.rule}: {self.obj} {self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "object": self.obj,
            "field": self.field,
            "message": self.message,
            "file": self.loc.file,
            "line": self.loc.line,
        }


def labels_of(objs: list[Any]) -> list[str]:
    return sorted({f"{k}={v}" for o in objs for k, v in o.labels.items()})


def closest(selector: LabelSelector, existing: list[str]) -> str:
    """The labels that exist closest to the selector's terms, for the message."""
    out: list[str] = []
    for k, v in selector.match_labels.items():
        near = difflib.get_close_matches(f"{k}={v}", existing, n=2, cutoff=0.6)
        out += near
    for req in selector.match_expressions:
        keys = sorted({e.split("=", 1)[0] for e in existing})
        out += difflib.get_close_matches(req.key, keys, n=1, cutoff=0.6)
    if out:
        return "closest existing labels: " + ", ".join(dict.fromkeys(out))
    return "existing labels: " + (", ".join(existing[:6]) or "none")


def port_within(small: PolicyPort, big: PolicyPort) -> bool:
    """Whether port `big` covers port `small` (as written; `big.port` None: all)."""
    if small.protocol is not big.protocol:
        return False
    if big.port is None:
        return True
    if small.port is None or isinstance(small.port, str) or isinstance(big.port, str):
        return small.port == big.port and small.end_port == big.end_port
    lo, hi = small.port, small.end_port or small.port
    return big.port <= lo and hi <= (big.end_port or big.port)


def ports_cover(big: Sequence[PolicyPort], small: Sequence[PolicyPort]) -> bool:
    """Whether the ports `big` take in every port of `small` (as written; no ports:
    every port and protocol)."""
    if not big:
        return True
    if not small:
        return False
    return all(any(port_within(s, b) for b in big) for s in small)


__all__ = ["Finding", "Severity", "closest", "labels_of", "port_within", "ports_cover"]
