"""The walk viewer in a real browser: headless Chromium from Debian, driven by selenium
through Debian's chromedriver (no driver download: `Service(path)`, `SE_OFFLINE`).

The page is opened from `file://` as a learner would open it; the tests press the buttons
and keys a learner presses and read what the page shows.  Without the browser the tests
are skipped, except in CI (`CI=true`), where `.ci/run` installs it and a skip would hide a
failure.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplane.page import packet_layers, walk_page
from dataplane.quiz import questions
from dataplane.sim import Simulator
from tests.io.helpers import SCENARIOS, run_cli, simulator
from topology.loader import load_scenario

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, DRIVER):
        if not os.path.exists(path):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = _missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {why}")
        pytest.skip(why)
    os.environ["SE_OFFLINE"] = "true"  # never let selenium fetch a driver or stats
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--window-size=1600,1000", "--disable-dev-shm-usage",
                "--no-proxy-server", "--disable-background-networking"):  # fmt: skip
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _page(tmp_path: Path, name: str, html: str) -> str:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return path.as_uri()


def _open(driver: Any, url: str) -> None:
    """Load `url` with the browser's logs emptied first (each test reads its own)."""
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(url)


def _clean_logs(driver: Any, page: str) -> None:
    """No console error, and no request but the page itself (file://, nothing fetched)."""
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert {u.split("?")[0] for u in urls} <= {page}, urls


@pytest.fixture(scope="module")
def cross_node(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    sim = simulator()
    trace = sim.probe("default/a", "default/c", 80)
    html = walk_page(sim, trace)
    return _page(tmp_path_factory.mktemp("walk"), "walk.html", html), trace


def _current(driver: Any) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    hop = driver.find_element(By.CSS_SELECTOR, "li[aria-current=step]")
    rect = driver.find_element(By.CSS_SELECTOR, "#picture rect.current")
    return hop.get_attribute("data-hop"), rect.get_attribute("data-key")


def test_next_steps_hop_by_hop_on_the_picture(
    browser: Any, cross_node: tuple[str, Any], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    url, trace = cross_node
    _open(browser, url)
    names = [
        b.accessible_name
        for b in browser.find_elements(By.CSS_SELECTOR, "#controls button")
    ]
    assert names == ["Previous", "Play", "Next"]
    assert _current(browser) == ("1", "pod:default/a")
    for _ in range(5):
        browser.find_element(By.ID, "next").click()
    # hop 6: node-1's cbr0 answers the pod's ARP for its gateway
    hop6 = trace.hops[5]
    assert (hop6.seq, hop6.node, hop6.device, hop6.event) == (
        6,
        "node-1",
        "cbr0",
        "arp",
    )
    assert _current(browser) == ("6", "node-1/cbr0")
    rect = browser.find_element(By.CSS_SELECTOR, "#picture rect.current")
    assert rect.get_attribute("data-device") == "node-1/cbr0"
    on_path = {
        r.get_attribute("data-key")
        for r in browser.find_elements(By.CSS_SELECTOR, "#picture rect.on-path")
    }
    assert on_path == {"pod:default/a"}  # ARP is not the packet's path
    for _ in range(8):
        browser.find_element(By.ID, "next").click()
    assert _current(browser) == ("14", "node-1")  # route lookup in node-1's IP layer
    on_path = {
        r.get_attribute("data-key")
        for r in browser.find_elements(By.CSS_SELECTOR, "#picture rect.on-path")
    }
    assert {"pod:default/a/eth0", "node-1/cbr0", "node-1"} <= on_path
    assert "node-2/eth0" not in on_path
    eth0 = browser.find_element(By.CSS_SELECTOR, 'rect[data-key="pod:default/a/eth0"]')
    assert eth0.get_attribute("data-device") == "node-1/default/a/eth0"
    # the layer view: hop 14 is the route lookup, the packet's IPv4 header shown
    layers = browser.find_element(By.ID, "layers").text
    assert "route that matched: 10.0.2.2 via 10.0.2.0 dev flannel.1 onlink" in layers
    assert "IPv4" in layers and "TCP" in layers
    browser.find_element(By.ID, "prev").click()
    assert _current(browser)[0] == "13"
    browser.save_screenshot(str(tmp_path / "walk.png"))
    _clean_logs(browser, url)


def test_changed_fields_are_highlighted(
    browser: Any, cross_node: tuple[str, Any]
) -> None:
    from selenium.webdriver.common.by import By

    url, trace = cross_node
    _open(browser, url)
    ttl = next(
        h for h in trace.hops if h.event == "forward"
    )  # ip_forward: ttl 64 -> 63
    box = browser.find_element(By.ID, "jump")
    box.clear()
    box.send_keys(str(ttl.seq), "\n")
    assert _current(browser)[0] == str(ttl.seq)
    changed = browser.find_elements(By.CSS_SELECTOR, "#layers tr.changed")
    assert [r.text for r in changed] == ["ttl 63"]
    # the policy mark appears with the hop that decided, not before
    marks = browser.find_elements(By.CSS_SELECTOR, "#picture g[data-seq]")
    decided = next(h.seq for h in trace.hops if h.event == "FORWARD")
    assert decided > ttl.seq
    assert [m.is_displayed() for m in marks] == [False, False]
    box.clear()
    box.send_keys(str(decided), "\n")
    assert [m.is_displayed() for m in marks] == [True, False]
    encap = next(h for h in trace.hops if h.event == "encap")
    box.clear()
    box.send_keys(str(encap.seq), "\n")
    captions = [
        c.text for c in browser.find_elements(By.CSS_SELECTOR, "#layers caption")
    ]
    assert captions[:4] == ["IPv4", "UDP", "VXLAN", "inner Ethernet"]


def test_play_to_the_end_and_keys(browser: Any, cross_node: tuple[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, trace = cross_node
    _open(browser, url)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_LEFT)
    assert _current(browser)[0] == "2"
    Select(browser.find_element(By.ID, "speed")).select_by_visible_text("20x")
    body.send_keys(" ")
    assert browser.find_element(By.ID, "play").get_attribute("aria-pressed") == "true"
    last = str(trace.hops[-1].seq)
    WebDriverWait(browser, 20).until(lambda d: _current(d)[0] == last)
    verdict = browser.find_element(By.ID, "verdict")
    assert verdict.is_displayed()
    assert verdict.text.startswith("verdict: delivered — SA from 10.0.2.2:80")
    WebDriverWait(browser, 5).until(
        lambda d: d.find_element(By.ID, "play").get_attribute("aria-pressed") == "false"
    )
    replies = browser.find_elements(By.CSS_SELECTOR, "#hops li.reply")
    assert len(replies) == sum(1 for h in trace.hops if h.direction == "reply")
    _clean_logs(browser, url)


def test_the_summary_view_is_the_text_summary(
    browser: Any, cross_node: tuple[str, Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from dataplane.trace_view import summary_steps

    url, trace = cross_node
    _open(browser, url)
    Select(browser.find_element(By.ID, "view")).select_by_value("summary")
    shown = [
        li
        for li in browser.find_elements(By.CSS_SELECTOR, "#hops li")
        if li.is_displayed()
    ]
    steps = summary_steps(trace)
    assert len(shown) == len(steps) <= 20
    # each line is shown at the last hop folded into it, numbered as in `-o summary`
    assert [li.get_attribute("data-hop") for li in shown] == [
        str(s.hops[-1].seq) for s in steps
    ]
    assert shown[0].text.startswith("1  node-1 pod default/a  eth0  ")
    browser.find_element(By.ID, "next").click()
    assert _current(browser)[0] == str(steps[1].hops[-1].seq)
    _clean_logs(browser, url)


def test_trace_writes_the_page(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    file = SCENARIOS / "cross-node-vxlan.yaml"
    args = ("trace", file, "--from", "default/a", "--to", "default/c", "--port", "80")
    r = run_cli(*args, "-o", "html")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(run_cli(*args, "-o", "json").stdout)
    url = _page(tmp_path, "trace.html", r.stdout)
    _open(browser, url)
    assert (
        browser.find_element(By.ID, "title").text
        == "TCP default/a -> default/c:80 (vxlan)"
    )
    hops = browser.find_elements(By.CSS_SELECTOR, "#hops li[data-hop]")
    assert [h.get_attribute("data-hop") for h in hops] == [
        str(h["seq"]) for h in doc["trace"]["hops"]
    ]
    _clean_logs(browser, url)


def test_predict_mode_asks_before_each_decision(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    scenario, _ = load_scenario(SCENARIOS / "networkpolicy-lab.yaml")
    sim = Simulator(scenario.cluster)
    trace = sim.probe("default/pod1", "default/httpd-deployment-0", 80)
    qs = questions(sim, trace)
    assert [q.kind for q in qs] == ["route", "bridge", "policy", "policy", "verdict"]
    url = _page(tmp_path, "lab.html", walk_page(sim, trace))
    _open(browser, url + "?mode=predict")
    question = browser.find_element(By.ID, "question")
    assert not question.is_displayed()
    browser.find_element(By.ID, "next").click()
    assert question.is_displayed()
    first = qs[0]
    assert browser.find_element(By.ID, "q-prompt").text == first.prompt
    options = browser.find_elements(By.CSS_SELECTOR, "#q-options .option")
    assert [o.text for o in options] == list(first.options)
    wrong = next(i for i in range(len(options)) if i != first.answer)
    options[wrong].click()
    assert "wrong" in options[wrong].get_attribute("class").split()
    assert browser.find_element(By.ID, "q-feedback").text == "Not this one. Try again."
    assert browser.find_elements(By.CSS_SELECTOR, "li[aria-current=step]") == []
    options[first.answer].click()
    assert browser.find_element(By.ID, "q-feedback").text == f"Right: {first.reason}"
    assert _current(browser)[0] == str(first.seq)
    assert browser.find_element(By.ID, "score").text == "score 0/1"
    # the policy question on the ingress check: the right answer is "dropped"
    for q in qs[1:4]:
        for _ in range(40):
            if (
                browser.find_element(By.ID, "question").is_displayed()
                and browser.find_element(By.ID, "q-prompt").text == q.prompt
                and not browser.find_elements(By.CSS_SELECTOR, "#q-options .right")
            ):
                break
            browser.find_element(By.ID, "next").click()
        browser.find_elements(By.CSS_SELECTOR, "#q-options .option")[q.answer].click()
    assert qs[3].options[qs[3].answer] == "dropped"
    assert browser.find_element(By.ID, "score").text == "score 3/4"
    for _ in range(40):
        browser.find_element(By.ID, "next").click()
        if browser.find_element(By.ID, "q-prompt").text == qs[4].prompt:
            break
    assert not browser.find_element(By.ID, "verdict").is_displayed()
    browser.find_elements(By.CSS_SELECTOR, "#q-options .option")[qs[4].answer].click()
    assert browser.find_element(By.ID, "verdict").text.startswith(
        "verdict: denied-ingress"
    )
    _clean_logs(browser, url)


def test_a_long_walk_is_small_and_renders_fast(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    scenario, _ = load_scenario(SCENARIOS / "dns-names.yaml")
    sim = Simulator(scenario.cluster)
    trace = sim.probe("default/tool", "api.shop.svc", 80)  # three DNS queries first
    assert len(trace.hops) >= 200
    html = walk_page(sim, trace)
    assert len(html.encode()) < 1_000_000
    url = _page(tmp_path, "long.html", html)
    times = []
    for _ in range(3):  # the best of three loads: the machine may be busy with others
        _open(browser, url)
        times.append(
            browser.execute_script(
                "const t = performance.getEntriesByType('navigation')[0];"
                "return t.loadEventEnd - t.startTime;"
            )
        )
    assert 0 < min(times) < 1000, times
    assert len(browser.find_elements(By.CSS_SELECTOR, "#hops li[data-hop]")) == len(
        trace.hops
    )
    _clean_logs(browser, url)


def test_quiz_page(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    r = run_cli("quiz", SCENARIOS / "networkpolicy-lab.yaml")
    assert r.exit_code == 0, r.stderr
    url = _page(tmp_path, "quiz.html", r.stdout)
    _open(browser, url)
    first = browser.find_element(By.CSS_SELECTOR, ".question")
    data = json.loads(
        run_cli("quiz", SCENARIOS / "networkpolicy-lab.yaml", "-o", "json").stdout
    )
    q = data["probes"][0]["questions"][0]
    assert first.find_element(By.CSS_SELECTOR, ".prompt").text == "1. " + q["prompt"]
    buttons = first.find_elements(By.CSS_SELECTOR, ".option")
    buttons[(q["answer"] + 1) % len(buttons)].click()
    buttons[q["answer"]].click()
    assert (
        first.find_element(By.CSS_SELECTOR, ".feedback").text == "Right: " + q["reason"]
    )
    assert browser.find_element(By.ID, "score").text.startswith(
        "Score: 0 of 1 answered right"
    )
    _clean_logs(browser, url)


def test_a_scenario_page_opens_each_step_and_matrix_cell(
    browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    r = run_cli("run", "-q", SCENARIOS / "networkpolicy-lab.yaml", "--html", tmp_path)
    assert r.exit_code == 0, r.stderr
    page = tmp_path / "networkpolicy-lab.html"
    assert r.stderr.strip().endswith(f"wrote {page}")
    _open(browser, page.as_uri())
    assert browser.find_element(By.ID, "title").text == "networkpolicy-lab"
    steps = browser.find_elements(By.CSS_SELECTOR, "#steps li[data-step]")
    assert len(steps) == 15
    assert "[pass]" in steps[0].text
    # the matrix: rows from, columns to; the pod1 row is denied by ingress (I)
    cell = browser.find_element(
        By.CSS_SELECTOR,
        'td[data-from="default/pod1"][data-to="default/httpd-deployment-1"]',
    )
    button = cell.find_element(By.TAG_NAME, "button")
    assert button.text == "I" and button.accessible_name.endswith(": denied-ingress")
    button.click()
    assert browser.find_element(By.ID, "subtitle").text == (
        "TCP default/pod1 -> default/httpd-deployment-1:80 (vxlan): verdict: "
        "denied-ingress, policy default/test-np"
    )
    assert (
        "I denied-ingress"
        in browser.find_element(By.CSS_SELECTOR, "#matrix .legend").text
    )
    # a probe step opens its walk; after `label`, the same probe is delivered
    steps[12].find_element(By.TAG_NAME, "button").click()
    assert browser.find_element(By.ID, "subtitle").text == (
        "TCP default/pod1 -> svc/default/httpd:80 (vxlan): verdict: delivered, policy "
        "default/test-np, Service endpoint default/httpd-deployment-0"
    )
    _clean_logs(browser, page.as_uri())


# -- without a browser ----------------------------------------------------------------------


def test_the_page_fetches_nothing() -> None:
    sim = simulator()
    html = walk_page(sim, sim.probe("default/a", "default/c", 80))
    assert "default-src 'none'" in html
    for attr in ("src=", "href=", "url(http", "@import"):
        assert attr not in html.replace('src="', "x"), attr
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html


def test_packet_layers_of_an_encapsulated_frame() -> None:
    sim = simulator()
    trace = sim.probe("default/a", "default/c", 80)
    hop = next(h for h in trace.hops if h.event == "encap")
    assert hop.packet is not None
    layers = packet_layers(hop.packet)
    assert [la["name"] for la in layers] == [
        "IPv4", "UDP", "VXLAN", "inner Ethernet", "inner IPv4", "inner TCP",
    ]  # fmt: skip
    outer = dict(layers[0]["fields"])
    assert (outer["src"], outer["dst"], outer["ttl"]) == (
        "10.100.0.2",
        "10.100.0.3",
        "64",
    )
    assert dict(layers[1]["fields"])["dport"] == "8472"
    assert dict(layers[2]["fields"]) == {"vni": "1"}


def test_notebooks_show_the_viewer() -> None:
    sim = Simulator.from_file(SCENARIOS / "cross-node-vxlan.yaml")
    trace = sim.probe("default/a", "default/c", 80)
    html = trace._repr_html_()
    assert html.startswith('<iframe srcdoc="&lt;!doctype html&gt;')
    assert (
        "data-hop" not in html or "&quot;" in html
    )  # the page is escaped inside srcdoc


def test_run_html_gives_each_file_its_page(tmp_path: Path) -> None:
    text = (SCENARIOS / "same-node.yaml").read_text()
    files = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / "lab.yaml")
        files[-1].write_text(text)
    out = tmp_path / "pages"
    r = run_cli("run", "-q", *files, "--html", out)
    assert r.exit_code == 0, r.stderr
    pages = sorted(p.name for p in out.iterdir())
    assert len(pages) == 2 and all(
        p.startswith("lab-") and p.endswith(".html") for p in pages
    )
    r = run_cli("run", "-q", files[0], "--html", tmp_path / "a" / "lab.yaml")
    assert r.exit_code == 2 and "cannot write" in r.stderr
