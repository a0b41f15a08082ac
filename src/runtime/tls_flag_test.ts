import assert from "node:assert/strict";
import { parseConfigText } from "../config/load.ts";
import { insecureTlsNames, planTls } from "./tls_flag.ts";

const FLAG = "--unsafely-ignore-certificate-errors";

function launch(flags: string[]) {
  return { argv: ["deno", "run", ...flags, "main.ts", "client"], runtimeFlags: flags };
}

function client(toml: string) {
  return parseConfigText(
    `[client]\ntoken = "tls-flag-test-token-q8Zr2"\n${toml}`,
    "toml",
    "client.toml",
    { env: {} },
  );
}

Deno.test("insecureTlsNames: the servers' TLS names (sni if set), only when verification is skipped", () => {
  assert.deepEqual(
    insecureTlsNames(client(`remote_addr = "h1.example:443"\ntransport = "wss"\n`)),
    ["h1.example"],
  );
  assert.deepEqual(
    insecureTlsNames(
      client(`remote_addr = "h1.example:443"\ntransport = "wss"\nsni = "front.example"\n`),
    ),
    ["front.example"],
  );
  assert.deepEqual(
    insecureTlsNames(client(`remote_addr = "h1.example:443"\ntransport = "ws"\n`)),
    [],
  );
});

Deno.test("planTls: runtime TLS when the flag names every server, else re-execute or say why not", () => {
  assert.equal(planTls([], launch([])), null);
  assert.deepEqual(planTls(["a", "b"], launch(["-A", `${FLAG}=b,a`])), {
    stack: "Deno's TLS",
    why: `started with ${FLAG} for a, b`,
  });
  assert.equal((planTls(["a"], launch([FLAG])) as { stack: string }).stack, "Deno's TLS");
  // Missing: re-execute with the flag right after `run`, the rest of the command line as it was.
  assert.deepEqual(planTls(["a", "::1"], launch(["-A"])), {
    exec: ["deno", "run", `${FLAG}=a,::1`, "-A", "main.ts", "client"],
  });
  // The operator's flag for other names is left alone (and cannot loop).
  const other = planTls(["a"], launch([`${FLAG}=z`]));
  assert.equal((other as { stack: string }).stack, "node:tls");
  assert.match((other as { why: string }).why, /does not name them \(for a\)/);
  // No command line to re-execute (a compiled binary, off Linux).
  assert.equal((planTls(["a"], null) as { stack: string }).stack, "node:tls");
});
