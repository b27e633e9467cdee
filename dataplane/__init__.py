"""dataplane: a packet-level simulator of the Kubernetes node dataplane.

The public API::

    from dataplane import Simulator, ACCEPT, Drop, load_scenario, run_scenario

    scenario, warnings = load_scenario("scenarios/cross-node-vxlan.yaml")
    sim = Simulator(scenario.cluster)
    trace = sim.probe("default/a", "default/c", port=80)
    for hop in trace.hops:
        print(hop.seq, hop.where, hop.device, hop.event, hop.detail)
    print(trace.verdict)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ACCEPT",
    "Accept",
    "Drop",
    "HookContext",
    "HookPoint",
    "Hop",
    "Packet",
    "Reject",
    "Simulator",
    "Trace",
    "Verdict",
    "load_scenario",
    "run_scenario",
]

_LAZY = {
    "ACCEPT": "dataplane.netfilter",
    "Accept": "dataplane.netfilter",
    "Drop": "dataplane.netfilter",
    "Reject": "dataplane.netfilter",
    "HookContext": "dataplane.netfilter",
    "HookPoint": "dataplane.netfilter",
    "Hop": "dataplane.trace",
    "Trace": "dataplane.trace",
    "Verdict": "dataplane.trace",
    "Packet": "dataplane.packet",
    "Simulator": "dataplane.sim",
    "run_scenario": "dataplane.scenario",
    "load_scenario": "topology.loader",
}

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.netfilter import (
        ACCEPT,
        Accept,
        Drop,
        HookContext,
        HookPoint,
        Reject,
    )
    from dataplane.packet import Packet
    from dataplane.scenario import run_scenario
    from dataplane.sim import Simulator
    from dataplane.trace import Hop, Trace, Verdict
    from topology.loader import load_scenario


def __getattr__(name: str) -> Any:
    """Import on first use, so that `dataplane --help` starts fast."""
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(module), name)
