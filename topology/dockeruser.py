"""`cluster.nodes[].dockerUser`: a Docker host's own rules in the filter `DOCKER-USER`
chain, written as the arguments of `iptables -A DOCKER-USER`, parsed strictly.

Docker puts `FORWARD -j DOCKER-USER` first in filter FORWARD, before its own chains, and
leaves the chain to the user ("Packet filtering and firewalls", docs.docker.com: "Docker
won't modify rules in the DOCKER-USER chain"); the Engine ends it with `-j RETURN`.
The list is the chain in order: the first rule that matches decides.  The rules see
packets after the nat PREROUTING `DOCKER` DNAT (the container's address and port), which
is why Docker's page matches the original destination with `-m conntrack --ctorigdst`.

The accepted subset of iptables' syntax (iptables(8), iptables-extensions(8)), each option
at most once, `!` before an option negating it:
- `-s`/`--source`, `-d`/`--destination` ADDR[/MASK];
- `-i`/`--in-interface`, `-o`/`--out-interface` NAME (a trailing `+` matches every name
  with that prefix);
- `-p`/`--protocol` `tcp`, `udp` or `icmp`; with tcp or udp `--sport`/`--source-port`,
  `--dport`/`--destination-port` PORT[:PORT] (`-m tcp`/`-m udp` may be written too);
- `-m conntrack` with `--ctstate` STATE[,STATE...] (NEW, ESTABLISHED, RELATED, INVALID,
  UNTRACKED; the simulator tracks every packet, so INVALID and UNTRACKED match none),
  `--ctorigdst` ADDR[/MASK], `--ctorigdstport` PORT[:PORT];
- `-m iprange` with `--src-range`, `--dst-range` FIRST-LAST;
- `-j`/`--jump` `ACCEPT`, `DROP`, `RETURN` or `REJECT` (with `--reject-with`
  icmp-port-unreachable, the default, icmp-net-unreachable, icmp-host-unreachable,
  icmp-net-prohibited, icmp-host-prohibited or icmp-admin-prohibited).
Anything else (another option, module or target, a host name, a chain name such as
`-A DOCKER-USER`) is an input error naming the rule and the token.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, TypeVar

from topology.errors import TopologyError
from topology.runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover (topology.model and .schema hold these records)
    from topology.model import ClusterConfig
    from topology.schema import NodeModel

T = TypeVar("T")
CHAIN = "DOCKER-USER"
IFNAMSIZ = 16  # linux/if.h: a name of at most 15 bytes
TARGETS = ("ACCEPT", "DROP", "RETURN", "REJECT")
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}
CT_STATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")
# iptables-extensions(8) REJECT (IPv4): --reject-with TYPE -> (ICMP type, code)
REJECT_WITH = {
    "icmp-port-unreachable": (3, 3),
    "icmp-net-unreachable": (3, 0),
    "icmp-host-unreachable": (3, 1),
    "icmp-net-prohibited": (3, 9),
    "icmp-host-prohibited": (3, 10),
    "icmp-admin-prohibited": (3, 13),
}


@dataclass(frozen=True, slots=True)
class Span:
    """`[!] PORT[:PORT]`, `[!] ADDR[/MASK]` or `[!] FIRST-LAST`: an inclusive range of
    numbers (an address as its 32-bit number)."""

    first: int
    last: int
    negated: bool = False

    def __call__(self, value: int) -> bool:
        return (self.first <= value <= self.last) != self.negated


@dataclass(frozen=True, slots=True)
class Interface:
    """`[!] NAME`, `NAME+` a prefix (iptables(8) `-i`)."""

    name: str
    negated: bool = False

    def __call__(self, ifname: str | None) -> bool:
        if ifname is None:  # a locally generated or delivered packet: no such side
            return self.negated
        if self.name.endswith("+"):
            hit = ifname.startswith(self.name[:-1])
        else:
            hit = ifname == self.name
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class UserRule:
    """One `DOCKER-USER` rule: `text` as written, its matches (None: any) and target."""

    text: str
    target: str
    source: Span | None = None
    destination: Span | None = None
    src_range: Span | None = None
    dst_range: Span | None = None
    orig_dst: Span | None = None
    in_if: Interface | None = None
    out_if: Interface | None = None
    protocol: int | None = None  # IP protocol number
    protocol_negated: bool = False
    sport: Span | None = None
    dport: Span | None = None
    orig_dport: Span | None = None
    ct_states: frozenset[str] | None = None
    ct_states_negated: bool = False
    reject_with: tuple[int, int] = REJECT_WITH["icmp-port-unreachable"]
    modules: tuple[str, ...] = field(default=())

    @property
    def tokens(self) -> list[str]:
        """The arguments for `iptables -I DOCKER-USER N` (verify's real chain)."""
        return shlex.split(self.text)


_ALIASES = {
    "-s": "-s", "--source": "-s", "--src": "-s",
    "-d": "-d", "--destination": "-d", "--dst": "-d",
    "-i": "-i", "--in-interface": "-i",
    "-o": "-o", "--out-interface": "-o",
    "-p": "-p", "--protocol": "-p",
    "-m": "-m", "--match": "-m",
    "-j": "-j", "--jump": "-j",
    "--sport": "--sport", "--source-port": "--sport",
    "--dport": "--dport", "--destination-port": "--dport",
    "--ctstate": "--ctstate", "--ctorigdst": "--ctorigdst",
    "--ctorigdstport": "--ctorigdstport",
    "--src-range": "--src-range", "--dst-range": "--dst-range",
    "--reject-with": "--reject-with",
}  # fmt: skip
_NOT_NEGATABLE = ("-m", "-j", "--reject-with")
# the option -> the module (or protocol, or target) it needs
_NEEDS = {
    "--sport": "tcp or udp (-p tcp|udp)",
    "--dport": "tcp or udp (-p tcp|udp)",
    "--ctstate": "conntrack (-m conntrack)",
    "--ctorigdst": "conntrack (-m conntrack)",
    "--ctorigdstport": "conntrack (-m conntrack)",
    "--src-range": "iprange (-m iprange)",
    "--dst-range": "iprange (-m iprange)",
    "--reject-with": "the target REJECT (-j REJECT)",
}
ALLOWED = (
    "[!] -s/-d ADDR[/MASK], [!] -i/-o NAME[+], [!] -p tcp|udp|icmp, [!] --sport/--dport"
    " PORT[:PORT], -m conntrack [!] --ctstate STATES / --ctorigdst / --ctorigdstport,"
    " -m iprange [!] --src-range/--dst-range A-B, -j ACCEPT|DROP|RETURN|REJECT"
    " [--reject-with ...]"
)


class _Bad(Exception):
    """A token the subset refuses: its text and what is allowed there."""

    def __init__(self, token: str, why: str) -> None:
        super().__init__(why)
        self.token, self.why = token, why


def _address(token: str, negated: bool) -> Span:
    try:
        net = IPv4Network(token, strict=False)
    except ValueError:
        raise _Bad(
            token,
            "not an IPv4 address or network (allowed: ADDR or ADDR/MASK; no host names)",
        ) from None
    return Span(int(net.network_address), int(net.broadcast_address), negated)


def _range(token: str, negated: bool) -> Span:
    first, sep, last = token.partition("-")
    try:
        low, high = IPv4Address(first), IPv4Address(last if sep else first)
    except ValueError:
        raise _Bad(token, "not an address range (allowed: FIRST-LAST)") from None
    if high < low:
        raise _Bad(token, f"the range ends below its start ({high} < {low})")
    return Span(int(low), int(high), negated)


def _ports(token: str, negated: bool) -> Span:
    first, sep, last = token.partition(":")
    try:
        low = int(first) if first else 0
        high = int(last) if sep and last else (65535 if sep else low)
    except ValueError:
        raise _Bad(
            token, "not a port (allowed: PORT or FIRST:LAST, 0-65535; no service names)"
        ) from None
    if not (0 <= low <= 65535 and 0 <= high <= 65535):
        raise _Bad(token, "port out of range (allowed: 0-65535)")
    if high < low:
        raise _Bad(token, f"the range ends below its start ({high} < {low})")
    return Span(low, high, negated)


def _interface(token: str, negated: bool) -> Interface:
    if not token or len(token.encode()) >= IFNAMSIZ or "/" in token or " " in token:
        raise _Bad(
            token, f"not an interface name (allowed: 1-{IFNAMSIZ - 1} bytes, no '/')"
        )
    return Interface(token, negated)


def _states(token: str) -> frozenset[str]:
    states = token.split(",")
    for s in states:
        if s not in CT_STATES:
            raise _Bad(s, f"not a conntrack state (allowed: {', '.join(CT_STATES)})")
    return frozenset(states)


def parse_rule(text: str) -> UserRule:
    """One rule; a `TopologyError`-ready `_Bad` for a token outside the subset."""
    try:
        tokens = shlex.split(text)
    except ValueError as err:
        raise _Bad(text, f"cannot split it into words ({err})") from None
    if not tokens:
        raise _Bad(text, f"an empty rule (allowed: {ALLOWED})")
    seen: set[str] = set()
    values: dict[str, tuple[str, bool]] = {}
    modules: list[str] = []
    words: Iterator[str] = iter(tokens)
    for word in words:
        negated = word == "!"
        if negated:
            word = next(words, "")
            if word == "":
                raise _Bad("!", "a '!' with no option after it")
        option = _ALIASES.get(word)
        if option is None:
            if word in ("-A", "-I", "--append", "--insert", "iptables"):
                why = (
                    "write the rule's matches and target only: the list is the"
                    f" {CHAIN} chain in order"
                )
            else:
                why = f"not in the modelled subset (allowed: {ALLOWED})"
            raise _Bad(word, why)
        if negated and option in _NOT_NEGATABLE:
            raise _Bad("!", f"{word} cannot be negated")
        value = next(words, None)
        if value is None or value == "!":
            raise _Bad(word, f"{word} needs a value")
        if option == "-m":
            if value not in ("tcp", "udp", "conntrack", "iprange"):
                raise _Bad(
                    value,
                    "not a modelled match module (allowed: tcp, udp, conntrack, iprange)",
                )
            if value in modules:
                raise _Bad(value, f"-m {value} written twice")
            if value in ("tcp", "udp") and values.get("-p", ("", False))[0] != value:
                raise _Bad(value, f"-m {value} needs -p {value} before it")
            modules.append(value)
            continue
        if option in seen:
            raise _Bad(
                word, f"{word} written twice (iptables: multiple flags not allowed)"
            )
        need = _NEEDS.get(option)
        if need is not None and not _has(option, values, modules):
            raise _Bad(word, f"{word} needs {need} before it")
        seen.add(option)
        values[option] = (value, negated)
    return _rule(text, values, tuple(modules))


def _has(option: str, values: dict[str, tuple[str, bool]], modules: list[str]) -> bool:
    if option in ("--sport", "--dport"):
        proto, negated = values.get("-p", ("", False))
        return proto in ("tcp", "udp") and not negated
    if option == "--reject-with":
        return values.get("-j", ("", False))[0] == "REJECT"
    return _NEEDS[option].split()[0] in modules


def _rule(
    text: str, values: dict[str, tuple[str, bool]], modules: tuple[str, ...]
) -> UserRule:
    if "-j" not in values:
        raise _Bad(text, "no target: give -j ACCEPT, DROP, RETURN or REJECT")
    target = values["-j"][0]
    if target not in TARGETS:
        raise _Bad(target, f"not a modelled target (allowed: {', '.join(TARGETS)})")

    def get(option: str, read: Callable[[str, bool], T]) -> T | None:
        if option not in values:
            return None
        value, negated = values[option]
        return read(value, negated)

    protocol, protocol_negated = None, False
    if "-p" in values:
        name, protocol_negated = values["-p"]
        if name not in PROTOCOLS:
            raise _Bad(
                name, f"not a modelled protocol (allowed: {', '.join(PROTOCOLS)})"
            )
        protocol = PROTOCOLS[name]
    states, states_negated = None, False
    if "--ctstate" in values:
        word, states_negated = values["--ctstate"]
        states = _states(word)
    reject = REJECT_WITH["icmp-port-unreachable"]
    if "--reject-with" in values:
        kind = values["--reject-with"][0]
        if kind not in REJECT_WITH:
            raise _Bad(
                kind, f"not a modelled reject type (allowed: {', '.join(REJECT_WITH)})"
            )
        reject = REJECT_WITH[kind]
    return UserRule(
        text, target,
        source=get("-s", _address),
        destination=get("-d", _address),
        src_range=get("--src-range", _range),
        dst_range=get("--dst-range", _range),
        orig_dst=get("--ctorigdst", _address),
        in_if=get("-i", _interface),
        out_if=get("-o", _interface),
        protocol=protocol, protocol_negated=protocol_negated,
        sport=get("--sport", _ports),
        dport=get("--dport", _ports),
        orig_dport=get("--ctorigdstport", _ports),
        ct_states=states, ct_states_negated=states_negated,
        reject_with=reject, modules=modules,
    )  # fmt: skip


def parse_rules(
    texts: list[str], fail: Callable[[int, str], TopologyError]
) -> tuple[UserRule, ...]:
    """A host's `dockerUser` list; `fail(index, reason)` makes the error at rule `index`."""
    rules = []
    for index, text in enumerate(texts):
        try:
            rules.append(parse_rule(text))
        except _Bad as bad:
            raise fail(
                index, f"{CHAIN} rule {text!r}: {bad.token!r}: {bad.why}"
            ) from None
    return tuple(rules)


def with_docker_user(
    config: ClusterConfig,
    written: Sequence[NodeModel],
    fail: Callable[[tuple[str | int, ...], str], TopologyError],
) -> ClusterConfig:
    """`config` with each node's `dockerUser` rules (`cluster.nodes`, as `written`), only
    with runtime docker; `fail(path, reason)` makes the error at that scenario path."""
    nodes = list(config.nodes)
    for index, n in enumerate(written):
        if not n.docker_user:
            continue
        at = ("cluster", "nodes", index, "dockerUser")
        if config.runtime is not Runtime.DOCKER:
            raise fail(
                at,
                "dockerUser needs runtime: docker (cluster.runtime; a Kubernetes"
                " node's filter rules come from kube-proxy and the CNI)",
            )

        def at_rule(i: int, why: str, at: tuple[str | int, ...] = at) -> TopologyError:
            return fail((*at, i), why)

        nodes[index] = replace(
            nodes[index], docker_user=parse_rules(n.docker_user, at_rule)
        )
    return replace(config, nodes=tuple(nodes))
