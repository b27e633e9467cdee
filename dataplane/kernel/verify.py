"""Run a scenario on the simulator and on this kernel side by side, and compare verdicts.

Every probe (each pair of a matrix, each crafted packet of a `send`) is walked by the
simulator and run as real traffic on the `LiveCluster`; `apply`, `delete` and `label`
steps change both.  Probes between two changes run on the kernel at once, each with its
own short deadline.

Agreement is decided in `dataplane.kernel.report`.  A probe the kernel cannot
make (SCTP without the module, a TCP SYN with a payload, a replayed capture) is reported as
"not comparable" with its reason, never silently skipped; so is every probe of a cluster
the kernel cannot build (Calico's ipip without the ipip module: "not comparable: this
kernel has no ipip module"; Cilium's, whose node is BPF programs: "not comparable: BPF
datapath"; kube-proxy's ipvs mode without the ip_vs module: "not comparable: this kernel
has no ip_vs module"), whose simulator verdicts are still shown.  Of a Cilium cluster the
kernel still builds what is not BPF (devices, addresses, routes) and compares every routing
decision of each walk with its FIB (`dataplane.kernel.routes`).  A Service's
endpoint is the kernel's own random pick (kube-proxy's `numgen random`): after each batch it
is read from the nodes' conntrack (`LiveCluster.connections`), and where it is not the
simulator's deterministic pick, the simulator walks the probe again with the kernel's choice
(`dataplane.kubeproxy.chosen_by_kernel`); the part `endpoint chosen` says whether the
simulator allows that endpoint (one of the same candidates, the same affinity).
"""

from __future__ import annotations

import os
import re
import resource
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from dataplane.fabric import Fabric
from dataplane.kernel import netns
from dataplane.kernel.build import NoTunnelModule, has_ip_vs
from dataplane.kernel.capture import MARKS, Crossing, mark_of
from dataplane.kernel.compare import Records, parts
from dataplane.kernel.dns import DnsProbe
from dataplane.kernel.icmp_budget import (
    Buckets,
    Key,
    errors_sent,
    redirects,
    within_burst,
)
from dataplane.kernel.live import Flow, LiveCluster, Pin
from dataplane.kernel.probe import (
    DEFAULT_TIMEOUT,
    Client,
    Job,
    KernelVerdict,
    ProbeSpec,
)
from dataplane.kernel.report import Part, Report, Row, heard_nothing
from dataplane.kernel.routes import route_parts
from dataplane.kernel.send import Sender
from dataplane.kubeproxy import chosen_by_kernel
from dataplane.matrix import endpoints as matrix_endpoints
from dataplane.netns import NetnsKind
from dataplane.packet import ICMP, ICMP_ECHO_REQUEST, PROTO_NAMES, TCP, Packet
from dataplane.routing import nexthop_chosen_by_kernel
from dataplane.scenario import Runner
from dataplane.sockets import PROTOCOL_OF
from dataplane.trace import Trace
from topology.endpoint import EndpointKind
from topology.errors import TopologyError
from topology.model import Cluster, Cni, Pod, Protocol, ProxyMode
from topology.scenario import (
    MatrixStep,
    ProbeStep,
    ReplayStep,
    Scenario,
    SendStep,
    Step,
)


@dataclass(slots=True)
class _Item:
    """A probe waiting for its kernel run."""

    step: int
    kind: str
    title: str
    trace: Trace | None
    sim_seconds: float
    job: Callable[[], Job] | None
    pin: Pin | None = None
    not_comparable: str | None = None
    silent: bool = False
    alone: bool = False  # a crafted packet: runs only beside packets of another `key`
    key: tuple[object, ...] = ()  # what its answer is recognised by
    client: tuple[str, str] = ("", "")  # the client's node and namespace label
    # the simulator's walk again with the kernel's choices: the endpoint (Service port
    # name -> pod key; kube-proxy picks at random, the simulator's pick is one of its
    # choices) and the cloud load balancer's node (multipath route -> nexthop)
    rewalk: Callable[[Mapping[str, str], Mapping[str, str]], Trace] | None = None


class Verifier:
    """Runs one scenario on both and builds its `Report`."""

    def __init__(
        self,
        scenario: Scenario,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.scenario = scenario
        self.timeout = timeout
        self.runner = Runner(scenario)
        self.live = live_cluster(
            self.runner.sim.fabric, str(scenario.path or scenario.name)
        )
        self.report = Report(scenario.name, str(scenario.path or ""))
        if scenario.cluster.docker is not None:
            from dataplane.kernel.docker_engine import kernel_side

            self.report.kernel_side = kernel_side()
        self.pending: list[_Item] = []
        self.unbuildable: str | None = None  # why the kernel cannot hold this cluster
        # the kernel holds the cluster's devices and routes but cannot carry its packets
        # (Cilium's BPF datapath): each walk's routes are compared, not its verdict
        self.routes_only = False
        self.icmp = Buckets()  # the kernel's ICMP error buckets (icmp_budget)

    def run(self, keep: bool = False) -> Report:
        t = time.perf_counter()
        try:
            if self.scenario.cluster.config.cni is Cni.CILIUM:
                # Cilium's node is its BPF programs (bpf_lxc, bpf_host, bpf_overlay):
                # nothing here loads them, so no probe of it runs on this kernel; the
                # devices and routes under them are built and compared.
                self.unbuildable = "not comparable: BPF datapath"
                try:
                    self.live.start()
                    self.routes_only = True
                except NoTunnelModule as err:
                    self.unbuildable += f" (and {err.strerror})"
            elif self.scenario.cluster.config.kube_proxy.mode is ProxyMode.IPVS:
                # IPVS virtual servers need the ip_vs module; even with it, this
                # builder writes no ipvsadm rules yet, so nothing ipvs mode does is built.
                self.unbuildable = (
                    "not comparable: this kernel has no ip_vs module"
                    if not has_ip_vs()
                    else "not comparable: ipvs mode is not built on the kernel yet"
                )
            else:
                try:
                    self.live.start()
                except NoTunnelModule as err:
                    self.unbuildable = f"not comparable: {err.strerror}"
            self.report.build_seconds = time.perf_counter() - t
            self.report.reaped = [
                f"{len(r.names)} namespaces of {r.run_id}: {r.reason}"
                for r in self.live.reaped
            ]
            self.report.namespaces = len(self.live.names())
            self.report.built = list(self.live.built)
            for i, step in enumerate(self.scenario.steps, 1):
                self.step(i, step)
            self.flush()
        finally:
            if self.live.kc is not None:
                self.report.shortened = dict(self.live.kc.shortened)
                self.report.kernel_side = {
                    **self.live.kc.kernel_side(),
                    **self.report.kernel_side,
                }
            if keep and (self.unbuildable is None or self.routes_only):
                self.report.kept = self.live.keep()
            else:
                t = time.perf_counter()
                self.live.close()
                self.report.teardown_seconds = time.perf_counter() - t
        return self.report

    # -- steps -----------------------------------------------------------------------------
    def step(self, index: int, step: Step) -> None:
        try:
            if isinstance(step, ProbeStep):
                port = (
                    self.runner.sub(step.port)
                    if isinstance(step.port, str)
                    else step.port
                )
                self.probe(
                    index,
                    "probe",
                    self.runner.sub(step.src),
                    self.runner.sub(step.dst),
                    port,
                    step.protocol,
                )
            elif isinstance(step, MatrixStep):
                sim = self.runner.sim
                for s in matrix_endpoints(sim, step.src):
                    for d in matrix_endpoints(sim, step.dst):
                        self.probe(
                            index,
                            "matrix",
                            self.runner.sub(s),
                            self.runner.sub(d),
                            step.port,
                            step.protocol,
                        )
            elif isinstance(step, SendStep):
                self.send(index, step)
            elif isinstance(step, ReplayStep):
                self.replay(index, step)
            else:
                self.flush()
                self.runner.run_step(index, step)
                if self.unbuildable is None or self.routes_only:
                    self.live.update(self.runner.sim.fabric)
        except TopologyError as err:
            if err.loc is None:
                raise TopologyError(
                    err.reason, step.loc, f"step {index}", err.field
                ) from err
            raise

    def probe(
        self,
        index: int,
        kind: str,
        src: str,
        dst: str,
        port: int | str | None,
        protocol: Protocol,
    ) -> None:
        sim = self.runner.sim
        t = time.perf_counter()
        trace = sim.probe(src, dst, port, protocol)
        took = time.perf_counter() - t
        port_text = f":{port}" if port is not None else ""
        title = f"{src} -> {dst}{port_text} {protocol.value}"
        s, d = sim.resolve(src), sim.resolve(dst)
        fabric_ns = sim.netns_of(s)
        kernel_ns = self.kernel_ns(fabric_ns.id)
        cluster = sim.cluster
        silent = heard_nothing(trace, fabric_ns.node, fabric_ns.label)
        gap = None
        if cluster.docker is not None and d.kind is EndpointKind.DNS:
            # the kernel side's answer would be dockerd's own embedded DNS: not read yet
            gap = (
                "not comparable: a name on a Docker host (the Engine's embedded DNS "
                "at 127.0.0.11) is not looked up by verify yet"
            )
        if gap is not None:
            self.pending.append(
                _Item(index, kind, title, trace, took, None, not_comparable=gap)
            )
            return
        if d.kind is EndpointKind.DNS:
            assert d.name is not None and s.pod is not None
            expected, dport = self.expect_dns(cluster, s.pod, d.name, port, protocol)
            spec = ProbeSpec(kernel_ns, protocol, expected or "0.0.0.0", dport)
            pod, name = s.pod, d.name

            def make_dns() -> Job:
                return DnsProbe(cluster, kernel_ns, pod, name, spec)

            pin = self.pin_of(cluster, protocol, spec.dst, spec.dport, trace)
            self.pending.append(
                _Item(
                    index,
                    kind,
                    title,
                    trace,
                    took,
                    make_dns,
                    pin,
                    silent=silent,
                    client=(fabric_ns.node, fabric_ns.label),
                    rewalk=self.rewalker(lambda: sim.probe(src, dst, port, protocol)),
                )
            )
            return
        dst_ip = sim.address_of(d, s)
        dport = sim.resolve_port(port, d, protocol)
        spec = ProbeSpec(kernel_ns, protocol, dst_ip, dport)
        pin = self.pin_of(cluster, protocol, dst_ip, dport, trace)
        self.pending.append(
            _Item(
                index,
                kind,
                title,
                trace,
                took,
                lambda: Client(spec),
                pin,
                silent=silent,
                client=(fabric_ns.node, fabric_ns.label),
                rewalk=self.rewalker(lambda: sim.probe(src, dst, port, protocol)),
            )
        )

    def kernel_ns(self, fabric_id: str) -> str:
        """The kernel namespace of a fabric namespace ("" when nothing was built)."""
        return "" if self.unbuildable else self.live.kernel_ns(fabric_id)

    def expect_dns(
        self,
        cluster: Cluster,
        pod: Pod,
        name: str,
        port: int | str | None,
        protocol: Protocol,
    ) -> tuple[str | None, int]:
        """The address the name has in the model, and the port number to connect to."""
        from dataplane.kernel import dns

        for qname in dns.candidates(cluster, pod, name):
            rcode, addrs, svc = dns.records(cluster, qname)
            if rcode == dns.NOERROR and addrs:
                number = 0
                if isinstance(port, int):
                    number = port
                elif isinstance(port, str) and svc is not None:
                    if svc.cluster_ip is not None:
                        number = next(
                            (
                                sp.port
                                for sp in svc.ports
                                if sp.name == port and sp.protocol is protocol
                            ),
                            0,
                        )
                    else:
                        first = next(
                            p for p in cluster.pods.values() if str(p.ip) == addrs[0]
                        )
                        number = first.named_port(port, protocol) or 0
                return addrs[0], number
        return None, port if isinstance(port, int) else 0

    @staticmethod
    def rewalker(
        walk: Callable[[], Trace],
    ) -> Callable[[Mapping[str, str], Mapping[str, str]], Trace]:
        def again(choice: Mapping[str, str], nexthops: Mapping[str, str]) -> Trace:
            with chosen_by_kernel(choice), nexthop_chosen_by_kernel(nexthops):
                return walk()

        return again

    def only_node_crossed(self, crossed: set[Crossing] | None) -> str | None:
        """The one node whose devices the probe's first packet crossed (a connection
        a node dropped leaves no conntrack entry and no answer), or None."""
        netns = self.runner.sim.fabric.netns
        nodes = {
            netns[ns].node
            for ns, _dev, _ttl in crossed or ()
            if ns in netns and netns[ns].kind is NetnsKind.HOST
        }
        return nodes.pop() if len(nodes) == 1 else None

    def kernel_node(
        self, it: _Item, result: KernelVerdict, flows: list[Flow]
    ) -> str | None:
        """The node the cloud load balancer (the gateway's multipath route, whose hash
        the kernel seeds at random) handed `it`'s connection to: the one node whose
        conntrack holds it still addressed to the load balancer's address."""
        pin = it.pin
        if pin is None or not result.sport:
            return None
        nodes = {
            f.node
            for f in flows
            if f.dst == pin.daddr and f.dport == pin.dport and f.sport == result.sport
        }
        return nodes.pop() if len(nodes) == 1 else None

    def kernel_choice(
        self, it: _Item, result: KernelVerdict, flows: list[Flow]
    ) -> str | None:
        """The endpoint the kernel's kube-proxy chose for `it`'s connection (its
        conntrack entry: the reply's source is the endpoint), as a pod key."""
        pin, trace = it.pin, it.trace
        if pin is None or trace is None or not result.sport:
            return None
        dst, dport = pin.daddr, pin.dport
        found = {
            f.reply_src
            for f in flows
            if f.dst == dst
            and f.dport == dport
            and f.sport == result.sport
            and f.reply_src != dst
            and (pin.saddr is None or f.src == pin.saddr)
        }
        if len(found) != 1:
            return None
        (ip,) = found
        pods = [
            p.key
            for p in self.runner.sim.cluster.pods.values()
            if str(p.ip) == ip and not p.host_network
        ]
        return pods[0] if len(pods) == 1 else None

    def pin_of(
        self,
        cluster: Cluster,
        protocol: Protocol,
        dst: str,
        dport: int,
        trace: Trace,
    ) -> Pin | None:
        """The Service port a connection to `dst`:`dport` addresses and the endpoint the
        simulator chose, with the source the connection has where kube-proxy picks."""
        if trace.endpoint is None or protocol is Protocol.ICMP:
            return None
        ip = IPv4Address(dst)
        node_ips = {
            a.ip
            for ns in self.runner.sim.fabric.netns.values()
            if ns.kind is NetnsKind.HOST
            for i in ns.interfaces.values()
            for a in i.addrs
        }
        for svc in cluster.services.values():
            for n, sp in enumerate(svc.ports):
                if sp.protocol is not protocol:
                    continue
                virtual = (
                    ip in (svc.cluster_ip, *svc.load_balancer_vips(), *svc.external_ips)
                    and sp.port == dport
                )
                node_port = sp.node_port == dport and ip in node_ips
                if virtual or node_port:
                    return Pin(
                        svc.key, n, trace.endpoint, picked_from(trace, dst), dst, dport
                    )
        return None

    def send(self, index: int, step: SendStep) -> None:
        sim = self.runner.sim
        at = self.runner.sub(step.at)
        pkt = self.runner.build_packet(step)
        t = time.perf_counter()
        trace = sim.send(at, pkt)
        took = time.perf_counter() - t
        fabric_ns = sim.netns_of(sim.resolve(at))
        kernel_ns = self.kernel_ns(fabric_ns.id)
        title = f"send at {at}: {pkt.summary()}"
        silent = heard_nothing(trace, fabric_ns.node, fabric_ns.label)
        ip, pin = pkt.inner.l3().ip if pkt.inner is not None else pkt.ip, None
        if ip is not None and ip.proto in PROTOCOL_OF:
            pin = self.pin_of(
                sim.cluster, PROTOCOL_OF[ip.proto], ip.dst, pkt.dport, trace
            )
        self.pending.append(
            _Item(
                index,
                "send",
                title,
                trace,
                took,
                lambda: Sender(kernel_ns, pkt),
                pin,
                silent=silent,
                alone=True,
                key=answer_key(pkt),
                client=(fabric_ns.node, fabric_ns.label),
                rewalk=self.rewalker(lambda: sim.send(at, pkt)),
            )
        )

    def replay(self, index: int, step: ReplayStep) -> None:
        """Every packet of a capture: the ones that open a connection (a TCP SYN, an echo
        request, a UDP datagram of a flow the capture has not answered yet) are sent on the
        kernel; the others are not comparable (see `replay_reason`)."""
        from dataplane.replay import decode, owners, read_capture, replay_packets

        sim = self.runner.sim
        at = self.runner.sub(step.at) if step.at is not None else None
        records = read_capture(step.pcap)
        t = time.perf_counter()
        result = replay_packets(sim, records, at, str(step.pcap))
        per_packet = (time.perf_counter() - t) / max(len(records), 1)
        who = owners(sim)
        entry = sim.netns_of(sim.resolve(at)).id if at is not None else None
        seen: set[tuple[object, ...]] = set()
        by_index = {cap.index: cap for cap in records}
        for p in result.packets:
            if p.verdict is None or p.trace is None:
                continue  # skipped (ARP, IPv6) or not walkable: no verdict to compare
            pkt = decode(by_index[p.index], (sim.cluster.config.vxlan_port, 8472, 4789))
            match = (
                pkt.inner.l3()
                if pkt.inner is not None and pkt.inner.ip is not None
                else pkt
            )
            assert pkt.ip is not None and match.ip is not None
            flow = (
                match.ip.proto,
                match.ip.src,
                match.sport,
                match.ip.dst,
                match.dport,
            )
            back = (
                match.ip.proto,
                match.ip.dst,
                match.dport,
                match.ip.src,
                match.sport,
            )
            why = replay_reason(match, back in seen)
            seen.add(flow)
            title = f"replay {step.pcap.name} #{p.index} at {p.at}: {pkt.summary()}"
            sender_id = entry or who[pkt.ip.src][0]
            sniff_id = (
                who.get(match.ip.src, (sender_id, ""))[0]
                if match is not pkt
                else sender_id
            )
            fabric_ns = sim.fabric.netns[sniff_id]
            silent = heard_nothing(p.trace, fabric_ns.node, fabric_ns.label)
            if why is not None:
                self.pending.append(
                    _Item(
                        index,
                        "replay",
                        title,
                        p.trace,
                        per_packet,
                        None,
                        not_comparable=f"not comparable: {why}",
                    )
                )
                continue
            kernel_ns, sniff_ns = (
                self.kernel_ns(sender_id),
                self.live.kernel_ns(sniff_id),
            )

            def make(
                kernel_ns: str = kernel_ns, pkt: Packet = pkt, sniff_ns: str = sniff_ns
            ) -> Job:
                return Sender(kernel_ns, pkt, sniff_ns)

            self.pending.append(
                _Item(
                    index,
                    "replay",
                    title,
                    p.trace,
                    per_packet,
                    make,
                    silent=silent,
                    alone=True,
                    key=answer_key(match),
                    client=(fabric_ns.node, fabric_ns.label),
                )
            )

    # -- the kernel's turn -----------------------------------------------------------------
    def flush(self) -> None:
        """Run every pending probe on the kernel at once and record the rows."""
        items, self.pending = self.pending, []
        if self.unbuildable is not None:
            for it in items:
                it.not_comparable = self.unbuildable
        overflows_at_start = netns.neighbour_overflows()
        runnable = [
            it for it in items if it.job is not None and it.not_comparable is None
        ]
        # probes with a pinned Service endpoint last: a batch with pins (or after one)
        # reloads every node's pin maps, one `nft` per node
        batches = split(
            sorted(
                (it for it in runnable if not it.alone), key=lambda it: bool(it.pin)
            ),
            batch_size(),
            neighbour_budget(),
            lambda it: neighbours_needed(it.trace),
        )
        keyed: list[tuple[set[tuple[object, ...]], list[_Item]]] = []
        for it in runnable:
            if not it.alone:
                continue
            for keys, batch in keyed:  # the first batch without a look-alike
                if it.key not in keys:
                    keys.add(it.key)
                    batch.append(it)
                    break
            else:
                keyed.append(({it.key}, [it]))
        batches += [batch for _keys, batch in keyed]
        batches = within_burst(
            batches, lambda it: errors_sent(it.trace), lambda it: redirects(it.trace)
        )
        by_item: dict[int, KernelVerdict] = {}
        parts_of: dict[int, list[Part]] = {}
        queue = [(batch, 0) for batch in batches]
        while queue:
            batch, tries = queue.pop(0)
            overflows = netns.neighbour_overflows()
            need: Counter[Key] = Counter()
            emptied: set[Key] = set()
            for it in batch:
                need.update(errors_sent(it.trace))
                emptied |= redirects(it.trace)
            self.icmp.wait(need)
            results, records, flows, devices = self.run_batch(batch)
            self.icmp.spend(need, emptied)
            self.live.forget_path_mtus(self.learners(batch))
            if netns.neighbour_overflows() > overflows and len(batch) > 1 and tries < 2:
                # the machine's ARP table overflowed (another run beside this one?):
                # some packet of the batch was dropped for it; run it again in halves
                half = len(batch) // 2
                queue[:0] = [(batch[:half], tries + 1), (batch[half:], tries + 1)]
                continue
            by_item.update(zip((id(it) for it in batch), results, strict=True))
            assert self.live.kc is not None
            fabric_id_of = {k: f for f, k in self.live.kc.names.items()}
            for it, result in zip(batch, results, strict=True):
                crossed = devices.get(id(it))
                chosen = self.take_kernel_choice(it, result, flows, crossed)
                if it.pin is not None and not any(
                    p.name == "endpoint chosen" for p in chosen
                ):
                    # kube-proxy's pick was not read back (a connection dropped after
                    # it leaves no conntrack entry): the path depends on it, so the
                    # devices are not compared
                    crossed = None
                parts_of[id(it)] = chosen + parts(
                    it.trace,
                    it.client,
                    result,
                    records,
                    self.runner.sim.fabric,
                    fabric_id_of,
                    crossed,
                )
        self.report.neighbour_overflows += (
            netns.neighbour_overflows() - overflows_at_start
        )
        if self.routes_only:
            assert self.live.kc is not None
            kc = self.live.kc
            ipr_of = {f: kc.ipr[k] for f, k in kc.names.items() if k in kc.ipr}
            for it in items:
                if it.trace is not None:
                    parts_of[id(it)] = route_parts(
                        it.trace, self.runner.sim.fabric, ipr_of
                    )
        for it in items:
            kernel = by_item.get(id(it)) or KernelVerdict(
                None, it.not_comparable or "not run"
            )
            trace = it.trace
            self.report.rows.append(
                Row(
                    it.step,
                    it.kind,
                    it.title,
                    trace.verdict if trace is not None else None,
                    trace.explanation if trace is not None else "",
                    kernel,
                    it.sim_seconds,
                    it.silent,
                    parts_of.get(id(it), []),
                )
            )

    def learners(self, batch: list[_Item]) -> list[str]:
        """The namespaces that learned a path MTU in `batch`, as the simulator's traces
        say (a "fragmentation needed" delivered to a socket: dataplane.pmtu)."""
        by_label = {
            (ns.node, ns.label): ns.id for ns in self.runner.sim.fabric.netns.values()
        }
        out = []
        for it in batch:
            for hop in it.trace.hops if it.trace is not None else ():
                pkt = hop.packet
                if (
                    hop.event == "deliver"
                    and pkt is not None
                    and isinstance(pkt.l4, ICMP)
                    and (pkt.l4.type, pkt.l4.code) == (3, 4)
                    and (hop.node, hop.netns) in by_label
                ):
                    out.append(by_label[(hop.node, hop.netns)])
        return out

    def take_kernel_choice(
        self,
        it: _Item,
        result: KernelVerdict,
        flows: list[Flow],
        crossed: set[Crossing] | None = None,
    ) -> list[Part]:
        """Compare with the endpoint the kernel chose: the simulator walks again with it
        (when it is one of the candidates the simulator allows, its trace names it), and
        the part `endpoint chosen` says whether the simulator allowed it."""
        chosen = self.kernel_choice(it, result, flows)
        trace = it.trace
        if trace is None:
            return []
        cluster = self.runner.sim.cluster
        by_ip = {str(n.ip): n.name for n in cluster.config.nodes}
        taken = lb_nexthop(trace)
        node = None
        if taken is not None:
            # the node whose conntrack holds the connection, or the node that answered
            # (a REJECT for a Service without endpoints confirms no conntrack entry)
            node = (
                self.kernel_node(it, result, flows)
                or by_ip.get(result.answer_from)
                or self.only_node_crossed(crossed)
            )
        nexthops: dict[str, str] = {}
        if taken is not None and node is not None:
            nexthops[taken[0]] = str(cluster.node(node).ip)
        differs = (chosen is not None and chosen != trace.endpoint) or (
            taken is not None and nexthops.get(taken[0], taken[1]) != taken[1]
        )
        if differs and it.rewalk is not None:
            choice = {}
            if chosen is not None and it.pin is not None:
                svc = cluster.services[it.pin.service]
                sp = svc.ports[it.pin.port_index]
                choice[f"{svc.key}:{sp.name or sp.port}"] = chosen
            again = it.rewalk(choice, nexthops)
            again_taken = lb_nexthop(again)
            if (chosen is None or again.endpoint == chosen) and (
                not nexthops or (again_taken and again_taken[1] in nexthops.values())
            ):
                it.trace = again
                it.silent = heard_nothing(again, *it.client)
        assert it.trace is not None
        out = []
        if taken is not None and node is not None:
            now = lb_nexthop(it.trace)
            sim_node = by_ip.get(now[1], now[1]) if now else "-"
            out.append(Part("load balancer node", sim_node, node))
        if chosen is not None:
            out.append(Part("endpoint chosen", it.trace.endpoint or "-", chosen))
        return out

    def run_batch(
        self, batch: list[_Item]
    ) -> tuple[list[KernelVerdict], Records, list[Flow], dict[int, set[Crossing]]]:
        """The kernel's verdicts, what its servers saw meanwhile, its connections
        (kube-proxy chose each endpoint at random: no pins), and the devices each
        marked probe's first packet crossed (by item id; dataplane.kernel.capture)."""
        listeners = self.live.listeners
        if listeners is not None:
            listeners.seen.clear()
        jobs: list[Job] = []
        marks: dict[int, int] = {}  # item id -> TOS
        # no captures (a Docker host's kernel side): the devices are not compared
        captures = self.live.captures
        try:  # sockets are opened just before their batch runs
            for it in batch:
                assert it.job is not None
                job = it.job()
                jobs.append(job)
                tos = mark_of(len(marks))
                if (
                    captures is not None
                    and len(marks) < MARKS
                    and isinstance(job, Client)
                    and job.mark(tos)
                ):
                    marks[id(it)] = tos
        except BaseException:
            for job in jobs:
                job.close()
            raise
        if captures is not None:
            captures.clear()
        results = self.live.run(jobs, [], self.timeout)
        time.sleep(SERVER_LAG)  # the listeners' thread may accept after the SYN-ACK
        seen = dict(listeners.seen) if listeners is not None else {}
        flows = self.live.connections() if any(it.pin for it in batch) else []
        crossed = captures.take() if captures is not None else {}
        devices = {i: crossed.get(tos, set()) for i, tos in marks.items()}
        return results, seen, flows, devices


SERVER_LAG = (
    0.01  # seconds the listeners' thread gets to record a batch's last requests
)


_MULTIPATH_VIA = re.compile(r"via (\S+) dev \S+ \(([0-9./]+)\): multipath:")


def lb_nexthop(trace: Trace) -> tuple[str, str] | None:
    """The multipath route (its destination, `203.0.113.9/32`) the connection took on
    its way, and the nexthop the simulator's flow hash chose there, or None."""
    for hop in trace.hops:
        if hop.event == "route" and hop.direction == "request":
            found = _MULTIPATH_VIA.search(hop.detail)
            if found is not None:
                return found[2], found[1]
    return None


def picked_from(trace: Trace, dst: str) -> str | None:
    """The source address of the connection at the hop whose DNAT took it from `dst` to
    its endpoint (kube-proxy's pick), None when no hop did: where a masquerade came
    first, the picking node sees the masquerading node's address, not the client's."""
    client = None
    for hop in trace.hops:
        if hop.packet is None or hop.packet.ip is None:
            continue
        if client is None:
            client = hop.packet.ip.src
        if any(d.field == "ip.dst" and d.before == dst for d in hop.diffs):
            src = hop.packet.ip.src
            return src if src != client else None
    return None


def split(
    items: list[_Item], size: int, budget: int, cost: Callable[[_Item], int]
) -> list[list[_Item]]:
    """Consecutive batches of at most `size` items whose `cost` adds up to at most
    `budget` (an item costing more runs alone)."""
    batches: list[list[_Item]] = []
    used = 0
    for it in items:
        need = cost(it)
        if not batches or len(batches[-1]) >= size or used + need > budget:
            batches.append([])
            used = 0
        batches[-1].append(it)
        used += need
    return batches


NEIGHBOUR_RESERVE = 0.25  # of gc_thresh3: left to the host and to other runs


def neighbour_budget() -> int:
    """How many ARP entries one batch may make: the kernel's limit for the whole machine
    (see `KernelCluster.forget_neighbours`, which empties the run's entries before each
    batch) less a quarter for the host itself and any other run beside this one."""
    return int(netns.neighbour_table_limit() * (1 - NEIGHBOUR_RESERVE))


def neighbours_needed(trace: Trace | None) -> int:
    """At most how many ARP entries a probe makes on the kernel: each resolution on its
    walk makes one at the asker and one at the answerer (`arp_process` learns the
    sender of a request for itself, `neigh_event_ns`), and a few more for what the
    simulator resolves in one step (a DNS lookup before the connection)."""
    arps = sum(1 for hop in trace.hops if hop.event == "arp") if trace else 4
    return 2 * arps + 4


def batch_size() -> int:
    """How many probes run at once: each holds a socket, and the process may open only
    so many files (RLIMIT_NOFILE, often 1024); half of what is left, at least 64."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    in_use = len(os.listdir("/proc/self/fd"))
    return max(64, min(4096, (soft - in_use) // 2))


def answer_key(pkt: Packet) -> tuple[object, ...]:
    """What the answer to a crafted packet is recognised by: two packets with the same key
    cannot be sent at once (the TTL lesson's echo requests differ only in their TTL)."""
    ip, l4 = pkt.ip, pkt.l4
    if ip is None:
        return ()
    echo = l4.id if isinstance(l4, ICMP) else -1
    return (ip.dst, ip.proto, pkt.sport, pkt.dport, echo)


def replay_reason(pkt: Packet, answers_earlier: bool) -> str | None:
    """Why a captured packet cannot be replayed on the kernel as it is on the simulator,
    or None when it can: only the first packet of a conversation can.  The simulator hands
    a later packet to the capture's own connection; on the kernel no socket holds that
    connection, so the receiver would answer it (RST, port unreachable) instead."""
    ip, l4 = pkt.ip, pkt.l4
    assert ip is not None
    if isinstance(l4, TCP):
        if l4.flags != "S":
            return (
                f"TCP {l4.flags} belongs to the capture's own connection, which no "
                "socket on this kernel holds (the receiver would answer RST)"
            )
        return None
    if isinstance(l4, ICMP):
        if l4.type != ICMP_ECHO_REQUEST:
            return "an ICMP message other than an echo request answers nothing the kernel sent"
        return None
    if answers_earlier:
        return (
            f"a reply of the capture ({PROTO_NAMES.get(ip.proto, ip.proto)}): the "
            "socket that sent the request exists only in the capture"
        )
    return None


def live_cluster(fabric: Fabric, scenario: str) -> LiveCluster:
    """The kernel side of a fabric: Docker hosts made by Docker Engine
    (`dataplane.kernel.docker_live`) for `runtime: docker`, else Kubernetes nodes."""
    if fabric.cluster.docker is not None:
        from dataplane.kernel.docker_live import DockerLive

        return DockerLive(fabric, scenario)
    return LiveCluster(fabric, scenario)


def verify(
    scenario: Scenario,
    keep: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> Report:
    """Compare the simulator with this kernel on every probe of `scenario`."""
    return Verifier(scenario, timeout).run(keep)
