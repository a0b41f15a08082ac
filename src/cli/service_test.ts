/**
 * `half-tunnel service` on a recorded machine (ServiceEnv with a runner that logs instead of
 * changing anything): what install checks, writes and runs, in order; what it refuses; the systemd
 * and root checks; dry runs; the sandbox warning and the module cache of a `deno run` unit.
 */

import assert from "node:assert/strict";
import { cacheCommand, runServiceCommand, selfExec, type ServiceEnv } from "./service.ts";
import type { Runner } from "../service/systemd.ts";
import { freePort } from "../../tests/helpers/ports.ts";

const VALID = "auth:\n  key: from-the-given-file-0123456789\n";

/**
 * A machine that records instead of changing: systemd is PID 1, the program is a compiled binary,
 * every command succeeds but `id -u` (unless the user exists) and those whose program is in
 * `failing`. Tests replace `env`'s fields for other machines.
 */
function fakeEnv(
  uid: number,
  existing: string[] = [],
  userExists = false,
  config: (path: string) => Promise<string> = () => Promise.resolve(VALID),
) {
  const log: string[] = [];
  const files = new Map<string, { text: string; mode: number }>();
  const failing = new Set<string>();
  const runner: Runner = {
    run: (cmd) => {
      log.push(cmd.join(" "));
      return Promise.resolve((cmd[0] === "id" && !userExists) || failing.has(cmd[0]) ? 1 : 0);
    },
    writeFile: (path, text, mode) => {
      files.set(path, { text, mode });
      log.push(`write ${path} ${mode.toString(8)}`);
      return Promise.resolve();
    },
    exists: (p) => Promise.resolve(existing.includes(p) || files.has(p)),
    remove: (p) => {
      log.push(`rm ${p}`);
      return Promise.resolve();
    },
    chown: (p, u) => {
      log.push(`chown ${u} ${p}`);
      return Promise.resolve();
    },
    print: (l) => log.push(`> ${l}`),
  };
  const env: ServiceEnv = {
    runner,
    uid: () => uid,
    init: () => Promise.resolve("systemd"),
    exec: () => ["/usr/local/bin/half-tunnel"],
    readConfig: config,
  };
  return { env, log, files, failing };
}

Deno.test("service install creates the user, a 0600 config and the unit, then enables it", async () => {
  const { env, log, files } = fakeEnv(0);
  assert.equal(
    await runServiceCommand(["install", "--type", "server", "--config", "/home/me/s.yaml"], env),
    0,
  );
  assert.deepEqual(log.filter((l) => !l.startsWith(">")), [
    "id -u half-tunnel",
    "useradd --system --no-create-home --shell /usr/sbin/nologin half-tunnel",
    "mkdir -p /etc/half-tunnel",
    "write /etc/half-tunnel/server.yaml 600",
    "chown half-tunnel /etc/half-tunnel/server.yaml",
    "write /etc/systemd/system/half-tunnel-server.service 644",
    "systemctl daemon-reload",
    "systemctl enable half-tunnel-server.service",
  ]);
  assert.match(files.get("/etc/half-tunnel/server.yaml")!.text, /from-the-given-file/);
  assert.match(
    files.get("/etc/systemd/system/half-tunnel-server.service")!.text,
    /--config \/etc\/half-tunnel\/server.yaml/,
  );
});

Deno.test("service commands explain what they need and refuse bad input", async () => {
  const user = fakeEnv(1000);
  assert.equal(await runServiceCommand(["start", "--type", "client"], user.env), 1);
  assert.match(user.log.join("\n"), /run it as root/);
  assert.equal(user.log.filter((l) => !l.startsWith(">")).length, 0, "nothing ran");
  const root = fakeEnv(0);
  assert.equal(await runServiceCommand(["restart", "--type", "client"], root.env), 0);
  assert.deepEqual(root.log, ["systemctl restart half-tunnel-client.service"]);
  assert.equal(await runServiceCommand(["explode", "--type", "client"], root.env), 2);
  assert.equal(await runServiceCommand(["start", "--type", "proxy"], root.env), 2);
  assert.equal(
    await runServiceCommand(["install", "--type", "server", "--user", "bad user"], root.env),
    2,
  );
});

Deno.test("service install checks the config first and writes nothing when it is broken", async () => {
  const broken: [string, string, RegExp][] = [
    [
      "/home/me/s.yaml",
      "auth:\n  key: k-0123456789abcdef\nserver:\n  upstrem_addr: x\n",
      /line 4: unknown key "server\.upstrem_addr"/,
    ],
    ["/home/me/s.yaml", "server:\n  upstream_addr: ':9000'\n", /auth\.key is required/],
    [
      "/home/me/s.yaml",
      "auth:\n  key: k-0123456789abcdef\nsession:\n  resume_timeout: never\n",
      /"never" is not a duration/,
    ],
    [
      "/home/me/c.toml",
      '[client]\nremote_addr = "h:1"\ntoken = "k-0123456789abcdef"\n',
      /is a \[client\] config/,
    ],
  ];
  for (const [path, text, re] of broken) {
    const { env, log } = fakeEnv(0, [], false, () => Promise.resolve(text));
    assert.equal(
      await runServiceCommand(["install", "--type", "server", "--config", path], env),
      2,
    );
    assert.deepEqual(log.filter((l) => !l.startsWith(">")), [], "nothing ran or was written");
    const said = log.join("\n");
    assert.match(said, /^> config error: /m);
    assert.match(said, re);
    assert.match(
      said,
      new RegExp(`${path} is not a valid server config, so nothing was installed`),
    );
  }
  // The config already installed is checked when no --config is given.
  const kept = fakeEnv(
    0,
    ["/etc/half-tunnel/client.yaml"],
    true,
    (p) =>
      p === "/etc/half-tunnel/client.yaml"
        ? Promise.resolve("client:\n  mux_session: 0\n")
        : Promise.reject(new Error(`read ${p}`)),
  );
  assert.equal(await runServiceCommand(["install", "--type", "client"], kept.env), 2);
  assert.deepEqual(kept.log.filter((l) => !l.startsWith(">")), []);
  assert.match(kept.log.join("\n"), /\/etc\/half-tunnel\/client.yaml is not a valid client config/);
  // An unreadable file is named.
  const gone = fakeEnv(0, [], false, () => Promise.reject(new Error("No such file")));
  assert.equal(
    await runServiceCommand(["install", "--type", "server", "--config", "/nope.yaml"], gone.env),
    1,
  );
  assert.deepEqual(gone.log, ["> cannot read /nope.yaml: No such file"]);
});

Deno.test("service install accepts a valid Backhaul config and a starter config", async () => {
  const toml = fakeEnv(
    0,
    [],
    true,
    () => Promise.resolve('[client]\nremote_addr = "h:1"\ntoken = "k-0123456789abcdef"\n'),
  );
  assert.equal(
    await runServiceCommand(["install", "--type", "client", "--config", "/c.toml"], toml.env),
    0,
  );
  assert.ok(toml.log.includes("write /etc/half-tunnel/client.toml 600"), toml.log.join("\n"));
  for (const type of ["server", "client"]) {
    const fresh = fakeEnv(0, [], true, () => Promise.reject(new Error("not read")));
    assert.equal(await runServiceCommand(["install", "--type", type], fresh.env), 0, type);
    assert.ok(fresh.log.includes(`write /etc/half-tunnel/${type}.yaml 600`), fresh.log.join("\n"));
  }
});

Deno.test("every action stops before doing anything when systemd is not PID 1, and says so", async () => {
  for (
    const args of [
      ["install", "--type", "server", "--config", "/home/me/s.yaml"],
      ["uninstall", "--type", "server"],
      ["start", "--type", "client"],
      ["status", "--type", "client"],
      ["logs", "--type", "server"],
    ]
  ) {
    const { env, log } = fakeEnv(0);
    env.init = () => Promise.resolve("tini");
    assert.equal(await runServiceCommand(args, env), 1, args.join(" "));
    assert.equal(log.length, 1, `one message, nothing ran or was written: ${log}`);
    assert.match(log[0], /systemd is not running on this machine \(PID 1 is tini\)/);
    assert.match(log[0], /nothing was done/);
    assert.match(log[0], new RegExp(`half-tunnel ${args[2]}`), "says what to run instead");
  }
});

Deno.test("install --dry-run prints the unit and every change, makes none, and needs neither root nor systemd", async () => {
  const { env, log, files } = fakeEnv(1000);
  env.init = () => Promise.resolve("process_api");
  assert.equal(
    await runServiceCommand(
      ["install", "--type", "server", "--config", "/etc/s.yaml", "--dry-run"],
      env,
    ),
    0,
    log.join("\n"),
  );
  assert.equal(files.size, 0, "nothing written");
  const ran = log.filter((l) => !l.startsWith(">"));
  assert.deepEqual(ran, ["id -u half-tunnel"], "only the question whether the user exists");
  const said = log.filter((l) => l.startsWith(">")).map((l) => l.slice(2));
  assert.match(said[0], /note: systemd is not running on this machine \(PID 1 is process_api\)/);
  assert.match(said[1], /note: a real install changes system files: run it as root/);
  const steps = said.slice(2).map((l) => l.split("\n")[0]);
  assert.deepEqual(steps, [
    "would run: useradd --system --no-create-home --shell /usr/sbin/nologin half-tunnel",
    "would run: mkdir -p /etc/half-tunnel",
    "would write /etc/half-tunnel/server.yaml (mode 600); not shown: it holds the key",
    "would chown half-tunnel:half-tunnel /etc/half-tunnel/server.yaml",
    "would write /etc/systemd/system/half-tunnel-server.service (mode 644):",
    "would run: systemctl daemon-reload",
    "would run: systemctl enable half-tunnel-server.service",
    "dry run: nothing was changed",
  ]);
  const unit = said.find((l) => l.includes("half-tunnel-server.service (mode 644)"))!;
  assert.match(unit, /^\[Unit\]$/m);
  assert.match(
    unit,
    /^ExecStart=\/usr\/local\/bin\/half-tunnel server --config \/etc\/half-tunnel\/server.yaml$/m,
  );
  assert.ok(!log.join("\n").includes("from-the-given-file"), "the key is not printed");
  // Where the user and the config exist, neither is created or replaced; a starter config is not
  // written either.
  const kept = fakeEnv(0, ["/etc/half-tunnel/client.yaml"], true);
  assert.equal(await runServiceCommand(["install", "--type", "client", "-n"], kept.env), 0);
  assert.equal(kept.files.size, 0);
  assert.ok(!kept.log.some((l) => /useradd|would write \/etc\/half-tunnel\/client/.test(l)));
  // A broken config fails the dry run as it would the install.
  const broken = fakeEnv(0, [], false, () => Promise.resolve("server:\n  upstream_addr: x\n"));
  assert.equal(
    await runServiceCommand(["install", "--type", "server", "-c", "/s.yaml", "-n"], broken.env),
    2,
  );
  assert.ok(!broken.log.some((l) => l.includes("would")), broken.log.join("\n"));
  // --dry-run belongs to install.
  const start = fakeEnv(0);
  assert.equal(await runServiceCommand(["start", "--type", "server", "--dry-run"], start.env), 2);
  assert.deepEqual(start.log, [
    "> service start: --dry-run goes with install only (half-tunnel service --help lists the actions and flags)",
  ]);
});

Deno.test("install warns when the unit would run code under /root, /home or /tmp", async () => {
  const cases: [string[], RegExp | null][] = [
    [
      ["/root/.deno/bin/deno", "run", "-A", "--config", "/root/ht/deno.json", "/root/ht/main.ts"],
      /\/root\/\.deno\/bin\/deno \(ProtectHome=true\), \/root\/ht\/deno\.json \(ProtectHome=true\), \/root\/ht\/main\.ts \(ProtectHome=true\)/,
    ],
    [
      ["/usr/bin/deno", "run", "-A", "--config", "/home/me/ht/deno.json", "/home/me/ht/main.ts"],
      /\/home\/me\/ht\/deno\.json \(ProtectHome=true\), \/home\/me\/ht\/main\.ts/,
    ],
    [["/tmp/half-tunnel"], /\/tmp\/half-tunnel \(PrivateTmp=true\)/],
    [["/usr/local/bin/half-tunnel"], null],
    [["/usr/bin/deno", "run", "-A", "--config", "/opt/ht/deno.json", "/opt/ht/main.ts"], null],
  ];
  for (const [exec, warning] of cases) {
    const { env, log } = fakeEnv(0, [], true);
    env.exec = () => exec;
    assert.equal(await runServiceCommand(["install", "--type", "server", "-c", "/s.yaml"], env), 0);
    const warnings = log.filter((l) => l.startsWith("> warning:"));
    if (!warning) {
      assert.deepEqual(warnings, [], exec.join(" "));
      continue;
    }
    assert.equal(warnings.length, 1, log.join("\n"));
    assert.match(warnings[0], /its sandbox hides from the service, so it would not start/);
    assert.match(warnings[0], warning);
    assert.ok(
      log.includes("systemctl enable half-tunnel-server.service"),
      "a warning, not a refusal",
    );
  }
});

Deno.test("install fills the module cache of a deno-run unit before writing anything, not a binary's", async () => {
  const deno = ["/opt/deno", "run", "-A", "--config", "/opt/ht/deno.json", "/opt/ht/main.ts"];
  const cache =
    "env DENO_DIR=/var/cache/half-tunnel /opt/deno cache --config /opt/ht/deno.json /opt/ht/main.ts";
  const ok = fakeEnv(0);
  ok.env.exec = () => deno;
  assert.equal(
    await runServiceCommand(["install", "--type", "client", "-c", "/c.yaml"], ok.env),
    0,
  );
  const ran = ok.log.filter((l) => !l.startsWith(">"));
  assert.deepEqual(ran.slice(0, 4), [
    "id -u half-tunnel",
    "useradd --system --no-create-home --shell /usr/sbin/nologin half-tunnel",
    cache,
    "mkdir -p /etc/half-tunnel",
  ]);
  assert.match(
    ok.files.get("/etc/systemd/system/half-tunnel-client.service")!.text,
    /^Environment=DENO_DIR=\/var\/cache\/half-tunnel$/m,
  );
  // A cache that cannot be filled (no network at install) stops the install before the config
  // and the unit are written.
  const offline = fakeEnv(0, [], true);
  offline.env.exec = () => deno;
  offline.failing.add("env");
  assert.equal(
    await runServiceCommand(["install", "--type", "client", "-c", "/c.yaml"], offline.env),
    1,
  );
  assert.equal(offline.files.size, 0);
  assert.deepEqual(offline.log.filter((l) => !l.startsWith(">")), ["id -u half-tunnel", cache]);
  assert.match(
    offline.log.at(-1)!,
    /could not fill the module cache \/var\/cache\/half-tunnel \(deno cache exit 1\), so the service would need the network at its first start; nothing else was installed/,
  );
  // A compiled binary has no cache to fill.
  assert.equal(cacheCommand(["/usr/local/bin/half-tunnel"]), null);
  const bin = fakeEnv(0);
  await runServiceCommand(["install", "--type", "client", "-c", "/c.yaml"], bin.env);
  assert.ok(!bin.log.some((l) => l.includes("cache")), bin.log.join("\n"));
});

Deno.test("the cache command for this checkout is one the real deno runs", async () => {
  const exec = selfExec();
  assert.deepEqual(exec.slice(1, 4), ["run", "-A", "--config"], "tests run under deno");
  const [env, denoDir, ...cmd] = cacheCommand(exec)!;
  assert.deepEqual([env, denoDir], ["env", "DENO_DIR=/var/cache/half-tunnel"]);
  // Run against the cache this test already runs from, with every fetch sent to a closed local
  // port and the lockfile frozen: deno takes the command's flags and paths, finds everything
  // main.ts needs cached, and nothing leaves this machine or changes.
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
  }).output();
  const closed = `http://127.0.0.1:${await freePort()}`;
  const out = await new Deno.Command(cmd[0], {
    args: [cmd[1], "--frozen-lockfile", ...cmd.slice(2)],
    env: {
      DENO_DIR: JSON.parse(new TextDecoder().decode(info.stdout)).denoDir,
      HTTPS_PROXY: closed,
      HTTP_PROXY: closed,
      NO_PROXY: "",
      DENO_NO_UPDATE_CHECK: "1",
    },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
});
