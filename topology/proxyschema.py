"""Pydantic schema of `cluster.kubeProxy`: the KubeProxyConfiguration fields
(kubeproxy.config.k8s.io/v1alpha1) that shape the dataplane (docs/scenario-format.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from topology.fields import StrictModel
from topology.model import IPVS_SCHEDULERS

IPVS_LOCALHOST = (
    "localhostNodePorts applies to mode iptables, and mode is ipvs (allowed here: the"
    " default; ipvs mode never serves NodePorts on 127.0.0.1)"
)


def scheduler_problem(name: str) -> str | None:
    """What is wrong with `ipvs.scheduler` `name`, or None.  rr, or wrr (kube-proxy gives
    every real server weight 1, so ip_vs_wrr cycles as ip_vs_rr does); the others follow
    live connection counts (lc, wlc, sed, nq, lblc, lblcr, fo, ovf, twos) or the order of
    the kernel's destination list, which kube-proxy fills from an unordered set (sh, dh,
    mh), so they are not modelled."""
    if name in IPVS_SCHEDULERS:
        return None
    known = [
        "lc",
        "wlc",
        "lblc",
        "lblcr",
        "sh",
        "dh",
        "sed",
        "nq",
        "mh",
        "fo",
        "ovf",
        "twos",
    ]
    what = (
        f"scheduler {name} is not modelled"
        if name in known
        else f"{name!r} is not an IPVS scheduler"
    )
    return f"{what} (allowed: {', '.join(IPVS_SCHEDULERS)})"


class IptablesModel(StrictModel):
    """KubeProxyConfiguration `iptables` (kubeproxy.config.k8s.io/v1alpha1)."""

    masquerade_all: bool = Field(
        default=False,
        alias="masqueradeAll",
        description="SNAT all traffic to ClusterIPs (default false).",
    )
    localhost_node_ports: bool = Field(
        default=True,
        alias="localhostNodePorts",
        description="NodePorts answer on 127.0.0.1 too (default true, iptables mode).",
    )


class NftablesModel(StrictModel):
    """KubeProxyConfiguration `nftables`."""

    masquerade_all: bool = Field(
        default=False,
        alias="masqueradeAll",
        description="SNAT all traffic to ClusterIPs (default false).",
    )


class IpvsModel(StrictModel):
    """KubeProxyConfiguration `ipvs`."""

    scheduler: str = Field(
        default="rr",
        description="IPVS scheduler: rr (round-robin, the default) or wrr (the same for"
        " kube-proxy's weight-1 real servers); the others (lc, wlc, sh, mh, ...) are"
        " refused as not modelled.",
    )


class KubeProxyModel(StrictModel):
    """kube-proxy's KubeProxyConfiguration fields that shape the dataplane."""

    mode: Literal["iptables", "nftables", "ipvs"] = Field(
        default="iptables",
        description="The proxy mode: iptables (default), nftables or ipvs.",
    )
    node_port_addresses: list[str] | None = Field(
        default=None,
        alias="nodePortAddresses",
        description="Where NodePorts answer: [primary] (the node IP) or CIDRs."
        " Default: every local address.",
    )
    iptables: IptablesModel = Field(
        default=IptablesModel(), description="iptables mode options."
    )
    nftables: NftablesModel = Field(
        default=NftablesModel(), description="nftables mode options."
    )
    ipvs: IpvsModel = Field(default=IpvsModel(), description="ipvs mode options.")
