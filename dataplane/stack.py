"""The IP layer of a namespace: receive, forward, output, ARP and the answering sockets.

The order of checks is the kernel's (net/ipv4/ip_input.c, ip_forward.c, ip_output.c):
PREROUTING, the route decision (local or forward), INPUT or — in `ip_forward()` — the TTL
check (ICMP time exceeded), the DF/MTU check (ICMP fragmentation needed), the TTL
decrement, FORWARD, then `ip_output()`: POSTROUTING, conntrack confirm, fragmentation and the
neighbour lookup (ARP; packets wait in the neighbour's queue until the reply comes).  Local
output routes, runs OUTPUT (kube-proxy's DNAT for the node's own traffic) and refuses a DF
packet larger than the route's MTU with EMSGSIZE, as `ping -M do` shows.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from dataplane import sockets
from dataplane.addrtype import (
    ANY,
    Refusal,
    connected_peer,
    is_multicast,
    local_send,
    multicast_mac,
    taken_locally,
)
from dataplane.conntrack import CtDir, CtState
from dataplane.emission import Bridged, Emission, Out, Xmit
from dataplane.flowhash import flow_of
from dataplane.icmp_limit import (
    ICMP_RATELIMIT_MS,
    XRLIM_BURST_FACTOR,
    is_rate_limited,
    redirect_allowed,
    spend_all,
    take_route_error_token,
    take_token,
)
from dataplane.netfilter import (
    Accept,
    Drop,
    Hook,
    HookContext,
    HookPoint,
    Netfilter,
    Reject,
    Rewrite,
    rewrite_dst,
    rewrite_src,
)
from dataplane.netns import Kind, Netns
from dataplane.packet import (
    ARP,
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST,
    ETH_P_ARP,
    ICMP,
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_REDIRECT,
    ICMP_TIME_EXCEEDED,
    IP,
    IP_HLEN,
    IPPROTO_ICMP,
    REDIRECT_HOST,
    UNREACH_FRAG_NEEDED,
    UNREACH_HOST,
    UNREACH_NET,
    ZERO_MAC,
    Ether,
    Packet,
    icmp_name,
)
from dataplane.pmtu import path_mtu
from dataplane.routing import Route, multipath
from dataplane.trace import DropReason, FieldDiff, Verdict

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.walker import Walker


class Stack:
    """The IP layer; one instance serves every namespace of a walk."""

    def __init__(self, walker: Walker) -> None:
        self.w = walker

    # -- netfilter -------------------------------------------------------------------------
    def context(self, ns: Netns, point: HookPoint) -> HookContext:
        """A packet's first hook context in `ns`, with what hooks keep across the walk."""
        state = self.w.state
        return HookContext(
            ns,
            point,
            self.w.cluster,
            affinity=state.affinity,
            memory=state.hook_memory,
        )

    def hooks(
        self,
        ns: Netns,
        point: HookPoint,
        pkt: Packet,
        ctx: HookContext | None,
        in_if: str | None = None,
        out_if: str | None = None,
    ) -> tuple[Packet | None, HookContext | None]:
        """Run one hook point; returns the (possibly rewritten) packet or None if dropped.
        `in_if`, `out_if`: the interfaces the context now names (None: as they were)."""
        nf = ns.hooks
        if not isinstance(nf, Netfilter):
            return pkt, ctx
        if ctx is None:
            ctx = self.context(ns, point)
        else:
            ctx.point = point
        if in_if is not None:
            ctx.in_if = in_if
        if out_if is not None:
            ctx.out_if = out_if
        chain = nf.compiled[point]
        if chain.dst_nat and ctx.ct is None:
            self.track(ns, pkt, ctx)
        if not ctx.is_new:
            chain = nf.known[point]  # a known connection's: no `new_only` hooks
        ct = ctx.ct
        out = self.run_chain(ns, point, chain.before, pkt, ctx) if chain.before else pkt
        if out is None or ctx.xmit:
            return out, ctx  # dropped, or stolen by a hook (`Rewrite.xmit`)
        if chain.nat:
            if ct is not None and (
                ct.dnat or ct.snat or ctx.ct_state is CtState.RELATED
            ):
                out = self.conntrack_nat(ns, out, ctx, chain.dst_nat)  # a NATed one
            if chain.after:
                out = self.run_chain(ns, point, chain.after, out, ctx)
                if out is None or ctx.xmit:
                    return out, ctx
        # nf_conntrack_confirm(): only a packet of the original direction inserts its
        # connection (an ICMP error attached in the reply direction never does).
        if (
            chain.confirms
            and ct is not None
            and (ctx.ct_state is not CtState.RELATED or ctx.ct_dir is CtDir.ORIGINAL)
        ):
            self.w.state.ct(ns.id).confirm(ct)
        return out, ctx

    def run_chain(
        self,
        ns: Netns,
        point: HookPoint,
        chain: tuple[Hook, ...],
        pkt: Packet,
        ctx: HookContext,
    ) -> Packet | None:
        """Run `chain`'s hooks in order; the packet as they leave it, None if dropped."""
        w = self.w
        for hook in chain:
            res = hook.fn(pkt, ctx)
            if res is None:
                continue
            if isinstance(res, Accept):
                if res.detail:
                    w.record(
                        ns,
                        ctx.in_port or "",
                        point.value,
                        f"{hook.name}: {res.detail}",
                        pkt,
                    )
                if res.policy and w.trace.policy is None:
                    w.trace.policy = res.policy
                continue
            if isinstance(res, Drop):
                w.record(
                    ns,
                    ctx.in_port or "",
                    point.value,
                    f"{hook.name}: {res.reason}",
                    pkt,
                    reason=res.code,
                )
                if res.policy:
                    w.trace.policy = res.policy
                if isinstance(res, Reject):
                    w.emit(self.icmp_error(ns, pkt, res.icmp_type, res.icmp_code))
                return None
            if isinstance(res, Rewrite):
                w.record(
                    ns, "", "nat", f"{point.value} {res.detail}", res.packet, res.diffs
                )
                if res.endpoint is not None:
                    w.trace.endpoint = res.endpoint
                pkt = res.packet
                if res.xmit:
                    ctx.xmit, ctx.sender = True, res.sender
                    ctx.unbound = res.unbound
                    return pkt
            else:  # a hook returned a rewritten packet
                w.record(
                    ns,
                    "",
                    "hook",
                    f"{point.value} {hook.name}: rewrote the packet",
                    res,
                    diff(pkt, res),
                )
                pkt = res
        return pkt

    def track(self, ns: Netns, pkt: Packet, ctx: HookContext) -> None:
        table = self.w.state.ct(ns.id)
        looped = (
            ctx.in_if is not None and ns.interfaces[ctx.in_if].kind is Kind.LOOPBACK
        )
        entry, d, state = table.lookup_looped(pkt) if looped else table.lookup(pkt)
        ctx.ct, ctx.ct_dir, ctx.ct_state = entry, d, state
        if state is CtState.NEW:
            detail = f"NEW {entry.orig_text()}"
        else:
            detail = f"{state.value} ({d.value} direction of {entry.orig_text()})"
        self.w.record(ns, "", "conntrack", detail, pkt)

    def conntrack_nat(
        self, ns: Netns, pkt: Packet, ctx: HookContext, dst_nat: bool
    ) -> Packet:
        """Apply a known connection's NAT to its later packets (nf_nat_packet)."""
        ct = ctx.ct
        attached = ctx.ct_state is CtState.RELATED  # may be unconfirmed (icmp_send)
        if ct is None or not (ct.confirmed or attached) or pkt.ip is None:
            return pkt
        orig = ct.tuple_orig
        res: Rewrite | None = None
        if ctx.ct_state is CtState.RELATED:
            res = self.related_nat(pkt, ctx, dst_nat)
        elif dst_nat and ctx.ct_dir is CtDir.ORIGINAL and ct.dnat:
            res = rewrite_dst(pkt, ct.dnat[0], ct.dnat[1], "DNAT (conntrack)")
        elif dst_nat and ctx.ct_dir is CtDir.REPLY and ct.snat:
            res = rewrite_dst(pkt, orig[1], orig[2], "un-SNAT of the reply (conntrack)")
        elif not dst_nat and ctx.ct_dir is CtDir.ORIGINAL and ct.snat:
            res = rewrite_src(pkt, ct.snat[0], ct.snat[1], "SNAT (conntrack)")
        elif not dst_nat and ctx.ct_dir is CtDir.REPLY and ct.dnat:
            res = rewrite_src(pkt, orig[3], orig[4], "un-DNAT of the reply (conntrack)")
        if res is None or not res.diffs:
            return pkt
        self.w.record(ns, "", "nat", res.detail, res.packet, res.diffs)
        return res.packet

    def related_nat(
        self, pkt: Packet, ctx: HookContext, dst_nat: bool
    ) -> Rewrite | None:
        """An ICMP error about a NATed connection: rewrite the quote and the outer address
        back (nf_nat_icmp_reply_translation)."""
        ct = ctx.ct
        l4 = pkt.l4
        assert ct is not None and isinstance(l4, ICMP) and l4.quote is not None
        if ctx.ct_dir is not CtDir.REPLY:
            return None
        orig = ct.tuple_orig
        quote = l4.quote
        diffs: list[FieldDiff] = []
        if dst_nat and ct.snat and pkt.ip is not None and pkt.ip.dst == ct.snat[0]:
            quote = rewrite_src(quote, orig[1], orig[2], "").packet
            diffs.append(FieldDiff("ip.dst", pkt.ip.dst, orig[1]))
            diffs.append(FieldDiff("icmp.quote.ip.src", ct.snat[0], orig[1]))
            pkt = pkt.with_ip(dst=orig[1])
        elif (
            not dst_nat
            and ct.dnat
            and quote.ip is not None
            and quote.ip.dst == ct.dnat[0]
        ):
            quote = rewrite_dst(quote, orig[3], orig[4], "").packet
            diffs.append(FieldDiff("icmp.quote.ip.dst", ct.dnat[0], orig[3]))
            if pkt.ip is not None and pkt.ip.src != orig[3]:
                # "Change outer to look like the reply to an incoming packet": whoever
                # made the error, it comes from the address the client connected to
                # (nf_nat_icmp_reply_translation; why traceroute to a ClusterIP shows
                # the ClusterIP).
                diffs.append(FieldDiff("ip.src", pkt.ip.src, orig[3]))
                pkt = pkt.with_ip(src=orig[3])
        if not diffs:
            return None
        return Rewrite(
            replace(pkt, l4=replace(l4, quote=quote)),
            "reverse NAT of an ICMP error (RELATED)",
            tuple(diffs),
        )

    # -- receive ---------------------------------------------------------------------------
    def receive(
        self, ns: Netns, ifname: str, pkt: Packet, in_port: str | None = None
    ) -> list[Emission]:
        """A frame for this namespace on `ifname` (`in_port`: the bridge port it entered
        by, when `ifname` is a bridge)."""
        iface = ns.interfaces[ifname]
        eth = pkt.eth
        if eth is not None and eth.dst not in (iface.mac, BROADCAST):
            return []  # not our MAC (a flooded frame): the NIC ignores it
        if pkt.arp is not None:
            return self.arp_input(ns, ifname, pkt)
        if pkt.ip is None:
            return []
        pkt = pkt.l3()
        assert pkt.ip is not None
        src = pkt.ip.src
        if is_martian(src, iface.kind):
            # ip_route_input_slow(): a source of 0.0.0.0/8, loopback (off `lo`), broadcast
            # or multicast is a martian and is dropped before any routing.
            self.w.record(
                ns,
                ifname,
                "drop",
                f"martian source {src}",
                pkt,
                reason=DropReason.NOT_FOR_US,
            )
            return []
        ctx: HookContext | None = None
        if isinstance(ns.hooks, Netfilter):
            # nf_defrag_ipv4: a namespace with conntrack reassembles before PREROUTING.
            whole = self.defrag(ns, pkt)
            if whole is None:
                return []
            out, ctx = self.hooks(ns, HookPoint.PREROUTING, whole, None, in_if=ifname)
            if out is None:
                return []
            if ctx is not None and ctx.xmit:  # a proxy's answer (`Rewrite.sender`)
                return self.xmit_stolen(ns, out, ctx)
            dnat = (
                out.ip is not None
                and whole.ip is not None
                and out.ip.dst != whole.ip.dst
            )
            pkt = out
        else:
            dnat = False
        assert pkt.ip is not None
        if ns.is_local(pkt.ip.dst):
            return self.local_in(ns, ifname, pkt, ctx)
        unanswered = taken_locally(ns, pkt.ip.dst)
        if unanswered is not None:
            self.w.record(
                ns, ifname, "drop", unanswered, pkt, reason=DropReason.NOT_FOR_US
            )
            return []
        if dnat and in_port is not None and ctx is not None and eth is not None:
            route = ns.routes.lookup(pkt.ip.dst)
            if route is not None and route.oif == ifname and route.via is None:
                return self.bridged_dnat(ns, ifname, in_port, eth.src, pkt, ctx)
        if not ns.forwarding:
            self.w.record(
                ns,
                ifname,
                "drop",
                f"not for {ns.label} and it does not forward (net.ipv4.ip_forward=0)",
                pkt,
                reason=DropReason.NOT_FOR_US,
            )
            return []
        return self.forward(ns, ifname, pkt, ctx)

    def bridged_dnat(
        self,
        ns: Netns,
        br: str,
        in_port: str,
        src_mac: str,
        pkt: Packet,
        ctx: HookContext,
    ) -> list[Emission]:
        """br_netfilter: a frame whose DNAT (or un-SNAT) points back onto the bridge it came
        from is bridged there, not routed (br_nf_pre_routing_finish, `bridged_dnat`)."""
        assert pkt.ip is not None
        self.w.record(
            ns,
            br,
            "bridge",
            f"br_netfilter: {pkt.ip.dst} is on {br} itself: the "
            "frame is bridged back, not routed (bridged_dnat, no TTL decrement)",
            pkt,
        )

        return self.neigh_output(
            ns,
            br,
            pkt.ip.dst,
            pkt,
            True,
            Bridged(pkt, ns.id, br, in_port, ctx, src_mac),
        )

    def forward(
        self, ns: Netns, in_if: str, pkt: Packet, ctx: HookContext | None
    ) -> list[Emission]:
        ip = pkt.ip
        assert ip is not None
        route = ns.routes.lookup(ip.dst)
        if route is None:
            self.w.record(
                ns,
                "",
                "route",
                f"{ip.dst}: no route (net unreachable)",
                pkt,
                reason=DropReason.NO_ROUTE,
            )
            return self.icmp_error(
                ns, pkt, ICMP_DEST_UNREACH, UNREACH_NET, route_error=True
            )
        if route.nexthops:
            route, why = multipath(route, flow_of(pkt))
            self.w.record(
                ns, "", "route", f"{ip.dst} {route_detail(route)}: {why}", pkt
            )
        else:
            self.w.record(ns, "", "route", f"{ip.dst} {route_detail(route)}", pkt)
        if route.blackhole:
            # fib_lookup -EINVAL -> ip_error(): discarded without an ICMP error
            self.w.record(
                ns,
                "",
                "drop",
                f"blackhole route {route.dst}: discarded silently",
                pkt,
                reason=DropReason.NO_ROUTE,
            )
            return []
        if ip.ttl <= 1:
            self.w.record(
                ns,
                "",
                "drop",
                f"ttl {ip.ttl}: time to live exceeded in transit",
                pkt,
                reason=DropReason.TTL,
            )
            return self.icmp_error(ns, pkt, ICMP_TIME_EXCEEDED, 0)
        mtu = ns.interfaces[route.oif].mtu
        if pkt.ip_len() > mtu and ip.df:
            self.w.record(
                ns,
                route.oif,
                "drop",
                f"{pkt.ip_len()} bytes > mtu {mtu} of {route.oif} with DF set",
                pkt,
                reason=DropReason.MTU,
            )
            return self.icmp_error(ns, pkt, ICMP_DEST_UNREACH, UNREACH_FRAG_NEEDED, mtu)
        back = ns.routes.lookup(ip.src) if route.oif == in_if else None
        if back is not None and back.via is None:
            self.redirect(ns, in_if, pkt, route.via_text or ip.dst)
        pkt = pkt.with_ttl(ip.ttl - 1)
        self.w.record(
            ns,
            "",
            "forward",
            f"ip_forward: ttl {ip.ttl} -> {ip.ttl - 1}",
            pkt,
            (FieldDiff("ip.ttl", str(ip.ttl), str(ip.ttl - 1)),),
        )
        out, ctx = self.hooks(
            ns, HookPoint.FORWARD, pkt, ctx, in_if=in_if, out_if=route.oif
        )
        if out is None:
            return []
        return self.ip_output(ns, out, route, ctx, forwarded=True)

    # -- output ----------------------------------------------------------------------------
    def output(self, ns: Netns, pkt: Packet, raw: bool = False) -> list[Emission]:
        """A packet sent by a socket (or the kernel) of `ns` (`raw`: a crafted one)."""
        ip = pkt.ip
        assert ip is not None
        if ip.dst == ANY and not raw:  # 0.0.0.0 is this host (dataplane.addrtype)
            pkt = pkt.with_ip(dst=connected_peer(ip.dst))
            ip = pkt.ip
            assert ip is not None
        refused = local_send(ns, pkt, raw)
        if refused is not None:
            self.refuse_locally(ns, pkt, refused)
            if not refused.leaves:
                return []
            if not raw:  # a socket's multicast TTL (IP_MULTICAST_TTL, default 1)
                pkt = pkt.with_ttl(1)
                ip = pkt.ip
                assert ip is not None
        route = self.route_out(ns, ip.dst)
        if route is None:
            self.w.record(
                ns,
                "",
                "route",
                f"{ip.dst}: no route: connect() fails with "
                "ENETUNREACH (Network is unreachable)",
                pkt,
                reason=DropReason.NO_ROUTE,
            )
            self.local_error(
                ns, pkt, Verdict.NO_ROUTE, "ENETUNREACH", DropReason.NO_ROUTE
            )
            return []
        if route.blackhole:
            self.w.record(
                ns,
                "",
                "route",
                f"{ip.dst} {route_detail(route)}: connect() fails with EINVAL",
                pkt,
                reason=DropReason.NO_ROUTE,
            )
            self.local_error(ns, pkt, Verdict.NO_ROUTE, "EINVAL", DropReason.NO_ROUTE)
            return []
        if ip.src == "0.0.0.0":
            pkt = pkt.with_ip(src=source_of(ns, route))
        self.w.record(ns, "", "route", f"{ip.dst} {route_detail(route)}", pkt)
        ctx: HookContext | None = None
        if isinstance(ns.hooks, Netfilter):
            out, ctx = self.hooks(ns, HookPoint.OUTPUT, pkt, None, out_if=route.oif)
            if out is None:
                return []
            assert out.ip is not None
            if out.ip.dst != ip.dst:  # DNAT: route again (ip_route_me_harder)
                rerouted = self.route_out(ns, out.ip.dst)
                if rerouted is None:
                    self.w.record(
                        ns,
                        "",
                        "route",
                        f"{out.ip.dst}: no route",
                        out,
                        reason=DropReason.NO_ROUTE,
                    )
                    return []
                route = rerouted
                self.w.record(
                    ns,
                    "",
                    "route",
                    f"{out.ip.dst} {route_detail(route)} (rerouted after DNAT)",
                    out,
                )
            pkt = out
        mtu = dev_mtu = ns.interfaces[route.oif].mtu
        if not raw and pkt.ip is not None:  # a socket: held to the path MTU it learned
            mtu = path_mtu(self.w.state.pmtu, ns.id, pkt.ip.dst, dev_mtu)
        if pkt.ip_len() > mtu and pkt.ip is not None and pkt.ip.df:
            learned = " (path MTU learned from an ICMP)" if mtu < dev_mtu else ""
            self.w.record(
                ns,
                route.oif,
                "drop",
                f"message too long, mtu={mtu}{learned} "
                f"({pkt.ip_len()}-byte packet with DF set): EMSGSIZE",
                pkt,
                reason=DropReason.MTU,
            )
            self.local_error(ns, pkt, Verdict.TOO_BIG, "EMSGSIZE", DropReason.MTU)
            return []
        return self.ip_output(ns, pkt, route, ctx, forwarded=False)

    def route_out(self, ns: Netns, dst: str) -> Route | None:
        return route_out(ns, dst)

    def ip_output(
        self,
        ns: Netns,
        pkt: Packet,
        route: Route,
        ctx: HookContext | None,
        forwarded: bool,
    ) -> list[Emission]:
        out, ctx = self.hooks(ns, HookPoint.POSTROUTING, pkt, ctx, out_if=route.oif)
        if out is None:
            return []
        pkt = out
        assert pkt.ip is not None
        # a group is on the link: no gateway (RTN_MULTICAST)
        nexthop = (
            pkt.ip.dst if is_multicast(pkt.ip.dst) else route.via_text or pkt.ip.dst
        )
        mtu = ns.interfaces[route.oif].mtu
        pieces = [pkt]
        if pkt.frag_max:
            # __ip_finish_output(): a reassembled datagram is always refragmented, at
            # its largest original fragment when that is smaller (ip_do_fragment(),
            # IPCB frag_max_size), so a router keeps the sender's fragment sizes.
            mtu = min(mtu, pkt.frag_max)
        if pkt.ip_len() > mtu:
            pieces = fragment(pkt, mtu)
            self.w.record(
                ns,
                route.oif,
                "fragment",
                f"{pkt.ip_len()} bytes > mtu {mtu}: {len(pieces)} fragments",
                pkt,
            )
        emissions: list[Emission] = []
        for piece in pieces:
            emissions += self.neigh_output(ns, route.oif, nexthop, piece, forwarded)
        return emissions

    # -- neighbours (ARP) ------------------------------------------------------------------
    def neigh_output(
        self,
        ns: Netns,
        oif: str,
        nexthop: str,
        pkt: Packet,
        forwarded: bool,
        bridged: Bridged | None = None,
    ) -> list[Emission]:
        """Give the packet its link header, or queue it behind an ARP request.

        `bridged`: the frame goes back into the bridge's forwarding instead of out of
        `oif` (br_netfilter's bridged DNAT), keeping its sender's MAC.
        """

        iface = ns.interfaces[oif]
        if iface.kind is Kind.LOOPBACK:
            return [Xmit(replace(pkt, eth=Ether(ZERO_MAC, ZERO_MAC)), ns.id, oif)]
        if iface.kind is Kind.IPIP:  # IFF_NOARP, no link header: straight to the tunnel
            return [Xmit(pkt, ns.id, oif)]
        mac = ns.permanent_neigh.get((oif, nexthop)) or self.w.state.neigh.get(
            (ns.id, oif, nexthop)
        )
        if mac is None and is_multicast(nexthop):  # mapped, never asked (arp_mc_map)
            mac = multicast_mac(nexthop)
        if mac is not None:
            return [self.link_out(ns, oif, pkt, mac, bridged)]
        key = (ns.id, oif, nexthop)
        waiting = self.w.state.pending.get(key)
        if waiting is not None:
            waiting.append((pkt, forwarded, bridged))
            return []
        self.w.state.pending[key] = [(pkt, forwarded, bridged)]
        assert pkt.ip is not None
        src = pkt.ip.src if iface.has_addr(pkt.ip.src) else ns.source_for(oif)
        req = Packet(
            eth=Ether(iface.mac, BROADCAST, ETH_P_ARP),
            arp=ARP(ARP_REQUEST, iface.mac, src, ZERO_MAC, nexthop),
        )
        self.w.record(
            ns,
            oif,
            "arp",
            f"who-has {nexthop}? tell {src} (no neighbour entry on {oif})",
            req,
        )
        return [Xmit(req, ns.id, oif)]

    def arp_input(self, ns: Netns, ifname: str, pkt: Packet) -> list[Emission]:

        a = pkt.arp
        iface = ns.interfaces[ifname]
        assert a is not None
        if a.op == ARP_REQUEST:
            if iface.kind is Kind.LOOPBACK:
                return []
            if not ns.is_local(a.pdst) and not self.proxies(ns, ifname, a.pdst):
                return []
            # arp_ignore=0: answer for any local address; the asker is learned on the way.
            self.w.state.neigh[(ns.id, ifname, a.psrc)] = a.hwsrc
            reply = Packet(
                eth=Ether(iface.mac, a.hwsrc, ETH_P_ARP),
                arp=ARP(ARP_REPLY, iface.mac, a.pdst, a.hwsrc, a.psrc),
            )
            self.w.record(
                ns,
                ifname,
                "arp",
                f"who-has {a.pdst} from {a.psrc}: reply {a.pdst} is-at {iface.mac}",
                reply,
            )
            return [
                Xmit(reply, ns.id, ifname),
                *self.flush(ns, ifname, a.psrc, a.hwsrc),
            ]
        if a.op == ARP_REPLY and pkt.eth is not None and pkt.eth.dst == iface.mac:
            self.w.state.neigh[(ns.id, ifname, a.psrc)] = a.hwsrc
            self.w.record(
                ns,
                ifname,
                "arp",
                f"{a.psrc} is-at {a.hwsrc}: neighbour entry REACHABLE on {ifname}",
                pkt,
            )
            return self.flush(ns, ifname, a.psrc, a.hwsrc)
        return []

    def proxies(self, ns: Netns, ifname: str, ip: str) -> bool:
        """proxy_arp on `ifname`: `ip` is routed out of another device, so this one
        answers for it (arp_process -> arp_fwd_proxy, with forwarding on)."""
        if not ns.interfaces[ifname].proxy_arp or not ns.forwarding:
            return False
        route = ns.routes.lookup(ip)
        return route is not None and not route.blackhole and route.oif != ifname

    def flush(self, ns: Netns, ifname: str, ip: str, mac: str) -> list[Emission]:

        waiting = self.w.state.pending.pop((ns.id, ifname, ip), [])
        return [self.link_out(ns, ifname, p, mac, b) for p, _, b in waiting]

    def link_out(
        self, ns: Netns, oif: str, pkt: Packet, mac: str, bridged: Bridged | None
    ) -> Emission:
        """The packet with its link header, out of `oif` (or back into the bridge)."""

        if bridged is not None:
            return bridged._replace(pkt=pkt.with_eth(bridged.src_mac, mac))
        return Xmit(pkt.with_eth(ns.interfaces[oif].mac, mac), ns.id, oif)

    def neigh_failed(self) -> list[Emission]:
        """Every unanswered ARP: the neighbour goes FAILED and its queue is answered."""
        out: list[Emission] = []
        pending, self.w.state.pending = self.w.state.pending, {}
        for (ns_id, oif, ip), waiting in pending.items():
            ns = self.w.fabric.netns[ns_id]
            self.w.record(
                ns,
                oif,
                "arp",
                f"no reply for {ip} after 3 tries: neighbour FAILED",
                reason=DropReason.NEIGH_FAILED,
            )
            for pkt, forwarded, _ in waiting:
                if forwarded:
                    out += self.icmp_error(ns, pkt, ICMP_DEST_UNREACH, UNREACH_HOST)
                else:
                    self.local_error(
                        ns,
                        pkt,
                        Verdict.UNREACHABLE,
                        "EHOSTUNREACH",
                        DropReason.NEIGH_FAILED,
                    )
        return out

    # -- ICMP errors -----------------------------------------------------------------------
    def redirect(self, ns: Netns, in_if: str, pkt: Packet, gateway: str) -> None:
        """ip_forward() -> ip_rt_send_redirect(): the packet goes back out of the interface
        it came in on, to an on-link sender (__mkroute_input: in_dev == out_dev,
        send_redirects=1 by default, fib_validate_source found its route back without a
        gateway): the sender gets an ICMP redirect (ICMP_REDIR_HOST, naming the route's
        next hop) before the packet is forwarded; the redirect resets the sender's ICMP
        error bucket (dataplane.icmp_limit), and only the first one to a sender goes out
        within a walk (ip_rt_redirect_load).  The packet itself is still forwarded."""
        assert pkt.ip is not None
        src = pkt.ip.src
        spend_all(self.w.state.icmp_tokens, ns.id, src)
        if not redirect_allowed(self.w.state.redirects, ns.id, src):
            self.w.record(
                ns,
                in_if,
                "redirect",
                f"back out of {in_if}: {src} was redirected already; no redirect "
                "again so soon (ip_rt_redirect_load)",
                pkt,
            )
            return
        self.w.record(
            ns,
            in_if,
            "redirect",
            f"back out of {in_if}: {src} is on-link, so it gets an ICMP redirect to "
            f"{gateway} (send_redirects=1, ip_rt_send_redirect)",
            pkt,
        )
        # icmp_send() sends it at once, before the packet reaches FORWARD: its output
        # runs here, its frame queued first; the redirect goes back, the packet goes on
        direction = self.w.direction
        for em in self.icmp_error(
            ns, pkt, ICMP_REDIRECT, REDIRECT_HOST, gateway=gateway
        ):
            assert isinstance(em, Out)
            self.w.emit(self.output(ns, em.pkt))
        self.w.direction = direction

    def icmp_error(
        self,
        ns: Netns,
        pkt: Packet,
        type_: int,
        code: int,
        mtu: int = 0,
        route_error: bool = False,  # from ip_error(): a forwarded packet, no route
        gateway: str = "",  # a redirect's better first hop
    ) -> list[Emission]:
        """Answer an offending packet (icmp_send(): never about an ICMP error, only about a
        first fragment; the source is the address the packet was sent to when it was for
        us, else this router's address on the route back)."""

        ip = pkt.ip
        assert ip is not None
        l4 = pkt.l4
        if isinstance(l4, ICMP) and l4.type not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
            return []
        if ip.frag:
            return []
        back = route_out(ns, ip.src)  # the local table too: 127/8 goes back on lo
        if back is None:
            return []
        if ns.is_local(ip.dst):
            # icmp_send(): a packet for us (RTCF_LOCAL, 127/8 included) is answered
            # from its destination
            src = ip.dst
        else:
            src = back.src_text or ns.source_for(back.oif)
        if (
            is_rate_limited(type_, code)
            and not ns.is_local(ip.src)
            and not (take_route_error_token if route_error else take_token)(
                self.w.state.icmp_tokens, ns.id, ip.src
            )
        ):
            self.w.record(
                ns,
                "",
                "ratelimit",
                f"{icmp_name(ICMP(type_, code))} to {ip.src} not sent: rate limited "
                f"(icmpv4_xrlim_allow: {XRLIM_BURST_FACTOR} errors to one destination "
                f"use up its burst, net.ipv4.icmp_ratelimit={ICMP_RATELIMIT_MS})",
                pkt,
                reason=DropReason.ICMP_RATELIMIT,
            )
            if self.w.direction == "request":  # the error would have told the client
                self.w.finish(
                    Verdict.DROPPED,
                    f"the {icmp_name(ICMP(type_, code))} error from {ns.label} was "
                    "rate limited: the client hears nothing",
                    DropReason.ICMP_RATELIMIT,
                )
            return []
        err = Packet(
            ip=IP(src, ip.src, IPPROTO_ICMP, id=self.w.state.ip_id()),
            l4=ICMP(type_, code, mtu=mtu, gateway=gateway, quote=pkt.l3()),
        )
        self.w.direction = "reply"
        assert isinstance(err.l4, ICMP)
        self.w.record(
            ns, "", "icmp", f"{icmp_name(err.l4)} from {src} to {ip.src}", err
        )
        return [Out(err, ns.id)]

    def refuse_locally(
        self, ns: Netns, pkt: Packet, refused: Refusal
    ) -> list[Emission]:
        """A send to a broadcast or multicast destination (dataplane.addrtype); a
        multicast datagram is sent on (`refused.leaves`), unanswered."""
        event = "multicast" if refused.leaves else "drop"
        self.w.record(ns, "", event, refused.detail, pkt, reason=refused.reason)
        if refused.errno:
            self.local_error(ns, pkt, refused.verdict, refused.errno, refused.reason)
        return []

    def local_error(
        self, ns: Netns, pkt: Packet, verdict: Verdict, errno: str, reason: DropReason
    ) -> None:
        client = self.w.client
        if client is not None and client.netns == ns.id:
            self.w.finish(verdict, f"the sending socket got {errno}", reason)

    # -- local delivery --------------------------------------------------------------------
    def local_in(
        self, ns: Netns, ifname: str, pkt: Packet, ctx: HookContext | None
    ) -> list[Emission]:
        whole = self.defrag(ns, pkt)
        if whole is None:
            return []
        pkt = whole
        if isinstance(ns.hooks, Netfilter):
            out, ctx = self.hooks(ns, HookPoint.INPUT, pkt, ctx, in_if=ifname)
            if out is None:
                return []
            if ctx is not None and ctx.xmit:
                return self.xmit_stolen(ns, out, ctx)
            pkt = out
        return sockets.deliver(self.w, ns, ifname, pkt)

    def xmit_stolen(self, ns: Netns, pkt: Packet, ctx: HookContext) -> list[Emission]:
        """A packet a LOCAL_IN hook rewrote and took (IPVS: ip_vs_nat_xmit): routed to its
        new destination, then ip_vs_nat_send_or_cont's `NF_HOOK(LOCAL_OUT)` and
        `dst_output()`, POSTROUTING included.  A packet leaving the host has its TTL
        decremented (__ip_vs_get_out_rt -> decrement_ttl).  A proxy's packet
        (`ctx.sender`) is its own socket's: routed and sent from LOCAL_OUT as any."""
        assert pkt.ip is not None
        if ctx.sender:
            return self.proxy_send(ns, pkt, ctx)
        route = ns.routes.lookup(pkt.ip.dst)
        if route is None or route.blackhole:
            self.w.record(
                ns,
                "",
                "route",
                f"{pkt.ip.dst}: no route (ip_vs_nat_xmit: __ip_vs_get_out_rt fails)",
                pkt,
                reason=DropReason.NO_ROUTE,
            )
            return []
        self.w.record(
            ns,
            "",
            "route",
            f"{pkt.ip.dst} {route_detail(route)} (ip_vs_nat_xmit: routed again)",
            pkt,
        )
        ip = pkt.ip
        if ip.ttl <= 1:
            self.w.record(
                ns,
                "",
                "drop",
                f"ttl {ip.ttl}: time to live exceeded (IPVS decrement_ttl)",
                pkt,
                reason=DropReason.TTL,
            )
            return self.icmp_error(ns, pkt, ICMP_TIME_EXCEEDED, 0)
        pkt = pkt.with_ttl(ip.ttl - 1)
        self.w.record(
            ns,
            "",
            "forward",
            f"IPVS decrement_ttl: ttl {ip.ttl} -> {ip.ttl - 1}",
            pkt,
            (FieldDiff("ip.ttl", str(ip.ttl), str(ip.ttl - 1)),),
        )
        ctx.xmit = False
        out, ctx2 = self.hooks(ns, HookPoint.OUTPUT, pkt, ctx, out_if=route.oif)
        if out is None:
            return []
        return self.ip_output(ns, out, route, ctx2, forwarded=True)

    def proxy_send(self, ns: Netns, pkt: Packet, ctx: HookContext) -> list[Emission]:
        """What a userland proxy sends on its own connection (`Rewrite.sender`): routed
        as a local packet (ip_route_output), LOCAL_OUT, POSTROUTING."""
        assert pkt.ip is not None
        sender, ctx.xmit, ctx.sender = ctx.sender, False, ""
        ctx.in_if = ctx.in_port = None  # a local packet: no input interface
        route = self.route_out(ns, pkt.ip.dst)
        if route is None:
            self.w.record(
                ns, "", "route", f"{pkt.ip.dst}: no route ({sender})", pkt,
                reason=DropReason.NO_ROUTE,
            )  # fmt: skip
            return []
        self.w.record(
            ns, "", "route", f"{pkt.ip.dst} {route_detail(route)} ({sender} sends it)",
            pkt,
        )  # fmt: skip
        unbound, ctx.unbound = ctx.unbound, False
        out, ctx2 = self.hooks(ns, HookPoint.OUTPUT, pkt, ctx, out_if=route.oif)
        if out is None:
            return []
        ct = ctx2.ct if ctx2 is not None else None
        if unbound and ctx2 is not None and ct is not None and out.ip is not None:
            # a datagram of its own socket, not its client's connection's: no NAT
            src, port = source_of(ns, route), ct.tuple_orig[4]
            res = rewrite_src(
                out, src, port,
                f"{sender}'s socket is bound to 0.0.0.0: sendto() from the route's"
                f" source {src}:{port}, not from {ct.tuple_orig[3]} that its client"
                " asked (a datagram of its own, outside the client's connection)",
            )  # fmt: skip
            self.w.record(ns, "", "nat", res.detail, res.packet, res.diffs)
            out = res.packet
            self.track(ns, out, ctx2)  # its own conntrack entry (nf_conntrack_in)
        return self.ip_output(ns, out, route, ctx2, forwarded=False)

    def defrag(self, ns: Netns, pkt: Packet) -> Packet | None:
        """Gather fragments; the whole datagram once the last piece is in (ip_defrag)."""
        ip = pkt.ip
        assert ip is not None
        if pkt.whole is None:
            return pkt
        key = (ns.id, ip.src, ip.dst, ip.id, ip.proto)
        got = self.w.state.frags.setdefault(key, [])
        got.append(pkt)
        need = pkt.whole.ip_len() - IP_HLEN
        if sum(f.frag_len for f in got) < need:
            return None
        del self.w.state.frags[key]
        first = min(got, key=lambda f: f.ip.frag if f.ip else 0)
        assert first.ip is not None
        whole = replace(
            pkt.whole,
            eth=None,
            ip=replace(first.ip, mf=False, frag=0),
            frag_max=max(f.ip_len() for f in got),
        )
        self.w.record(
            ns,
            "",
            "defrag",
            f"{len(got)} fragments reassembled ({whole.ip_len()} bytes)",
            whole,
        )
        return whole


def route_out(ns: Netns, dst: str) -> Route | None:
    """The route of a locally sent packet to `dst` (the `local` table first)."""
    if ns.is_local(dst):  # 127.0.0.0/8 included
        return local_route(dst)
    return ns.routes.lookup(dst)


def local_route(dst: str) -> Route:
    """The `local` table's route to a local address: `local DST dev lo src DST` (a local
    address is its own source; 127.0.0.0/8 is local, with lo's 127.0.0.1 as source).
    The same for every namespace that has the address: written once, not per packet."""
    found = _LOCAL.get(dst)
    if found is None:
        if len(_LOCAL) > 4096:
            _LOCAL.clear()
        src = "127.0.0.1" if dst.startswith("127.") else dst
        found = _LOCAL[dst] = Route(
            IPv4Network(f"{dst}/32"), "lo", src=IPv4Address(src), proto="kernel"
        )
    return found


_LOCAL: dict[str, Route] = {}


def source_of(ns: Netns, route: Route) -> str:
    """The source address the kernel picks for a local packet on `route`: the route's
    `src` (prefsrc), else the primary address of its device (inet_select_addr)."""
    return route.src_text or ns.source_for(route.oif)


def output_source(ns: Netns, dst: str) -> str | None:
    """The source a local packet to `dst` gets (None: no route)."""
    route = route_out(ns, dst)
    return source_of(ns, route) if route is not None else None


def is_martian(src: str, kind: Kind) -> bool:
    """Whether a received packet's source address is a martian (net/ipv4/route.c).

    >>> is_martian("0.0.0.0", Kind.VETH), is_martian("127.0.0.1", Kind.LOOPBACK)
    (True, False)
    """
    first = int(src.split(".", 1)[0])
    if src == "255.255.255.255" or first == 0 or 224 <= first <= 239:
        return True
    return first == 127 and kind is not Kind.LOOPBACK


def route_detail(route: Route) -> str:
    # By identity: hashing a Route hashes its IPv4Network and IPv4Address (Python code).
    hit = _DETAILS.get(id(route))
    if hit is not None and hit[0] is route:
        return hit[1]
    if len(_DETAILS) > 4096:
        _DETAILS.clear()
    found = (
        str(route)
        if route.blackhole
        else f"via {route.via} dev {route.oif}"
        + (" onlink" if route.onlink else "")
        + (f" ({'default route' if route.dst.prefixlen == 0 else route.dst})")
        if route.via is not None
        else f"dev {route.oif} ({route.dst}, on-link)"
    )
    _DETAILS[id(route)] = (route, found)
    return found


_DETAILS: dict[int, tuple[Route, str]] = {}  # each route's text, written once


def fragment(pkt: Packet, mtu: int) -> list[Packet]:
    """Cut a datagram into fragments that fit `mtu` (ip_fragment(): 8-byte units)."""
    ip = pkt.ip
    assert ip is not None
    whole = pkt.whole or pkt.l3()
    base = ip.frag * 8
    total = pkt.ip_len() - IP_HLEN
    per = (mtu - IP_HLEN) // 8 * 8
    pieces: list[Packet] = []
    off = 0
    while off < total:
        n = min(per, total - off)
        last = off + n >= total
        frag_ip = replace(ip, frag=(base + off) // 8, mf=(not last) or ip.mf)
        pieces.append(Packet(eth=None, ip=frag_ip, l4=None, whole=whole, frag_len=n))
        off += n
    return pieces


def diff(a: Packet, b: Packet) -> tuple[FieldDiff, ...]:
    """What a hook changed in the IP and transport headers."""
    out: list[FieldDiff] = []
    if a.ip is not None and b.ip is not None:
        for f in ("src", "dst", "ttl", "tos"):
            x, y = getattr(a.ip, f), getattr(b.ip, f)
            if x != y:
                out.append(FieldDiff(f"ip.{f}", str(x), str(y)))
    if a.sport != b.sport:
        out.append(FieldDiff("sport", str(a.sport), str(b.sport)))
    if a.dport != b.dport:
        out.append(FieldDiff("dport", str(a.dport), str(b.dport)))
    return tuple(out)


__all__ = ["Stack", "fragment"]
