// cnnkit serve: the page side. Plain JavaScript, no library, no network beyond this server.
"use strict";

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
const live = document.getElementById("live");
const timers = [];

// ---------------------------------------------------------------- small helpers
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k);
  return e;
}
const svgNS = "http://www.w3.org/2000/svg";
function sv(tag, attrs) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function runUrl(name) { return name.split("/").map(encodeURIComponent).join("/"); }
async function api(path, options) {
  const r = await fetch(path, options);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { const e = new Error(body.error || r.statusText); e.status = r.status; throw e; }
  return body;
}
function num(v, digits) {
  if (v === null || v === undefined || v === "") return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en");
  return v.toPrecision(digits || 4);
}
function pct(v) { return typeof v === "number" ? (100 * v).toFixed(2) + " %" : "–"; }
function every(ms, fn) { fn(); const id = setInterval(fn, ms); timers.push(id); return id; }
function stamp() { live.textContent = "updated " + new Date().toLocaleTimeString(); }
function badge(status) { return el("span", { class: "badge " + (status || ""), text: status || "?" }); }
function card(title, ...kids) { return el("section", { class: "card" }, el("h2", { text: title }), ...kids); }

// viridis, by linear interpolation between five of its colours
const VIRIDIS = (() => {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const lut = [];
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * 4, k = Math.min(3, Math.floor(t)), f = t - k;
    lut.push(stops[k].map((c, j) => Math.round(c + f * (stops[k + 1][j] - c))));
  }
  return lut;
})();

function bytes(enc) {
  const s = atob(enc.b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// one picture (h x w gray, or h x w x 3) as a canvas shown `scale` times larger
function picture(data, offset, h, w, rgb, scale, colour, title) {
  const c = el("canvas", { width: w, height: h, title: title || null });
  c.style.width = w * scale + "px";
  c.style.height = h * scale + "px";
  const ctx = c.getContext("2d"), img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    let r, g, b;
    if (rgb) { r = data[offset + 3 * i]; g = data[offset + 3 * i + 1]; b = data[offset + 3 * i + 2]; }
    else if (colour) [r, g, b] = VIRIDIS[data[offset + i]];
    else r = g = b = data[offset + i];
    img.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  return c;
}
function scaleFor(side, target) { return Math.max(1, Math.round(target / Math.max(side, 1))); }

// maps (c, h, w) as a row of tiles
function mapTiles(enc, colour, target) {
  const [c, h, w] = enc.shape, data = bytes(enc), s = scaleFor(w, target || 56);
  const box = el("div", { class: "maps" });
  for (let k = 0; k < c; k++) box.append(picture(data, k * h * w, h, w, false, s, colour, "channel " + k));
  return box;
}
function inputPicture(enc, target) {
  const sh = enc.shape, data = bytes(enc);
  if (sh[0] === 3) { // (3, h, w) -> interleave
    const [, h, w] = sh, rgb = new Uint8Array(3 * h * w);
    for (let i = 0; i < h * w; i++) for (let j = 0; j < 3; j++) rgb[3 * i + j] = data[j * h * w + i];
    return picture(rgb, 0, h, w, true, scaleFor(w, target), false, "input");
  }
  const [, h, w] = sh;
  const c = picture(data, 0, h, w, false, scaleFor(w, target), false, "input");
  c.className = "pix";
  return c;
}
function layerBlocks(layers) {
  return layers.map((L) => el("div", { class: "layer" },
    el("h3", {}, L.name + " ", el("span", {
      text: `${L.channels} maps of ${L.shape[1]}x${L.shape[2]}` +
        (L.channels > L.shape[0] ? ` (first ${L.shape[0]} shown)` : "") +
        ` · one colour scale: ${num(L.min, 3)} (dark) to ${num(L.max, 3)} (yellow)`,
    })),
    mapTiles(L, true, L.shape[2] >= 20 ? 56 : 48)));
}
function top3(top) {
  const list = el("ol", { class: "top3" });
  for (const [cls, p] of top || []) {
    list.append(el("li", {}, el("span", { class: "cls", text: cls }),
      el("span", { class: "bar", style: `width:${Math.max(2, 160 * p)}px` }),
      el("span", { text: (100 * p).toFixed(1) + " %" })));
  }
  return list;
}

// ---------------------------------------------------------------- line charts (SVG)
const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04",
  "#db2777", "#4b5563", "#65a30d", "#7c3aed", "#0d9488"];

function niceTicks(lo, hi, n) {
  const span = hi - lo || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || mag * 10;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(+v.toPrecision(10));
  return out;
}

// series: [{name, xs, ys, color, width}]
function lineChart(holder, series, opts) {
  const W = opts.width || 520, H = opts.height || 270, m = { l: 54, r: 14, t: 26, b: 38 };
  const pts = series.flatMap((s) => s.xs.map((x, i) => [x, s.ys[i]]))
    .filter(([x, y]) => typeof x === "number" && typeof y === "number" && isFinite(y));
  const svg = sv("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  svg.append(Object.assign(sv("text", { x: m.l, y: 16, "font-weight": "600" }), { textContent: opts.title }));
  holder.replaceChildren(svg);
  holder.dataset.points = String(Math.max(0, ...series.map((s) => s.ys.filter((y) => typeof y === "number").length)));
  if (!pts.length) {
    svg.append(Object.assign(sv("text", { x: W / 2 - 60, y: H / 2 }), { textContent: "no epochs yet" }));
    return;
  }
  const xmax = Math.max(2, ...pts.map((p) => p[0])), xmin = 1;
  let ylo = Math.min(...pts.map((p) => p[1])), yhi = Math.max(...pts.map((p) => p[1]));
  if (opts.zero) ylo = Math.min(0, ylo);
  if (yhi - ylo < 1e-9) { yhi += 0.5; ylo -= 0.5; }
  const pad = (yhi - ylo) * 0.06; yhi += pad; if (!opts.zero) ylo -= pad;
  const X = (x) => m.l + ((x - xmin) / (xmax - xmin)) * (W - m.l - m.r);
  const Y = (y) => H - m.b - ((y - ylo) / (yhi - ylo)) * (H - m.t - m.b);
  for (const t of niceTicks(ylo, yhi, 5)) {
    svg.append(sv("line", { class: "grid", x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t) }));
    svg.append(Object.assign(sv("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end" }),
      { textContent: opts.percent ? (100 * t).toFixed(0) + "%" : +t.toPrecision(3) }));
  }
  for (const t of niceTicks(xmin, xmax, 8).filter((t) => Number.isInteger(t))) {
    svg.append(Object.assign(sv("text", { x: X(t), y: H - m.b + 15, "text-anchor": "middle" }), { textContent: t }));
  }
  svg.append(sv("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }));
  svg.append(sv("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
  svg.append(Object.assign(sv("text", { x: (m.l + W - m.r) / 2, y: H - 6, "text-anchor": "middle" }), { textContent: "epoch" }));
  for (const s of series) {
    const p = s.xs.map((x, i) => [x, s.ys[i]]).filter(([, y]) => typeof y === "number" && isFinite(y));
    if (!p.length) continue;
    svg.append(sv("polyline", { fill: "none", stroke: s.color, "stroke-width": s.width || 2,
      points: p.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ") }));
    if (p.length <= 60) for (const [x, y] of p) svg.append(sv("circle", { cx: X(x), cy: Y(y), r: 2.6, fill: s.color }));
  }
  const leg = el("div", { class: "legend" }, series.map((s) =>
    el("span", {}, el("i", { style: `background:${s.color}` }), s.name)));
  holder.append(leg);
}

// ---------------------------------------------------------------- the run list
function listPage() {
  crumbs.replaceChildren();
  document.title = "cnnkit runs";
  const tbody = el("tbody");
  const note = el("p", { class: "muted" });
  main.replaceChildren(el("h1", { text: "Runs" }), note,
    el("section", { class: "card" }, el("table", { id: "runs" }, el("thead", {}, el("tr", {},
      ["run", "status", "model", "data", "epochs", "val acc", "test acc", "diagnosis"]
        .map((h, i) => el("th", { class: i >= 4 && i <= 6 ? "num" : null, text: h })))), tbody)));
  every(2000, async () => {
    let data;
    try { data = await api("/api/runs"); } catch (e) { note.textContent = "cannot list runs: " + e.message; return; }
    note.textContent = `${data.runs.filter((r) => r.kind === "run").length} runs under ${data.root}`;
    const rows = data.runs.map((r) => {
      const depth = r.name.split("/").length - 1;
      const link = el("a", { href: "/run/" + runUrl(r.name), text: r.name });
      if (r.kind === "group") {
        return el("tr", { class: depth ? "sub" : null }, el("td", {}, link),
          el("td", {}, badge(r.grid ? "grid search" : "group")),
          el("td", { colspan: 6, class: "muted", text: `${r.runs} runs` }));
      }
      return el("tr", { class: depth ? "sub" : null, "data-run": r.name }, el("td", {}, link),
        el("td", {}, badge(r.status)), el("td", { text: r.model || "–" }), el("td", { text: r.data || "–" }),
        el("td", { class: "num", text: `${r.epochs}${r.total_epochs ? " / " + r.total_epochs : ""}` }),
        el("td", { class: "num", text: pct(r.val_acc) }), el("td", { class: "num", text: pct(r.test_accuracy) }),
        el("td", { text: r.diagnosis || "" }));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 8, class: "muted",
      text: "no runs yet: cnnkit train --out " + data.root + "/NAME" })));
    tbody.replaceChildren(...rows);
    stamp();
  });
}

// ---------------------------------------------------------------- one run
function setCrumbs(name) {
  const parts = name.split("/");
  crumbs.replaceChildren(...parts.map((p, i) => {
    const sub = parts.slice(0, i + 1).join("/");
    return i < parts.length - 1 ? el("a", { href: "/run/" + runUrl(sub), text: p + " /" }) : el("span", { text: p });
  }));
}

async function runPage(name) {
  setCrumbs(name);
  document.title = name + " · cnnkit";
  let info;
  try { info = await api("/api/run/" + runUrl(name)); } catch (e) {
    main.replaceChildren(el("h1", { text: name }), el("p", { class: "muted", text:
      e.status === 404 ? "No such run (it may have been deleted)." : "Cannot read the run: " + e.message }),
      el("p", {}, el("a", { href: "/", text: "all runs" })));
    return;
  }
  if (info.kind === "group") return groupPage(name, info);
  const cfg = info.config || {};
  const settings = ["model", "data", "epochs", "batch_size", "lr", "optimizer", "weight_decay", "scheduler", "augment"]
    .filter((k) => cfg[k] !== undefined)
    .map((k, i) => el("span", {}, i ? " · " : "", k + " ", el("b", { text: String(cfg[k]) })));
  const status = el("span", { id: "live-status" }, badge(info.status));
  const head = el("div", {}, el("h1", {}, name + " ", status), el("div", { class: "kv" }, settings));
  const lossChart = el("div", { class: "chart", id: "chart-loss" });
  const accChart = el("div", { class: "chart", id: "chart-acc" });
  const diag = el("p", { class: "diagnosis", id: "diagnosis", text: "waiting for the first epoch…" });
  const curves = card("Training and validation curves", el("div", { class: "row" }, lossChart, accChart), diag);
  const blocks = [head];
  if (info.failed) blocks.push(card("Training failed", el("pre", { text: info.failed })));
  blocks.push(curves);
  const summary = card("Layers", el("p", { class: "muted", text: "waiting for weights…" }));
  summary.id = "summary";
  const filters = card("First-layer filters", el("p", { class: "muted", text: "waiting for weights…" }));
  filters.id = "filters";
  const acts = card("Activation maps of every convolution for a test image", el("p", { class: "muted", text: "loading…" }));
  acts.id = "activations";
  if (info.detection) {
    const det = info.pictures.includes("detections.png")
      ? el("img", { class: "figure", src: "/file/" + runUrl(name) + "/detections.png", alt: "detections" })
      : el("p", { class: "muted", text: "no detections.png in this run yet" });
    blocks.push(card("Detections on test scenes (predicted boxes; ground truth in another colour)", det));
  }
  if (info.drawable) blocks.push(drawCard(name, info.input[1]));
  blocks.push(summary, filters, acts);
  if (info.report) blocks.push(card("Test report", el("pre", { text: info.report })));
  main.replaceChildren(...blocks);

  let seen = -1, lastStatus = info.status, slow = 0;
  const refreshWeights = () => {
    loadSummary(name, summary);
    loadFilters(name, filters);
    loadActivations(name, acts, Number(acts.dataset.index || 0)); // keep the image shown
  };
  refreshWeights();
  every(500, async () => {
    if (lastStatus === "finished" && (slow++ % 6)) return; // a finished run: every 3 s
    let h;
    try { h = await api("/api/run/" + runUrl(name) + "/history"); } catch (e) {
      if (e.status === 404) { timers.forEach(clearInterval); diag.textContent = "This run was deleted."; }
      return;
    }
    stamp();
    if (h.status !== lastStatus) { status.replaceChildren(badge(h.status)); }
    const changed = h.records.length !== seen || h.status !== lastStatus;
    lastStatus = h.status;
    if (!changed) return;
    const grew = seen >= 0 && h.records.length !== seen;
    seen = h.records.length;
    drawCurves(h, lossChart, accChart, diag);
    if (grew) refreshWeights();
  });
}

function drawCurves(h, lossChart, accChart, diag) {
  const ep = h.records.map((r) => r.epoch);
  const col = (k) => h.records.map((r) => (typeof r[k] === "number" ? r[k] : null));
  lineChart(lossChart, [
    { name: "training loss", xs: ep, ys: col("train_loss"), color: "var(--train)" },
    { name: "validation loss", xs: ep, ys: col("val_loss"), color: "var(--val)" },
  ], { title: "loss" + (h.total_epochs ? ` (epoch ${ep.length} of ${h.total_epochs})` : "") });
  lineChart(accChart, [
    { name: "training accuracy", xs: ep, ys: col("train_acc"), color: "var(--train)" },
    { name: "validation accuracy", xs: ep, ys: col("val_acc"), color: "var(--val)" },
  ], { title: "accuracy", percent: true });
  if (!h.records.length && ["finished", "failed", "interrupted"].includes(h.status)) {
    diag.textContent = "This run recorded no epochs in history.csv.";
  }
  if (h.diagnosis) {
    const d = h.diagnosis;
    const verdict = d.verdict ? d.verdict[0].toUpperCase() + d.verdict.slice(1) + ": " : "";
    diag.replaceChildren(el("b", { text: verdict }), d.explanation || d.text);
    diag.title = d.text;
  }
}

async function loadSummary(name, box) {
  let s;
  try { s = await api("/api/run/" + runUrl(name) + "/summary"); } catch (e) { return; }
  if (!s.available) return;
  const rf = (v) => (v ? v.join("x") : "–");
  const table = el("table", { id: "summary-table" },
    el("thead", {}, el("tr", {}, ["layer", "type", "output shape", "parameters", "receptive field", "jump", "MACs"]
      .map((h, i) => el("th", { class: [3, 6].includes(i) ? "num" : null, text: h })))),
    el("tbody", {}, s.rows.map((r) => el("tr", {}, el("td", { text: r.name }), el("td", { text: r.layer }),
      el("td", { text: "(" + r.output_shape.join(", ") + ")" }), el("td", { class: "num", text: num(r.params) }),
      el("td", { text: rf(r.receptive_field) }), el("td", { text: rf(r.jump) }), el("td", { class: "num", text: num(r.macs) })))));
  box.replaceChildren(el("h2", { text: "Layers" }),
    el("p", { class: "kv" }, "input ", el("b", { text: "(" + s.input_size.join(", ") + ")" }),
      " · parameters ", el("b", { text: num(s.total_params) }), " · MACs per image ", el("b", { text: num(s.total_macs) })),
    table);
}

async function loadFilters(name, box) {
  let f;
  try { f = await api("/api/run/" + runUrl(name) + "/filters"); } catch (e) { return; }
  if (!f.available) return;
  const data = bytes(f), n = f.shape[0], h = f.shape[1], w = f.shape[2], s = scaleFor(w, 44);
  const tiles = el("div", { class: "maps" });
  for (let k = 0; k < n; k++) tiles.append(picture(data, k * h * w * (f.rgb ? 3 : 1), h, w, f.rgb, s, false, "filter " + k));
  const what = f.rgb ? "RGB" : f.in_channels === 1 ? "grayscale" : `input channel 0 of ${f.in_channels}`;
  box.replaceChildren(el("h2", { text: `First-layer filters (${f.layer})` }),
    el("p", { class: "muted", text: `${n} filters of ${f.kernel.join("x")} (${what}); each scaled to its own range, dark = negative` }),
    tiles);
}

// a detection run's test scene, enlarged, with the predicted and the true boxes drawn
function scenePicture(a, target) {
  const [, h, w] = a.input.shape, k = scaleFor(w, target);
  const c = el("canvas", { width: w * k, height: h * k, class: "scene",
    title: "predicted boxes: orange, with class and score; true boxes: dashed green" });
  const ctx = c.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(inputPicture(a.input, w), 0, 0, w * k, h * k);
  const rect = ([x1, y1, x2, y2]) => ctx.strokeRect(x1 * k, y1 * k, (x2 - x1) * k, (y2 - y1) * k);
  ctx.lineWidth = 2;
  ctx.setLineDash([6, 4]); ctx.strokeStyle = "#3ddc84";
  for (const t of a.truth || []) rect(t.box);
  ctx.setLineDash([]); ctx.strokeStyle = "#ff8c1a"; ctx.font = "bold 13px sans-serif";
  for (const b of a.boxes || []) {
    rect(b.box);
    const text = `${b.label} ${b.score.toFixed(2)}`, tw = ctx.measureText(text).width;
    const x = b.box[0] * k, y = b.box[1] * k >= 16 ? b.box[1] * k - 16 : b.box[1] * k;
    ctx.fillStyle = "rgba(0,0,0,0.75)"; ctx.fillRect(x, y, tw + 6, 16);
    ctx.fillStyle = "#ff8c1a"; ctx.fillText(text, x + 3, y + 12);
  }
  return c;
}
function detectionList(boxes) {
  if (!boxes.length) return el("p", { class: "muted", text: "no box scores 0.25 or more" });
  const list = el("ol", { class: "top3" });
  for (const b of boxes) {
    const [x1, y1, x2, y2] = b.box.map((v) => Math.round(v));
    list.append(el("li", {}, el("span", { class: "cls", text: b.label }),
      el("span", { text: ` ${(100 * b.score).toFixed(1)} % at (${x1}, ${y1})-(${x2}, ${y2})` })));
  }
  return list;
}

async function loadActivations(name, box, index) {
  let a;
  try { a = await api("/api/run/" + runUrl(name) + "/activations?index=" + index); } catch (e) { return; }
  const scene = a.available && Array.isArray(a.boxes);
  const title = el("h2", { text: scene ? "Test scenes with the predicted boxes, and the activation maps of every convolution"
    : "Activation maps of every convolution for a test image" });
  box.dataset.index = String(index);
  if (!a.available) { box.replaceChildren(title, el("p", { class: "muted", text: a.reason })); return; }
  const nav = el("div", {}, el("button", { onclick: () => loadActivations(name, box, Math.max(0, index - 1)), text: "◀ previous" }), " ",
    el("button", { onclick: () => loadActivations(name, box, index + 1), text: "next ▶" }),
    el("span", { class: "muted", text: scene ? `  test scene ${index}: ${a.label}` : `  test image ${index}, label ${a.label}` }));
  const head = scene
    ? el("div", { class: "row" }, scenePicture(a, 384), el("div", {},
      el("div", { class: "muted", text: "detections (orange; true boxes dashed green)" }), detectionList(a.boxes)))
    : el("div", { class: "row" }, inputPicture(a.input, 112),
      el("div", {}, el("div", { class: "muted", text: "prediction" }), top3(a.top)));
  box.replaceChildren(title, nav, head, ...layerBlocks(a.layers));
}

// ---------------------------------------------------------------- draw a digit
function drawCard(name, side) {
  const canvas = el("canvas", { id: "draw-canvas", width: 280, height: 280 });
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, 280, 280); };
  clear();
  const result = el("div", { id: "draw-result" }, el("p", { class: "muted", text: "Draw a digit with the mouse." }));
  let drawing = false, last = null, pending = null;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * 280 / r.width, (e.clientY - r.top) * 280 / r.height]; };
  const stroke = (p) => {
    ctx.strokeStyle = "#fff"; ctx.fillStyle = "#fff"; ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(...(last || p)); ctx.lineTo(...p); ctx.stroke(); last = p;
  };
  canvas.addEventListener("pointerdown", (e) => { drawing = true; last = null; canvas.setPointerCapture(e.pointerId); stroke(at(e)); });
  canvas.addEventListener("pointermove", (e) => { if (drawing) stroke(at(e)); });
  const end = () => { if (!drawing) return; drawing = false; last = null; clearTimeout(pending); pending = setTimeout(predict, 50); };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  let asked = 0;
  async function predict() {
    const ticket = ++asked;
    let a;
    try {
      a = await api("/api/run/" + runUrl(name) + "/predict", { method: "POST",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ image: canvas.toDataURL("image/png") }) });
    } catch (e) { result.replaceChildren(el("p", { class: "muted", text: "cannot predict: " + e.message })); return; }
    if (ticket !== asked) return;
    if (!a.available) { result.replaceChildren(el("p", { class: "muted", text: a.reason })); result.dataset.top = ""; return; }
    result.dataset.top = a.top && a.top.length ? a.top[0][0] : "";
    result.replaceChildren(el("div", { class: "row" },
      el("div", {}, el("div", { class: "muted", text: `as the model sees it (${side}x${side})` }), inputPicture(a.input, 112)),
      el("div", {}, el("div", { class: "muted", text: "top 3" }), top3(a.top))), ...layerBlocks(a.layers));
  }
  const how = side === 28
    ? "scaled into a 20x20 box and centred by its centre of mass in 28x28, as MNIST digits are"
    : "scaled to a 32x32 bitmap and counted in 4x4 blocks, as scikit-learn's 8x8 digits are";
  const box = card("Draw a digit", el("p", { class: "muted", text: "The drawing is " + how + "." }),
    el("div", { class: "row" }, el("div", {}, canvas, el("div", {},
      el("button", { id: "draw-clear", onclick: () => { clear(); result.replaceChildren(); result.dataset.top = ""; }, text: "clear" }))),
    el("div", { style: "flex:1;min-width:300px" }, result)));
  box.id = "draw-card";
  return box;
}

// ---------------------------------------------------------------- a group of runs (grid search)
function groupPage(name, info) {
  const chart = el("div", { class: "chart", id: "chart-grid" });
  const pick = el("select", { id: "grid-metric" }, el("option", { value: "val_acc", text: "validation accuracy" }),
    el("option", { value: "val_loss", text: "validation loss" }));
  const table = el("table", { id: "results" });
  main.replaceChildren(el("h1", { text: name + " " }, badge(info.grid ? "grid search" : "group")),
    card("Validation curves of all runs", el("div", {}, "metric ", pick), chart),
    card(info.grid ? "Results (results.csv; click a column to sort)" : "Runs (click a column to sort)", table));
  let sortKey = null, asc = false, latest = info;
  const draw = () => {
    const key = pick.value;
    lineChart(chart, latest.curves.map((c, i) => ({ name: c.run, xs: c.epoch, ys: c[key],
      color: PALETTE[i % PALETTE.length], width: 1.8 })), { width: 1080, height: 340, title: pick.selectedOptions[0].text, percent: key === "val_acc" });
    const rows = latest.results.slice();
    const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    if (sortKey) {
      rows.sort((a, b) => {
        const x = a[sortKey], y = b[sortKey];
        const missing = (v) => v === null || v === undefined || v === "";
        if (missing(x) || missing(y)) return missing(x) - missing(y);
        const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
    }
    const paths = Object.fromEntries(latest.curves.map((c) => [c.run, c.path]));
    table.replaceChildren(el("thead", {}, el("tr", {}, cols.map((c) => el("th", { class: "sortable", "data-col": c,
      onclick: () => { asc = sortKey === c ? !asc : true; sortKey = c; draw(); },
      text: c + (sortKey === c ? (asc ? " ▲" : " ▼") : "") })))),
    el("tbody", {}, rows.map((r) => el("tr", {}, cols.map((c) => el("td", { class: typeof r[c] === "number" ? "num" : null },
      c === "run" && paths[r[c]] ? el("a", { href: "/run/" + runUrl(paths[r[c]]), text: r[c] }) : num(r[c])))))));
  };
  pick.addEventListener("change", draw);
  draw();
  every(2000, async () => {
    try { latest = await api("/api/run/" + runUrl(name)); } catch (e) { return; }
    draw(); stamp();
  });
}

// ---------------------------------------------------------------- routing
const path = decodeURIComponent(location.pathname);
if (path.startsWith("/run/")) runPage(path.slice(5).replace(/\/+$/, ""));
else listPage();
