"""The cluster as a learner draws it, with a probe's path highlighted hop by hop.

`build_scene(sim, trace)` lays the picture out: the nodes side by side, in each the pods
(their network namespace and `eth0`), the host ends of their veth pairs, the pod bridge,
the node's IP layer with its routing table, its tunnel device (`flannel.1` in flannel's vxlan
mode, Calico's `tunl0` or `vxlan.calico`) and `eth0`, all read from the fabric the CNI built
(Calico has no bridge: its `cali…` host ends lead to the IP layer itself); under
them the underlay segment, its gateway router and the external hosts behind it.  A trace
turns into a numbered path (request solid, reply dashed) through the devices it crossed
and marks where a policy decided or the packet died.  `dataplane.draw` renders a scene to
SVG or PNG (no system binary needed); `to_mermaid` writes the same picture as a Mermaid
flowchart for Markdown.  Element keys are the device ids of `topology.graph`
(`node-1/cbr0`, `pod:default/a/eth0`, `underlay`, `gateway`, `external:web`) plus
`pod:NS/NAME` for a pod's namespace and the bare node name for its IP layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dataplane.cni import mode_name
from dataplane.netfilter import HookPoint
from dataplane.netns import UDP_TUNNELS, Interface, Kind, Netns
from dataplane.trace import POLICY_DROPS, Hop, Trace
from topology.graph import UNDERLAY, veth_name
from topology.model import Cluster, Cni, NetworkMode, Pod
from topology.selectors import matches

if TYPE_CHECKING:  # pragma: no cover
    from dataplane.sim import Simulator

GATEWAY = "gateway"
REQUEST, REPLY = "request", "reply"
HOOK_EVENTS = {p.value for p in HookPoint}
BRIDGE_EVENTS = HOOK_EVENTS | {"conntrack", "nat"}

# Layout, in pixels of the SVG (the PNG is drawn at twice this size).
MARGIN = 24
TITLE_H = 70
PANEL_GAP = 28
PANEL_HEAD = 34
POD_GAP = 46
POD_H = 58
CHIP_H = 16  # a container inside its pod's box
CHIP_GAP = 6
# Room under the pod for eth0 and lo, each with the path's numbers beside it.
POD_W = 170.0
PORT_H = 22
PORT_GAP = 28  # the reply's number goes between eth0 and lo
VETH_GAP = 34
VETH_H = 22
BRIDGE_GAP = 26
BRIDGE_H = 40  # room above and below the label for the path travelling along it
STACK_GAP = 30
LINE_H = 15
DEV_GAP = 30
DEV_H = 32
UNDERLAY_GAP = 36
UNDERLAY_H = 40
SERVICE_GAP = 20
LEGEND_H = 56
CHAR_W = {"title": 0.62 * 18, "head": 0.62 * 14, "bold": 0.62 * 12, "text": 0.58 * 12,
          "mono": 0.61 * 11, "small": 0.58 * 10.5, "policy": 0.58 * 10.5}  # fmt: skip


def text_width(text: str, style: str = "text") -> float:
    """A generous estimate of a label's width (the fonts are DejaVu or alike)."""
    return len(text) * CHAR_W[style]


@dataclass(slots=True)
class Box:
    """One drawn element: a device, a namespace, the underlay."""

    key: str
    kind: str  # panel, pod, pause, container, port, lo, veth, bridge, host, vtep, eth,
    # underlay, gateway, external, service
    x: float
    y: float
    w: float
    h: float
    lines: list[tuple[str, str]] = field(default_factory=list)  # (text, style)
    hot: str | None = None  # the colour key of the path's most important crossing
    group: str = ""  # the node whose panel holds it
    pad_bottom: float = 0.0  # room kept under the text (a pod's containers)

    @property
    def device(self) -> str:
        """`NODE/IFNAME` of the interface this box draws (a pod's: `NODE/NS/POD/IFNAME`),
        or "" for what is not one interface (a namespace, an IP layer, a router)."""
        if self.kind in ("port", "lo"):
            return f"{self.group}/{self.key.removeprefix('pod:')}"
        if self.kind in ("veth", "bridge", "vtep", "eth"):
            return self.key
        return ""

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def wide(self) -> bool:
        return self.kind in ("bridge", "underlay")

    def anchor_x(self, other_x: float) -> float:
        """Where a path meets this box: its centre, or for a wide box the point nearest to
        the other end."""
        if not self.wide:
            return self.cx
        return min(max(other_x, self.x + 24), self.x + self.w - 24)


@dataclass(slots=True)
class Visit:
    """The path crossing one element, in order.  `number` is the trace's hop number (the
    `#` of `dataplane trace`) of the first hop at that element, 0 for a crossing the trace
    has no hop of its own for (a bridge port a frame leaves by, the underlay between two
    nodes); `leg` is `dns` for the name lookup before a connection, else empty."""

    key: str
    direction: str
    number: int
    leg: str = ""
    marked: bool = False  # a decision or rewrite happened during this visit

    @property
    def colour_key(self) -> str:
        """The path colour's key: `request`, `reply`, `dns-request`, `dns-reply`."""
        return f"{self.leg}-{self.direction}" if self.leg else self.direction


@dataclass(slots=True)
class Mark:
    """A decision drawn on an element: `allow` (a policy or hook let the request pass),
    `deny` (a policy, a hook or the network dropped it) or `nat` (a rewrite that changed
    where the packet goes or comes from)."""

    key: str
    kind: str
    text: str
    verdict: str = ""  # the verdict it led to, when it ended the walk
    visit: int = -1  # the index of the path visit it was made at
    seq: int = -1  # the trace hop that decided

    @property
    def word(self) -> str:
        if self.verdict:
            return self.verdict
        return {"allow": "allowed", "deny": "denied / dropped", "nat": "rewritten"}[
            self.kind
        ]


@dataclass(slots=True)
class Scene:
    width: float
    height: float
    title: str
    subtitle: str = ""
    boxes: dict[str, Box] = field(default_factory=dict)
    links: list[tuple[str, str, str]] = field(default_factory=list)  # a, b, label
    panels: list[Box] = field(default_factory=list)
    services: list[Box] = field(default_factory=list)
    path: list[Visit] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    underlay_y: float = 0.0
    # For each hop of the trace: the index of the last path visit at or before it.
    hop_visits: dict[int, int] = field(default_factory=dict)

    def add(self, box: Box) -> Box:
        self.boxes[box.key] = box
        return box


# -- layout -----------------------------------------------------------------------------------


def _short_route(text: str) -> str:
    """`ip route` without the kernel's scope/proto noise, to fit a box.

    >>> _short_route("10.0.1.0/24 dev cbr0 proto kernel scope link src 10.0.1.1")
    '10.0.1.0/24 dev cbr0'
    """
    text = text.replace(" proto kernel", "").replace(" scope link", "")
    return text.split(" src ")[0]


def _ports(pod: Pod) -> str:
    """A pod's listening ports, for its box (the first three)."""
    ports = [f"{p.port}/{p.protocol.value}" for p in pod.ports()]
    return ", ".join(ports[:3]) + (" ..." if len(ports) > 3 else "")


def _first(items: list[str], n: int = 2) -> str:
    """
    >>> _first(["a", "b", "c", "d"])
    'a, b +2'
    """
    return ", ".join(items[:n]) + (f" +{len(items) - n}" if len(items) > n else "")


def _pod_lines(cluster: Cluster, pod: Pod) -> list[tuple[str, str]]:
    """A pod's box: name, address, ports and the NetworkPolicies that select it (its
    containers are drawn under them, see `_chips`)."""
    lines = [(pod.key, "bold"), (str(pod.ip), "text")]
    ports = _ports(pod)
    if ports:
        lines.append((ports, "small"))
    policies = [
        pol.name
        for pol in cluster.policies.values()
        if pol.namespace == pod.namespace and matches(pol.pod_selector, pod.labels)
    ]
    if policies:
        lines.append(("netpol: " + _first(sorted(policies)), "policy"))
    return lines


def _chip_width(name: str) -> float:
    return text_width(name, "small") + 12


def _chips(scene: Scene, pod: Pod, box: Box) -> None:
    """The pod's containers as small boxes along the bottom of its box, the pause
    container first: it holds the network namespace that every other one shares."""
    names = ["pause", *(c.name for c in pod.containers)]
    total = sum(_chip_width(n) for n in names) + CHIP_GAP * (len(names) - 1)
    x = box.x + (box.w - total) / 2
    y = box.y + box.h - CHIP_H - 6
    for i, name in enumerate(names):
        w = _chip_width(name)
        key = f"{box.key}#pause" if i == 0 else f"{box.key}#container/{name}"
        kind = "pause" if i == 0 else "container"
        scene.add(Box(key, kind, x, y, w, CHIP_H, [(name, "small")]))
        x += w + CHIP_GAP


def build_scene(sim: Simulator, trace: Trace | None = None, title: str = "") -> Scene:
    """Lay out the cluster of `sim` (and `trace`'s path, if given)."""
    cluster, fabric = sim.cluster, sim.fabric
    cfg = cluster.config
    scene = Scene(0, 0, title or f"cluster ({mode_name(cluster)})")
    x = float(MARGIN)
    top = MARGIN + TITLE_H
    bottoms: list[float] = []
    pod_lines = {
        key: _pod_lines(cluster, pod)
        for key, pod in cluster.pods.items()
        if not pod.host_network
    }
    pod_h = (
        CHIP_H
        + 8
        + max(
            [float(POD_H) - 16] + [12.0 + LINE_H * len(ls) for ls in pod_lines.values()]
        )
    )
    for node in cfg.nodes:
        known = set(scene.boxes)
        host = fabric.netns[node.name]
        bridge_dev = _device(host.interfaces.values(), (Kind.BRIDGE,))
        tunnel = _device(host.interfaces.values(), (*UDP_TUNNELS, Kind.IPIP))
        pods = [p for p in cluster.pods.values() if p.node == node.name]
        netns_pods = [p for p in pods if not p.host_network]
        host_pods = [p.key for p in pods if p.host_network]
        routes = [_short_route(str(r)) for r in host.routes.routes]
        host_lines = [(f"{node.name} IP layer: routes, netfilter", "bold")]
        host_lines += [(r, "mono") for r in routes]
        if host_pods:
            host_lines.append(("hostNetwork: " + ", ".join(host_pods), "small"))
        widths = [
            max(
                [POD_W]
                + [text_width(t, st) + 18 for t, st in pod_lines[p.key]]
                + [
                    sum(
                        _chip_width(n) + CHIP_GAP
                        for n in ["pause", *(c.name for c in p.containers)]
                    )
                    + 14
                ]
            )
            for p in netns_pods
        ]
        own_block = bridge_dev is None and cfg.cni is Cni.CALICO
        block = "IPAM block" if own_block else "podCIDR"
        head = f"host network namespace, {block} {node.pod_cidr}"
        pods_w = sum(widths) + POD_GAP * max(len(widths) - 1, 0)
        inner = max(
            pods_w,
            max(text_width(t, s) for t, s in host_lines) + 24,
            text_width(node.name, "head") + 10 + text_width(head, "small"),
            260.0,
        )
        panel_w = inner + 32
        panel = Box(node.name + "#panel", "panel", x, top, panel_w, 0,
                    [(node.name, "head"), (head, "small")])  # fmt: skip
        y = top + PANEL_HEAD
        px = x + 16 + (inner - pods_w) / 2
        pod_bottom = y + pod_h + PORT_H
        veth_y = pod_bottom + VETH_GAP
        bridge_y = veth_y + VETH_H + BRIDGE_GAP
        for pod, w in zip(netns_pods, widths, strict=True):
            box = scene.add(Box(f"pod:{pod.key}", "pod", px, y, w, pod_h,
                                pod_lines[pod.key], pad_bottom=CHIP_H + 8))  # fmt: skip
            _chips(scene, pod, box)
            port_w = 52.0
            # eth0 under the pod's centre (the veth pair hangs off it), lo beside it.
            scene.add(Box(f"pod:{pod.key}/eth0", "port", px + (w - port_w) / 2,
                          y + pod_h, port_w, PORT_H, [("eth0", "mono")]))  # fmt: skip
            scene.add(Box(f"pod:{pod.key}/lo", "lo", px + (w + port_w) / 2 + PORT_GAP,
                          y + pod_h, 30.0, PORT_H, [("lo", "mono")]))  # fmt: skip
            scene.links.append((f"pod:{pod.key}", f"pod:{pod.key}/eth0", ""))
            peer = fabric.netns[f"pod:{pod.key}"].interfaces["eth0"].peer
            veth = peer[1] if peer is not None else veth_name(pod.key)
            vw = text_width(veth, "mono") + 12
            scene.add(Box(f"{node.name}/{veth}", "veth", px + (w - vw) / 2, veth_y,
                          vw, VETH_H, [(veth, "mono")]))  # fmt: skip
            scene.links.append(
                (f"pod:{pod.key}/eth0", f"{node.name}/{veth}", "veth pair")
            )
            # a bridge port, or (Calico) a routed interface of the IP layer
            up = node.name if bridge_dev is None else f"{node.name}/{cfg.bridge}"
            scene.links.append((f"{node.name}/{veth}", up, ""))
            px += w + POD_GAP
        if not netns_pods:
            bridge_y = y + 10
        host_y = bridge_y if bridge_dev is None else bridge_y + BRIDGE_H + STACK_GAP
        if bridge_dev is not None:
            bridge = scene.add(
                Box(
                    f"{node.name}/{cfg.bridge}",
                    "bridge",
                    x + 16,
                    bridge_y,
                    inner,
                    BRIDGE_H,
                    [
                        (
                            f"{cfg.bridge}  {node.bridge_ip}/{node.pod_cidr.prefixlen}  "
                            "(bridge)",
                            "bold",
                        )
                    ],
                )
            )
            scene.links.append((bridge.key, node.name, ""))
        host_h = 12 + LINE_H * len(host_lines)
        scene.add(Box(node.name, "host", x + 16, host_y, inner, host_h, host_lines))
        dev_y = host_y + host_h + DEV_GAP
        last = node.name
        for dev in _router_pairs(host):  # Cilium's cilium_host <-> cilium_net
            label = f"{dev.ifname}  {dev.addrs[0]}  (veth to {dev.peer[1]})"  # type: ignore[index]
            key = f"{node.name}/{dev.ifname}"
            w = text_width(label, "bold") + 24
            scene.add(Box(key, "eth", x + 16 + (inner - w) / 2,
                          dev_y, w, DEV_H, [(label, "bold")]))  # fmt: skip
            scene.links.append((node.name, key, ""))
            dev_y += DEV_H + DEV_GAP
        if tunnel is not None:
            label = _tunnel_label(tunnel, per_packet=fabric.vni_of is not None)
            key = f"{node.name}/{tunnel.ifname}"
            w = text_width(label, "bold") + 24
            scene.add(Box(key, "vtep", x + 16 + (inner - w) / 2,
                          dev_y, w, DEV_H, [(label, "bold")]))  # fmt: skip
            scene.links.append((node.name, key, ""))
            last = key
            dev_y += DEV_H + DEV_GAP
        label = f"eth0  {node.ip}/{cfg.node_cidr.prefixlen}"
        w = text_width(label, "bold") + 24
        scene.add(Box(f"{node.name}/eth0", "eth", x + 16 + (inner - w) / 2, dev_y, w,
                      DEV_H, [(label, "bold")]))  # fmt: skip
        scene.links.append((last, f"{node.name}/eth0", ""))
        if tunnel is not None:  # encapsulated traffic leaves through the IP layer too
            scene.links.append((node.name, f"{node.name}/eth0", ""))
        for key in set(scene.boxes) - known:
            scene.boxes[key].group = node.name
        bottoms.append(dev_y + DEV_H + 14)
        scene.panels.append(panel)
        x += panel_w + PANEL_GAP
    width = max(x - PANEL_GAP + MARGIN, 640.0)
    panel_bottom = max(bottoms, default=top + 100)
    for panel in scene.panels:
        panel.h = panel_bottom - panel.y
    uy = panel_bottom + UNDERLAY_GAP
    scene.underlay_y = uy + UNDERLAY_H / 2
    scene.add(Box(UNDERLAY, "underlay", MARGIN, uy, width - 2 * MARGIN, UNDERLAY_H,
                  [(f"underlay  {cfg.node_cidr}  (the nodes' L2 segment)", "bold")]))  # fmt: skip
    for node in cfg.nodes:
        scene.links.append((f"{node.name}/eth0", UNDERLAY, ""))
    bottom = _gateway(scene, sim, uy + UNDERLAY_H + UNDERLAY_GAP, width)
    bottom = _services(scene, sim, bottom + UNDERLAY_GAP, max(width, scene.width))
    scene.width, scene.height = max(width, scene.width), bottom + LEGEND_H
    if trace is not None:
        add_path(scene, trace)
    return scene


def _device(
    interfaces: Iterable[Interface], kinds: tuple[Kind, ...]
) -> Interface | None:
    """The first interface of one of `kinds` (the bridge, the tunnel device)."""
    return next((i for i in interfaces if i.kind in kinds), None)


def _router_pairs(host: Netns) -> list[Interface]:
    """The host's veths whose peer is in the host itself and that hold an address
    (Cilium's `cilium_host`, peer `cilium_net`)."""
    return [
        i
        for i in host.interfaces.values()
        if i.kind is Kind.VETH
        and i.peer is not None
        and i.peer[0] == host.id
        and i.addrs
    ]


def _tunnel_label(dev: Interface, per_packet: bool = False) -> str:
    """`flannel.1  10.0.1.0/32  VNI 1`, `tunl0  192.168.0.0/32  IP-in-IP`,
    `cilium_vxlan  VNI = source identity` (collect-metadata: the VNI per packet),
    `cilium_geneve  Geneve VNI = source identity`."""
    addr = f"  {dev.addrs[0]}" if dev.addrs else ""
    vni = "VNI = source identity" if per_packet else f"VNI {dev.vni}"
    what = {Kind.VXLAN: vni, Kind.GENEVE: f"Geneve {vni}"}.get(dev.kind, "IP-in-IP")
    return f"{dev.ifname}{addr}  {what}"


def _gateway(scene: Scene, sim: Simulator, y: float, width: float) -> float:
    """The gateway router under the underlay, the external hosts under it."""
    cfg = sim.cluster.config
    gw = sim.fabric.netns[GATEWAY]
    lines = [(f"gateway  eth0 {cfg.gateway}  (router)", "bold")]
    if cfg.network is NetworkMode.ROUTED:
        lines += [
            (_short_route(str(r)), "mono")
            for r in gw.routes.routes
            if r.via is not None
        ]
    w = max(text_width(t, s) for t, s in lines) + 24
    h = 12 + LINE_H * len(lines) if len(lines) > 1 else DEV_H
    box = scene.add(Box(GATEWAY, "gateway", (width - w) / 2, y, w, h, lines))
    scene.links.append((UNDERLAY, GATEWAY, ""))
    exts = cfg.externals
    if not exts:
        return y + h
    ey = y + h + UNDERLAY_GAP
    boxes = []
    for i, ext in enumerate(exts):
        ports = ", ".join(f"{p.port}/{p.protocol.value}" for p in ext.ports[:3])
        elines = [
            (f"external {ext.name}", "bold"),
            (f"{ext.ip} (gateway ext{i})", "text"),
        ]
        if ports:
            elines.append((ports, "small"))
        ew = max(text_width(t, s) for t, s in elines) + 24
        boxes.append(Box(f"external:{ext.name}", "external", 0, ey, ew, POD_H, elines))
        scene.links.append((GATEWAY, f"external:{ext.name}", ""))
    total = sum(b.w for b in boxes) + POD_GAP * (len(boxes) - 1)
    ex = max(MARGIN, box.cx - total / 2)
    for b in boxes:
        b.x = ex
        ex += b.w + POD_GAP
        scene.add(b)
    scene.width = max(scene.width, ex + MARGIN)
    return ey + POD_H


def _services(scene: Scene, sim: Simulator, y: float, width: float) -> float:
    """The Services under the network: virtual addresses that kube-proxy's rules on
    every node translate to endpoints, so they are boxes of their own, not devices on a
    wire; each lists its ports and endpoints (the ready pods its selector matches)."""
    from dataplane.kubeproxy import endpoints

    services = sorted(sim.cluster.services.values(), key=lambda s: s.key)
    if not services:
        return y - UNDERLAY_GAP
    boxes: list[Box] = []
    for svc in services:
        addr = str(svc.cluster_ip) if svc.cluster_ip is not None else "None (headless)"
        lines = [(f"svc {svc.key}", "bold"), (f"{svc.type.value} {addr}", "text")]
        for sp in svc.ports[:2]:
            eps = [f"{b.key}:{b.port}" for b in endpoints(sim.cluster, svc, sp)]
            lines.append(
                (
                    f"{sp.port}/{sp.protocol.value} -> "
                    + (_first(eps) if eps else "no endpoints"),
                    "small",
                )
            )
        if len(svc.ports) > 2:
            lines.append((f"+{len(svc.ports) - 2} more ports", "small"))
        w = max(text_width(t, st) for t, st in lines) + 24
        boxes.append(Box(f"svc:{svc.key}", "service", 0, 0, w, 12 + LINE_H * len(lines),
                         lines))  # fmt: skip
    by = (
        "Cilium's socket-LB and BPF programs"  # dataplane.cni.cilium_lb
        if sim.cluster.config.cni is Cni.CILIUM
        else "kube-proxy's rules on every node"
    )
    scene.add(Box("services#head", "caption", MARGIN, y, width - 2 * MARGIN, LINE_H,
                  [(f"Services: virtual addresses, translated by {by}", "small")]))  # fmt: skip
    y += LINE_H + 8
    x, row_h = float(MARGIN), 0.0
    for b in boxes:
        if x > MARGIN and x + b.w > width - MARGIN:
            x, y = float(MARGIN), y + row_h + SERVICE_GAP
            row_h = 0.0
        b.x, b.y = x, y
        x += b.w + POD_GAP
        row_h = max(row_h, b.h)
        scene.add(b)
        scene.services.append(b)
    return y + row_h


# -- the path ---------------------------------------------------------------------------------


def element_of(scene: Scene, hop: Hop) -> str | None:
    """The drawn element a hop happened at (None for the walker's own notes).

    A node's netfilter hooks, conntrack and NAT are its IP layer's, also for a frame the
    bridge forwards between two of its ports (br_netfilter runs the IPv4 hooks for it), so
    every decision on a node is drawn on the node's IP layer."""
    if hop.node == GATEWAY:
        return GATEWAY
    if hop.node == "external":
        key = "external:" + hop.netns.removeprefix("external ")
        return key if key in scene.boxes else None
    if hop.netns.startswith("pod "):
        pod = hop.netns.removeprefix("pod ")
        if hop.event == "deliver" and "(container " in hop.detail:
            name = hop.detail.split("(container ", 1)[1].split(")", 1)[0]
            key = f"pod:{pod}#container/{name}"  # the socket's container
            if key in scene.boxes:
                return key
        port = hop.device in ("eth0", "lo") and hop.event != "deliver"  # sockets inside
        key = f"pod:{pod}/{hop.device}" if port else f"pod:{pod}"
        return key if key in scene.boxes else None
    if hop.node not in scene.boxes:
        return None
    if hop.event in BRIDGE_EVENTS:
        return hop.node
    key = f"{hop.node}/{hop.device}"
    return key if key in scene.boxes else hop.node


def is_decision(hop: Hop) -> bool:
    """A hop where a hook decided the packet's fate: the NetworkPolicy filter (or a user
    hook) accepting the request or dropping a packet (replies of an admitted connection
    pass by conntrack and are not marked)."""
    if hop.reason is not None:
        return hop.event in HOOK_EVENTS or hop.reason in POLICY_DROPS
    return hop.event in HOOK_EVENTS and hop.direction == REQUEST


def _service_of(scene: Scene, hop: Hop) -> str | None:
    """The Service box a kube-proxy rewrite names (`KUBE-SVC NS/NAME:PORT`)."""
    for word in hop.detail.split():
        key = "svc:" + word.rsplit(":", 1)[0]
        if key in scene.boxes and scene.boxes[key].kind == "service":
            return key
    return None


def add_path(scene: Scene, trace: Trace) -> None:
    """Number the elements the trace crossed with its hop numbers and mark its decisions.

    A probe by name walks two legs, the DNS exchange with kube-dns and then the
    connection (the trace's `phase` hops separate them); each leg has colours of its own."""
    verdict = trace.verdict.value if trace.verdict else "none"
    scene.title = trace.title + (f"  ({trace.mode})" if trace.mode else "")
    scene.subtitle = f"verdict: {verdict}"
    if trace.policy:
        scene.subtitle += f", policy {trace.policy}"
    if trace.endpoint:
        scene.subtitle += f", Service endpoint {trace.endpoint}"
    scene.subtitle += f" — {trace.explanation}"
    leg = ""
    previous: Hop | None = None
    for hop in trace.hops:
        if previous is not None:
            scene.hop_visits[previous.seq] = len(scene.path) - 1
        previous = hop
        if hop.event == "phase":
            leg = "dns" if hop.detail.startswith("DNS lookup") else ""
            continue
        if hop.event == "arp" or (
            hop.packet is not None and hop.packet.arp is not None
        ):
            continue  # neighbour resolution is not the packet's path
        key = element_of(scene, hop)
        if key is None:
            continue
        path = scene.path
        last = path[-1] if path else None
        if last is not None and last.key != key:
            kinds = (scene.boxes[last.key].kind, scene.boxes[key].kind)
            if kinds[0] in ("eth", "gateway") and kinds[1] in ("eth", "gateway"):
                _visit(scene, UNDERLAY, hop.direction, 0, leg)
            elif kinds == ("host", "port") and len(path) >= 2:
                # A bridged frame back from the hooks to the bridge, out of a port.
                bridge = scene.boxes[path[-2].key]
                if bridge.kind == "bridge":
                    _visit(scene, bridge.key, hop.direction, 0, leg)
        last = scene.path[-1] if scene.path else None
        if last is None or (last.key, last.direction, last.leg) != (
            key,
            hop.direction,
            leg,
        ):
            _visit(scene, key, hop.direction, hop.seq, leg)
        mark: Mark | None = None
        if is_decision(hop):
            where = f"{hop.node} {hop.event}"
            kind = "allow" if hop.reason is None else "deny"
            mark = Mark(key, kind, f"{where}: {hop.detail}")
        elif hop.event == "nat" and hop.direction == REQUEST:
            mark = Mark(key, "nat", f"{hop.node} {hop.detail}")
            svc = _service_of(scene, hop)
            if svc is not None:
                box = scene.boxes[svc]
                box.hot = _hotter(box.hot, scene.path[-1].colour_key)
        seen = {(m.key, m.kind, m.text) for m in scene.marks}
        if mark is not None and (mark.key, mark.kind, mark.text) not in seen:
            mark.visit = len(scene.path) - 1  # a DNS retry meets the same rules again
            mark.seq = hop.seq
            scene.marks.append(mark)
        if mark is not None or hop.event == "nat":  # un-NAT of a reply included
            scene.path[-1].marked = True
    if previous is not None:
        scene.hop_visits[previous.seq] = len(scene.path) - 1
    if not any(m.kind == "deny" for m in scene.marks) and trace.reason is not None:
        drop = next((h for h in trace.hops if h.reason is not None), None)
        key = element_of(scene, drop) if drop is not None else None
        if drop is not None and key is not None:
            text = f"{drop.node} {drop.event}: {drop.detail}"
            visit = scene.hop_visits.get(drop.seq, len(scene.path) - 1)
            scene.marks.append(Mark(key, "deny", text, verdict, visit, drop.seq))


# Which crossing colours a box the path crosses several times: the connection before
# the DNS lookup, the request before the reply.
RANK = {"request": 0, "reply": 1, "dns-request": 2, "dns-reply": 3}


def _hotter(current: str | None, candidate: str) -> str:
    if current is None or RANK[candidate] < RANK[current]:
        return candidate
    return current


def _visit(scene: Scene, key: str, direction: str, number: int, leg: str) -> None:
    path = scene.path
    kind = scene.boxes[key].kind
    if path and path[-1].direction == direction:
        # A bridge sends a frame out of a port without a hop of its own: the frame still
        # crosses the pod's host-side veth.
        kinds = {scene.boxes[path[-1].key].kind, kind}
        if kinds == {"bridge", "port"}:
            port = key if kind == "port" else path[-1].key
            pod = port.removeprefix("pod:").removesuffix("/eth0")
            veth = f"{scene.boxes[port].group}/{veth_name(pod)}"
            if veth in scene.boxes:
                path.append(Visit(veth, direction, 0, leg))
                box = scene.boxes[veth]
                box.hot = _hotter(box.hot, path[-1].colour_key)
    if (
        len(path) >= 2
        and path[-1].direction == direction
        and scene.boxes[path[-1].key].kind == "host"
        and not path[-1].marked
        and {scene.boxes[path[-2].key].kind, kind} == {"vtep", "eth"}
    ):
        # The encapsulated packet passes the IP layer between flannel.1 and eth0 (and
        # the other way on decapsulation); unless something was decided there, the
        # picture goes straight from one to the other.
        path.pop()
    if any((v.key, v.direction, v.leg) == (key, direction, leg) for v in path):
        number = 0  # numbered once per leg and direction (a DNS retry takes one path)
    path.append(Visit(key, direction, number, leg))
    box = scene.boxes[key]
    box.hot = _hotter(box.hot, path[-1].colour_key)


# -- Mermaid ----------------------------------------------------------------------------------


def _mid(key: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in key)


def _mermaid_label(box: Box) -> str:
    return "<br/>".join(t for t, _ in box.lines).replace('"', "#quot;")


def to_mermaid(scene: Scene) -> str:
    """The same picture as a Mermaid flowchart (for Markdown): a subgraph per node, the
    path as numbered thick arrows (request) and dotted ones (reply)."""
    lines = ["flowchart TB"]
    lines.append(
        f"  %% {scene.title}" + (f": {scene.subtitle}" if scene.subtitle else "")
    )
    for panel in scene.panels:
        node = panel.key.removesuffix("#panel")
        lines.append(f'  subgraph {_mid(panel.key)}["node {node}"]')
        lines.append("    direction TB")
        lines += [
            f'    {_mid(b.key)}["{_mermaid_label(b)}"]'
            for b in scene.boxes.values()
            if b.group == node
        ]
        lines.append("  end")
    for b in scene.boxes.values():
        if not b.group:
            shape = ('[("', '")]') if b.kind == "underlay" else ('["', '"]')
            lines.append(f"  {_mid(b.key)}{shape[0]}{_mermaid_label(b)}{shape[1]}")
    edges = 0
    for a, b2, label in scene.links:
        link = f"---|{label}|" if label else "---"
        lines.append(f"  {_mid(a)} {link} {_mid(b2)}")
        edges += 1
    hot: list[str] = []
    for v, w in zip(scene.path, scene.path[1:], strict=False):
        if v.key == w.key:
            continue  # the request turned into its reply
        arrow = "==>" if w.direction == REQUEST else "-.->"
        label = f"|{w.number}|" if w.number else ""
        lines.append(f"  {_mid(v.key)} {arrow}{label} {_mid(w.key)}")
        hot.append(str(edges))
        edges += 1
    for m in scene.marks:
        lines.append(f"  %% {m.word} at {m.key}: {m.text}")
    if scene.path:
        keys = ",".join(dict.fromkeys(_mid(v.key) for v in scene.path))
        lines.append("  classDef hot stroke:#f97316,stroke-width:3px")
        lines.append(f"  class {keys} hot")
    if hot:
        lines.append(f"  linkStyle {','.join(hot)} stroke:#f97316,stroke-width:3px")
    return "\n".join(lines) + "\n"


__all__ = ["Box", "Mark", "Scene", "Visit", "add_path", "build_scene", "to_mermaid"]
