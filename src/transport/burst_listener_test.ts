import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import {
  AcceptErrors,
  acceptLoop,
  type Acceptor,
  burstSocketsFor,
  isConnectionError,
  listenBurst,
  MAX_SOCKETS,
} from "./burst_listener.ts";
import { canReset, ResetBatcher } from "./socket_reset.ts";

/** Listening sockets on `port` (any address), from /proc/net/tcp and tcp6. */
function listeningSockets(port: number): number {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
  let n = 0;
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of Deno.readTextFileSync(f).split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 3 && `${cols[1]} `.endsWith(hex) && cols[3] === "0A") n++;
    }
  }
  return n;
}

async function connectAndClose(port: number): Promise<void> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  c.close();
}

Deno.test("listenBurst: a second listener on a taken port fails with AddrInUse naming the port", () => {
  const first = listenBurst("127.0.0.1", 0);
  const port = first.addr.port;
  try {
    for (const sockets of [MAX_SOCKETS, 2, 1]) {
      assert.throws(
        () => listenBurst("127.0.0.1", port, { sockets }).close(),
        (e) =>
          e instanceof Deno.errors.AddrInUse &&
          e.message.includes(`port ${port} on 127.0.0.1 is already in use`),
        `sockets: ${sockets}`,
      );
    }
    if (Deno.build.os === "linux") {
      assert.equal(listeningSockets(port), MAX_SOCKETS, "the failed attempts left nothing bound");
    }
  } finally {
    first.close();
  }
  // A port held by an ordinary listener (another program) is refused the same way.
  const other = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const held = (other.addr as Deno.NetAddr).port;
    assert.throws(
      () => listenBurst("127.0.0.1", held).close(),
      (e) => e instanceof Deno.errors.AddrInUse && e.message.includes(`port ${held}`),
    );
  } finally {
    other.close();
  }
});

Deno.test("listenBurst: port 0 gets one ephemeral port shared by the whole group; close frees it", async () => {
  for (const sockets of [MAX_SOCKETS, 3, 1]) {
    const l = listenBurst("127.0.0.1", 0, { sockets });
    const port = l.addr.port;
    assert.ok(port > 0);
    let accepted = 0;
    l.serve((c) => {
      accepted++;
      c.close();
    });
    try {
      if (Deno.build.os === "linux") assert.equal(listeningSockets(port), sockets);
      await Promise.all(Array.from({ length: 50 }, () => connectAndClose(port)));
      while (accepted < 50) await new Promise((r) => setTimeout(r, 5));
    } finally {
      l.close();
    }
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(listeningSockets(port), 0, `port ${port} released`);
    // Rebinding right away works: nothing of the group is left.
    listenBurst("127.0.0.1", port, { sockets }).close();
  }
});

Deno.test("burstSocketsFor: published ports share a descriptor budget", () => {
  assert.deepEqual(
    [1, 2, 8, 9, 16, 32, 33, 100, 1000].map(burstSocketsFor),
    [8, 8, 8, 7, 4, 2, 1, 1, 1],
  );
  for (const n of [1, 8, 16, 32, 33, 1000]) {
    assert.ok(n * burstSocketsFor(n) <= Math.max(64, n), `${n} ports`);
  }
});

interface Fake extends Acceptor {
  /** Pending accept() calls wait for these. */
  push(r: { conn: Deno.TcpConn } | { error: Error }): void;
  calls: number;
}

function fakeListener(): Fake {
  const queue: ({ conn: Deno.TcpConn } | { error: Error })[] = [];
  let wake: (() => void) | null = null;
  const f: Fake = {
    calls: 0,
    push(r) {
      queue.push(r);
      const w = wake;
      wake = null;
      w?.();
    },
    async accept() {
      f.calls++;
      while (!queue.length) await new Promise<void>((r) => wake = r);
      const r = queue.shift()!;
      if ("error" in r) throw r.error;
      return r.conn;
    },
  };
  return f;
}

function emfile(): Error {
  return Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
}

function enfile(): Error {
  return Object.assign(new Error("Too many open files in system (os error 23)"), {
    code: "ENFILE",
  });
}

async function capture(records: LogRecord[]): Promise<void> {
  await configure({
    reset: true,
    sinks: { mem: (r: LogRecord) => records.push(r) },
    loggers: [
      { category: ["half-tunnel", "listen"], lowestLevel: "debug", sinks: ["mem"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
}

const text = (r: LogRecord) => r.message.map(String).join("");

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timeout: ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

Deno.test("acceptLoop: a flood of accept errors is one warning per burst, and accepting goes on", async () => {
  const records: LogRecord[] = [];
  await capture(records);
  const l = fakeListener();
  const errors = new AcceptErrors("127.0.0.1:4242", 150);
  const stop = new AbortController();
  const got: unknown[] = [];
  const conn = { close() {} } as Deno.TcpConn;
  const loop = acceptLoop(l, (c) => got.push(c), errors, stop.signal, { min: 0, max: 2 });
  try {
    for (let i = 0; i < 500; i++) l.push({ error: emfile() });
    l.push({ conn });
    await until(() => got.length === 1, "the connection after the errors");
    assert.equal(got[0], conn);
    assert.equal(l.calls, 502, "accept was retried after every error");
    assert.equal(records.length, 1, "one line while the burst goes on");
    assert.equal(records[0].level, "warning");
    assert.match(text(records[0]), /127\.0\.0\.1:4242 failed: Too many open files/);
    await until(() => records.length === 2, "the burst summary");
    assert.match(text(records[1]), /on 127\.0\.0\.1:4242 ended: 500 error\(s\)/);
    assert.equal(errors.count, 0);

    // A later burst is reported again.
    for (let i = 0; i < 20; i++) l.push({ error: enfile() });
    l.push({ conn });
    await until(() => got.length === 2, "the connection after the second burst");
    stop.abort();
    errors.close();
    assert.equal(records.length, 4);
    assert.match(text(records[2]), /failed: Too many open files in system/);
    assert.match(text(records[3]), /20 error\(s\).*listener closed/);
    // After close the runtime fails accept() with Interrupted or BadResource: the loop just ends.
    l.push({ error: new Deno.errors.Interrupted("operation canceled") });
    await loop;
    assert.equal(records.length, 4, "close is not an error");
  } finally {
    stop.abort();
    errors.close();
    await reset();
  }
});

Deno.test("acceptLoop: close() during the backoff ends the loop at once", async () => {
  const records: LogRecord[] = [];
  await capture(records);
  const l = fakeListener();
  const errors = new AcceptErrors("127.0.0.1:4243");
  const stop = new AbortController();
  const loop = acceptLoop(l, () => {}, errors, stop.signal, { min: 60_000, max: 60_000 });
  try {
    l.push({ error: emfile() });
    await until(() => records.length === 1, "the warning");
    stop.abort();
    errors.close();
    await loop; // would hang for a minute (and leak the timer) if the backoff ignored close()
    assert.equal(l.calls, 1);
    assert.match(text(records[1]), /1 error\(s\).*listener closed/);
  } finally {
    await reset();
  }
});

Deno.test("acceptLoop: a handler that throws costs only its connection", async () => {
  const records: LogRecord[] = [];
  await capture(records);
  const l = fakeListener();
  const errors = new AcceptErrors("127.0.0.1:4244");
  const stop = new AbortController();
  let closed = 0, handled = 0;
  const conn = { close: () => closed++ } as unknown as Deno.TcpConn;
  const loop = acceptLoop(
    l,
    () => {
      if (handled++ === 0) throw new Error("handler bug");
    },
    errors,
    stop.signal,
  );
  try {
    l.push({ conn });
    l.push({ conn });
    await until(() => handled === 2, "second connection");
    assert.equal(closed, 1);
    assert.match(text(records[0]), /handler bug/);
  } finally {
    stop.abort();
    errors.close();
    l.push({ error: new Deno.errors.BadResource("closed") });
    await loop;
    await reset();
  }
});

Deno.test("acceptLoop: connections reset before they were accepted are skipped at once; EMFILE backs off", async () => {
  const records: LogRecord[] = [];
  await capture(records);
  const errors = new AcceptErrors("127.0.0.1:4245");
  const stop = new AbortController();
  const got: unknown[] = [];
  const conn = { close() {} } as Deno.TcpConn;
  const l = fakeListener();
  // A backoff of a minute: any sleep would hold back the connection pushed after the errors.
  const loop = acceptLoop(l, (c) => got.push(c), errors, stop.signal, { min: 60_000, max: 60_000 });
  try {
    const lost = [
      new Deno.errors.NotConnected("Transport endpoint is not connected (os error 107)"),
      new Deno.errors.ConnectionAborted("Software caused connection abort (os error 103)"),
      new Deno.errors.ConnectionReset("Connection reset by peer (os error 104)"),
      Object.assign(new Error("Protocol error (os error 71)"), { code: "EPROTO" }),
      Object.assign(new Error("Operation not permitted (os error 1)"), { code: "EPERM" }),
    ];
    for (let i = 0; i < 100; i++) for (const e of lost) l.push({ error: e });
    l.push({ conn });
    await until(() => got.length === 1, "the connection after 500 resets");
    assert.equal(l.calls, 502, "accept() was called again after every error, and once more");
    assert.equal(errors.count, 0, "no backoff");
    assert.ok(records.every((r) => r.level === "debug"), records.map(text).join("\n"));
    assert.equal(records.length, lost.length, "one debug line per kind of error");

    // Running out of descriptors does sleep: the connection behind the error waits.
    l.push({ error: emfile() });
    l.push({ conn });
    await until(() => errors.count === 1, "the EMFILE");
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got.length, 1, "the loop backs off after EMFILE");
    assert.equal(l.calls, 502, "and calls accept() no more meanwhile");
    assert.match(text(records.at(-1)!), /failed: Too many open files \(os error 24\)/);
  } finally {
    stop.abort();
    errors.close();
    await loop;
    await reset();
  }
  // The summary of the skipped connections is written when the listener closes.
  assert.ok(records.some((r) => /99 more connections to 127\.0\.0\.1:4245/.test(text(r))));
});

Deno.test({
  name:
    "acceptLoop: the runtime's error for a connection reset in the backlog is a connection error",
  ignore: !canReset(),
  async fn() {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    const clients = await Promise.all(
      Array.from({ length: 20 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
    );
    // Reset (SO_LINGER 0) while they wait in the backlog, before anything accepts them.
    const resets = new ResetBatcher();
    for (const c of clients) resets.reset(c);
    await new Promise((r) => setTimeout(r, 50));
    const errors = new AcceptErrors(`127.0.0.1:${port}`);
    const stop = new AbortController();
    const got: Deno.TcpConn[] = [];
    const failures: unknown[] = [];
    const counting: Acceptor = {
      accept: () =>
        l.accept().catch((e) => {
          failures.push(e);
          throw e;
        }),
    };
    const loop = acceptLoop(counting, (c) => got.push(c), errors, stop.signal, {
      min: 60_000,
      max: 60_000,
    });
    try {
      const next = await Deno.connect({ hostname: "127.0.0.1", port });
      await until(() => got.length === 1, "the ordinary connection behind the resets");
      next.close();
      assert.ok(failures.length > 0, "the resets failed accept()");
      for (const e of failures) assert.ok(isConnectionError(e), String(e));
      assert.equal(errors.count, 0, "no backoff");
    } finally {
      stop.abort();
      errors.close();
      l.close();
      await loop;
      for (const c of got) c.close();
    }
  },
});
