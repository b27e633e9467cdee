"""The user's filter `DOCKER-USER` chain of a Docker host (`topology.dockeruser`), walked
where Docker jumps to it: `FORWARD -j DOCKER-USER`, the first rule of FORWARD, before
`DOCKER-ISOLATION-STAGE-1` and the `DOCKER` chain (libnetwork `iptables.go`
`setupUserChain`; docs.docker.com "Packet filtering and firewalls").

It sees every forwarded packet, replies too (a rule dropping `-i eth0` drops the answers
to what containers sent out unless a `--ctstate RELATED,ESTABLISHED -j ACCEPT` comes
first), after the nat PREROUTING DNAT.  The first matching rule decides: ACCEPT ends
FORWARD (Docker's own chains are not walked), DROP denies, REJECT denies and answers the
sender with the ICMP error (`--reject-with`; the sender's socket reads it as refused or
unreachable: `ipt_REJECT`'s `nf_send_unreach`), RETURN and the end of the chain (the
Engine's `-A DOCKER-USER -j RETURN`) go on to Docker's rules.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from dataplane.netfilter import Accept, Drop, HookContext, Reject
from dataplane.packet import ICMP, Packet
from dataplane.trace import DropReason
from topology.dockeruser import CHAIN, UserRule


def matches(rule: UserRule, pkt: Packet, ctx: HookContext) -> bool:
    """Whether every match of `rule` holds for `pkt` at filter FORWARD."""
    ip = pkt.ip
    assert ip is not None
    src, dst = IPv4Address(ip.src), IPv4Address(ip.dst)
    for addr, at in (
        (rule.source, src),
        (rule.destination, dst),
        (rule.src_range, src),
        (rule.dst_range, dst),
    ):
        if addr is not None and not addr(at):
            return False
    if rule.in_if is not None and not rule.in_if(ctx.in_if):
        return False
    if rule.out_if is not None and not rule.out_if(ctx.out_if):
        return False
    if (
        rule.protocol is not None
        and (ip.proto == rule.protocol) == rule.protocol_negated
    ):
        return False
    ports = not isinstance(pkt.l4, ICMP)
    if rule.sport is not None and not (ports and rule.sport(pkt.sport)):
        return False
    if rule.dport is not None and not (ports and rule.dport(pkt.dport)):
        return False
    if rule.ct_states is not None:
        state = ctx.ct_state.value  # the simulator has no INVALID or UNTRACKED packet
        if (state in rule.ct_states) == rule.ct_states_negated:
            return False
    orig = ctx.ct.tuple_orig if ctx.ct is not None else (ip.proto, ip.src, pkt.sport, ip.dst, pkt.dport)  # fmt: skip
    if rule.orig_dst is not None and not rule.orig_dst(IPv4Address(orig[3])):
        return False
    return rule.orig_dport is None or rule.orig_dport(orig[4])


def walk(
    rules: tuple[UserRule, ...], pkt: Packet, ctx: HookContext
) -> Accept | Drop | str | None:
    """The chain's verdict (Accept, Drop, Reject), or what to say when it returns to
    FORWARD (None: the chain is empty)."""
    if not rules:
        return None
    for number, rule in enumerate(rules, 1):
        if not matches(rule, pkt, ctx):
            continue
        said = f"filter FORWARD -j {CHAIN}; {CHAIN} {rule.text} (rule {number})"
        policy = f"{CHAIN} {rule.text}"
        if rule.target == "ACCEPT":
            return Accept(f"{said}: accepted before Docker's own chains")
        if rule.target == "DROP":
            return Drop(f"denied by {said}", DropReason.FILTER, policy)
        if rule.target == "REJECT":
            kind, code = rule.reject_with
            return Reject(
                f"denied by {said}: answered with ICMP type {kind} code {code}",
                DropReason.FILTER, policy, kind, code,
            )  # fmt: skip
        return f"{said}: back to FORWARD"
    return f"filter FORWARD -j {CHAIN}: no rule of {len(rules)} matches (-j RETURN)"
