"""The docker CLI commands `verify` gives each Docker host for a compose project
(`docker_engine.plan_project`): what Compose v2 would make, in the simulator's
documented order.  No root needed: nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.kernel.docker_engine import IMAGE, SLEEP, plan_project
from topology.loader import load_scenario_text

TEXT = """
name: plan
cluster:
  runtime: docker
  nodes: [{name: host-1, ip: 10.100.0.2}]
compose:
  - node: host-1
    project: shop
    services:
      web:
        image: nginx
        hostname: www
        ports: ["8080:80", "127.0.0.1::9000/udp", {target: 443, published: "8443-8450"}]
        networks: [front, back]
      api:
        image: api
        expose: ["5000"]
        networks: {back: {ipv4_address: 10.5.0.10, aliases: [backend]}}
      worker: {image: w, deploy: {replicas: 2}}
      side: {image: x, network_mode: "service:web"}
      plain: {image: x, network_mode: bridge}
      solo: {image: x, container_name: lonely}
    networks:
      front: {internal: true}
      back: {ipam: {config: [{subnet: 10.5.0.0/24, gateway: 10.5.0.254}]}}
      outside: {external: true, name: bridge}
steps:
  - probe: {from: container/host-1/shop-web-1, to: container/host-1/lonely, port: 80}
"""
ROOT = Path(__file__).resolve().parent.parent.parent
LABEL = ["--label", "com.docker.compose.project=shop"]


def test_a_project_becomes_the_commands_compose_would_run() -> None:
    scenario, _ = load_scenario_text(TEXT, "plan.yaml")
    assert scenario.cluster.docker is not None
    (project,) = scenario.cluster.docker.projects
    commands, containers = plan_project(project)
    assert containers == [
        "shop-web-1",
        "shop-api-1",
        "shop-worker-1",
        "shop-worker-2",
        "shop-side-1",
        "shop-plain-1",
        "lonely",
    ]

    def made(name: str) -> list[str]:
        return next(c for c in commands if c[:3] == ["create", "--name", name])

    networks = [c for c in commands if c[0] == "network" and c[1] != "connect"]
    assert networks == [
        ["network", "create", "--driver", "bridge", *LABEL, "shop_default"],
        ["network", "create", "--driver", "bridge", *LABEL, "--internal", "shop_front"],
        ["network", "create", "--driver", "bridge", *LABEL, "--subnet", "10.5.0.0/24",
         "--gateway", "10.5.0.254", "shop_back"],
        ["network", "inspect", "--format", "{{.Id}}", "bridge"],
    ]  # fmt: skip
    web = made("shop-web-1")
    assert web[web.index("--hostname") + 1] == "www"
    assert web[web.index("--network") : web.index("--network") + 4] == [
        "--network",
        "shop_front",
        "--network-alias",
        "web",
    ]
    publish = [web[i + 1] for i, a in enumerate(web) if a == "--publish"]
    assert publish == ["8080:80/tcp", "127.0.0.1::9000/udp", "8443-8450:443/tcp"]
    assert web[-3:] == [IMAGE, *SLEEP]
    i = commands.index(web)
    # the second network is connected once the container runs: joined in this order
    # (Compose connects it before the start, and Engine 20.10 joins in map order)
    assert commands[i + 1 : i + 3] == [
        ["start", "shop-web-1"],
        ["network", "connect", "--alias", "web", "shop_back", "shop-web-1"],
    ]
    api = made("shop-api-1")
    assert api[api.index("--network") : api.index("--network") + 8] == [
        "--network", "shop_back", "--ip", "10.5.0.10",
        "--network-alias", "api", "--network-alias", "backend",
    ]  # fmt: skip
    assert api[api.index("--expose") + 1] == "5000/tcp"
    side = made("shop-side-1")
    assert side[side.index("--network") + 1] == "container:shop-web-1"
    plain = made("shop-plain-1")
    assert plain[plain.index("--network") + 1] == "bridge"
    lonely = made("lonely")
    assert lonely[lonely.index("--network") + 1] == "shop_default"


def test_verify_on_a_docker_scenario_without_docker_engine_exits_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from dataplane import commands
    from dataplane.cli import app

    commands.load()
    monkeypatch.setattr("dataplane.kernel.preflight.reason_not_to_run", lambda: None)
    monkeypatch.setattr(
        "dataplane.kernel.docker_engine.reason_not_to_run",
        lambda: "no /usr/sbin/dockerd (install Debian's docker.io)",
    )
    result = CliRunner().invoke(
        app, ["verify", str(ROOT / "scenarios/docker/multi-host.yaml")]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: cannot run on this kernel: no /usr/sbin/dockerd (install Debian's "
        "docker.io)\n"
    )
    assert result.stdout == ""
