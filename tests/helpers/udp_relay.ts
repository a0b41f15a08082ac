/**
 * A UDP relay for tests of QUIC legs: it forwards datagrams between its clients and one target,
 * from one socket of its own per client address (as a NAT does), counts what it carried each way,
 * and can be stopped and started again on the same port: a path that goes dark and comes back
 * with new mappings, so the target sees the same client from a new address. Binds 127.0.0.1.
 */

export interface UdpRelay {
  readonly port: number;
  /** Bytes carried from clients to the target, and from the target to clients, since creation. */
  readonly toTarget: number;
  readonly toClients: number;
  /** Client addresses it has made mappings for, since creation. */
  readonly clients: number;
  /** Closes every socket: datagrams to the port are lost until `start`. */
  stop(): Promise<void>;
  /** Binds the same port again, with no mappings. */
  start(): void;
}

/** The largest datagram a UDP socket can take; one buffer per socket, reused for every datagram. */
const MAX_DATAGRAM = 65_535;

export function startUdpRelay(target: Deno.NetAddr | { hostname: string; port: number }): UdpRelay {
  const to: Deno.NetAddr = { transport: "udp", hostname: target.hostname, port: target.port };
  let port = 0;
  let toTarget = 0, toClients = 0, clients = 0;
  let front: Deno.DatagramConn | null = null;
  const mappings = new Map<string, Deno.DatagramConn>();
  const loops = new Set<Promise<void>>();
  const run = (loop: Promise<void>) => {
    // A loop ends when `stop` closes its socket under it.
    const done = loop.catch(() => {}).finally(() => loops.delete(done));
    loops.add(done);
  };

  /** The target's answers on `back`, to the client at `from`. */
  async function answer(back: Deno.DatagramConn, fr: Deno.DatagramConn, from: Deno.NetAddr) {
    const buf = new Uint8Array(MAX_DATAGRAM);
    for (;;) {
      const [d] = await back.receive(buf);
      toClients += d.length;
      await fr.send(d, from);
    }
  }

  async function forward(fr: Deno.DatagramConn) {
    const buf = new Uint8Array(MAX_DATAGRAM);
    for (;;) {
      const [d, addr] = await fr.receive(buf);
      const from = addr as Deno.NetAddr;
      const key = `${from.hostname}:${from.port}`;
      let back = mappings.get(key);
      if (!back) {
        back = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
        mappings.set(key, back);
        clients++;
        run(answer(back, fr, from));
      }
      toTarget += d.length;
      await back.send(d, to);
    }
  }

  function start() {
    if (front) throw new Error("the relay is running already");
    front = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
    port = (front.addr as Deno.NetAddr).port;
    run(forward(front));
  }

  start();
  return {
    get port() {
      return port;
    },
    get toTarget() {
      return toTarget;
    },
    get toClients() {
      return toClients;
    },
    get clients() {
      return clients;
    },
    async stop() {
      for (const s of [front, ...mappings.values()]) {
        try {
          s?.close();
        } catch { /* closed */ }
      }
      front = null;
      mappings.clear();
      await Promise.all([...loops]);
    },
    start,
  };
}
