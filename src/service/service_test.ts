import assert from "node:assert/strict";
import { renderUnit } from "./unit.ts";
import { runServiceCommand, type ServiceEnv } from "./cli.ts";
import type { Runner } from "./systemd.ts";

Deno.test("the unit restarts forever, runs unprivileged and sandboxed", () => {
  const u = renderUnit({
    type: "server",
    exec: ["/usr/local/bin/half-tunnel"],
    user: "half-tunnel",
    configPath: "/etc/half-tunnel/server.yaml",
  });
  for (
    const line of [
      "ExecStart=/usr/local/bin/half-tunnel server --config /etc/half-tunnel/server.yaml",
      "ExecReload=/bin/kill -HUP $MAINPID",
      "Restart=always",
      "RestartSec=3",
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

function fakeEnv(uid: number, existing: string[] = [], userExists = false) {
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
    readConfig: () => Promise.resolve("auth:\n  key: from-the-given-file-0123456789\n"),
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
