/**
 * Authenticated abuse of a running server, for the memory test and `deno task abuse`: a key holder
 * opens more sessions than the server allows, fills each with streams whose target never reads
 * (the exit queues what it cannot write) and streams whose target sends without end (the exit
 * fills the session's replay ring), then drops every leg without a word, so each session sits
 * waiting for a resume. Everything targets 127.0.0.1.
 */

import { loadYamlSupport, parseConfigText } from "../../src/config/load.ts";
import { Flag } from "../../src/protocol/frame.ts";
import { encodeHandshakeFrame } from "../../src/protocol/handshake_frame.ts";
import { deriveKeys, encodeHello, Role } from "../../src/protocol/handshake.ts";
import { Session } from "../../src/session/session.ts";
import { readWelcome } from "../../src/session/welcome.ts";
import { Mux, muxLimits } from "../../src/mux/mux.ts";
import { TcpLeg } from "../../src/transport/tcp_leg.ts";
import { newRuntime } from "../../src/runtime/context.ts";
import { serveTcp, type TestServer, writeAll } from "./net.ts";
import { TEST_KEY } from "./tunnel.ts";
import { nodeArgs, type NodeProcess, spawnNode } from "./process.ts";
import { DEPLOYED_ENV } from "../../src/service/unit.ts";

await loadYamlSupport();

/**
 * A server as the abuse targets it: raw TCP legs on `legPort`, private targets allowed, sessions
 * kept `resumeTimeout` after their legs drop, and the allocator setting it is deployed with.
 */
export function spawnAbuseServer(
  legPort: number,
  resumeTimeout: string,
  env: Record<string, string> = {},
): NodeProcess {
  return spawnNode(
    nodeArgs("server", {
      "server.upstream_addr": `127.0.0.1:${legPort}`,
      "server.downstream_addr": `127.0.0.1:${legPort}`,
      "server.transport": "tcp",
      "server.allow_private": "true",
      "session.resume_timeout": resumeTimeout,
    }),
    { HT_AUTH_KEY: TEST_KEY, ...DEPLOYED_ENV, ...env },
  );
}

export interface AbusePlan {
  legPort: number;
  sessions: number;
  /** Streams per session to a target that never reads, each sent a full window. */
  stuckStreams: number;
  /** Streams per session to a target that sends without end. */
  floodStreams: number;
}

export interface AbuseResult {
  sessionsOpened: number;
  sessionsRefused: number;
  streamsOpened: number;
  /** The attacker's own session objects, legs already gone: close them to stop their timers. */
  sessions: Session[];
}

/** A target that accepts and never reads, and one that sends zeros until the peer goes. */
export function abuseTargets(): { stuck: TestServer; flood: TestServer; close(): Promise<void> } {
  const release: (() => void)[] = [];
  const stuck = serveTcp(() => new Promise<void>((r) => release.push(r)));
  const flood = serveTcp(async (c) => {
    const block = new Uint8Array(64 * 1024);
    for (;;) await writeAll(c, block);
  });
  return {
    stuck,
    flood,
    async close() {
      for (const r of release) r();
      await Promise.all([stuck.close(), flood.close()]);
    },
  };
}

/** Runs the plan against the server and returns once every leg has been dropped. */
export async function abuse(
  plan: AbusePlan,
  targets: { stuck: number; flood: number },
): Promise<AbuseResult> {
  const keys = deriveKeys(TEST_KEY);
  const cfg = parseConfigText("", "yaml", "abuse", {
    role: "client",
    env: { HT_AUTH_KEY: TEST_KEY, HT_LOG_LEVEL: "error" },
  }).session;
  // The attacker's own process state, apart from any server this process runs.
  const rt = newRuntime();
  const result: AbuseResult = {
    sessionsOpened: 0,
    sessionsRefused: 0,
    streamsOpened: 0,
    sessions: [],
  };
  const chunk = new Uint8Array(cfg.maxFramePayload);
  const one = async () => {
    const id = crypto.getRandomValues(new Uint8Array(16));
    const hello = encodeHello(keys, Role.BOTH, 0, id, 0);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: plan.legPort });
    await writeAll(conn, encodeHandshakeFrame(id, hello));
    const w = await readWelcome(new TcpLeg(conn, "abuse"), keys, hello, 10_000).catch(() => null);
    if (!w || w.status !== 0) {
      result.sessionsRefused++;
      w?.leg.close();
      return;
    }
    result.sessionsOpened++;
    const s = new Session({
      id,
      side: "client",
      key: w.sessionKey!,
      hmac: false,
      cfg,
      resumable: true,
      deps: rt,
    });
    s.sendConfirm();
    const mux = new Mux(s, { ...muxLimits(cfg), onOpen: null, deps: rt });
    s.attachLeg(w.leg, Role.BOTH, w.recvAck);
    result.sessions.push(s);
    const opened = [];
    for (let i = 0; i < plan.stuckStreams; i++) {
      opened.push(
        (async () => {
          const st = mux.open({ host: "127.0.0.1", port: targets.stuck });
          await st.opened;
          result.streamsOpened++;
          // A whole window, ignoring that nothing is ever consumed.
          for (let sent = 0; sent < cfg.streamWindow; sent += chunk.length) {
            await s.send(Flag.DATA, st.id, chunk.subarray(0, cfg.streamWindow - sent));
          }
        })().catch(() => {}),
      );
    }
    for (let i = 0; i < plan.floodStreams; i++) {
      opened.push(
        mux.open({ host: "127.0.0.1", port: targets.flood }).opened.then(() => {
          result.streamsOpened++;
        }, () => {}),
      );
    }
    await Promise.all(opened);
    await s.drained();
    // Gone without a word: the server keeps the session for a resume that never comes.
    conn.close();
  };
  const parallel = 16;
  for (let i = 0; i < plan.sessions; i += parallel) {
    await Promise.all(
      Array.from({ length: Math.min(parallel, plan.sessions - i) }, () => one().catch(() => {})),
    );
  }
  return result;
}
