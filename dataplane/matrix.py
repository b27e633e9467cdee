"""The reachability matrix: one verdict per (source, destination) pair, printed as a grid.

The grid reads like the upstream network-policy e2e tests': rows are sources, columns
destinations, `.` delivered, `X` denied, any other verdict by its initial.

`compute_matrix` does not walk n x n packets (see `dataplane.netpol_matrix`): policy
decisions are taken once per equivalence class of pods with `dataplane.netpol.decide`, the
function the FORWARD hooks call, and the rest of the path once per pair of nodes by a real
walk.  `walk_matrix` walks every pair; it is the reference the fast path must equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataplane.result import CODE, VERDICT_OF_CODE, StepResult
from dataplane.trace import Verdict
from topology.errors import TopologyError
from topology.model import Protocol
from topology.scenario import MatrixStep

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.scenario import Runner
    from dataplane.sim import Simulator

_DISPLAY = str.maketrans("EI", "XX")


@dataclass(slots=True)
class Matrix:
    """The verdicts of `sources` x `targets`: `rows[i][j]` is the code (`CODE`) of
    `sources[i]` -> `targets[j]` (a compact form: a 2,000 x 2,000 matrix is 4 MB)."""

    sources: list[str]
    targets: list[str]
    rows: list[str]

    def verdict(self, i: int, j: int) -> Verdict:
        return VERDICT_OF_CODE[self.rows[i][j]]

    @property
    def cells(self) -> dict[tuple[str, str], Verdict]:
        """Every cell by (source, target) (built on demand)."""
        return {
            (s, t): VERDICT_OF_CODE[c]
            for s, row in zip(self.sources, self.rows, strict=True)
            for t, c in zip(self.targets, row, strict=True)
        }

    def grid(self) -> str:
        """The truth table as text (rows: from, columns: to)."""
        width = max((len(s) for s in self.sources), default=0)
        lines = [
            " " * width + "  " + " ".join(f"{i}"[-1] for i in range(len(self.targets)))
        ]
        legend = [f"{i}: {t}" for i, t in enumerate(self.targets)]
        for s, row in zip(self.sources, self.rows, strict=True):
            lines.append(f"{s:<{width}}  {' '.join(row.translate(_DISPLAY))}")
        return "\n".join([*lines, "columns: " + ", ".join(legend)])

    def denied(self) -> set[tuple[str, str]]:
        """The pairs that were not delivered (any other verdict)."""
        return {
            (s, t)
            for s, row in zip(self.sources, self.rows, strict=True)
            if row.count(".") != len(row)
            for t, c in zip(self.targets, row, strict=True)
            if c != "."
        }

    def counts(self) -> dict[str, int]:
        """How many cells have each verdict."""
        out: dict[str, int] = {}
        for code, verdict in VERDICT_OF_CODE.items():
            n = sum(row.count(code) for row in self.rows)
            if n:
                out[verdict.value] = n
        return out


def endpoints(sim: Simulator, names: tuple[str, ...] | None) -> list[str]:
    """The given endpoints, or every pod that is not hostNetwork."""
    if names is not None:
        return list(names)
    return [p.key for p in sim.cluster.pods.values() if not p.host_network]


def walk_matrix(
    sim: Simulator,
    sources: list[str],
    targets: list[str],
    port: int | str | None,
    protocol: Protocol,
) -> Matrix:
    """Walk every pair (the reference implementation the fast path must equal)."""
    rows = [
        "".join(
            CODE[sim.probe(s, t, port, protocol).verdict or Verdict.DROPPED]
            for t in targets
        )
        for s in sources
    ]
    return Matrix(sources, targets, rows)


def compute_matrix(
    sim: Simulator,
    sources: list[str],
    targets: list[str],
    port: int | str | None,
    protocol: Protocol,
) -> Matrix:
    """Every pair's verdict, deciding policy once per equivalence class of pods."""
    from dataplane.netpol_matrix import fast_rows

    return Matrix(sources, targets, fast_rows(sim, sources, targets, port, protocol))


def parse_pair(text: str) -> tuple[str, str]:
    src, sep, dst = text.partition("->")
    if not sep:
        raise TopologyError(f"matrix pair {text!r} must read 'SRC -> DST'")
    return src.strip(), dst.strip()


CELLS_SHOWN = 10_000  # a step's JSON lists every cell up to this many (the rows always)


def run_matrix_step(runner: Runner, index: int, step: MatrixStep) -> StepResult:
    """Compute the matrix of a `matrix` step and compare it with its expectation: the
    pairs listed under `denied` must not be delivered and every other pair must be (or
    the other way round with `allowed`); every listed pair must be a cell."""

    sim = runner.sim
    sources = [runner.sub(s) for s in endpoints(sim, step.src)]
    targets = [runner.sub(t) for t in endpoints(sim, step.dst)]
    port = runner.sub(step.port) if isinstance(step.port, str) else step.port
    m = compute_matrix(sim, sources, targets, port, step.protocol)
    what = f"port {port} " if port is not None else ""
    title = f"matrix {len(sources)}x{len(targets)} {what}{step.protocol.value}"
    res = StepResult(index, "matrix", title, step.loc, step.name)
    data: dict[str, object] = {
        "sources": sources,
        "targets": targets,
        "grid": m.grid(),
        "rows": m.rows,
        "codes": {c: v.value for c, v in VERDICT_OF_CODE.items()},
    }
    if len(sources) * len(targets) <= CELLS_SHOWN:
        data["cells"] = {f"{s} -> {t}": v.value for (s, t), v in m.cells.items()}
    res.data["matrix"] = data
    not_delivered = sum(len(row) - row.count(".") for row in m.rows)
    res.actual = f"{not_delivered} pair(s) not delivered"
    exp = step.expect
    if exp is None:
        return res
    listed = exp.denied if exp.denied is not None else exp.allowed
    assert listed is not None
    at_s = {s: i for i, s in reversed(list(enumerate(sources)))}
    at_t = {t: j for j, t in reversed(list(enumerate(targets)))}
    pairs = {_known_pair(p, at_s, at_t) for p in listed}
    want_denied = exp.denied is not None
    wrong: list[str] = []
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            if at_s[s] != i or at_t[t] != j:
                continue  # a repeated endpoint: its first row and column decide
            delivered = m.rows[i][j] == "."
            should_deny = ((s, t) in pairs) is want_denied
            if delivered and should_deny:
                wrong.append(f"{s} -> {t}: expected denied, got delivered")
            elif not delivered and not should_deny:
                got = m.verdict(i, j).value
                wrong.append(f"{s} -> {t}: expected delivered, got {got}")
    res.ok = not wrong
    expected = len(pairs) if want_denied else len(at_s) * len(at_t) - len(pairs)
    res.expected = f"{expected} pair(s) not delivered"
    res.message = "; ".join(wrong)
    return res


def _known_pair(
    text: str, at_s: dict[str, int], at_t: dict[str, int]
) -> tuple[str, str]:
    """A pair of the expectation, which must be a cell of the matrix."""
    pair = parse_pair(text)
    if pair[0] not in at_s or pair[1] not in at_t:
        raise TopologyError(
            f"matrix pair {text!r} is not a cell of this matrix (its rows and columns "
            "are the `from` and `to` endpoints)"
        )
    return pair
