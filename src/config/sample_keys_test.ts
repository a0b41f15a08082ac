/**
 * Every key the repository shows (configs/, README.md, docs/, deployments/) must be one the config
 * refuses: a listed sample (sample_keys.ts) or an obvious placeholder. A new sample that is not
 * added to the list fails here instead of shipping as a key that works.
 */

import assert from "node:assert/strict";
import { judgeKey } from "./auth_key.ts";
import { SAMPLE_KEYS } from "./sample_keys.ts";

const root = new URL("../../", import.meta.url);
const PLACES = ["configs/", "README.md", "docs/", "deployments/"];

/** A value as written: quoted, or up to a space, comma, brace or comment. */
const VALUE = `("[^"\n]*"|'[^'\n]*'|[^\\s,}#]*)`;
/**
 * Key-looking assignments, the value in group 1: a YAML line `key:`/`token:` (auth.key, and
 * Backhaul's token written as YAML), in flow style too (`{key: …}`), a TOML line `token = …`
 * (also `server.token`), `HT_AUTH_KEY=…` and `--set auth.key=…`.
 */
const ASSIGNMENTS = [
  new RegExp(`^[ \\t]*(?:[\\w-]+\\.)?(?:key|token)[ \\t]*[:=][ \\t]*${VALUE}`, "gm"),
  new RegExp(`[{,][ \\t]*(?:key|token)[ \\t]*:[ \\t]*${VALUE}`, "g"),
  new RegExp(`\\b(?:HT_AUTH_KEY|auth\\.key)=${VALUE}`, "g"),
];

/** Every text file under `path` (a file or a folder ending in "/"). */
async function* files(path: string): AsyncGenerator<string> {
  if (!path.endsWith("/")) {
    yield path;
    return;
  }
  for await (const e of Deno.readDir(new URL(path, root))) {
    if (e.isDirectory) yield* files(`${path}${e.name}/`);
    else if (!/\.(png|jpe?g|gif|ico)$/i.test(e.name)) yield `${path}${e.name}`;
  }
}

/** [file:line, value] of every literal key assigned in `text`. */
function keysIn(name: string, text: string): [string, string][] {
  const found: [string, string][] = [];
  for (const re of ASSIGNMENTS) {
    for (const m of text.matchAll(re)) {
      // Quotes and the Markdown around a value are not part of it.
      const value = m[1].replace(/^(["'])(.*)\1$/, "$2").replace(/[`'").,;]+$/, "");
      // `$(cat key.txt)`, `$KEY`: the shell supplies the key; an empty one means "not set".
      if (value === "" || value.startsWith("$")) continue;
      const line = text.slice(0, m.index + m[0].lastIndexOf(m[1])).split("\n").length;
      found.push([`${name}:${line}`, value]);
    }
  }
  return found;
}

Deno.test("every key shown in configs/, README.md, docs/ and deployments/ is refused", async () => {
  const found: [string, string][] = [];
  for (const place of PLACES) {
    for await (const name of files(place)) {
      found.push(...keysIn(name, await Deno.readTextFile(new URL(name, root))));
    }
  }
  // The scan still sees the samples it is meant to catch.
  for (const sample of SAMPLE_KEYS.keys()) {
    assert.ok(
      found.some(([, v]) => v.toLowerCase() === sample),
      `${sample} is not found any more; is the scan broken?`,
    );
  }
  for (const [where, value] of found) {
    assert.equal(
      judgeKey(value)?.refuse,
      true,
      `${where} shows the key ${JSON.stringify(value)}, which the config accepts: add it to ` +
        "SAMPLE_KEYS in src/config/sample_keys.ts",
    );
  }
});

Deno.test("the scan finds keys in each form the files use", () => {
  const text = [
    "auth:",
    "  key: yaml-sample-0123456789 # shared",
    'token = "toml-sample-0123456789"  # comment',
    "HT_AUTH_KEY=env-sample-0123456789 half-tunnel server",
    "`--set auth.key=set-sample-0123456789`",
    "HT_AUTH_KEY=$(cat key.txt) half-tunnel client",
    "  key_file: /etc/half-tunnel/key.pem",
    "open it as `/?token=…`",
    "only after the server has proved the shared key: a fake server",
    "server.token = 'dotted-sample-0123456789'",
    "auth: {hmac: true, key: flow-sample-0123456789}",
  ].join("\n");
  assert.deepEqual(keysIn("t.md", text), [
    ["t.md:2", "yaml-sample-0123456789"],
    ["t.md:3", "toml-sample-0123456789"],
    ["t.md:10", "dotted-sample-0123456789"],
    ["t.md:11", "flow-sample-0123456789"],
    ["t.md:4", "env-sample-0123456789"],
    ["t.md:5", "set-sample-0123456789"],
  ]);
});
