"""What every node of a scenario runs (docs/scenario-format.md, `cluster.runtime`)."""

from __future__ import annotations

from enum import StrEnum


class Runtime(StrEnum):
    """Kubernetes (kubelet, kube-proxy, a CNI), or Docker Engine with Compose projects
    (`topology.docker`)."""

    KUBERNETES = "kubernetes"
    DOCKER = "docker"
