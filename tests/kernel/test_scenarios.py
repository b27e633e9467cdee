"""Every shipped scenario on this kernel: the simulator and Linux agree on every probe.

A probe the kernel cannot make is allowed only for the documented reasons (README, "The
real kernel as the oracle"); anything else the backend cannot build fails here.  The
admin policy tiers' scenarios (admin-tiers.yaml, admin-policy-mistakes.yaml and the
network-policy-api conformance suite) are among them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.kernel.build import has_ip_vs, has_ipip
from dataplane.kernel.probe import has_sctp
from dataplane.kernel.report import MISMATCH, NOT_COMPARABLE
from dataplane.kernel.verify import verify
from dataplane.suite import discover
from topology.loader import load_scenario

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent.parent
# The files `dataplane test scenarios/` runs (manifest includes have no `steps:`).
SCENARIOS = discover([ROOT / "scenarios"])
# Why a probe may be "not comparable" (each is a limit of what a socket or this kernel can
# show, documented in the README).
DOCUMENTED = (
    "belongs to the capture's own connection",  # a replayed TCP segment after the SYN
    "a reply of the capture",  # a replayed answer: the requesting socket is the capture's
    "an ICMP message other than an echo request",  # a replayed echo reply
    "cannot put a payload on its SYN",
)
SCTP = "this kernel has no SCTP"
IPIP = "this kernel has no ipip module"  # Calico's tunl0 (scenarios/calico/)
IP_VS = "this kernel has no ip_vs module"  # kube-proxy's ipvs mode (kube-proxy/ipvs-*)
BPF = (
    "not comparable: BPF datapath"  # Cilium's node is BPF programs (scenarios/cilium/)
)


def test_scenarios_are_there() -> None:
    assert len(SCENARIOS) >= 7
    # the admin tiers' scenarios are verified too (dataplane.kernel.policies builds them)
    names = {str(p.relative_to(ROOT / "scenarios")) for p in SCENARIOS}
    assert {"admin-tiers.yaml", "admin-policy-mistakes.yaml"} <= names
    conformance = [n for n in names if n.startswith("network-policy-api/")]
    assert len(conformance) >= 48, conformance


# A name on a Docker host: dockerd's embedded DNS is not looked up by verify yet.
DOCKER_DNS = "the Engine's embedded DNS at 127.0.0.11"

# What the kernel backend does not build yet (strict: building it turns these red).
KERNEL_GAPS = {
    "kube-proxy/ipmode-proxy.yaml": "the gateway's proxying load balancer (ipMode Proxy)"
    " is not built on the kernel",
    # The kernel's packets are sent now, not at the capture's timestamps, so no affinity
    # timeout can run on the capture's clock there; and verify does not read back the
    # endpoint kube-proxy picks for a replayed packet (web-1 refuses, web-0 answers).
    "kube-proxy/session-affinity.yaml": "sessionAffinity on a capture's clock and the"
    " endpoint picks of replayed packets are not compared on the kernel",
}


def _case(path: Path) -> object:
    gap = KERNEL_GAPS.get(str(path.relative_to(ROOT / "scenarios")))
    if gap is None:
        return path
    return pytest.param(path, marks=pytest.mark.xfail(strict=True, reason=gap))


@pytest.mark.parametrize(
    "path",
    [_case(p) for p in SCENARIOS],
    ids=lambda p: str(p.relative_to(ROOT / "scenarios")),
)
def test_the_simulator_and_linux_agree(path: Path) -> None:
    scenario, _warnings = load_scenario(path)
    report = verify(scenario)
    wrong = [
        f"step {r.step} {r.title}: simulator {r.sim} ({r.sim_detail}), kernel "
        f"{r.kernel.verdict} ({r.kernel.detail})"
        + "".join(f"; {p.name}: {p.sim} vs {p.kernel}" for p in r.differs())
        for r in report.rows
        if r.status == MISMATCH
    ]
    assert not wrong, "\n".join(wrong)
    # runtime: docker: what Docker Engine made (addresses, published ports) is the model's
    assert [p for p in report.built if not p.agrees] == []
    allowed = (*DOCUMENTED, BPF, DOCKER_DNS)
    allowed = allowed if has_sctp() else (*allowed, SCTP)
    allowed = allowed if has_ipip() else (*allowed, IPIP)
    allowed = allowed if has_ip_vs() else (*allowed, IP_VS)
    unexplained = [
        f"step {r.step} {r.title}: {r.kernel.detail}"
        for r in report.rows
        if r.status == NOT_COMPARABLE
        and not any(why in r.kernel.detail for why in allowed)
    ]
    assert not unexplained, "\n".join(unexplained)
    assert report.rows, "a scenario without a probe compares nothing"
    # host-local chose every address the simulator's IPAM chose, but where the
    # scenario gives it (a dump's status.podIP)
    ipam = report.kernel_side.get("pod addresses (IPAM)", "")
    if "podIP" not in path.read_text():
        assert "asked for" not in ipam, ipam
