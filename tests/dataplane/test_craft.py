"""Crafted packets (`send` steps) are untrusted input: every field is checked, no value
makes the tool ask this machine anything (DNS, routes, ARP, services) or allocate without
bound, and every refusal names the step's file:line and the field."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.craft import LAYERS, check_field, from_layers
from dataplane.packet import ICMP, TCP
from dataplane.scenario import Runner
from topology.errors import TopologyError
from topology.loader import load_scenario_text
from topology.scenario import LayerSpec

SCENARIO = """\
name: crafted
manifests:
  - {kind: Pod, apiVersion: v1, metadata: {name: a}, spec: {nodeName: node-1, containers: [{name: c, image: x}]}}
  - {kind: Pod, apiVersion: v1, metadata: {name: b}, spec: {nodeName: node-2, containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}}
steps:
  - send:
      at: default/a
      packet: PACKET
"""


def error_of(packet: str) -> str:
    scenario, _ = load_scenario_text(SCENARIO.replace("PACKET", packet), "lab.yaml")
    with pytest.raises(TopologyError) as err:
        Runner(scenario).run()
    return str(err.value)


@pytest.fixture
def no_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail on any name lookup or socket this machine would make.  (Importing scapy
    reads the host's interface list once, over netlink: that happens before, and no
    value in a scenario can cause it.)"""
    import scapy.layers.vxlan  # noqa: F401

    from dataplane.craft import _scapy_classes

    _scapy_classes()
    asked: list[str] = []

    def refuse(*args: object, **kwargs: object) -> Any:
        asked.append(repr(args))
        raise AssertionError(f"the host's network was used: {args!r}")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(socket, "socket", refuse)
    yield asked
    assert asked == []


STEP = "lab.yaml:6: step 1: send.packet"


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        ("[{IP: {dst: default/b}}, {ICMP: {type: 8, gw: some.host.name}}]",
         "[1].ICMP.gw: not a field of ICMP (allowed: type, code, id, seq)"),
        ("[{IP: {dst: some.host.name}}, {TCP: {dport: 80}}]",
         "[0].IP.dst: 'some.host.name' is not allowed (allowed: an IPv4 address or an "
         "endpoint (NS/POD, node/NAME, external/NAME, svc/NS/NAME))"),
        ("[{IP: {dst: default/b, src: localhost}}, {TCP: {dport: 80}}]",
         "[0].IP.src: 'localhost' is not allowed"),
        ("[{IP: {dst: default/b, ttl: 300}}, {TCP: {dport: 80}}]",
         "[0].IP.ttl: 300 is out of range (allowed: 0-255)"),
        ("[{IP: {dst: default/b, ttl: '64'}}, {TCP: {dport: 80}}]",
         "[0].IP.ttl: '64' is not allowed (allowed: a whole number 0-255)"),
        ("[{IP: {dst: default/b, ttl: true}}, {TCP: {dport: 80}}]",
         "[0].IP.ttl: True is not allowed (allowed: a whole number 0-255)"),
        ("[{IP: {dst: default/b}}, {TCP: {dport: 65536}}]",
         "[1].TCP.dport: 65536 is out of range (allowed: 0-65535)"),
        ("[{IP: {dst: default/b}}, {TCP: {dport: http}}]",
         "[1].TCP.dport: 'http' is not allowed (allowed: a whole number 0-65535)"),
        ("[{IP: {dst: default/b}}, {TCP: {dport: 80, flags: SX}}]",
         "[1].TCP.flags: 'SX' is not allowed (allowed: letters of FSRPAUECN"),
        ("[{IP: {dst: default/b, flags: evil}}, {TCP: {dport: 80}}]",
         "[0].IP.flags: 'evil' is not allowed (allowed: DF, MF, DF+MF or a number 0-3)"),
        ("[{IP: {dst: default/b}}, {TCP: {dport: [80]}}]",
         "[1].TCP.dport: [80] is not allowed"),
        ("[{IP: {dst: default/b}}, {UDP: {dport: 53}}, {Raw: {size: 1.0e+12}}]",
         "[2].Raw.size: 1000000000000.0 is not allowed (allowed: a whole number 0-65515)"),
        ("[{IP: {dst: default/b}}, {UDP: {dport: 53}}, {Raw: {size: 1000000000000}}]",
         "[2].Raw.size: 1000000000000 is out of range (allowed: 0-65515)"),
        ("[{IP: {dst: default/b}}, {UDP: {dport: 53}}, {Raw: {size: 60000}}, "
         "{Raw: {size: 6000}}]",
         "[3].Raw: the packet would be 66028 bytes, longer than 65535 (the IPv4 maximum "
         "total length)"),
        ("[{IP: {dst: default/b}}, {UDP: {dport: 53}}, {Raw: {size: 65515}}]",
         "[2].Raw: the packet would be 65543 bytes, longer than 65535 (the IPv4 maximum "
         "total length)"),
        ("[{Ether: {dst: 'ff:ff:ff:ff:ff:zz'}}, {IP: {dst: default/b}}]",
         "[0].Ether.dst: 'ff:ff:ff:ff:ff:zz' is not allowed (allowed: a MAC address"),
        ("[{ARP: {pdst: some.host.name}}]", "[0]: layer 'ARP' is not supported"),
        ("[{IP: {dst: default/b}}, {TCP: {dport: 80, options: [[MSS, 1460]]}}]",
         "[1].TCP.options: not a field of TCP (allowed: sport, dport, seq, ack, flags, "
         "window)"),
        ("[{IP: {dst: default/b}}, {SCTP: {dport: 80}}, {SCTPChunkInit: {init_tag: 1}}]",
         "[2].SCTPChunkInit.init_tag: not a field of SCTPChunkInit (allowed: none)"),
        ("[{IP: {dst: default/b}}, {UDP: {dport: 53}}, {Raw: {load: x, size: 3}}]",
         "[2].Raw: give load or size, not both"),
    ],
    ids=["icmp-gw-name", "dst-name", "src-localhost", "ttl-300", "ttl-text", "ttl-bool",
         "port-65536", "port-name", "tcp-flags", "ip-evil", "port-list", "size-float",
         "size-huge", "sum-too-big", "ip-total-too-big", "mac", "arp", "tcp-options",
         "chunk-field", "load-and-size"],
)  # fmt: skip
def test_bad_fields_are_refused_with_their_location(
    packet: str, message: str, no_lookups: list[str]
) -> None:
    assert error_of(packet).startswith(STEP + message)


@pytest.mark.parametrize(
    ("layer", "field", "value", "scapy"),
    [
        ("TCP", "flags", "SA", 0x12),
        ("TCP", "flags", "S+A", 0x12),
        ("TCP", "flags", 0x1FF, 0x1FF),
        ("IP", "flags", "DF", 2),
        ("IP", "flags", "DF,MF", 3),
        ("IP", "dst", " 10.0.2.2", None),
        ("IP", "ttl", 0, 0),
        ("Raw", "load", "héllo", "héllo".encode()),
        ("Ether", "dst", "0A:58:0A:00:01:01", "0a:58:0a:00:01:01"),
    ],
    ids=["tcp-letters", "tcp-plus", "tcp-number", "df", "df-mf", "padded-ip",
         "ttl-0", "load-utf8", "mac-case"],
)  # fmt: skip
def test_field_values(layer: str, field: str, value: object, scapy: object) -> None:
    if scapy is None:
        with pytest.raises(TopologyError):
            check_field(layer, field, value, str)
    else:
        assert check_field(layer, field, value, str) == scapy


def test_an_accepted_packet_keeps_its_values(no_lookups: list[str]) -> None:
    spec = (
        LayerSpec("IP", {"dst": "10.0.2.2", "ttl": 7, "id": 9, "flags": "DF"}),
        LayerSpec("TCP", {"sport": 1, "dport": 80, "flags": "SA", "seq": 2**32 - 1}),
        LayerSpec("Raw", {"size": 3}),
    )
    pkt = from_layers(spec, str)
    assert pkt.ip is not None and (pkt.ip.ttl, pkt.ip.id, pkt.ip.df) == (7, 9, True)
    assert pkt.l4 == TCP(1, 80, "SA", 2**32 - 1, 0, 8192)
    assert pkt.data == bytes(3)


def test_an_ether_layer_without_dst_never_asks_the_host(
    no_lookups: list[str],
) -> None:
    """scapy's DestMACField resolves a missing Ether.dst by ARP through the host."""
    spec = (LayerSpec("Ether", {}), LayerSpec("IP", {"dst": "10.0.2.2"}),
            LayerSpec("ICMP", {"type": 8}))  # fmt: skip
    pkt = from_layers(spec, str)
    assert pkt.eth is None and isinstance(pkt.l4, ICMP)


def test_no_accepted_field_is_one_scapy_resolves() -> None:
    """Every scapy field that resolves names or asks the host (IP and MAC fields, the
    port fields with service names) is accepted only as a literal-checked kind."""
    from scapy.fields import Emph, IPField, MACField, SourceIPField

    from dataplane.craft import _scapy_classes

    classes = _scapy_classes()
    for layer, fields in LAYERS.items():
        for name, kind in fields.items():
            if layer == "Raw":
                continue
            f = {fd.name: fd for fd in classes[layer].fields_desc}[name]
            inner = f.fld if isinstance(f, Emph) else f
            if isinstance(inner, IPField | SourceIPField):
                assert kind.name == "address", (layer, name)
            elif isinstance(inner, MACField):
                assert kind.name == "mac", (layer, name)
            else:
                assert kind.name in ("int", "ip-flags", "tcp-flags"), (layer, name)


# -- the fuzzer ------------------------------------------------------------------------------

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=300),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["some.host.name", "localhost", "default/b", "10.0.2.2", "S",
                     "DF", "ff:ff:ff:ff:ff:ff", "http", "0x10", "1e12"]),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
FIELDS = sorted({f for fs in LAYERS.values() for f in fs} | {"gw", "options", "len"})
LAYER_NAMES = [*LAYERS, "ARP", "IPv6", "DNS", "Padding"]
LAYER = st.builds(
    LayerSpec,
    st.sampled_from(LAYER_NAMES),
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4),
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(layers=st.lists(LAYER, min_size=0, max_size=5))
def test_any_layers_give_a_packet_or_a_located_error(
    layers: list[LayerSpec], no_lookups: list[str]
) -> None:
    def address(text: str) -> str:
        return "10.0.2.2" if text == "default/b" else text

    error: TopologyError | None = None
    try:
        pkt = from_layers(tuple(layers), address)
    except TopologyError as err:
        error = err
    if error is not None:
        assert error.field is not None and error.field.startswith("send.packet")
    else:
        assert pkt.ip is not None and pkt.ip_len() <= 65535


def _fields(layer: str) -> st.SearchStrategy[dict[str, object]]:
    def value(name: str) -> st.SearchStrategy[object]:
        kind = LAYERS[layer][name]
        if kind.name in ("int", "size"):
            return st.integers(kind.low - 1, min(kind.high + 1, 70000))
        if kind.name == "address":
            return st.sampled_from(["10.0.2.2", "default/b", "10.0.1.3", "x.example"])
        if kind.name == "mac":
            return st.sampled_from(["0a:58:0a:00:01:01", "ff:ff:ff:ff:ff:ff"])
        if kind.name == "ip-flags":
            return st.sampled_from(["DF", "MF", "", 0, 2, 4])
        if kind.name == "tcp-flags":
            return st.sampled_from(["S", "SA", "PA", "R", "FA", 511, 512])
        return st.text(max_size=8)

    names = sorted(LAYERS[layer])
    return st.fixed_dictionaries(
        {}, optional={n: value(n) for n in names if n not in ("load", "size")}
    )


WELL_FORMED = st.tuples(
    st.builds(LayerSpec, st.just("IP"), _fields("IP")),
    st.sampled_from(["TCP", "UDP", "ICMP", "SCTP"]).flatmap(
        lambda name: st.builds(LayerSpec, st.just(name), _fields(name))
    ),
    st.builds(LayerSpec, st.just("Raw"), st.fixed_dictionaries(
        {"size": st.integers(0, 1500)})),
)  # fmt: skip


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(layers=WELL_FORMED)
def test_well_formed_stacks_keep_their_values_or_say_why_not(
    layers: tuple[LayerSpec, LayerSpec, LayerSpec], no_lookups: list[str]
) -> None:
    def address(text: str) -> str:
        return "10.0.2.2" if text == "default/b" else text

    error: TopologyError | None = None
    try:
        pkt = from_layers(layers, address)
    except TopologyError as err:
        error = err
    if error is not None:
        assert error.field is not None and error.field.startswith("send.packet")
        return
    ip = layers[0].fields
    assert pkt.ip is not None
    assert pkt.ip.ttl == ip.get("ttl", 64) and pkt.ip.tos == ip.get("tos", 0)
    assert pkt.ip.dst == address(str(ip.get("dst", "127.0.0.1")))
    assert len(pkt.data) == layers[2].fields["size"] or pkt.l4 is None
