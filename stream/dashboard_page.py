"""The page ``stream dashboard`` serves: one HTML document with inline CSS and JS, no external asset.

The script polls ``/api/snapshot`` (every refresh interval, 1 to 5 s) and redraws: the stage
table, plain SVG line charts of the series (input events/s and lag per stage, CTR and log loss per
traffic slice, the champion's version), the model card, the drift statistics against their
thresholds, the recent alerts and dead letters. Text from records goes in as text, never as markup.
"""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stream dashboard</title>
<style>
:root { --fg:#1f2933; --muted:#6b7785; --line:#e3e7ec; --bg:#f5f7fa; --card:#fff; --bad:#c62828; --warn:#b26a00; --ok:#2e7d32; }
* { box-sizing: border-box; }
body { margin:0; font:13px/1.35 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; align-items:baseline; gap:18px; padding:8px 16px; background:#1f2933; color:#fff; }
header h1 { font-size:16px; margin:0; font-weight:600; }
header .facts { display:flex; gap:16px; flex-wrap:wrap; color:#cbd2d9; }
header .facts b { color:#fff; font-weight:600; }
#status { margin-left:auto; font-weight:600; }
#status.ok { color:#81c784; } #status.bad { color:#ef9a9a; } #status.warn { color:#ffcc80; }
main { padding:10px 16px; display:grid; gap:10px; grid-template-columns:repeat(3, minmax(0, 1fr)); }
section { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:8px 10px; min-width:0; }
section h2 { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); margin:0 0 6px; font-weight:600; }
.wide { grid-column:span 2; }
table { border-collapse:collapse; width:100%; }
th, td { padding:2px 6px; text-align:right; white-space:nowrap; border-bottom:1px solid var(--line); }
th { color:var(--muted); font-weight:600; font-size:11px; }
th:first-child, td:first-child { text-align:left; }
td.text, th.text { text-align:left; white-space:normal; }
tr.alarm td { color:var(--bad); font-weight:600; }
.empty { color:var(--muted); font-style:italic; padding:6px 0; }
svg.chart { width:100%; height:auto; display:block; }
svg.chart .grid { stroke:var(--line); stroke-width:1; }
svg.chart .axis { fill:var(--muted); font-size:10px; }
svg.chart .line { fill:none; stroke-width:1.8; stroke-linejoin:round; }
.legend { display:flex; flex-wrap:wrap; gap:4px 12px; font-size:11px; color:var(--muted); min-height:15px; }
.legend i { display:inline-block; width:10px; height:3px; margin-right:4px; vertical-align:middle; }
.legend b { color:var(--fg); font-weight:600; margin-left:3px; }
.level { display:inline-flex; align-items:center; gap:4px; } .level small { width:44px; text-align:right; color:var(--muted); }
.bar { position:relative; width:64px; height:8px; background:#eef1f4; border-radius:2px; display:inline-block; }
.bar span { position:absolute; left:0; top:0; bottom:0; background:#5c8ad6; border-radius:2px; }
.bar.over span { background:var(--bad); }
.bar::after { content:""; position:absolute; left:66.6%; top:-2px; bottom:-2px; border-left:1px dashed var(--fg); }
.sev { font-size:10px; font-weight:700; padding:0 4px; border-radius:3px; color:#fff; background:var(--muted); }
.sev.WARNING { background:var(--warn); } .sev.CRITICAL { background:var(--bad); } .sev.INFO { background:#5c8ad6; }
.list { max-height:260px; overflow:auto; } #drift th, #drift td { padding:2px 5px; } .list.short { max-height:175px; }
.kv { display:grid; grid-template-columns:auto 1fr; gap:2px 10px; margin-bottom:6px; }
.kv dt { color:var(--muted); } .kv dd { margin:0; font-weight:600; }
</style></head>
<body>
<header><h1>stream dashboard</h1>
  <div class="facts"><span>model <b id="f-version">-</b></span><span>rollout <b id="f-rollout">-</b></span>
  <span>drift <b id="f-drift">-</b></span><span>updated <b id="f-time">-</b></span></div>
  <span id="status" class="warn">connecting</span></header>
<main>
  <section class="wide"><h2>Stages (per second over the last monitor interval)</h2>
    <table id="stages"><thead><tr><th>stage</th><th>workers</th><th>in/s</th><th>out/s</th><th>reject</th>
    <th>lag (events)</th><th>p99 ms/msg</th><th>p99 event lag ms</th><th>ready</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Champion model per traffic slice</h2>
    <dl class="kv" id="model-facts"></dl>
    <table id="model"><thead><tr><th>traffic</th><th>log loss</th><th>AUC</th><th>CTR</th><th>examples</th></tr></thead>
    <tbody></tbody></table></section>
  <section><h2>Input events/s per stage</h2><svg class="chart" id="chart-in_per_s" viewBox="0 0 420 150"></svg>
    <div class="legend" id="legend-in_per_s"></div></section>
  <section><h2>Consumer lag (events) per stage</h2><svg class="chart" id="chart-lag_events" viewBox="0 0 420 150"></svg>
    <div class="legend" id="legend-lag_events"></div></section>
  <section><h2>Champion model version</h2><svg class="chart" id="chart-model_version" viewBox="0 0 420 150"></svg>
    <div class="legend" id="legend-model_version"></div></section>
  <section><h2>CTR per traffic slice</h2><svg class="chart" id="chart-ctr" viewBox="0 0 420 150"></svg>
    <div class="legend" id="legend-ctr"></div></section>
  <section><h2>Log loss per traffic slice</h2><svg class="chart" id="chart-log_loss" viewBox="0 0 420 150"></svg>
    <div class="legend" id="legend-log_loss"></div></section>
  <section><h2>Recent dead letters (clicks.dlq.v1)</h2><div class="list short">
    <table id="dlq"><thead><tr><th>time</th><th>stage</th><th class="text">reason</th><th>source</th></tr></thead>
    <tbody></tbody></table></div></section>
  <section class="wide"><h2>Drift: each statistic's latest window against its threshold (dashed line)</h2><div class="list">
    <table id="drift"><thead><tr><th>stage</th><th class="text">quantity</th><th>statistic</th><th>value</th>
    <th>threshold</th><th>level</th><th>alarm</th><th>window end</th><th>samples</th></tr></thead>
    <tbody></tbody></table></div></section>
  <section><h2>Recent alerts (alerts.v1)</h2><div class="list">
    <table id="alerts"><thead><tr><th>time</th><th>severity</th><th class="text">alert</th></tr></thead>
    <tbody></tbody></table></div></section>
</main>
<script>
"use strict";
const COLORS = ["#2f6fd0", "#d64545", "#2e9d55", "#8e44ad", "#e67e22", "#16a2b8", "#6b7785"];
const $ = (id) => document.getElementById(id);
const num = (x, d = 0) => x == null ? "-" : Number(x).toLocaleString("en-US", {maximumFractionDigits: d, minimumFractionDigits: d});
const compact = (x) => x == null ? "-" : Math.abs(x) >= 1e6 ? (x / 1e6).toFixed(1) + "M" : Math.abs(x) >= 1e4 ? (x / 1e3).toFixed(0) + "k"
  : Math.abs(x) >= 1e3 ? (x / 1e3).toFixed(1) + "k" : Number(x).toFixed(Math.abs(x) < 10 && x % 1 ? 1 : 0);
const sig = (x) => x == null ? "-" : x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5) ? x.toExponential(2) : x.toPrecision(3);
const pct = (x, d = 1) => x == null ? "-" : (100 * x).toFixed(d) + "%";
const clock = (ms) => ms == null ? "-" : new Date(ms).toLocaleTimeString("en-GB", {hour12: false});
const CHARTS = {
  in_per_s: {fmt: compact, zero: true}, lag_events: {fmt: compact, zero: true},
  ctr: {fmt: (x) => pct(x, 1)}, log_loss: {fmt: (x) => x == null ? "-" : x.toFixed(3)},
  model_version: {fmt: (x) => x == null ? "-" : "v" + Math.round(x), step: true},
};

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) {
    const td = c instanceof Node ? el("td") : el("td", c == null ? "-" : String(c));
    if (c instanceof Node) td.appendChild(c);
    tr.appendChild(td);
  }
  return tr;
}
function fill(id, rows, empty, columns) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...rows);
  if (!rows.length) {
    const td = el("td", empty, "empty text"); td.colSpan = columns;
    const tr = el("tr"); tr.appendChild(td); body.appendChild(tr);
  }
}
function svgEl(svg, tag, attrs, text) {
  const e = document.createElementNS(svg.namespaceURI, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  svg.appendChild(e);
  return e;
}

function drawChart(name, t, series) {
  const svg = $("chart-" + name), legend = $("legend-" + name), opt = CHARTS[name];
  const W = 420, H = 150, L = 46, R = 8, T = 8, B = 18;
  svg.replaceChildren(); legend.replaceChildren();
  let lo = Infinity, hi = -Infinity;
  for (const vs of Object.values(series)) for (const v of vs) if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo) || t.length < 1) {
    svgEl(svg, "text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis"}, "no data yet");
    return;
  }
  if (opt.zero) lo = Math.min(0, lo);
  if (hi - lo < 1e-9) { const d = Math.abs(hi) * 0.1 || 1; hi += d; lo = opt.zero ? lo : lo - d; }
  else { const pad = (hi - lo) * 0.08; hi += pad; if (!opt.zero) lo -= pad; }
  const t0 = t[0], span = Math.max(t[t.length - 1] - t0, 1);
  const x = (ms) => (L + (ms - t0) / span * (W - L - R)).toFixed(1);
  const y = (v) => (T + (hi - v) / (hi - lo) * (H - T - B)).toFixed(1);
  for (let i = 0; i <= 3; i++) {
    const v = lo + (hi - lo) * i / 3, yy = y(v);
    svgEl(svg, "line", {x1: L, x2: W - R, y1: yy, y2: yy, class: "grid"});
    svgEl(svg, "text", {x: L - 4, y: Number(yy) + 3, "text-anchor": "end", class: "axis"}, opt.fmt(v));
  }
  svgEl(svg, "text", {x: L, y: H - 4, class: "axis"}, clock(t0));
  svgEl(svg, "text", {x: W - R, y: H - 4, "text-anchor": "end", class: "axis"}, clock(t[t.length - 1]));
  Object.entries(series).forEach(([label, vs], i) => {
    const color = COLORS[i % COLORS.length];
    let seg = [], prev = null;
    const flush = () => {
      if (seg.length > 1) svgEl(svg, "polyline", {points: seg.join(" "), class: "line", stroke: color, "data-series": label});
      else if (seg.length === 1) { const [cx, cy] = seg[0].split(","); svgEl(svg, "circle", {cx, cy, r: 2, fill: color}); }
      seg = []; prev = null;
    };
    vs.forEach((v, j) => {
      if (v == null) { flush(); return; }
      if (opt.step && prev != null) seg.push(x(t[j]) + "," + y(prev));
      seg.push(x(t[j]) + "," + y(v)); prev = v;
    });
    flush();
    const last = [...vs].reverse().find((v) => v != null);
    const item = el("span"); const sw = el("i"); sw.style.background = color;
    item.append(sw, label); item.appendChild(el("b", opt.fmt(last))); legend.appendChild(item);
  });
}

function drawStages(s) {
  fill("stages", s.stages.map((r) => {
    const tr = row([r.stage, r.workers, num(r.in_per_s), num(r.out_per_s), pct(r.reject_share),
      r.lag_events == null ? "?" : num(r.lag_events) + (r.lag_unknown ? "?" : ""), num(r.p99_ms_per_message, 1),
      num(r.p99_event_lag_ms), r.ready == null ? "-" : r.ready + "/" + r.workers]);
    tr.dataset.stage = r.stage; tr.cells[2].dataset.value = r.in_per_s;
    return tr;
  }), "no monitoring record in the last intervals: is a worker running?", 9);
}

function drawModel(s) {
  const facts = $("model-facts"); facts.replaceChildren();
  const ro = s.rollout ? s.rollout.mode + (s.rollout.share ? ", challenger " + pct(s.rollout.share, 0) : "") : "-";
  const dr = s.drift ? s.drift.alarms_active + " alarm(s)" + (s.drift.calibrated ? "" : ", calibrating") : "-";
  for (const [k, v] of [["version", s.model_version == null ? "-" : "v" + s.model_version], ["rollout", ro], ["drift", dr]]) {
    facts.append(el("dt", k), el("dd", v));
  }
  $("f-version").textContent = s.model_version == null ? "-" : "v" + s.model_version;
  $("f-rollout").textContent = ro; $("f-drift").textContent = dr;
  fill("model", Object.entries(s.model).sort().map(([v, m]) => row([v, m.log_loss == null ? "-" : m.log_loss.toFixed(4),
    m.auc == null ? "-" : m.auc.toFixed(3), pct(m.ctr, 2), num(m.examples)])), "no learner metrics yet", 5);
}

function drawDrift(s) {
  fill("drift", s.drift_stats.map((d) => {
    const over = d.level != null && d.level > 1;
    const bar = el("span", null, "bar" + (over ? " over" : ""));
    const fillBar = el("span"); fillBar.style.width = Math.min(100, 66.6 * (d.level || 0)).toFixed(1) + "%";
    bar.appendChild(fillBar);
    const times = d.level == null ? "-" : d.level >= 100 ? ">100x" : d.level.toFixed(2) + "x";
    const level = el("span", null, "level"); level.append(bar, el("small", times));
    const state = d.alarm ? "ALARM" : !over ? "no" : d.calibrated ? "over, few samples" : "over, calibrating";
    const tr = row([d.stage, d.quantity, d.statistic, sig(d.value), sig(d.threshold), level, state, clock(d.window_end),
      num(d.sample_size)], d.alarm ? "alarm" : "");
    tr.cells[1].className = "text";
    tr.title = d.calibrated ? "" : "alarms are off until the thresholds are calibrated (stream drift calibrate)";
    return tr;
  }), "no drift report yet (is `stream worker --stages drift` running?)", 9);
}

function drawRecent(s) {
  fill("alerts", s.alerts.map((a) => {
    const what = el("span"); what.append(el("b", a.name), el("br"), a.stage + ": " + a.message);
    const tr = row([clock(a.created), el("span", a.severity, "sev " + a.severity), what]);
    tr.cells[2].className = "text";
    return tr;
  }), "no alert", 3);
  fill("dlq", s.dead_letters.map((d) => {
    const tr = row([clock(d.failed_at), d.stage, d.reason, d.topic + "[" + d.partition + "]@" + d.offset]);
    tr.cells[2].className = "text";
    return tr;
  }), "no dead letter", 4);
}

let delay = 2000;
async function refresh() {
  const status = $("status");
  try {
    const resp = await fetch("api/snapshot", {cache: "no-store"});
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const s = await resp.json();
    delay = Math.max(1000, Math.min(5000, 1000 * (s.refresh_s || 2)));
    drawStages(s); drawModel(s); drawDrift(s); drawRecent(s);
    for (const name of Object.keys(CHARTS)) {
      drawChart(name, s.series.t, name === "model_version" ? {champion: s.series.model_version} : s.series[name]);
    }
    $("f-time").textContent = clock(s.at_ms);
    status.textContent = s.stages.length ? "live" : "no worker reporting";
    status.className = s.stages.length ? "ok" : "warn";
  } catch (err) {
    status.textContent = "connection lost (" + err.message + ")"; status.className = "bad";
  }
  setTimeout(refresh, delay);
}
refresh();
</script>
</body></html>
"""
