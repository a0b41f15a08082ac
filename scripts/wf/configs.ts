/**
 * The tunnel configurations the website-fingerprinting benchmark compares: a name, what it
 * defends with, and the YAML the server and the client get on top of the benchmark's base (split
 * WebSocket legs on loopback, a fresh key, the exit allowed to dial the loopback test sites).
 * In the snippets, `{up}` and `{down}` stand for the client's upstream and downstream leg URLs,
 * for configurations that open more legs to the same listeners (each is its own connection).
 */

import { parse, stringify } from "yaml";

export interface WfConfig {
  about: string;
  server: string;
  client: string;
}

const both = (yaml: string) => ({ server: yaml, client: yaml });
const extraLegs = (n: number) =>
  `client:\n  upstream_urls: [${Array(n).fill('"{up}"').join(", ")}]\n` +
  `  downstream_urls: [${Array(n).fill('"{down}"').join(", ")}]\n`;

export const CONFIGS: Record<string, WfConfig> = {
  undefended: { about: "one upstream and one downstream WebSocket leg", server: "", client: "" },
  encrypted: { about: "frames encrypted", ...both("session:\n  encrypt: true\n") },
  light: { about: "light shaping (padding, cover)", ...both("session:\n  shaping: light\n") },
  strong: { about: "strong shaping (padding, cover)", ...both("session:\n  shaping: strong\n") },
  split2: { about: "2 legs per direction", server: "", client: extraLegs(1) },
  split3: { about: "3 legs per direction", server: "", client: extraLegs(2) },
  "strong-split3": {
    about: "strong shaping over 3 legs per direction",
    server: "session:\n  shaping: strong\n",
    client: "session:\n  shaping: strong\n" + extraLegs(2),
  },
};

export const DEFAULT_CONFIGS = Object.keys(CONFIGS);

/**
 * Resolves `--configs` entries: a name from CONFIGS, or `alias=name` to run one under another name
 * (two copies of a configuration measure how far results swing between identical runs).
 */
export function resolveConfigs(list: string[]): { name: string; config: WfConfig }[] {
  const out = list.map((entry) => {
    const [alias, base = alias] = entry.split("=");
    const config = CONFIGS[base];
    if (!config) {
      throw new Error(`unknown configuration "${base}"; known: ${DEFAULT_CONFIGS.join(", ")}`);
    }
    return { name: alias, config };
  });
  const names = out.map((c) => c.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new Error(`configuration "${dup}" named twice (use alias=name for a copy)`);
  return out;
}

type Tree = Record<string, unknown>;

function merge(a: Tree, b: Tree): Tree {
  const out: Tree = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = prev && v && typeof prev === "object" && typeof v === "object" &&
        !Array.isArray(prev) && !Array.isArray(v)
      ? merge(prev as Tree, v as Tree)
      : v;
  }
  return out;
}

export interface Ports {
  up: number;
  down: number;
  socks: number;
}

/** The server's and the client's YAML files' text for `config` on `ports` with `key`. */
export function renderConfig(
  config: WfConfig,
  ports: Ports,
  key: string,
): { server: string; client: string } {
  const up = `ws://127.0.0.1:${ports.up}/upstream`;
  const down = `ws://127.0.0.1:${ports.down}/downstream`;
  const snippet = (yaml: string) =>
    (parse(yaml.replaceAll("{up}", up).replaceAll("{down}", down)) ?? {}) as Tree;
  const auth = { key };
  const server = merge({
    auth,
    server: {
      upstream_addr: `127.0.0.1:${ports.up}`,
      downstream_addr: `127.0.0.1:${ports.down}`,
      transport: "ws",
      allow_private: true,
    },
  }, snippet(config.server));
  const client = merge({
    auth,
    client: {
      upstream_url: up,
      downstream_url: down,
      socks5: { listen: `127.0.0.1:${ports.socks}` },
    },
  }, snippet(config.client));
  return { server: stringify(server), client: stringify(client) };
}
