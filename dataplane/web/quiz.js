"use strict";
// `dataplane quiz`: every probe's questions, answered in place; no network access.
(function () {
  const DATA = JSON.parse(document.getElementById("quiz-data").textContent);
  const main = document.getElementById("quiz");
  let asked = 0, right = 0, total = 0;
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function score() {
    document.getElementById("score").textContent =
      "Score: " + right + " of " + asked + " answered right the first time (" + total + " questions).";
  }
  DATA.probes.forEach((probe, k) => {
    const sec = el("section", { class: "probe", "data-probe": String(k) });
    sec.appendChild(el("h2", {}, probe.title));
    probe.questions.forEach((q, n) => {
      total += 1;
      const div = el("div", { class: "question", "data-seq": String(q.seq), "data-kind": q.kind });
      div.appendChild(el("p", { class: "prompt" }, (n + 1) + ". " + q.prompt));
      const fb = el("p", { class: "feedback", "aria-live": "polite" });
      let tries = 0, done = false;
      q.options.forEach((text, i) => {
        const b = el("button", { type: "button", class: "option", "data-option": String(i) }, text);
        b.addEventListener("click", () => {
          if (done) return;
          if (tries === 0) asked += 1;
          tries += 1;
          if (i === q.answer) {
            done = true;
            if (tries === 1) right += 1;
            b.classList.add("right");
            fb.textContent = "Right: " + q.reason;
          } else {
            b.classList.add("wrong");
            fb.textContent = "Not this one. Try again.";
          }
          score();
        });
        div.appendChild(b);
      });
      div.appendChild(fb);
      sec.appendChild(div);
    });
    main.appendChild(sec);
  });
  score();
})();
