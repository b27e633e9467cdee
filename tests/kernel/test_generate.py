"""The random scenario generator (dataplane.kernel.generate): deterministic, always a
valid scenario, and a bounded batch agrees on this kernel (`make fuzz-kernel` runs more)."""

from __future__ import annotations

import pytest

from dataplane.kernel.generate import main, parse_seeds, scenario, text
from dataplane.kernel.generate_admin import DELETE_NAMES
from tests.kernel.conftest import require_docker_engine
from topology.cni_modes import CNI_NETWORKS
from topology.loader import load_scenario_text

ADMIN_KINDS = tuple(DELETE_NAMES)

# about 40 s here (flannel and calico, iptables and nftables, admin policies compared
# in 8, 9 and 12); `make fuzz-kernel SEEDS=1-1000` for the long run
CI_SEEDS = "1-12"
DOCKER_SEED = 31  # the first `runtime: docker` draw: two hosts, an internal network


def test_the_same_seed_gives_the_same_scenario() -> None:
    assert text(7) == text(7)
    assert text(7) != text(8)


@pytest.mark.parametrize("seed", parse_seeds("1-300"))
def test_every_draw_is_a_valid_scenario(seed: int) -> None:
    """The loader takes every draw: 0 refused (Docker ones and admin policies too)."""
    scen, _ = load_scenario_text(text(seed), f"generated-{seed}.yaml")
    assert scen.steps


def test_the_draws_cover_every_feature() -> None:
    """Across 300 seeds: every CNI with each of its networks, every kube-proxy mode,
    Docker hosts, every service type, policies of each kind (admin ones too), SCTP,
    hostPort, and every kind of step."""
    seen: set[str] = set()
    for seed in range(1, 301):
        data = scenario(seed)
        cluster = data["cluster"]
        seen.add(f"mtu {cluster['mtu']}")
        if cluster.get("runtime") == "docker":
            seen.add("runtime docker")
            compose = str(data["compose"])
            seen.update(
                w for w in ("internal", "network_mode", "ports") if w in compose
            )
            if len(cluster["nodes"]) == 2:
                seen.add("docker 2 hosts")
            continue
        seen.add(f"{cluster['cni']} {cluster['network']}")
        if cluster["cni"] != "cilium":
            seen.add(
                f"kube-proxy {cluster.get('kubeProxy', {}).get('mode', 'iptables')}"
            )
        for obj in data["manifests"]:
            spec = obj.get("spec", {})
            if obj["kind"] in ADMIN_KINDS:
                seen.add(obj["kind"])
            if "SCTP" in str(spec):
                seen.add("SCTP")
            if "hostPort" in str(spec):
                seen.add("hostPort")
            if obj["kind"] == "Service":
                seen.add(f"service {spec.get('type', 'headless')}")
                seen.update(f"service {k}" for k in spec if k.endswith("Policy"))
                seen.update(f"service {k}" for k in spec if k == "sessionAffinity")
            if obj["kind"] == "NetworkPolicy":
                text_ = str(spec)
                for word in (
                    "ipBlock",
                    "except",
                    "endPort",
                    "namespaceSelector",
                    "matchExpressions",
                    "egress",
                    "ingress",
                ):
                    if word in text_:
                        seen.add(f"policy {word}")
            if obj["kind"] == "Pod" and spec.get("hostNetwork"):
                seen.add("hostNetwork")
        for step in data["steps"]:
            seen.update(f"step {k}" for k in step)
            send = step.get("send")
            if send:
                ip = send["packet"][0]["IP"]
                seen.add(f"ttl {ip['ttl']}")
                if "flags" in ip:
                    seen.add("DF")
    want = {
        *(f"{cni} {network}" for cni, nets in CNI_NETWORKS.items() for network in nets),
        *(f"kube-proxy {m}" for m in ("iptables", "nftables", "ipvs")),
        *ADMIN_KINDS,
        "SCTP",
        "hostPort",
        "runtime docker",
        "docker 2 hosts",
        "internal",
        "network_mode",
        "ports",
        "mtu 9000",
        *(
            f"service {t}"
            for t in ("ClusterIP", "NodePort", "LoadBalancer", "headless")
        ),
        "service externalTrafficPolicy",
        "service internalTrafficPolicy",
        "service sessionAffinity",
        *(
            f"policy {w}"
            for w in (
                "ipBlock",
                "except",
                "endPort",
                "namespaceSelector",
                "matchExpressions",
                "egress",
                "ingress",
            )
        ),
        "hostNetwork",
        *(f"step {k}" for k in ("probe", "send", "matrix", "apply", "delete", "label")),
        "ttl 1",
        "DF",
    }
    assert want <= seen, sorted(want - seen)


@pytest.mark.kernel
def test_a_bounded_batch_agrees_on_this_kernel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["--seeds", CI_SEEDS])
    out = capsys.readouterr().out
    assert status == 0, out
    assert " 0 mismatch" in out and "12 scenarios" in out


@pytest.mark.kernel
def test_a_docker_draw_agrees_on_this_kernel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Docker draw on real Docker Engines (a dockerd per host, about 15 s)."""
    require_docker_engine()
    assert scenario(DOCKER_SEED)["cluster"]["runtime"] == "docker"
    status = main(["--seeds", str(DOCKER_SEED)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert " 0 mismatch" in out and "1 scenarios" in out


def test_the_tally_counts_mismatches_by_part_with_their_seeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A verdict that differs, a route part that differs and a built part that differs:
    each named with its seed in the summary, and the run fails."""
    from dataplane.kernel.generate import Tally
    from dataplane.kernel.probe import KernelVerdict
    from dataplane.kernel.report import Part, Report, Row
    from topology.scenario import Verdict

    report = Report("generated-7", "")
    report.rows = [
        Row(1, "probe", "a -> b:80 TCP", Verdict.DELIVERED, "",
            KernelVerdict(Verdict.DENIED, "no answer within 1 s")),
        Row(2, "probe", "a -> 224.0.0.1 ICMP", Verdict.DROPPED, "",
            KernelVerdict(None, "not comparable: BPF datapath"),
            parts=[Part("route node-1/host 224.0.0.1", "via x dev eth0", "dev eth0")]),
        Row(3, "probe", "a -> c:53 UDP", Verdict.DELIVERED, "",
            KernelVerdict(None, "10.0.0.3: not comparable: this kernel has no SCTP")),
    ]  # fmt: skip
    report.built = [Part("published 0.0.0.0:80/tcp of host-1/p-web-1", "80", "-")]
    tally = Tally()
    tally.add(7, report)
    tally.summary(1.0)
    out = capsys.readouterr().out
    assert tally.failed
    assert "mismatch in verdict x1: seeds 7" in out
    assert "mismatch in route x1: seeds 7" in out
    assert "mismatch in built x1: seeds 7" in out
    assert "not comparable x1: not comparable: this kernel has no SCTP" in out
    assert "1 built parts compared, 1 differ" in out
