"""A Docker host's DOCKER-USER rules (`cluster.nodes[].dockerUser`): parsed strictly
(topology/dockeruser.py) and walked first in filter FORWARD (dataplane/docker_user.py)."""

from __future__ import annotations

import pytest

from dataplane.sim import Simulator
from dataplane.trace import DropReason, Trace
from topology.dockeruser import parse_rule
from topology.errors import TopologyError
from topology.loader import load_scenario_text
from topology.scenario import Verdict

TEXT = """name: t
cluster:
  runtime: docker
  nodes:
    - name: host-1
      ip: 10.100.0.2
      dockerUser: {rules}
  externals:
    - {{name: laptop, ip: 192.0.2.10, ports: [{{port: 443}}, {{port: 25}}]}}
    - {{name: office, ip: 198.51.100.20}}
compose:
  - node: host-1
    project: shop
    services:
      web: {{image: x, ports: ["8080:80"], networks: [front]}}
      db: {{image: x, expose: ["5432"], networks: [back]}}
    networks:
      front: {{}}
      back: {{}}
steps: [{{probe: {{from: external/laptop, to: node/host-1, port: 8080}}}}]
"""
WEB, DB = "container/shop-web-1", "container/shop-db-1"


def sim(*rules: str) -> Simulator:
    listed = "[" + ", ".join(f"'{r}'" for r in rules) + "]"
    scenario, _ = load_scenario_text(TEXT.format(rules=listed), "lab.yaml")
    return Simulator(scenario.cluster)


def forward_details(t: Trace) -> list[str]:
    return [h.detail for h in t.hops if h.event == "FORWARD"]


def test_a_drop_rule_denies_naming_the_chain_and_rule() -> None:
    rule = "-i eth0 ! -s 198.51.100.0/24 -j DROP"
    s = sim(rule)
    t = s.probe("external/laptop", "node/host-1", 8080)
    assert t.verdict is Verdict.DENIED
    assert t.reason is DropReason.FILTER
    assert t.policy == f"DOCKER-USER {rule}"
    assert f"denied by filter FORWARD -j DOCKER-USER; DOCKER-USER {rule} (rule 1)" in (
        t.explanation
    )
    # the office is not matched by the negated source: Docker's own rules publish
    office = s.probe("external/office", "node/host-1", 8080)
    assert office.verdict is Verdict.DELIVERED
    assert forward_details(office)[0].startswith(
        "docker-filter: filter FORWARD -j DOCKER-USER: no rule of 1 matches (-j RETURN);"
        " filter FORWARD -o br-"
    )


def test_the_rules_see_replies_unless_established_is_accepted_first() -> None:
    drop_in = "-i eth0 -j DROP"
    t = sim(drop_in).probe(WEB, "external/laptop", 443)
    assert t.verdict is Verdict.DENIED  # the SYN-ACK from eth0 is dropped
    assert t.policy == f"DOCKER-USER {drop_in}"
    drop = next(h for h in t.hops if h.event == "FORWARD" and "denied" in h.detail)
    assert drop.direction == "reply"
    ok = sim("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", drop_in)
    assert ok.probe(WEB, "external/laptop", 443).verdict is Verdict.DELIVERED


def test_accept_ends_forward_before_dockers_isolation() -> None:
    assert sim().probe(WEB, DB, 5432).verdict is Verdict.DENIED  # isolation
    s = sim("-s 172.18.0.0/16 -d 172.19.0.0/16 -p tcp --dport 5432 -j ACCEPT")
    t = s.probe(WEB, DB, 5432)
    # the SYN is through; the SYN-ACK meets Docker's isolation on its way back
    assert t.verdict is Verdict.DENIED
    assert t.policy is not None and t.policy.startswith(
        "DOCKER-ISOLATION-STAGE-2 -o br-"
    )
    drop = next(h for h in t.hops if h.event == "FORWARD" and "denied" in h.detail)
    assert drop.direction == "reply"
    both = sim(
        "-m conntrack --ctstate ESTABLISHED -j ACCEPT",
        "-s 172.18.0.0/16 -d 172.19.0.0/16 -p tcp --dport 5432 -j ACCEPT",
    )
    t = both.probe(WEB, DB, 5432)
    assert t.verdict is Verdict.DELIVERED
    assert any(
        "DOCKER-USER -s 172.18.0.0/16 -d 172.19.0.0/16 -p tcp --dport 5432 -j ACCEPT"
        " (rule 2): accepted before Docker's own chains" in d
        for d in forward_details(t)
    )


def test_return_goes_on_to_dockers_rules() -> None:
    s = sim("-i eth0 -s 192.0.2.10 -j RETURN", "-i eth0 -j DROP")
    t = s.probe("external/laptop", "node/host-1", 8080)
    assert t.verdict is Verdict.DELIVERED
    assert forward_details(t)[0].startswith(
        "docker-filter: filter FORWARD -j DOCKER-USER; DOCKER-USER -i eth0 -s"
        " 192.0.2.10 -j RETURN (rule 1): back to FORWARD; filter FORWARD -o br-"
    )
    assert s.probe("external/office", "node/host-1", 8080).verdict is Verdict.DENIED


def test_the_original_destination_port_before_dnat() -> None:
    # after DNAT the packet is for 172.18.0.2:80; --dport 8080 no longer matches it
    assert (
        sim("-p tcp --dport 8080 -j DROP")
        .probe("external/laptop", "node/host-1", 8080)
        .verdict
        is Verdict.DELIVERED
    )
    by_orig = sim("-m conntrack --ctorigdstport 8080 --ctstate NEW -j DROP")
    t = by_orig.probe("external/laptop", "node/host-1", 8080)
    assert t.verdict is Verdict.DENIED
    assert (
        sim("-p tcp --dport 80 -m conntrack --ctorigdst 10.100.0.2 -j DROP")
        .probe("external/laptop", "node/host-1", 8080)
        .verdict
        is Verdict.DENIED
    )


def test_reject_answers_the_sender() -> None:
    rule = "-o eth0 -p tcp --dport 25 -j REJECT --reject-with icmp-host-unreachable"
    t = sim(rule).probe(WEB, "external/laptop", 25)
    assert t.verdict is Verdict.UNREACHABLE
    assert t.policy == f"DOCKER-USER {rule}"
    assert forward_details(t) == [
        f"docker-filter: denied by filter FORWARD -j DOCKER-USER; DOCKER-USER {rule}"
        " (rule 1): answered with ICMP type 3 code 1"
    ]
    assert t.explanation == (
        "ICMP host-unreachable from 172.18.0.1: the socket gets EHOSTUNREACH"
    )
    assert sim(rule).probe(WEB, "external/laptop", 443).verdict is Verdict.DELIVERED


def test_interface_wildcards_iprange_and_negated_protocol() -> None:
    rule = "-i br-+ -m iprange --dst-range 192.0.2.1-192.0.2.20 ! -p icmp -j DROP"
    s = sim(rule)
    assert s.probe(WEB, "external/laptop", 443).verdict is Verdict.DENIED
    assert s.probe(WEB, "external/laptop", protocol="ICMP").verdict is Verdict.DELIVERED
    # the web server's answer to the laptop leaves a br- bridge too
    t = s.probe("external/laptop", "node/host-1", 8080)
    assert (t.verdict, t.policy) == (Verdict.DENIED, f"DOCKER-USER {rule}")
    new_only = sim(
        "-i br-+ -m iprange --dst-range 192.0.2.1-192.0.2.20 ! -p icmp -m conntrack"
        " --ctstate NEW -j DROP"
    )
    t = new_only.probe("external/laptop", "node/host-1", 8080)
    assert t.verdict is Verdict.DELIVERED
    t = sim("! -i br-+ -j DROP").probe("external/laptop", "node/host-1", 8080)
    assert (t.verdict, t.policy) == (Verdict.DENIED, "DOCKER-USER ! -i br-+ -j DROP")
    assert sim("! -i br-+ -j DROP").probe(WEB, "external/laptop", 443).verdict is (
        Verdict.DENIED  # its reply comes in on eth0
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "-j LOG",
            "'LOG': not a modelled target (allowed: ACCEPT, DROP, RETURN, REJECT)",
        ),
        (
            "-A DOCKER-USER -j DROP",
            "'-A': write the rule's matches and target only: the list is the DOCKER-USER"
            " chain in order",
        ),
        (
            "--dport 80 -j DROP",
            "'--dport': --dport needs tcp or udp (-p tcp|udp) before it",
        ),
        (
            "-p tcp --ctstate NEW -j DROP",
            "'--ctstate': --ctstate needs conntrack (-m conntrack) before it",
        ),
        (
            "-m state --state NEW -j DROP",
            "'state': not a modelled match module (allowed: tcp, udp, conntrack, iprange)",
        ),
        (
            "-s db.example -j DROP",
            "'db.example': not an IPv4 address or network (allowed: ADDR or ADDR/MASK; no"
            " host names)",
        ),
        (
            "-p sctp -j DROP",
            "'sctp': not a modelled protocol (allowed: tcp, udp, icmp)",
        ),
        (
            "-p udp --dport 70000 -j DROP",
            "'70000': port out of range (allowed: 0-65535)",
        ),
        (
            "-m conntrack --ctstate NEW,DNAT -j ACCEPT",
            "'DNAT': not a conntrack state (allowed: NEW, ESTABLISHED, RELATED, INVALID,"
            " UNTRACKED)",
        ),
        (
            "-s 10.0.0.0/8 -s 10.1.0.0/16 -j DROP",
            "'-s': -s written twice (iptables: multiple flags not allowed)",
        ),
        ("! -j DROP", "'!': -j cannot be negated"),
        ("-i eth0", "'-i eth0': no target: give -j ACCEPT, DROP, RETURN or REJECT"),
        (
            "-j DROP --reject-with tcp-reset",
            "'--reject-with': --reject-with needs the"
            " target REJECT (-j REJECT) before it",
        ),
        ("-s", "'-s': -s needs a value"),
        (
            "-s '10.0.0.1 -j DROP",
            '"-s \'10.0.0.1 -j DROP": cannot split it into words'
            " (No closing quotation)",
        ),
        (
            "-p tcp --syn -j DROP",
            "'--syn': not in the modelled subset (allowed: [!] -s/-d",
        ),
    ],
)
def test_a_rule_outside_the_subset_is_an_error_naming_rule_and_token(
    rule: str, message: str
) -> None:
    rules = ["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", rule]
    listed = "[" + ", ".join(repr(r) for r in rules) + "]"
    with pytest.raises(TopologyError) as e:
        load_scenario_text(TEXT.format(rules=listed), "lab.yaml")
    assert str(e.value).startswith(
        f"lab.yaml:7: cluster.nodes[0].dockerUser[1]: DOCKER-USER rule {rule!r}: {message}"
    )


def test_docker_user_needs_runtime_docker() -> None:
    text = TEXT.format(rules="['-j DROP']").replace(
        "runtime: docker", "runtime: kubernetes"
    )
    with pytest.raises(TopologyError) as e:
        load_scenario_text(text, "lab.yaml")
    assert str(e.value) == (
        "lab.yaml:7: cluster.nodes[0].dockerUser: dockerUser needs runtime: docker"
        " (cluster.runtime; a Kubernetes node's filter rules come from kube-proxy and the"
        " CNI)"
    )


def test_the_tokens_are_what_iptables_is_given() -> None:
    rule = parse_rule("-i eth0 ! -s '198.51.100.0/24' -j DROP")
    assert rule.tokens == ["-i", "eth0", "!", "-s", "198.51.100.0/24", "-j", "DROP"]


def test_docker_proxys_connections_do_not_cross_docker_user() -> None:
    """In Linux a connection docker-proxy carries is local to the host (INPUT, then the
    proxy's own from OUTPUT): the DOCKER-USER rules of FORWARD never see it."""
    text = TEXT.replace(
        'web: {{image: x, ports: ["8080:80"], networks: [front]}}',
        'web: {{image: x, ports: ["8080:80"], networks: [front]}}\n'
        "      client: {{image: x, networks: [front]}}",
    )
    scenario, _ = load_scenario_text(
        text.format(rules="['-i br-+ -o br-+ -j DROP']"), "lab.yaml"
    )
    s = Simulator(scenario.cluster)
    t = s.probe("container/shop-client-1", "node/host-1", 8080)  # hairpin: the proxy
    assert t.verdict is Verdict.DELIVERED
    assert not any("DOCKER-USER" in d for d in forward_details(t))
    # the same rule drops the two containers' direct connection
    direct = s.probe("container/shop-client-1", WEB, 80)
    assert (direct.verdict, direct.policy) == (
        Verdict.DENIED,
        "DOCKER-USER -i br-+ -o br-+ -j DROP",
    )
