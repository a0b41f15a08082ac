/**
 * The dashboard served at `GET /` of the observability listener: one self-contained page (no CDN,
 * works offline) that polls `/status` and shows the sessions with their legs, throughput per entry
 * over the last minutes as a chart, and the recent warnings and errors. With `observe.token` set,
 * open it as `/?token=…`: the page sends the token to `/status` as a bearer header.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>half-tunnel</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 12px 20px; display: flex; gap: 24px; }
  header b { font-size: 16px; }
  main { padding: 16px 20px; display: grid; gap: 16px; grid-template-columns: 1fr 1fr; }
  section { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px #0002; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 14px; margin: 0 0 8px; text-transform: uppercase; letter-spacing: .05em; color: #5a6275; }
  table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceef2; font-variant-numeric: tabular-nums; }
  .up { color: #18794e; } .waiting { color: #b4540a; } .error { color: #c4291c; }
  canvas { width: 100%; height: 220px; }
  #legend span { margin-right: 12px; }
  #problems li { margin-bottom: 4px; }
  .muted { color: #8a91a1; }
</style>
</head>
<body>
<header><b>half-tunnel</b><span id="role">…</span><span id="version"></span><span id="uptime"></span><span id="state" class="muted">connecting…</span></header>
<main>
  <section class="wide"><h2>Throughput (Mbit/s, last 5 minutes)</h2><canvas id="chart" width="1200" height="220"></canvas><div id="legend"></div></section>
  <section><h2>Sessions and legs</h2><table id="sessions"><thead><tr><th>session</th><th>state</th><th>streams</th><th>legs (round trip)</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Bytes per entry</h2><table id="traffic"><thead><tr><th>entry</th><th>transport</th><th>in</th><th>out</th></tr></thead><tbody></tbody></table></section>
  <section class="wide"><h2>Recent warnings and errors</h2><ul id="problems"></ul></section>
</main>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const POINTS = 150, EVERY_MS = 2000;
const series = new Map();
let last = null;
const colors = ["#2563eb", "#16a34a", "#db2777", "#ea580c", "#7c3aed", "#0891b2", "#65a30d"];
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const bytes = (n) => n >= 1 << 30 ? (n / 2 ** 30).toFixed(2) + " GiB" : n >= 1 << 20 ? (n / 2 ** 20).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";
function render(st) {
  document.getElementById("role").textContent = st.role;
  document.getElementById("version").textContent = "v" + st.version;
  document.getElementById("uptime").textContent = "up " + st.uptimeSeconds + " s";
  document.querySelector("#sessions tbody").innerHTML = st.sessions.map((s) =>
    "<tr><td>" + esc(s.id) + '</td><td class="' + (s.state === "up" ? "up" : "waiting") + '">' + esc(s.state) +
    "</td><td>" + s.streams + "</td><td>" + s.legs.map((l) => esc(l.role) + " " + esc(l.label) +
    (l.rttMs === null ? "" : " (" + l.rttMs + " ms)")).join("<br>") + "</td></tr>").join("") ||
    '<tr><td colspan="4" class="muted">no sessions</td></tr>';
  document.querySelector("#traffic tbody").innerHTML = st.traffic.map((t) =>
    "<tr><td>" + esc(t.entry) + "</td><td>" + esc(t.transport) + "</td><td>" + bytes(t.in) + "</td><td>" + bytes(t.out) + "</td></tr>").join("") ||
    '<tr><td colspan="4" class="muted">nothing carried yet</td></tr>';
  document.getElementById("problems").innerHTML = st.recentProblems.slice().reverse().map((p) =>
    '<li><span class="muted">' + esc(p.at) + '</span> <span class="error">' + esc(p.level) + "</span> " + esc(p.message) + "</li>").join("") ||
    '<li class="muted">none</li>';
}
function sample(st, now) {
  // Two answers within the same millisecond carry no rate.
  if (last && now - last.at < 50) return;
  for (const t of st.traffic) {
    const key = t.entry + " (" + t.transport + ")";
    const total = t.in + t.out;
    const prev = last ? last.get(key) : undefined;
    const s = series.get(key) || [];
    s.push(prev === undefined ? 0 : Math.max(0, (total - prev) * 8 / ((now - last.at) / 1000) / 1e6));
    if (s.length > POINTS) s.shift();
    series.set(key, s);
  }
  last = new Map(st.traffic.map((t) => [t.entry + " (" + t.transport + ")", t.in + t.out]));
  last.at = now;
}
function draw() {
  const c = document.getElementById("chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  let max = 1;
  for (const s of series.values()) for (const v of s) max = Math.max(max, v);
  g.strokeStyle = "#eceef2"; g.fillStyle = "#8a91a1"; g.font = "12px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = c.height - 20 - (c.height - 30) * i / 4;
    g.beginPath(); g.moveTo(40, y); g.lineTo(c.width, y); g.stroke();
    g.fillText((max * i / 4).toFixed(max < 10 ? 1 : 0), 2, y + 4);
  }
  let k = 0;
  const legend = [];
  for (const [name, s] of series) {
    const color = colors[k++ % colors.length];
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    s.forEach((v, i) => {
      const x = 40 + (c.width - 40) * (i + POINTS - s.length) / (POINTS - 1);
      const y = c.height - 20 - (c.height - 30) * v / max;
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
    legend.push('<span style="color:' + color + '">&#9632; ' + esc(name) + "</span>");
  }
  document.getElementById("legend").innerHTML = legend.join("");
}
async function poll() {
  const state = document.getElementById("state");
  try {
    const r = await fetch("status", { headers, cache: "no-store" });
    if (!r.ok) throw new Error(r.status === 401 ? "token needed: open this page as /?token=…" : "HTTP " + r.status);
    const st = await r.json();
    sample(st, st.time);
    render(st);
    draw();
    state.textContent = "live";
    state.className = "up";
  } catch (e) {
    state.textContent = String(e.message || e);
    state.className = "error";
  }
}
poll();
setInterval(poll, EVERY_MS);
</script>
</body>
</html>
`;
