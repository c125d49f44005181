"use strict";
// The status page, live: every second, fetch /status.json and redraw the routing strip,
// the three charts and the tables in place. No library; the page's Content-Security-Policy
// allows this script by its SHA-256 hash, so nothing here may use eval, inline handlers or
// style attributes (colours are SVG fill/stroke attributes).
(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const page = document.body.dataset;
  const every = 1000 * Number(page.refresh);
  const stripBox = document.getElementById("strip");
  const [CELL, GAP, SLOTS] = ["cell", "gap", "slots"].map((k) => Number(stripBox.dataset[k]));
  // One chart: W x H pixels, the plot inside margins L, R, T, B.
  const W = 360, H = 170, L = 44, R = 10, T = 26, B = 20;

  function svg(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }
  function label(parent, x, y, words, attrs) {
    svg("text", Object.assign({ x, y }, attrs || {}), parent).textContent = words;
  }
  function el(name, attrs, words, parent) {
    const e = document.createElement(name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (words !== undefined) e.textContent = words;
    if (parent) parent.appendChild(e);
    return e;
  }
  function square(colour) {
    const s = svg("svg", { class: "sq", viewBox: "0 0 10 10", "aria-hidden": "true" });
    svg("rect", { width: 10, height: 10, fill: colour }, s);
    return s;
  }
  const clock = (ms) => new Date(ms).toISOString().slice(11, 23);
  function latency(s) {
    if (s === null) return "-";
    if (s === "+Inf") return "> " + page.lastBucket + " s";
    return s < 1 ? "≤ " + Math.round(s * 1e6) / 1e3 + " ms" : "≤ " + s + " s";
  }
  // 1, 2, 5, 10, 20, 50, ...: the smallest at or over n.
  function niceCeil(n) {
    for (let p = 1; ; p *= 10) for (const m of [1, 2, 5]) if (m * p >= n) return m * p;
  }

  // --- the routing strip: the last decisions as squares, oldest left ---
  function strip(data, colourOf) {
    const s = svg("svg", { width: SLOTS * (CELL + GAP), height: CELL + 2, role: "img",
      "aria-label": "the last routing decisions, oldest first" });
    const recent = data.recent.slice(-SLOTS);
    const empty = SLOTS - recent.length;
    for (let i = 0; i < SLOTS; i++) {
      const x = i * (CELL + GAP) + 1;
      const d = recent[i - empty];
      if (!d) {
        svg("rect", { x, y: 1, width: CELL, height: CELL, rx: 2, fill: "none", stroke: "#ddd" }, s);
        continue;
      }
      const r = svg("rect", { x, y: 1, width: CELL, height: CELL, rx: 2, fill: colourOf(d.backend) }, s);
      svg("title", {}, r).textContent = clock(d.time_ms) + "  " + d.request + "  → " + d.backend + "  " + d.status;
      if (d.status >= 500) {
        const m = CELL / 4;
        svg("path", { d: `M${x + m} ${1 + m}L${x + CELL - m} ${1 + CELL - m}M${x + CELL - m} ${1 + m}L${x + m} ${1 + CELL - m}`,
          stroke: "white", "stroke-width": 2 }, s);
      }
    }
    stripBox.replaceChildren(s);
  }

  // --- charts ---
  // An empty chart: axes, y ticks [value, text] mapped by y(value), the last minute on x.
  function frame(box, title, ticks, y, n) {
    const fig = el("figure", {}, undefined, box);
    el("figcaption", {}, title, fig);
    const s = svg("svg", { width: W, height: H, role: "img", "aria-label": title }, fig);
    for (const [v, words] of ticks) {
      svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e4e4e4" }, s);
      label(s, L - 4, y(v) + 3, words, { "text-anchor": "end" });
    }
    for (const ago of [60, 45, 30, 15, 0]) {
      const x = L + ((n - ago) / n) * (W - L - R);
      svg("line", { x1: x, x2: x, y1: H - B, y2: H - B + 3, stroke: "#999" }, s);
      label(s, x, H - 6, ago ? "−" + ago + " s" : "now", { "text-anchor": "middle" });
    }
    svg("path", { d: `M${L} ${T}V${H - B}H${W - R}`, fill: "none", stroke: "#999" }, s);
    return s;
  }
  // Dashed lines where backends changed state; with labels on the first chart only.
  // A switch of strategy is kept by every backend: drawn once, in black.
  function marks(s, data, nameOf, xAt, labelled) {
    let row = 0;
    const switches = new Set();
    for (const b of data.backends) {
      for (const e of b.history.events) {
        const whole = e.state === "STRATEGY";
        if (whole && switches.has(e.time_ms)) continue;
        switches.add(e.time_ms);
        const colour = whole ? "#222" : b.colour;
        const text = whole ? "strategy " + e.reason
          : nameOf(b) + " " + e.state + (e.state === "WEIGHT" ? " " + e.reason : "");
        const x = xAt(e.time_ms);
        svg("line", { x1: x, x2: x, y1: T, y2: H - B, stroke: colour, "stroke-width": 1.5,
          "stroke-dasharray": "4 2" }, s);
        if (!labelled) continue;
        const right = x > W - 70;
        label(s, right ? x - 3 : x + 3, T - 14 + 9 * (row++ % 2), text,
          { class: "mark", fill: colour, "text-anchor": right ? "end" : "start" });
      }
    }
  }
  // One line per backend through the seconds that have a value (a gap where it has none).
  function lines(s, data, values, y, xMid) {
    for (const b of data.backends) {
      let d = "";
      let pen = false;
      values(b).forEach((v, i) => {
        if (v === null) { pen = false; return; }
        d += (pen ? "L" : "M") + xMid(i).toFixed(1) + " " + y(v).toFixed(1);
        pen = true;
        svg("circle", { cx: xMid(i), cy: y(v), r: 1.6, fill: b.colour }, s);
      });
      if (d) svg("path", { d, fill: "none", stroke: b.colour, "stroke-width": 1.5 }, s);
    }
  }

  function charts(data, nameOf) {
    document.getElementById("legend").replaceChildren(...data.backends.map((b) => {
      const item = el("span", {});
      item.append(square(b.colour), nameOf(b) + " " + b.url);
      return item;
    }));
    const box = document.getElementById("charts");
    box.replaceChildren();
    if (!data.backends.length) return;
    const n = data.history_seconds;
    const start = data.backends[0].history.start_ms;
    const plotW = W - L - R;
    const xAt = (ms) => L + ((ms - start) / 1000 / n) * plotW;
    const xMid = (i) => L + ((i + 0.5) / n) * plotW;
    const span = (lo, hi) => (v) => H - B - ((v - lo) / (hi - lo)) * (H - B - T);

    // Requests answered per second, stacked by backend; the current second, still filling, paler.
    const totals = new Array(n).fill(0);
    for (const b of data.backends) b.history.requests.forEach((v, i) => (totals[i] += v));
    const top = niceCeil(Math.max(1, ...totals));
    const y = span(0, top);
    let s = frame(box, "Requests answered per second", [[0, "0"], [top / 2, String(top / 2)], [top, String(top)]], y, n);
    const base = new Array(n).fill(0);
    for (const b of data.backends) {
      b.history.requests.forEach((v, i) => {
        if (!v) return;
        svg("rect", { x: L + (i / n) * plotW + 0.5, width: Math.max(plotW / n - 1, 1), y: y(base[i] + v),
          height: y(base[i]) - y(base[i] + v), fill: b.colour, opacity: i === n - 1 ? 0.5 : 1 }, s);
        base[i] += v;
      });
    }
    marks(s, data, nameOf, xAt, true);

    // Error rate: failed attempts and 5xx answers, out of all attempts, per backend.
    const pct = span(0, 100);
    s = frame(box, "Errors (failed attempts + 5xx), % of attempts", [[0, "0 %"], [50, "50 %"], [100, "100 %"]], pct, n);
    lines(s, data, (b) => b.history.requests.map((answered, i) => {
      const failed = b.history.errors[i];
      const attempts = answered + failed;
      return attempts ? Math.min(100, (100 * (failed + b.history.responses_5xx[i])) / attempts) : null;
    }), pct, xMid);
    marks(s, data, nameOf, xAt, false);

    // p99 latency, on a log scale from the first bucket to past the last.
    const lo = Math.log10(Number(page.firstBucket));
    const hi = Math.log10(Number(page.lastBucket)) + 0.3;
    const logY = (v) => span(lo, hi)(Math.log10(v === "+Inf" ? 10 ** hi : v));
    const ticks = [[0.001, "1 ms"], [0.01, "10 ms"], [0.1, "100 ms"], [1, "1 s"]];
    s = frame(box, "p99 latency (bucket upper bound)", ticks, logY, n);
    lines(s, data, (b) => b.history.p99_seconds, logY, xMid);
    marks(s, data, nameOf, xAt, false);
  }

  // --- tables ---
  function backends(data) {
    const rows = data.backends.map((b) => {
      const tr = el("tr", {});
      const name = el("td", { class: "name" }, undefined, tr);
      name.append(square(b.colour), b.url);
      el("td", {}, String(b.id), tr);
      const state = el("td", { class: "l" }, undefined, tr);
      el("span", { class: b.state }, b.state, state);
      if (b.reason !== null) state.append(" (" + b.reason + ")");
      for (const v of [b.weight, b.active, b.requests, b.errors]) el("td", {}, String(v), tr);
      el("td", {}, latency(b.p50_seconds), tr);
      el("td", {}, latency(b.p99_seconds), tr);
      return tr;
    });
    document.querySelector("#backends tbody").replaceChildren(...rows);
  }
  function decisions(data, colourOf) {
    const table = document.getElementById("recent");
    const shown = data.recent.slice(-Number(table.dataset.rows)).reverse();
    table.tBodies[0].replaceChildren(...shown.map((d) => {
      const tr = el("tr", {});
      el("td", {}, clock(d.time_ms), tr);
      el("td", { class: "l" }, d.client, tr);
      el("td", { class: "l" }, d.request, tr);
      const to = el("td", { class: "l name" }, undefined, tr);
      to.append(square(colourOf(d.backend)), d.backend);
      el("td", {}, String(d.status), tr);
      el("td", { class: "l why" }, d.why ? d.why.text : "", tr);
      return tr;
    }));
  }

  function render(data) {
    const colours = new Map(data.backends.map((b) => [b.url, b.colour]));
    const colourOf = (url) => colours.get(url) || "gray";
    const demoNames = new Map(data.demos.map((d) => [d.url, d.name]));
    const nameOf = (b) => demoNames.get(b.url) || "#" + b.id;
    document.getElementById("summary").textContent =
      `${data.strategy} · ${data.requests} requests · ${data.connections_open} connections open (${data.tunnels_open} tunnels, ${data.request_bodies_open} sending a body), ${data.connections_accepted} accepted`;
    strip(data, colourOf);
    charts(data, nameOf);
    backends(data);
    document.querySelectorAll("#demos .drill").forEach((cell, i) => {
      if (data.demos[i]) cell.textContent = data.demos[i].drill;
    });
    decisions(data, colourOf);
    const file = document.getElementById("file");
    const f = data.backends_file;
    if (file && f) {
      file.textContent = `Backends from ${f.path} · generation ${f.generation} · last read taken at ` +
        `${clock(f.loaded_ms)} UTC · list ${f.list} · ${f.errors} refused reads` +
        (f.last_error === null ? "" : ` · last read refused: ${f.last_error}`);
    }
  }

  const note = document.getElementById("note");
  async function tick() {
    try {
      const answer = await fetch("/status.json", { cache: "no-store", signal: AbortSignal.timeout(5000) });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      render(await answer.json());
      note.textContent = "";
    } catch (e) {
      note.textContent = "Live update failed (" + e.message + "); trying again every second.";
    }
    setTimeout(tick, every);
  }
  tick();
})();
