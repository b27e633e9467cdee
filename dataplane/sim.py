"""The public Python API: a simulator of one cluster that probes, sends and hooks.

    >>> from dataplane import Simulator                                # doctest: +SKIP
    >>> sim = Simulator.from_file("scenarios/cross-node-vxlan.yaml")   # doctest: +SKIP
    >>> trace = sim.probe("default/a", "default/c", port=80)           # doctest: +SKIP
    >>> trace.verdict, len(trace.hops)                                 # doctest: +SKIP

The CLI and the scenario runner use exactly this.  Every walk starts from a clean state
(cold neighbour caches and bridge FDBs, no conntrack entries: the assumption is written
into the trace), so a probe's trace never depends on the steps before it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dataplane import docker_dns  # noqa: F401  (registers the embedded DNS)
from dataplane.addrtype import connected_peer
from dataplane.cni import mode_name, plugin_of
from dataplane.dns import (  # also registers the CoreDNS application
    DNS_PORT,
    PROBE_QUERY,
    answered,
    resolv_conf,
    resolve_by_dns,
)
from dataplane.emission import Out, Xmit
from dataplane.fabric import Fabric, build_fabric, layout_of, pod_netns_id
from dataplane.netfilter import Hook, HookContext, HookFn, HookPoint
from dataplane.netns import Netns, NetnsKind
from dataplane.packet import (
    ICMP,
    ICMP_ECHO_REQUEST,
    IP,
    IP_HLEN,
    IPPROTO_ICMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    L4,
    SCTP,
    TCP,
    UDP,
    ZERO_MAC,
    Packet,
)
from dataplane.stack import output_source
from dataplane.trace import Hop, Trace
from dataplane.walker import Client, Walker, WalkState
from topology import names
from topology.dockercluster import lookup, serves_dns
from topology.endpoint import (
    Endpoint,
    EndpointKind,
    did_you_mean,
    is_bare,
    qualify,
    resolve_endpoint,
)
from topology.errors import TopologyError
from topology.model import Cluster, Protocol

EPHEMERAL_PORT = 40000  # the probing socket's source port (and ICMP echo id)
PING_DATA = 56  # `ping`'s default payload: an 84-byte IP packet
PROTO_NUMBERS = {
    Protocol.TCP: IPPROTO_TCP,
    Protocol.UDP: IPPROTO_UDP,
    Protocol.SCTP: IPPROTO_SCTP,
    Protocol.ICMP: IPPROTO_ICMP,
}
FRESH_STATE = (
    "assumed: every walk starts with empty neighbour caches, bridge FDBs and "
    "conntrack tables"
)


class Simulator:
    """One cluster, its dataplane, and the walks over it."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.user_hooks: list[tuple[Hook, str | None]] = []
        self.fabric: Fabric = build_fabric(cluster)
        self._layout = layout_of(cluster)

    @classmethod
    def from_file(cls, path: str | Path) -> Simulator:
        from topology.loader import load_scenario

        scenario, _warnings = load_scenario(path)
        return cls(scenario.cluster)

    # -- changing the cluster --------------------------------------------------------------
    def update(self, cluster: Cluster) -> None:
        """Take a changed cluster; devices are rebuilt only if pods or nodes moved."""
        layout = layout_of(cluster)
        if layout != self._layout:
            self.fabric = build_fabric(cluster, self.user_hooks)
            self._layout = layout
        else:
            self.fabric.cluster = cluster
        self.cluster = cluster

    def add_hook(
        self,
        point: HookPoint | str,
        fn: HookFn,
        priority: int = 0,
        name: str | None = None,
        node: str | None = None,
        new_only: bool = False,
    ) -> Hook:
        """Register `fn` at `point` on every node (or on `node`); returns the hook.
        `new_only`: `fn` sees only the first packet of each connection, as a rule of the
        `nat` table or one matching `--ctstate NEW` (`Hook.new_only`)."""
        label = name or str(getattr(fn, "__name__", "hook"))
        hook = Hook(HookPoint(point), priority, label, fn, new_only)
        self.user_hooks.append((hook, node))
        self.fabric.add_hook(hook, node)
        return hook

    def remove_hook(self, name: str) -> None:
        self.user_hooks = [(h, n) for h, n in self.user_hooks if h.name != name]
        self.fabric.remove_hook(name)

    # -- endpoints -------------------------------------------------------------------------
    def resolve(self, text: str) -> Endpoint:
        return resolve_endpoint(self.cluster, text)

    def qualify(self, text: str, namespace: str, src: str | None = None) -> str:
        """The full endpoint text for `text` given on the command line with `-n
        namespace` (kubectl's habit); `src` is the source when `text` is a destination.

        A bare name (no `/`, not an address, not `localhost`) is, in this order: the pod
        NAME of `namespace`; for a destination, a DNS name that kube-dns answers from the
        source pod (its search list: a Service of the source's namespace `NAME`,
        `NAME.NS`, `NAME.NS.svc.cluster.local`, `A-B-C-D.NS.pod...`); a name that ends
        in `.` is a DNS name as written, answered or not.  Any other bare name is an
        error that lists the close matches, rather than a walk that ends NXDOMAIN.
        `pod/NAME` and `svc/NAME` gain the namespace; other forms are kept as they are.
        """
        full = qualify(self.cluster, text, namespace)
        if full != text or not is_bare(text) or text.endswith("."):
            return full
        cluster = self.cluster
        no_pod = f"endpoint {text!r}: no pod {text!r} in namespace {namespace!r}"
        hint = did_you_mean(cluster, text, namespace)
        if src is None:
            raise TopologyError(f"{no_pod}, and a DNS name cannot send; {hint}")
        source = self.resolve(src)
        pod = source.pod
        invalid = names.dns_name(text)
        if cluster.docker is not None and invalid is None:
            # a Docker host: the embedded DNS (127.0.0.11) of the container's networks
            if pod is None or not serves_dns(cluster.docker, pod):
                why = (
                    f"{source.text} has no embedded DNS (Docker serves 127.0.0.11 on "
                    "user-defined networks only)"
                )
            elif lookup(cluster.docker, pod, text):
                return text
            else:
                why = f"Docker's embedded DNS answers no {text!r} to {source.text}"
            raise TopologyError(
                f"endpoint {text!r}: not a name of this cluster's endpoints (a container"
                f" is container/NAME), and {why}"
            )
        if invalid is not None:
            why = f"{invalid} either"
        elif not cluster.config.dns:
            why = "the cluster runs no kube-dns (cluster.dns is false)"
        elif pod is None or pod.host_network:
            why = (
                f"{source.text} does not resolve names through kube-dns (only pods on "
                "the pod network do)"
            )
        elif answered(cluster, pod, text) is not None:
            return text
        else:
            tried = ", ".join(resolv_conf(cluster, pod).candidates(text))
            why = f"kube-dns answers none of {tried} (the search list of {pod.key})"
        raise TopologyError(f"{no_pod}, and {why}; {hint}")

    def netns_of(self, ep: Endpoint) -> Netns:
        """The namespace an endpoint sends from."""
        if ep.pod is not None:
            return self.fabric.netns[pod_netns_id(ep.pod)]
        if ep.kind is EndpointKind.NODE and ep.node is not None:
            return self.fabric.netns[ep.node.name]
        if ep.kind is EndpointKind.EXTERNAL and ep.external is not None:
            return self.fabric.netns[f"external:{ep.external.name}"]
        hint = ""
        if is_bare(ep.text):  # scenario files name pods NS/POD
            hint = f"; {did_you_mean(self.cluster, ep.text, 'default')}"
        raise TopologyError(
            f"endpoint {ep.text!r} cannot send (use a pod, a container, "
            f"node/NAME or external/NAME){hint}"
        )

    def address_of(self, ep: Endpoint, src: Endpoint) -> str:
        """The destination address of an endpoint, as seen from `src`."""
        same_pod = (
            src.pod is not None and ep.pod is not None and src.pod.key == ep.pod.key
        )
        if ep.kind is EndpointKind.CONTAINER and same_pod:
            return "127.0.0.1"
        if ep.kind is EndpointKind.DNS:
            raise TopologyError(
                f"endpoint {ep.text!r}: a DNS name has an address only once a probe "
                "has resolved it through kube-dns"
            )
        if ep.service is not None and ep.ip is None:
            raise TopologyError(
                f"endpoint {ep.text!r}: Service {ep.service.key} is headless "
                "(clusterIP: None) and has no ClusterIP; probe its DNS name "
                f"{ep.service.name}.{ep.service.namespace} for its pods' addresses"
            )
        if ep.ip is None:
            raise TopologyError(f"endpoint {ep.text!r} has no address")
        return str(ep.ip)

    def resolve_port(
        self, port: int | str | None, dst: Endpoint, protocol: Protocol
    ) -> int:
        if protocol is Protocol.ICMP:
            return 0
        if port is None:
            raise TopologyError(f"a {protocol.value} probe needs a port")
        if isinstance(port, int):
            return port
        if dst.pod is not None:
            number = dst.pod.named_port(port, protocol)
            if number is not None:
                return number
            names = sorted({p.name for p in dst.pod.ports() if p.name})
            raise TopologyError(
                f"port {port!r} is not a {protocol.value} port of pod "
                f"{dst.pod.key} (its named ports: "
                f"{', '.join(names) or 'none'})"
            )
        if dst.service is not None:
            for sp in dst.service.ports:
                if sp.name == port and sp.protocol is protocol:
                    return sp.port
        raise TopologyError(
            f"port {port!r}: a named port needs a pod or a Service as destination"
        )

    # -- walks -----------------------------------------------------------------------------
    def probe(
        self,
        src: str,
        dst: str,
        port: int | str | None = None,
        protocol: Protocol | str = Protocol.TCP,
        *,
        ttl: int = 64,
        size: int | None = None,
        df: bool | None = None,
        capture: bool = True,
    ) -> Trace:
        """Send the first packet of a connection from `src` to `dst` and walk it, and its
        reply, through the dataplane.

        A DNS name is first resolved through kube-dns (`dataplane.dns`): the query and its
        answer walk the dataplane in the same trace, before the connection.
        `capture=False` keeps no frames for pcap (the same hops, a faster walk)."""
        proto = Protocol(protocol)
        if not 1 <= ttl <= 255:
            raise TopologyError(
                f"ttl {ttl} is out of range (allowed: 1-255, as IP_TTL)"
            )
        if size is not None and not 28 <= size <= 65535:
            raise TopologyError(
                f"size {size} is out of range (allowed: 28-65535 bytes)"
            )
        s, d = self.resolve(src), self.resolve(dst)
        ns = self.netns_of(s)
        trace = self.new_trace(f"{proto.value} {s.text} -> {d.text}")
        state = WalkState()
        if d.kind is EndpointKind.DNS:
            answer = resolve_by_dns(self, s, d, trace, state)
            if answer is None:
                return trace
            d = answer
        dst_ip = self.address_of(d, s)
        dport = self.resolve_port(port, d, proto)
        pkt = probe_packet(proto, dst_ip, dport, ttl, size, df)
        trace.title += f":{dport}" if dport else ""
        pkt, dst_ip, dport = self.connect(ns, pkt, trace)
        peer = connected_peer(dst_ip)
        client = Client(ns.id, PROTO_NUMBERS[proto], EPHEMERAL_PORT, peer, dport)
        return self.walk(
            trace.title, [Out(pkt, ns.id)], client, state, trace, capture=capture
        )

    def connect(self, ns: Netns, pkt: Packet, trace: Trace) -> tuple[Packet, str, int]:
        """The probe's first packet as the client's socket sends it: translated by a
        CNI's socket-LB (Cilium's `cil_sock4_connect`), the hop recorded; else as it is.
        Returns the packet and the address and port the socket is connected to."""
        translate = plugin_of(self.cluster).connect
        ip = pkt.ip
        assert ip is not None
        if translate is None or ns.kind is not NetnsKind.POD:
            return pkt, ip.dst, pkt.dport
        src = output_source(ns, ip.dst) or ""
        ctx = HookContext(ns, HookPoint.OUTPUT, self.cluster)
        done = translate(ns, pkt.with_ip(src=src), ctx)
        if done is None:
            return pkt, ip.dst, pkt.dport
        out, detail, diffs, endpoint = done
        trace.hops.append(
            Hop(len(trace.hops) + 1, ns.node, ns.label, "", "connect", detail, out,
                diffs, point="POST_XLATE_FWD", program="cil_sock4_connect")
        )  # fmt: skip
        trace.endpoint = endpoint
        out = out.with_ip(src=ip.src)  # the source is still the kernel's to pick
        assert out.ip is not None
        return out, out.ip.dst, out.dport

    def send(self, at: str, pkt: Packet, state: WalkState | None = None) -> Trace:
        """Walk a crafted packet that leaves `at` (a pod, node or external host).

        A packet with an Ethernet header leaves `eth0` as it is; one without goes through
        the sender's IP layer, which fills what the kernel would (source, link header).
        """
        ep = self.resolve(at)
        ns = self.netns_of(ep)
        ip = pkt.ip
        if ip is not None and ip.src in ("", "0.0.0.0") and pkt.eth is None:
            # What the sender's IP layer will fill in (shown in the title as sent).
            src = output_source(ns, ip.dst)
            pkt = pkt.with_ip(src=src or "0.0.0.0")
        elif ip is not None and ip.src == "":
            pkt = pkt.with_ip(src="0.0.0.0")
        ip = pkt.ip
        client = None
        if ip is not None and pkt.l4 is not None:
            client = Client(ns.id, ip.proto, pkt.sport, ip.dst, pkt.dport)
        title = f"send at {ep.text}: {pkt.summary()}"
        first: Out | Xmit = (
            Out(pkt, ns.id, raw=True) if pkt.eth is None else Xmit(pkt, ns.id, "eth0")
        )
        return self.walk(title, [first], client, state)

    def fill_frame(self, at: str, pkt: Packet) -> Packet:
        """A crafted frame for `at`'s eth0 with the source MAC and address the user left
        out (00:00:00:00:00:00, 0.0.0.0) taken from that interface, as scapy's `sendp`
        does; a packet without a link header is returned as it is."""
        if pkt.eth is None:
            return pkt
        eth0 = self.netns_of(self.resolve(at)).interfaces["eth0"]
        if pkt.eth.src == ZERO_MAC:
            pkt = pkt.with_eth(eth0.mac, pkt.eth.dst)
        if pkt.ip is not None and pkt.ip.src == "0.0.0.0" and eth0.primary is not None:
            pkt = pkt.with_ip(src=str(eth0.primary))
        return pkt

    def walk(
        self,
        title: str,
        first: list[Out | Xmit],
        client: Client | None,
        state: WalkState | None = None,
        trace: Trace | None = None,
        *,
        capture: bool = True,
    ) -> Trace:
        """Walk `first` from `state` (None: a fresh one), recording into `trace` (None: a
        new one) after the hops it already holds (`capture=False`: without frames)."""
        if trace is None:
            trace = (
                self.new_trace(title)
                if state is None
                else Trace(title, mode=mode_name(self.cluster))
            )
        trace.cluster = self.cluster
        walker = Walker(
            self.fabric, self.cluster, trace, state, client, capture=capture
        )
        walker.run(list(first))
        observe = plugin_of(self.cluster).observe
        if observe is not None:
            trace.hops[:] = observe(trace.hops)
        return trace

    def new_trace(self, title: str) -> Trace:
        """An empty trace for walks that start from a fresh state."""
        trace = Trace(title, mode=mode_name(self.cluster))
        trace.assumptions.append(FRESH_STATE)
        return trace


UDP_PROBE_DATA = b"dataplane probe\n"  # a UDP probe's payload (to port 53: PROBE_QUERY)


def probe_packet(
    proto: Protocol,
    dst: str,
    dport: int,
    ttl: int = 64,
    size: int | None = None,
    df: bool | None = None,
) -> Packet:
    """The first packet of a probe: SYN, a datagram, INIT or an echo request.

    `size` is the IP total length (as `ping -s` plus 28); `df` defaults to the kernel's
    path-MTU discovery (set for TCP and SCTP, clear for UDP datagrams and ping).
    """
    l4: L4
    if proto is Protocol.TCP:
        l4 = TCP(EPHEMERAL_PORT, dport, "S", 1)
    elif proto is Protocol.UDP:
        l4 = UDP(EPHEMERAL_PORT, dport)
    elif proto is Protocol.SCTP:
        l4 = SCTP(EPHEMERAL_PORT, dport, "INIT", 0x1234)
    else:
        l4 = ICMP(ICMP_ECHO_REQUEST, 0, EPHEMERAL_PORT, 1)
    if df is None:
        df = proto in (Protocol.TCP, Protocol.SCTP)
    base = Packet(ip=IP("0.0.0.0", dst, PROTO_NUMBERS[proto], ttl=ttl, df=df), l4=l4)
    if proto is Protocol.ICMP and size is None:
        size = IP_HLEN + 8 + PING_DATA
    if size is not None:
        pad = size - base.ip_len()
        if pad < 0:
            raise TopologyError(
                f"size {size} is smaller than the headers ({base.ip_len()} bytes)"
            )
        base = replace(base, data=bytes(pad))
    elif proto is Protocol.UDP and dport == DNS_PORT:
        base = replace(base, app=PROBE_QUERY)  # a valid DNS message, as `dig` sends
    elif proto is Protocol.UDP:
        base = replace(base, data=UDP_PROBE_DATA)
    return base
