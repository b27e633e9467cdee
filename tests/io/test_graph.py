"""Pictures: the cluster as a learner draws it, the probe's path hop by hop.

The PNG is checked the way a person looks at it: which boxes carry the path's colour,
where the decision marks are, that the reply is drawn only when one came back.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from dataplane.draw import MARK_COLOUR, PATH_COLOUR, to_png, to_svg
from dataplane.fabric import veth_name
from dataplane.graph import Box, Scene, build_scene, to_mermaid
from dataplane.sim import Simulator
from tests.io.helpers import SCENARIOS, run_cli, simulator
from topology.loader import load_scenario
from topology.model import NetworkMode

SVG = "{http://www.w3.org/2000/svg}"
REQUEST = [
    "pod:default/a", "pod:default/a/eth0", f"node-1/{veth_name('default/a')}",
    "node-1/cbr0", "node-1", "node-1/flannel.1", "node-1/eth0", "underlay",
    "node-2/eth0", "node-2/flannel.1", "node-2", "node-2/cbr0",
    f"node-2/{veth_name('default/c')}", "pod:default/c/eth0",
    "pod:default/c#container/web",  # the socket that answers: container web's
]  # fmt: skip
REPLY = ["pod:default/c", *REQUEST[-2::-1]]  # the SYN-ACK leaves from the pod's netns


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def pixels(
    img: Image.Image, box: Box, colour: str, pad: float = 2, scale: float = 2
) -> int:
    """How many pixels of `colour` lie on the box (its outline included)."""
    crop = img.crop(
        (
            round((box.x - pad) * scale),
            round((box.y - pad) * scale),
            round((box.x + box.w + pad) * scale),
            round((box.y + box.h + pad) * scale),
        )
    )
    want = rgb(colour)
    colours = crop.getcolors(1 << 16)
    assert colours is not None, "too many colours to count"
    return sum(n for n, c in colours if c == want)


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scene, Image.Image]:
    sim = simulator()
    scene = build_scene(sim, sim.probe("default/a", "default/c", 80))
    path = tmp_path_factory.mktemp("png") / "a-to-c.png"
    to_png(scene, path)
    return scene, Image.open(path).convert("RGB")


def test_the_path_is_numbered_device_by_device(
    delivered: tuple[Scene, Image.Image],
) -> None:
    scene, _ = delivered
    request = [v.key for v in scene.path if v.direction == "request"]
    reply = [v.key for v in scene.path if v.direction == "reply"]
    assert request == REQUEST
    assert reply == REPLY


def test_badges_are_the_traces_hop_numbers() -> None:
    sim = simulator()
    trace = sim.probe("default/a", "default/c", 80)
    scene = build_scene(sim, trace)
    hops = {h.seq: h for h in trace.hops}
    numbered = [v for v in scene.path if v.number]
    # pod a's route lookup is hop 1, its eth0 the frame after ARP, node-1's IP layer the
    # conntrack hop: each badge is the `#` of the first hop at that device.
    assert [(v.key, v.number) for v in numbered[:5]] == [
        ("pod:default/a", 1), ("pod:default/a/eth0", 10),
        (f"node-1/{veth_name('default/a')}", 11), ("node-1/cbr0", 12), ("node-1", 13),
    ]  # fmt: skip
    for v in numbered:
        hop = hops[v.number]
        assert hop.direction == v.direction and hop.event != "arp", v
    assert [v.number for v in numbered] == sorted(v.number for v in numbered)
    # the underlay between two nodes has no hop of its own: crossed, not numbered
    assert [v.number for v in scene.path if v.key == "underlay"] == [0, 0]
    svg = to_svg(scene)
    root = ET.fromstring(svg)
    badges = {t.text for t in root.iter(f"{SVG}text") if (t.text or "").isdigit()}
    assert {str(v.number) for v in numbered} <= badges


def _label_boxes(
    scene: Scene, in_boxes: bool
) -> list[tuple[float, float, float, float]]:
    """The extent of every label drawn inside a box (`in_boxes`) or outside all boxes."""
    from dataplane.draw import FONT_SIZE, Label, shapes
    from dataplane.graph import text_width

    def inside(x: float, y: float) -> bool:
        return any(
            b.x <= x <= b.x + b.w and b.y <= y <= b.y + b.h
            for b in scene.boxes.values()
            if b.kind not in ("panel", "caption")
        )

    out = []
    for s in shapes(scene):
        if isinstance(s, Label) and s.style != "title" and inside(s.x, s.y) == in_boxes:
            w = text_width(s.text, s.style)
            x0 = {"start": s.x, "middle": s.x - w / 2, "end": s.x - w}[s.anchor]
            h = FONT_SIZE[s.style] / 2 + 4  # with some clearance above and below
            out.append((x0, s.y - h, x0 + w, s.y + h))
    return out


@pytest.mark.parametrize(
    ("file", "src", "dst", "port"),
    [
        ("cross-node-vxlan.yaml", "default/a", "default/c", 80),
        ("same-node.yaml", "default/a", "default/b", 80),
        ("dns-names.yaml", "default/tool", "api.shop", 80),
        ("flows/external-to-nodeport-other-node-pod.yaml", "external/laptop",
         "node/node-1", 30080),
    ],
    ids=["cross-node", "same-node", "dns", "nodeport"],
)  # fmt: skip
def test_no_label_is_struck_through(file: str, src: str, dst: str, port: int) -> None:
    from dataplane.draw import Dot, Line, _path_shapes

    scenario, _ = load_scenario(SCENARIOS / file)
    sim = Simulator(scenario.cluster)
    scene = build_scene(sim, sim.probe(src, dst, port))
    # Lines under the boxes are hidden by a box's fill; those drawn over them (along a
    # bridge or the underlay) must miss every label, and no line crosses a free label.
    free, boxed = _label_boxes(scene, False), _label_boxes(scene, True)
    under, over = _path_shapes(scene)
    for shape in under + over:
        labels = free + boxed if shape in over else free
        if isinstance(shape, Line):
            for (x1, y1), (x2, y2) in zip(shape.points, shape.points[1:], strict=False):
                for lx0, ly0, lx1, ly1 in labels:
                    crosses = (
                        min(x1, x2) < lx1 and max(x1, x2) > lx0
                        and min(y1, y2) < ly1 and max(y1, y2) > ly0
                    )  # fmt: skip
                    assert not crosses, ((x1, y1, x2, y2), (lx0, ly0, lx1, ly1))
        elif isinstance(shape, Dot):
            for box in scene.boxes.values():
                if box.kind in ("panel", "caption"):
                    continue
                inside = (
                    box.x < shape.x < box.x + box.w and box.y < shape.y < box.y + box.h
                )
                assert not inside, (shape.text, box.key)


def test_the_ip_layer_is_on_the_path_where_a_nat_happens() -> None:
    scenario, _ = load_scenario(
        SCENARIOS / "flows/external-to-nodeport-other-node-pod.yaml"
    )
    sim = Simulator(scenario.cluster)
    scene = build_scene(sim, sim.probe("external/laptop", "node/node-1", 30080))
    keys = [(v.key, v.direction) for v in scene.path]
    # eth0 -> the IP layer (DNAT to the backend, masquerade) -> flannel.1, and back
    i = keys.index(("node-1/eth0", "request"))
    assert keys[i : i + 3] == [("node-1/eth0", "request"), ("node-1", "request"),
                               ("node-1/flannel.1", "request")]  # fmt: skip
    assert ("node-1", "reply") in keys  # the un-DNAT of the reply
    nat = [m for m in scene.marks if m.kind == "nat"]
    assert nat and all(m.key == "node-1" for m in nat)
    assert scene.boxes["svc:default/backend"].hot == "request"
    assert scene.boxes["svc:kube-system/kube-dns"].hot is None


def test_a_bridged_frame_meets_the_hooks_of_the_ip_layer() -> None:
    sim = simulator()
    scene = build_scene(sim, sim.probe("default/a", "default/b", 80))
    request = [v.key for v in scene.path if v.direction == "request"]
    assert request == [
        "pod:default/a", "pod:default/a/eth0", f"node-1/{veth_name('default/a')}",
        "node-1/cbr0", "node-1", "node-1/cbr0", f"node-1/{veth_name('default/b')}",
        "pod:default/b/eth0", "pod:default/b#container/web",
    ]  # fmt: skip
    assert {m.key for m in scene.marks} == {"node-1"}  # FORWARD via br_netfilter


def test_dns_and_connection_legs_have_their_own_colours() -> None:
    scenario, _ = load_scenario(SCENARIOS / "dns-names.yaml")
    sim = Simulator(scenario.cluster)
    scene = build_scene(sim, sim.probe("default/tool", "api.shop", 80))
    legs = [v.colour_key for v in scene.path]
    assert legs[0] == "dns-request" and legs[-1] == "reply"
    assert list(dict.fromkeys(legs)) == ["dns-request", "dns-reply", "request", "reply"]
    assert len(set(PATH_COLOUR.values())) == len(PATH_COLOUR)
    assert scene.boxes["pod:kube-system/coredns-0"].hot == "dns-request"
    img = _png(scene)
    assert (
        pixels(
            img, scene.boxes["pod:kube-system/coredns-0"], PATH_COLOUR["dns-request"]
        )
        > 50
    )
    assert (
        pixels(img, scene.boxes["pod:kube-system/coredns-0"], PATH_COLOUR["request"])
        == 0
    )
    texts = [t.text or "" for t in ET.fromstring(to_svg(scene)).iter(f"{SVG}text")]
    assert "DNS query" in texts and "DNS answer" in texts


def test_services_policies_containers_and_lo_are_drawn() -> None:
    scenario, _ = load_scenario(SCENARIOS / "networkpolicy-lab.yaml")
    sim = Simulator(scenario.cluster)
    scene = build_scene(sim)
    texts = [t.text or "" for t in ET.fromstring(to_svg(scene)).iter(f"{SVG}text")]
    pod = scene.boxes["pod:default/httpd-deployment-0"]
    lines = [text for text, _ in pod.lines]
    assert "netpol: test-np" in lines
    # the pause container holds the pod's network namespace; its containers share it
    chips = [b for b in scene.boxes.values() if b.key.startswith(pod.key + "#")]
    assert [(b.kind, b.lines[0][0]) for b in chips] == [
        ("pause", "pause"), ("container", "httpd"),
    ]  # fmt: skip
    for chip in chips:  # inside the pod's box, under its text
        assert pod.x < chip.x and chip.x + chip.w < pod.x + pod.w
        assert (
            pod.y + pod.h - pod.pad_bottom <= chip.y < chip.y + chip.h < pod.y + pod.h
        )
    assert "pod:default/httpd-deployment-0/lo" in scene.boxes
    dns = scene.boxes["svc:kube-system/kube-dns"]
    assert [t for t, _ in dns.lines][:2] == [
        "svc kube-system/kube-dns",
        "ClusterIP 10.96.0.10",
    ]
    assert "53/UDP -> kube-system/coredns-0:53" in texts
    assert any(t.startswith("Services: ") for t in texts)


def test_png_shows_the_path_on_the_boxes_it_crossed(
    delivered: tuple[Scene, Image.Image],
) -> None:
    scene, img = delivered
    assert img.size == (round(scene.width * 2), round(scene.height * 2))
    orange, violet = PATH_COLOUR["request"], PATH_COLOUR["reply"]
    for key in REQUEST:
        assert pixels(img, scene.boxes[key], orange) > 50, key
    for key in ("pod:default/b", "pod:default/b/eth0", f"node-1/{veth_name('default/b')}",
                "gateway", "external:web"):  # fmt: skip
        assert pixels(img, scene.boxes[key], orange) == 0, key
        assert pixels(img, scene.boxes[key], violet) == 0, key
    assert pixels(img, scene.boxes["node-2/flannel.1"], violet) > 20  # the reply too


def test_png_marks_the_policy_decision() -> None:
    scenario, _ = load_scenario(SCENARIOS / "networkpolicy-lab.yaml")
    sim = Simulator(scenario.cluster)
    trace = sim.probe("default/pod1", "default/httpd-deployment-1", 80)
    assert trace.verdict is not None and trace.verdict.value == "denied-ingress"
    scene = build_scene(sim, trace)
    deny = [m for m in scene.marks if m.kind == "deny"]
    assert [m.key for m in deny] == ["node-1"]  # the ingress rule, on the pod's node
    assert "isolated for ingress by default/test-np" in deny[0].text
    img = _png(scene)
    red = MARK_COLOUR["deny"]
    assert pixels(img, scene.boxes["node-1"], red, pad=12) > 100
    assert pixels(img, scene.boxes["node-2"], red, pad=12) == 0
    assert not any(v.direction == "reply" for v in scene.path)
    violet = rgb(PATH_COLOUR["reply"])
    legend_free = img.crop((0, 0, img.width, round(img.height * 0.8)))
    colours = legend_free.getcolors(1 << 16)
    assert colours is not None and violet not in {c for _, c in colours}


def _png(scene: Scene) -> Image.Image:
    import io

    buf = io.BytesIO()
    to_png(scene, buf)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def test_svg_names_every_device() -> None:
    sim = simulator(NetworkMode.ROUTED)
    scene = build_scene(sim, sim.probe("default/a", "external/web", 80))
    root = ET.fromstring(to_svg(scene))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    for want in ("default/a", "10.0.1.3", "eth0", veth_name("default/a"),
                 "cbr0  10.0.1.1/24  (bridge)", "eth0  10.100.0.2/24",
                 "underlay  10.100.0.0/24  (the nodes' L2 segment)",
                 "10.0.2.0/24 via 10.100.0.3 dev eth0", "external web"):  # fmt: skip
        assert any(want in t for t in texts), want
    assert not any("flannel.1" in t for t in texts)  # no overlay in routed mode
    hot = {r.get("data-key") for r in root.iter(f"{SVG}rect") if r.get("data-hot")}
    assert {"gateway", "external:web", "node-1/eth0", "underlay"} <= hot
    assert "node-2/eth0" not in hot
    dots = list(root.iter(f"{SVG}circle"))
    assert len(dots) >= len(scene.path)


def test_mermaid() -> None:
    sim = simulator()
    text = to_mermaid(build_scene(sim, sim.probe("default/a", "default/b", 80)))
    lines = text.splitlines()
    assert lines[0] == "flowchart TB"
    assert '  subgraph n_node_1_panel["node node-1"]' in lines
    assert "  n_pod_default_a ==>|13| n_pod_default_a_eth0" in lines  # hop 13: xmit
    assert any(line.startswith("  linkStyle ") for line in lines)
    assert not any("n_node_1_flannel_1 ==>" in line for line in lines)  # bridged at L2


def test_cli_graph(tmp_path: Path) -> None:
    file = SCENARIOS / "cross-node-vxlan.yaml"
    r = run_cli("graph", file, "-o", tmp_path / "t.svg", "--from", "default/a", "--to",
                "default/c", "--port", "80")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert r.stderr.strip().endswith("(delivered)")
    assert ET.parse(tmp_path / "t.svg").getroot().tag == f"{SVG}svg"
    r = run_cli("graph", file, "-o", tmp_path / "t.png")
    assert (
        r.exit_code == 0
        and (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    )
    r = run_cli("graph", file, "--format", "mermaid")
    assert r.exit_code == 0 and r.stdout.startswith("flowchart TB")
    r = run_cli("graph", file, "-o", tmp_path / "t.gif")
    assert r.exit_code == 2 and "cannot tell the picture format from 'gif'" in r.stderr
    r = run_cli("graph", file, "-o", tmp_path / "t.svg", "--from", "default/a")
    assert r.exit_code == 2 and "--from and --to go together" in r.stderr
