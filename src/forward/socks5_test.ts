import assert from "node:assert/strict";
import {
  acceptSocks5,
  encodeReply,
  parseAuthRequest,
  parseGreeting,
  parseRequest,
  SocksError,
} from "./socks5.ts";

const req = (atyp: number, addr: number[], port = 443) =>
  new Uint8Array([5, 1, 0, atyp, ...addr, port >> 8, port & 255]);

Deno.test("requests parse for IPv4, IPv6 and domain names, even one byte at a time", () => {
  const cases: [Uint8Array, string, string][] = [
    [req(1, [93, 184, 216, 34]), "93.184.216.34", "ipv4"],
    [req(4, [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1]), "2001:db8::1", "ipv6"],
    [req(3, [11, ...new TextEncoder().encode("example.org")]), "example.org", "domain"],
  ];
  for (const [bytes, host, type] of cases) {
    for (let i = 0; i < bytes.length; i++) {
      assert.equal(parseRequest(bytes.subarray(0, i)), null, `prefix ${i}`);
    }
    const r = parseRequest(bytes)!;
    assert.deepEqual(r.value, { cmd: 1, target: { host, port: 443, type } });
    assert.equal(r.used, bytes.length);
  }
});

Deno.test("malformed input names what was wrong", () => {
  assert.throws(
    () => parseGreeting(new Uint8Array([4, 1, 0])),
    /unsupported version 0x04 in greeting/,
  );
  assert.throws(() => parseGreeting(new Uint8Array([5, 0])), /no authentication methods/);
  assert.throws(
    () => parseRequest(req(9, [])),
    (e) => e instanceof SocksError && e.reply === 8 && /0x09/.test(e.message),
  );
  assert.throws(
    () => parseRequest(new Uint8Array([5, 1, 1, 1, 0, 0, 0, 0, 0, 80])),
    /reserved byte is 0x01/,
  );
  assert.throws(() => parseRequest(req(3, [0])), /length 0/);
  assert.throws(() => parseRequest(req(3, [3, 0x61, 0x0a, 0x62])), /byte 0x0a/);
  assert.throws(() => parseRequest(req(1, [1, 2, 3, 4], 0)), /port 0/);
  assert.deepEqual(parseAuthRequest(new Uint8Array([1, 1, 0x61, 2, 0x62, 0x63]))?.value, {
    username: "a",
    password: "bc",
  });
  assert.deepEqual([...encodeReply(5)], [5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...encodeReply(0, { host: "10.0.0.1", port: 1080 })], [
    5,
    0,
    0,
    1,
    10,
    0,
    0,
    1,
    4,
    56,
  ]);
});

async function negotiate(
  bytes: number[],
  auth: { username: string; password: string } | null,
  timeoutMs = 2000,
) {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port });
  const server = await l.accept();
  l.close();
  const result = acceptSocks5(server, { auth, timeoutMs });
  for (const b of bytes) await client.write(new Uint8Array([b])); // byte by byte
  const settled = await result.then((r) => r, (e: Error) => e);
  const answer = new Uint8Array(64);
  let n = 0;
  if (settled instanceof Error) {
    try {
      server.close();
    } catch { /* the timeout already closed it */ }
    for (let r; (r = await client.read(answer.subarray(n))) !== null;) n += r;
  } else {
    await settled.reply(0);
    n = (await client.read(answer)) ?? 0;
    server.close();
  }
  client.close();
  return { settled, answer: [...answer.subarray(0, n)] };
}

Deno.test("negotiation on a socket: no auth, username/password, wrong password, timeout", async () => {
  const ok = await negotiate([5, 1, 0, ...req(1, [127, 0, 0, 1]), 9, 9], null);
  assert.ok(!(ok.settled instanceof Error));
  assert.deepEqual(ok.settled.leftover.length >= 0, true);
  assert.deepEqual(ok.answer.slice(0, 2), [5, 0]);

  const auth = { username: "alice", password: "s3cret" };
  const te = new TextEncoder();
  const cred = (p: string) => [1, 5, ...te.encode("alice"), p.length, ...te.encode(p)];
  const good = await negotiate([5, 1, 2, ...cred("s3cret"), ...req(3, [1, 0x61])], auth);
  assert.ok(!(good.settled instanceof Error));
  assert.deepEqual(good.answer.slice(0, 4), [5, 2, 1, 0]);

  const bad = await negotiate([5, 1, 2, ...cred("wrong!")], auth);
  assert.ok(
    bad.settled instanceof SocksError && /wrong username or password/.test(bad.settled.message),
  );
  assert.deepEqual(bad.answer, [5, 2, 1, 1]);

  const silent = await negotiate([5], null, 200);
  assert.ok(silent.settled instanceof SocksError && /within 200 ms/.test(silent.settled.message));
});
