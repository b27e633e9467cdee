"""Start-up benchmarks: whole `dataplane` processes, as a user's shell runs them.

- `dataplane --help` (target: under 0.15 s), `dataplane trace --help`, and a one-probe
  `dataplane trace scenarios/same-node.yaml --from default/a --to default/b --port 80`
  (target: under 0.5 s);
- each command run ROUNDS times, best and median wall time, median CPU time (user + sys of
  the child: the machine is shared, so wall time also counts waiting for a core);
- `--baseline DIR`: the same commands run by another checkout of the project with its own
  virtual environment (`git worktree add --detach DIR main && make -C DIR .venv/.installed`:
  DIR/.venv/bin/dataplane; `PYTHONPATH` would not do, the editable install of this tree's
  environment finds `dataplane` before it), the runs interleaved so both see the same load,
  and each figure as a ratio to it.

Bytecode is written and read as for an installed package (PYTHONDONTWRITEBYTECODE is
dropped from the children's environment) and one run of each command warms the cache.

python -m bench.bench_startup [--rounds 15] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).parent / "dataplane")
PROBE = "trace scenarios/same-node.yaml --from default/a --to default/b --port 80"
COMMANDS: list[tuple[str, float | None]] = [
    ("--help", 0.15),
    ("trace --help", None),
    (PROBE, 0.5),
]


def script_of(tree: Path | None) -> str:
    """The `dataplane` script of this tree's environment, or of the checkout `tree`."""
    if tree is None:
        return SCRIPT
    script = tree / ".venv" / "bin" / "dataplane"
    if not script.exists():
        raise SystemExit(
            f"--baseline {tree}: no {script} (make -C {tree} .venv/.installed)"
        )
    return str(script)


def run(args: list[str], tree: Path | None) -> tuple[float, float]:
    """Wall and CPU seconds of one `dataplane ARGS` (the checkout `tree`'s if given)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [script_of(tree), *args], cwd=ROOT, env=env, capture_output=True, check=False
    )
    wall = time.perf_counter() - t0
    after = os.times()
    if proc.returncode != 0:
        raise SystemExit(f"dataplane {' '.join(args)}: exit {proc.returncode}")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def summary(runs: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Best wall, median wall, median CPU."""
    walls = [w for w, _ in runs]
    return min(walls), statistics.median(walls), statistics.median(c for _, c in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", type=Path, help="another source tree (main)")
    opts = parser.parse_args()
    trees: dict[str, Path | None] = {"this tree": None}
    if opts.baseline is not None:
        trees["baseline"] = opts.baseline.resolve()
    print(f"{opts.rounds} rounds each, interleaved; {os.cpu_count()} cores")
    for words, target in COMMANDS:
        args = words.split()
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for tree in trees.values():
            run(args, tree)  # warm the bytecode cache
        for _ in range(opts.rounds):
            for name, tree in trees.items():
                runs[name].append(run(args, tree))
        goal = f" (target < {target} s)" if target else ""
        print(f"`dataplane {words}`{goal}")
        best, med, cpu = summary(runs["this tree"])
        print(
            f"  this tree: best {best:.3f} s, median {med:.3f} s wall; {cpu:.3f} s CPU"
        )
        if "baseline" in runs:
            b_best, b_med, b_cpu = summary(runs["baseline"])
            print(
                f"  baseline:  best {b_best:.3f} s, median {b_med:.3f} s wall; "
                f"{b_cpu:.3f} s CPU"
            )
            print(
                f"  ratio:     best {best / b_best:.2f}, median {med / b_med:.2f} wall; "
                f"{cpu / b_cpu:.2f} CPU"
            )


if __name__ == "__main__":
    main()
