"use strict";
// The walk viewer: step through a packet's walk on the cluster picture.
// Data: the JSON in #walk-data ({svgs, walks, steps}); no network access of any kind.
(function () {
  const DATA = JSON.parse(document.getElementById("walk-data").textContent);
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(window.location.search);
  const state = {
    walk: null, index: -1, pos: 0, svg: -1, timer: null,
    predict: params.get("mode") === "predict", view: "detailed",
    answered: new Set(), asked: 0, right: 0, pending: null,
  };

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // -- a walk ---------------------------------------------------------------------------
  function openWalk(index) {
    stop();
    const walk = DATA.walks[index];
    state.walk = walk; state.index = index; state.pos = 0; state.pending = null;
    if (state.svg !== walk.svg) {
      $("picture").innerHTML = DATA.svgs[walk.svg];
      state.svg = walk.svg;
    }
    const svg = $("picture").querySelector("svg");
    svg.querySelector("g.walk-under").innerHTML = walk.under;
    svg.querySelector("g.walk-over").innerHTML = walk.over;
    const heading = walk.title + (walk.mode ? "  (" + walk.mode + ")" : "");
    if (!DATA.steps.length) $("title").textContent = heading;  // a scenario keeps its name
    let sub = (DATA.steps.length ? heading + ": " : "") + "verdict: " + walk.verdict;
    if (walk.policy) sub += ", policy " + walk.policy;
    if (walk.endpoint) sub += ", Service endpoint " + walk.endpoint;
    $("subtitle").textContent = sub;
    $("assumptions").textContent = walk.assumptions.join(" ");
    const list = $("hops");
    list.textContent = "";
    walk.hops.forEach((hop, i) => {
      const cls = ["hop", hop.direction];
      if (hop.leg) cls.push(hop.leg);
      const li = el("li", { "data-hop": String(hop.seq), class: cls.join(" ") });
      li.appendChild(el("span", { class: "seq" }, String(hop.seq)));
      li.appendChild(el("span", { class: "dir" }, (hop.leg ? "dns " : "") + hop.direction));
      const where = hop.where + (hop.device ? " " + hop.device : "");
      li.appendChild(el("span", { class: "detailed" }, where + "  " + hop.event + ": " + hop.detail));
      if (hop.summary) li.appendChild(el("span", { class: "summary" }, hop.summary));
      li.addEventListener("click", () => { stop(); clearQuestion(); show(i); });
      list.appendChild(li);
    });
    $("jump").max = String(walk.hops.length ? walk.hops[walk.hops.length - 1].seq : 1);
    document.querySelectorAll("#steps li").forEach((li) => {
      li.classList.toggle("open", (li.dataset.walks || "").split(",").includes(String(index)));
    });
    document.querySelectorAll("#matrix td").forEach((td) => {
      td.classList.toggle("open", td.dataset.walk === String(index));
    });
    applyView();
    if (state.predict) start(); else show(visible().length ? visible()[0] : 0);
  }

  // predict mode starts before the first hop: the first question may be about it
  function start() {
    state.pos = -1;
    const lis = $("hops").children;
    for (let i = 0; i < lis.length; i++) {
      lis[i].removeAttribute("aria-current");
      lis[i].classList.add("future");
    }
    drawPicture({ visit: -1, key: "", seq: 0 });
    $("layers").textContent = "";
    $("layers").appendChild(el("p", {}, "Predict mode: press Next to send the packet; you will be asked before each decision."));
    $("verdict").hidden = true;
  }

  function visible() {
    const out = [];
    state.walk.hops.forEach((h, i) => { if (state.view === "detailed" || h.summary) out.push(i); });
    return out;
  }

  function applyView() {
    const lis = $("hops").children;
    $("hops").classList.toggle("summary-view", state.view === "summary");
    state.walk.hops.forEach((h, i) => {
      lis[i].classList.toggle("hidden", !(state.view === "detailed" || h.summary));
    });
  }

  function show(pos) {
    const walk = state.walk;
    if (!walk || !walk.hops.length) return;
    pos = Math.max(0, Math.min(pos, walk.hops.length - 1));
    state.pos = pos;
    const hop = walk.hops[pos];
    const lis = $("hops").children;
    for (let i = 0; i < lis.length; i++) {
      if (i === pos) lis[i].setAttribute("aria-current", "step");
      else lis[i].removeAttribute("aria-current");
      lis[i].classList.toggle("future", i > pos);
    }
    const list = $("hops"), li = lis[pos];
    if (li.offsetTop < list.scrollTop) list.scrollTop = li.offsetTop;
    else if (li.offsetTop + li.offsetHeight > list.scrollTop + list.clientHeight)
      list.scrollTop = li.offsetTop + li.offsetHeight - list.clientHeight;
    if (document.activeElement !== $("jump")) $("jump").value = String(hop.seq);
    drawPicture(hop);
    drawLayers(hop);
    const atEnd = pos === visible()[visible().length - 1];
    const final = question(0);
    const verdictShown = atEnd && !(state.predict && final && !state.answered.has(key(final)));
    const box = $("verdict");
    box.hidden = !verdictShown;
    if (verdictShown) {
      box.textContent = "verdict: " + walk.verdict + " — " + walk.explanation;
      box.classList.toggle("failed", walk.verdict !== "delivered");
    }
  }

  function drawPicture(hop) {
    const svg = $("picture").querySelector("svg");
    const visits = state.walk.path;
    const upto = hop.visit;
    const leg = {};
    for (let i = 0; i <= upto && i < visits.length; i++) leg[visits[i].key] = visits[i].colour;
    svg.querySelectorAll("rect[data-key]").forEach((r) => {
      const k = r.getAttribute("data-key");
      r.classList.toggle("on-path", k in leg);
      if (k in leg) r.setAttribute("data-leg", leg[k]); else r.removeAttribute("data-leg");
      r.classList.toggle("current", k === hop.key);
    });
    svg.querySelectorAll("[data-visit]").forEach((g) => {
      g.classList.toggle("later", Number(g.getAttribute("data-visit")) > upto);
    });
    svg.querySelectorAll("[data-seq]").forEach((g) => {
      g.classList.toggle("later", Number(g.getAttribute("data-seq")) > hop.seq);
    });
  }

  function drawLayers(hop) {
    const box = $("layers");
    box.textContent = "";
    box.appendChild(el("h2", {}, "hop " + hop.seq + " (" + hop.direction + "): " + hop.event +
      " at " + hop.where + (hop.device ? " " + hop.device : "")));
    const consulted = el("p", { class: "consulted" });
    consulted.appendChild(el("strong", {}, hop.consulted + ": "));
    consulted.appendChild(document.createTextNode(hop.detail));
    box.appendChild(consulted);
    if (hop.rewrites.length) box.appendChild(el("p", { class: "rewrites" }, "rewrites: " + hop.rewrites.join(", ")));
    if (hop.reason) box.appendChild(el("p", { class: "reason" }, "dropped: " + hop.reason));
    if (hop.decision) box.appendChild(el("pre", { class: "decision" }, hop.decision));
    if (hop.packet < 0) return;
    const changed = new Set(hop.changed.map((c) => c.toLowerCase()));
    for (const layer of state.walk.packets[hop.packet]) {
      const table = el("table", { "data-layer": layer.name });
      table.appendChild(el("caption", {}, layer.name));
      for (const [k, v] of layer.fields) {
        const name = (layer.name + "." + k).toLowerCase();
        const short = shortName(layer.name) + "." + k;
        const hot = changed.has(name) || changed.has(short.toLowerCase());
        const tr = el("tr", hot ? { class: "changed" } : {});
        tr.appendChild(el("td", { class: "k" }, k));
        tr.appendChild(el("td", {}, v));
        table.appendChild(tr);
      }
      box.appendChild(table);
    }
  }

  // the rewrites of the trace name fields like `ip.dst`, `eth.src`
  function shortName(layer) {
    const base = layer.replace(/^(inner |quoted )+/, "");
    return { IPv4: "ip", Ethernet: "eth", TCP: "tcp", UDP: "udp", ICMP: "icmp" }[base] || base.toLowerCase();
  }

  // -- predict mode ---------------------------------------------------------------------
  function key(q) { return state.index + ":" + q.seq + ":" + q.kind; }
  function question(seq) {
    if (!state.predict) return null;
    return state.walk.questions.find((q) => q.seq === seq) || null;
  }

  function ask(q, then) {
    stop();
    state.pending = { q: q, then: then, tries: 0 };
    $("question").hidden = false;
    $("q-prompt").textContent = q.prompt;
    $("q-feedback").textContent = "";
    const opts = $("q-options");
    opts.textContent = "";
    q.options.forEach((text, i) => {
      const b = el("button", { type: "button", class: "option", "data-option": String(i) }, text);
      b.addEventListener("click", () => answer(i, b));
      opts.appendChild(b);
    });
    opts.firstChild.focus();
  }

  function answer(i, button) {
    const p = state.pending;
    if (!p) return;
    if (i !== p.q.answer) {
      if (p.tries === 0) state.asked += 1;
      p.tries += 1;
      button.classList.add("wrong");
      $("q-feedback").textContent = "Not this one. Try again.";
      score();
      return;
    }
    if (p.tries === 0) { state.asked += 1; state.right += 1; }
    button.classList.add("right");
    $("q-feedback").textContent = "Right: " + p.q.reason;
    state.answered.add(key(p.q));
    state.pending = null;
    score();
    p.then();
  }

  function clearQuestion() {
    state.pending = null;
    $("question").hidden = true;
  }

  function score() {
    $("score").textContent = state.asked ? "score " + state.right + "/" + state.asked : "";
  }

  // -- moving ---------------------------------------------------------------------------
  function next() {
    if (!state.walk || state.pending) return false;
    const vis = visible();
    const at = vis.indexOf(state.pos);  // -1 before the first hop (predict mode)
    if (at === vis.length - 1) {
      const final = question(0);
      if (final && !state.answered.has(key(final))) { ask(final, () => show(state.pos)); return false; }
      return false;
    }
    const target = vis[at + 1];
    const hop = state.walk.hops[target];
    // a question is asked before the first shown hop at or after its decision
    const here = state.pos >= 0 ? state.walk.hops[state.pos].seq : -1;
    const q = state.walk.questions.find((x) => state.predict && x.seq > here &&
      x.seq <= hop.seq && !state.answered.has(key(x)));
    if (q) { ask(q, () => show(target)); return false; }  // the answer stays shown
    $("question").hidden = true;
    show(target);
    return true;
  }

  function prev() {
    if (!state.walk) return;
    clearQuestion();
    const vis = visible();
    const at = vis.indexOf(state.pos);
    if (at > 0) show(vis[at - 1]);
  }

  function play() {
    if (state.timer) { stop(); return; }
    const vis = visible();
    if (vis.indexOf(state.pos) === vis.length - 1) show(vis[0]);
    $("play").setAttribute("aria-pressed", "true");
    const tick = () => {
      if (!next()) { stop(); return; }
      state.timer = window.setTimeout(tick, Number($("speed").value));
    };
    state.timer = window.setTimeout(tick, Number($("speed").value));
  }

  function stop() {
    if (state.timer) window.clearTimeout(state.timer);
    state.timer = null;
    $("play").setAttribute("aria-pressed", "false");
  }

  // -- steps and matrix of a scenario page -------------------------------------------------
  function steps() {
    if (!DATA.steps.length) return;
    const nav = $("steps");
    nav.hidden = false;
    const ol = el("ol");
    DATA.steps.forEach((s) => {
      const li = el("li", { "data-step": String(s.index), "data-walks": s.walks.join(",") });
      if (s.ok === false) li.classList.add("fail");
      const status = s.ok === true ? "pass" : s.ok === false ? "FAIL" : "-";
      li.appendChild(el("span", {}, (s.name ? s.name + ": " : "") + s.title + " [" + status + "]"));
      s.walks.slice(0, 20).forEach((w, k) => {
        const b = el("button", { type: "button", "data-walk": String(w) }, s.walks.length > 1 ? "walk " + (k + 1) : "walk");
        b.addEventListener("click", () => { clearQuestion(); openWalk(w); });
        li.appendChild(document.createTextNode(" "));
        li.appendChild(b);
      });
      if (s.matrix) {
        const b = el("button", { type: "button" }, "grid");
        b.addEventListener("click", () => matrix(s.matrix));
        li.appendChild(document.createTextNode(" "));
        li.appendChild(b);
      }
      if (s.message) li.appendChild(el("div", { class: "message" }, s.message));
      ol.appendChild(li);
    });
    nav.appendChild(ol);
    const first = DATA.steps.find((s) => s.matrix);
    if (first) matrix(first.matrix);
  }

  function matrix(m) {
    const box = $("matrix");
    box.hidden = false;
    box.textContent = "";
    const table = el("table");
    const head = el("tr");
    head.appendChild(el("th", {}, "from \\ to"));
    m.to.forEach((t) => head.appendChild(el("th", { scope: "col" }, t)));
    table.appendChild(head);
    m.cells.forEach((row, i) => {
      const tr = el("tr");
      tr.appendChild(el("th", { scope: "row", class: "row" }, m.from[i]));
      row.forEach((cell, j) => {
        const kind = cell.verdict === "delivered" ? "delivered" : cell.verdict.startsWith("denied") ? "denied" : "other";
        const td = el("td", { class: kind, "data-from": m.from[i], "data-to": m.to[j] });
        if (cell.walk !== undefined) td.dataset.walk = String(cell.walk);
        const label = m.from[i] + " to " + m.to[j] + ": " + cell.verdict;
        const b = el("button", { type: "button", title: cell.explanation || label, "aria-label": label }, cell.code);
        if (cell.walk !== undefined) b.addEventListener("click", () => { clearQuestion(); openWalk(cell.walk); });
        else b.disabled = true;
        td.appendChild(b);
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    box.appendChild(table);
    const legend = Object.entries(m.legend || {}).map(([c, v]) => c + " " + v).join(", ");
    box.appendChild(el("p", { class: "legend" }, "rows: from, columns: to; " + legend +
      ". A cell opens that pair's walk."));
  }

  // -- wiring ---------------------------------------------------------------------------
  $("next").addEventListener("click", () => { stop(); next(); });
  $("prev").addEventListener("click", () => { stop(); prev(); });
  $("play").addEventListener("click", play);
  function jump() {
    const text = $("jump").value;
    if (!state.walk || text === "") return;
    const seq = Number(text);
    let i = state.walk.hops.findIndex((h) => h.seq >= seq);
    if (i < 0) i = state.walk.hops.length - 1;
    stop(); clearQuestion(); show(i);
  }
  $("jump").addEventListener("change", jump);
  $("jump").addEventListener("keydown", (e) => { if (e.key === "Enter") jump(); });
  $("view").addEventListener("change", () => {
    state.view = $("view").value;
    applyView();
    const vis = visible();
    if (!vis.includes(state.pos)) show(vis.filter((i) => i <= state.pos).pop() ?? vis[0]);
  });
  $("predict").checked = state.predict;
  $("predict").addEventListener("change", () => {
    state.predict = $("predict").checked;
    document.body.classList.toggle("predict", state.predict);
    clearQuestion();
    if (state.predict) start(); else show(Math.max(state.pos, 0));
  });
  document.body.classList.toggle("predict", state.predict);
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (e.key === "ArrowRight") { e.preventDefault(); stop(); next(); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); stop(); prev(); }
    else if (e.key === " " && !(t && t.tagName === "BUTTON")) { e.preventDefault(); play(); }
  });
  steps();
  if (DATA.walks.length) openWalk(0);
})();
