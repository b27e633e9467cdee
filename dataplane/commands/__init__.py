"""Commands beyond `run` and `trace`, one module each, registered on the CLI app.

Each module defines its command with `@register` from `dataplane.cli`; `load()` imports
them all, in the order `--help` lists them.
"""

from __future__ import annotations

import importlib

MODULES: list[str] = [
    "replay",
    "test",
    "graph",
    "explain",
    "matrix",
    "verify",
    "quiz",
    "lint",
    "exposure",
    "import_dump",
    "init",
    "connlist",
]


def load() -> None:
    for name in MODULES:
        importlib.import_module(f"dataplane.commands.{name}")
