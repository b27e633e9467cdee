"""The views of a trace and of a run: summary, text fitted to the width, wide, --hide,
shortened MACs, -o and its deprecated aliases, step names, the grand total."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dataplane import commands
from dataplane.cli import app
from dataplane.packet import Ether, Packet
from dataplane.sim import Simulator
from dataplane.trace import Hop, Trace
from dataplane.trace_view import mac_names, summary_step_of, summary_steps
from tests.io.helpers import SCENARIOS

VXLAN = SCENARIOS / "cross-node-vxlan.yaml"
PROBE = ("trace", str(VXLAN), "--from", "default/a", "--to", "default/c", "--port", "80")  # fmt: skip
commands.load()

# The reference walk (DESIGN.md): the SYN from a on node-1 to c on node-2 and its SYN-ACK.
SUMMARY = [
    "TCP default/a -> default/c:80   vxlan",
    " 1 node-1 pod default/a    eth0                 route 10.0.2.2 via 10.0.1.1 dev eth0 (default route); arp 10.0.1.1 is-at 0a:..:01:01",
    " 2 node-1 host             veth71273818 > cbr0  dst MAC is cbr0's own -> up to IP",
    " 3 node-1 host             ip                   ct NEW; route 10.0.2.2 via 10.0.2.0 dev flannel.1 onlink (10.0.2.0/24); ip.ttl: 64 -> 63; FORWARD netpol: default/a not isolated for egress -> accept",
    " 4 node-1 host             flannel.1 > eth0     VXLAN vni 1, 10.100.0.2 -> 10.100.0.3 udp/8472; route 10.100.0.3 dev eth0 (10.100.0.0/24, on-link); ct NEW; arp 10.100.0.3 is-at 0a:..:00:03",
    " 5 node-2 host             eth0 > flannel.1     ct NEW; udp/8472 vni 1 from 10.100.0.2 -> inner frame on flannel.1",
    " 6 node-2 host             ip                   ct NEW; route 10.0.2.2 dev cbr0 (10.0.2.0/24, on-link); ip.ttl: 63 -> 62; FORWARD netpol: default/c not isolated for ingress -> accept; arp 10.0.2.2 is-at 0a:..:02:02",
    " 7 node-2 host             cbr0                 fdb 0a:58:0a:00:02:02 -> port vethaee2a0d5",
    " 8 node-2 pod default/c    eth0                 socket tcp/80 (container web) -> SYN-ACK",
    " 9 node-2 pod default/c ←  eth0                 route 10.0.1.3 via 10.0.2.1 dev eth0 (default route)",
    "10 node-2 host ←           vethaee2a0d5 > cbr0  dst MAC is cbr0's own -> up to IP",
    "11 node-2 host ←           ip                   ct ESTABLISHED; route 10.0.1.3 via 10.0.1.0 dev flannel.1 onlink (10.0.1.0/24); ip.ttl: 64 -> 63; FORWARD netpol: ESTABLISHED (reply direction): a packet of an admitted connection is not filtered -> accept",
    "12 node-2 host ←           flannel.1 > eth0     VXLAN vni 1, 10.100.0.3 -> 10.100.0.2 udp/8472; route 10.100.0.2 dev eth0 (10.100.0.0/24, on-link); ct NEW",
    "13 node-1 host ←           eth0 > flannel.1     ct NEW; udp/8472 vni 1 from 10.100.0.3 -> inner frame on flannel.1",
    "14 node-1 host ←           ip                   ct ESTABLISHED; route 10.0.1.3 dev cbr0 (10.0.1.0/24, on-link); ip.ttl: 63 -> 62; FORWARD netpol: ESTABLISHED (reply direction): a packet of an admitted connection is not filtered -> accept",
    "15 node-1 host ←           cbr0                 fdb 0a:58:0a:00:01:03 -> port veth71273818",
    "16 node-1 pod default/a ←  eth0                 SA from 10.0.2.2:80: reply returned, connection open",
    "assumed: every walk starts with empty neighbour caches, bridge FDBs and conntrack tables",
    "verdict: delivered — SA from 10.0.2.2:80: reply returned, connection open (67 hops)",
]


def cli(*args: str, columns: int = 300) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    return r.exit_code, r.stdout, r.stderr


def reference() -> Trace:
    return Simulator.from_file(VXLAN).probe("default/a", "default/c", port=80)


def test_the_summary_of_the_reference_walk() -> None:
    code, out, _ = cli(*PROBE, "-o", "summary")
    assert code == 0
    assert out.splitlines() == SUMMARY
    steps = [line for line in out.splitlines() if line[:2].strip().isdigit()]
    assert len(steps) <= 20  # the SYN and its SYN-ACK, 67 hops


def test_every_hop_has_a_stable_summary_step() -> None:
    trace = reference()
    step_of = summary_step_of(trace)
    assert sorted(step_of) == [h.seq for h in trace.hops]
    # In walk order, each line's hops together, numbered from 1 without gaps.
    numbers = [step_of[h.seq] for h in trace.hops if h.event != "arp"]
    assert numbers == sorted(numbers) and set(step_of.values()) == set(range(1, 17))
    by_event = {(h.node, h.event, h.direction): step_of[h.seq] for h in trace.hops}
    assert by_event[("node-1", "encap", "request")] == 4
    assert by_event[("node-2", "deliver", "request")] == 8
    assert by_event[("node-1", "deliver", "reply")] == 16
    # ARP folds into the line that waited for it, wherever its hops happened.
    fwd = next(h.seq for h in trace.hops if h.node == "node-2" and h.event == "FORWARD")
    arp = [h for h in trace.hops if h.event == "arp" and fwd < h.seq < fwd + 10]
    assert len(arp) == 3 and {h.device for h in arp} == {"cbr0", "eth0"}  # node, pod
    assert {step_of[h.seq] for h in arp} == {6}
    assert [s.number for s in summary_steps(trace)] == list(range(1, 17))


def test_hide_removes_what_it_names_and_keeps_the_numbers() -> None:
    code, out, _ = cli(*PROBE, "-o", "summary", "--hide", "arp,conntrack", "--hide", "hook")  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == (
        " 1 node-1 pod default/a    eth0                 route 10.0.2.2 via 10.0.1.1 "
        "dev eth0 (default route)"
    )
    assert lines[16].startswith("16 node-1 pod default/a ←")
    assert not any(" arp " in x or "ct NEW" in x or "FORWARD" in x for x in lines)
    code, out, _ = cli(*PROBE, "--hide", "arp")
    assert code == 0 and " arp " not in out and "who-has" not in out
    assert "conntrack" in out and "10.0.2.2 via 10.0.1.1" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--hide", "arps"),
            "--hide 'arps' is not a kind of hop (allowed: arp, conntrack, fdb, hook, route, nat, forward, xmit, recv, encap, decap)",
        ),
        (
            ("--hide", "arp", "-o", "minimal"),
            "--hide does not apply to -o minimal (it applies to text, wide, summary)",
        ),
        (
            ("-o", "table"),
            "-o 'table' is not allowed for `dataplane trace` (allowed: text, wide, summary, minimal, json, yaml, html)",
        ),
        (
            ("-o", "json", "--format", "minimal"),
            "-o json and --format minimal disagree: give one of them",
        ),
    ],
    ids=["unknown-kind", "minimal", "unknown-output", "disagree"],
)
def test_bad_view_options_are_input_errors(args: tuple[str, ...], message: str) -> None:
    code, _, err = cli(*PROBE, *args)
    assert code == 2
    assert err.strip() == f"error: {message}"


@pytest.mark.parametrize("columns", [80, 40])
@pytest.mark.parametrize("view", ["text", "summary"])
def test_narrow_output_fits_the_width(view: str, columns: int) -> None:
    code, out, _ = cli(*PROBE, "-o", view, columns=columns)
    assert code == 0
    lines = out.splitlines()
    assert max(len(x) for x in lines) <= columns
    if view == "text":  # a list: one block per hop, its number first
        heads = [x for x in lines if re.match(r" ?\d+ node-\d ", x)]
        assert len(heads) == 67 and heads[0].startswith(" 1 node-1 pod default/a route")
        assert "┃" not in out and "│" not in out
    else:
        assert lines[1].split() == ["1", "node-1", "pod", "default/a", "eth0"]


def test_a_wide_terminal_gets_the_table() -> None:
    code, out, _ = cli(*PROBE, columns=160)
    assert code == 0
    lines = out.splitlines()
    assert max(len(x) for x in lines) <= 160
    assert lines[1].split() == ["#", "where", "device", "event", "detail", "packet"]


def test_wide_cuts_nothing() -> None:
    code, out, _ = cli(*PROBE, "-o", "wide", columns=40)
    assert code == 0
    trace = reference()
    names = mac_names(trace)
    lines = out.splitlines()
    assert len(lines) == 1 + 1 + 67 + 2
    encap = next(x for x in lines if " encap " in x)
    from dataplane.trace_view import packet_text

    hop = next(h for h in trace.hops if h.event == "encap")
    assert encap.endswith(packet_text(hop.packet, names)) and hop.detail in encap


def test_deprecated_format_and_json_still_work() -> None:
    assert cli(*PROBE, "--format", "detailed") == cli(*PROBE, "-o", "text")
    assert cli(*PROBE, "--format", "minimal") == cli(*PROBE, "-o", "minimal")
    assert cli(*PROBE, "--format", "json") == cli(*PROBE, "-o", "json")
    run = ("run", str(SCENARIOS / "ttl-lesson.yaml"))
    assert cli(*run, "--json") == cli(*run, "-o", "json")


def test_distinct_macs_never_print_alike() -> None:
    trace = reference()
    names = mac_names(trace)
    assert len(set(names.values())) == len(names)
    # flannel.1 of node-1 and of node-2: the inner frame's two MACs
    assert names["0a:58:0a:00:01:00"] == "0a:..:01:00"
    assert names["0a:58:0a:00:02:00"] == "0a:..:02:00"
    assert names["ff:ff:ff:ff:ff:ff"] == "ff:..:ff"
    _, out, _ = cli(*PROBE, "-o", "wide")
    assert "Ether 0a:..:01:00 > 0a:..:02:00" in out  # the inner frame node-1 -> node-2


def test_a_mac_is_shortened_only_as_far_as_it_stays_unique() -> None:
    macs = ["0a:58:0a:00:01:03", "0a:58:0a:00:02:03", "02:11:22:33:44:03", "0a:58:0a:00:02:09"]  # fmt: skip
    trace = Trace("t", [Hop(i, "n", "host", "eth0", "xmit", "", Packet(eth=Ether(m, m)))
                        for i, m in enumerate(macs, 1)])  # fmt: skip
    assert mac_names(trace) == {
        "0a:58:0a:00:01:03": "0a:..:01:03",
        "0a:58:0a:00:02:03": "0a:..:02:03",
        "02:11:22:33:44:03": "02:..:03",  # its first byte tells it apart
        "0a:58:0a:00:02:09": "0a:..:09",
    }


def test_trace_json_and_yaml_are_one_versioned_document() -> None:
    code, out, _ = cli(*PROBE, "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["schema_version"], doc["type"]) == (1, "trace")
    assert doc["trace"]["hops"][0]["seq"] == 1
    summary = doc["trace"]["summary"]
    assert [s["step"] for s in summary] == list(range(1, 17))
    assert summary[7]["devices"] == ["eth0"] and summary[7]["netns"] == "pod default/c"
    assert sum(len(s["hops"]) for s in summary) == 67
    _, text, _ = cli(*PROBE, "-o", "yaml")
    assert yaml.safe_load(text) == doc


def test_run_yaml_is_the_json_records_as_a_stream() -> None:
    run = ("run", str(SCENARIOS / "ttl-lesson.yaml"))
    _, as_json, _ = cli(*run, "-o", "json")
    _, as_yaml, _ = cli(*run, "-o", "yaml")
    records = [json.loads(x) for x in as_json.splitlines()]
    assert list(yaml.safe_load_all(as_yaml)) == records
    assert {r["schema_version"] for r in records} == {1}


def test_send_steps_show_the_source_the_kernel_chose() -> None:
    _, out, _ = cli("run", str(SCENARIOS / "ttl-lesson.yaml"), "-o", "minimal")
    assert "0.0.0.0" not in out
    assert "-- step 2 send: send at default/a: IP 10.0.1.3 > 10.0.2.2 ttl 1 len 28 / ICMP echo-request" in out.splitlines()  # fmt: skip


STEPS = """\
name: {name}
manifests:
  - {{kind: Pod, apiVersion: v1, metadata: {{name: a}}, spec: {{nodeName: node-1, containers: [{{name: c, image: x}}]}}}}
  - {{kind: Pod, apiVersion: v1, metadata: {{name: c}}, spec: {{nodeName: node-2, containers: [{{name: web, image: x, ports: [{{containerPort: 80}}]}}]}}}}
steps:
  - name: web answers
    probe: {{from: default/a, to: default/c, port: 80, expect: delivered}}
  - probe: {{from: default/a, to: default/c, port: 81, expect: {expect}}}
"""


def test_run_names_steps_and_totals_several_files(tmp_path: Path) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(STEPS.format(name="one", expect="refused"))
    two.write_text(STEPS.format(name="two", expect="delivered"))
    code, out, _ = cli("run", "-q", str(one), str(two))
    assert code == 1
    lines = out.splitlines()
    assert (
        " ok   1 web answers: probe default/a -> default/c:80 TCP → delivered" in lines
    )
    assert lines[-1] == "total over 2 files: 3 passed, 1 failed, 0 without expectations"
    code, out, _ = cli("run", str(one), str(two), "-o", "json")
    last = json.loads(out.splitlines()[-1])
    assert last == {"schema_version": 1, "type": "total", "files": 2, "passed": 3,
                    "failed": 1, "unchecked": 0, "errors": 0, "ok": False}  # fmt: skip
    step = json.loads(out.splitlines()[0])["step"]
    assert step["name"] == "web answers"
    _, single, _ = cli("run", "-q", str(one))
    assert "total over" not in single


def test_test_names_steps_in_its_lines(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(STEPS.format(name="one", expect="refused"))
    code, out, _ = cli("test", str(tmp_path))
    assert code == 0
    assert f"ok   {tmp_path}/one.yaml:6 web answers: probe default/a -> default/c:80 TCP → delivered" in out.splitlines()  # fmt: skip


def test_the_udp_probe_to_port_53_is_a_dns_query() -> None:
    from scapy.layers.dns import DNS
    from scapy.layers.inet import IP

    from dataplane.packet import to_bytes

    sim = Simulator.from_file(SCENARIOS / "dns-names.yaml")
    trace = sim.probe("default/tool", "kube-system/coredns-0", 53, "UDP")
    sent = trace.hops[0].packet
    assert sent is not None
    dns = IP(to_bytes(sent))[DNS]  # what Wireshark decodes: a well-formed query
    assert (dns.qr, dns.qd[0].qname, dns.qd[0].qtype) == (0, b"probe.", 1)
    assert trace.verdict is not None and trace.verdict.value == "delivered"


@pytest.mark.parametrize("view", ["text", "summary"])
def test_run_fits_80_columns_but_never_breaks_a_result_line(view: str) -> None:
    code, out, _ = cli("run", str(SCENARIOS / "networkpolicy-lab.yaml"), "-o", view, columns=80)  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    results = [x for x in lines if x.startswith((" ok ", "FAIL", "  · "))]
    probes = [x for x in results if ": probe " in x]
    assert len(results) == 15 and probes and all("→" in x for x in probes)  # one line
    assert [x for x in lines if len(x) > 80 and x not in results] == []


NAMED_PORT = """\
name: named port
cluster: {dns: false}
manifests:
  - {kind: Pod, apiVersion: v1, metadata: {name: a}, spec: {nodeName: node-1, containers: [{name: c, image: x}]}}
  - {kind: Pod, apiVersion: v1, metadata: {name: c}, spec: {nodeName: node-2, containers: [{name: web, image: x, ports: [{name: web, containerPort: 8080}]}]}}
steps:
  - matrix: {port: web, expect: {allowed: [default/a -> default/c, default/c -> default/c]}}
"""


def test_a_matrix_step_with_a_named_port_some_pods_lack(tmp_path: Path) -> None:
    f = tmp_path / "named.yaml"
    f.write_text(NAMED_PORT)
    code, out, err = cli("run", str(f), "--html", str(tmp_path / "html"))
    assert code == 0, err
    assert "1 default/a  - ." in out.splitlines()
    assert "- no port named 'web' on that pod" in out.splitlines()
    assert (tmp_path / "html" / "named.html").exists()
