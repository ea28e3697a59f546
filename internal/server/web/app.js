// The status page: polls /status.json and draws what it says.
"use strict";
const history = { t: [], rps: {}, p99: {} };
const maxPoints = 150;
const charts = {};
const palette = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d"];

function fmt(v, digits) { return v === null || v === undefined || isNaN(v) ? "-" : v.toFixed(digits); }
function esc(s) { const d = document.createElement("div"); d.textContent = s; return d.innerHTML; }
function key(m) { return m.name + " " + m.version; }

function chart(id, seriesKeys, data) {
  const el = document.getElementById(id);
  const wanted = JSON.stringify(seriesKeys);
  if (!charts[id] || charts[id].keys !== wanted) {
    if (charts[id]) charts[id].plot.destroy();
    const series = [{}].concat(seriesKeys.map((k, i) => ({ label: k, stroke: palette[i % palette.length], width: 2 })));
    const plot = new uPlot({
      width: el.clientWidth || 500, height: 220, series: series, axes: [{}, { size: 60 }],
      // The last five minutes, whatever the number of points so far.
      scales: { x: { time: true, range: (u, min, max) => [max - 300, max + 5] }, y: { range: (u, min, max) => [0, Math.max(max * 1.2, 1e-3)] } },
    }, data, el);
    charts[id] = { plot: plot, keys: wanted };
  } else {
    charts[id].plot.setData(data);
  }
}

function render(s) {
  document.getElementById("total-requests").textContent = String(s.requests_total);
  document.getElementById("uptime").textContent = Math.round(s.uptime_seconds) + " s";
  document.getElementById("updated").textContent = new Date(1000 * s.time_unix).toLocaleTimeString();

  const rows = s.models.map(m => `<tr data-model="${esc(key(m))}">
    <td>${esc(m.name)}</td><td>${esc(m.version)}</td><td>${esc(m.type || "")}</td>
    <td class="state-${esc(m.state)}" title="${esc(m.reason || "")}">${esc(m.state)}</td>
    <td class="num rps">${fmt(m.requests_per_second, 1)}</td>
    <td class="num errors">${fmt(100 * m.error_ratio, 2)}%</td>
    <td class="num p50">${fmt(1000 * m.p50_seconds, 3)}</td>
    <td class="num p99">${fmt(1000 * m.p99_seconds, 3)}</td>
    <td class="num requests">${m.requests_total}</td>
    <td class="num">${m.accuracy === undefined || m.accuracy === null ? "-" : fmt(100 * m.accuracy, 1) + "%"}</td></tr>`);
  document.querySelector("#models tbody").innerHTML = rows.join("");

  const served = s.models.filter(m => m.state === "READY");
  history.t.push(s.time_unix);
  for (const m of served) {
    const k = key(m);
    for (const [name, v] of [["rps", m.requests_per_second], ["p99", 1000 * m.p99_seconds]]) {
      if (!history[name][k]) history[name][k] = new Array(history.t.length - 1).fill(null);
      history[name][k].push(v);
    }
  }
  for (const name of ["rps", "p99"]) {
    for (const k of Object.keys(history[name])) {
      const a = history[name][k];
      while (a.length < history.t.length) a.push(null);
      while (a.length > maxPoints) a.shift();
    }
  }
  while (history.t.length > maxPoints) history.t.shift();
  for (const name of ["rps", "p99"]) {
    const keys = Object.keys(history[name]).sort();
    chart("chart-" + name, keys, [history.t.slice()].concat(keys.map(k => history[name][k].slice())));
  }

  const classes = served.filter(m => m.class_mix && Object.keys(m.class_mix).length).map(m =>
    `<div class="model-classes" data-model="${esc(key(m))}"><b>${esc(key(m))}</b><table>` +
    Object.entries(m.class_mix).sort().map(([c, p]) =>
      `<tr><td>${esc(c)}</td><td class="num share">${fmt(100 * p, 1)}%</td><td><span class="bar" style="width:${Math.round(200 * p)}px"></span></td></tr>`).join("") +
    `</table></div>`);
  if (classes.length) document.getElementById("classes").innerHTML = classes.join("");

  const drift = served.filter(m => m.feature_drift_psi).map(m =>
    `<div data-model="${esc(key(m))}"><b>${esc(key(m))}</b><table>` +
    Object.entries(m.feature_drift_psi).sort().map(([f, v]) =>
      `<tr><td>${esc(f)}</td><td class="num psi psi-${v > 0.2 ? "shifted" : v > 0.1 ? "moderate" : "ok"}">${fmt(v, 3)}</td></tr>`).join("") +
    (m.prediction_drift_psi !== undefined && m.prediction_drift_psi !== null ? `<tr><td><i>prediction</i></td><td class="num">${fmt(m.prediction_drift_psi, 3)}</td></tr>` : "") +
    `</table></div>`);
  if (drift.length) document.getElementById("drift").innerHTML = drift.join("");

  if (s.gpus.length) {
    document.getElementById("gpus").innerHTML = `<table><tr><th>GPU</th><th>name</th><th class="num">utilization</th><th class="num">memory</th><th class="num">temperature</th><th class="num">power</th></tr>` +
      s.gpus.map(g => `<tr><td>${esc(g.gpu_id)}</td><td>${esc(g.gpu_name)}</td><td class="num">${fmt(g.utilization_percent, 0)}%</td>
        <td class="num">${fmt(g.memory_used_bytes / 2 ** 30, 1)} / ${fmt(g.memory_total_bytes / 2 ** 30, 1)} GiB</td>
        <td class="num">${fmt(g.temperature_celsius, 0)} °C</td><td class="num">${fmt(g.power_watts, 0)} W</td></tr>`).join("") + `</table>`;
  }
}

async function poll() {
  try {
    const r = await fetch("/status.json", { headers: { Accept: "application/json" } });
    if (r.ok) render(await r.json());
  } catch (e) {
    document.getElementById("updated").textContent = "failed: " + e;
  }
  setTimeout(poll, 2000);
}
poll();
