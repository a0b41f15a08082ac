/**
 * The TLS identity of `quic` legs, derived from the shared key so that no config has to name a
 * certificate. QUIC always runs TLS, but Backhaul's `transport = "udp"` configs name no certificate,
 * Deno's QUIC client cannot skip verification, and it refuses an `openssl req -x509` certificate
 * even when pinned (`CaUsedAsEndEntity`: it is CA:TRUE). Authenticating the peer is not TLS's job
 * here (every leg proves the key in its own hello and welcome): TLS only has to succeed, encrypt,
 * and tell strangers nothing.
 *
 * So both sides derive the same P-256 CA from the key: its private scalar, its subject name, its
 * serial and a fixed validity (2025 to 2045). Client and server thus hold a CA with the same subject
 * and key; its signature may differ (Deno's ECDSA happens to be deterministic, ECDSA need not be),
 * which does not matter: a trust anchor is a subject and a key. The server makes a fresh end-entity
 * certificate at start (random key, signed by the CA) for a 10.x.y.z address derived from the key,
 * and the client dials that address as the server name (an IP literal, so no SNI is sent, as for
 * any client dialling an address) with the CA as its only extra root.
 *
 * Everything derives from the handshake's stretched key (PBKDF2, protocol/handshake.ts), not from
 * the key text: the certificates go to anyone who connects, and whoever holds them can test guesses
 * at the key offline (the CA's key checks the chain's signatures), so each guess must cost as much
 * as a guess at a captured hello does. The certificates are built by hand (der.ts): neither
 * WebCrypto nor node:crypto issues certificates.
 */

import { Buffer } from "node:buffer";
import { createECDH, createHash, hkdfSync, randomFillSync } from "node:crypto";
import { deriveKeys } from "../protocol/handshake.ts";
import * as der from "./der.ts";

/** What a client needs to verify a server that uses the identity derived from a key. */
export interface ClientQuicIdentity {
  /** The derived CA, to pass as `caCerts`. */
  caPem: string;
  /** The address the server's certificate names, to pass as `serverName`. */
  serverName: string;
}

/** A server's certificate chain (end entity, then CA) and its private key, PEM. */
export interface ServerQuicIdentity {
  certPem: string;
  keyPem: string;
  serverName: string;
}

const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const CA_NOT_BEFORE = new Date(Date.UTC(2025, 0, 1));
const CA_NOT_AFTER = new Date(Date.UTC(2045, 0, 1));
/** A fresh certificate is dated back so that a client whose clock runs behind still takes it. */
const BACKDATE_MS = 3600_000;
const LIFETIME_MS = 365 * 86400_000;

const OID = {
  EC_PUBLIC_KEY: "1.2.840.10045.2.1",
  P256: "1.2.840.10045.3.1.7",
  ECDSA_SHA256: "1.2.840.10045.4.3.2",
  COMMON_NAME: "2.5.4.3",
  SUBJECT_KEY_ID: "2.5.29.14",
  KEY_USAGE: "2.5.29.15",
  SUBJECT_ALT_NAME: "2.5.29.17",
  BASIC_CONSTRAINTS: "2.5.29.19",
  AUTHORITY_KEY_ID: "2.5.29.35",
  EXT_KEY_USAGE: "2.5.29.37",
  SERVER_AUTH: "1.3.6.1.5.5.7.3.1",
} as const;

const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const ECDSA_SHA256 = { name: "ECDSA", hash: "SHA-256" } as const;

/** What one key derives: the CA (signing key and certificate) and the server's address. */
interface Derived {
  caKey: CryptoKey;
  caName: Uint8Array;
  caKeyId: Uint8Array;
  caPem: string;
  address: Uint8Array;
  serverName: string;
}

/** Per key, its derivation (made once: the PBKDF2 under it takes tens of milliseconds). */
const derived = new Map<string, Promise<Derived>>();

/** What a client needs to verify a server that uses the identity derived from `key`. */
export async function clientQuicIdentity(key: string): Promise<ClientQuicIdentity> {
  const { caPem, serverName } = await derive(key);
  return { caPem, serverName };
}

/**
 * The server's certificate chain (end entity, then CA) and private key, PEM, made fresh: a new key
 * and certificate on every call, so call it once per listener, not per connection.
 */
export async function serverQuicIdentity(key: string): Promise<ServerQuicIdentity> {
  const ca = await derive(key);
  const pair = await crypto.subtle.generateKey(ECDSA_P256, true, ["sign"]) as CryptoKeyPair;
  const point = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const now = Date.now();
  const cert = await certificate(ca.caKey, {
    serial: randomFillSync(new Uint8Array(16)),
    issuer: ca.caName,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + LIFETIME_MS),
    subject: commonName(ca.serverName),
    point,
    extensions: [
      extension(OID.BASIC_CONSTRAINTS, true, der.seq()),
      extension(OID.KEY_USAGE, true, der.bits(Uint8Array.of(0x80), 7)), // digitalSignature
      extension(OID.EXT_KEY_USAGE, false, der.seq(der.oid(OID.SERVER_AUTH))),
      extension(OID.SUBJECT_ALT_NAME, false, der.seq(der.implicit(7, ca.address))),
      extension(OID.SUBJECT_KEY_ID, false, der.octets(keyId(point))),
      extension(OID.AUTHORITY_KEY_ID, false, der.seq(der.implicit(0, ca.caKeyId))),
    ],
  });
  return {
    certPem: pem("CERTIFICATE", cert) + ca.caPem,
    keyPem: pem("PRIVATE KEY", pkcs8),
    serverName: ca.serverName,
  };
}

function derive(key: string): Promise<Derived> {
  let d = derived.get(key);
  if (!d) {
    d = deriveFresh(key);
    derived.set(key, d);
    d.catch(() => derived.delete(key));
  }
  return d;
}

async function deriveFresh(key: string): Promise<Derived> {
  const ikm = deriveKeys(key).auth;
  // 48 bytes reduced mod n: the bias of the reduction is about 2^-128.
  const wide = BigInt("0x" + Buffer.from(hkdf(ikm, "HT3 quic ca", 48)).toString("hex"));
  const scalar = Buffer.from((wide % P256_ORDER || 1n).toString(16).padStart(64, "0"), "hex");
  const ecdh = createECDH("prime256v1");
  ecdh.setPrivateKey(scalar);
  const point = new Uint8Array(ecdh.getPublicKey());
  const caKey = await crypto.subtle.importKey(
    "jwk",
    {
      kty: "EC",
      crv: "P-256",
      d: scalar.toString("base64url"),
      x: Buffer.from(point.subarray(1, 33)).toString("base64url"),
      y: Buffer.from(point.subarray(33, 65)).toString("base64url"),
    },
    ECDSA_P256,
    false,
    ["sign"],
  );
  const caName = commonName(Buffer.from(hkdf(ikm, "HT3 quic name", 8)).toString("hex"));
  const caKeyId = keyId(point);
  const ca = await certificate(caKey, {
    serial: hkdf(ikm, "HT3 quic serial", 16),
    issuer: caName,
    notBefore: CA_NOT_BEFORE,
    notAfter: CA_NOT_AFTER,
    subject: caName,
    point,
    extensions: [
      extension(OID.BASIC_CONSTRAINTS, true, der.seq(der.bool(true))),
      extension(OID.KEY_USAGE, true, der.bits(Uint8Array.of(0x06), 1)), // keyCertSign, cRLSign
      extension(OID.SUBJECT_KEY_ID, false, der.octets(caKeyId)),
    ],
  });
  const address = Uint8Array.of(10, ...hkdf(ikm, "HT3 quic addr", 3));
  return {
    caKey,
    caName,
    caKeyId,
    caPem: pem("CERTIFICATE", ca),
    address,
    serverName: address.join("."),
  };
}

function hkdf(ikm: Uint8Array, info: string, len: number): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", ikm, new Uint8Array(0), info, len));
}

/** `b` made a positive, non-zero serial number of its length (RFC 5280 4.1.2.2). */
function serial(b: Uint8Array): Uint8Array {
  b[0] = (b[0] & 0x7f) || 1;
  return b;
}

/** A Name of one CN. */
function commonName(cn: string): Uint8Array {
  return der.seq(der.set(der.seq(der.oid(OID.COMMON_NAME), der.utf8(cn))));
}

/** The key identifier of RFC 5280 4.2.1.2 (1): SHA-1 of the public key's bits. */
function keyId(point: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha1").update(point).digest());
}

function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  return der.seq(der.oid(id), ...(critical ? [der.bool(true)] : []), der.octets(value));
}

/** What differs between the two certificates. */
interface CertFields {
  /** Random or derived bytes, made a positive serial number here. */
  serial: Uint8Array;
  issuer: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  subject: Uint8Array;
  /** The subject's public key, an uncompressed P-256 point. */
  point: Uint8Array;
  extensions: Uint8Array[];
}

/** An X.509 v3 certificate (RFC 5280 4.1) of `f`, signed with ECDSA-SHA256 by `signer`. */
async function certificate(signer: CryptoKey, f: CertFields): Promise<Uint8Array> {
  const algorithm = der.seq(der.oid(OID.ECDSA_SHA256));
  const tbs = der.seq(
    der.explicit(0, der.uint(2)), // v3
    der.uint(serial(f.serial)),
    algorithm,
    f.issuer,
    der.seq(der.time(f.notBefore), der.time(f.notAfter)),
    f.subject,
    der.seq(der.seq(der.oid(OID.EC_PUBLIC_KEY), der.oid(OID.P256)), der.bits(f.point)),
    der.explicit(3, der.seq(...f.extensions)),
  );
  // WebCrypto gives r ‖ s (IEEE P1363); X.509 wants SEQUENCE { r INTEGER, s INTEGER }.
  const rs = new Uint8Array(await crypto.subtle.sign(ECDSA_SHA256, signer, tbs));
  const sig = der.seq(der.uint(rs.subarray(0, 32)), der.uint(rs.subarray(32)));
  return der.seq(tbs, algorithm, der.bits(sig));
}

function pem(label: string, body: Uint8Array): string {
  const b64 = Buffer.from(body).toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}
