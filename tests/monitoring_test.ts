/**
 * The monitoring pack in `deployments/`: the alert rules pass `promtool check rules` and their
 * unit tests (`promtool test rules`), every Grafana query is valid PromQL on the dashboard's
 * datasource variable, and real processes (a server and a client carrying streams, and a reverse
 * server no client reaches) serve `/metrics` that passes `promtool check metrics`, exports every
 * metric the dashboard and the alerts name, and says what happened: the tunnel is up at both ends
 * and down at the client once the server is gone, each client entry counted the streams it opened
 * and could not open, and a user of a published port that no tunnel came for is counted.
 */

import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { buildCommit, VERSION } from "../src/version.ts";
import { echoServer, readAll, within, writeAll } from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { nodeArgs, type NodeProcess, spawnNode } from "./helpers/process.ts";
import { needs } from "./helpers/tools.ts";
import { echoWorks, TEST_KEY } from "./helpers/tunnel.ts";

const root = new URL("..", import.meta.url).pathname;
const DASHBOARD = `${root}deployments/grafana-dashboard.json`;
const ALERTS = `${root}deployments/prometheus-alerts.yml`;
const ALERT_TESTS = `${root}deployments/prometheus-alerts.test.yml`;

const noPromtool = await needs("promtool", "prometheus");

/** Runs promtool with `args` (and `stdin`); its output when it fails, "" when it passes. */
async function promtool(args: string[], stdin?: string): Promise<string> {
  const p = new Deno.Command("promtool", {
    args,
    cwd: `${root}deployments`,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = p.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await p.output();
  const td = new TextDecoder();
  return out.success
    ? ""
    : `promtool ${args.join(" ")}:\n${td.decode(out.stdout)}${td.decode(out.stderr)}`;
}

interface Dashboard {
  panels: { title: string; datasource: { uid: string }; targets: { expr: string }[] }[];
  templating: { list: { type: string; name: string; query: string | { query: string } }[] };
}

const dashboard: Dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD));
const panelQueries = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
/** Panel queries and the template variables' queries (`label_values(metric, label)`). */
const dashboardQueries = [
  ...panelQueries,
  ...dashboard.templating.list.filter((v) => v.type === "query").map((v) =>
    typeof v.query === "string" ? v.query : v.query.query
  ),
];
const alertRules: { alert: string; expr: string }[] =
  (parseYaml(await Deno.readTextFile(ALERTS)) as { groups: { rules: [] }[] }).groups
    .flatMap((g) => g.rules);

/**
 * The metric names a PromQL expression reads, parsed loosely: strings, label matchers, ranges and
 * the label lists of by/without/on/ignoring/group_* are dropped; of the identifiers left, those
 * not called as functions and not keywords are metric names. Grafana's `label_values(m, label)`
 * reads `m`.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/label_values\(\s*([^,()]+?)\s*,[^)]*\)/g, "$1")
    .replace(/"(?:[^"\\]|\\.)*"/g, "")
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "");
  const keywords = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan"]);
  return [...bare.matchAll(/(?<![\w:$.])[A-Za-z_:][\w:]*(?![\w:]|\s*\()/g)]
    .map((m) => m[0])
    .filter((n) => !keywords.has(n.toLowerCase()));
}

/** The metric names an exposition text declares (`# TYPE name type`). */
function declared(text: string): Set<string> {
  return new Set([...text.matchAll(/^# TYPE (\S+) \w+$/gm)].map((m) => m[1]));
}

/** The value of one series (name with its label text) in an exposition text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  return await res.text();
}

/** Scrapes until `series` has `value` (at most 15 s); returns that text. */
async function scrapeUntil(port: number, series: string, value: number): Promise<string> {
  const end = Date.now() + 15_000;
  for (;;) {
    const text = await scrape(port);
    if (sample(text, series) === value) return text;
    if (Date.now() > end) {
      throw new Error(`${series} is ${sample(text, series)}, not ${value}:\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name: "the alert rules pass promtool check rules and their unit tests",
  ignore: noPromtool,
  async fn() {
    assert.equal(await promtool(["check", "rules", ALERTS]), "");
    assert.equal(await promtool(["test", "rules", ALERT_TESTS]), "");
  },
});

Deno.test("the dashboard is importable: a datasource variable, and every panel uses it", () => {
  const ds = dashboard.templating.list.find((v) => v.type === "datasource");
  assert.deepEqual({ name: ds?.name, query: ds?.query }, {
    name: "datasource",
    query: "prometheus",
  });
  for (const p of dashboard.panels) {
    assert.equal(p.datasource.uid, "${datasource}", p.title);
    assert.ok(p.targets.length > 0, p.title);
  }
  // Every query reads at least one metric (so the name check below is not vacuous).
  for (const q of [...dashboardQueries, ...alertRules.map((r) => r.expr)]) {
    assert.ok(metricNames(q).length > 0, q);
  }
});

Deno.test({
  name: "every dashboard query is valid PromQL",
  ignore: noPromtool,
  async fn() {
    // Grafana's variables as Prometheus would see them once substituted.
    const rules = {
      groups: [{
        name: "dashboard",
        rules: panelQueries.map((expr, i) => ({
          record: `dashboard:query_${i}`,
          expr: expr.replaceAll("$__rate_interval", "1m").replaceAll("$instance", ".*"),
        })),
      }],
    };
    const dir = await Deno.makeTempDir({ prefix: "ht-dashboard-" });
    try {
      await Deno.writeTextFile(`${dir}/queries.yml`, JSON.stringify(rules));
      assert.equal(await promtool(["check", "rules", `${dir}/queries.yml`]), "");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Connects through the HTTP proxy with CONNECT; the status code of its answer. */
async function httpConnect(proxyPort: number, target: number): Promise<number> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port: proxyPort });
  try {
    await writeAll(
      c,
      new TextEncoder().encode(
        `CONNECT 127.0.0.1:${target} HTTP/1.1\r\nHost: 127.0.0.1:${target}\r\n\r\n`,
      ),
    );
    let head = "";
    const buf = new Uint8Array(1024);
    while (!head.includes("\r\n\r\n")) {
      const n = await c.read(buf);
      if (n === null) break;
      head += new TextDecoder().decode(buf.subarray(0, n));
    }
    return Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
  } finally {
    c.close();
  }
}

Deno.test("a real server and client export what the dashboard and alerts read, and count what happened", async (t) => {
  const [legPort, reverseLegPort, socksPort, httpPort, fwdPort, deadFwdPort] = await Promise.all(
    [0, 1, 2, 3, 4, 5].map(() => freePort()),
  );
  const [serverWeb, clientWeb, reverseWeb, published, closed] = await Promise.all(
    [0, 1, 2, 3, 4].map(() => freePort()),
  );
  const echo = echoServer();
  const env = { HT_AUTH_KEY: TEST_KEY };
  const procs: NodeProcess[] = [];
  const spawn = (args: string[]) => {
    const p = spawnNode(args, env);
    procs.push(p);
    return p;
  };
  // A reverse server whose client never comes: its published port's users wait, then are reset.
  const reverse = spawn(nodeArgs("server", {
    "server.upstream_addr": `127.0.0.1:${reverseLegPort}`,
    "server.downstream_addr": `127.0.0.1:${reverseLegPort}`,
    "server.ports": `127.0.0.1:${published}=127.0.0.1:${closed}`,
    "observe.listen": `127.0.0.1:${reverseWeb}`,
  }));
  const server = spawn(nodeArgs("server", {
    "server.upstream_addr": `127.0.0.1:${legPort}`,
    "server.downstream_addr": `127.0.0.1:${legPort}`,
    "server.allow_private": "true",
    "observe.listen": `127.0.0.1:${serverWeb}`,
  }));
  const client = spawn(nodeArgs("client", {
    "client.upstream_url": `ws://127.0.0.1:${legPort}/upstream`,
    "client.downstream_url": `ws://127.0.0.1:${legPort}/downstream`,
    "client.socks5.listen": `127.0.0.1:${socksPort}`,
    "client.http_proxy.listen": `127.0.0.1:${httpPort}`,
    "client.forwards": `127.0.0.1:${fwdPort}=127.0.0.1:${echo.port},` +
      `127.0.0.1:${deadFwdPort}=127.0.0.1:${closed}`,
    "client.reconnect.max_delay": "200ms",
    "observe.listen": `127.0.0.1:${clientWeb}`,
  }));
  try {
    await reverse.waitForLog(/publishing 1 port/, 30_000);
    const user = await Deno.connect({ hostname: "127.0.0.1", port: published });
    const userEnded = user.read(new Uint8Array(16)).then(() => "closed", () => "reset")
      .finally(() => user.close());

    await server.waitForLog(/server running/, 30_000);
    await client.waitForLog(/established/, 30_000);
    await client.waitForLog(/client running/, 30_000);

    // Streams through each entry: SOCKS5 (one carried, one refused by the exit), the HTTP proxy,
    // a forward to the echo server and a forward to a port nothing listens on.
    const socks = { hostname: "127.0.0.1", port: socksPort };
    await echoWorks(socks, echo.port);
    await assert.rejects(socks5Connect(socks, "127.0.0.1", closed));
    assert.equal(await httpConnect(httpPort, echo.port), 200);
    const fwd = await Deno.connect({ hostname: "127.0.0.1", port: fwdPort });
    await writeAll(fwd, new Uint8Array([1, 2, 3]));
    await fwd.closeWrite();
    assert.deepEqual([...await within(readAll(fwd), 10_000, "forward echo")], [1, 2, 3]);
    fwd.close();
    const dead = await Deno.connect({ hostname: "127.0.0.1", port: deadFwdPort });
    await within(readAll(dead).catch(() => null), 10_000, "dead forward ends");
    dead.close();

    const entry = (name: string, what: "opened" | "failed") =>
      `half_tunnel_entry_streams_${what}_total{entry="${name}",transport="ws"}`;
    const clientText = await scrapeUntil(
      clientWeb,
      entry(`forward 127.0.0.1:${deadFwdPort}`, "failed"),
      1,
    );
    const serverText = await scrape(serverWeb);
    const expected: [string, number][] = [
      [entry("socks5", "opened"), 1],
      [entry("socks5", "failed"), 1],
      [entry("http-proxy", "opened"), 1],
      [entry("http-proxy", "failed"), 0],
      [entry(`forward 127.0.0.1:${fwdPort}`, "opened"), 1],
      [entry(`forward 127.0.0.1:${fwdPort}`, "failed"), 0],
      [entry(`forward 127.0.0.1:${deadFwdPort}`, "opened"), 0],
      ['half_tunnel_tunnel_up{role="client",transport="ws"}', 1],
      ["half_tunnel_buffer_budget_bytes", 128 << 20],
    ];
    for (const [series, value] of expected) assert.equal(sample(clientText, series), value, series);
    assert.equal(sample(serverText, 'half_tunnel_tunnel_up{role="server",transport="ws"}'), 1);
    // The exit was asked for all five streams and could not connect two of them.
    assert.equal(sample(serverText, "half_tunnel_streams_opened_total"), 5);
    assert.equal(sample(serverText, "half_tunnel_streams_failed_total"), 2);
    assert.equal(sample(serverText, "half_tunnel_legs_lost_total"), 0, "counted at 0");

    for (const text of [clientText, serverText]) {
      const build =
        `half_tunnel_build_info{version="${VERSION}",commit="${buildCommit()}",deno="${Deno.version.deno}"}`;
      assert.equal(sample(text, build), 1);
      assert.doesNotMatch(text, /session="/, "no per-session series");
      if (Deno.build.os === "linux") {
        const now = Date.now() / 1000;
        const started = sample(text, "process_start_time_seconds")!;
        assert.ok(started <= now && started > now - 120, `started ${now - started} s ago`);
        assert.ok(sample(text, "process_cpu_seconds_total")! > 0);
        assert.ok(sample(text, "process_resident_memory_bytes")! > 10 << 20);
        assert.ok(sample(text, "process_open_fds")! > 3);
      }
    }

    // The client's tunnel is down once the server is gone.
    await server.stop();
    await scrapeUntil(clientWeb, 'half_tunnel_tunnel_up{role="client",transport="ws"}', 0);

    // The user of the published port waited for a tunnel and was reset; that was counted.
    assert.equal(await within(userEnded, 20_000, "the waiting user is reset"), "reset");
    const reverseText = await scrapeUntil(
      reverseWeb,
      `half_tunnel_published_connections_refused_total{entry="port ${published}",reason="no_tunnel"}`,
      1,
    );
    assert.equal(sample(reverseText, 'half_tunnel_tunnel_up{role="server",transport="ws"}'), 0);

    const exported = new Set([
      ...declared(clientText),
      ...declared(serverText),
      ...declared(reverseText),
    ]);
    for (const q of dashboardQueries) {
      for (const name of metricNames(q)) {
        assert.ok(exported.has(name), `dashboard: ${name} in ${q}`);
      }
    }
    for (const r of alertRules) {
      for (const name of metricNames(r.expr)) {
        assert.ok(exported.has(name), `alert ${r.alert}: ${name}`);
      }
    }
    await t.step({
      name: "promtool check metrics",
      ignore: noPromtool,
      async fn() {
        for (const text of [clientText, serverText, reverseText]) {
          assert.equal(await promtool(["check", "metrics"], text), "");
        }
      },
    });
  } finally {
    for (const p of procs) await p.stop();
    await echo.close();
  }
});
