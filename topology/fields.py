"""Building blocks of the pydantic schemas: the strict base model and checked field types.

Every schema model forbids unknown keys and is strict (a port written `"80"` is a string, not
a number, as for the API server's decoder).  Field types carry their own checks and raise
`invalid(...)`, whose reason `topology.diagnostic` puts verbatim into the error message.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import (
    AddressValueError,
    IPv4Address,
    IPv4Network,
    IPv6Network,
    NetmaskValueError,
)
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from topology import names


class StrictModel(BaseModel):
    """Base of every schema model: camelCase keys, unknown keys rejected, no coercion."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, alias_generator=to_camel
    )


def invalid(reason: str) -> PydanticCustomError:
    """A validation error whose message is exactly `reason`."""
    return PydanticCustomError("invalid", "{reason}", {"reason": reason})


def describe(value: Any) -> str:
    """A value as an error message quotes it, with its YAML type.

    >>> describe("80")
    "'80' (a string)"
    >>> describe(None)
    'null'
    """
    if value is None:
        return "null"
    kind = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        dict: "a mapping",
        list: "a list",
    }.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    return f"{value!r} ({kind})"


def _checked(check: Callable[[str], str | None]) -> Callable[[str], str]:
    def validate(value: str) -> str:
        reason = check(value)
        if reason is not None:
            raise invalid(reason)
        return value

    return validate


def port_number(value: int) -> int:
    """A TCP/UDP/SCTP port number, 1-65535."""
    if not 1 <= value <= 65535:
        raise invalid(f"{value} is out of range (allowed: 1-65535)")
    return value


def _port_or_name(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(f"expected a port number or a port name, got {describe(value)}")
    if isinstance(value, int):
        return port_number(value)
    return _checked(names.port_name)(value)


def parse_ipv4(value: Any) -> IPv4Address:
    """An IPv4 address written as a string."""
    if isinstance(value, IPv4Address):
        return value
    if not isinstance(value, str):
        raise invalid(f"expected an IPv4 address, got {describe(value)}")
    try:
        return IPv4Address(value)
    except AddressValueError:
        raise invalid(f"{value!r} is not a valid IPv4 address") from None


def parse_cidr(value: Any) -> IPv4Network:
    """An IPv4 network `a.b.c.d/n` with no host bits set."""
    if isinstance(value, IPv4Network):
        return value
    if not isinstance(value, str) or "/" not in value:
        raise invalid(f"expected an IPv4 CIDR like 10.0.0.0/16, got {describe(value)}")
    loose = parse_loose_cidr(value)
    if loose is None:
        raise invalid(cidr_reason(value))
    if loose.network_address != IPv4Address(value.split("/")[0]):
        raise invalid(f"{value!r} has host bits set (did you mean {loose}?)")
    return loose


def parse_loose_cidr(value: str) -> IPv4Network | None:
    """`a.b.c.d/n` with host bits allowed (masked off), or None when not a CIDR at all.

    The prefix length is decimal digits only, as Go's `net.ParseCIDR` (which the API server
    and kube-apiserver's flags use) reads it: Python's netmask forms (`/255.0.0.0`,
    `/0.255.255.255`) are not CIDRs there.

    >>> parse_loose_cidr("10.0.1.5/4")
    IPv4Network('0.0.0.0/4')
    >>> parse_loose_cidr("10.0.1.0/33") is None
    True
    >>> parse_loose_cidr("10.0.0.0/255.0.0.0") is None
    True
    """
    net = _loose(value, IPv4Network, 2)
    assert net is None or isinstance(net, IPv4Network)
    return net


def parse_loose_cidr6(value: str) -> IPv6Network | None:
    """An IPv6 CIDR with host bits allowed (masked off), or None: what the API server's CEL
    `isCIDR` also takes (network-policy-api `CIDR`: "10.0.0.0/8" or "fd00::/8").

    >>> parse_loose_cidr6("::/0")
    IPv6Network('::/0')
    >>> parse_loose_cidr6("fd00::1/8")
    IPv6Network('fd00::/8')
    >>> parse_loose_cidr6("fd00::/129") is None
    True
    """
    net = _loose(value, IPv6Network, 3)
    assert net is None or isinstance(net, IPv6Network)
    return net


def _loose(
    value: str, family: type[IPv4Network | IPv6Network], digits: int
) -> IPv4Network | IPv6Network | None:
    """`value` as a CIDR of `family`, host bits masked off; a prefix length of at most
    `digits` decimal digits (Go's `net.ParseCIDR`), or None."""
    _, slash, prefix = value.partition("/")
    if not slash or not (prefix.isascii() and prefix.isdigit()) or len(prefix) > digits:
        return None
    try:
        return family(value, strict=False)
    except (AddressValueError, NetmaskValueError, ValueError):
        return None


def cidr_reason(value: str) -> str:
    """Why `value` (which holds a `/`) is not an IPv4 CIDR.

    >>> cidr_reason("10.0.0.0/255.0.0.0")  # doctest: +ELLIPSIS
    "'10.0.0.0/255.0.0.0' is not a valid CIDR (the prefix length is a number ..."
    """
    if "." in value.partition("/")[2]:
        return (
            f"{value!r} is not a valid CIDR (the prefix length is a number 0-32,"
            " not a netmask)"
        )
    return f"{value!r} is not a valid CIDR (allowed: an IPv4 CIDR a.b.c.d/N, N from 0 to 32)"


# Special-purpose IPv4 ranges no host of the simulated network may use (RFC 6890): what
# the API server's ValidateNonSpecialIP rejects for external IPs and endpoints
# (pkg/apis/core/validation), plus multicast, class E and the limited broadcast, which are
# not unicast host addresses (Linux refuses them as a neighbour or a source).
SPECIAL_RANGES: tuple[tuple[IPv4Network, str], ...] = (
    (IPv4Network("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (IPv4Network("127.0.0.0/8"), "loopback (127.0.0.0/8)"),
    (IPv4Network("169.254.0.0/16"), "link-local (169.254.0.0/16)"),
    (IPv4Network("224.0.0.0/4"), "multicast (224.0.0.0/4)"),
    (IPv4Network("240.0.0.0/4"), "reserved or the limited broadcast (240.0.0.0/4)"),
)


def special_range(network: IPv4Network) -> str | None:
    """The special-purpose range `network` overlaps, if any.

    >>> special_range(IPv4Network("224.0.0.1/32"))
    'multicast (224.0.0.0/4)'
    >>> special_range(IPv4Network("192.0.2.10/32")) is None
    True
    """
    for block, what in SPECIAL_RANGES:
        if network.overlaps(block):
            return what
    return None


INT32_MAX = 2**31 - 1

_PORT_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 65535}

Port = Annotated[
    int, AfterValidator(port_number), Field(json_schema_extra=_PORT_SCHEMA)
]
PortName = Annotated[str, AfterValidator(_checked(names.port_name))]
PortOrName = Annotated[
    int | str,
    BeforeValidator(_port_or_name, json_schema_input_type=int | str),
]
LabelKey = Annotated[str, AfterValidator(_checked(names.label_key))]
LabelValue = Annotated[str, AfterValidator(_checked(names.label_value))]
Labels = dict[LabelKey, LabelValue]
# apimachinery ValidateAnnotations: TotalAnnotationSizeLimitB, keys and values together.
ANNOTATIONS_LIMIT = 256 * 1024


def _annotation_size(value: dict[str, str]) -> dict[str, str]:
    size = sum(len(k) + len(v) for k, v in value.items())
    if size > ANNOTATIONS_LIMIT:
        raise invalid(
            f"annotations take {size} bytes (allowed: at most {ANNOTATIONS_LIMIT})"
        )
    return value


Annotations = Annotated[dict[LabelKey, str], AfterValidator(_annotation_size)]
DNSLabel = Annotated[str, AfterValidator(_checked(names.dns1123_label))]
DNS1035Label = Annotated[str, AfterValidator(_checked(names.dns1035_label))]
DNSSubdomain = Annotated[str, AfterValidator(_checked(names.dns1123_subdomain))]
IfName = Annotated[str, AfterValidator(_checked(names.ifname))]
IPv4 = Annotated[
    IPv4Address,
    BeforeValidator(parse_ipv4, json_schema_input_type=str),
    Field(json_schema_extra={"format": "ipv4"}),
]
CIDR = Annotated[IPv4Network, BeforeValidator(parse_cidr, json_schema_input_type=str)]
# An int32, as the API's integers are (replicas, ordinals): the decoder rejects the rest.
NonNegative = Annotated[int, Field(ge=0, le=INT32_MAX)]
Ignored = Annotated[
    Any, Field(description="Accepted for compatibility; no effect on the dataplane.")
]
