/**
 * The server's leg listeners: one per listen address (a shared address takes both paths), each
 * accepting only the leg roles that belong on its paths, handing hellos to the session registry.
 */

import { getLogger } from "@logtape/logtape";
import type { ServerConfig } from "../config/model.ts";
import { Role } from "../protocol/handshake.ts";
import { formatHostPort, parseHostPort } from "../transport/address.ts";
import { type LegListener, listenLegs } from "../transport/listen.ts";
import type { OnHello, QuicOptions } from "../transport/kind.ts";
import { kindsServedBy, transportByKind } from "../transport/registry.ts";
import type { SocketOptions } from "../transport/socket.ts";
import { errText } from "../observe/error_text.ts";

const log = getLogger(["half-tunnel", "server"]);

/** A path and the leg roles it accepts. */
type PathRoles = [string, number[]];

/** One listen address, the paths it serves, and the key that set it (for errors). */
interface LegGroup {
  addr: string;
  paths: PathRoles[];
  key: "server.upstream_addr" | "server.downstream_addr";
}

/**
 * Binds the leg listeners of `sc`, adding each bound port to `ownPorts`. On a failure the
 * listeners already bound are closed before the error is thrown, naming the address and the key
 * as the config spells it (`nameOf`: e.g. `[server] bind_addr (s.toml line 2)`).
 */
export async function listenLegGroups(
  sc: ServerConfig,
  quic: QuicOptions,
  socket: SocketOptions,
  onHello: OnHello,
  ownPorts: Set<number>,
  nameOf: (key: string) => string,
): Promise<LegListener[]> {
  const listeners: LegListener[] = [];
  try {
    for (const g of legGroups(sc)) {
      const spec = {
        addr: g.addr,
        routes: routesOf(g.paths),
        kind: sc.legKind,
        tls: sc.tls,
        socket,
        helloTimeoutMs: 10_000,
        padding: sc.httpPadding,
        quic,
      };
      const failed = (e: unknown): never => {
        throw new Error(
          `cannot listen on ${g.addr} for tunnel legs (${nameOf(g.key)}): ${errText(e)}`,
        );
      };
      const l = await listenLegs(spec, onHello).catch(failed);
      listeners.push(l);
      ownPorts.add(l.addr.port);
      logListening(sc, g, l.addr);
      if (sc.quic && sc.legKind !== "quic") {
        // QUIC on UDP at the port the TCP listener got: one listener to the rest of the server.
        const addr = formatHostPort(l.addr.hostname, l.addr.port);
        const q = await listenLegs({ ...spec, addr, kind: "quic" }, onHello).catch(failed);
        listeners[listeners.length - 1] = {
          addr: l.addr,
          close: () => Promise.all([l.close(), q.close()]).then(() => {}),
        };
        log.info("listening for quic legs on {addr} (UDP), beside them", { addr });
      }
    }
  } catch (e) {
    for (const l of listeners) await l.close();
    throw e;
  }
  return listeners;
}

/**
 * Each path (and a raw listener of its own) takes only the legs that belong there: a bidirectional
 * leg on either, client-to-server legs (and pool legs) upstream, the server-to-client leg
 * downstream.
 */
function legGroups(sc: ServerConfig): LegGroup[] {
  const up: PathRoles = [sc.upstreamPath, [Role.UP, Role.BOTH, Role.POOL]];
  const down: PathRoles = [sc.downstreamPath, [Role.DOWN, Role.BOTH]];
  const upKey = "server.upstream_addr", downKey = "server.downstream_addr";
  return sameAddr(sc.upstreamAddr, sc.downstreamAddr)
    ? [{ addr: sc.upstreamAddr, paths: [up, down], key: upKey }]
    : [
      { addr: sc.upstreamAddr, paths: [up], key: upKey },
      { addr: sc.downstreamAddr, paths: [down], key: downKey },
    ];
}

function logListening(sc: ServerConfig, g: LegGroup, addr: Deno.NetAddr): void {
  // The config validated the kind against the registry.
  const transport = transportByKind(sc.legKind)!;
  // WebSocket legs first, then the others the listener takes beside them (HTTP legs).
  const [kind, ...beside] = kindsServedBy(sc.legKind).map((k) => {
    const t = transportByKind(k)!;
    return (sc.tls ? t.schemes.tls : t.schemes.plain).slice(0, -1);
  });
  log.info("listening for {kind} legs on {addr}{paths}{beside}", {
    kind,
    beside: beside.length ? `; ${beside.join(", ")} legs beside them` : "",
    addr: formatHostPort(addr.hostname, addr.port),
    paths: transport.paths ? ` (${g.paths.map(([p]) => p).join(", ")})` : "",
  });
}

/** Path → roles; two roles' paths may be the same string, which then takes both. */
function routesOf(paths: PathRoles[]): Map<string, ReadonlySet<number>> {
  const m = new Map<string, Set<number>>();
  for (const [p, roles] of paths) {
    const set = m.get(p) ?? new Set<number>();
    for (const r of roles) set.add(r);
    m.set(p, set);
  }
  return m;
}

function sameAddr(a: string, b: string): boolean {
  const x = parseHostPort(a), y = parseHostPort(b);
  // Port 0 asks for a fresh port each time, so two ":0" listeners are two listeners.
  return x.port !== 0 && x.hostname === y.hostname && x.port === y.port;
}
