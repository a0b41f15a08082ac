/**
 * The QUIC identity derived from the shared key: Deno's own QUIC client, given the derived CA and
 * server name, completes a handshake with a server using the derived chain on 127.0.0.1 and carries
 * bytes both ways (also with a CA the client derived in another process); a client deriving from
 * another key, or holding only the right CA or only the right name, fails the handshake; both sides
 * derive the same CA subject and key, by exactly the documented derivation; openssl reads both
 * certificates as designed; and the DER encoder's bytes for the forms the certificates use.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createECDH, X509Certificate } from "node:crypto";
import { until } from "../../tests/helpers/bytes.ts";
import { pattern, sha256, within } from "../../tests/helpers/net.ts";
import { needs } from "../../tests/helpers/tools.ts";
import * as der from "./der.ts";
import {
  type ClientQuicIdentity,
  clientQuicIdentity,
  serverQuicIdentity,
} from "./quic_identity.ts";

const KEY = "quic-identity-test-key-7f3a9c";
const OTHER_KEY = "quic-identity-test-key-other";
const ALPN = ["h3"];
const opensslMissing = await needs("openssl", "openssl");

/** A QUIC server on 127.0.0.1 with `key`'s identity that echoes every bidirectional stream. */
async function echoServer(key: string) {
  const id = await serverQuicIdentity(key);
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({ cert: id.certPem, key: id.keyPem, alpnProtocols: ALPN });
  const conns: Deno.QuicConn[] = [];
  let refused = 0;
  const echo = async (conn: Deno.QuicConn) => {
    for await (const stream of conn.incomingBidirectionalStreams) {
      stream.readable.pipeTo(stream.writable).catch(() => {});
    }
  };
  const accepting = (async () => {
    for await (const incoming of listener) {
      incoming.accept<false>().then((conn) => {
        conns.push(conn);
        echo(conn).catch(() => {});
      }, () => refused++);
    }
  })().catch(() => {}); // the listener ends with a BadResource when the endpoint closes
  return {
    port: endpoint.addr.port,
    conns,
    refused: () => refused,
    async close() {
      for (const c of conns) c.close();
      listener.stop();
      endpoint.close();
      await accepting;
    },
  };
}

function dial(port: number, id: ClientQuicIdentity): Promise<Deno.QuicConn> {
  return within(
    Deno.connectQuic<false>({
      hostname: "127.0.0.1",
      port,
      serverName: id.serverName,
      caCerts: [id.caPem],
      alpnProtocols: ALPN,
    }),
    10_000,
    "QUIC handshake",
  );
}

/** Sends `data` on a new bidirectional stream, closes its side, and returns all it reads back. */
async function roundTrip(conn: Deno.QuicConn, data: Uint8Array): Promise<Uint8Array> {
  const stream = await conn.createBidirectionalStream();
  const writing = (async () => {
    const w = stream.writable.getWriter();
    await w.write(data);
    await w.close();
  })();
  const back = new Uint8Array(
    await within(new Response(stream.readable).arrayBuffer(), 10_000, "echo"),
  );
  await writing;
  return back;
}

/** The certificates of a PEM chain, in order. */
function certs(pem: string): X509Certificate[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/g)!
    .map((p) => new X509Certificate(p));
}

const spki = (c: X509Certificate) =>
  c.publicKey.export({ type: "spki", format: "der" }).toString("hex");

/** clientQuicIdentity(key) as another process derives it. */
async function clientIdentityElsewhere(key: string): Promise<ClientQuicIdentity> {
  const mod = new URL("./quic_identity.ts", import.meta.url).href;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { clientQuicIdentity } from "${mod}";` +
      `console.log(JSON.stringify(await clientQuicIdentity(Deno.env.get("HT_TEST_KEY"))));`,
    ],
    env: { HT_TEST_KEY: key },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("a client with the same key completes the handshake and gets its bytes echoed", async () => {
  const server = await echoServer(KEY);
  const conn = await dial(server.port, await clientQuicIdentity(KEY));
  try {
    assert.equal(conn.protocol, "h3");
    const data = pattern(256 * 1024, 21);
    const back = await roundTrip(conn, data);
    assert.equal(back.length, data.length);
    assert.equal(sha256(back), sha256(data));
    assert.equal(server.refused(), 0);
  } finally {
    conn.close();
    await server.close();
  }
});

Deno.test("a CA derived in another process verifies the server", async () => {
  const [elsewhere, here] = [await clientIdentityElsewhere(KEY), await clientQuicIdentity(KEY)];
  assert.equal(elsewhere.serverName, here.serverName);
  // Equal bytes are not promised (ECDSA may sign with a random nonce): a trust anchor is a subject
  // and a key, and those must match.
  const [a, b] = [certs(elsewhere.caPem)[0], certs(here.caPem)[0]];
  assert.equal(a.subject, b.subject);
  assert.equal(spki(a), spki(b));
  assert.equal(a.serialNumber, b.serialNumber);

  const server = await echoServer(KEY);
  const conn = await dial(server.port, elsewhere);
  try {
    const data = pattern(1000, 22);
    assert.equal(sha256(await roundTrip(conn, data)), sha256(data));
  } finally {
    conn.close();
    await server.close();
  }
});

Deno.test("a client deriving from another key, or with only the right CA or name, fails the handshake", async () => {
  const server = await echoServer(KEY);
  try {
    const right = await clientQuicIdentity(KEY);
    const other = await clientQuicIdentity(OTHER_KEY);
    assert.notEqual(other.serverName, right.serverName);
    const cases: [string, ClientQuicIdentity, RegExp][] = [
      ["another key", other, /UnknownIssuer/],
      ["right name, other CA", { ...other, serverName: right.serverName }, /UnknownIssuer/],
      ["right CA, other name", { ...right, serverName: other.serverName }, /not valid for name/],
    ];
    for (const [what, id, why] of cases) {
      await assert.rejects(dial(server.port, id), why, what);
    }
    await until(() => server.refused() === cases.length, "the server's refusals", 10_000);
    assert.equal(server.conns.length, 0, "the server took no connection");
  } finally {
    await server.close();
  }
});

Deno.test("client and server derive the same CA subject and key; the server's certificate is fresh per call", async () => {
  const client = await clientQuicIdentity(KEY);
  const first = await serverQuicIdentity(KEY);
  const second = await serverQuicIdentity(KEY);
  const [clientCa] = certs(client.caPem);
  for (const s of [first, second]) {
    assert.equal(s.serverName, client.serverName);
    assert.match(s.serverName, /^10\.\d{1,3}\.\d{1,3}\.\d{1,3}$/);
    const [ee, ca, ...rest] = certs(s.certPem);
    assert.equal(rest.length, 0, "the chain is the end entity, then the CA");
    assert.equal(ca.subject, clientCa.subject);
    assert.equal(spki(ca), spki(clientCa));
    assert.ok(ca.ca && !ee.ca);
    assert.equal(ee.issuer, clientCa.subject);
    assert.ok(ee.checkIssued(clientCa) && ee.verify(clientCa.publicKey), "signed by the CA key");
    assert.equal(ee.subject, `CN=${s.serverName}`);
    assert.equal(ee.subjectAltName, `IP Address:${s.serverName}`);
    const from = ee.validFromDate.getTime(), to = ee.validToDate.getTime();
    assert.ok(from < Date.now() - 30 * 60_000 && to > Date.now() + 300 * 86400_000, "valid now");
  }
  const [ee1] = certs(first.certPem), [ee2] = certs(second.certPem);
  assert.notEqual(spki(ee1), spki(ee2), "a fresh key per call");
  assert.notEqual(ee1.serialNumber, ee2.serialNumber);
  assert.notEqual(first.keyPem, second.keyPem);
  assert.match(first.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  // Keys of any length and script derive an identity.
  for (const key of ["", "k", "ключ-🔑", "x".repeat(10_000)]) {
    const id = await serverQuicIdentity(key);
    const [ee, ca] = certs(id.certPem);
    assert.ok(ee.verify(ca.publicKey), JSON.stringify(key.slice(0, 10)));
  }
});

Deno.test("the CA key, name and address are HKDF of the handshake's PBKDF2 key, as documented", async () => {
  // An independent derivation (WebCrypto's PBKDF2 and HKDF): a change here breaks every client
  // of another version.
  const subtle = crypto.subtle;
  const te = new TextEncoder();
  const pw = await subtle.importKey("raw", te.encode(KEY), "PBKDF2", false, ["deriveBits"]);
  const ikm = await subtle.deriveBits(
    {
      name: "PBKDF2",
      hash: "SHA-256",
      salt: te.encode("half-tunnel v2 auth"),
      iterations: 100_000,
    },
    pw,
    256,
  );
  const prk = await subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  const hkdf = async (info: string, len: number) =>
    new Uint8Array(
      await subtle.deriveBits(
        { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: te.encode(info) },
        prk,
        len * 8,
      ),
    );
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
  const d = BigInt("0x" + hex(await hkdf("HT3 quic ca", 48))) % n;
  const ecdh = createECDH("prime256v1");
  ecdh.setPrivateKey(d.toString(16).padStart(64, "0"), "hex");

  const id = await clientQuicIdentity(KEY);
  const [ca] = certs(id.caPem);
  const jwk = ca.publicKey.export({ format: "jwk" });
  assert.equal(
    Buffer.from(jwk.x!, "base64url").toString("hex") +
      Buffer.from(jwk.y!, "base64url").toString("hex"),
    ecdh.getPublicKey("hex").slice(2),
  );
  assert.equal(ca.subject, `CN=${hex(await hkdf("HT3 quic name", 8))}`);
  assert.equal(id.serverName, `10.${(await hkdf("HT3 quic addr", 3)).join(".")}`);
});

Deno.test({
  name:
    "openssl reads the CA as CA:TRUE and the server's certificate as CA:FALSE, and verifies the chain",
  ignore: opensslMissing,
  async fn() {
    const client = await clientQuicIdentity(KEY);
    const server = await serverQuicIdentity(KEY);
    const [eePem] = server.certPem.match(
      /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/,
    )!;
    const openssl = async (args: string[], stdin?: string) => {
      const child = new Deno.Command("openssl", {
        args,
        stdin: stdin === undefined ? "null" : "piped",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(10_000),
      }).spawn();
      if (stdin !== undefined) {
        const w = child.stdin.getWriter();
        await w.write(new TextEncoder().encode(stdin));
        await w.close();
      }
      const out = await child.output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.ok(out.success, `openssl ${args.join(" ")}: ${text}`);
      return text;
    };
    const caText = await openssl(["x509", "-noout", "-text"], client.caPem);
    assert.match(caText, /Basic Constraints: critical\s+CA:TRUE/);
    assert.match(caText, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
    assert.match(
      caText,
      /Not Before: Jan {2}1 00:00:00 2025 GMT\s+Not After : Jan {2}1 00:00:00 2045 GMT/,
    );
    assert.match(caText, /ASN1 OID: prime256v1/);
    const eeText = await openssl(["x509", "-noout", "-text"], eePem);
    assert.match(eeText, /Basic Constraints: critical\s+CA:FALSE/);
    assert.match(eeText, /Key Usage: critical\s+Digital Signature\n/);
    assert.match(eeText, /Extended Key Usage: \s+TLS Web Server Authentication\n/);
    assert.match(
      eeText,
      new RegExp(`Subject Alternative Name: \\s+IP Address:${client.serverName}\n`),
    );
    const caKeyId = caText.match(/Subject Key Identifier: \s+([0-9A-F:]+)/)![1];
    assert.match(eeText, new RegExp(`Authority Key Identifier: \\s+(keyid:)?${caKeyId}`));

    const dir = await Deno.makeTempDir({ prefix: "ht-quic-id-" });
    try {
      await Deno.writeTextFile(`${dir}/ca.pem`, client.caPem);
      await Deno.writeTextFile(`${dir}/ee.pem`, eePem);
      const verdict = await openssl([
        "verify",
        "-CAfile",
        `${dir}/ca.pem`,
        "-purpose",
        "sslserver",
        "-verify_ip",
        client.serverName,
        `${dir}/ee.pem`,
      ]);
      assert.match(verdict, /ee\.pem: OK/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("DER: integers, lengths, OIDs, bit strings and times in their minimal forms", () => {
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
  assert.equal(hex(der.uint(0)), "02 01 00");
  assert.equal(hex(der.uint(127)), "02 01 7f");
  assert.equal(hex(der.uint(128)), "02 02 00 80");
  assert.equal(hex(der.uint(65536)), "02 03 01 00 00");
  assert.equal(hex(der.uint(Uint8Array.of(0, 0, 0x81))), "02 02 00 81");
  assert.equal(hex(der.uint(Uint8Array.of(0, 0))), "02 01 00");
  assert.throws(() => der.uint(-1), /not a uint/);
  assert.equal(hex(der.oid("1.2.840.10045.2.1")), "06 07 2a 86 48 ce 3d 02 01");
  assert.equal(hex(der.oid("2.5.29.19")), "06 03 55 1d 13");
  assert.throws(() => der.oid("1"), /bad OID 1/);
  assert.equal(hex(der.octets(new Uint8Array(127)).subarray(0, 2)), "04 7f");
  assert.equal(hex(der.octets(new Uint8Array(128)).subarray(0, 3)), "04 81 80");
  assert.equal(hex(der.octets(new Uint8Array(256)).subarray(0, 4)), "04 82 01 00");
  assert.equal(der.octets(new Uint8Array(70000)).length, 1 + 4 + 70000);
  assert.equal(hex(der.bits(Uint8Array.of(0x06), 1)), "03 02 01 06");
  assert.equal(hex(der.seq(der.bool(true))), "30 03 01 01 ff");
  assert.equal(hex(der.explicit(3, der.seq())), "a3 02 30 00");
  assert.equal(hex(der.implicit(7, Uint8Array.of(10, 1, 2, 3))), "87 04 0a 01 02 03");
  const text = (b: Uint8Array) => `${b[0]}:${new TextDecoder().decode(b.subarray(2))}`;
  assert.equal(text(der.time(new Date("2049-12-31T23:59:59.999Z"))), "23:491231235959Z");
  assert.equal(text(der.time(new Date("2050-01-01T00:00:00Z"))), "24:20500101000000Z");
});
