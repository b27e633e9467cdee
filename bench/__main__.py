"""Run every benchmark module of this folder (`bench_*.py`), each in its own process.

python -m bench               # all of them
python -m bench fuzz walk     # some, by name (`fuzz` is `bench_fuzz`)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    names = sys.argv[1:] or sorted(p.stem for p in here.glob("bench_*.py"))
    status = 0
    for name in names:
        module = name if name.startswith("bench_") else f"bench_{name}"
        print(f"== {module}", flush=True)
        rc = subprocess.call([sys.executable, "-m", f"bench.{module}"], cwd=here.parent)
        status = status or rc
    return status


if __name__ == "__main__":
    raise SystemExit(main())
