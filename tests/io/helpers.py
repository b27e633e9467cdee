"""Shared helpers of the I/O tests: the CLI in-process, scenario paths, small clusters."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from typer.testing import CliRunner

from dataplane import commands
from dataplane.cli import app
from dataplane.sim import Simulator
from topology.model import (
    Cluster,
    ClusterConfig,
    Container,
    ContainerPort,
    External,
    Namespace,
    NetworkMode,
    NodeSpec,
    Pod,
    PortSpec,
    Protocol,
)

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
CAPTURES = SCENARIOS / "captures"

WEB = (Container("web", (ContainerPort(80), ContainerPort(53, Protocol.UDP))),)


def cluster(mode: NetworkMode = NetworkMode.VXLAN) -> Cluster:
    """The reference topology of docs/model.md: a (10.0.1.3), b (10.0.1.4) on node-1, c (10.0.2.2) on node-2."""
    nodes = (
        NodeSpec("node-1", IPv4Address("10.100.0.2"), IPv4Network("10.0.1.0/24")),
        NodeSpec("node-2", IPv4Address("10.100.0.3"), IPv4Network("10.0.2.0/24")),
    )
    cfg = ClusterConfig(
        network=mode,
        nodes=nodes,
        externals=(External("web", IPv4Address("203.0.113.10"), (PortSpec(80),)),),
    )
    pods = [
        Pod("default", "a", "node-1", IPv4Address("10.0.1.3"), {"app": "a"}, WEB),
        Pod("default", "b", "node-1", IPv4Address("10.0.1.4"), {"app": "b"}, WEB),
        Pod("default", "c", "node-2", IPv4Address("10.0.2.2"), {"app": "c"}, WEB),
    ]
    ns = {"default": Namespace("default", {"kubernetes.io/metadata.name": "default"})}
    return Cluster(cfg, ns, {p.key: p for p in pods})


def simulator(mode: NetworkMode = NetworkMode.VXLAN) -> Simulator:
    return Simulator(cluster(mode))


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path) -> Result:
    """`dataplane ARGS...` in this process (faster than a subprocess)."""
    commands.load()
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return Result(r.exit_code, r.stdout, r.stderr)
