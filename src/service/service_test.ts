import assert from "node:assert/strict";
import { DEPLOYED_ENV, HIDDEN_FROM_UNIT, hiddenBy, renderUnit, UNIT_DENO_DIR } from "./unit.ts";
import { needs } from "../../tests/helpers/tools.ts";

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

Deno.test("`./main.ts` and `deno task demo` start in the deployed environment too", async () => {
  const assignments = Object.entries(DEPLOYED_ENV).map(([k, v]) => `${k}=${v}`).join(" ");
  const main = await Deno.readTextFile(new URL("../../main.ts", import.meta.url));
  assert.equal(main.split("\n")[0], `#!/usr/bin/env -S ${assignments} deno run -A`);
  const tasks = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  ).tasks;
  assert.equal(tasks.demo, `${assignments} deno run -A main.ts demo`);
});

Deno.test("rendered units pass systemd-analyze verify", {
  ignore: await needs("systemd-analyze", "systemd"),
}, async (t) => {
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

Deno.test("the unit's module cache and the paths its sandbox hides", () => {
  const lines = renderUnit({
    type: "client",
    exec: ["/usr/local/bin/half-tunnel"],
    user: "half-tunnel",
    configPath: "/etc/half-tunnel/client.yaml",
  }).split("\n");
  assert.ok(lines.includes("CacheDirectory=half-tunnel"));
  assert.ok(lines.includes(`Environment=DENO_DIR=${UNIT_DENO_DIR}`));
  assert.equal(UNIT_DENO_DIR, "/var/cache/half-tunnel", "CacheDirectory= is under /var/cache");
  for (const setting of Object.keys(HIDDEN_FROM_UNIT)) assert.ok(lines.includes(setting), setting);
  for (
    const [path, by] of [
      ["/root/.deno/bin/deno", "ProtectHome=true"],
      ["/home/me/half-tunnel/main.ts", "ProtectHome=true"],
      ["/home", "ProtectHome=true"],
      ["/run/user/1000/x", "ProtectHome=true"],
      ["/tmp/ht/main.ts", "PrivateTmp=true"],
      ["/var/tmp/deno", "PrivateTmp=true"],
      ["/usr/local/bin/half-tunnel", null],
      ["/opt/half-tunnel/main.ts", null],
      ["/homes/x", null],
      ["/tmpfs/x", null],
    ] as const
  ) assert.equal(hiddenBy(path), by, path);
});
