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

from dataclasses import dataclass
from ipaddress import IPv4Address

from dataplane.conntrack import flow_of
from dataplane.netfilter import Accept, Drop, HookContext, Reject
from dataplane.packet import ICMP, Packet
from dataplane.trace import DropReason
from topology.dockeruser import CHAIN, UserRule


@dataclass(frozen=True, slots=True)
class Seen:
    """What the rules match of one packet at filter FORWARD, read once for the chain
    (addresses as numbers)."""

    src: int
    dst: int
    proto: int
    ports: tuple[int, int] | None  # (sport, dport); None for ICMP
    in_if: str | None
    out_if: str | None
    state: str  # the simulator has no INVALID or UNTRACKED packet
    orig_dst: int
    orig_dport: int

    @classmethod
    def of(cls, pkt: Packet, ctx: HookContext) -> Seen:
        ip = pkt.ip
        assert ip is not None
        orig = ctx.ct.tuple_orig if ctx.ct is not None else flow_of(pkt)
        return cls(
            int(IPv4Address(ip.src)), int(IPv4Address(ip.dst)), ip.proto,
            None if isinstance(pkt.l4, ICMP) else (pkt.sport, pkt.dport),
            ctx.in_if, ctx.out_if, ctx.ct_state.value,
            int(IPv4Address(orig[3])), orig[4],
        )  # fmt: skip


def matches(rule: UserRule, seen: Seen) -> bool:
    """Whether every match of `rule` holds for the packet `seen`."""
    for addr, at in (
        (rule.source, seen.src),
        (rule.destination, seen.dst),
        (rule.src_range, seen.src),
        (rule.dst_range, seen.dst),
        (rule.orig_dst, seen.orig_dst),
    ):
        if addr is not None and not addr(at):
            return False
    if rule.in_if is not None and not rule.in_if(seen.in_if):
        return False
    if rule.out_if is not None and not rule.out_if(seen.out_if):
        return False
    if (
        rule.protocol is not None
        and (seen.proto == rule.protocol) == rule.protocol_negated
    ):
        return False
    if rule.sport is not None and not (seen.ports and rule.sport(seen.ports[0])):
        return False
    if rule.dport is not None and not (seen.ports and rule.dport(seen.ports[1])):
        return False
    if (
        rule.ct_states is not None
        and (seen.state in rule.ct_states) == rule.ct_states_negated
    ):
        return False
    return rule.orig_dport is None or rule.orig_dport(seen.orig_dport)


def walk(
    rules: tuple[UserRule, ...], pkt: Packet, ctx: HookContext
) -> Accept | Drop | str | None:
    """The chain's verdict (Accept, Drop, Reject), or what to say when it returns to
    FORWARD (None: the chain is empty)."""
    if not rules:
        return None
    seen = Seen.of(pkt, ctx)
    for number, rule in enumerate(rules, 1):
        if not matches(rule, seen):
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
