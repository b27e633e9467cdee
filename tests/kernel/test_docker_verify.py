"""`verify` on `runtime: docker`, the parts the user adds to what Docker Engine makes:
the `dockerUser` rules inserted into the Engine's DOCKER-USER chain, and probes by
DNS name answered by the Engine's embedded DNS (127.0.0.11), compared by answer set.

As tests/kernel/test_docker_engine.py: CI installs docker.io and busybox-static, so a
missing Engine fails there; elsewhere these tests skip, saying why."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.kernel.report import AGREE, Report
from dataplane.kernel.verify import Verifier
from tests.kernel.test_docker_engine import gone
from topology.loader import load_scenario, load_scenario_text
from topology.scenario import Verdict

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module", autouse=True)
def engine(docker_engine_here: None) -> None:
    """Every test here runs real dockerds."""


def agreed(report: Report) -> None:
    assert [r.status for r in report.rows] == [AGREE] * len(report.rows), [
        (r.title, r.sim, r.kernel.verdict, r.kernel.detail, r.differs())
        for r in report.rows
    ]


def test_the_docker_user_rules_agree_with_the_engines_chain() -> None:
    scenario, _ = load_scenario(ROOT / "scenarios/docker/docker-user.yaml")
    v = Verifier(scenario)
    report = v.run()
    assert [r.sim for r in report.rows] == [
        Verdict.DELIVERED,  # a published port, the reply accepted by rule 1
        Verdict.DENIED,  # --ctorigdstport 9000 -j DROP
        Verdict.DELIVERED,  # RETURN to Docker's chains
        Verdict.REFUSED,  # REJECT: port-unreachable
        Verdict.DELIVERED,  # out, masqueraded
    ]
    agreed(report)
    saw = {
        r.title: p.kernel
        for r in report.rows
        for p in r.parts
        if p.name == "server saw"
    }
    assert saw["external/office -> node/host-1:9000 TCP"] == "198.51.100.20"
    assert saw["container/shop-web-1 -> external/laptop:443 TCP"] == "10.100.0.2"
    gone(v.live.run_id)


def test_names_are_looked_up_in_the_engines_embedded_dns() -> None:
    """Each probe by name asks 127.0.0.11 from the container's namespace, as its
    resolv.conf says; the answer is compared as a set (the part `DNS answer`)."""
    scenario, _ = load_scenario(ROOT / "scenarios/docker/user-network-dns.yaml")
    v = Verifier(scenario)
    report = v.run()
    agreed(report)
    answers = {
        r.title: (p.sim, p.kernel)
        for r in report.rows
        for p in r.parts
        if p.name == "DNS answer"
    }
    assert answers == {
        # both replicas, whatever order the Engine shuffled them in
        "container/shop-web-1 -> api:5000 TCP": (
            "10.20.0.3, 10.20.0.4",
            "10.20.0.3, 10.20.0.4",
        ),
        "container/shop-web-1 -> cache:6379 TCP": ("10.20.0.10", "10.20.0.10"),
        "container/shop-web-1 -> shop-api-2:5000 TCP": ("10.20.0.4", "10.20.0.4"),
        "container/shop-web-1 -> payments:80 TCP": ("none", "none"),
        "container/shop-admin-1 -> api:5000 TCP": ("none", "none"),
    }
    gone(v.live.run_id)


PROXY = """
name: behind docker-proxy
cluster:
  runtime: docker
  nodes: [{name: host-1, ip: 10.100.0.2}]
compose:
  - node: host-1
    project: site
    services:
      web: {image: nginx, network_mode: bridge, ports: ["8080:80"]}
      api: {image: api, ports: ["127.0.0.1:9090:5000"]}
steps:
  - probe: {from: node/host-1, to: localhost, port: 8080}
  - probe: {from: node/host-1, to: 127.0.0.1, port: 8080}
  - probe: {from: node/host-1, to: localhost, port: 9090}
  - probe: {from: node/host-1, to: node/host-1, port: 8080}
"""


def test_the_source_behind_docker_proxy_is_compared() -> None:
    """docker-proxy's own connection to the container comes from the bridge's address,
    with a port of its own: the server's record is the one no client made."""
    v = Verifier(load_scenario_text(PROXY, "proxy.yaml")[0])
    report = v.run()
    agreed(report)
    saw = [
        next((p.sim, p.kernel) for p in r.parts if p.name == "server saw")
        for r in report.rows
    ]
    assert saw == [
        ("172.17.0.1", "172.17.0.1"),  # docker0's address
        ("172.17.0.1", "172.17.0.1"),
        ("172.18.0.1", "172.18.0.1"),  # site_default's
        ("10.100.0.2", "10.100.0.2"),  # nat OUTPUT DNAT: the host's own address
    ]
    gone(v.live.run_id)
