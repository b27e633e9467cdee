"""Package rules: topology never imports dataplane; every doctest holds."""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "topology"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", MODULES)
def test_topology_never_imports_dataplane(module: str) -> None:
    imported = imported_modules(PACKAGE / f"{module}.py")
    assert not {n for n in imported if n == "dataplane" or n.startswith("dataplane.")}
    assert not {n for n in imported if n.startswith("scapy")}


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module: str) -> None:
    mod = importlib.import_module(f"topology.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("module", MODULES)
def test_modules_stay_small_and_documented(module: str) -> None:
    path = PACKAGE / f"{module}.py"
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{module} needs a module docstring"
    assert len(path.read_text().splitlines()) <= 600
