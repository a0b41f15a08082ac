/**
 * The line a session's end is logged with, the same on the server (registry.ts) and the client
 * (connector.ts): how long it was up, why it ended, and what it carried each way. Directions are
 * the tunnel's (client to server, server to client), so the two sides' lines read alike. The text
 * is rounded for reading; the exact numbers go along as properties for JSON logs.
 */

import type { Session } from "./session.ts";

/** The message, with the properties `sessionEnd` fills in. */
export const SESSION_END = "session {sid} ended after {duration} ({reason}): {up} client to " +
  "server, {down} server to client";

/** The properties of SESSION_END for `s`, up since `since` (ms). */
export function sessionEnd(s: Session, since: number, reason: string) {
  const up = s.side === "client" ? s.bytesSent : s.bytesReceived;
  const down = s.side === "client" ? s.bytesReceived : s.bytesSent;
  const ms = Date.now() - since;
  return {
    sid: s.label,
    reason,
    duration: durationText(ms),
    up: bytesText(up),
    down: bytesText(down),
    seconds: Math.round(ms / 100) / 10,
    bytesUp: up,
    bytesDown: down,
  };
}

const UNITS = ["KiB", "MiB", "GiB", "TiB"];

/** 999 B, 1.5 KiB, 100.0 MiB. */
export function bytesText(n: number): string {
  if (n < 1024) return `${n} B`;
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${UNITS[u]}`;
}

/** 4.2 s, 3m05s, 2h07m. */
export function durationText(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(Math.floor(ms / 100) / 10).toFixed(1)} s`;
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m`;
}
