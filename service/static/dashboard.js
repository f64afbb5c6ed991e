// xentcore dashboard: plain JS and SVG, no dependencies, served by the service itself.
"use strict";

const REFRESH_MS = 10000;
const SERIES = ["loss_mean", "confidence_mean", "flag_rate", "accuracy"];
const SVG_NS = "http://www.w3.org/2000/svg";
// the page is served at <root>/dashboard/: the API lives at <root>/
const base = new URL("../", window.location.href);

function api(path) {
  return fetch(new URL(path, base), { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((r) => {
      if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
      return r.json();
    });
}

function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number" || Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : v.toFixed(digits);
}

function bucketFor(windowSeconds) {
  if (windowSeconds <= 3600) return "1m";
  if (windowSeconds <= 86400) return "15m";
  if (windowSeconds <= 604800) return "2h";
  return "1d";
}

function size(svg) {
  const box = svg.getBoundingClientRect();
  return { w: Math.max(box.width, 200), h: Math.max(box.height, 100) };
}

function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

function drawSeries(svg, buckets, key) {
  clear(svg);
  const { w, h } = size(svg);
  const pad = { l: 44, r: 10, t: 8, b: 20 };
  const pts = buckets.filter((b) => b[key] !== null).map((b) => [Date.parse(b.start), b[key]]);
  el("line", { x1: pad.l, y1: h - pad.b, x2: w - pad.r, y2: h - pad.b, class: "axis" }, svg);
  el("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: h - pad.b, class: "axis" }, svg);
  if (pts.length === 0) {
    el("text", { x: w / 2 - 30, y: h / 2 }, svg).textContent = "no data";
    return 0;
  }
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(0, ...ys), Math.max(...ys)];
  if (key !== "loss_mean") y1 = Math.max(y1, 1);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) y1 = y0 + 1;
  const sx = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const sy = (y) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
  el("text", { x: 2, y: pad.t + 8 }, svg).textContent = fmt(y1, 2);
  el("text", { x: 2, y: h - pad.b }, svg).textContent = fmt(y0, 2);
  el("text", { x: pad.l, y: h - 4 }, svg).textContent = new Date(x0).toISOString().slice(5, 16).replace("T", " ");
  el("text", { x: w - pad.r - 70, y: h - 4 }, svg).textContent = new Date(x1).toISOString().slice(5, 16).replace("T", " ");
  el("polyline", { class: "line", points: pts.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" ") }, svg);
  for (const [x, y] of pts) {
    const c = el("circle", { class: "point", cx: sx(x), cy: sy(y), r: 3 }, svg);
    el("title", {}, c).textContent = `${new Date(x).toISOString()}: ${fmt(y)}`;
  }
  return pts.length;
}

function drawReliability(svg, bins) {
  clear(svg);
  const { w, h } = size(svg);
  const pad = { l: 30, r: 10, t: 8, b: 20 };
  const sx = (x) => pad.l + x * (w - pad.l - pad.r);
  const sy = (y) => h - pad.b - y * (h - pad.t - pad.b);
  el("line", { x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(0), class: "axis" }, svg);
  el("line", { x1: sx(0), y1: sy(0), x2: sx(0), y2: sy(1), class: "axis" }, svg);
  el("line", { x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(1), class: "diag" }, svg);
  el("text", { x: 2, y: sy(1) + 8 }, svg).textContent = "1";
  el("text", { x: sx(1) - 24, y: h - 4 }, svg).textContent = "conf 1";
  let drawn = 0;
  for (const b of bins || []) {
    if (!b.count || b.accuracy === null) continue;
    const bar = el("rect", {
      class: "bar", x: sx(b.lower) + 1, y: sy(b.accuracy),
      width: Math.max(sx(b.upper) - sx(b.lower) - 2, 1), height: sy(0) - sy(b.accuracy),
    }, svg);
    el("title", {}, bar).textContent = `(${fmt(b.lower, 2)}, ${fmt(b.upper, 2)}]: ${b.count} items, accuracy ${fmt(b.accuracy)}, mean confidence ${fmt(b.mean_confidence)}`;
    drawn += 1;
  }
  return drawn;
}

function renderTotals(total) {
  const box = document.getElementById("totals");
  box.replaceChildren();
  const fields = [["items", total.n_items], ["scored", total.n_scored], ["mean loss", total.loss_mean],
    ["confidence", total.confidence_mean], ["flag rate", total.flag_rate], ["accuracy", total.accuracy], ["ECE", total.ece]];
  for (const [name, value] of fields) {
    const d = document.createElement("div");
    const b = document.createElement("b");
    b.textContent = fmt(value);
    d.append(b, name);
    box.appendChild(d);
  }
}

function renderFlagged(items) {
  const body = document.getElementById("flagged");
  body.replaceChildren();
  if (!items.length) {
    const tr = body.insertRow();
    const td = tr.insertCell();
    td.colSpan = 8;
    td.className = "empty";
    td.textContent = "no flagged items";
    return;
  }
  for (const it of items) {
    const tr = body.insertRow();
    const cells = [it.time.replace("T", " ").slice(0, 19), it.id ?? "", it.index, fmt(it.confidence),
      fmt(it.loss), JSON.stringify(it.predicted), JSON.stringify(it.label), it.reasons.join(", ")];
    for (const c of cells) tr.insertCell().textContent = c;
  }
}

async function refresh() {
  const status = document.getElementById("status");
  const select = document.getElementById("stream");
  try {
    const { streams } = await api("v1/streams");
    const current = select.value || new URLSearchParams(location.search).get("stream");
    select.replaceChildren(...streams.map((s) => new Option(s.stream, s.stream)));
    if (!streams.length) {
      status.textContent = "no streams recorded yet";
      return;
    }
    select.value = streams.some((s) => s.stream === current) ? current : streams[0].stream;
    const stream = encodeURIComponent(select.value);
    const win = Number(document.getElementById("window").value);
    const params = new URLSearchParams();
    if (win > 0) {
      params.set("since", new Date(Date.now() - win * 1000).toISOString());
      params.set("bucket", bucketFor(win));
    } else {
      params.set("bucket", "1d");
    }
    const [summary, flagged] = await Promise.all([
      api(`v1/streams/${stream}/summary?${params}`),
      api(`v1/streams/${stream}/flagged?limit=20`),
    ]);
    renderTotals(summary.total);
    for (const key of SERIES) drawSeries(document.getElementById(`chart-${key}`), summary.buckets, key);
    drawReliability(document.getElementById("reliability"), summary.total.reliability);
    document.getElementById("ece").textContent = fmt(summary.total.ece);
    renderFlagged(flagged.items);
    status.textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
    document.body.dataset.loaded = "true";
  } catch (err) {
    status.textContent = `error: ${err.message}`;
  }
}

document.getElementById("stream").addEventListener("change", refresh);
document.getElementById("window").addEventListener("change", refresh);
refresh();
setInterval(refresh, REFRESH_MS);
