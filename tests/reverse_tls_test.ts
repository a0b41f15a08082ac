/**
 * Which TLS a Backhaul-style wss client (`insecure_skip_verify`, a CA:TRUE self-signed server
 * certificate) runs on as a real process: started by `deno run` without the flag it re-executes
 * itself in place (same process id) with `--unsafely-ignore-certificate-errors` for its server and
 * carries its legs on the runtime's TLS; started with the flag for another name it stays on
 * node:tls. Both carry bytes intact both ways and stop cleanly on SIGTERM. (The in-process reverse
 * wss tests in reverse_test.ts run without the flag, on node:tls.)
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../src/config/load.ts";
import { startServer } from "../src/runtime/server.ts";
import { echoServer, pattern, readAll, sha256, within, writeAll } from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { spawnProcess, tempConfig } from "./helpers/process.ts";
import { selfSignedCert } from "./helpers/tls.ts";
import { TOKEN } from "./helpers/reverse.ts";

const FLAG = "--unsafely-ignore-certificate-errors";

async function clientThrough(runtimeFlags: string[], expect: RegExp): Promise<string> {
  const echo = echoServer();
  const tls = await selfSignedCert({ backhaul: true });
  const published = await freePort();
  const server = await startServer(parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "wssmux"\ntoken = "${TOKEN}"\n` +
      `log_level = "error"\nports = ["127.0.0.1:${published}=${echo.port}"]\n` +
      `tls_cert = "${tls.certFile}"\ntls_key = "${tls.keyFile}"\n`,
    "toml",
    "test-server.toml",
    { env: {} },
  ));
  const cfg = await tempConfig(
    "client.toml",
    `[client]\nremote_addr = "127.0.0.1:${server.legAddrs[0].port}"\ntransport = "wssmux"\n` +
      `token = "${TOKEN}"\nretry_interval = 1\n`,
  );
  const client = spawnProcess(
    [Deno.execPath(), "run", ...runtimeFlags, "-A", "main.ts", "-c", cfg.path],
    { HT_LOG_LEVEL: "info" },
  );
  try {
    await client.waitForLog(/session \w+ established/);
    assert.match(client.log, expect);
    assert.equal(
      client.log.match(/carries the legs that skip certificate verification/g)?.length,
      1,
    );
    const data = pattern(4 * 1024 * 1024, 7);
    const c = await Deno.connect({ hostname: "127.0.0.1", port: published });
    try {
      const [, back] = await within(
        Promise.all([writeAll(c, data).then(() => c.closeWrite()), readAll(c)]),
        30_000,
        "echo through the tunnel",
      );
      assert.equal(sha256(back), sha256(data));
    } finally {
      c.close();
    }
    const cmdline = await Deno.readTextFile(`/proc/${client.pid}/cmdline`);
    const status = await client.stop("SIGTERM");
    assert.equal(status.code, 0, client.log);
    return cmdline;
  } finally {
    await client.stop();
    await server.close();
    await echo.close();
    await tls.cleanup();
    await Deno.remove(cfg.dir, { recursive: true });
  }
}

Deno.test({
  name: "reverse wss client: re-executes itself in place with the flag and runs on Deno's TLS",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const cmdline = await clientThrough(
      [],
      /Deno's TLS carries the legs that skip certificate verification: started with --unsafely-ignore-certificate-errors for 127\.0\.0\.1/,
    );
    // The process the test started, not a child of it, carries the flag now.
    assert.ok(cmdline.split("\0").includes(`${FLAG}=127.0.0.1`), cmdline);
  },
});

Deno.test({
  name: "reverse wss client: started with the flag for another name it stays on node:tls",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const cmdline = await clientThrough(
      [`${FLAG}=elsewhere.invalid`],
      /node:tls carries the legs that skip certificate verification: the --unsafely-ignore-certificate-errors this process was started with does not name them \(for 127\.0\.0\.1\)/,
    );
    assert.ok(!cmdline.includes(`${FLAG}=127.0.0.1`), cmdline);
  },
});
