/**
 * The dashboard served at `GET /` of the observability listener: one self-contained page (no CDN,
 * no fonts or scripts from elsewhere: it is served on a private address and works offline) that
 * polls `/status` and shows whether a session is up, the uptime, throughput up (client to server)
 * and down (server to client) over the last 15 minutes as a chart (the process keeps the history,
 * so a page opened now draws it at once), the sessions with their legs, bytes per entry, the
 * published ports, memory, the error counters and the recent warnings and errors. Everything that
 * comes from the config or a peer is escaped. With `observe.token` set, open it as `/?token=…`:
 * the page sends the token to `/status` as a bearer header.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>half-tunnel</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 20px; align-items: center; flex-wrap: wrap; }
  header b { font-size: 16px; }
  header .pill { padding: 2px 10px; border-radius: 10px; font-weight: 600; background: #fff; }
  header .pill.up { color: #18794e; } header .pill.error { background: #c4291c; color: #fff; }
  header #state { margin-left: auto; }
  header .muted { color: #aab0bd; } header #state.up { color: #6ee7a0; } header #state.error { color: #ff9a8f; }
  header .pill.stale { opacity: .5; }
  main { padding: 12px 20px; display: grid; gap: 12px; grid-template-columns: repeat(3, minmax(0, 1fr)); }
  section { background: #fff; border-radius: 6px; padding: 10px 14px; box-shadow: 0 1px 2px #0002; min-width: 0; }
  .wide { grid-column: 1 / -1; } .two { grid-column: span 2; }
  h2 { font-size: 13px; margin: 0 0 6px; text-transform: uppercase; letter-spacing: .05em; color: #5a6275; }
  table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid #eceef2; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
  th { font-weight: 600; color: #5a6275; }
  .up { color: #18794e; } .waiting { color: #b4540a; } .error { color: #c4291c; } .muted { color: #8a91a1; }
  canvas { display: block; width: 100%; height: 170px; }
  #legend { display: flex; gap: 24px; flex-wrap: wrap; margin-top: 4px; }
  .bar { height: 6px; background: #eceef2; border-radius: 3px; margin-top: 2px; }
  .bar div { height: 6px; background: #2563eb; border-radius: 3px; }
  ul { margin: 0; padding-left: 18px; } li { margin-bottom: 3px; }
</style>
</head>
<body>
<header><b>half-tunnel</b><span id="role">…</span><span id="version" class="muted"></span><span id="uptime"></span><span id="sessions-state" class="pill">…</span><span id="state" class="muted">connecting…</span></header>
<main>
  <section class="wide"><h2>Throughput (Mbit/s, last 15 minutes)</h2><canvas id="chart" data-points="0"></canvas><div id="legend"></div></section>
  <section class="two"><h2>Sessions and legs</h2><table id="sessions"><thead><tr><th>session</th><th>state</th><th>streams</th><th>legs (round trip)</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Memory</h2><table id="memory"><tbody></tbody></table></section>
  <section id="traffic-box"><h2>Bytes per entry</h2><table id="traffic"><thead><tr><th>entry</th><th>transport</th><th>&uarr; up</th><th>&darr; down</th></tr></thead><tbody></tbody></table></section>
  <section id="published-box"><h2>Published ports</h2><table id="published"><thead><tr><th>published here</th><th>target at the client</th><th>protocol</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Errors counted</h2><table id="errors"><tbody></tbody></table></section>
  <section class="wide"><h2>Recent warnings and errors</h2><ul id="problems"></ul></section>
</main>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const EVERY_MS = 2000, SPAN_MS = 15 * 60 * 1000;
const UP = "#2563eb", DOWN = "#16a34a";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const bytes = (n) => n >= 1 << 30 ? (n / 2 ** 30).toFixed(2) + " GiB" : n >= 1 << 20 ? (n / 2 ** 20).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";
const mbits = (bps) => bps * 8 / 1e6;
const rate = (bps) => mbits(bps) >= 1 ? mbits(bps).toFixed(1) + " Mbit/s" : (bps * 8 / 1e3).toFixed(bps ? 1 : 0) + " kbit/s";
const plural = (n, what) => n + " " + what + (n === 1 ? "" : "s");
const rows = (list, cols, empty) => list.map((r) => "<tr>" + r.map((c) => "<td>" + c + "</td>").join("") + "</tr>").join("") ||
  '<tr><td colspan="' + cols + '" class="muted">' + empty + "</td></tr>";
function human(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? d + " d " + h + " h" : h ? h + " h " + m + " min" : m ? m + " min" : s + " s";
}
function header(st) {
  $("role").textContent = st.role;
  $("version").textContent = "v" + st.version;
  $("uptime").textContent = "up " + human(st.uptimeSeconds);
  const live = st.sessions.filter((s) => s.state === "up").length, waiting = st.sessions.length - live;
  // A server is up with any session; a client only with one that has its legs.
  const n = st.role === "server" ? st.sessions.length : live;
  const el = $("sessions-state");
  el.textContent = n === 0 ? (st.role === "server" ? "no session" : "no live session") +
      (waiting ? " (" + waiting + " waiting for its legs)" : "")
    : plural(n, st.role === "server" ? "session" : "live session") + (waiting ? ", " + waiting + " waiting for its legs" : "");
  el.className = "pill " + (n === 0 ? "error" : "up");
}
function render(st) {
  header(st);
  document.querySelector("#sessions tbody").innerHTML = rows(st.sessions.map((s) => [
    esc(s.id),
    '<span class="' + (s.state === "up" ? "up" : "waiting") + '">' + esc(s.state) + "</span>",
    s.streams,
    s.legs.map((l) => esc(l.role) + " " + esc(l.label) + (l.rttMs === null ? "" : " (" + l.rttMs + " ms)")).join("<br>"),
  ]), 4, "no sessions");
  document.querySelector("#traffic tbody").innerHTML = rows(st.traffic.map((t) =>
    [esc(t.entry), esc(t.transport), bytes(t.up), bytes(t.down)]), 4, "nothing carried yet");
  const m = st.memory, b = m.bufferBudget, pct = b.limit ? Math.min(100, 100 * b.used / b.limit) : 0;
  document.querySelector("#memory tbody").innerHTML = rows([
    ["resident (RSS)", bytes(m.rss)],
    ["JavaScript heap", bytes(m.heapUsed)],
    ["buffer budget", bytes(b.used) + " of " + bytes(b.limit) + '<div class="bar"><div style="width:' + pct.toFixed(1) + '%"></div></div>'],
  ], 2, "");
  document.querySelector("#errors tbody").innerHTML = rows(st.errors.map((e) => [
    esc(e.what),
    '<span class="' + (e.total ? "error" : "muted") + '">' + e.total + "</span>",
    '<span class="muted">' + Object.entries(e.by).map(([k, v]) => esc(k) + " " + v).join(", ") + "</span>",
  ]), 3, "");
  // Only a server publishes ports; on a client the bytes per entry take their place.
  $("published-box").hidden = st.role !== "server";
  $("traffic-box").className = st.role === "server" ? "" : "two";
  document.querySelector("#published tbody").innerHTML = rows(st.published.map((p) =>
    [esc(p.listen), esc(p.target), esc(p.protocols)]), 3, "none: this server publishes no ports");
  $("problems").innerHTML = st.recentProblems.slice().reverse().map((p) =>
    '<li><span class="muted">' + esc(p.at) + '</span> <span class="error">' + esc(p.level) + "</span> " + esc(p.message) + "</li>").join("") ||
    '<li class="muted">none</li>';
  draw(st);
}
function draw(st) {
  const h = st.throughput, c = $("chart"), dpr = window.devicePixelRatio || 1;
  c.width = c.clientWidth * dpr;
  c.height = c.clientHeight * dpr;
  const g = c.getContext("2d");
  g.scale(dpr, dpr);
  // The plot's edges: left of it the scale, below it the time, right a margin for the line's width.
  const W = c.clientWidth - 4, H = c.clientHeight, L = 44, B = 20, T = 8;
  // Point i was taken (points after it) × everyMs before the newest, which is h.end.
  const x = (i) => Math.max(L, W - (W - L) * (st.time - h.end + (h.up.length - 1 - i) * h.everyMs) / SPAN_MS);
  let max = 1;
  for (const v of h.up.concat(h.down)) max = Math.max(max, mbits(v));
  const step = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000].find((s) => s * 4 >= max) || Math.ceil(max / 4);
  const y = (v) => H - B - (H - B - T) * mbits(v) / (step * 4);
  g.font = "12px system-ui, sans-serif";
  g.fillStyle = "#8a91a1";
  g.strokeStyle = "#eceef2";
  for (let i = 0; i <= 4; i++) {
    const yy = H - B - (H - B - T) * i / 4;
    g.beginPath(); g.moveTo(L, yy); g.lineTo(W, yy); g.stroke();
    g.fillText(String(step * i), 4, yy + 4);
  }
  for (let min = 15; min >= 0; min -= 5) {
    const xx = W - (W - L) * min / 15, label = min ? "-" + min + " min" : "now";
    g.fillText(label, Math.min(xx - g.measureText(label).width / 2, c.clientWidth - g.measureText(label).width), H - 4);
  }
  for (const [s, color] of [[h.down, DOWN], [h.up, UP]]) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    s.forEach((v, i) => i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v)));
    g.stroke();
  }
  c.dataset.points = String(h.up.length);
  const total = (k) => st.traffic.reduce((a, t) => a + t[k], 0);
  const line = (id, color, arrow, name, s, k) => '<span id="' + id + '"><b style="color:' + color + '">' + arrow + " " + name + "</b> now " +
    rate(s.length ? s[s.length - 1] : 0) + ", peak " + rate(Math.max(0, ...s)) + ", " + bytes(total(k)) + " in all</span>";
  $("legend").innerHTML = line("legend-up", UP, "&uarr;", "up (client &rarr; server)", h.up, "up") +
    line("legend-down", DOWN, "&darr;", "down (server &rarr; client)", h.down, "down");
}
async function poll() {
  const state = $("state");
  try {
    const r = await fetch("status", { headers, cache: "no-store" });
    if (!r.ok) throw new Error(r.status === 401 ? "token needed: open this page as /?token=…" : "HTTP " + r.status);
    render(await r.json());
    state.textContent = "live";
    state.className = "up";
  } catch (e) {
    state.textContent = String(e.message || e);
    state.className = "error";
    $("sessions-state").classList.add("stale");
  }
}
poll();
setInterval(poll, EVERY_MS);
</script>
</body>
</html>
`;
