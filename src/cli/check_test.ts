import assert from "node:assert/strict";
import { generateKey } from "../config/keygen.ts";
import { KEYS, keysOf } from "../config/schema.ts";
import { HIDDEN, runCheck } from "./check.ts";
import { UsageError } from "./flags.ts";

const root = new URL("../../", import.meta.url).pathname;

/** Runs check in-process; stdout and stderr are collected. */
async function check(args: string[], env: Record<string, string> = {}) {
  const out: string[] = [], err: string[] = [];
  const code = await runCheck(args, {
    env,
    out: (l) => out.push(l),
    err: (l) => err.push(l),
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

async function withFile<T>(name: string, text: string, f: (path: string) => Promise<T>) {
  const dir = await Deno.makeTempDir({ prefix: "ht-check-" });
  try {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    return await f(`${dir}/${name}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The row of `key` in check's table: [key, value, from]. */
function row(out: string, key: string): [string, string] {
  const l = out.split("\n").find((l) => l.split(/\s+/)[0] === key);
  assert.ok(l, `no row for ${key} in:\n${out}`);
  const [, value, from] = /^\S+\s+(.*?)\s{2,}(.*)$/.exec(l)!;
  return [value, from];
}

Deno.test("check accepts every shipped config and names the source of every value", async () => {
  for (const name of [...Deno.readDirSync(`${root}configs`)].map((e) => e.name).sort()) {
    const path = `${root}configs/${name}`;
    const toml = name.endsWith(".toml");
    const role = name.includes("client") ? "client" : "server";
    // The samples' own key is refused (tests/cli_test.ts); the README passes one in HT_AUTH_KEY.
    const r = await check(toml ? ["-c", path] : [role, "--config", path], {
      HT_AUTH_KEY: generateKey(),
    });
    assert.equal(r.code, 0, `${name}: ${r.err}`);
    assert.match(r.out, new RegExp(`^${path}: valid ${role} config`));
    for (const k of keysOf(role)) row(r.out, k.path);
    const [key, from] = row(r.out, "auth.key");
    assert.equal(key, HIDDEN);
    assert.equal(from, "HT_AUTH_KEY (environment)");
    assert.ok(!r.out.includes("change-me"), `${name}: the key is printed`);
  }
});

Deno.test("check shows file lines, HT_ variables, --set and defaults as sources", async () => {
  await withFile("c.yaml", "client:\n  upstream_url: ws://example.org:80/up\n", async (path) => {
    const r = await check(
      ["client", "--config", path, "--set", "client.mux_session=3", "--log-level", "debug"],
      { HT_AUTH_KEY: "env-secret-0123456789abcdef", HT_CLIENT_DIAL_TIMEOUT: "2s" },
    );
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(row(r.out, "client.upstream_url"), [
      "ws://example.org:80/up",
      `${path} line 2`,
    ]);
    assert.deepEqual(row(r.out, "auth.key"), [HIDDEN, "HT_AUTH_KEY (environment)"]);
    assert.deepEqual(row(r.out, "client.dial_timeout"), [
      "2s",
      "HT_CLIENT_DIAL_TIMEOUT (environment)",
    ]);
    assert.deepEqual(row(r.out, "client.mux_session"), ["3", "--set"]);
    assert.deepEqual(row(r.out, "log.level"), ["debug", "--set"]);
    assert.deepEqual(row(r.out, "client.nodelay"), ["true", "default"]);
    assert.deepEqual(row(r.out, "session.liveness_timeout"), [
      "20s",
      "worked out (2 × keepalive_interval)",
    ]);
    assert.ok(!r.out.includes("env-secret"));
  });
});

Deno.test("check shows encryption on where a shaping preset turns it on", async () => {
  await withFile("c.yaml", "client:\n  upstream_url: ws://example.org:80/up\n", async (path) => {
    const env = { HT_AUTH_KEY: "env-secret-0123456789abcdef" };
    const plain = await check(["client", "--config", path], env);
    assert.deepEqual(row(plain.out, "session.encrypt"), ["false", "default"]);
    const shaped = await check(["client", "--config", path, "--set", "session.shaping=light"], env);
    assert.equal(shaped.code, 0, shaped.err);
    assert.deepEqual(row(shaped.out, "session.encrypt"), ["true", "worked out from other keys"]);
  });
});

Deno.test("check never prints a secret, set or refused", async () => {
  const secrets = KEYS.filter((k) => k.secret);
  assert.ok(secrets.some((k) => k.path === "auth.key"));
  assert.ok(secrets.some((k) => k.path === "client.socks5.password"));
  const yaml = "auth:\n  key: file-secret-AAAAAAAAAAAAAAAA\nclient:\n  socks5:\n" +
    "    username: me\n    password: file-secret-BBBB\n";
  await withFile("c.yaml", yaml, async (path) => {
    const r = await check(["client", "--config", path]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(row(r.out, "client.socks5.password")[0], HIDDEN);
    assert.deepEqual(row(r.out, "client.socks5.username")[0], "me");
    assert.ok(!/file-secret/.test(r.out + r.err), r.out);
  });
  // Every secret key, set from the environment to a value the key table refuses or accepts.
  for (const k of secrets) {
    const role = k.path.startsWith("client.") ? "client" : "server";
    const r = await check([role, "--set", `${k.path}=set-secret-CCCCCCCCCCCCCCCC`], {
      HT_AUTH_KEY: "env-secret-DDDDDDDDDDDDDDDD",
    });
    assert.ok(!/secret-[CD]/.test(r.out + r.err), `${k.path}:\n${r.out}\n${r.err}`);
  }
  // A refused secret is named, never echoed.
  await withFile("bad.yaml", "auth:\n  key: [refused-secret-EEEE]\n", async (path) => {
    const r = await check(["server", "--config", path]);
    assert.equal(r.code, 2);
    assert.match(r.err, /auth\.key .*line 2.*the value is not a string/);
    assert.ok(!r.err.includes("refused-secret"), r.err);
  });
});

Deno.test("check refuses broken configs with the loader's message and exit code 2", async () => {
  const cases: [string, string, string[], RegExp][] = [
    [
      "unknown.yaml",
      "auth:\n  key: k-0123456789abcdef\nserver:\n  upstrem_addr: ':1'\n",
      ["server"],
      /line 4: unknown key "server\.upstrem_addr" \(did you mean "server\.upstream_addr"\?\)/,
    ],
    [
      "value.yaml",
      "auth:\n  key: k-0123456789abcdef\nsession:\n  keepalive_interval: soon\n",
      ["client"],
      /session\.keepalive_interval .*line 4.*"soon" is not a duration/,
    ],
    ["missing.yaml", "server:\n  upstream_addr: ':9000'\n", ["server"], /auth\.key is required/],
    ["missing.toml", '[server]\ntoken = "k-0123456789abcdef"\n', [], /\[server\] needs bind_addr/],
    [
      "unknown.toml",
      '[client]\nremote_addr = "h:1"\ntoken = "k-0123456789abcdef"\nretry = 1\n',
      [],
      /line 4: unknown key "retry" in \[client\]/,
    ],
    [
      "role.toml",
      '[client]\nremote_addr = "h:1"\ntoken = "k-0123456789abcdef"\n',
      ["server"],
      /is a \[client\] config, but `half-tunnel server` was run/,
    ],
    ["range.yaml", "auth:\n  key: k-0123456789abcdef\n", ["client"], /mux_session/],
  ];
  for (const [name, text, role, re] of cases) {
    await withFile(name, text, async (path) => {
      const flag = name.endsWith(".toml") ? "-c" : "--config";
      const extra = name === "range.yaml" ? ["--set", "client.mux_session=99"] : [];
      const r = await check([...role, flag, path, ...extra]);
      assert.equal(r.code, 2, `${name} was accepted:\n${r.out}`);
      assert.match(r.err, /^config error: /, name);
      assert.match(r.err, re, name);
      assert.equal(r.out, "", `${name}: printed a config`);
    });
  }
});

Deno.test("check says which side when a YAML config cannot tell, and refuses bad arguments", async () => {
  const r = await check(["--config", `${root}configs/server.yaml`]);
  assert.equal(r.code, 2);
  assert.match(r.err, /say which side the config is for: `half-tunnel check server --config FILE`/);
  await assert.rejects(() => check(["proxy"]), UsageError);
  await assert.rejects(() => check(["server", "client"]), UsageError);
  await assert.rejects(() => check(["server", "--set", "novalue"]), /--set needs KEY=VALUE/);
  const quiet = await check(["server", "--quiet", "--set", "auth.key=short"]);
  assert.equal(quiet.code, 0);
  assert.equal(quiet.out, "");
  assert.match(quiet.err, /^warning: auth\.key \(--set\) is shorter than 16 characters/);
});
