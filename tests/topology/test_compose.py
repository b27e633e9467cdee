"""The compose list and the Docker model (topology/compose.py, composefile.py, docker.py):
networks and pools, addresses, published ports, names, and exact errors for bad input."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from topology.docker import DockerRuntime
from topology.errors import TopologyError
from topology.loader import load_scenario_text
from topology.model import Protocol

HEAD = """name: t
cluster:
  runtime: docker
  nodes: [{name: host-1, ip: 10.100.0.2}, {name: host-2, ip: 10.100.0.3}]
"""
STEP = "steps: [{probe: {from: node/host-1, to: node/host-2, port: 22}}]\n"


def project(body: str, node: str = "host-1", name: str = "p") -> str:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"  - node: {node}\n    project: {name}\n{lines}\n"


def load(*projects: str, base: Path | None = None) -> tuple[DockerRuntime, list[str]]:
    text = HEAD + "compose:\n" + "".join(projects) + STEP
    scenario, warnings = load_scenario_text(text, "lab.yaml", base)
    assert scenario.cluster.docker is not None
    return scenario.cluster.docker, warnings


def error(*projects: str, head: str = HEAD, extra: str = "") -> str:
    text = head + ("compose:\n" + "".join(projects) if projects else "") + extra + STEP
    with pytest.raises(TopologyError) as e:
        load_scenario_text(text, "lab.yaml")
    return str(e.value)


def test_docker0_and_user_defined_pools_in_creation_order() -> None:
    rt, _ = load(
        project("""
services:
  a: {image: x}
  b: {image: x, networks: [front, back]}
  c: {image: x, network_mode: bridge}
networks:
  front: {}
  back: {}
"""),
        project("services: {d: {image: x}}", name="q"),
    )
    host = rt.hosts["host-1"]
    nets = [(n.name, str(n.subnet), str(n.gateway)) for n in host.networks]
    assert nets == [
        ("bridge", "172.17.0.0/16", "172.17.0.1"),
        ("p_default", "172.18.0.0/16", "172.18.0.1"),
        ("p_front", "172.19.0.0/16", "172.19.0.1"),
        ("p_back", "172.20.0.0/16", "172.20.0.1"),
        ("q_default", "172.21.0.0/16", "172.21.0.1"),
    ]
    assert host.networks[0].bridge == "docker0"
    assert all(
        n.bridge == f"br-{n.id[:12]}" and len(n.id) == 64 for n in host.networks[1:]
    )
    # every host starts again from 172.17.0.0/16 and 172.18.0.0/16
    assert [str(n.subnet) for n in rt.hosts["host-2"].networks] == ["172.17.0.0/16"]
    b = host.container("p-b-1")
    assert b is not None
    assert [(a.ifname, a.network, str(a.ip), a.mac) for a in b.attachments] == [
        ("eth0", "p_front", "172.19.0.2", "02:42:ac:13:00:02"),
        ("eth1", "p_back", "172.20.0.2", "02:42:ac:14:00:02"),
    ]
    c = host.container("p-c-1")
    assert c is not None and str(c.attachments[0].ip) == "172.17.0.2"
    assert c.attachments[0].names == ()  # no embedded DNS on docker0


def test_a_fixed_subnet_is_skipped_by_the_pools() -> None:
    rt, _ = load(
        project("""
services: {a: {image: x, networks: [x, y]}}
networks:
  x: {ipam: {config: [{subnet: 172.18.0.0/16, gateway: 172.18.0.254}]}}
  y: {}
""")
    )
    nets = {n.name: n for n in rt.hosts["host-1"].networks}
    assert nets["p_x"].gateway == IPv4Address("172.18.0.254")
    assert nets["p_y"].subnet == IPv4Network("172.19.0.0/16")


def test_replicas_names_addresses_and_dns_names() -> None:
    rt, _ = load(
        project("""
services:
  api:
    image: x
    deploy: {replicas: 2}
    networks:
      default: {aliases: [backend]}
  db: {image: x, container_name: the-db, scale: 1}
""")
    )
    host = rt.hosts["host-1"]
    assert [(c.name, str(c.attachments[0].ip)) for c in host.containers] == [
        ("p-api-1", "172.18.0.2"),
        ("p-api-2", "172.18.0.3"),
        ("the-db", "172.18.0.4"),
    ]
    assert host.containers[1].attachments[0].names == ("api", "backend", "p-api-2")


def test_published_ports_short_and_long_syntax() -> None:
    rt, _ = load(
        project("""
services:
  web:
    image: x
    ports:
      - "8080:80"
      - "80"
      - "127.0.0.1:9090:90/udp"
      - "7000-7001:70-71"
      - "6000-6005:60"
      - {target: 443, published: "8443", host_ip: 10.100.0.2, protocol: tcp}
      - {target: 53, protocol: udp}
""")
    )
    ports = [
        (
            str(p.host_ip) if p.host_ip else None,
            p.host_port,
            p.protocol,
            p.container_port,
        )
        for p in rt.hosts["host-1"].published()
    ]
    assert ports == [
        (None, 8080, Protocol.TCP, 80),
        (None, 32768, Protocol.TCP, 80),
        ("127.0.0.1", 9090, Protocol.UDP, 90),
        (None, 7000, Protocol.TCP, 70),
        (None, 7001, Protocol.TCP, 71),
        (None, 6000, Protocol.TCP, 60),
        ("10.100.0.2", 8443, Protocol.TCP, 443),
        (None, 32768, Protocol.UDP, 53),
    ]


def test_omitted_host_ports_skip_taken_ones_per_host() -> None:
    rt, _ = load(
        project("""
services:
  a: {image: x, ports: ["32768:1", "2", "3"]}
""")
    )
    assert [p.host_port for p in rt.hosts["host-1"].published()] == [
        32768,
        32769,
        32770,
    ]


def test_shared_namespaces_host_and_none() -> None:
    rt, _ = load(
        project("""
services:
  app: {image: x, expose: ["80"]}
  side: {image: x, network_mode: "service:app"}
  more: {image: x, network_mode: "container:p-side-1"}
  h: {image: x, network_mode: host}
  n: {image: x, network_mode: none}
""")
    )
    assert rt.owner("host-1", "p-more-1").name == "p-app-1"
    modes = {c.name: (c.network_mode, c.joins) for c in rt.hosts["host-1"].containers}
    assert modes == {
        "p-app-1": ("bridge", None),
        "p-side-1": ("container", "p-app-1"),
        "p-more-1": ("container", "p-side-1"),
        "p-h-1": ("host", None),
        "p-n-1": ("none", None),
    }


def test_file_is_read_relative_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "compose.yaml").write_text(
        "services:\n  web:\n    image: x\n    dns: [8.8.8.8]\n"
    )
    rt, warnings = load(
        "  - {node: host-2, project: shop, file: app/compose.yaml}\n", base=tmp_path
    )
    assert [c.name for c in rt.hosts["host-2"].containers] == ["shop-web-1"]
    assert warnings == [
        "app/compose.yaml:4: service shop/web: services.web.dns: dns is not modelled"
        " (ignored)"
    ]


def test_a_file_outside_the_scenario_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "c.yaml").write_text("services: {a: {image: x}}\n")
    text = HEAD + "compose:\n  - {node: host-1, project: p, file: ../c.yaml}\n" + STEP
    with pytest.raises(TopologyError) as e:
        load_scenario_text(text, "lab.yaml", tmp_path / "s")
    assert "is outside" in str(e.value) or "outside" in str(e.value)
    assert str(e.value).startswith("lab.yaml:6: compose[0].file: ")


ERRORS = [
    (
        "compose-in-kubernetes",
        "name: t\n",
        project("services: {a: {image: x}}"),
        "",
        "lab.yaml:2: compose: compose needs runtime: docker (cluster.runtime; this"
        " cluster runs Kubernetes: give manifests)",
    ),
    (
        "manifests-in-docker",
        HEAD,
        "",
        "manifests: [{apiVersion: v1, kind: Namespace, metadata: {name: x}}]\n",
        "lab.yaml:5: manifests: runtime: docker has no Kubernetes objects (give"
        " compose projects)",
    ),
    (
        "cni-in-docker",
        HEAD + "  cni: calico\n",
        "",
        "",
        "lab.yaml:5: cluster.cni: runtime: docker does not use cni (a Docker host has"
        " no kubelet, kube-proxy, CNI, overlay or kube-dns)",
    ),
    (
        "unknown-node",
        HEAD,
        project("services: {a: {image: x}}", node="host-9"),
        "",
        "lab.yaml:6: compose[0].node: 'host-9' (a string) is not a node (nodes:"
        " host-1, host-2)",
    ),
    (
        "bad-project-name",
        HEAD,
        project("services: {a: {image: x}}", name="Shop"),
        "",
        "lab.yaml:7: compose[0].project: 'Shop' (a string) is not a project name"
        " (allowed: lowercase letters, digits, '-' and '_', starting with a letter or"
        " digit)",
    ),
    (
        "unknown-service-key",
        HEAD,
        project("services: {a: {image: x, portz: [80]}}"),
        "",
        "lab.yaml:8: service p/a: services.a.portz: unknown key 'portz' (allowed: ",
    ),
    (
        "bad-short-port",
        HEAD,
        project('services: {a: {image: x, ports: ["80:80:80:80"]}}'),
        "",
        "lab.yaml:8: service p/a: services.a.ports[0]: '80:80:80:80' (a string) is not"
        " a port mapping (allowed: [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], e.g."
        ' "8080:80", "127.0.0.1:8080:80/udp", "9090-9091:8080-8081")',
    ),
    (
        "port-out-of-range",
        HEAD,
        project('services: {a: {image: x, ports: ["70000:80"]}}'),
        "",
        "lab.yaml:8: service p/a: services.a.ports[0]: '70000:80' (a string): a port"
        " is 1-65535 (ranges low-high)",
    ),
    (
        "bad-protocol",
        HEAD,
        project('services: {a: {image: x, ports: ["80/icmp"]}}'),
        "",
        "lab.yaml:8: service p/a: services.a.ports[0]: 'icmp' (a string) is not a"
        " protocol (allowed: tcp, udp, sctp)",
    ),
    (
        "range-mismatch",
        HEAD,
        project('services: {a: {image: x, ports: ["8000-8002:80-81"]}}'),
        "",
        "lab.yaml:8: service p/a: services.a.ports[0]: 3 host ports for 2 container"
        " ports (a range publishes one host port per container port)",
    ),
    (
        "port-taken",
        HEAD,
        project(
            'services: {a: {image: x, ports: ["8080:80"]}, b: {image: x, ports: ["8080:81"]}}'
        ),
        "",
        "lab.yaml:8: service p/b: Bind for 0.0.0.0:8080 failed: port is already"
        " allocated",
    ),
    (
        "bad-network-mode",
        HEAD,
        project("services: {a: {image: x, network_mode: overlay}}"),
        "",
        "lab.yaml:8: service p/a: services.a.network_mode: 'overlay' (a string) is not"
        " a network mode (allowed: bridge, host, none, service:NAME, container:NAME)",
    ),
    (
        "unknown-service-in-mode",
        HEAD,
        project('services: {a: {image: x, network_mode: "service:b"}}'),
        "",
        "lab.yaml:8: service p/a: network_mode service:b: no service 'b' with a"
        " container in project p (services: a)",
    ),
    (
        "undeclared-network",
        HEAD,
        project("services: {a: {image: x, networks: [front]}}"),
        "",
        "lab.yaml:8: service p/a: services.a.networks[0]: network 'front' is not"
        " declared in the top-level networks (declared: default)",
    ),
    (
        "expose-in-another-namespace",
        HEAD,
        project(
            'services: {a: {image: x}, b: {image: x, network_mode: "service:a",'
            ' expose: ["9901"]}}'
        ),
        "",
        "lab.yaml:8: service p/b: services.b.expose: conflicting options: port exposing"
        " and the container type network mode (Docker Engine refuses expose with"
        " network_mode service:a: the namespace is a's, declare the port there)",
    ),
    (
        "ports-in-another-namespace",
        HEAD,
        project(
            'services: {b: {image: x, network_mode: "container:web", ports: ["80:80"]}}'
        ),
        "",
        "lab.yaml:8: service p/b: services.b.ports: conflicting options: port"
        " publishing and the container type network mode (Docker Engine refuses ports"
        " with network_mode container:web: the namespace is web's, declare the port"
        " there)",
    ),
    (
        "ports-with-host-mode",
        HEAD,
        project('services: {a: {image: x, network_mode: host, ports: ["80:80"]}}'),
        "",
        "lab.yaml:8: service p/a: services.a.ports: ports cannot be published with"
        " network_mode host (Docker publishes ports of a container with its own bridge"
        " network only)",
    ),
    (
        "overlay-driver",
        HEAD,
        project("services: {a: {image: x}}\nnetworks: {n: {driver: overlay}}"),
        "",
        "lab.yaml:9: network p/n: networks.n.driver: driver 'overlay' (a string) is not"
        " modelled (allowed: bridge)",
    ),
    (
        "missing-external",
        HEAD,
        project(
            "services: {a: {image: x, networks: [n]}}\nnetworks: {n: {external: true}}"
        ),
        "",
        "lab.yaml:9: network p/n: network n declared as external, but could not be"
        " found on host-1 (there: bridge)",
    ),
    (
        "static-address-on-pool-network",
        HEAD,
        project(
            "services: {a: {image: x, networks: {default: {ipv4_address: 172.18.0.9}}}}"
        ),
        "",
        "lab.yaml:8: service p/a: networks.default.ipv4_address: user specified IP"
        " address is supported only when connecting to networks with user configured"
        " subnets",
    ),
    (
        "address-outside-subnet",
        HEAD,
        project(
            "services: {a: {image: x, networks: {n: {ipv4_address: 10.9.0.2}}}}\n"
            "networks: {n: {ipam: {config: [{subnet: 10.8.0.0/24}]}}}"
        ),
        "",
        "lab.yaml:8: service p/a: ipv4_address 10.9.0.2 is not a host of network p_n"
        " (10.8.0.0/24)",
    ),
    (
        "duplicate-static-address",
        HEAD,
        project(
            "services:\n"
            "  a: {image: x, networks: {n: {ipv4_address: 10.8.0.5}}}\n"
            "  b: {image: x, networks: {n: {ipv4_address: 10.8.0.5}}}\n"
            "networks: {n: {ipam: {config: [{subnet: 10.8.0.0/24}]}}}"
        ),
        "",
        "lab.yaml:10: service p/b: ipv4_address 10.8.0.5: Address already in use on"
        " network p_n (container p-a-1 has it; Docker Engine refuses to start this"
        " container: `Error response from daemon: Address already in use`)",
    ),
    (
        "static-address-of-replicas",
        HEAD,
        project(
            "services:\n"
            "  a: {image: x, scale: 2, networks: {n: {ipv4_address: 10.8.0.5}}}\n"
            "networks: {n: {ipam: {config: [{subnet: 10.8.0.0/24}]}}}"
        ),
        "",
        "lab.yaml:9: container p-a-2: ipv4_address 10.8.0.5: Address already in use on"
        " network p_n (container p-a-1 has it; Docker Engine refuses to start this"
        " container: `Error response from daemon: Address already in use`)",
    ),
    (
        "static-address-of-the-gateway",
        HEAD,
        project(
            "services: {a: {image: x, networks: {n: {ipv4_address: 10.8.0.1}}}}\n"
            "networks: {n: {ipam: {config: [{subnet: 10.8.0.0/24}]}}}"
        ),
        "",
        "lab.yaml:8: service p/a: ipv4_address 10.8.0.1: Address already in use on"
        " network p_n (its gateway has it; Docker Engine refuses to start this"
        " container: `Error response from daemon: Address already in use`)",
    ),
    (
        "overlapping-subnet",
        HEAD,
        project(
            "services: {a: {image: x}}\nnetworks: {default: {ipam: {config: [{subnet: 172.17.5.0/24}]}}}"
        ),
        "",
        "lab.yaml:9: network p/default: Pool overlaps with other one on this address"
        " space: 172.17.5.0/24 overlaps network bridge (172.17.0.0/16) on host-1",
    ),
    (
        "container-name-with-replicas",
        HEAD,
        project(
            "services: {a: {image: x, container_name: one, deploy: {replicas: 2}}}"
        ),
        "",
        "lab.yaml:8: service p/a: services.a.container_name: container_name names one"
        " container, but the service has 2 replicas (Compose refuses to scale a service"
        " with a container_name)",
    ),
    (
        "duplicate-container-name",
        HEAD,
        project(
            "services: {a: {image: x, container_name: one}, b: {image: x, container_name: one}}"
        ),
        "",
        'lab.yaml:8: service p/b: Conflict. The container name "/one" is already in use'
        " on host-1",
    ),
    (
        "apply-step",
        HEAD,
        project("services: {a: {image: x}}"),
        "",
        "",
    ),
]


@pytest.mark.parametrize(
    ("head", "projects", "extra", "message"),
    [e[1:] for e in ERRORS if e[0] != "apply-step"],
    ids=[e[0] for e in ERRORS if e[0] != "apply-step"],
)
def test_exact_error(head: str, projects: str, extra: str, message: str) -> None:
    got = (
        error(projects, head=head, extra=extra)
        if projects
        else error(head=head, extra=extra)
    )
    assert got.startswith(message) if message.endswith(": ") else got == message


def test_a_kubernetes_step_is_an_error_in_docker() -> None:
    text = (
        HEAD
        + "compose:\n"
        + project("services: {a: {image: x}}")
        + "steps: [{delete: [pod/default/x]}]\n"
    )
    with pytest.raises(TopologyError) as e:
        load_scenario_text(text, "lab.yaml")
    assert str(e.value) == (
        "lab.yaml:9: steps[0].delete: a delete step changes Kubernetes objects;"
        " runtime: docker has none (steps allowed there: probe, send, matrix, replay)"
    )


def test_the_external_network_bridge_is_docker0() -> None:
    rt, _ = load(
        project("""
services: {a: {image: x}}
networks:
  default: {name: bridge, external: true}
""")
    )
    host = rt.hosts["host-1"]
    assert [n.name for n in host.networks] == ["bridge"]
    a = host.container("p-a-1")
    assert a is not None and a.attachments[0].network == "bridge"
    assert str(a.attachments[0].ip) == "172.17.0.2"
    assert a.attachments[0].names == ()


def test_an_ingress_port_mode_warns() -> None:
    _, warnings = load(
        project(
            "services: {a: {image: x, ports: [{target: 80, published: 8080, mode: ingress}]}}"
        )
    )
    assert warnings == [
        "lab.yaml:8: service p/a: services.a.ports[0].mode: mode ingress is not"
        " modelled (published as host)"
    ]


def test_ports_on_internal_networks_only_are_not_published_and_warn() -> None:
    rt, warnings = load(
        project(
            'services: {a: {image: x, ports: ["8080:80"], networks: [n]}}\n'
            "networks: {n: {internal: true}}"
        )
    )
    (a,) = rt.hosts["host-1"].containers
    assert (a.gateway, a.ports) == ("p_n", ())
    assert warnings == [
        "lab.yaml:8: service p/a: ports are not published: every network of the"
        " service is internal (libnetwork programs no external connectivity there)"
    ]
