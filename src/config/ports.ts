/**
 * Parsers for the port-mapping strings of the reverse tunnel (Backhaul's `ports` forms, plus the
 * documented `"443-600:5201"`, bind-address ranges and bracketed IPv6), `forwarder` entries and the
 * forward tunnel's static forwards.
 */

import { ConfigError } from "./error.ts";
import type { PortMapping, StaticForward } from "./model.ts";

const HOST_PORT = /^(?:\[([^\]]+)\]:|([^:\[\]=]+):)?(\d+)(?:-(\d+))?$/;

function port(text: string, entry: string): number {
  const p = Number(text);
  if (!/^\d+$/.test(text) || p < 1 || p > 65535) {
    throw new ConfigError(`"${entry}": port ${text} is out of range 1..65535`);
  }
  return p;
}

function side(text: string, entry: string, allowRange: boolean) {
  const m = HOST_PORT.exec(text.trim());
  if (!m) {
    throw new ConfigError(`"${entry}": "${text}" is not [host:]port${allowRange ? "[-port]" : ""}`);
  }
  const host = m[1] ?? m[2] ?? "";
  const start = port(m[3], entry);
  const end = m[4] !== undefined ? port(m[4], entry) : start;
  if (m[4] !== undefined && !allowRange) {
    throw new ConfigError(`"${entry}": a range is not allowed in "${text}"`);
  }
  if (end < start) throw new ConfigError(`"${entry}": range ${start}-${end} is reversed`);
  return { host, start, end };
}

export function parsePortMapping(entry: string): PortMapping {
  if (typeof entry !== "string" || !entry.trim()) throw new ConfigError(`ports: empty entry`);
  let local: string, remote: string | null;
  const eq = entry.split("=");
  if (eq.length > 2) throw new ConfigError(`"${entry}": more than one "="`);
  if (eq.length === 2) {
    [local, remote] = eq;
  } else {
    // "443-600:5201" (a range, then ":port") means the same as "443-600=5201".
    const m = /^(.*\d+-\d+):(\d+)$/.exec(entry.trim());
    [local, remote] = m ? [m[1], m[2]] : [entry, null];
  }
  const l = side(local, entry, true);
  let targetHost = "";
  let targetPort: number | null = l.start === l.end ? l.start : null;
  if (remote !== null) {
    const r = side(remote, entry, false);
    targetHost = r.host;
    targetPort = r.start;
  }
  return {
    bindHost: l.host || "0.0.0.0",
    bindPortStart: l.start,
    bindPortEnd: l.end,
    targetHost,
    targetPort,
    source: entry,
  };
}

/** `"PORT=host:port"`: the client dials host:port when the server sends PORT. */
export function parseForwarder(entry: string): [number, { host: string; port: number }] {
  const [k, v, extra] = String(entry).split("=");
  if (v === undefined || extra !== undefined) {
    throw new ConfigError(`forwarder: "${entry}" is not PORT=host:port`);
  }
  const r = side(v, entry, false);
  if (!r.host) throw new ConfigError(`forwarder: "${entry}" needs a host in host:port`);
  return [port(k.trim(), entry), { host: r.host, port: r.start }];
}

/** `"[host:]port=host:port"`: listen locally (127.0.0.1 by default), exit to host:port. */
export function parseStaticForward(entry: string): StaticForward {
  const [l, r, extra] = String(entry).split("=");
  if (r === undefined || extra !== undefined) {
    throw new ConfigError(`forwards: "${entry}" is not [host:]port=host:port`);
  }
  const a = side(l, entry, false), b = side(r, entry, false);
  if (!b.host) throw new ConfigError(`forwards: "${entry}" needs a target host`);
  return {
    listenHost: a.host || "127.0.0.1",
    listenPort: a.start,
    targetHost: b.host,
    targetPort: b.start,
    source: entry,
  };
}
