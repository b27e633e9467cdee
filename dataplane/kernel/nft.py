"""nftables rulesets as data: the JSON that `nft -j -f -` reads (libnftables-json(5)).

Each node namespace gets one table, `ip dataplane`, generated from the cluster model by
`dataplane.kernel.services` (kube-proxy and masquerade) and `dataplane.kernel.policies`
(NetworkPolicy and the admin policy tiers), with the simulator's hook layout: conntrack
first (the kernel's own, at -200), kube-proxy's DNAT at dstnat (-100), its REJECT/DROP of
Service ports nobody serves at -1, the policy filter at 0 in FORWARD (and in INPUT for the
tiers), masquerade at srcnat (100).  Rules carry comments, so `nft list ruleset` in a kept
namespace reads like the trace.

The helpers below build expressions the way the JSON schema spells them; a ruleset is a
list of commands (`{"add": {"rule": ...}}`) loaded in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

from dataplane.kernel import netns
from topology.model import Protocol

FAMILY = "ip"
TABLE = "dataplane"
MASQ_MARK = 0x4000  # kube-proxy's KUBE-MARK-MASQ bit

Expr = dict[str, Any]
Command = dict[str, Any]

L4 = {
    Protocol.TCP: "tcp",
    Protocol.UDP: "udp",
    Protocol.SCTP: "sctp",
    Protocol.ICMP: "icmp",
}


# -- expressions ---------------------------------------------------------------------------
def field_(protocol: str, name: str) -> Expr:
    """A header field: `ip saddr`, `th dport` (any transport header)."""
    return {"payload": {"protocol": protocol, "field": name}}


def meta(key: str) -> Expr:
    return {"meta": {"key": key}}


def match(left: Expr, right: Any, op: str = "==") -> Expr:
    return {"match": {"op": op, "left": left, "right": right}}


def addresses(items: Iterable[str | IPv4Network]) -> Any:
    """An address, a prefix, or an anonymous set of them.

    >>> addresses(["10.0.1.3"])
    '10.0.1.3'
    >>> addresses([IPv4Network("10.0.0.0/8"), "10.0.1.3"])
    {'set': [{'prefix': {'addr': '10.0.0.0', 'len': 8}}, '10.0.1.3']}
    """
    out: list[Any] = []
    for item in items:
        if isinstance(item, IPv4Network):
            if item.prefixlen == 32:
                out.append(str(item.network_address))
            else:
                out.append(
                    {
                        "prefix": {
                            "addr": str(item.network_address),
                            "len": item.prefixlen,
                        }
                    }
                )
        else:
            out.append(item)
    return out[0] if len(out) == 1 else {"set": out}


def l4proto(protocol: Protocol) -> Expr:
    return match(meta("l4proto"), L4[protocol])


def dport(first: int, last: int | None = None) -> Expr:
    right: Any = first if last is None or last == first else {"range": [first, last]}
    return match(field_("th", "dport"), right)


def concat(*parts: Expr) -> Expr:
    return {"concat": list(parts)}


def jump(chain: str) -> Expr:
    return {"jump": {"target": chain}}


def verdict_map(key: Expr, items: Sequence[tuple[Any, Expr]]) -> Expr:
    """`KEY vmap { value : verdict, ... }`."""
    return {"vmap": {"key": key, "data": {"set": [[k, v] for k, v in items]}}}


def ct_state(*states: str) -> Expr:
    return match({"ct": {"key": "state"}}, list(states), "in")


def fib_daddr_local() -> Expr:
    return match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")


def set_mark(bit: int) -> Expr:
    return {"mangle": {"key": meta("mark"), "value": {"|": [meta("mark"), bit]}}}


def has_mark(bit: int) -> Expr:
    return match({"&": [meta("mark"), bit]}, bit)


ACCEPT: Expr = {"accept": None}
DROP: Expr = {"drop": None}
RETURN: Expr = {"return": None}
MASQUERADE: Expr = {"masquerade": None}
REJECT_PORT_UNREACHABLE: Expr = {"reject": {"type": "icmp", "expr": "port-unreachable"}}


# -- a ruleset -----------------------------------------------------------------------------
@dataclass(slots=True)
class Ruleset:
    """The commands that make one node's table, in the order they must be given."""

    chains: list[Command] = field(default_factory=list)
    maps: list[Command] = field(default_factory=list)
    rules: list[Command] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def base_chain(self, name: str, type_: str, hook: str, prio: int) -> None:
        self.names.add(name)
        self.chains.append(
            {
                "add": {
                    "chain": {
                        "family": FAMILY,
                        "table": TABLE,
                        "name": name,
                        "type": type_,
                        "hook": hook,
                        "prio": prio,
                        "policy": "accept",
                    }
                }
            }
        )

    def chain(self, name: str) -> str:
        if name not in self.names:
            self.names.add(name)
            self.chains.append(
                {"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}}
            )
        return name

    def verdict_map(self, name: str, types: list[str]) -> str:
        self.maps.append(
            {
                "add": {
                    "map": {
                        "family": FAMILY,
                        "table": TABLE,
                        "name": name,
                        "type": types,
                        "map": "verdict",
                    }
                }
            }
        )
        return name

    def add(self, chain: str, *expr: Expr, comment: str | None = None) -> None:
        rule: dict[str, Any] = {
            "family": FAMILY,
            "table": TABLE,
            "chain": chain,
            "expr": list(expr),
        }
        if comment:
            rule["comment"] = comment[:127]  # NFT_USERDATA_MAXLEN is 256 bytes
        self.rules.append({"add": {"rule": rule}})

    def commands(self) -> list[Command]:
        """Replace the table in one transaction: add, delete, then build it anew."""
        table = {"family": FAMILY, "name": TABLE}
        return [
            {"add": {"table": dict(table)}},
            {"delete": {"table": dict(table)}},
            {"add": {"table": dict(table)}},
            *self.chains,
            *self.maps,
            *self.rules,
        ]


def document(commands: list[Command]) -> str:
    return json.dumps(
        {"nftables": [{"metainfo": {"json_schema_version": 1}}, *commands]}
    )


def load(kernel_ns: str, commands: list[Command]) -> None:
    """Give `commands` to `nft` inside `kernel_ns`, in one transaction."""
    netns.run(kernel_ns, ["nft", "-j", "-f", "-"], document(commands))


def listing(kernel_ns: str) -> str:
    """`nft list ruleset` of a namespace, as text."""
    return netns.run(kernel_ns, ["nft", "list", "ruleset"])
