"""The examples in dataplane's docstrings hold."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import dataplane

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(dataplane.__path__, "dataplane.")
    if not m.name.startswith(("dataplane.kernel", "dataplane.commands"))
    and m.name != "dataplane.pytest_plugin"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
