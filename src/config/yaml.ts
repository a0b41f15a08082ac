/**
 * The Half-Tunnel-style YAML front end: walks the document against the key table, so an unknown
 * key anywhere is refused with its full path, file and line (every one of them: the walk goes on
 * and the draft gathers the problems; only a document that does not parse stops it). Plain scalars given to string keys
 * keep their text as written (`password: 0123` stays "0123", not the number 123).
 */

import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { assign, type Draft } from "./draft.ts";
import { ConfigError, suggest } from "./error.ts";
import { KEY_BY_PATH, KEYS, SECTIONS } from "./schema.ts";

const PATHS = [...KEYS.map((k) => k.path), ...SECTIONS];

export function applyYaml(d: Draft, text: string, source: string): void {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const lineOf = (n: { range?: readonly number[] | null } | null | undefined) =>
    lines.linePos(n?.range?.[0] ?? 0).line;
  if (doc.errors.length) {
    const e = doc.errors[0];
    throw new ConfigError(
      `${source} line ${lines.linePos(e.pos[0]).line}: invalid YAML: ${e.message.split("\n")[0]}`,
    );
  }
  const resolve = (n: unknown) => isAlias(n) ? n.resolve(doc) : n;

  const walk = (map: unknown, prefix: string) => {
    if (!isMap(map)) {
      const where = `${source} line ${lineOf(map as Node)}`;
      d.problems.add(
        prefix || "(top level)",
        new ConfigError(
          prefix
            ? `${prefix} (${where}): must be a mapping of keys`
            : `${where}: the top level must be a mapping (log, auth, session, server, client)`,
        ),
      );
      return;
    }
    for (const pair of map.items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const path = prefix ? `${prefix}.${k}` : k;
      const value = resolve(pair.value);
      const line = lineOf(pair.key as Node);
      const spec = KEY_BY_PATH.get(path);
      if (!spec && !SECTIONS.has(path)) {
        d.unknown.push({ name: path, where: `${source} line ${line}` });
        d.problems.add(
          path,
          new ConfigError(`${source} line ${line}: unknown key "${path}"${suggest(path, PATHS)}`),
        );
        continue;
      }
      // An empty value (`key:` or `~`) leaves the default in place.
      if (isNull(value)) continue;
      if (spec) {
        const label = `${path} (${source} line ${line})`;
        assign(d, spec, plain(value, spec.kind === "string" || spec.kind === "list"), label);
      } else {
        walk(value, path);
      }
    }
  };
  if (!isNull(doc.contents)) walk(doc.contents, "");
}

function isNull(n: unknown): boolean {
  return n === null || n === undefined || (isScalar(n) && n.value === null);
}

/** A node as a JS value; `asText` keeps plain scalars as their source text. */
function plain(n: unknown, asText: boolean): unknown {
  if (isScalar(n)) {
    if (asText && typeof n.value !== "string" && n.source !== undefined) return n.source;
    return n.value;
  }
  if (isSeq(n)) return n.items.map((i) => plain(i, asText));
  return (n as Node | null)?.toJSON() ?? null;
}
