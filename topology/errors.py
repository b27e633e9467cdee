"""Project errors: bad input raises one of these; a packet's fate is never an exception."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from topology.model import Loc


class SimError(Exception):
    """Base of every error the project raises on purpose."""


class TopologyError(SimError, ValueError):
    """Invalid scenario or manifest input.

    The message says where (file:line, object, field), what is wrong and what is allowed:
    `scenarios/lab.yaml:12: Service default/web: spec.ports[0].port: 70000 is out of range
    (allowed: 1-65535)`.
    """

    def __init__(
        self,
        message: str,
        loc: Loc | None = None,
        obj: str | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = message
        self.loc = loc
        self.obj = obj
        self.field = field
        parts = [p for p in (str(loc) if loc else None, obj, field) if p]
        super().__init__(": ".join([*parts, message]))
