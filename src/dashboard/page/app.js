// The dashboard's page: draws the state the server sends (first in the page, then as
// server-sent events each second). Plain DOM and SVG; nothing is fetched from elsewhere.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f6fdb", "#1f9d63", "#7b52c7", "#d98b17", "#d64545", "#138a9e", "#b5487d", "#5d6b7a"];
const STALE_AFTER_MS = 5000;

const $ = (id) => document.getElementById(id);
const fmtInt = (n) => Math.round(n).toLocaleString("en-US");
const fmtMs = (ms) => (ms == null ? "–" : ms < 10 ? ms.toFixed(1) + " ms" : ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(1) + " s");
const fmtTime = (ms) => new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
// The palette's colours for the first versions, then hues a golden angle apart: no two versions
// share a colour however many there are.
const versionColor = (v) =>
  v <= PALETTE.length ? PALETTE[v - 1] : `hsl(${Math.round((v * 137.508) % 360)}, 62%, 42%)`;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// A line chart of `series` ([{name, color, dash, points: [[t, y | null]]}]) in `box`.
function lineChart(box, legend, series, opts) {
  const w = box.clientWidth || 560, h = box.clientHeight || 190;
  const pad = { l: 58, r: 10, t: 8, b: 22 };
  const pts = series.flatMap((s) => s.points.filter((p) => p[1] != null));
  box.replaceChildren();
  legend.replaceChildren();
  if (pts.length === 0) {
    box.append(el("div", { class: "empty" }, opts.empty || "nothing yet"));
    return;
  }
  let [x0, x1] = opts.x || [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  if (x1 <= x0) x1 = x0 + 1000;
  let y0 = opts.yMin != null ? opts.yMin : Math.min(...pts.map((p) => p[1]));
  let y1 = opts.yMax != null ? opts.yMax : Math.max(...pts.map((p) => p[1]));
  if (opts.padY) { const d = Math.max((y1 - y0) * 0.15, opts.padY); y0 -= d; y1 += d; }
  if (opts.floor != null) y0 = Math.max(y0, opts.floor);
  if (opts.ceil != null) y1 = Math.min(y1, opts.ceil);
  if (y1 <= y0) y1 = y0 + 1;
  const X = (t) => pad.l + ((t - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const Y = (v) => h - pad.b - ((v - y0) / (y1 - y0)) * (h - pad.t - pad.b);
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, role: "img" });
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4, y = Y(v);
    svg.append(svgEl("line", { x1: pad.l, x2: w - pad.r, y1: y, y2: y, class: "grid-line" }));
    const label = svgEl("text", { x: pad.l - 6, y: y + 4, "text-anchor": "end" });
    label.textContent = opts.yFmt(v);
    svg.append(label);
  }
  for (const [t, anchor] of [[x0, "start"], [(x0 + x1) / 2, "middle"], [x1, "end"]]) {
    const label = svgEl("text", { x: X(t), y: h - 6, "text-anchor": anchor });
    label.textContent = (opts.xFmt || fmtTime)(t);
    svg.append(label);
  }
  for (const s of series) {
    let d = "", pen = false;
    for (const [t, v] of s.points) {
      if (v == null) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${X(t).toFixed(1)},${Y(v).toFixed(1)}`;
      pen = true;
    }
    if (!d) continue;
    const attrs = { d, fill: "none", stroke: s.color, "stroke-width": s.width || 2, "stroke-linejoin": "round" };
    if (s.dash) attrs["stroke-dasharray"] = "6 4";
    if (s.dotted) attrs["stroke-dasharray"] = "1.5 3";
    svg.append(svgEl("path", attrs));
    const last = s.points.filter((p) => p[1] != null).pop();
    if (s.dot && last) svg.append(svgEl("circle", { cx: X(last[0]), cy: Y(last[1]), r: 3, fill: s.color }));
    const sw = el("span", { class: "sw" + (s.dash ? " dash" : s.dotted ? " dotted" : ""), style: `background:${s.color};color:${s.color}` });
    legend.append(el("span", {}, sw, s.name));
  }
  box.append(svg);
}

function bars(box, rows, opts) {
  box.replaceChildren();
  if (rows.length === 0) { box.append(el("div", { class: "muted" }, opts.empty)); return; }
  const max = Math.max(opts.max || 0, ...rows.map((r) => Math.max(r.value, r.mark || 0))) || 1;
  const wrap = el("div", { class: "bars" });
  for (const r of rows) {
    const track = el("div", { class: "track" });
    track.append(el("div", { class: "fill " + (r.cls || ""), style: `width:${(100 * r.value) / max}%` }));
    if (opts.mark != null && opts.mark <= max) track.append(el("div", { class: "mark", style: `left:${(100 * opts.mark) / max}%`, title: opts.markTitle || "" }));
    if (r.mark != null && r.mark <= max) track.append(el("div", { class: "mark", style: `left:${(100 * r.mark) / max}%`, title: r.markTitle || "" }));
    wrap.append(el("div", { class: "row", "data-name": r.name }, el("span", {}, r.name), track, el("span", { class: "n" }, r.text)));
  }
  box.append(wrap);
}

function renderTiles(s) {
  $("t-requests-rate").textContent = fmtInt(s.requests_per_s);
  $("t-predictions-rate").textContent = fmtInt(s.predictions_per_s);
  $("t-p50").textContent = fmtMs(s.p50_ms);
  $("t-p99").textContent = fmtMs(s.p99_ms);
  $("t-lag").textContent = s.lag == null ? "–" : fmtInt(Math.max(0, s.lag));
  $("t-predictions-total").textContent = fmtInt(s.totals.predictions);
  $("t-dead-letters-total").textContent = fmtInt(s.totals.dead_letters);
  $("t-labels-pending").textContent = fmtInt(s.totals.labels_pending);
  const v = (a) => (a && a.version != null ? "v" + a.version : "none");
  $("t-champion").textContent = v(s.champion);
  $("t-challenger").textContent = v(s.challenger);
}

function renderCharts(s) {
  const t = s.series.t, x = [t[0], t[t.length - 1]];
  const zip = (ys) => t.map((ti, i) => [ti, ys[i]]);
  lineChart($("c-throughput"), $("l-throughput"), [
    { name: "requests/s", color: "#9aa5b1", points: zip(s.series.requests) },
    { name: "predictions/s", color: "#2f6fdb", points: zip(s.series.predictions) },
    { name: "dead letters/s", color: "#d64545", points: zip(s.series.dead_letters) },
  ], { x, yMin: 0, yFmt: (v) => fmtInt(v), empty: "no records in the last 5 minutes" });
  lineChart($("c-latency"), $("l-latency"), [
    { name: "p50", color: "#1f9d63", points: zip(s.series.p50_ms) },
    { name: "p99", color: "#d98b17", points: zip(s.series.p99_ms) },
  ], { x, yMin: 0, yFmt: (v) => fmtMs(v), empty: "no predictions in the last 5 minutes" });
  const acc = [], ll = [];
  for (const v of s.versions) {
    const color = versionColor(v.version);
    const role = v.role === "retired" ? "" : ` (${v.role})`;
    if (v.served_series.length) {
      acc.push({ name: `v${v.version}${role}`, color, dot: true, points: v.served_series.map((p) => [p.t, p.accuracy]) });
      ll.push({ name: `v${v.version}${role}`, color, dot: true, points: v.served_series.map((p) => [p.t, p.log_loss]) });
    }
    if (v.role !== "retired" && v.estimated_series.length) {
      acc.push({ name: `v${v.version} estimated`, color, dash: true, width: 1.5, points: v.estimated_series.map((p) => [p.t, p.accuracy]) });
      ll.push({ name: `v${v.version} estimated`, color, dash: true, width: 1.5, points: v.estimated_series.map((p) => [p.t, p.log_loss]) });
    }
    if (v.shadow_series.length) {
      acc.push({ name: `v${v.version} in shadow`, color, dotted: true, points: v.shadow_series.map((p) => [p.t, p.accuracy]) });
      ll.push({ name: `v${v.version} in shadow`, color, dotted: true, points: v.shadow_series.map((p) => [p.t, p.log_loss]) });
    }
  }
  const pct = (v) => (100 * v).toFixed(1) + "%";
  lineChart($("c-accuracy"), $("l-accuracy"), acc, { padY: 0.005, floor: 0, ceil: 1, yFmt: pct, empty: "no labeled predictions yet" });
  lineChart($("c-logloss"), $("l-logloss"), ll, { padY: 0.005, floor: 0, yFmt: (v) => v.toFixed(3), empty: "no labeled predictions yet" });
  // Per minute: the last three versions that served.
  const win = [];
  for (const v of s.versions.filter((v) => v.windows.length).slice(-3)) {
    const color = versionColor(v.version);
    win.push({ name: `v${v.version} estimated`, color, dash: true, width: 1.5, points: v.windows.map((w) => [w.t, w.estimated_accuracy]) });
    const real = v.windows.filter((w) => w.realised && w.realised.labeled >= 30);
    if (real.length) win.push({ name: `v${v.version} realised`, color, points: real.map((w) => [w.t, w.realised.accuracy]) });
  }
  lineChart($("c-windows"), $("l-windows"), win, { padY: 0.005, floor: 0, ceil: 1, yFmt: pct, empty: "no predictions yet" });
}

function renderGate(s) {
  const box = $("gate");
  box.replaceChildren();
  const g = s.gate;
  if (!g) {
    const c = s.challenger;
    box.append(el("div", { class: "gate-line muted" }, c ? `No challenger now. Last: ${c.reason}` : "No challenger yet: the next retrain makes one."));
  } else {
    const what = g.probation ? `v${g.challenger} (former champion, on probation) against champion v${g.champion}` : `challenger v${g.challenger} against champion v${g.champion}`;
    box.append(el("div", { class: "gate-line" }, el("b", {}, "Gate: "), what));
    const goal = g.labels < g.min_labels ? g.min_labels : g.max_labels;
    const bar = el("div", { class: "progress", title: `${g.labels} of ${goal} labels` });
    bar.append(el("div", { style: `width:${Math.min(100, (100 * g.labels) / goal)}%` }));
    box.append(el("div", { class: "muted" }, `${fmtInt(g.labels)} paired labels, repeated rows left out · decides from ${fmtInt(g.min_labels)}, at most ${fmtInt(g.max_labels)}`), bar);
    if (g.interval) {
      const [lo, hi] = g.interval;
      const better = hi < -g.delta, worse = lo > -g.delta;
      box.append(el("div", { class: "gate-line" },
        `mean d = ${g.mean_d >= 0 ? "+" : ""}${g.mean_d.toFixed(4)}, ${Math.round(100 * (1 - g.alpha))}% interval [${lo.toFixed(4)}, ${hi.toFixed(4)}] vs −δ = ${(-g.delta).toFixed(3)}: `,
        el("span", { class: better ? "ok" : worse ? "bad" : "muted" }, better ? "better by more than δ" : worse ? "not better by δ" : "undecided")));
    }
  }
  const table = $("versions");
  table.replaceChildren(el("tr", {}, el("th", {}, "version"), el("th", {}, "role"), el("th", { class: "num" }, "predictions"),
    el("th", { class: "num", title: "labeled predictions the realised figures rest on" }, "labels"),
    el("th", { class: "num" }, "accuracy"), el("th", { class: "num" }, "log loss"),
    el("th", { class: "num", title: "accuracy on rows whose features came for the first time (not in adult.data, not earlier in the stream): rows no version trained on, so a repeated input cannot inflate it; (labels)" }, "on new rows"),
    el("th", { class: "num", title: "from the served probabilities alone, before labels (assumes calibrated scores)" }, "estimated"),
    el("th", { class: "num" }, "in shadow"), el("th", { class: "num" }, "CV log loss"),
    el("th", { class: "num", title: "on adult.test's rows it was not trained on: log loss · AUC · calibration error (ECE), (rows)" }, "test")));
  // Retired versions that never served nor were scored in shadow are folded into one line.
  const folded = s.versions.filter((v) => v.role === "retired" && v.predictions === 0 && !v.shadow && !v.served);
  const shown = s.versions.filter((v) => !folded.includes(v));
  for (const v of [...shown].reverse()) {
    const f = (t) => (t ? `${(100 * t.accuracy).toFixed(1)}%` : "–");
    table.append(el("tr", { "data-version": v.version },
      el("td", {}, el("b", { style: `color:${versionColor(v.version)}` }, "v" + v.version)),
      el("td", {}, el("span", { class: "badge " + v.role }, v.role)),
      el("td", { class: "num" }, fmtInt(v.predictions)),
      el("td", { class: "num" }, v.served ? fmtInt(v.served.labeled) : "0"),
      el("td", { class: "num" }, f(v.served)),
      el("td", { class: "num" }, v.served ? v.served.log_loss.toFixed(4) : "–"),
      el("td", { class: "num" }, v.new_rows ? `${f(v.new_rows)} (${fmtInt(v.new_rows.labeled)})` : "– (0)"),
      el("td", { class: "num" }, v.estimated ? `${f(v.estimated)} · ${v.estimated.log_loss.toFixed(4)}` : "–"),
      el("td", { class: "num nowrap" }, v.shadow ? `${f(v.shadow)} · ${v.shadow.log_loss.toFixed(4)} (${fmtInt(v.shadow.labeled)})` : "–"),
      el("td", { class: "num" }, v.cv_log_loss == null ? "–" : v.cv_log_loss.toFixed(4)),
      el("td", { class: "num nowrap" }, v.test
        ? `${v.test.log_loss.toFixed(4)} · ${v.test.roc_auc.toFixed(3)} · ${v.test.ece == null ? "–" : v.test.ece.toFixed(3)} (${fmtInt(v.test.rows)})`
        : "–")));
  }
  if (folded.length) {
    const cv = folded.map((v) => v.cv_log_loss).filter((x) => x != null);
    const range = cv.length ? `; CV log loss ${Math.min(...cv).toFixed(4)}–${Math.max(...cv).toFixed(4)}` : "";
    table.append(el("tr", { class: "folded", "data-folded": folded.length },
      el("td", { colspan: 11, class: "muted" },
        `${folded.map((v) => "v" + v.version).join(", ")}: ${folded.length} retired, never served nor shadowed${range}`)));
  }
  if (s.versions_forgotten) {
    table.append(el("tr", { class: "folded", "data-forgotten": s.versions_forgotten },
      el("td", { colspan: 11, class: "muted" },
        `${fmtInt(s.versions_forgotten)} older ${s.versions_forgotten === 1 ? "version" : "versions"} not shown: the page keeps the newest ${s.versions_kept} and those in use`)));
  }
}

function renderTimeline(s) {
  const list = $("timeline");
  list.replaceChildren();
  if (s.timeline.length === 0) list.append(el("li", { class: "muted" }, "nothing in the registry yet"));
  for (const m of s.timeline) {
    list.append(el("li", { "data-kind": m.kind, "data-version": m.version == null ? "" : m.version },
      el("span", { class: "when" }, fmtTime(m.at_ms)), el("span", {}, el("span", { class: "badge " + m.kind }, m.kind)), el("span", {}, m.text)));
  }
}

function renderDeadLetters(s) {
  const rows = Object.entries(s.dead_letters).sort((a, b) => b[1] - a[1])
    .map(([name, n]) => ({ name, value: n, text: fmtInt(n), cls: "hot" }));
  bars($("dead-letters"), rows, { empty: "none: every request so far was scored" });
  const list = $("dead-latest");
  list.replaceChildren();
  for (const d of s.latest_dead_letters) {
    list.append(el("li", {},
      el("span", { class: "when" }, fmtTime(d.at_ms)),
      el("span", {}, el("span", { class: "badge decided" }, d.reason)),
      el("span", {}, d.error || "(no error text)", d.source ? el("span", { class: "muted" }, ` · ${d.source}`) : "")));
  }
}

// The reliability diagram of the versions that served labeled predictions: in each bin of the
// predicted probability, the share of >50K among its labels against its mean probability.
function renderCalibration(s) {
  const shown = [...s.versions].filter((v) => v.calibration).reverse().slice(0, 3);
  const series = [{ name: "calibrated", color: "#9aa3ad", dotted: true, width: 1, points: [[0, 0], [1, 1]] }];
  for (const v of shown) {
    const c = v.calibration;
    const role = v.role === "retired" ? "" : ` (${v.role})`;
    series.push({
      name: `v${v.version}${role}: ECE ${c.ece.toFixed(3)} · Brier ${c.brier.toFixed(3)} · ${fmtInt(c.labels)} labels`,
      color: versionColor(v.version), dot: true,
      points: c.bins.map((b) => [b.mean_p, b.observed]),
    });
  }
  if (shown.length === 0) series.length = 0;
  const pct = (v) => (100 * v).toFixed(0) + "%";
  lineChart($("c-calibration"), $("l-calibration"), series,
    { x: [0, 1], yMin: 0, yMax: 1, yFmt: pct, xFmt: pct, empty: "no labeled predictions yet" });
}

function renderDrift(s) {
  const d = s.drift;
  if (!d || d.features.length === 0) {
    bars($("drift"), [], { empty: d ? `measuring: ${fmtInt(d.rows)} requests so far` : "waiting for the champion's bundle" });
    return;
  }
  $("drift-hint").textContent = `PSI vs v${d.version}'s training data, ${d.complete ? "last window of" : "window so far,"} ${fmtInt(d.rows)} requests`;
  const limit = d.threshold;
  const rows = [...d.features].sort((a, b) => b[1] - a[1]).map(([name, psi]) => ({
    name, value: psi, text: psi.toFixed(3),
    cls: limit != null && psi > limit ? "hot" : psi > 0.1 ? "warm" : "",
  }));
  bars($("drift"), rows, { max: limit ? limit * 1.2 : 0.3, mark: limit, markTitle: "the retrainer's drift trigger" });
}

// The champion's importance (else the newest version's that has one), each feature's mark at
// the challenger's figure (from its reasons in shadow on the same predictions) when there is
// one, else at the previous version's.
function renderImportance(s) {
  const withImportance = s.versions.filter((v) => v.importance);
  const shown = withImportance.find((v) => v.role === "champion") || withImportance[withImportance.length - 1];
  if (!shown) {
    $("importance-hint").textContent = "mean |contribution| to the log-odds over the predictions served with their reasons";
    bars($("importance"), [], { empty: "no prediction served with its reasons yet (predictor --explain)" });
    return;
  }
  const before = withImportance.find((v) => v.role === "challenger" && v.version !== shown.version) ||
    withImportance.filter((v) => v.version < shown.version).pop();
  const was = before ? Object.fromEntries(before.importance.features) : {};
  $("importance-hint").textContent = `v${shown.version}: mean |contribution| to the log-odds over ${fmtInt(shown.importance.explained)} predictions served with their reasons` +
    (before ? `; marks: v${before.version}'s${before.role === "challenger" ? " (the challenger, in shadow)" : ""}, over ${fmtInt(before.importance.explained)}` : "");
  const rows = shown.importance.features.map(([name, value]) => ({
    name, value, text: value.toFixed(3),
    mark: was[name], markTitle: before ? `v${before.version}: ${was[name] == null ? "–" : was[name].toFixed(3)}` : "",
  }));
  bars($("importance"), rows, {});
}

// The champion's importance minute by minute: its five largest features' mean |contribution|
// in each minute of at least MIN_EXPLAINED explained predictions, and how far the last such
// minute's shares lie from the whole's.
const MIN_EXPLAINED = 20;
const FEATURE_COLORS = ["#2f6fdb", "#d98b17", "#1f9d63", "#8e44ad", "#d64545"];
function renderAttribution(s) {
  const shown = s.versions.find((v) => v.role === "champion" && v.importance);
  const minutes = shown ? shown.importance.minutes.filter((m) => m.explained >= MIN_EXPLAINED) : [];
  if (!shown || minutes.length === 0) {
    $("attribution-hint").textContent = `the champion's mean |contribution| per minute, in minutes of at least ${MIN_EXPLAINED} explained predictions`;
    lineChart($("c-attribution"), $("l-attribution"), [], { yFmt: (v) => v.toFixed(2), empty: `no minute with ${MIN_EXPLAINED} explained predictions yet` });
    return;
  }
  const top = shown.importance.features.slice(0, 5);
  const series = top.map(([name], k) => ({
    name, color: FEATURE_COLORS[k], points: minutes.map((m) => [m.t, m.means[k]]),
  }));
  const last = minutes[minutes.length - 1];
  const shifts = minutes.map((m) => m.shift);
  $("attribution-hint").textContent = `v${shown.version}'s five largest features, mean |contribution| per minute (${minutes.length} minutes of at least ${MIN_EXPLAINED} explained predictions). ` +
    `Shift of the last minute from the whole: ${last.shift.toFixed(3)} over ${fmtInt(last.explained)} predictions (total variation of the features' shares, 0 to 1; largest of the hour ${Math.max(...shifts).toFixed(3)})`;
  lineChart($("c-attribution"), $("l-attribution"), series, { yMin: 0, yFmt: (v) => v.toFixed(2) });
}

// A rate with its interval: `0.662 [0.61, 0.71]`, its count in the title.
function rateCell(r) {
  if (!r) return el("td", { class: "muted num" }, "–");
  return el("td", { class: "num nowrap", title: `over ${fmtInt(r.n)} rows; always-valid interval` },
    r.value.toFixed(3), el("span", { class: "muted" }, ` [${r.interval[0].toFixed(2)}, ${r.interval[1].toFixed(2)}]`));
}

const gapText = (g) => (g ? `${g.value.toFixed(3)} [${g.interval[0].toFixed(2)}, ${g.interval[1].toFixed(2)}]` : "–");

// The champion's figures per group (else the newest version's that has them): a line of gaps
// per attribute, and a table per attribute.
function renderGroups(s) {
  const withGroups = s.versions.filter((v) => v.groups);
  const shown = withGroups.find((v) => v.role === "champion") || withGroups[withGroups.length - 1];
  const gaps = $("gaps"), box = $("groups");
  gaps.replaceChildren();
  box.replaceChildren();
  if (!shown) {
    box.append(el("div", { class: "muted" }, "no labeled prediction of a known group on a new row yet"));
    return;
  }
  const labeled = shown.groups[0].groups.reduce((n, g) => n + g.labeled, 0);
  $("groups-hint").textContent = `v${shown.version}: its ${fmtInt(labeled)} served predictions with labels on rows come for the first time, said >50K at probability 0.5; ` +
    "intervals hold at once per attribute at 95 %, however often the page refreshes";
  for (const a of shown.groups) {
    gaps.append(el("div", { class: "gap-line", "data-attribute": a.attribute },
      el("b", {}, a.attribute), ` · demographic parity difference ${gapText(a.demographic_parity)} · equalized-odds difference `,
      el("span", { class: "eo" }, gapText(a.equalized_odds))));
    const table = el("table", { class: "group-table", "data-attribute": a.attribute },
      el("tr", {}, el("th", {}, a.attribute), el("th", { class: "num" }, "labeled"), el("th", { class: "num" }, "selection rate"),
        el("th", { class: "num" }, "TPR"), el("th", { class: "num" }, "FPR"), el("th", { class: "num" }, "precision"),
        el("th", { class: "num", title: "calibration: mean P(>50K) against the observed share of >50K" }, "mean P · observed")));
    for (const g of a.groups) {
      table.append(el("tr", { "data-group": g.group },
        el("td", {}, g.group), el("td", { class: "num" }, fmtInt(g.labeled)),
        rateCell(g.selection), rateCell(g.tpr), rateCell(g.fpr), rateCell(g.precision),
        el("td", { class: "num" }, `${g.mean_probability.toFixed(3)} · ${g.observed_rate.toFixed(3)}`)));
    }
    box.append(el("div", { class: "scroll-x" }, table));
  }
}

function renderExplained(s) {
  const list = $("explained");
  list.replaceChildren();
  if (s.latest_explained.length === 0) list.append(el("li", { class: "muted" }, "none yet"));
  for (const p of s.latest_explained) {
    const reasons = p.reasons.map((r) => el("span", { class: "reason " + (r.contribution > 0 ? "up" : "down"), title: `${r.feature} = ${r.value}` },
      `${r.feature} = ${r.value} ${r.contribution > 0 ? "+" : "−"}${Math.abs(r.contribution).toFixed(2)}`));
    list.append(el("li", { "data-request": p.request_id },
      el("span", { class: "when" }, fmtTime(p.at_ms)),
      el("span", {}, `${p.request_id} · v${p.model_version} · P(>50K) ${p.probability.toFixed(3)}`),
      el("span", { class: "reasons" }, ...reasons)));
  }
}

function renderLatest(s) {
  const table = $("latest");
  table.replaceChildren(el("tr", {}, el("th", {}, "time"), el("th", {}, "request"), el("th", {}, "P(>50K)"), el("th", {}, "predicted"),
    el("th", {}, "truth"), el("th", {}, "model"), el("th", {}, "challenger in shadow"), el("th", { class: "num" }, "latency")));
  for (const p of s.latest) {
    const truth = p.truth ? p.truth.replace(/\.$/, "") : null;
    const right = truth == null ? null : truth === p.predicted;
    const bar = el("span", { class: "pbar" });
    bar.append(el("span", { style: `width:${100 * p.probability}%` }));
    table.append(el("tr", {},
      el("td", { class: "muted" }, fmtTime(p.at_ms)), el("td", {}, p.request_id),
      el("td", {}, bar, p.probability.toFixed(3)), el("td", {}, p.predicted),
      el("td", {}, truth == null ? el("span", { class: "muted" }, "unlabeled") : el("span", { class: right ? "ok" : "bad" }, `${truth} ${right ? "✓" : "✗"}`)),
      el("td", {}, "v" + p.model_version),
      el("td", {}, p.challenger_version == null ? "–" : `v${p.challenger_version}: ${p.challenger_probability.toFixed(3)}`),
      el("td", { class: "num" }, fmtMs(p.latency_ms))));
  }
}

let lastUpdate = 0;

function render(s) {
  renderTiles(s);
  renderCharts(s);
  renderGate(s);
  renderTimeline(s);
  renderDeadLetters(s);
  renderCalibration(s);
  renderDrift(s);
  renderImportance(s);
  renderExplained(s);
  renderAttribution(s);
  renderGroups(s);
  renderLatest(s);
  lastUpdate = Date.now();
  const status = $("status");
  status.dataset.updated = String(s.now_ms);
  status.className = "status live";
  const since = s.since_ms == null ? "all records" : `records since ${fmtTime(s.since_ms)}`;
  status.textContent = `● live · updated ${fmtTime(s.now_ms)} · ${since}`;
}

function watchStaleness() {
  const status = $("status");
  if (lastUpdate && Date.now() - lastUpdate > STALE_AFTER_MS) {
    status.className = "status stale";
    status.textContent = `● no update for ${Math.round((Date.now() - lastUpdate) / 1000)} s`;
  }
}

render(JSON.parse($("initial-state").textContent));
const events = new EventSource("/events");
events.addEventListener("state", (e) => render(JSON.parse(e.data)));
setInterval(watchStaleness, 1000);
let resizeTimer;
window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => fetch("/state").then((r) => r.json()).then(render), 200); });
