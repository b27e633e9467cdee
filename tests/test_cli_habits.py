"""kubectl habits on the command line: `-n` and bare names, `--version`, folders, `--at-step`
on every command that simulates, checked ports, and `explain`'s answer and exit status."""

from __future__ import annotations

import shutil
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataplane import commands
from dataplane.cli import app
from dataplane.sim import Simulator
from topology.errors import TopologyError
from topology.loader import load_scenario

ROOT = Path(__file__).resolve().parent.parent
LAB = str(ROOT / "scenarios" / "networkpolicy-lab.yaml")
DNS_LESSON = str(ROOT / "scenarios" / "egress-dns-lesson.yaml")
commands.load()


def invoke(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def one_line(out: str) -> str:
    """The output with rich's wrapping undone (error lines wrap at the terminal width)."""
    return " ".join(out.split())


def minimal(*args: str) -> tuple[int, list[str]]:
    code, out = invoke("trace", LAB, *args, "--format", "minimal")
    return code, out.splitlines()


# -- --version ---------------------------------------------------------------------------


def test_version_prints_the_installed_version() -> None:
    code, out = invoke("--version")
    assert code == 0
    assert out == f"dataplane {version('dataplane')}\n"


# -- -n/--namespace and bare names -------------------------------------------------------


def test_a_bare_source_is_the_pod_of_the_namespace() -> None:
    code, bare = minimal("--from", "pod1", "--to", "httpd-deployment-0", "-p", "80")
    assert code == 0, bare
    _, full = minimal(
        "--from", "default/pod1", "--to", "default/httpd-deployment-0", "-p", "80"
    )
    assert bare == full  # the same walk, titled with the full names
    assert bare[0].startswith("# TCP default/pod1 -> default/httpd-deployment-0:80")
    assert bare[1].startswith("1 node-2 pod:default/pod1 route:")
    assert bare[-1] == "verdict denied-ingress"


def test_the_namespace_option_names_the_pods_namespace() -> None:
    code, lines = minimal(
        "--from",
        "devpod",
        "-n",
        "dev",
        "--to",
        "default/httpd-deployment-0",
        "-p",
        "80",
    )
    assert code == 0, lines
    assert lines[0].startswith("# TCP dev/devpod -> default/httpd-deployment-0:80")
    assert lines[-1] == "verdict delivered"
    same = minimal(
        "--from", "devpod", "--namespace", "dev", "--to", "default/httpd-deployment-0",
        "-p", "80",
    )  # fmt: skip
    assert same == (code, lines)


def test_pod_and_svc_forms_take_the_namespace() -> None:
    code, lines = minimal("--from", "pod/pod1", "--to", "svc/httpd", "-p", "80")
    assert code == 0, lines
    assert lines[0].startswith("# TCP default/pod1 -> svc/default/httpd:80")


def test_a_bare_service_name_is_looked_up_from_the_source_pod() -> None:
    code, lines = minimal("--from", "frontend", "--to", "httpd", "-p", "80")
    assert code == 0, lines
    assert lines[0].startswith("# TCP default/frontend -> httpd:80")
    assert any(
        "dns: DNS answer httpd.default.svc.cluster.local. A 10.96.0.2" in line
        for line in lines
    )
    assert lines[-1] == "verdict delivered"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--from", "pod1", "--to", "httpd-deploymnt-0"],
            "error: endpoint 'httpd-deploymnt-0': no pod 'httpd-deploymnt-0' in "
            "namespace 'default', and kube-dns answers none of "
            "httpd-deploymnt-0.default.svc.cluster.local., "
            "httpd-deploymnt-0.svc.cluster.local., httpd-deploymnt-0.cluster.local., "
            "httpd-deploymnt-0. (the search list of default/pod1); did you mean "
            "default/httpd-deployment-0 or default/httpd-deployment-1?",
        ),
        (
            ["--from", "pod2", "--to", "frontend"],
            "error: endpoint 'pod2': no pod 'pod2' in namespace 'default', and a DNS "
            "name cannot send; did you mean default/pod1 or dev/devpod?",
        ),
        (
            ["--from", "devpod", "-n", "dev", "--to", "httpd"],
            "error: endpoint 'httpd': no pod 'httpd' in namespace 'dev', and kube-dns "
            "answers none of httpd.dev.svc.cluster.local., httpd.svc.cluster.local., "
            "httpd.cluster.local., httpd. (the search list of dev/devpod); did you mean "
            "svc/default/httpd?",
        ),
        (
            ["--from", "node/node-1", "--to", "httpd-0"],
            "error: endpoint 'httpd-0': no pod 'httpd-0' in namespace 'default', and "
            "node/node-1 does not resolve names through kube-dns (only pods on the pod "
            "network do); did you mean svc/default/httpd?",
        ),
        (
            ["--from", "pod1", "-n", "prod", "--to", "frontend"],
            "error: namespace 'prod' does not exist (namespaces: default, kube-system, "
            "dev)",
        ),
        (
            ["--from", "zzzz", "--to", "frontend"],
            "error: endpoint 'zzzz': no pod 'zzzz' in namespace 'default', and a DNS "
            "name cannot send; pods in namespace 'default': httpd-deployment-0, "
            "httpd-deployment-1, pod1, frontend",
        ),
        (
            ["--from", "frontend", "--to", "pod1!"],
            "error: endpoint 'pod1!': no pod 'pod1!' in namespace 'default', and "
            "'pod1!' is not a valid DNS name either; did you mean default/pod1?",
        ),
    ],
    ids=[
        "typo-to",
        "typo-from",
        "service-of-another-namespace",
        "node-source",
        "no-namespace",
        "no-match",
        "not-a-dns-name",
    ],
)
def test_a_bare_name_that_is_neither_pod_nor_dns_name_is_an_error(
    args: list[str], message: str
) -> None:
    code, out = invoke("trace", LAB, *args, "-p", "80")
    assert code == 2
    assert one_line(out) == message


def test_a_name_ending_in_a_dot_is_a_dns_name_as_written() -> None:
    code, lines = minimal("--from", "pod1", "--to", "nosuch.example.", "-p", "80")
    assert code == 0
    assert lines[-1] == "verdict nxdomain"


@pytest.mark.parametrize(
    "command", ["explain", "matrix", "graph"], ids=["explain", "matrix", "graph"]
)
def test_every_command_with_endpoints_takes_bare_names(command: str) -> None:
    code, out = invoke(
        command, LAB, "--from", "devpod", "-n", "dev", "--to", "typo-pod", "-p", "80"
    )
    assert code == 2
    assert one_line(out).startswith(
        "error: endpoint 'typo-pod': no pod 'typo-pod' in namespace 'dev', and "
        "kube-dns answers none of typo-pod.dev.svc.cluster.local."
    )


def test_matrix_rows_and_columns_by_bare_names() -> None:
    code, out = invoke(
        "matrix", LAB, "--from", "pod1", "--from", "frontend", "--to",
        "httpd-deployment-0", "--to", "devpod", "-n", "default",
    )  # fmt: skip
    assert code == 2  # devpod is in dev: -n names one namespace
    code, out = invoke(
        "matrix", LAB, "--from", "pod1", "--from", "frontend", "--to",
        "httpd-deployment-0", "--to", "dev/devpod",
    )  # fmt: skip
    assert code == 0, out
    lines = out.splitlines()
    assert lines[2].split() == ["1", "default/pod1", "I", "."]
    assert lines[3].split() == ["2", "default/frontend", ".", "."]
    assert [line.split() for line in lines[4:6]] == [
        ["1", "default/httpd-deployment-0"],
        ["2", "dev/devpod"],
    ]


def test_replay_at_a_bare_name(tmp_path: Path) -> None:
    from dataplane.pcap import write_pcaps

    sim = Simulator(load_scenario(LAB)[0].cluster)
    write_pcaps([sim.probe("default/pod1", "dev/devpod", 80)], tmp_path)
    capture = next(tmp_path.glob("*pod-default-pod1_eth0.pcap"))
    code, out = invoke(
        "replay", LAB, "--pcap", str(capture), "--at", "pod1", "--format", "json"
    )
    assert code == 0, out
    assert '"at": "default/pod1"' in out
    code, out = invoke("replay", LAB, "--pcap", str(capture), "--at", "pod9")
    assert code == 2
    assert one_line(out).startswith(
        "error: endpoint 'pod9': no pod 'pod9' in namespace 'default', and a DNS "
        "name cannot send; did you mean default/pod1"
    )


# -- scenario files keep their meaning, with a hint ------------------------------------


def test_in_a_scenario_a_bare_name_stays_a_dns_name_with_a_hint() -> None:
    sim = Simulator(load_scenario(LAB)[0].cluster)
    trace = sim.probe("default/pod1", "httpd-deployment-0", 80)
    assert trace.verdict is not None
    assert trace.verdict.value == "nxdomain"
    assert trace.explanation.endswith(
        "httpd-deployment-0. (default/httpd-deployment-0 is a pod, and a pod's name is "
        "not a DNS name: write default/httpd-deployment-0 to reach the pod)"
    )
    with pytest.raises(TopologyError) as err:
        sim.probe("pod1", "default/frontend", 80)
    assert str(err.value) == (
        "endpoint 'pod1' cannot send (use a pod, a container, node/NAME or "
        "external/NAME); did you mean default/pod1?"
    )


# -- folders ---------------------------------------------------------------------------


def test_run_a_folder_runs_every_scenario_under_it(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    shutil.copy(ROOT / "scenarios" / "same-node.yaml", tmp_path / "one.yaml")
    shutil.copy(ROOT / "scenarios" / "ttl-lesson.yaml", tmp_path / "sub" / "two.yml")
    shutil.copy(ROOT / "scenarios" / "same-node.yaml", tmp_path / ".hidden" / "x.yaml")
    (tmp_path / "pod.yaml").write_text("kind: Pod\n")  # a manifest, not a scenario
    code, out = invoke("run", "--quiet", str(tmp_path))
    assert code == 0, out
    summaries = [line for line in out.splitlines() if "passed" in line]
    assert summaries == [
        "same-node pods: 4 passed, 0 failed, 0 without expectations",
        "the TTL lesson: 4 passed, 0 failed, 0 without expectations",
        "total over 2 files: 8 passed, 0 failed, 0 without expectations",
    ]


def test_run_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    code, out = invoke("run", str(tmp_path))
    assert code == 2
    assert one_line(out) == (
        f"error: {tmp_path}: no scenario file in this folder (a .yaml or .yml file "
        "with a top-level steps: key)"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["trace", "scenarios", "--from", "pod1", "--to", "frontend"],
        ["explain", "scenarios", "--from", "pod1", "--to", "frontend"],
        ["matrix", "scenarios"],
        ["graph", "scenarios"],
        ["replay", "scenarios", "--pcap", "x.pcap"],
        ["quiz", "scenarios"],
    ],
    ids=["trace", "explain", "matrix", "graph", "replay", "quiz"],
)
def test_one_file_commands_refuse_a_folder(args: list[str]) -> None:
    r = CliRunner().invoke(app, [args[0], str(ROOT / args[1]), *args[2:]])
    assert r.exit_code == 2
    assert one_line(r.output) == (
        f"error: {ROOT / 'scenarios'}: is a directory; this command takes one scenario "
        "file (`run`, `test`, `lint`, `exposure`, `connlist` and `diff` take folders)"
    )


# -- --at-step on trace and graph ------------------------------------------------------


def test_trace_at_step() -> None:
    ends = ["--from", "pod1", "--to", "httpd-deployment-0", "-p", "80"]
    assert minimal(*ends)[1][-1] == "verdict denied-ingress"
    # step 12 labels pod1 role=frontend
    assert minimal(*ends, "--at-step", "12")[1][-1] == "verdict delivered"
    code, out = invoke("trace", LAB, *ends, "--at-step", "16")
    assert code == 2
    assert one_line(out) == "error: --at-step 16 is out of range (allowed: 0-15)"


def test_graph_at_step(tmp_path: Path) -> None:
    picture = tmp_path / "x.svg"
    ends = ["--from", "pod1", "--to", "httpd-deployment-0", "-p", "80", "-o"]
    code, out = invoke("graph", LAB, *ends, str(picture))
    assert (code, out) == (0, f"wrote {picture} (denied-ingress)\n")
    code, out = invoke("graph", LAB, *ends, str(picture), "--at-step", "12")
    assert (code, out) == (0, f"wrote {picture} (delivered)\n")


# -- ports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--port", "0"],
            "--port '0' is out of range (allowed: 1-65535 or a port name)",
        ),
        (
            ["--port", "70000"],
            "--port '70000' is out of range (allowed: 1-65535 or a port name)",
        ),
        (
            ["--port", "1e20"],
            "--port '1e20' is not a whole number (allowed: 1-65535 or a port name)",
        ),
        (
            ["--port", "-1"],
            "--port '-1' is out of range (allowed: 1-65535 or a port name)",
        ),
        (
            ["--port", "Http"],
            "--port 'Http' is not a valid port name (at most 15 lowercase letters, "
            "digits and '-', with at least one letter, no '--', not starting or ending "
            "with '-'), nor a number 1-65535",
        ),
        (
            ["--protocol", "ICMP", "--port", "80"],
            "--port '80': ICMP has no port (leave --port out, or use --protocol TCP, "
            "UDP or SCTP)",
        ),
    ],
    ids=["zero", "too-big", "float", "negative", "bad-name", "icmp"],
)
@pytest.mark.parametrize("command", ["trace", "explain", "matrix", "graph"])
def test_bad_ports_exit_2(command: str, args: list[str], message: str) -> None:
    code, out = invoke(command, LAB, "--from", "pod1", "--to", "frontend", *args)
    assert code == 2
    assert one_line(out) == f"error: {message}"


def test_good_ports() -> None:
    ends = ["--from", "pod1", "--to", "httpd-deployment-0"]
    assert minimal(*ends, "-p", "65535")[1][-1] == "verdict denied-ingress"
    assert minimal(*ends, "-p", "http")[1][0].startswith(
        "# TCP default/pod1 -> default/httpd-deployment-0:80"
    )
    assert minimal(*ends, "--protocol", "icmp")[1][-1] == "verdict denied-ingress"


# -- explain: the connection's decision, and its exit status ---------------------------


def explain_lesson(at_step: str) -> tuple[int, list[str]]:
    code, out = invoke(
        "explain", DNS_LESSON, "--from", "cart", "-n", "shop", "--to",
        "payments.bank", "--port", "80", "--at-step", at_step,
    )  # fmt: skip
    return code, out.splitlines()


def test_explain_by_dns_name_explains_the_connection() -> None:
    code, lines = explain_lesson("4")  # the name resolves; the connection is denied
    assert code == 1
    assert lines == [
        "TCP shop/cart -> payments.bank:80",
        "DNS, before the connection: DNS answer payments.bank.svc.cluster.local. A "
        "10.96.0.2: payments.bank is 10.96.0.2 (Service bank/payments's ClusterIP)",
        "kube-proxy chose the endpoint bank/payments-0",
        "egress on node-1 (FORWARD): denied: shop/cart is isolated for egress by "
        "shop/default-deny-egress, shop/allow-dns-clusterip, shop/allow-dns, and no rule "
        "admits traffic to bank/payments-0 on TCP 8080:",
        "  - shop/default-deny-egress has no egress rules (it admits nothing)",
        "  - shop/allow-dns-clusterip egress rule 0: TCP 8080 is not among its ports "
        "(UDP 53)",
        "  - shop/allow-dns egress rule 0: TCP 8080 is not among its ports (UDP 53, "
        "TCP 53)",
        "ingress on node-2 (never reached; it would have said): bank/payments-0 is not "
        "isolated for ingress (no NetworkPolicy selects it for Ingress)",
        "verdict: denied-egress (policy shop/default-deny-egress)",
    ]


def test_explain_names_the_service_port_rule_that_misses_the_target_port() -> None:
    code, lines = explain_lesson("6")
    assert code == 1
    assert (
        "  - shop/allow-payments-80 egress rule 0: TCP 8080 is not among its ports "
        "(TCP 80)"
    ) in lines


def test_explain_a_delivered_connection_by_name_exits_0() -> None:
    code, lines = explain_lesson("8")
    assert code == 0
    assert lines[3] == (
        "egress on node-1 (FORWARD): allowed by shop/allow-payments-8080 egress rule 0 "
        "peer 0 (namespaceSelector kubernetes.io/metadata.name=bank), ports TCP 8080"
    )


def test_explain_a_failed_lookup_explains_the_dns_query() -> None:
    code, lines = explain_lesson("0")
    assert code == 1
    assert lines[1] == (
        "DNS: the lookup failed, so no connection was made; the policy decisions below "
        "are those on the DNS query"
    )
    assert lines[3] == (
        "egress on node-1 (FORWARD): denied: shop/cart is isolated for egress by "
        "shop/default-deny-egress, and no rule admits traffic to kube-system/coredns-0 "
        "on UDP 53:"
    )
    assert lines[-1] == "verdict: denied-egress (policy shop/default-deny-egress)"


@pytest.mark.parametrize(
    "args",
    [["matrix"], ["graph"], ["replay", "--pcap", "x.pcap"]],
    ids=["matrix", "graph", "replay"],
)
def test_an_unknown_namespace_is_an_error_without_endpoints(args: list[str]) -> None:
    code, out = invoke(args[0], LAB, *args[1:], "-n", "prod")
    assert code == 2
    assert one_line(out) == (
        "error: namespace 'prod' does not exist (namespaces: default, kube-system, dev)"
    )


DNS_NAMES = str(ROOT / "scenarios" / "dns-names.yaml")


def test_explain_a_headless_name_credits_dns_not_kube_proxy() -> None:
    code, out = invoke(
        "explain", DNS_NAMES, "--from", "front", "-n", "shop", "--to", "api-pods",
        "-p", "8080",
    )  # fmt: skip
    assert code == 0
    assert out.splitlines()[1:3] == [
        "DNS, before the connection: DNS answer api-pods.shop.svc.cluster.local. A "
        "10.0.2.2 10.0.1.3: api-pods is 10.0.2.2 (headless Service shop/api-pods: pod "
        "shop/api-0)",
        "egress on node-1 (FORWARD): shop/front is not isolated for egress (no "
        "NetworkPolicy selects it for Egress)",
    ]


def test_explain_an_nxdomain_exits_1() -> None:
    code, out = invoke(
        "explain", DNS_NAMES, "--from", "shop/front", "--to", "payments.", "-p", "80"
    )
    assert code == 1
    assert out.splitlines()[-1] == (
        "verdict: nxdomain - 'payments.' does not resolve: NXDOMAIN (or no A record) "
        "for payments."
    )


def test_run_a_folder_keeps_the_outputs_of_files_with_one_name_apart(
    tmp_path: Path,
) -> None:
    (tmp_path / "s" / "flows").mkdir(parents=True)
    shutil.copy(ROOT / "scenarios" / "same-node.yaml", tmp_path / "s" / "x.yaml")
    shutil.copy(
        ROOT / "scenarios" / "ttl-lesson.yaml", tmp_path / "s" / "flows" / "x.yaml"
    )
    out = tmp_path / "out"
    pages = tmp_path / "pages"
    code, text = invoke(
        "run", "-q", str(tmp_path / "s"), "--pcap-dir", str(out), "--html", str(pages)
    )
    assert code == 0, text
    from dataplane.pcap import scenario_dirs

    ttl, same = scenario_dirs(
        [tmp_path / "s" / "flows" / "x.yaml", tmp_path / "s" / "x.yaml"]
    )
    assert ttl != same  # a folder's files of one name keep their outputs apart
    assert "the TTL lesson" in (pages / f"{ttl}.html").read_text()
    assert "same-node pods" in (pages / f"{same}.html").read_text()
    assert len(list((out / ttl).iterdir())) == 15
    assert len(list((out / same).iterdir())) == 7


def test_explain_as_json_judges_the_connection_and_exits_1() -> None:
    import json

    r = CliRunner().invoke(
        app,
        ["explain", DNS_LESSON, "--from", "cart", "-n", "shop", "--to",
         "payments.bank", "-p", "80", "--at-step", "4", "-o", "json"],
    )  # fmt: skip
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert [(c["direction"], c["pod"], c["allowed"]) for c in doc["checks"]] == [
        ("egress", "shop/cart", False),
        ("ingress", "bank/payments-0", True),
    ]
    assert "on TCP 8080" in doc["checks"][0]["text"]
