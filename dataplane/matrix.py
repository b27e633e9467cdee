"""The reachability matrix: one verdict per (source, destination) pair, printed as a grid.

The grid reads like the upstream network-policy e2e tests': rows are the sources, numbered
and named, columns the destinations by number (the same numbers as the rows when both are
the same pods, else listed under the grid), `.` delivered, `E` denied by egress policy,
`I` by ingress policy, `-` a destination that does not serve the port (nothing listens:
refused; or, for a named port, that pod has no port of that name: the name is resolved
per destination, as kube-proxy and NetworkPolicy resolve `targetPort` and `port` names),
any other verdict by its initial; a legend under the grid explains every symbol it shows.
`Matrix` also gives CSV, Markdown, Graphviz and JSON (`to_csv`, `to_markdown`, `to_dot`,
`to_dict`).

`compute_matrix` does not walk n x n packets and takes no decision per pair (see
`dataplane.netpol_matrix`): who each policy selects and each rule admits are sets of pods,
verdicts unions and intersections of whole sets, the rest of the path comes from one real
walk per pair of nodes, and the result is kept as blocks.  `walk_matrix` walks every pair;
it is the reference the fast path must equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dataplane.result import CODE, VERDICT_OF_CODE, StepResult
from dataplane.result import NO_PORT as NO_PORT  # re-exported: the views import it here
from dataplane.trace import Verdict
from topology.errors import TopologyError
from topology.model import Protocol
from topology.scenario import MatrixStep

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.netpol_matrix import Table
    from dataplane.scenario import Runner
    from dataplane.sim import Simulator

# What a code prints as in the grid: refused (nothing listens) and no such port are both
# "does not serve this port", apart from every decision of the network.
_SHOWN = {"R": "-", NO_PORT: "-"}
MEANING = {
    ".": "delivered",
    "E": "denied by egress policy (of the source)",
    "I": "denied by ingress policy (of the destination)",
    "X": "denied by a firewall rule (Docker's filter chains)",
    "R": "does not listen on this port (refused: RST, ICMP port unreachable, ABORT)",
    NO_PORT: "no port of that name",
    "N": "no route to the destination",
    "U": "unreachable (no ARP answer)",
    "D": "name does not exist (nxdomain)",
    "T": "TTL exceeded on the way",
    "B": "too big for the path MTU with DF set",
    "d": "dropped (by a hook, or not for that host)",
}
DENIED = {"E": "egress", "I": "ingress"}
CORNER = "from \\ to"


class Matrix:
    """The verdicts of `sources` x `targets`: `rows[i][j]` is the code (`CODE`, or
    `NO_PORT`) of `sources[i]` -> `targets[j]` (a compact form: a 2,000 x 2,000 matrix is
    4 MB).  `port` is what was asked (a number or a name), `ports[j]` the number it is at
    `targets[j]` (None: that destination has no port of that name, or ICMP).

    A computed matrix keeps its blocks (`table`, see `dataplane.netpol_matrix`): its rows
    are expanded on first use, its counts and single cells are read off the blocks.
    """

    __slots__ = ("_rows", "port", "ports", "sources", "table", "targets")

    def __init__(
        self,
        sources: list[str],
        targets: list[str],
        rows: list[str] | None = None,
        port: int | str | None = None,
        ports: list[int | None] | None = None,
        *,
        table: Table | None = None,
    ) -> None:
        assert rows is not None or table is not None
        self.sources = sources
        self.targets = targets
        self._rows = rows
        self.port = port
        self.ports = ports
        self.table = table

    @property
    def rows(self) -> list[str]:
        if self._rows is None:
            assert self.table is not None
            self._rows = self.table.rows()
        return self._rows

    def code(self, i: int, j: int) -> str:
        """The code of one cell (read off the blocks when it has them)."""
        if self._rows is None and self.table is not None:
            return self.table.code(i, j)
        return self.rows[i][j]

    def verdict(self, i: int, j: int) -> Verdict | None:
        """The verdict of a cell; None when the destination has no such port."""
        return VERDICT_OF_CODE.get(self.code(i, j))

    @property
    def cells(self) -> dict[tuple[str, str], Verdict | None]:
        """Every cell by (source, target) (built on demand)."""
        return {
            (s, t): VERDICT_OF_CODE.get(c)
            for s, row in zip(self.sources, self.rows, strict=True)
            for t, c in zip(self.targets, row, strict=True)
        }

    def codes(self) -> list[str]:
        """The codes that appear, in the order of `MEANING`."""
        present = set("".join(self.rows))
        return [c for c in MEANING if c in present]

    def legend(self) -> dict[str, str]:
        """Every symbol the grid shows, with what it means."""
        out: dict[str, str] = {}
        for code in self.codes():
            meaning = MEANING[code]
            if code == NO_PORT:
                meaning = f"no port named {self.port!r} on that pod"
            symbol = _SHOWN.get(code, code)
            out[symbol] = f"{out[symbol]}; or {meaning}" if symbol in out else meaning
        return out

    def grid(self) -> str:
        """The truth table as text: rows numbered sources, columns the targets by the same
        numbers (or by their own, listed under the grid), then the legend."""
        n = max(len(self.sources), len(self.targets), 1)
        w = len(str(n))
        same = self.sources == self.targets
        labels = [f"{i:>{w}} {s}" for i, s in enumerate(self.sources, 1)]
        width = max([len(x) for x in labels] + [len(CORNER)])
        numbers = " ".join(f"{j:>{w}}" for j in range(1, len(self.targets) + 1))
        lines = [f"{CORNER:<{width}}  {numbers}"]
        for label, row in zip(labels, self.rows, strict=True):
            cells = " ".join(f"{_SHOWN.get(c, c):>{w}}" for c in row)
            lines.append(f"{label:<{width}}  {cells}")
        if same:
            lines.append(f"{'':<{width}}  (columns: the pods of the same numbers)")
        else:
            lines += [f"{'':<{width}}  {j:>{w}} {t}" for j, t in enumerate(self.targets, 1)]  # fmt: skip
        lines += [f"{sym} {text}" for sym, text in self.legend().items()]
        return "\n".join(lines)

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
        """How many cells have each verdict (`no-port`: no port of that name); read off
        the blocks when it has them."""
        codes = [*VERDICT_OF_CODE, NO_PORT]
        by_code = (
            self.table.counts()
            if self.table is not None
            else {c: sum(row.count(c) for row in self.rows) for c in codes}
        )
        out: dict[str, int] = {}
        for code, verdict in [*VERDICT_OF_CODE.items(), (NO_PORT, None)]:
            n = by_code.get(code, 0)
            if n:
                out[verdict.value if verdict else "no-port"] = n
        return out

    # -- other forms ---------------------------------------------------------------------
    def word(self, code: str) -> str:
        verdict = VERDICT_OF_CODE.get(code)
        return verdict.value if verdict else "no-port"

    def to_csv(self) -> str:
        """One row per source, one column per target, each cell a verdict word."""
        import csv
        import io

        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow([CORNER, *self.targets])
        for s, row in zip(self.sources, self.rows, strict=True):
            out.writerow([s, *(self.word(c) for c in row)])
        return buf.getvalue()

    def to_markdown(self) -> str:
        """A Markdown table (names as headers, symbols as cells) and its legend."""
        lines = [
            f"| {CORNER} | " + " | ".join(f"`{t}`" for t in self.targets) + " |",
            "|---|" + "---|" * len(self.targets),
        ]
        for s, row in zip(self.sources, self.rows, strict=True):
            cells = " | ".join(f"`{_SHOWN.get(c, c)}`" for c in row)
            lines.append(f"| `{s}` | {cells} |")
        lines.append("")
        lines += [f"- `{sym}` {text}" for sym, text in self.legend().items()]
        return "\n".join(lines) + "\n"

    def to_dot(self, title: str) -> str:
        """A Graphviz digraph: an edge per pair, solid green when delivered, else dashed
        red and labelled with the symbol."""

        def q(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = [f"digraph {q(title)} {{", "  node [shape=box];"]
        lines += [f"  {q(n)};" for n in dict.fromkeys([*self.sources, *self.targets])]
        for s, row in zip(self.sources, self.rows, strict=True):
            for t, c in zip(self.targets, row, strict=True):
                if c == ".":
                    attrs = 'color=green, tooltip="delivered"'
                else:
                    shown = _SHOWN.get(c, c)
                    attrs = (f"color=red, style=dashed, label={q(shown)}, "
                             f"tooltip={q(self.word(c))}")  # fmt: skip
                lines.append(f"  {q(s)} -> {q(t)} [{attrs}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, object]:
        """The cells as data: each with its verdict and, when denied, the direction."""
        ports = self.ports or [None] * len(self.targets)
        return {
            "port": self.port,
            "sources": self.sources,
            "targets": self.targets,
            "ports": dict(zip(self.targets, ports, strict=True)),
            "cells": [
                {"from": s, "to": t, "verdict": VERDICT_OF_CODE[c].value
                 if c in VERDICT_OF_CODE else None,
                 "symbol": _SHOWN.get(c, c), "denied": DENIED.get(c)}
                for s, row in zip(self.sources, self.rows, strict=True)
                for t, c in zip(self.targets, row, strict=True)
            ],
            "legend": self.legend(),
            "counts": self.counts(),
        }  # fmt: skip


def endpoints(sim: Simulator, names: tuple[str, ...] | None) -> list[str]:
    """The given endpoints, or every pod that is not hostNetwork."""
    if names is not None:
        return list(names)
    return [p.key for p in sim.cluster.pods.values() if not p.host_network]


def target_ports(
    sim: Simulator, targets: list[str], port: int | str | None, protocol: Protocol
) -> list[int | None]:
    """The port number at each target: a named port is resolved per destination (None
    where a pod has no port of that name, and for ICMP)."""
    if protocol is Protocol.ICMP:
        return [None] * len(targets)
    if isinstance(port, int):
        # the same at every target (each target is resolved when it is walked)
        return [port] * len(targets)
    out: list[int | None] = []
    for t in targets:
        try:
            out.append(sim.resolve_port(port, sim.resolve(t), protocol))
        except TopologyError:
            if not isinstance(port, str):
                raise
            out.append(None)  # this destination has no port of that name
    return out


def _matrix(
    sim: Simulator,
    sources: list[str],
    targets: list[str],
    port: int | str | None,
    protocol: Protocol,
    rows_of: Callable[[list[str]], list[str]],
) -> Matrix:
    """Rows for the targets that have the port, `NO_PORT` columns for the others."""
    ports = target_ports(sim, targets, port, protocol)
    if not sources:
        return Matrix(sources, targets, [], port, ports)
    served = [t for t, p in zip(targets, ports, strict=True)
              if p is not None or protocol is Protocol.ICMP]  # fmt: skip
    if len(served) == len(targets):
        return Matrix(sources, targets, rows_of(targets), port, ports)
    part = iter(zip(*rows_of(served), strict=True)) if served else iter(())
    columns = [
        next(part) if p is not None else (NO_PORT,) * len(sources) for p in ports
    ]
    rows = ["".join(r) for r in zip(*columns, strict=True)] if columns else []
    return Matrix(sources, targets, rows or [""] * len(sources), port, ports)


def walk_matrix(
    sim: Simulator,
    sources: list[str],
    targets: list[str],
    port: int | str | None,
    protocol: Protocol,
) -> Matrix:
    """Walk every pair (the reference implementation the fast path must equal)."""

    def rows_of(ts: list[str]) -> list[str]:
        return [
            "".join(
                CODE[
                    sim.probe(s, t, port, protocol, capture=False).verdict
                    or Verdict.DROPPED
                ]
                for t in ts
            )
            for s in sources
        ]

    return _matrix(sim, sources, targets, port, protocol, rows_of)


def compute_matrix(
    sim: Simulator,
    sources: list[str],
    targets: list[str],
    port: int | str | None,
    protocol: Protocol,
) -> Matrix:
    """Every pair's verdict by set algebra over the pods (`dataplane.netpol_matrix`),
    kept as blocks.  The algebra holds for Kubernetes' flat pod network; Docker hosts'
    networks are not flat (isolation, NAT, per-host addresses): every pair is walked."""
    if sim.cluster.docker is not None:
        return walk_matrix(sim, sources, targets, port, protocol)
    from dataplane.netpol_matrix import table

    ports = target_ports(sim, targets, port, protocol)
    blocks = table(sim, sources, targets, port, protocol, ports)
    return Matrix(sources, targets, None, port, ports, table=blocks)


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
        "codes": {**{c: v.value for c, v in VERDICT_OF_CODE.items()}, NO_PORT: None},
        "legend": m.legend(),
    }
    if len(sources) * len(targets) <= CELLS_SHOWN:
        data["cells"] = {
            f"{s} -> {t}": v.value if v else None for (s, t), v in m.cells.items()
        }
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
                got = m.word(m.rows[i][j])
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
