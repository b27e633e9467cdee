"""What running a scenario gives: one `StepResult` per step, a `ScenarioResult` per file,
and the one-character cell codes of a reachability matrix.

The views (`dataplane.render`, `dataplane.junit`), the runner (`dataplane.scenario`) and
the steps that produce results (`dataplane.matrix`, `dataplane.replay`) all speak these
records, so they live apart from every one of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dataplane.trace import Trace, Verdict
from topology.model import BUILTIN, Loc

if TYPE_CHECKING:  # pragma: no cover
    from topology.scenario import Scenario

# A matrix cell's symbol per verdict: `.` delivered, `X` denied, others by their initial.
SYMBOL = {
    Verdict.DELIVERED: ".",
    Verdict.DENIED: "X",  # a firewall's rule (Docker's filter chains)
    Verdict.DENIED_EGRESS: "X",
    Verdict.DENIED_INGRESS: "X",
    Verdict.REFUSED: "R",
    Verdict.NO_ROUTE: "N",
    Verdict.UNREACHABLE: "U",
    Verdict.NXDOMAIN: "D",
    Verdict.TTL_EXCEEDED: "T",
    Verdict.TOO_BIG: "B",
    Verdict.DROPPED: "d",
}
# One byte per cell in `Matrix.rows`: the symbol, except that the policy denials differ.
CODE = {**SYMBOL, Verdict.DENIED_EGRESS: "E", Verdict.DENIED_INGRESS: "I"}
VERDICT_OF_CODE = {c: v for v, c in CODE.items()}
# A cell whose destination has no port of the asked name: nothing is walked.
NO_PORT = "-"


@dataclass(slots=True)
class StepResult:
    """The outcome of one step; `ok` is None when the step expects nothing."""

    index: int
    kind: str
    title: str
    loc: Loc = BUILTIN
    name: str | None = None
    ok: bool | None = None
    expected: str | None = None
    actual: str | None = None
    message: str = ""
    trace: Trace | None = None
    traces: list[Trace] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.ok is False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index,
            "kind": self.kind,
            "name": self.name,
            "title": self.title,
            "location": str(self.loc),
            "ok": self.ok,
            "expected": self.expected,
            "actual": self.actual,
            "message": self.message,
        }
        if self.trace is not None:
            d["trace"] = self.trace.to_dict()
        if self.traces:
            d["traces"] = [t.to_dict() for t in self.traces]
        d.update(self.data)
        return d


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    steps: list[StepResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(s.failed for s in self.steps)

    def _repr_html_(self) -> str:
        """Jupyter shows every walk of the run in the walk viewer (`dataplane.page`)."""
        # The view is looked up when a notebook displays the record, so that the record
        # does not depend on the views built on it.
        notebook_html = importlib.import_module("dataplane.page").notebook_html
        traces = [t for s in self.steps for t in ([s.trace] if s.trace else s.traces)]
        html: str = notebook_html(traces, self.scenario.name)
        return html

    def counts(self) -> dict[str, int]:
        return {
            "steps": len(self.steps),
            "passed": sum(1 for s in self.steps if s.ok is True),
            "failed": sum(1 for s in self.steps if s.ok is False),
            "unchecked": sum(1 for s in self.steps if s.ok is None),
        }
