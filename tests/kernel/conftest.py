"""Tests marked `kernel` build real namespaces: they skip, saying why, where that cannot
work (not root, no `ip` or `nft`, no br_netfilter), and run in CI, which is root."""

from __future__ import annotations

import pytest

from dataplane.kernel.preflight import reason_not_to_run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    why = reason_not_to_run()
    if why is None:
        return
    skip = pytest.mark.skip(reason=f"the kernel backend cannot run here: {why}")
    for item in items:
        if item.get_closest_marker("kernel") is not None:
            item.add_marker(skip)
