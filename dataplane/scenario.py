"""Run a scenario's steps in order and check their expectations.

Each step gives a `StepResult`: what was expected, what happened, and the trace(s) behind
it.  `apply`, `delete` and `label` change the cluster (`topology.change`) and the simulator
takes the new cluster before the next step, so every later probe sees the change.
`${ip:ENDPOINT}` references in a step are resolved when the step runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dataplane.packet import Packet
from dataplane.result import ScenarioResult, StepResult
from dataplane.sim import Simulator
from dataplane.trace import Trace, Verdict
from topology import change
from topology.endpoint import EndpointKind, substitute
from topology.errors import TopologyError
from topology.scenario import (
    ApplyStep,
    DeleteStep,
    Expectation,
    LabelStep,
    MatrixStep,
    ProbeStep,
    ReplayStep,
    Scenario,
    SendStep,
    Step,
)


def check(
    trace: Trace,
    expect: Expectation | None,
    addresses: Callable[[str], frozenset[str]] | None = None,
) -> tuple[bool | None, str]:
    """Compare a trace with an expectation; the message says what differs and where.

    `addresses` gives the addresses an endpoint stands for (`expect.sourceIP`)."""
    if expect is None:
        return None, ""
    problems: list[str] = []
    actual = trace.verdict
    if expect.verdict is not None and (
        actual is None or not actual.satisfies(expect.verdict)
    ):
        where = ""
        if trace.hops:
            last = next((h for h in reversed(trace.hops) if h.reason), trace.hops[-1])
            where = (
                f" (parted at hop {last.seq}: {last.where} {last.event}: {last.detail})"
            )
        problems.append(f"expected {expect.verdict.value}, got {actual}{where}")
    if expect.policy is not None and trace.policy != expect.policy:
        problems.append(
            f"expected policy {expect.policy}, got {trace.policy or 'none'}"
        )
    if expect.via and not trace.passes(expect.via):
        problems.append(
            f"expected to pass {' -> '.join(expect.via)}; it passed "
            f"{' -> '.join(dict.fromkeys(trace.devices()))}"
        )
    if expect.endpoint is not None and trace.endpoint != expect.endpoint:
        problems.append(
            f"expected endpoint {expect.endpoint}, got {trace.endpoint or 'none'}"
        )
    if expect.source_ip is not None and addresses is not None:
        want = addresses(expect.source_ip)
        seen = server_source(trace)
        if seen not in want:
            shown = " or ".join(sorted(want))
            problems.append(
                f"expected sourceIP {expect.source_ip} ({shown}), the server saw"
                f" {seen or 'nothing (not delivered)'}"
            )
    return (not problems), "; ".join(problems)


def server_source(trace: Trace) -> str | None:
    """The source address of the first packet delivered to the destination's socket."""
    for hop in trace.hops:
        pkt = hop.packet
        if hop.event == "deliver" and hop.direction == "request" and pkt and pkt.ip:
            return pkt.ip.src
    return None


def describe(expect: Expectation | None) -> str | None:
    if expect is None:
        return None
    parts = [expect.verdict.value] if expect.verdict else []
    if expect.policy:
        parts.append(f"policy {expect.policy}")
    if expect.via:
        parts.append("via " + " -> ".join(expect.via))
    if expect.endpoint:
        parts.append(f"endpoint {expect.endpoint}")
    if expect.source_ip:
        parts.append(f"sourceIP {expect.source_ip}")
    return ", ".join(parts)


class Runner:
    """Runs the steps of one scenario against one simulator."""

    def __init__(self, scenario: Scenario, sim: Simulator | None = None) -> None:
        self.scenario = scenario
        self.sim = sim if sim is not None else Simulator(scenario.cluster)
        self.base_dir = scenario.path.parent if scenario.path else Path.cwd()

    def sub(self, text: str) -> str:
        return substitute(text, self.sim.cluster)

    def run(
        self, on_step: Callable[[StepResult], None] | None = None
    ) -> ScenarioResult:
        result = ScenarioResult(self.scenario)
        for i, step in enumerate(self.scenario.steps, 1):
            res = self.run_step(i, step)
            result.steps.append(res)
            if on_step is not None:
                on_step(res)
        return result

    def run_step(self, index: int, step: Step) -> StepResult:
        try:
            return self._run_step(index, step)
        except TopologyError as err:
            if err.loc is None:
                raise TopologyError(
                    err.reason, step.loc, f"step {index}", err.field
                ) from err
            raise

    def _run_step(self, index: int, step: Step) -> StepResult:
        if isinstance(step, ProbeStep):
            return self.probe(index, step)
        if isinstance(step, SendStep):
            return self.send(index, step)
        if isinstance(step, MatrixStep):
            from dataplane.matrix import run_matrix_step

            return run_matrix_step(self, index, step)
        if isinstance(step, ReplayStep):
            from dataplane.replay import run_replay_step

            replayed: StepResult = run_replay_step(self, index, step)
            return replayed
        if isinstance(step, ApplyStep):
            cluster, warnings = change.apply(self.sim.cluster, step.objects)
            self.sim.update(cluster)
            kinds = [f"{m.data.get('kind')}/{m.data.get('metadata', {}).get('name')}"
                     for m in step.objects]  # fmt: skip
            return StepResult(index, "apply", "apply " + ", ".join(kinds), step.loc, step.name,
                              message="; ".join(warnings))  # fmt: skip
        if isinstance(step, DeleteStep):
            self.sim.update(change.delete(self.sim.cluster, step.refs, step.loc))
            return StepResult(index, "delete", "delete " + ", ".join(step.refs), step.loc,
                              step.name)  # fmt: skip
        assert isinstance(step, LabelStep)
        self.sim.update(change.label(self.sim.cluster, step))
        what = ", ".join(
            [f"{k}={v}" for k, v in step.set.items()] + [f"-{k}" for k in step.remove]
        )
        return StepResult(index, "label", f"label {step.kind} {step.target} {what}", step.loc,
                          step.name)  # fmt: skip

    def probe(self, index: int, step: ProbeStep) -> StepResult:
        src, dst = self.sub(step.src), self.sub(step.dst)
        port = self.sub(step.port) if isinstance(step.port, str) else step.port
        trace = self.sim.probe(src, dst, port, step.protocol)
        ok, message = check(trace, step.expect, self.addresses)
        port_text = f":{port}" if port is not None else ""
        title = f"probe {src} -> {dst}{port_text} {step.protocol.value}"
        return StepResult(
            index,
            "probe",
            title,
            step.loc,
            step.name,
            ok,
            describe(step.expect),
            trace.verdict.value if trace.verdict else None,
            message,
            trace,
        )

    def send(self, index: int, step: SendStep) -> StepResult:
        at = self.sub(step.at)
        pkt = self.sim.fill_frame(at, self.build_packet(step))
        trace = self.sim.send(at, pkt)
        ok, message = check(trace, step.expect, self.addresses)
        return StepResult(
            index,
            "send",
            trace.title,  # the packet as sent: with the source the kernel chose
            step.loc,
            step.name,
            ok,
            describe(step.expect),
            trace.verdict.value if trace.verdict else None,
            message,
            trace,
        )

    def addresses(self, text: str) -> frozenset[str]:
        """The addresses an endpoint stands for: a node's every address (MASQUERADE may
        take any of them: eth0's, the bridge's, flannel.1's), else its one address."""
        from topology.endpoint import ip_of, resolve_endpoint

        text = self.sub(text)
        ep = resolve_endpoint(self.sim.cluster, text)
        if ep.kind is EndpointKind.NODE and ep.node is not None:
            owned = self.sim.fabric.owner_of_ip
            return frozenset(ip for ip, ns in owned.items() if ns == ep.node.name)
        return frozenset({str(ip_of(self.sim.cluster, text))})

    def build_packet(self, step: SendStep) -> Packet:
        from dataplane.craft import from_hex, from_layers

        if step.hex is not None:
            return from_hex(step.hex)
        return from_layers(step.layers, self.address)

    def address(self, value: str) -> str:
        """A packet field that names an endpoint (`dst: y/b`) becomes its address."""
        from topology.endpoint import ip_of

        text = self.sub(value)
        if "/" in text:
            return str(ip_of(self.sim.cluster, text))
        return text


def run_scenario(
    scenario: Scenario, on_step: Callable[[StepResult], None] | None = None
) -> ScenarioResult:
    """Run every step of `scenario` from its initial cluster."""
    return Runner(scenario).run(on_step)


__all__ = ["Runner", "ScenarioResult", "StepResult", "Verdict", "check", "run_scenario"]
