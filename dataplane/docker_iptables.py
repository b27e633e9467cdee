"""Docker's iptables rules on one host, as hooks: NAT for published ports, MASQUERADE,
the filter chains that isolate networks, and the userland proxy for 127.0.0.1.

The rules (moby, libnetwork drivers/bridge `setup_ip_tables_linux.go`, `iptables.go`,
`port_mapping_linux.go`; the daemon's defaults: `iptables`, `ip-forward`, `icc`,
`userland-proxy` all true), for each network with bridge BR and subnet S:

nat:
- `PREROUTING -m addrtype --dst-type LOCAL -j DOCKER`
- `OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER`
- `POSTROUTING -s S ! -o BR -j MASQUERADE` (not for internal networks)
- `DOCKER -i BR -j RETURN`
- `DOCKER ! -i BR -p PROTO [-d HOST_IP] --dport HOST_PORT -j DNAT --to-destination
  IP:PORT` per published port (`! -i BR` because the userland proxy serves the
  container's own bridge; hairpin NAT is off)

filter:
- `FORWARD -j DOCKER-USER`: the user's rules (`cluster.nodes[].dockerUser`,
  `dataplane.docker_user`), then the Engine's `-j RETURN`
- `FORWARD -j DOCKER-ISOLATION-STAGE-1`
- `FORWARD -o BR -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`
- `FORWARD -o BR -j DOCKER`
- `FORWARD -i BR ! -o BR -j ACCEPT`
- `FORWARD -i BR -o BR -j ACCEPT` (icc=true)
- `DOCKER -d IP ! -i BR -o BR -p PROTO --dport PORT -j ACCEPT` per published port
- `DOCKER-ISOLATION-STAGE-1 -i BR ! -o BR -j DOCKER-ISOLATION-STAGE-2`
- `DOCKER-ISOLATION-STAGE-2 -o BR -j DROP`
- internal networks: `DOCKER-ISOLATION-STAGE-1 ! -d S -i BR -j DROP` and
  `! -s S -o BR -j DROP` (setupInternalNetworkRules; as `iptables -S` prints them): an
  internal network's container has a default route via its gateway in Docker Engine
  20.10 (`dataplane.cni.docker`), so what it sends out is dropped here
- the FORWARD policy DROP, which the daemon sets when it turns ip_forward on.

The userland proxy (`docker-proxy`, libnetwork portmapper) listens on every published host
port; it carries what the NAT rules leave to it: connections to 127.0.0.1 from the host
(`OUTPUT ! -d 127.0.0.0/8`) and a container's to a port its own bridge's container (or
itself) published on the host (hairpin: `DOCKER -i BR -j RETURN`).  It accepts the
connection and opens its own to the container, from the bridge's address: Linux has two
TCP connections there, the simulator one, rewritten, and the trace says so: at OUTPUT
for 127.0.0.1; for the hairpin at INPUT, where docker-proxy's socket takes it and sends
its own from LOCAL_OUT (`proxy_in`), and the container's answer, its destination
restored by conntrack at PREROUTING, is docker-proxy's too, which answers its client
from LOCAL_OUT (`proxy_reply`): no frame goes back out of the bridge port it came in on.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from dataplane import docker_user
from dataplane.conntrack import CtDir, CtState
from dataplane.netfilter import (
    ACCEPT,
    PRIORITY_DSTNAT,
    PRIORITY_FILTER,
    PRIORITY_SRCNAT,
    Accept,
    Drop,
    Hook,
    HookContext,
    HookPoint,
    HookResult,
    Rewrite,
)
from dataplane.netns import Netns
from dataplane.packet import ICMP, IPPROTO_UDP, Packet
from dataplane.trace import DropReason, Trace
from topology.docker import DockerHost, DockerNetwork, PublishedPort
from topology.model import Cluster, Protocol

LOOPBACK_NET = IPv4Network("127.0.0.0/8")
PROXY_TEXT = "docker-proxy -host-ip"  # how a trace says docker-proxy carried it
PROXY_CONNECTION = "docker-proxy's own connection"  # its conntrack entry's NAT note
_PROTO = {6: Protocol.TCP, 17: Protocol.UDP, 132: Protocol.SCTP}


def _host(ctx: HookContext) -> DockerHost:
    runtime = ctx.cluster.docker
    assert runtime is not None
    return runtime.hosts[ctx.netns.node]


def _bridges(host: DockerHost) -> dict[str, DockerNetwork]:
    return {n.bridge: n for n in host.networks}


def _published(host: DockerHost, pkt: Packet) -> PublishedPort | None:
    """The published port a packet is addressed to (protocol, host address, port)."""
    ip = pkt.ip
    if ip is None or isinstance(pkt.l4, ICMP) or ip.proto not in _PROTO:
        return None
    proto = _PROTO[ip.proto]
    for p in host.published():
        if (
            p.protocol is proto
            and p.host_port == pkt.dport
            and (p.host_ip is None or str(p.host_ip) == ip.dst)
        ):
            return p
    return None


def _returned(host: DockerHost, ctx: HookContext) -> bool:
    """Whether nat DOCKER returns the packet before its DNAT rules: `DOCKER -i BR -j
    RETURN` is there for every network that is not internal (`iptables.ProgramChain`),
    so a container's connection to any port published on its host, on its own network
    or another, is docker-proxy's (found by the generator on Engine 20.10, seed 139)."""
    came = _bridges(host).get(ctx.in_if or "")
    return came is not None and not came.internal


def _dnat(pkt: Packet, ctx: HookContext, chain: str) -> HookResult:
    """nat DOCKER, jumped to from `chain` for a local destination."""
    ip = pkt.ip
    if ip is None or not ctx.is_new or not ctx.netns.is_local(ip.dst):
        return ACCEPT
    if chain == "OUTPUT" and IPv4Address(ip.dst) in LOOPBACK_NET:
        return ACCEPT  # `OUTPUT ! -d 127.0.0.0/8`: left to docker-proxy
    host = _host(ctx)
    port = _published(host, pkt)
    if port is None:
        return ACCEPT
    net = host.network(port.network)
    if _returned(
        host, ctx
    ):  # from a bridge: up to the host, where docker-proxy listens
        return Accept(
            f"nat {chain} -m addrtype --dst-type LOCAL -j DOCKER; DOCKER -i"
            f" {net.bridge} -j RETURN: not DNATed, up to docker-proxy on"
            f" {port.host_text}"
        )
    where = f"-d {port.host_ip}/32 " if port.host_ip else ""
    return ctx.dnat(
        pkt,
        str(port.container_ip),
        port.container_port,
        f"nat {chain} -m addrtype --dst-type LOCAL -j DOCKER; DOCKER ! -i {net.bridge}"
        f" -p {port.protocol.lower()} {where}--dport {port.host_port} -j DNAT"
        f" --to-destination {port.container_ip}:{port.container_port}"
        f" ({port.container})",
    )


def prerouting(pkt: Packet, ctx: HookContext) -> HookResult:
    return _dnat(pkt, ctx, "PREROUTING")


def output(pkt: Packet, ctx: HookContext) -> HookResult:
    """nat OUTPUT's jump to DOCKER, then the userland proxy for 127.0.0.1."""
    ip = pkt.ip
    if ip is None or not ctx.is_new:
        return ACCEPT
    if IPv4Address(ip.dst) not in LOOPBACK_NET:
        return _dnat(pkt, ctx, "OUTPUT")
    port = _published(_host(ctx), pkt)
    if port is None or (port.host_ip is not None and port.host_ip not in LOOPBACK_NET):
        return ACCEPT
    return _proxy(pkt, ctx, port, "nat OUTPUT ! -d 127.0.0.0/8: not DNATed")


PROXY = "docker-proxy"
_PROXIED = "docker-proxy connections"  # HookContext.memory: their conntrack tuples


def proxy_in(pkt: Packet, ctx: HookContext) -> HookResult:
    """docker-proxy's socket in the host, for what nat DOCKER returned (hairpin: a
    container to a port published on its own bridge): it accepts the connection and
    sends its own to the container from LOCAL_OUT (`Rewrite.sender`), so no frame is
    bridged back onto the port it came from (`DOCKER -i BR -j RETURN`)."""
    ip = pkt.ip
    if ip is None or not ctx.is_new or ctx.ct is None:
        return ACCEPT
    host = _host(ctx)
    port = _published(host, pkt)
    if port is None or not _returned(host, ctx):
        return ACCEPT
    done = _proxy(pkt, ctx, port, f"docker-proxy's socket {port.host_text} in the host")
    ctx.memory.setdefault(_PROXIED, set()).add(ctx.ct.tuple_orig)
    return Rewrite(done.packet, done.detail, done.diffs, xmit=True, sender=PROXY)


def proxy_reply(pkt: Packet, ctx: HookContext) -> HookResult:
    """The container's answer to docker-proxy's connection (`proxy_in`), its address
    restored by conntrack: docker-proxy takes it and answers its client on the
    client's connection, from LOCAL_OUT."""
    ip = pkt.ip
    ct = ctx.ct
    if (
        ip is None
        or ct is None
        or ctx.ct_dir is not CtDir.REPLY
        or ct.tuple_orig not in ctx.memory.get(_PROXIED, ())
        or ctx.netns.is_local(ip.dst)
    ):
        return ACCEPT
    # docker-proxy's UDP listener (cmd/docker-proxy udp_proxy.go: `net.ListenUDP` on
    # the published host address, 0.0.0.0 unless one is given) answers by WriteToUDP
    proto, _, _, asked, asked_port = ct.tuple_orig
    unbound = proto == IPPROTO_UDP and not any(
        p.host_port == asked_port and p.host_ip is not None and str(p.host_ip) == asked
        for p in _host(ctx).published()
        if p.protocol is Protocol.UDP
    )
    return Rewrite(
        pkt,
        f"{PROXY}: the answer on its own connection; it answers its client"
        f" {ip.dst}:{pkt.dport} on the client's connection",
        xmit=True,
        sender=PROXY,
        unbound=unbound,
    )


def _proxy(pkt: Packet, ctx: HookContext, port: PublishedPort, why: str) -> Rewrite:
    """docker-proxy's two connections as one: to the container, from the address of the
    bridge the container is on."""
    ip = pkt.ip
    assert ip is not None
    net = _host(ctx).network(port.network)
    done = ctx.dnat(
        pkt,
        str(port.container_ip),
        port.container_port,
        f"{why}; {PROXY_TEXT} {port.host_ip or '0.0.0.0'} -host-port"
        f" {port.host_port} -container-ip {port.container_ip} -container-port"
        f" {port.container_port}: accepts {ip.dst}:{port.host_port} and connects to"
        f" {port.container_ip}:{port.container_port} ({port.container}) from"
        f" {net.gateway} (two connections in Linux, one rewritten here)",
    )
    after = ctx.snat(done.packet, str(net.gateway), PROXY_CONNECTION)
    return Rewrite(after.packet, done.detail, (*done.diffs, *after.diffs))


def through_proxy(trace: Trace) -> bool:
    """Whether docker-proxy carried the trace's connection (its own connection to the
    container has another source port than the client's, in Linux)."""
    return any(PROXY_TEXT in h.detail for h in trace.hops)


def postrouting(pkt: Packet, ctx: HookContext) -> HookResult:
    """nat POSTROUTING: `-s S ! -o BR -j MASQUERADE` per non-internal network."""
    ip = pkt.ip
    if ip is None or not ctx.is_new or ctx.out_if is None or ctx.bridged:
        return ACCEPT
    src = IPv4Address(ip.src)
    for net in _host(ctx).networks:
        if src in net.subnet and ctx.out_if != net.bridge and not net.internal:
            if ctx.netns.is_local(ip.src):
                return ACCEPT
            to = ctx.netns.source_for(ctx.out_if, ip.dst)
            return ctx.snat(
                pkt,
                to,
                f"nat POSTROUTING -s {net.subnet} ! -o {net.bridge} -j MASQUERADE"
                f" {ip.src} -> {to}",
            )
    return ACCEPT


def _deny(rule: str, why: str) -> Drop:
    return Drop(f"denied by Docker's filter {rule} ({why})", DropReason.FILTER, rule)


def forward(pkt: Packet, ctx: HookContext) -> HookResult:
    """filter FORWARD as Docker builds it (the module docstring), first match wins:
    `-j DOCKER-USER` first (the user's rules, `dataplane.docker_user`), then Docker's."""
    ip = pkt.ip
    if ip is None:
        return ACCEPT
    host = _host(ctx)
    # docker-proxy's connections are the host's own in Linux (INPUT, then OUTPUT): no
    # FORWARD rule sees them, the user's neither; here one rewritten connection crosses
    proxied = ctx.ct is not None and PROXY_CONNECTION in ctx.ct.nat_comment
    user = None if proxied else docker_user.walk(host.user_rules, pkt, ctx)
    if isinstance(user, (Accept, Drop)):
        return user
    done = _docker_forward(pkt, ctx, host)
    if user is None:  # an empty DOCKER-USER: not worth a word
        return done
    if isinstance(done, Drop):
        return replace(done, reason=f"{user}; {done.reason}")
    return Accept(f"{user}; {done.detail}", done.policy)


def _docker_forward(pkt: Packet, ctx: HookContext, host: DockerHost) -> Accept | Drop:
    """Docker's own FORWARD rules after DOCKER-USER returned."""
    ip = pkt.ip
    assert ip is not None
    bridges = _bridges(host)
    i, o = ctx.in_if, ctx.out_if
    into, out_of = bridges.get(o or ""), bridges.get(i or "")
    # DOCKER-ISOLATION-STAGE-1:
    if (
        out_of is not None
        and out_of.internal
        and IPv4Address(ip.dst) not in out_of.subnet
    ):
        return _deny(
            f"DOCKER-ISOLATION-STAGE-1 ! -d {out_of.subnet} -i {out_of.bridge} -j DROP",
            f"network {out_of.name} is internal",
        )
    if into is not None and into.internal and IPv4Address(ip.src) not in into.subnet:
        return _deny(
            f"DOCKER-ISOLATION-STAGE-1 ! -s {into.subnet} -o {into.bridge} -j DROP",
            f"network {into.name} is internal",
        )
    if out_of is not None and o != i and into is not None:
        return _deny(
            f"DOCKER-ISOLATION-STAGE-2 -o {into.bridge} -j DROP",
            f"from network {out_of.name} ({out_of.bridge}) to network {into.name}:"
            " Docker isolates networks from each other; DOCKER-ISOLATION-STAGE-1"
            f" -i {out_of.bridge} ! -o {out_of.bridge} -j DOCKER-ISOLATION-STAGE-2",
        )
    if into is not None:
        if ctx.ct_state in (CtState.ESTABLISHED, CtState.RELATED):
            return Accept(
                f"filter FORWARD -o {into.bridge} -m conntrack --ctstate"
                " RELATED,ESTABLISHED -j ACCEPT"
            )
        if i == o:
            return Accept(f"filter FORWARD -i {o} -o {o} -j ACCEPT (icc)")
        return _docker_chain(pkt, ctx, into)
    if out_of is not None:
        return Accept(
            f"filter FORWARD -i {out_of.bridge} ! -o {out_of.bridge} -j ACCEPT"
        )
    return _deny("FORWARD policy DROP", "no Docker rule accepts it")


def _docker_chain(pkt: Packet, ctx: HookContext, net: DockerNetwork) -> Accept | Drop:
    """filter DOCKER: accept a published port of a container on `net`, else fall back
    to the FORWARD policy."""
    ip = pkt.ip
    assert ip is not None
    proto = _PROTO.get(ip.proto)
    host = _host(ctx)
    for p in host.published():
        if (
            p.network == net.name
            and str(p.container_ip) == ip.dst
            and p.protocol is proto
            and p.container_port == pkt.dport
        ):
            return Accept(
                f"filter FORWARD -o {net.bridge} -j DOCKER; DOCKER -d {p.container_ip}/32"
                f" ! -i {net.bridge} -o {net.bridge} -p {p.protocol.lower()} --dport"
                f" {p.container_port} -j ACCEPT"
            )
    return _deny(
        "FORWARD policy DROP",
        f"filter FORWARD -o {net.bridge} -j DOCKER: the DOCKER chain accepts only"
        f" published ports, and {ip.dst}:{pkt.dport} on network {net.name} is not one",
    )


NAMES = (
    "docker-nat-prerouting", "docker-nat-output", "docker-filter", "docker-masq",
    PROXY, "docker-proxy-reply",
)  # fmt: skip


def hooks(cluster: Cluster, ns: Netns) -> list[Hook]:
    """The Docker host's iptables, as hooks of its namespace."""
    return [
        Hook(
            HookPoint.PREROUTING, PRIORITY_DSTNAT, NAMES[0], prerouting, new_only=True
        ),
        Hook(HookPoint.OUTPUT, PRIORITY_DSTNAT, NAMES[1], output, new_only=True),
        Hook(HookPoint.FORWARD, PRIORITY_FILTER, NAMES[2], forward),
        Hook(
            HookPoint.POSTROUTING, PRIORITY_SRCNAT, NAMES[3], postrouting, new_only=True
        ),
        Hook(HookPoint.INPUT, PRIORITY_FILTER, NAMES[4], proxy_in, new_only=True),
        # after the connection's NAT has restored the reply's destination: the replies
        Hook(HookPoint.PREROUTING, PRIORITY_DSTNAT + 1, NAMES[5], proxy_reply),
    ]
