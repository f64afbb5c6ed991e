// xentcore dashboard: plain JS and SVG, no dependencies, served by the service itself.
"use strict";

const REFRESH_MS = 10000;
const SERIES = ["loss_mean", "confidence_mean", "flag_rate", "accuracy"];
// a second line on a chart: the labelled figure of each bucket (API.md section 9) where the
// bucket's calibration set is not empty
const LABELLED = {
  accuracy: { name: "labelled accuracy", value: (b) => (b.labeled && b.labeled.n > 0 ? b.labeled.accuracy : null), n: (b) => b.labeled.n },
};
const QUEUE_SIZE = 20; // rows of the review queue
// the risk-coverage curve reads the stream's whole calibration set (API.md section 10): it is
// asked for again only when its stream, window, confidence or delta change, or after a minute
const CURVE_MS = 60e3;
const CURVE_DELTA = 0.1; // the curve's delta when no policy is selected (the API's default)
const SVG_NS = "http://www.w3.org/2000/svg";
// the task under which scored sequences are recorded: every other task holds classifier data
const SEQUENCES = "sequences";
const MINUTE = 60e3;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
// x-axis steps (ms), smallest first; longer spans step by calendar months (MONTH_STEPS)
const TIME_STEPS = [MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY];
const MONTH_STEPS = [1, 2, 3, 6, 12, 24, 60, 120];
const LABEL_GAP = 8; // px between two axis labels
// the page is served at <root>/dashboard/: the API lives at <root>/
const base = new URL("../", window.location.href);

const streamSelect = document.getElementById("stream");
const windowSelect = document.getElementById("window");
const DEFAULT_WINDOW = [...windowSelect.options].find((o) => o.defaultSelected).value;

// ---- the stream and window in the URL (?stream=NAME&window=SECONDS) --------------------------

const wanted = new URLSearchParams(location.search);
let chosenStream = null; // the stream shown; null until the first list of streams
let urlStream = wanted.get("stream"); // honoured once, on the first list of streams
let chosenPolicy = null; // the policy whose alpha and operating point the charts show
let urlPolicy = wanted.get("policy"); // honoured once, on the first list of policies
let notice = ""; // why the URL's choice was not taken, shown in the status line
let generation = 0; // a refresh started later wins over one still in flight

function writeUrl() {
  const q = new URLSearchParams(location.search);
  if (chosenStream !== null) q.set("stream", chosenStream);
  if (chosenPolicy !== null) q.set("policy", chosenPolicy);
  else q.delete("policy");
  q.set("window", windowSelect.value);
  const search = `?${q}`;
  if (search !== location.search) history.replaceState(history.state, "", search + location.hash);
}

if ([...windowSelect.options].some((o) => o.value === wanted.get("window"))) {
  windowSelect.value = wanted.get("window");
} else {
  windowSelect.value = DEFAULT_WINDOW;
  if (wanted.has("window")) notice = `unknown window “${wanted.get("window")}”`;
}

function defaultStream(streams) {
  // the most recently seen stream with classifier data, else the most recently seen one
  const seen = (s) => Date.parse(s.last_seen) || 0;
  const newest = (list) => list.reduce((a, b) => (seen(b) > seen(a) ? b : a));
  const classifiers = streams.filter((s) => (s.tasks || []).some((t) => t !== SEQUENCES));
  return newest(classifiers.length ? classifiers : streams).stream;
}

function pickStream(streams) {
  const names = new Set(streams.map((s) => s.stream));
  if (chosenStream !== null && names.has(chosenStream)) return chosenStream;
  if (urlStream !== null) {
    const asked = urlStream;
    urlStream = null;
    if (names.has(asked)) return asked;
    notice = [notice, `unknown stream “${asked}”`].filter(Boolean).join(", ");
  }
  return defaultStream(streams);
}

// the selected policy: the one chosen, else the URL's (once), else the most recently fitted
function pickPolicy(policies) {
  if (!policies.length) return null;
  const byName = new Map(policies.map((p) => [p.name, p]));
  if (chosenPolicy !== null && byName.has(chosenPolicy)) return byName.get(chosenPolicy);
  if (urlPolicy !== null) {
    const asked = urlPolicy;
    urlPolicy = null;
    if (byName.has(asked)) return byName.get(asked);
    notice = [notice, `unknown policy “${asked}”`].filter(Boolean).join(", ");
  }
  const fitted = (p) => Date.parse(p.fitted_at) || 0;
  return policies.reduce((a, b) => (fitted(b) > fitted(a) ? b : a));
}

// ---- formatting ------------------------------------------------------------------------------

function api(path) {
  return fetch(new URL(path, base), { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((r) => {
      if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
      return r.json();
    });
}

// api() that never rejects: {value} or {error} (the policy view's requests: a 404 there must not
// stop the rest of the page)
function soft(path) {
  return api(path).then((value) => ({ value }), (err) => ({ error: err.message }));
}

function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, attrs = {}) {
  const node = el("text", { x, y, ...attrs }, parent);
  node.textContent = content;
  return node;
}

function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number" || Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : v.toFixed(digits);
}

// a predicted class or label as plain text: a name as is, a multilabel list as "a, c"
function plain(v) {
  if (v === null || v === undefined) return "–";
  if (Array.isArray(v)) return v.length ? v.map(plain).join(", ") : "—";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// "YYYY-MM-DD HH:MM[:SS]" in UTC
function utc(t, seconds = false) {
  return new Date(t).toISOString().slice(0, seconds ? 19 : 16).replace("T", " ");
}

function bucketRange(start, end) {
  const a = utc(start);
  const b = utc(end);
  return `${a}–${b.slice(0, 10) === a.slice(0, 10) ? b.slice(11) : b} UTC`;
}

function bucketFor(windowSeconds) {
  if (windowSeconds <= 3600) return "1m";
  if (windowSeconds <= 86400) return "15m";
  if (windowSeconds <= 604800) return "2h";
  return "1d";
}

// ---- axes ------------------------------------------------------------------------------------

function size(svg) {
  const box = svg.getBoundingClientRect();
  return { w: Math.max(box.width, 200), h: Math.max(box.height, 100) };
}

function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

const widths = new Map(); // label -> px (every chart label has the same font)

function textWidth(svg, s) {
  if (!widths.has(s)) {
    const probe = text(svg, -1000, -1000, s);
    const width = probe.getComputedTextLength();
    probe.remove();
    if (!width) return s.length * 6; // not rendered (yet): an estimate, not cached
    widths.set(s, width);
  }
  return widths.get(s);
}

// ticks of [lo, hi] at a 1-2-5 step, the range widened to whole steps
function numberTicks(lo, hi, maxTicks) {
  const raw = (hi - lo) / Math.max(maxTicks, 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * (1 - 1e-9));
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const values = [];
  for (let i = first; i <= last; i += 1) values.push(Number((i * step).toFixed(digits)));
  return { lo: first * step, hi: last * step, values, labels: values.map((v) => v.toFixed(digits)) };
}

function monthTicks(t0, t1, months) {
  const d = new Date(t0);
  let k = d.getUTCFullYear() * 12 + d.getUTCMonth();
  if (Date.UTC(Math.floor(k / 12), k % 12, 1) < t0) k += 1;
  k = Math.ceil(k / months) * months;
  const out = [];
  for (let t = Date.UTC(Math.floor(k / 12), k % 12, 1); t <= t1; t = Date.UTC(Math.floor(k / 12), k % 12, 1)) {
    out.push(t);
    k += months;
  }
  return out;
}

function stepTicks(t0, t1, step) {
  const offset = step >= 7 * DAY ? 4 * DAY : 0; // weeks start on Monday (1970-01-01 was a Thursday)
  const out = [];
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) out.push(t);
  return out;
}

function timeLabel(t, step, months, span) {
  const iso = new Date(t).toISOString();
  if (months) return months >= 12 ? iso.slice(0, 4) : iso.slice(0, 7); // YYYY or YYYY-MM
  if (step >= DAY) return iso.slice(5, 10); // MM-DD
  // HH:MM; MM-DD at midnight when the axis spans well over a day (not the 24-hour window)
  return span > 1.5 * DAY && iso.slice(11, 16) === "00:00" ? iso.slice(5, 10) : iso.slice(11, 16);
}

// time ticks of [t0, t1] (ms, UTC) at the smallest sensible step whose labels fit in `width` px
function timeTicks(svg, t0, t1, width) {
  const span = t1 - t0;
  const candidates = [...TIME_STEPS.map((s) => [s, 0]), ...MONTH_STEPS.map((m) => [m * 30 * DAY, m])];
  let best = null;
  for (const [step, months] of candidates) {
    if (span / step > 40) continue;
    const ticks = months ? monthTicks(t0, t1, months) : stepTicks(t0, t1, step);
    const labels = ticks.map((t) => timeLabel(t, step, months, span));
    const longest = labels.reduce((a, b) => (b.length > a.length ? b : a), "");
    const widest = longest ? textWidth(svg, longest) : 0;
    best = { ticks, labels };
    if (ticks.length * (widest + LABEL_GAP * 2) <= width) break;
  }
  return best || { ticks: [], labels: [] };
}

// x-axis labels centred on their ticks; a label that would overlap the previous one or leave
// [0, right] is dropped (its grid line stays)
function xLabels(svg, ticks, labels, sx, y, right) {
  let end = -Infinity;
  ticks.forEach((t, i) => {
    const node = text(svg, sx(t), y, labels[i], { class: "tick-x", "text-anchor": "middle" });
    const half = node.getComputedTextLength() / 2;
    if (sx(t) - half < Math.max(0, end + LABEL_GAP) || sx(t) + half > right) node.remove();
    else end = sx(t) + half;
  });
}

function yAxis(svg, yt, sy, pad, w) {
  yt.values.forEach((v, i) => {
    el("line", { x1: pad.l, y1: sy(v), x2: w - pad.r, y2: sy(v), class: "grid" }, svg);
    text(svg, pad.l - 5, sy(v) + 3.5, yt.labels[i], { class: "tick-y", "text-anchor": "end" });
  });
}

// ---- charts ----------------------------------------------------------------------------------

// the points of one series: buckets whose value(b) is not null, with n(b) items behind each
function seriesPoints(buckets, value, n) {
  return buckets.filter((b) => value(b) !== null && value(b) !== undefined)
    .map((b) => ({ x: Date.parse(b.start), end: Date.parse(b.end), y: value(b), n: n(b) }));
}

function drawLine(svg, pts, sx, sy, cls, describe) {
  if (!pts.length) return;
  el("polyline", { class: `line ${cls}`, points: pts.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ") }, svg);
  for (const p of pts) {
    const c = el("circle", { class: `point ${cls}`, cx: sx(p.x), cy: sy(p.y), r: 3 }, svg);
    el("title", {}, c).textContent = `${bucketRange(p.x, p.end)}\n${describe(p)}`;
  }
}

// a chart with nothing to draw: its axis and a short message
function noData(svg, message = "no data") {
  const { w, h } = size(svg);
  el("line", { x1: 8, y1: h - 22, x2: w - 8, y2: h - 22, class: "axis" }, svg);
  text(svg, w / 2, h / 2, message, { "text-anchor": "middle", class: "empty" });
}

// the axes of a time chart of the points `all` over [from, to], its values up to at least
// `floor`; returns its scales
function timeFrame(svg, all, [from, to], floor) {
  const { w, h } = size(svg);
  const ys = all.map((p) => p.y);
  const lo = Math.min(0, ...ys);
  let hi = Math.max(floor, ...ys);
  if (hi === lo) hi = lo + 1;
  const pad = { l: 0, r: 14, t: 8, b: 22 };
  const yt = numberTicks(lo, hi, Math.max(2, Math.floor((h - pad.t - pad.b) / 28)));
  pad.l = Math.ceil(Math.max(...yt.labels.map((s) => textWidth(svg, s)))) + 10;
  const xs = all.map((p) => p.x);
  const x0 = Math.min(from, ...xs);
  const x1 = Math.max(to, ...xs, x0 + MINUTE);
  const sx = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const sy = (y) => h - pad.b - ((y - yt.lo) / (yt.hi - yt.lo)) * (h - pad.t - pad.b);

  yAxis(svg, yt, sy, pad, w);
  const unit = text(svg, w - 2, h - 6, "UTC", { class: "unit", "text-anchor": "end" });
  const xt = timeTicks(svg, x0, x1, w - pad.l - pad.r - unit.getComputedTextLength());
  for (const t of xt.ticks) {
    el("line", { x1: sx(t), y1: pad.t, x2: sx(t), y2: h - pad.b, class: "grid" }, svg);
    el("line", { x1: sx(t), y1: h - pad.b, x2: sx(t), y2: h - pad.b + 4, class: "axis" }, svg);
  }
  xLabels(svg, xt.ticks, xt.labels, sx, h - 6, w - 2 - unit.getComputedTextLength() - LABEL_GAP);
  el("line", { x1: pad.l, y1: h - pad.b, x2: w - pad.r, y2: h - pad.b, class: "axis" }, svg);
  el("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: h - pad.b, class: "axis" }, svg);
  return { sx, sy, pad, w };
}

// the series `key` of the buckets, and the labelled one of LABELLED[key] where there is one
function drawSeries(svg, buckets, key, domain) {
  clear(svg);
  const pts = seriesPoints(buckets, (b) => b[key], (b) => b.n_items);
  const extra = LABELLED[key];
  const alt = extra ? seriesPoints(buckets, extra.value, extra.n) : [];
  const all = pts.concat(alt);
  if (all.length === 0) {
    noData(svg);
    return 0;
  }
  const { sx, sy } = timeFrame(svg, all, domain, key === "loss_mean" ? -Infinity : 1);
  drawLine(svg, pts, sx, sy, "main", (p) => `${fmt(p.y)} (${p.n} items)`);
  if (extra) drawLine(svg, alt, sx, sy, "labelled", (p) => `${extra.name} ${fmt(p.y)} (${p.n} labelled)`);
  return all.length;
}

function drawReliability(svg, bins) {
  clear(svg);
  const { w, h } = size(svg);
  const yt = numberTicks(0, 1, 5);
  const pad = { l: Math.ceil(Math.max(...yt.labels.map((s) => textWidth(svg, s)))) + 10, r: 14, t: 8, b: 22 };
  const sx = (x) => pad.l + x * (w - pad.l - pad.r);
  const sy = (y) => h - pad.b - y * (h - pad.t - pad.b);
  yAxis(svg, yt, sy, pad, w);
  for (const v of yt.values) {
    el("line", { x1: sx(v), y1: pad.t, x2: sx(v), y2: sy(0), class: "grid" }, svg);
    el("line", { x1: sx(v), y1: sy(0), x2: sx(v), y2: sy(0) + 4, class: "axis" }, svg);
  }
  xLabels(svg, yt.values, yt.labels, sx, h - 6, w - 2);
  el("line", { x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(0), class: "axis" }, svg);
  el("line", { x1: sx(0), y1: sy(0), x2: sx(0), y2: sy(1), class: "axis" }, svg);
  el("line", { x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(1), class: "diag" }, svg);
  let drawn = 0;
  for (const b of bins || []) {
    if (!b.count || b.accuracy === null) continue;
    const bar = el("rect", {
      class: "bar", x: sx(b.lower) + 1, y: sy(b.accuracy),
      width: Math.max(sx(b.upper) - sx(b.lower) - 2, 1), height: sy(0) - sy(b.accuracy),
    }, svg);
    el("title", {}, bar).textContent = `confidence (${fmt(b.lower, 2)}, ${fmt(b.upper, 2)}]: ${b.count} items, accuracy ${fmt(b.accuracy)}, mean confidence ${fmt(b.mean_confidence)}`;
    drawn += 1;
  }
  return drawn;
}

// ---- the policy view (API.md section 10) -----------------------------------------------------

// the selected policy's alpha as a horizontal line from x = a to x = b (px), labelled at its
// left end (the latest buckets are on the right) or its right end
function alphaLine(svg, sy, a, b, policy, side) {
  const y = sy(policy.alpha);
  const line = el("line", { x1: a, y1: y, x2: b, y2: y, class: "alpha" }, svg);
  el("title", {}, line).textContent = `alpha ${policy.alpha} of policy ${policy.name} v${policy.version}`;
  const at = side === "left" ? { x: a + 4, anchor: "start" } : { x: b - 2, anchor: "end" };
  text(svg, at.x, y - 4, `α ${policy.alpha}`, { class: "alpha-label", "text-anchor": at.anchor });
}

// consecutive points of adjacent buckets: a bucket missing between two is a gap in the line
function runs(pts) {
  const out = [];
  for (const p of pts) {
    const last = out.length ? out[out.length - 1] : null;
    if (last && last[last.length - 1].end === p.x) last.push(p);
    else out.push([p]);
  }
  return out;
}

// the realized error rate among accepted (unflagged) labelled items per bucket, against the
// selected policy's alpha; a bucket without labelled items is a gap, not a zero
function drawAccepted(svg, buckets, domain, policy) {
  clear(svg);
  const pts = buckets
    .filter((b) => b.labeled && b.labeled.n > 0 && typeof b.labeled.accepted_error_rate === "number")
    .map((b) => ({ x: Date.parse(b.start), end: Date.parse(b.end), y: b.labeled.accepted_error_rate,
      n: b.labeled.n, flagged: b.risk_policy ?? 0 }));
  if (!pts.length) {
    noData(svg, "no labelled items");
    return 0;
  }
  const alpha = policy ? policy.alpha : null;
  const { sx, sy, pad, w } = timeFrame(svg, pts, domain, alpha === null ? 0 : alpha * 1.25);
  if (policy) alphaLine(svg, sy, pad.l, w - pad.r, policy, "left");
  for (const run of runs(pts)) {
    el("polyline", { class: "line accepted", points: run.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ") }, svg);
  }
  for (const p of pts) {
    const over = alpha !== null && p.y > alpha;
    const c = el("circle", { class: `point accepted${over ? " over" : ""}`, cx: sx(p.x), cy: sy(p.y), r: 3 }, svg);
    el("title", {}, c).textContent = `${bucketRange(p.x, p.end)}\naccepted error rate ${fmt(p.y)}`
      + ` (${p.n} labelled; ${p.flagged} items flagged by a policy)${over ? `, above α ${alpha}` : ""}`;
  }
  return pts.length;
}

// risk (error rate among accepted items) against coverage, with its pointwise upper bound, the
// selected policy's alpha and its operating point (its figures at its fit)
function drawRiskCoverage(svg, curve, policy) {
  clear(svg);
  if (curve.error) {
    noData(svg, "risk-coverage unavailable");
    return 0;
  }
  const { n, points, delta } = curve.value;
  if (!points.length) {
    noData(svg, "no labelled items in this window");
    return 0;
  }
  const { w, h } = size(svg);
  const op = policy && policy.feasible && policy.n_accepted > 0
    ? { x: policy.coverage, y: policy.errors / policy.n_accepted, bound: policy.risk_upper_bound } : null;
  const top = Math.min(1, 1.25 * Math.max(...points.map((p) => p.risk), policy ? policy.alpha : 0, op ? op.bound : 0)) || 1;
  const pad = { l: 0, r: 14, t: 8, b: 22 };
  const yt = numberTicks(0, top, Math.max(2, Math.floor((h - pad.t - pad.b) / 28)));
  pad.l = Math.ceil(Math.max(...yt.labels.map((s) => textWidth(svg, s)))) + 10;
  const xt = numberTicks(0, 1, 5);
  const sx = (x) => pad.l + x * (w - pad.l - pad.r);
  const sy = (y) => h - pad.b - ((y - yt.lo) / (yt.hi - yt.lo)) * (h - pad.t - pad.b);
  yAxis(svg, yt, sy, pad, w);
  for (const v of xt.values) {
    el("line", { x1: sx(v), y1: pad.t, x2: sx(v), y2: sy(0), class: "grid" }, svg);
    el("line", { x1: sx(v), y1: sy(0), x2: sx(v), y2: sy(0) + 4, class: "axis" }, svg);
  }
  xLabels(svg, xt.values, xt.labels, sx, h - 6, w - 2);
  el("line", { x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(0), class: "axis" }, svg);
  el("line", { x1: sx(0), y1: sy(0), x2: sx(0), y2: sy(yt.hi), class: "axis" }, svg);
  // the bound reaches 1 at small coverage: lines are clipped to the plot
  const clip = el("clipPath", { id: "risk-coverage-clip" }, svg);
  el("rect", { x: pad.l, y: pad.t, width: w - pad.l - pad.r, height: h - pad.t - pad.b }, clip);
  const line = (key, cls) => el("polyline", {
    class: `line ${cls}`, "clip-path": "url(#risk-coverage-clip)",
    points: points.map((p) => `${sx(p.coverage)},${sy(p[key])}`).join(" "),
  }, svg);
  el("title", {}, line("risk_upper_bound", "bound")).textContent = `${1 - delta} upper bound of the risk at each threshold (pointwise)`;
  el("title", {}, line("risk", "risk")).textContent = `risk against coverage over ${n} labelled items`;
  if (policy) alphaLine(svg, sy, pad.l, w - pad.r, policy, "right");
  if (op) {
    el("line", { x1: sx(op.x), y1: sy(op.y), x2: sx(op.x), y2: sy(op.bound), class: "operating" }, svg);
    const c = el("circle", { class: "operating", cx: sx(op.x), cy: sy(op.y), r: 4.5 }, svg);
    el("title", {}, c).textContent = `policy ${policy.name} v${policy.version} at its fit on ${policy.n_calibration} items:`
      + ` coverage ${fmt(op.x)}, risk ${fmt(op.y)} (${policy.errors} errors in ${policy.n_accepted} accepted),`
      + ` upper bound ${fmt(op.bound)} ≤ α ${policy.alpha}`;
  } else if (policy) {
    text(svg, pad.l + 6, pad.t + 12, `policy ${policy.name} is infeasible: it flags everything`, { class: "note" });
  }
  return points.length;
}

function code(content) {
  const c = document.createElement("code");
  c.textContent = content;
  return c;
}

// threshold(s) as plain text: one number, or per predicted class (null: always flagged)
function thresholds(p) {
  if (!p.feasible) return "none";
  if (!p.thresholds) return fmt(p.threshold);
  return Object.keys(p.thresholds).sort((a, b) => Number(a) - Number(b))
    .map((k) => `${k}: ${p.thresholds[k] === null ? "always flagged" : fmt(p.thresholds[k])}`).join(", ");
}

let shownPolicies = ""; // what the table shows: redrawn only when it changes (keeps the focus)

function renderPolicies(result, selected, stream) {
  const body = document.getElementById("policies");
  const list = result.value ? result.value.policies : [];
  const now = JSON.stringify([stream, result.error, list, selected && selected.name]);
  if (now === shownPolicies) return;
  shownPolicies = now;
  body.replaceChildren();
  if (!list.length) {
    const td = body.insertRow().insertCell();
    td.colSpan = 10;
    td.className = "empty";
    if (result.error) td.textContent = `policies unavailable (${result.error})`;
    else {
      td.append("no policy yet: fit one on the stream's labelled items with ",
        code(`PUT /v1/streams/${stream}/policies/{name}`), " and a body like ",
        code('{"alpha": 0.05, "delta": 0.1}'));
    }
    return;
  }
  for (const p of list) {
    const tr = body.insertRow();
    const chosen = selected !== null && p.name === selected.name;
    if (!p.feasible) tr.classList.add("infeasible");
    if (chosen) tr.classList.add("selected");
    const label = document.createElement("label");
    const pick = document.createElement("input");
    pick.type = "radio";
    pick.name = "policy";
    pick.value = p.name;
    pick.checked = chosen;
    label.append(pick, p.name);
    tr.insertCell().appendChild(label);
    const cells = [p.version, utc(Date.parse(p.fitted_at), true), thresholds(p), String(p.alpha), String(p.delta),
      p.feasible ? "yes" : "no: flags everything", fmt(p.coverage), p.n_calibration, fmt(p.risk_upper_bound)];
    for (const c of cells) tr.insertCell().textContent = c;
  }
}

// the stream's risk-coverage curve (kept for CURVE_MS: it reads the whole calibration set)
let curveCache = { key: "", at: 0, result: null };

async function riskCoverage(stream, since, confidence, delta) {
  const key = JSON.stringify([stream, windowSelect.value, confidence, delta]);
  if (curveCache.key === key && Date.now() - curveCache.at < CURVE_MS) return curveCache.result;
  const q = new URLSearchParams({ confidence, delta });
  if (since) q.set("since", since);
  const result = await soft(`v1/streams/${stream}/risk-coverage?${q}`);
  if (result.value) result.value.delta = delta;
  curveCache = result.value ? { key, at: Date.now(), result } : { key: "", at: 0, result: null };
  return result;
}

// ---- page ------------------------------------------------------------------------------------

function tiles(box, fields) {
  for (const [name, value] of fields) {
    const d = document.createElement("div");
    const b = document.createElement("b");
    b.textContent = fmt(value);
    d.append(b, name);
    box.appendChild(d);
  }
}

function renderTotals(total) {
  const box = document.getElementById("totals");
  box.replaceChildren();
  tiles(box, [["items", total.n_items], ["scored", total.n_scored], ["mean loss", total.loss_mean],
    ["confidence", total.confidence_mean], ["flag rate", total.flag_rate], ["accuracy", total.accuracy], ["ECE", total.ece]]);
}

// the calibration set's figures (batch labels + audited late labels), beside the totals
function renderLabelled(total) {
  const box = document.getElementById("labeled");
  box.replaceChildren();
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.textContent = "labelled (calibration set)";
  box.appendChild(caption);
  const l = total.labeled || {};
  tiles(box, [["labelled", l.n ?? 0], ["accuracy", l.accuracy], ["mean loss", l.loss_mean], ["ECE", l.ece],
    ["accepted error rate", l.accepted_error_rate]]);
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
    const cells = [utc(Date.parse(it.time), true), it.id === undefined ? "" : plain(it.id), it.index,
      fmt(it.confidence), fmt(it.loss), plain(it.predicted), plain(it.label), it.reasons.join(", ")];
    for (const c of cells) tr.insertCell().textContent = c;
  }
}

// audited items without a label yet, newest first: what reviewers should label next
function renderQueue(page) {
  const body = document.getElementById("queue");
  body.replaceChildren();
  const note = document.getElementById("queue-note");
  note.textContent = page.next_cursor ? `The ${QUEUE_SIZE} newest are shown; more are waiting.` : "";
  if (!page.items.length) {
    const td = body.insertRow().insertCell();
    td.colSpan = 5;
    td.className = "empty";
    td.textContent = "no audited item awaits a label";
    return;
  }
  for (const it of page.items) {
    const tr = body.insertRow();
    const flagged = it.flagged ? it.reasons.join(", ") || "yes" : "no";
    const cells = [utc(Date.parse(it.time), true), plain(it.id), plain(it.predicted), fmt(it.confidence), flagged];
    for (const c of cells) tr.insertCell().textContent = c;
  }
}

function renderStreams(streams) {
  const label = (s) => (s.tasks && s.tasks.length ? `${s.stream} (${s.tasks.join(", ")})` : s.stream);
  const now = [...streamSelect.options].map((o) => `${o.value}\n${o.text}`).join("\n");
  if (streams.map((s) => `${s.stream}\n${label(s)}`).join("\n") !== now) {
    streamSelect.replaceChildren(...streams.map((s) => new Option(label(s), s.stream)));
  }
}

async function refresh() {
  const mine = ++generation;
  const status = document.getElementById("status");
  try {
    const { streams } = await api("v1/streams");
    if (mine !== generation) return;
    renderStreams(streams);
    if (!streams.length) {
      status.textContent = "no streams recorded yet";
      return;
    }
    chosenStream = pickStream(streams);
    streamSelect.value = chosenStream;
    if (notice) writeUrl(); // the URL asked for what is not there: it now says what is shown
    const stream = encodeURIComponent(chosenStream);
    const win = Number(windowSelect.value);
    const now = Date.now();
    const params = new URLSearchParams();
    if (win > 0) {
      params.set("since", new Date(now - win * 1000).toISOString());
      params.set("bucket", bucketFor(win));
    } else {
      params.set("bucket", "1d");
    }
    const [summary, flagged, queue, policies] = await Promise.all([
      api(`v1/streams/${stream}/summary?${params}`),
      api(`v1/streams/${stream}/flagged?limit=20`),
      api(`v1/streams/${stream}/items?audit=true&labeled=false&limit=${QUEUE_SIZE}`),
      soft(`v1/streams/${stream}/policies`),
    ]);
    if (mine !== generation) return;
    const policy = pickPolicy(policies.value ? policies.value.policies : []);
    chosenPolicy = policy ? policy.name : null;
    if (notice) writeUrl();
    // the curve in the selected policy's confidence and delta, else the stream's own
    const tasks = streams.find((s) => s.stream === chosenStream).tasks || [];
    const confidence = policy ? policy.confidence
      : tasks.length && tasks.every((t) => t === SEQUENCES) ? "sequence" : "max_probability";
    const curve = await riskCoverage(stream, params.get("since"), confidence, policy ? policy.delta : CURVE_DELTA);
    if (mine !== generation) return;
    const first = summary.buckets.length ? Date.parse(summary.buckets[0].start) : now - DAY;
    const domain = [win > 0 ? now - win * 1000 : first, now];
    renderTotals(summary.total);
    renderLabelled(summary.total);
    for (const key of SERIES) drawSeries(document.getElementById(`chart-${key}`), summary.buckets, key, domain);
    drawReliability(document.getElementById("reliability"), summary.total.reliability);
    document.getElementById("ece").textContent = fmt(summary.total.ece);
    renderFlagged(flagged.items);
    renderQueue(queue);
    renderPolicies(policies, policy, chosenStream);
    drawAccepted(document.getElementById("chart-accepted"), summary.buckets, domain, policy);
    document.getElementById("accepted-total").textContent = fmt(summary.total.labeled ? summary.total.labeled.accepted_error_rate : null);
    const legend = document.getElementById("alpha");
    legend.textContent = policy ? `α ${policy.alpha} (${policy.name} v${policy.version})` : "";
    legend.hidden = !policy;
    drawRiskCoverage(document.getElementById("risk-coverage"), curve, policy);
    document.getElementById("aurc").textContent = curve.value ? fmt(curve.value.aurc) : "–";
    status.textContent = `${notice ? `${notice}: showing the default · ` : ""}updated ${utc(now, true).slice(11)} UTC`;
    document.body.dataset.loaded = "true";
  } catch (err) {
    if (mine === generation) status.textContent = `error: ${err.message}`;
  }
}

function choose() {
  chosenStream = streamSelect.value || null;
  notice = "";
  writeUrl();
  refresh();
}

streamSelect.addEventListener("change", () => {
  chosenPolicy = null; // another stream: its own newest policy
  choose();
});
windowSelect.addEventListener("change", choose);
document.getElementById("policies").addEventListener("change", (e) => {
  if (e.target.name !== "policy") return;
  chosenPolicy = e.target.value;
  choose();
});
refresh();
setInterval(refresh, REFRESH_MS);
