"""Tests marked `kernel` build real namespaces: they skip, saying why, where that cannot
work (not root, no `ip` or `nft`, no br_netfilter), and run in CI, which is root."""

from __future__ import annotations

import os

import pytest

from dataplane.kernel import docker_engine
from dataplane.kernel.preflight import reason_not_to_run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    why = reason_not_to_run()
    if why is None:
        return
    skip = pytest.mark.skip(reason=f"the kernel backend cannot run here: {why}")
    for item in items:
        if item.get_closest_marker("kernel") is not None:
            item.add_marker(skip)


def require_docker_engine() -> None:
    """Skip where Docker Engine cannot run, saying why; in CI, which installs it, fail."""
    why = docker_engine.reason_not_to_run()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI installs Docker Engine, but: {why}")
    pytest.skip(f"no Docker Engine here: {why}")


@pytest.fixture(scope="module")
def docker_engine_here() -> None:
    """A module's tests need a real Docker Engine (`require_docker_engine`)."""
    require_docker_engine()
