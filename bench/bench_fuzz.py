"""Loader fuzzing at scale: 10,000 mutated scenarios through the CLI's load path.

    python -m bench fuzz [--count N] [--seed S] [--workers W] [--timeout SECONDS]

Mutations are `tests.fuzzing`'s (the same as the hypothesis test, chosen by a seeded
`random.Random`), plus byte-level ones: a byte that is not UTF-8, a control character.
Each file is written beside a copy of its original (so `{file: ...}` includes and pcaps
resolve) and loaded by `dataplane.cli.load` in a worker process, which is killed and
replaced when one file takes longer than the timeout (20 s) and which may use at most
4 GiB (RLIMIT_AS), so a memory bomb shows as a MemoryError.  It reports:
- tracebacks: exceptions other than the errors `input_errors` prints (must be 0);
- hangs: files still loading after the timeout (must be 0);
- invalid accepted: mutations known to be invalid that loaded (must be 0);
- errors without a line: an error message without FILE:LINE (must be 0);
and the load time per file.  Exit status 1 when any of the four is not 0.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import re
import resource
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tests.fuzzing import ROOT, SCENARIOS, Mutation, base_data, mutate

MEMORY_LIMIT = 4 << 30
DEFECTS = ("traceback", "hang", "invalid-accepted", "error-without-line")


@dataclass(frozen=True, slots=True)
class Case:
    index: int
    path: Path  # where the mutated file is written
    data: bytes
    what: str
    known_invalid: bool


def byte_mutation(mutation: Mutation, rng: random.Random) -> tuple[bytes, str, bool]:
    """The mutation's bytes; one case in ten also gets a bad byte or a control character."""
    data = mutation.text.encode("utf-8")
    roll = rng.randrange(20)
    if roll > 1:
        return data, mutation.what, mutation.known_invalid
    at = rng.randrange(len(data) + 1)
    bad = b"\xff" if roll == 0 else b"\x07"
    word = "not UTF-8" if roll == 0 else "control character"
    return data[:at] + bad + data[at:], f"{mutation.what}; {word} at byte {at}", True


BASES: dict[Path, Any] = {}


def load_bases() -> None:
    """The shipped files' data, read once (before the workers fork)."""
    if not BASES:
        BASES.update((p, base_data(p)) for p in SCENARIOS)


def make_case(index: int, seed: int, tree: Path) -> Case:
    """Case `index` of run `seed`: the same whichever worker makes it."""
    load_bases()
    rng = random.Random(f"{seed}/{index}")
    original = SCENARIOS[rng.randrange(len(SCENARIOS))]
    mutation = mutate(BASES[original], rng)
    data, what, invalid = byte_mutation(mutation, rng)
    target = tree / original.relative_to(ROOT / "scenarios")
    path = target.with_name(f".fuzz-{index}{target.suffix}")
    return Case(index, path, data, f"{original.name}: {what}", invalid)


def classify(path: Path) -> tuple[str, str]:
    """Load as `dataplane run` does; what `input_errors` would print, or the traceback."""
    from dataplane.cli import load
    from topology.errors import SimError

    try:
        load(path)
    except (SimError, FileNotFoundError, IsADirectoryError) as err:
        text = str(err)
        if re.match(rf"{re.escape(str(path))}:[1-9][0-9]*: ", text) or re.match(
            r"[^:\s]+:[1-9][0-9]*: ", text
        ):
            return "error", text
        return "error-without-line", text
    except Exception as err:  # the defect this bench looks for
        return "traceback", f"{type(err).__name__}: {err}"[:300]
    return "ok", ""


def worker(conn: Connection, seed: int, tree: Path) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    conn.send("ready")  # the clock of a case starts when it is sent, after this
    while True:
        index = conn.recv()
        if index is None:
            return
        case = make_case(index, seed, tree)
        case.path.write_bytes(case.data)
        t0 = time.perf_counter()
        verdict, message = classify(case.path)
        elapsed = time.perf_counter() - t0
        case.path.unlink()
        if verdict == "ok" and case.known_invalid:
            verdict = "invalid-accepted"
        conn.send((case.what, case.known_invalid, verdict, message, elapsed))


@dataclass(frozen=True, slots=True)
class Result:
    index: int
    what: str
    known_invalid: bool
    verdict: str
    message: str
    elapsed: float


class Worker:
    def __init__(self, ctx: Any, seed: int, tree: Path) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker, args=(child, seed, tree), daemon=True)
        self.process.start()
        child.close()
        self.conn.recv()  # "ready"

    def kill(self) -> None:
        self.process.kill()
        self.process.join()


def run(
    count: int, seed: int, tree: Path, workers: int, timeout: float
) -> list[Result]:
    ctx = mp.get_context("fork")
    from dataplane.cli import load  # noqa: F401  (imported once, before the forks)

    load_bases()

    def spawn() -> Worker:
        return Worker(ctx, seed, tree)

    pool = [spawn() for _ in range(workers)]
    busy: dict[int, tuple[int, float]] = {}  # worker -> (case index, start)
    pending = list(range(count - 1, -1, -1))
    results = []
    while pending or busy:
        for i, w in enumerate(pool):
            if i not in busy and pending:
                index = pending.pop()
                w.conn.send(index)
                busy[i] = (index, time.monotonic())
        for i in list(busy):
            index, started = busy[i]
            w = pool[i]
            if w.conn.poll(0.005):
                try:
                    results.append(Result(index, *w.conn.recv()))
                except EOFError:  # the worker died (a crash in C, the OOM killer)
                    case = make_case(index, seed, tree)
                    results.append(
                        Result(
                            index,
                            case.what,
                            case.known_invalid,
                            "traceback",
                            "worker died",
                            0.0,
                        )
                    )
                    pool[i] = spawn()
                del busy[i]
            elif time.monotonic() - started > timeout:
                w.kill()
                case = make_case(index, seed, tree)
                case.path.unlink(missing_ok=True)
                pool[i] = spawn()
                results.append(
                    Result(
                        index,
                        case.what,
                        case.known_invalid,
                        "hang",
                        f"over {timeout:.0f} s",
                        timeout,
                    )
                )
                del busy[i]
    for w in pool:
        w.conn.send(None)
        w.process.join()
    return sorted(results, key=lambda r: r.index)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fuzz")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        tree = Path(tmp) / "scenarios"
        shutil.copytree(ROOT / "scenarios", tree)
        t0 = time.perf_counter()
        results = run(args.count, args.seed, tree, args.workers, args.timeout)
        wall = time.perf_counter() - t0
    verdicts = Counter(r.verdict for r in results)
    times = sorted(r.elapsed for r in results if r.verdict != "hang")
    print(
        f"{len(results)} mutated scenarios from {len(SCENARIOS)} shipped files"
        f" (seed {args.seed}, {args.workers} workers)"
    )
    invalid = sum(1 for r in results if r.known_invalid)
    print(f"  known invalid by construction: {invalid}")
    for word in ("ok", "error", *DEFECTS):
        print(f"  {word:20} {verdicts.get(word, 0)}")
    if times:
        mid = times[len(times) // 2]
        p99 = times[min(len(times) - 1, len(times) * 99 // 100)]
        print(
            f"  load time: median {mid * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms,"
            f" max {times[-1] * 1000:.0f} ms; wall {wall:.0f} s with mutating"
            f" ({len(results) / wall:.0f} files/s)"
        )
    slowest = sorted(
        (r for r in results if r.verdict != "hang"), key=lambda r: -r.elapsed
    )[:3]
    for r in slowest:
        print(f"  slow: {r.elapsed * 1000:.0f} ms #{r.index} {r.what}")
    failed = False
    for word in DEFECTS:
        bad = [r for r in results if r.verdict == word]
        failed = failed or bool(bad)
        for r in bad[:5]:
            print(f"  {word}: #{r.index} {r.what}: {r.message}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
