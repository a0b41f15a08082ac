import assert from "node:assert/strict";
import { isMap, isScalar, type Node, parseDocument } from "yaml";
import { keyHelp, renderKeyTable } from "./docs.ts";
import { generateKey } from "./keygen.ts";
import { loadYamlSupport, parseConfigText } from "./load.ts";
import { KEY_BY_PATH, KEYS } from "./schema.ts";

await loadYamlSupport();

const root = new URL("../../", import.meta.url);

/** The first Markdown table after `heading` in `text`. */
function tableAfter(text: string, heading: string): string {
  const lines = text.split(/\r?\n/);
  const start = lines.findIndex((l, i) => i > lines.indexOf(heading) && l.startsWith("|"));
  const end = lines.findIndex((l, i) => i > start && !l.startsWith("|"));
  return lines.slice(start, end === -1 ? undefined : end).join("\n");
}

Deno.test("the README's configuration table is the one rendered from the key table", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const expected = renderKeyTable();
  if (tableAfter(readme, "## Configuration") !== expected) {
    throw new Error(
      `README.md's table under "## Configuration" differs from the key table ` +
        `(src/config/schema.ts); replace it with:\n\n${expected}\n`,
    );
  }
});

Deno.test("every key in configs/*.yaml is in the key table and the example validates", async () => {
  const dir = new URL("configs/", root);
  let files = 0;
  for await (const entry of Deno.readDir(dir)) {
    if (!/\.ya?ml$/.test(entry.name)) continue;
    files++;
    const text = await Deno.readTextFile(new URL(entry.name, dir));
    const doc = parseDocument(text);
    const leaves = (n: unknown, prefix: string): string[] =>
      isMap(n)
        ? n.items.flatMap((p) => {
          const path = `${prefix}${String(isScalar(p.key) ? p.key.value : p.key)}`;
          return KEY_BY_PATH.has(path) ? [path] : leaves(p.value as Node, `${path}.`);
        })
        : [prefix.slice(0, -1)];
    for (const path of leaves(doc.contents, "")) {
      assert.ok(KEY_BY_PATH.has(path), `${entry.name}: "${path}" is not in the key table`);
    }
    const role = doc.has("server") ? "server" : "client";
    // Throws a ConfigError naming the key, file and line of a value that does not validate. The
    // sample key is refused, so the example runs as the README says: with a key of one's own.
    parseConfigText(text, "yaml", `configs/${entry.name}`, {
      role,
      env: { HT_AUTH_KEY: generateKey() },
    });
  }
  assert.ok(files > 0, "no YAML examples found in configs/");
});

Deno.test("the key table is well formed", () => {
  for (const k of KEYS) {
    const numeric = ["int", "number", "size", "duration"].includes(k.kind);
    assert.ok(k.doc && !k.doc.includes("\n") && !k.doc.includes("|"), `${k.path}: one-line doc`);
    assert.ok(!k.values || k.kind === "string", `${k.path}: values only on strings`);
    assert.ok(k.min === undefined || numeric, `${k.path}: limits only on numbers`);
    assert.ok(
      k.kind === "duration" ? k.max === undefined : (k.min === undefined) === (k.max === undefined),
      `${k.path}: a duration has only a least value, other numbers both limits`,
    );
    if (typeof k.min === "string") assert.ok(KEY_BY_PATH.has(k.min), `${k.path}: bound ${k.min}`);
    assert.ok(k.path.split(".")[0] === k.to.split(".")[0], `${k.path}: lands in its own section`);
  }
});

Deno.test("--help lists a role's keys with default, doc and HT_ name", () => {
  const server = keyHelp("server");
  assert.ok(server.every((k) => !k.path.startsWith("client.")));
  assert.deepEqual(server.find((k) => k.path === "server.dial_timeout"), {
    path: "server.dial_timeout",
    env: "HT_SERVER_DIAL_TIMEOUT",
    default: "10s",
    doc: "exit connect timeout",
  });
  assert.equal(keyHelp("client").find((k) => k.path === "auth.key")?.default, "(required)");
  assert.equal(keyHelp("client").find((k) => k.path === "client.forwards")?.default, "[]");
});
