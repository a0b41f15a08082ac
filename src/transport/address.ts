/** Parsing of "host:port" listen and dial addresses, with IPv6 in brackets and ":port" shorthand. */

import { TransportError } from "./socket.ts";

export interface HostPort {
  hostname: string;
  port: number;
}

/** ":8080" binds every IPv4 address, like the Go originals; "[::]:8080" binds IPv6 too. */
export function parseHostPort(s: string, defaultHost = "0.0.0.0"): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(s.trim());
  if (!m) throw new TransportError(`"${s}" is not host:port`);
  const port = Number(m[3]);
  if (port < 0 || port > 65535) throw new TransportError(`port ${port} in "${s}" is out of range`);
  return { hostname: m[1] ?? (m[2] || defaultHost), port };
}

export function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}
