import assert from "node:assert/strict";
import { parse } from "yaml";
import { CONFIGS, renderConfig, resolveConfigs } from "./configs.ts";

const PORTS = { up: 11000, down: 11001, socks: 11002 };

Deno.test("configs: the base split tunnel, with each configuration's keys merged in", () => {
  const base = renderConfig(CONFIGS.undefended, PORTS, "k");
  assert.deepEqual(parse(base.server), {
    auth: { key: "k" },
    server: {
      upstream_addr: "127.0.0.1:11000",
      downstream_addr: "127.0.0.1:11001",
      transport: "ws",
      allow_private: true,
    },
  });
  assert.deepEqual(parse(base.client).client, {
    upstream_url: "ws://127.0.0.1:11000/upstream",
    downstream_url: "ws://127.0.0.1:11001/downstream",
    socks5: { listen: "127.0.0.1:11002" },
  });
  const both = renderConfig(CONFIGS["strong-split3"], PORTS, "k");
  assert.equal(parse(both.server).session.shaping, "strong");
  assert.equal(parse(both.server).server.transport, "ws");
  const client = parse(both.client);
  assert.equal(client.session.shaping, "strong");
  assert.equal(client.client.socks5.listen, "127.0.0.1:11002");
  assert.deepEqual(client.client.upstream_urls, Array(2).fill("ws://127.0.0.1:11000/upstream"));
  assert.deepEqual(
    client.client.downstream_urls,
    Array(2).fill("ws://127.0.0.1:11001/downstream"),
  );
});

Deno.test("configs: --configs names, aliases for copies, and the mistakes refused", () => {
  assert.deepEqual(
    resolveConfigs(["undefended", "again=undefended"]).map((c) => c.name),
    ["undefended", "again"],
  );
  assert.equal(resolveConfigs(["again=split2"])[0].config, CONFIGS.split2);
  assert.throws(() => resolveConfigs(["nope"]), /unknown configuration "nope"/);
  assert.throws(() => resolveConfigs(["split2", "split2"]), /named twice/);
});
