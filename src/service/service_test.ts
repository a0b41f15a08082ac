import assert from "node:assert/strict";
import { DEPLOYED_ENV, renderUnit } from "./unit.ts";
import { runServiceCommand, type ServiceEnv } from "./cli.ts";
import type { Runner } from "./systemd.ts";

Deno.test("the unit checks the config before each start, restarts forever, runs unprivileged and sandboxed", () => {
  const u = renderUnit({
    type: "server",
    exec: ["/usr/local/bin/half-tunnel"],
    user: "half-tunnel",
    configPath: "/etc/half-tunnel/server.yaml",
  });
  for (
    const line of [
      "ExecStartPre=/usr/local/bin/half-tunnel check server --config /etc/half-tunnel/server.yaml --quiet",
      "ExecStart=/usr/local/bin/half-tunnel server --config /etc/half-tunnel/server.yaml",
      "ExecReload=/bin/kill -HUP $MAINPID",
      "Restart=always",
      "RestartSec=3",
      "RestartPreventExitStatus=2",
      "StartLimitIntervalSec=30",
      "StartLimitBurst=5",
      "LimitNOFILE=1048576",
      "User=half-tunnel",
      "AmbientCapabilities=CAP_NET_BIND_SERVICE",
      "ProtectSystem=strict",
      "NoNewPrivileges=true",
      "WantedBy=multi-user.target",
    ]
  ) assert.ok(u.split("\n").includes(line), line);
  const t = renderUnit({
    type: "client",
    exec: ["/opt/my dir/deno", "run", "-A", "/srv/main.ts"],
    user: "ht",
    configPath: "/etc/half-tunnel/client.toml",
  });
  assert.ok(
    t.includes(
      'ExecStart="/opt/my dir/deno" run -A /srv/main.ts client -c /etc/half-tunnel/client.toml',
    ),
  );
  assert.ok(
    t.includes(
      'ExecStartPre="/opt/my dir/deno" run -A /srv/main.ts check client -c /etc/half-tunnel/client.toml --quiet',
    ),
  );
  assert.ok(t.indexOf("ExecStartPre=") < t.indexOf("ExecStart="), "the check runs first");
});

Deno.test("the unit and the Dockerfile run the tunnel with the same deployed environment", async () => {
  const unit = renderUnit({
    type: "server",
    exec: ["/usr/local/bin/half-tunnel"],
    user: "half-tunnel",
    configPath: "/etc/half-tunnel/server.yaml",
  });
  const docker = await Deno.readTextFile(new URL("../../deployments/Dockerfile", import.meta.url));
  const dockerEnv = Object.fromEntries(
    [...docker.matchAll(/^ENV (\w+)=(\S+)$/gm)].map((m) => [m[1], m[2]]),
  );
  assert.deepEqual(dockerEnv, DEPLOYED_ENV);
  for (const [k, v] of Object.entries(DEPLOYED_ENV)) {
    assert.ok(unit.split("\n").includes(`Environment=${k}=${v}`), k);
  }
});

Deno.test("rendered units pass systemd-analyze verify", async (t) => {
  const found = await new Deno.Command("systemd-analyze", {
    args: ["--version"],
    stdout: "null",
    stderr: "null",
  })
    .output().then((o) => o.success, () => false);
  if (!found) {
    console.warn("systemd-analyze is not installed (Debian package systemd); verify not run");
    return;
  }
  const dir = await Deno.makeTempDir();
  try {
    for (const type of ["server", "client"] as const) {
      await t.step(type, async () => {
        const path = `${dir}/half-tunnel-${type}.service`;
        await Deno.writeTextFile(
          path,
          renderUnit({
            type,
            exec: [Deno.execPath(), "run", "-A", "/srv/main.ts"],
            user: "half-tunnel",
            configPath: `/etc/half-tunnel/${type}.yaml`,
          }),
        );
        const out = await new Deno.Command("systemd-analyze", {
          args: ["verify", path],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, text);
        assert.equal(text.trim(), "", "no warnings");
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const VALID = "auth:\n  key: from-the-given-file-0123456789\n";

function fakeEnv(
  uid: number,
  existing: string[] = [],
  userExists = false,
  config: (path: string) => Promise<string> = () => Promise.resolve(VALID),
) {
  const log: string[] = [];
  const files = new Map<string, { text: string; mode: number }>();
  const runner: Runner = {
    run: (cmd) => {
      log.push(cmd.join(" "));
      return Promise.resolve(cmd[0] === "id" && !userExists ? 1 : 0);
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
    exec: () => ["/usr/local/bin/half-tunnel"],
    readConfig: config,
  };
  return { env, log, files };
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
