"""Felix's rules against encapsulation as nftables rules, for a Calico node.

Derived from Felix's documented rules, as `dataplane.cni.calico` models them
(`felix/rules/endpoints.go`, `static.go`): a workload's NEW IP-in-IP packet or UDP datagram
to Felix's `vxlanPort` is dropped in its `cali-fw-…` chain, whatever the encapsulation mode;
`cali-INPUT` drops IP-in-IP (ipip mode) and VXLAN to a local address (vxlan mode) from a
source that is not one of the cluster's hosts.  Both run before the NetworkPolicy filter
(`dataplane.kernel.policies`, priority 0).

    chain felix-forward { type filter hook forward priority -1; policy accept;
        iifname "cali*" ct state new ip protocol 4 drop
        iifname "cali*" ct state new udp dport 4789 drop }
    chain felix-input { type filter hook input priority -1; policy accept;
        ip protocol 4 ip saddr != { <nodes> } drop                  # ipip mode
        udp dport 4789 fib daddr type local ip saddr != { <nodes> } drop  # vxlan mode
        iifname "cali*" ct state new ip protocol 4 drop
        iifname "cali*" ct state new udp dport 4789 drop }
"""

from __future__ import annotations

from dataplane.kernel.nft import (
    DROP,
    Expr,
    Ruleset,
    addresses,
    ct_state,
    fib_daddr_local,
    field_,
    match,
    meta,
)
from topology.model import CalicoMode, Cluster, Cni

WORKLOADS = "cali*"  # Felix's InterfacePrefix, as an nftables wildcard


def add_felix_rules(rs: Ruleset, cluster: Cluster) -> None:
    """Felix's encapsulation rules on a node of a Calico cluster (nothing otherwise)."""
    cfg = cluster.config
    if cfg.cni is not Cni.CALICO:
        return
    ipip = match(field_("ip", "protocol"), 4)
    vxlan = match(field_("udp", "dport"), cfg.vxlan_port)
    hosts = addresses([str(n.ip) for n in cfg.nodes])
    not_a_host = match(field_("ip", "saddr"), hosts, "!=")
    from_workload: list[tuple[Expr, str]] = [
        (vxlan, "Drop VXLAN encapped packets originating in workloads"),
        (ipip, "Drop IPinIP encapped packets originating in workloads"),
    ]
    rs.base_chain("felix-forward", "filter", "forward", -1)
    rs.base_chain("felix-input", "filter", "input", -1)
    if cfg.network is CalicoMode.IPIP:
        rs.add(
            "felix-input",
            ipip,
            not_a_host,
            DROP,
            comment="cali-INPUT: Drop IPIP packets from non-Calico hosts",
        )
    if cfg.network is CalicoMode.VXLAN:
        rs.add(
            "felix-input",
            vxlan,
            fib_daddr_local(),
            not_a_host,
            DROP,
            comment="cali-INPUT: Drop IPv4 VXLAN packets from non-allowed hosts",
        )
    for chain in ("felix-forward", "felix-input"):
        for what, comment in from_workload:
            rs.add(
                chain,
                match(meta("iifname"), WORKLOADS),
                ct_state("new"),
                what,
                DROP,
                comment=f"cali-fw: {comment}",
            )
