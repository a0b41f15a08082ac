/**
 * A configuration being assembled from its sources: starts from the defaults of the key table,
 * takes each source's values converted by the key's kind, and becomes the model (`settle`) once
 * every source has had its say. It gathers the problems found on the way (a refused value keeps
 * the key's earlier one), so that a load names every problem at once.
 */

import { ConfigError, nearest, Problems, shown } from "./error.ts";
import type { Config, TlsServerConfig } from "./model.ts";
import { KEYS, type KeySpec, type SocksDraft } from "./schema.ts";
import { parseDuration, parseSize } from "./units.ts";

/**
 * SOCKS5 and server TLS are kept flat here because the model turns them into `null` (disabled)
 * only once every source has had its say.
 */
export interface Draft {
  cfg: Config;
  socks: SocksDraft;
  serverTls: TlsServerConfig;
  /** Key path → where its current value came from, e.g. `client.nodelay (HT_CLIENT_NODELAY)`. */
  origins: Map<string, string>;
  /** Problems so far, by key path (or the name of a key that is not one). */
  problems: Problems;
  /** Names given that are no key, as written (`auth.kye`), and where (`t.yaml line 3`). */
  unknown: { name: string; where: string }[];
}

/** `problems`: those a front end found before the draft was made (a TOML file's layout). */
export function newDraft(
  role: "server" | "client",
  source: string,
  problems: Problems = new Problems(),
): Draft {
  const d: Draft = {
    // Only what no key sets: every key fills in its own default below (the key table fails to
    // compile when a model field has no key). The client's leg kind follows its URLs.
    cfg: {
      role,
      source,
      warnings: [],
      server: { tls: null },
      client: { legKind: "ws", socks5: null },
    } as unknown as Config,
    socks: {} as SocksDraft,
    serverTls: {} as TlsServerConfig,
    origins: new Map(),
    problems,
    unknown: [],
  };
  for (const spec of KEYS) store(d, spec, convert(spec, spec.default, `${spec.path} (default)`));
  return d;
}

/** The object holding a key's value in the draft (made on first use), and the field's name. */
function slot(d: Draft, spec: KeySpec): [Record<string, unknown>, string] {
  const parts = spec.to.split(".");
  const field = parts.pop()!;
  const parent = parts.join(".");
  const holder = parent === "client.socks5"
    ? d.socks
    : parent === "server.tls"
    ? d.serverTls
    : parts.reduce<Record<string, unknown>>(
      (o, p) => (o[p] ??= {}) as Record<string, unknown>,
      d.cfg as unknown as Record<string, unknown>,
    );
  return [holder as unknown as Record<string, unknown>, field];
}

/** The current value of a key (after `settle`, too: the flat groups stay in the draft). */
export function valueOf(d: Draft, spec: KeySpec): unknown {
  const [o, f] = slot(d, spec);
  return o[f];
}

function store(d: Draft, spec: KeySpec, v: unknown): void {
  const [o, f] = slot(d, spec);
  o[f] = spec.parse ? spec.parse(v as never) : v;
}

/** A raw value (YAML scalar or list, or a string from the environment or a flag) as its kind. */
function convert(spec: KeySpec, raw: unknown, label: string): unknown {
  const bad = (what: string) =>
    new ConfigError(`${label}: ${spec.secret ? "the value" : shown(raw)} is not ${what}`);
  switch (spec.kind) {
    case "string":
      if (typeof raw !== "string") throw bad("a string");
      if (spec.values && !spec.values.includes(raw)) throw bad(`one of ${spec.values.join(", ")}`);
      return raw;
    case "bool": {
      const s = typeof raw === "string" || typeof raw === "number" ? String(raw).toLowerCase() : "";
      if (typeof raw === "boolean") return raw;
      if (s === "true" || s === "1") return true;
      if (s === "false" || s === "0") return false;
      throw bad("true or false");
    }
    case "int":
    case "number": {
      const n = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
      if (typeof n !== "number" || !Number.isFinite(n)) throw bad("a number");
      if (spec.kind === "int" && !Number.isInteger(n)) throw bad("a whole number");
      return n;
    }
    case "duration":
      return parseDuration(raw, label);
    case "size":
      return parseSize(raw, label);
    case "list":
      if (typeof raw === "string") return listText(raw, bad);
      if (Array.isArray(raw) && raw.every((x) => typeof x === "string")) return raw;
      throw bad("a list of strings");
  }
}

/**
 * A list from the environment or `--set`: a JSON list (`["443=127.0.0.1:8443", "80=8080"]`) or
 * entries separated by commas. An entry that starts with a bracket (`[::1]:80=h:80`) ends with a
 * port, so text in brackets, or opening with `["`, is meant as JSON.
 */
function listText(raw: string, bad: (what: string) => ConfigError): string[] {
  const t = raw.trim();
  if (!(t.startsWith("[") && t.endsWith("]")) && !/^\[\s*"/.test(t)) {
    return t.split(",").map((x) => x.trim()).filter(Boolean);
  }
  let v: unknown;
  try {
    v = JSON.parse(t);
  } catch (e) {
    throw bad(`a JSON list (${(e as Error).message}); or give the entries separated by commas`);
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string" || typeof x === "number")) {
    throw bad("a JSON list of strings");
  }
  return v.map(String);
}

/**
 * Converts a raw value to the key's type and stores it; `label` names the key and its source in
 * messages and is remembered for the checks that run after merging. A value that does not convert
 * is the key's problem, and the key keeps its earlier value.
 */
export function assign(d: Draft, spec: KeySpec, raw: unknown, label: string): void {
  d.problems.catch(spec.path, () => {
    const v = convert(spec, raw, label);
    try {
      store(d, spec, v);
    } catch (e) {
      // The list parsers name the entry; put the key and its source in front.
      if (e instanceof ConfigError) throw new ConfigError(`${label}: ${e.message}`);
      throw e;
    }
    d.origins.set(spec.path, label);
  });
}

/**
 * For a required key missing under `names` (its names in the sources: path, variable, Backhaul
 * key): `; is "auth.kye" (t.yaml line 3) a misspelling of it?` when a name given that is no key
 * is a near miss of one, else "".
 */
export function nearMiss(d: Draft, names: string[]): string {
  const u = d.unknown.find((u) => nearest(u.name, names) !== undefined);
  return u ? `; is "${u.name}" (${u.where}) a misspelling of it?` : "";
}

/** Moves the flat SOCKS5 and TLS settings into the model once every source is merged. */
export function settle(d: Draft): Config {
  const { cfg, socks, serverTls } = d;
  cfg.client.socks5 = socks.enabled
    ? { listen: socks.listen, username: socks.username, password: socks.password }
    : null;
  cfg.server.tls = serverTls.certFile || serverTls.keyFile ? { ...serverTls } : null;
  return cfg;
}
