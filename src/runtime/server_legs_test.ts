import assert from "node:assert/strict";
import { parseConfigText } from "../config/load.ts";
import { startServer } from "./server.ts";

Deno.test("a taken leg port is named by the key that set it, with file and line", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    const cfg = parseConfigText(
      `[server]\nbind_addr = "127.0.0.1:${port}"\ntransport = "tcpmux"\n` +
        `token = "legs-test-token-0123456789-abcdefgh"\nlog_level = "error"\n`,
      "toml",
      "s.toml",
      { env: {} },
    );
    await assert.rejects(
      startServer(cfg),
      new RegExp(
        `cannot listen on 127\\.0\\.0\\.1:${port} for tunnel legs \\(\\[server\\] bind_addr ` +
          `\\(s\\.toml line 2\\)\\): port ${port} .*in use`,
      ),
    );
  } finally {
    taken.close();
  }
});
