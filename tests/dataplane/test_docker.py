"""Docker Engine hosts (`runtime: docker`): the devices dataplane/cni/docker.py builds and
the walks through Docker's iptables (dataplane/docker_iptables.py) and embedded DNS."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.fabric import build_fabric
from dataplane.netns import Kind
from dataplane.sim import Simulator
from dataplane.trace import DropReason, Trace
from topology.errors import TopologyError
from topology.loader import load_scenario_text
from topology.model import Cluster, Protocol
from topology.scenario import Verdict

TEXT = """name: t
cluster:
  runtime: docker
  nodes: [{name: host-1, ip: 10.100.0.2}, {name: host-2, ip: 10.100.0.3}]
  externals: [{name: laptop, ip: 192.0.2.10}]
compose:
  - node: host-1
    project: shop
    services:
      web: {image: x, ports: ["8080:80", "127.0.0.1:9090:80"], networks: [front, back]}
      api: {image: x, expose: ["5000"], networks: {back: {aliases: [backend]}}}
      other: {image: x, expose: ["7000"], networks: [front]}
      side: {image: x, network_mode: "service:web"}
      legacy: {image: x, network_mode: bridge, ports: ["8081:80"]}
    networks:
      front: {}
      back: {}
  - node: host-2
    project: db
    services:
      postgres: {image: x, network_mode: bridge, ports: ["5432:5432"]}
steps: [{probe: {from: node/host-1, to: node/host-2, port: 22}}]
"""


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    scenario, _ = load_scenario_text(TEXT, "lab.yaml")
    return scenario.cluster


@pytest.fixture(scope="module")
def sim(cluster: Cluster) -> Simulator:
    return Simulator(cluster)


def details(t: Trace) -> str:
    return "\n".join(h.detail for h in t.hops)


def test_the_devices_of_a_host(cluster: Cluster) -> None:
    fab = build_fabric(cluster)
    host = fab.netns["host-1"]
    bridges = {
        i.ifname: str(i.addrs[0])
        for i in host.interfaces.values()
        if i.kind is Kind.BRIDGE
    }
    assert bridges == {
        "docker0": "172.17.0.1/16",
        **{
            n.bridge: f"{n.gateway}/16"
            for n in cluster.docker.hosts["host-1"].networks[1:]  # type: ignore[union-attr]
        },
    }
    web = fab.netns["pod:host-1/shop-web-1"]
    assert web.label == "container shop-web-1 (netns shared with shop-side-1)"
    assert {n: str(i.addrs[0]) for n, i in web.interfaces.items() if i.addrs} == {
        "lo": "127.0.0.1/8",
        "eth0": "172.18.0.2/16",
        "eth1": "172.19.0.2/16",
    }
    default = web.routes.lookup("192.0.2.10")
    assert default is not None
    # the gateway endpoint: shop_back before shop_front by name (libnetwork epHeap)
    assert (default.oif, str(default.via)) == ("eth1", "172.19.0.1")
    peer = web.interfaces["eth0"].peer
    assert peer is not None and peer[0] == "host-1"
    assert (
        host.interfaces[peer[1]].master
        == cluster.docker.hosts[  # type: ignore[union-attr]
            "host-1"
        ]
        .network("shop_front")
        .bridge
    )
    # the embedded DNS on user-defined networks only
    assert web.sockets[(Protocol.UDP, 53)].bound == "127.0.0.11"
    legacy = fab.netns["pod:host-1/shop-legacy-1"]
    assert all(p != 53 for _, p in legacy.sockets)


def test_a_published_port_is_dnated_and_keeps_the_client(sim: Simulator) -> None:
    t = sim.probe("external/laptop", "node/host-1", 8080)
    assert t.verdict is Verdict.DELIVERED
    text = details(t)
    assert (
        "nat PREROUTING -m addrtype --dst-type LOCAL -j DOCKER; DOCKER ! -i br-" in text
    )
    # published on the gateway endpoint's network, shop_back (172.19.0.0/16)
    assert (
        "-p tcp --dport 8080 -j DNAT --to-destination 172.19.0.2:80 (shop-web-1)"
        in text
    )
    assert "DOCKER -d 172.19.0.2/32 ! -i br-" in text
    deliver = next(h for h in t.hops if h.event == "deliver")
    assert deliver.packet is not None and deliver.packet.ip is not None
    assert deliver.packet.ip.src == "192.0.2.10"


def test_a_loopback_only_port_is_closed_from_outside(sim: Simulator) -> None:
    t = sim.probe("external/laptop", "node/host-1", 9090)
    assert t.verdict is Verdict.REFUSED


def test_docker_proxy_connects_from_the_bridge(sim: Simulator) -> None:
    t = sim.probe("node/host-1", "localhost", 9090)
    assert t.verdict is Verdict.DELIVERED
    assert "docker-proxy -host-ip 127.0.0.1 -host-port 9090" in details(t)
    deliver = next(h for h in t.hops if h.event == "deliver")
    assert deliver.packet is not None and deliver.packet.ip is not None
    assert deliver.packet.ip.src == "172.19.0.1"  # shop_back's gateway


def test_isolation_between_networks_is_denied_naming_the_rule(
    sim: Simulator, cluster: Cluster
) -> None:
    t = sim.probe("container/shop-other-1", "container/shop-api-1", 5000)
    front = cluster.docker.hosts["host-1"].network("shop_front")  # type: ignore[union-attr]
    back = cluster.docker.hosts["host-1"].network("shop_back")  # type: ignore[union-attr]
    assert t.verdict is Verdict.DENIED
    assert t.reason is DropReason.FILTER
    assert t.policy == f"DOCKER-ISOLATION-STAGE-2 -o {back.bridge} -j DROP"
    assert (
        f"DOCKER-ISOLATION-STAGE-1 -i {front.bridge} ! -o {front.bridge} -j"
        " DOCKER-ISOLATION-STAGE-2" in t.explanation
    )


def test_icc_on_one_network(sim: Simulator) -> None:
    t = sim.probe("container/shop-other-1", "container/shop-web-1", 80)
    assert t.verdict is Verdict.DELIVERED
    assert "(icc)" in details(t)


def test_the_shared_namespace_is_lo(sim: Simulator) -> None:
    t = sim.probe("container/shop-side-1", "container/shop-web-1", 80)
    assert t.verdict is Verdict.DELIVERED
    assert {h.device for h in t.hops if h.device} == {"lo"}


def test_embedded_dns_answers_aliases_on_shared_networks(sim: Simulator) -> None:
    t = sim.probe("container/shop-web-1", "backend", 5000)
    assert t.verdict is Verdict.DELIVERED
    assert "nameserver 127.0.0.11; search ; options ndots:0" in details(t)
    assert "backend is 172.19.0.3" in details(t)
    assert sim.probe("container/shop-other-1", "api", 5000).verdict is Verdict.NXDOMAIN


def test_dns_from_docker0_is_an_error(sim: Simulator) -> None:
    with pytest.raises(TopologyError) as e:
        sim.probe("container/shop-legacy-1", "web", 80)
    assert str(e.value) == (
        "endpoint 'web': 'container/shop-legacy-1' is on the default bridge only, which"
        " has no embedded DNS (its resolv.conf is the host's, and the simulated hosts"
        " have no upstream resolver); attach it to a user-defined network"
    )


def test_other_hosts_container_addresses_stay_on_the_local_docker0(
    sim: Simulator,
) -> None:
    t = sim.probe("container/shop-legacy-1", "container/host-2/db-postgres-1", 5432)
    # host-2's postgres is 172.17.0.2: on host-1 that is legacy's own address
    assert t.verdict is Verdict.REFUSED
    assert {h.node for h in t.hops} == {"host-1"}


def test_published_ports_cross_hosts_masqueraded(sim: Simulator) -> None:
    t = sim.probe("container/shop-legacy-1", "node/host-2", 5432)
    assert t.verdict is Verdict.DELIVERED
    assert (
        "nat POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE 172.17.0.2 ->"
        " 10.100.0.2" in details(t)
    )
    deliver = next(h for h in t.hops if h.event == "deliver" and h.node == "host-2")
    assert deliver.packet is not None and deliver.packet.ip is not None
    assert deliver.packet.ip.src == "10.100.0.2"


def test_an_unpublished_port_from_another_bridge_is_denied_by_the_docker_chain(
    sim: Simulator,
) -> None:
    # a container on shop_front to legacy on docker0: isolation first
    t = sim.probe("container/shop-other-1", "container/shop-legacy-1", 80)
    assert t.verdict is Verdict.DENIED
    assert t.policy is not None and t.policy.startswith(
        "DOCKER-ISOLATION-STAGE-2 -o docker0"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "container/nope",
            "endpoint 'container/nope': no container 'nope' (containers: ",
        ),
        (
            "container/host-3/x",
            "endpoint 'container/host-3/x': no node 'host-3' (nodes: host-1, host-2)",
        ),
        (
            "container/a/b/c",
            "endpoint 'container/a/b/c': expected container/NODE/NAME or container/NAME",
        ),
    ],
    ids=["unknown", "unknown-node", "too-long"],
)
def test_container_endpoint_errors(sim: Simulator, text: str, message: str) -> None:
    with pytest.raises(TopologyError) as e:
        sim.probe(text, "node/host-1", 80)
    assert str(e.value).startswith(message)


def test_the_matrix_walks_every_pair_through_dockers_rules(sim: Simulator) -> None:
    from dataplane.matrix import compute_matrix, walk_matrix

    pods = list(sim.cluster.pods)
    m = compute_matrix(sim, pods, pods, 5000, Protocol.TCP)
    assert m.rows == walk_matrix(sim, pods, pods, 5000, Protocol.TCP).rows
    other = pods.index("host-1/shop-other-1")
    api = pods.index("host-1/shop-api-1")
    assert m.verdict(other, api) is Verdict.DENIED


def test_a_container_reaches_its_own_published_port_through_docker_proxy(
    sim: Simulator,
) -> None:
    """nat DOCKER returns the bridge's own traffic; docker-proxy in the host takes the
    connection at INPUT and sends its own from LOCAL_OUT: no frame is bridged back
    onto the port it came in on (hairpin is off), and the answer comes back the same
    way, from the host's address."""
    t = sim.probe("container/shop-web-1", "node/host-1", 8080)
    assert t.verdict is Verdict.DELIVERED
    text = details(t)
    assert (
        "DOCKER -i br-" in text and "-j RETURN: not DNATed, up to docker-proxy" in text
    )
    assert "(docker-proxy sends it)" in text
    assert "hairpin is off" not in text
    deliver = next(h for h in t.hops if h.event == "deliver")
    assert deliver.packet is not None and deliver.packet.ip is not None
    assert deliver.packet.ip.src == "172.19.0.1"  # shop_back's gateway
    assert t.hops[-1].packet is not None and t.hops[-1].packet.ip is not None
    assert (t.hops[-1].packet.ip.src, t.hops[-1].packet.sport) == ("10.100.0.2", 8080)


def test_the_embedded_dns_answers_every_replica_and_says_docker_shuffles() -> None:
    scenario, _ = load_scenario_text(
        TEXT.replace(
            "api: {image: x,", "api: {image: x, scale: 2,"
        ),  # api-1, api-2 on back
        "lab.yaml",
    )
    t = Simulator(scenario.cluster).probe("container/shop-web-1", "api", 5000)
    assert t.verdict is Verdict.DELIVERED
    text = details(t)
    assert "DNS answer api. A 172.19.0.3 172.19.0.4: api is 172.19.0.3" in text
    assert "embedded DNS shuffles the addresses of every answer" in text


def test_expose_in_another_namespace_is_an_input_error_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dataplane import commands
    from dataplane.cli import app

    commands.load()
    path = tmp_path / "bad.yaml"
    path.write_text(TEXT.replace('"service:web"}', '"service:web", expose: ["9901"]}'))
    r = CliRunner().invoke(app, ["run", str(path)])
    assert r.exit_code == 2
    assert r.stderr == (
        f"error: {path}:13: service shop/side: services.side.expose: conflicting"
        " options: port exposing and the container type network mode (Docker Engine"
        " refuses expose with network_mode service:web: the namespace is web's,"
        " declare the port there)\n"
    )


def test_a_port_published_by_another_network_is_the_proxys(sim: Simulator) -> None:
    """`DOCKER -i BR -j RETURN` is there for every non-internal bridge: a container on
    shop_front asking its host for legacy's port (docker0) is not DNATed, docker-proxy
    takes it (found by the generator on Docker Engine 20.10, seed 139)."""
    t = sim.probe("container/shop-other-1", "node/host-1", 8081)
    assert t.verdict is Verdict.DELIVERED
    assert "DOCKER-ISOLATION" not in details(t)


@pytest.mark.parametrize(
    ("ports", "asked", "verdict"),
    [
        ('["5353:53/udp"]', "node/host-1", Verdict.DROPPED),
        ('["10.100.0.2:5353:53/udp"]', "node/host-1", Verdict.DELIVERED),
    ],
    ids=["wildcard", "host-address"],
)
def test_docker_proxys_udp_answer_to_its_own_bridge_leaves_from_the_routes_source(
    ports: str, asked: str, verdict: Verdict
) -> None:
    """docker-proxy's UDP listener is bound to the published address (0.0.0.0 unless
    one is given) and answers by WriteToUDP: from a wildcard socket the answer's source
    is the route's (the bridge's gateway), which the client's connected socket does not
    take (seed 206 of the generator, against Docker Engine 20.10); bound to the host's
    address, it answers from that address."""
    text = TEXT.replace('ports: ["8081:80"]', f"ports: {ports}")
    scenario, _ = load_scenario_text(text, "lab.yaml")
    t = Simulator(scenario.cluster).probe(
        "container/shop-legacy-1", asked, 5353, Protocol.UDP
    )
    assert t.verdict is verdict, t.reason
    if verdict is Verdict.DROPPED:
        assert (
            "docker-proxy's socket is bound to 0.0.0.0: sendto() from the route's"
            " source 172.17.0.1:5353, not from 10.100.0.2" in details(t)
        )
        assert t.reason is DropReason.NO_SOCKET
        drop = next(h for h in t.hops if h.event == "drop")
        assert drop.netns == "container shop-legacy-1"
        assert "the socket is connected to 10.100.0.2:5353 and does not take it" in (
            drop.detail
        )


@pytest.mark.parametrize(
    ("to", "code", "said"),
    [
        ("api", 0, "verdict: delivered"),
        (
            "nosuch",
            2,
            "error: endpoint 'nosuch': not a name of this cluster's endpoints (a"
            " container is container/NAME), and Docker's embedded DNS answers no"
            " 'nosuch' to container/shop-web-1\n",
        ),
    ],
)
def test_trace_to_a_bare_name_asks_the_embedded_dns(
    to: str, code: int, said: str
) -> None:
    """`trace --to NAME` from a container: the name its embedded DNS answers (a
    service, an alias, a container name), as a scenario step's `to: NAME` is."""
    from typer.testing import CliRunner

    from dataplane import commands
    from dataplane.cli import app

    commands.load()
    path = "scenarios/docker/user-network-dns.yaml"
    args = [
        "trace",
        path,
        "--from",
        "container/shop-web-1",
        "--to",
        to,
        "--port",
        "5000",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == code, r.output
    assert said in (r.stdout if code == 0 else r.stderr)
