"""`verify` on `runtime: docker`: each host's networks, containers, iptables rules and
published ports made by a real Docker Engine (Debian's docker.io) from the compose
input, compared with the simulator's Docker model probe by probe.

CI installs docker.io and busybox-static (.ci/run): there a missing Engine fails these
tests; elsewhere they skip, saying why (and, as every kernel test, when not root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataplane.kernel import docker_engine, leftovers, netns, owner
from dataplane.kernel.report import AGREE, MISMATCH, Report
from dataplane.kernel.verify import Verifier
from dataplane.sim import Simulator
from tests.kernel.test_cleanup import root_state
from topology.compose import ComposeProject, PortSpec
from topology.errors import TopologyError
from topology.loader import load_scenario_text
from topology.scenario import Scenario, Verdict

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent.parent

SCENARIO = """
name: docker-engine-oracle
cluster:
  runtime: docker
  nodes: [{name: host-1, ip: 10.100.0.2}, {name: host-2, ip: 10.100.0.3}]
  externals: [{name: laptop, ip: 192.0.2.10}]
compose:
  - node: host-1
    project: shop
    services:
      web: {image: nginx, ports: ["8080:80"], networks: [front]}
      api: {image: api, expose: ["5000"], networks: [front]}
      admin: {image: admin, expose: ["9000"], networks: [back]}
      legacy: {image: old, network_mode: bridge, ports: ["7000:7000/udp"]}
    networks:
      front: {}
      back: {}
  - node: host-2
    project: db
    services:
      postgres: {image: postgres, ports: ["5432:5432"]}
steps:
  - probe: {from: external/laptop, to: node/host-1, port: 8080}
  - probe: {from: external/laptop, to: node/host-1, port: 8081}
  - probe: {from: container/host-1/shop-web-1, to: container/host-1/shop-api-1, port: 5000}
  - probe: {from: container/host-1/shop-web-1, to: container/host-1/shop-admin-1, port: 9000}
  - probe: {from: container/host-1/shop-api-1, to: container/host-2/db-postgres-1, port: 5432}
  - probe: {from: container/host-1/shop-api-1, to: node/host-2, port: 5432}
  - probe: {from: external/laptop, to: node/host-1, port: 7000, protocol: UDP}
  - probe: {from: node/host-2, to: container/host-2/db-postgres-1, port: 5432}
"""
# the simulator's verdict of each probe, in order: the Engine must agree on every one
VERDICTS = [
    Verdict.DELIVERED,  # a published port, from an external host
    Verdict.REFUSED,  # a port nothing publishes: the host's own stack answers RST
    Verdict.DELIVERED,  # two containers on one user-defined network
    Verdict.DENIED,  # two networks: DOCKER-ISOLATION-STAGE-2 drops it
    # host-2's container address is host-1's own shop_front address (shop-web-1),
    # which listens on no 5432: container addresses do not cross hosts
    Verdict.REFUSED,
    Verdict.DELIVERED,  # host-2's published port, from a container of host-1
    Verdict.DELIVERED,  # a published UDP port on docker0
    Verdict.DELIVERED,  # a host to its own container
]


@pytest.fixture(scope="module", autouse=True)
def engine(docker_engine_here: None) -> None:
    """Every test here runs real dockerds."""


def scenario(text: str = SCENARIO) -> Scenario:
    loaded, warnings = load_scenario_text(text, "docker-engine.yaml")
    assert warnings == []
    return loaded


def gone(run_id: str) -> None:
    """Nothing of run `run_id` is left: no process, state, cgroup or namespace."""
    assert leftovers.processes(run_id) == []
    assert not leftovers.state_dir(run_id).exists()
    assert not list(leftovers.CGROUP_ROOT.glob(f"*/{run_id}"))
    assert netns.listing(f"{run_id}-") == []


@pytest.fixture(scope="module")
def verified() -> tuple[Report, str]:
    before = root_state()
    v = Verifier(scenario())
    report = v.run()
    # docker0, the bridges, veths and iptables rules were all in the run's namespaces
    assert root_state() == before
    return report, v.live.run_id


def test_every_probe_agrees_with_docker_engine(verified: tuple[Report, str]) -> None:
    report, _ = verified
    assert [r.sim for r in report.rows] == VERDICTS
    assert [r.status for r in report.rows] == [AGREE] * len(VERDICTS), [
        (r.title, r.kernel.detail, r.differs()) for r in report.rows
    ]
    assert report.ok


def test_the_servers_saw_what_docker_does_to_the_source(
    verified: tuple[Report, str],
) -> None:
    report, _ = verified
    saw = {
        r.title: next(p.kernel for p in r.parts if p.name == "server saw")
        for r in report.rows
        if any(p.name == "server saw" for p in r.parts)
    }
    # a published port keeps the external client's address (DNAT only)
    assert saw["external/laptop -> node/host-1:8080 TCP"] == "192.0.2.10"
    # another host's published port: MASQUERADE on host-1 makes it host-1's address
    assert saw["container/host-1/shop-api-1 -> node/host-2:5432 TCP"] == "10.100.0.2"
    # a host to its container: from the bridge's address (db_default's gateway)
    assert saw["node/host-2 -> container/host-2/db-postgres-1:5432 TCP"] == "172.18.0.1"


def test_the_engine_made_the_models_addresses_and_ports(
    verified: tuple[Report, str],
) -> None:
    report, _ = verified
    built = {p.name: (p.sim, p.kernel) for p in report.built}
    assert built["address of host-1/shop-web-1 on shop_front"] == (
        "172.18.0.2",
        "172.18.0.2",
    )
    assert built["address of host-1/shop-legacy-1 on bridge"] == (
        "172.17.0.2",
        "172.17.0.2",
    )
    assert built["published 0.0.0.0:7000/udp of host-1/shop-legacy-1"] == (
        "7000/udp on bridge",
        "7000/udp on bridge",
    )
    assert all(p.agrees for p in report.built)


def test_the_report_names_docker_engine_as_the_builder(
    verified: tuple[Report, str],
) -> None:
    report, _ = verified
    builders = report.kernel_side.values()
    assert any(b.startswith("Docker Engine 20.10") for b in builders), builders
    assert not any("nftables" in b for b in builders)  # no kube-proxy rules here


def test_nothing_of_the_run_is_left(verified: tuple[Report, str]) -> None:
    _, run_id = verified
    gone(run_id)


ONE_PORT = """
name: one-port
cluster:
  runtime: docker
  nodes: [{name: host-1, ip: 10.100.0.2}]
  externals: [{name: laptop, ip: 192.0.2.10}]
compose:
  - node: host-1
    project: shop
    services:
      web: {image: nginx, ports: ["8080:80"]}
steps:
  - probe: {from: external/laptop, to: node/host-1, port: 8080}
"""


def test_a_difference_between_the_model_and_the_engine_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Engine is given `8081:80` where the simulator publishes `8080:80`: the probe
    and the built part both say so."""
    real = docker_engine.port_argument

    def shifted(spec: PortSpec) -> str:
        return real(spec).replace("8080:", "8081:")

    monkeypatch.setattr(docker_engine, "port_argument", shifted)
    v = Verifier(scenario(ONE_PORT))
    report = v.run()
    (row,) = report.rows
    assert (row.sim, row.kernel.verdict, row.status) == (
        Verdict.DELIVERED,
        Verdict.REFUSED,
        MISMATCH,
    )
    differ = {p.name: (p.sim, p.kernel) for p in report.built if not p.agrees}
    assert differ == {
        "published 0.0.0.0:8080/tcp of host-1/shop-web-1": (
            "80/tcp on shop_default",
            "-",
        ),
        "published 0.0.0.0:8081/tcp of host-1/shop-web-1": (
            "-",
            "80/tcp on shop_default",
        ),
    }
    assert not report.ok
    gone(v.live.run_id)


KILLED = """
import sys
from dataplane.kernel.docker_live import DockerLive
from dataplane.scenario import Runner
from tests.kernel.test_cleanup import root_state
from topology.compose import PortSpec
from topology.loader import load_scenario_text
scenario, _ = load_scenario_text(sys.stdin.read(), "killed.yaml")
live = DockerLive(Runner(scenario).sim.fabric, "killed.yaml").start()
print(live.run_id, flush=True)
sys.stdin.close()
import time
time.sleep(600)
"""


def test_the_next_run_removes_what_a_killed_run_left() -> None:
    """SIGKILL leaves the shims and containers running (a shim reparents itself to
    init), the state directory, cgroups and namespaces: reaping removes them all."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(ONE_PORT)
    proc.stdin.close()
    run_id = proc.stdout.readline().strip()
    assert run_id.startswith(netns.PREFIX), run_id
    assert leftovers.processes(run_id)  # dockerd, containerd, a shim, a container
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 10
    while leftovers.processes(run_id) and time.monotonic() < deadline:
        removed, _left = owner.reap(only={run_id})
        if not removed:
            time.sleep(0.1)  # (another run beside this one may have reaped it)
    gone(run_id)
    assert not owner.record_path(run_id).exists()


TWO_NETWORKS = """
name: two-networks
cluster:
  runtime: docker
  nodes: [{name: host-1, ip: 10.100.0.2}]
  externals: [{name: laptop, ip: 192.0.2.10}]
compose:
  - node: host-1
    project: shop
    services:
      web: {image: nginx, ports: ["8080:80", "81/udp"], networks: [front, back]}
      lone: {image: x, expose: ["80"], networks: [side, front]}
      vault: {image: x, ports: ["9090:90"], networks: [side]}
    networks:
      front: {}
      back: {}
      side: {internal: true}
steps:
  - probe: {from: external/laptop, to: node/host-1, port: 8080}
  - probe: {from: container/host-1/shop-lone-1, to: external/laptop, port: 80}
"""


def test_a_container_on_two_networks_publishes_where_docker_does() -> None:
    """The gateway endpoint is libnetwork's (sandbox.go, the endpoints' order): a
    network that is not internal, then by name, so shop_back over shop_front: the
    default route and the published ports move there when back is connected, and the
    UDP port, released and allocated again, takes the allocator's next (32769).  A
    container whose first network is internal is routed by its other network; one on
    an internal network only publishes nothing."""
    loaded, warnings = load_scenario_text(TWO_NETWORKS, "two-networks.yaml")
    # vault's networks are all internal: no port of it is published, on either side
    assert warnings == [
        "two-networks.yaml:13: service shop/vault: ports are not published: every"
        " network of the service is internal (libnetwork programs no external"
        " connectivity there)"
    ]
    v = Verifier(loaded)
    report = v.run()
    built = {p.name: (p.sim, p.kernel) for p in report.built}
    assert not any("9090" in name for name in built)
    assert built["published 0.0.0.0:8080/tcp of host-1/shop-web-1"] == (
        "80/tcp on shop_back",
        "80/tcp on shop_back",
    )
    assert built["published 0.0.0.0:32769/udp of host-1/shop-web-1"] == (
        "81/udp on shop_back",
        "81/udp on shop_back",
    )
    assert [p for p in report.built if not p.agrees] == []
    assert [r.sim for r in report.rows] == [Verdict.DELIVERED, Verdict.REFUSED]
    assert [r.status for r in report.rows] == [AGREE, AGREE], [
        (r.title, r.kernel.detail, r.differs()) for r in report.rows
    ]
    gone(v.live.run_id)


def test_a_refusal_of_the_engine_names_host_and_command_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image has no `/bin/missing`: `docker start` fails, and the run is removed."""
    monkeypatch.setattr(docker_engine, "SLEEP", ("/bin/missing",))
    v = Verifier(scenario(ONE_PORT))
    with pytest.raises(docker_engine.EngineError) as err:
        v.run()
    assert str(err.value).startswith(
        "Docker Engine on host-1: docker start shop-web-1: "
    )
    assert "/bin/missing" in str(err.value)
    gone(v.live.run_id)


LOCAL = """
name: one-host
cluster:
  runtime: docker
  nodes: [{name: host-1, ip: 10.100.0.2}]
compose:
  - node: host-1
    project: p
    services:
      web: {image: x, ports: ["8080:80", "127.0.0.1:9000:9000"]}
      side: {image: x, network_mode: "service:web"}
      h: {image: x, network_mode: host, expose: ["7070"]}
      n: {image: x, network_mode: none, expose: ["6060"]}
steps:
  - probe: {from: node/host-1, to: localhost, port: 8080}
  - probe: {from: node/host-1, to: localhost, port: 9000}
  - probe: {from: node/host-1, to: node/host-1, port: 8080}
  - probe: {from: container/host-1/p-side-1, to: localhost, port: 80}
  - probe: {from: container/host-1/p-web-1, to: node/host-1, port: 7070}
  - probe: {from: container/host-1/p-n-1, to: localhost, port: 6060}
"""


def test_localhost_the_host_network_and_a_shared_namespace_agree() -> None:
    """docker-proxy answers a host's own 127.0.0.1 (nat OUTPUT leaves 127.0.0.0/8 to
    it); `service:` shares web's namespace, so side reaches web's port 80 over lo;
    `host` listens in the host's namespace; `none` has only lo."""
    v = Verifier(scenario(LOCAL))
    report = v.run()
    assert [r.sim for r in report.rows] == [Verdict.DELIVERED] * 6
    assert [r.status for r in report.rows] == [AGREE] * 6, [
        (r.title, r.kernel.detail, r.differs()) for r in report.rows
    ]
    host_net = report.rows[4]
    assert ("server", "host-1 host", "host-1 host") in [
        (p.name, p.sim, p.kernel) for p in host_net.parts
    ]
    gone(v.live.run_id)


HAIRPIN = """
name: hairpin
cluster:
  runtime: docker
  nodes: [{name: host-1, ip: 10.100.0.2}]
compose:
  - node: host-1
    project: p
    services:
      web: {image: x, ports: ["8080:80"]}
steps:
  - probe: {from: container/host-1/p-web-1, to: node/host-1, port: 8080}
"""


def test_a_container_reaches_its_own_hosts_published_port() -> None:
    """nat DOCKER returns the bridge's own traffic (`-i BR -j RETURN`): docker-proxy,
    listening on 0.0.0.0:8080 in the host, takes the connection and opens its own to
    the container, which sees the bridge's address as the source."""
    v = Verifier(scenario(HAIRPIN))
    report = v.run()
    (row,) = report.rows
    assert (row.sim, row.status) == (Verdict.DELIVERED, AGREE), (
        row.kernel.detail,
        row.differs(),
    )
    # docker-proxy's own connection has its own source port, so verify cannot tell the
    # server's record of it from another's (compare.probe_parts matches the client's)
    assert row.parts == []
    t = Simulator(v.scenario.cluster).probe("container/p-web-1", "node/host-1", 8080)
    deliver = next(h for h in t.hops if h.event == "deliver")
    assert deliver.packet is not None and deliver.packet.ip is not None
    assert deliver.packet.ip.src == "172.18.0.1"
    assert "DOCKER -i br-" in "\n".join(h.detail for h in t.hops)
    gone(v.live.run_id)


def test_verify_json_names_the_engine_and_lists_the_built_parts(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from dataplane import commands
    from dataplane.cli import app
    from tests.io.test_schemas import errors, validator

    commands.load()
    path = tmp_path / "one-port.yaml"
    path.write_text(ONE_PORT)
    result = CliRunner().invoke(app, ["verify", "-o", "json", str(path)])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert errors(validator("results.schema.json"), doc) == []
    assert doc["ok"] is True
    assert doc["kernel_side"]["published ports and docker-proxy"].startswith(
        "Docker Engine 20.10"
    )
    assert {"part": "address of host-1/shop-web-1 on shop_default",
            "simulator": "172.18.0.2", "kernel": "172.18.0.2",
            "agree": True} in doc["built"]  # fmt: skip


def test_sigterm_while_the_engine_builds_removes_everything(tmp_path: Path) -> None:
    """SIGTERM once the run's dockerd is up (the containers are being made): exit 143,
    one line on stderr, and no process, state, cgroup or namespace of the run left."""
    path = tmp_path / "one-port.yaml"
    path.write_text(ONE_PORT)
    argv = [sys.executable, "-m", "dataplane.cli", "verify", "-q", str(path)]
    with subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        run_id = f"{netns.PREFIX}{proc.pid:x}"
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and not (leftovers.state_dir(run_id) / "host-1" / "docker.sock").exists()
        ):
            time.sleep(0.02)
        assert leftovers.processes(run_id), "verify never started its dockerd"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err == "stopped by SIGTERM: every namespace of the run was removed\n"
    gone(run_id)


STATIC = """
name: static-addresses
cluster:
  runtime: docker
  nodes: [{name: host-1, ip: 10.100.0.2}]
compose:
  - node: host-1
    project: p
    services:
      a: {image: x, networks: {n: {ipv4_address: 10.8.0.5}}}
      b: {image: x, networks: {n: {ipv4_address: ADDRESS}}}
    networks: {n: {ipam: {config: [{subnet: 10.8.0.0/24}]}}}
steps:
  - probe: {from: container/p-a-1, to: container/p-b-1, port: 80}
"""


def test_a_duplicate_ipv4_address_is_refused_as_docker_refuses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The simulator refuses b's 10.8.0.5 at load with the Engine's words; the Engine,
    given it (b's 10.8.0.6 of a valid scenario turned into a's address), refuses to
    start b: libnetwork's IPAM `Address already in use`."""
    with pytest.raises(TopologyError) as refused:
        load_scenario_text(STATIC.replace("ADDRESS", "10.8.0.5"), "static.yaml")
    assert "Address already in use on network p_n (container p-a-1 has it" in str(
        refused.value
    )
    real = docker_engine.plan_project

    def duplicate(project: ComposeProject) -> tuple[list[list[str]], list[str]]:
        commands, names = real(project)
        return [
            ["10.8.0.5" if a == "10.8.0.6" else a for a in argv] for argv in commands
        ], names

    monkeypatch.setattr(docker_engine, "plan_project", duplicate)
    v = Verifier(scenario(STATIC.replace("ADDRESS", "10.8.0.6")))
    with pytest.raises(docker_engine.EngineError) as err:
        v.run()
    assert str(err.value).startswith("Docker Engine on host-1: docker start p-b-1: ")
    assert "Error response from daemon: Address already in use" in str(err.value)
    gone(v.live.run_id)


def test_expose_in_another_containers_namespace_is_refused_as_docker_refuses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The simulator refuses `expose` with `network_mode: service:` at load, in the
    Engine's words; the Engine, given `--expose` on such a container, refuses it."""
    refused_text = (
        "conflicting options: port exposing and the container type network mode"
    )
    with pytest.raises(TopologyError) as refused:
        load_scenario_text(
            LOCAL.replace(
                'side: {image: x, network_mode: "service:web"}',
                'side: {image: x, network_mode: "service:web", expose: ["9901"]}',
            ),
            "local.yaml",
        )
    assert refused_text in str(refused.value)
    real = docker_engine.plan_project

    def exposed(project: ComposeProject) -> tuple[list[list[str]], list[str]]:
        commands, names = real(project)
        return [
            [*argv[:-3], "--expose", "9901/tcp", *argv[-3:]]
            if argv[:3] == ["create", "--name", "p-side-1"]
            else argv
            for argv in commands
        ], names

    monkeypatch.setattr(docker_engine, "plan_project", exposed)
    v = Verifier(scenario(LOCAL))
    with pytest.raises(docker_engine.EngineError) as err:
        v.run()
    assert str(err.value).startswith("Docker Engine on host-1: docker create ")
    assert refused_text in str(err.value)
    gone(v.live.run_id)
