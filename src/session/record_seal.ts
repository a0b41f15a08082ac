/**
 * Encrypted frames: the record layer a session puts between its frames and a leg when
 * `session.encrypt` (or a shaping preset) is on. Whatever the writer hands a leg in one send (a run
 * of whole frames, and any padding) becomes one record:
 *
 *   masked length (3) | ChaCha20-Poly1305 ciphertext of (frames ‖ zero padding) | tag (16)
 *
 * - Keys are per leg and direction (`legKeys`): from the session key, the hello's MAC and the
 *   server's welcome nonce of that leg's handshake, so no two legs ever share a key and a leg that
 *   replaces a lost one starts afresh.
 * - The nonce is the record's number on its leg (0, 1, 2 …), never sent: a leg is an ordered byte
 *   stream, so both ends count alike. A frame replayed after a resume is sealed again on its new leg,
 *   under that leg's key and counter.
 * - The length is authenticated (it is the AEAD's associated data) and masked with a keystream
 *   (HMAC-SHA256 of the block number under the leg's mask key), so the bytes on the wire are
 *   uniformly random: no magic, no header, no lengths an observer can parse out of a TCP stream.
 * - Padding is zero bytes after the last frame: a frame starts with the magic byte 'H', never 0,
 *   so the reader stops at the first zero where a frame would begin (frame_reader.ts pushRecord).
 *
 * QUIC datagrams arrive in any order or not at all, so they carry their number instead: an
 * 8-byte counter, then the ciphertext and tag, under a datagram key of their own.
 */

import { createCipheriv, createDecipheriv } from "node:crypto";
import { FrameError } from "../protocol/frame.ts";
import { mac } from "../protocol/handshake.ts";
import { FrameMac } from "./frame_mac.ts";

const ALG = "chacha20-poly1305";
export const TAG_LEN = 16;
export const LEN_BYTES = 3;
/** Bytes a record adds to what it carries. */
export const RECORD_OVERHEAD = LEN_BYTES + TAG_LEN;
/** Bytes a sealed datagram adds to its frame. */
export const DATAGRAM_OVERHEAD = 8 + TAG_LEN;
/**
 * The largest record a reader takes (ciphertext + tag). A writer's run is at most 256 KiB plus one
 * frame, padded by at most a bucket; anything larger is a broken or hostile stream, refused before
 * it is buffered.
 */
export const MAX_RECORD = 1024 * 1024;

/** One direction's keys on one leg. */
export interface DirectionKeys {
  aead: Uint8Array;
  mask: Uint8Array;
  datagram: Uint8Array;
}

export interface LegKeys {
  /** Client → server. */
  up: DirectionKeys;
  /** Server → client. */
  down: DirectionKeys;
}

const te = new TextEncoder();
/** Padding's plaintext, shared. */
const ZEROS = new Uint8Array(16 * 1024);

/** The keys of a leg, from its session's key and the leg's own handshake (hello MAC, welcome nonce). */
export function legKeys(
  sessionKey: Uint8Array,
  helloMac: Uint8Array,
  welcomeNonce: Uint8Array,
): LegKeys {
  const leg = mac(sessionKey, [te.encode("HT4 leg"), helloMac, welcomeNonce]);
  const dir = (d: string): DirectionKeys => ({
    aead: mac(leg, [te.encode(`HT4 aead ${d}`)]),
    mask: mac(leg, [te.encode(`HT4 mask ${d}`)]),
    datagram: mac(leg, [te.encode(`HT4 datagram ${d}`)]),
  });
  return { up: dir("up"), down: dir("down") };
}

/** A 12-byte nonce buffer: four zero bytes, then a record's (or datagram's) number big-endian. */
class Nonce {
  readonly bytes = new Uint8Array(12);
  #view = new DataView(this.bytes.buffer);

  of(n: number): Uint8Array {
    this.#view.setUint32(4, Math.floor(n / 0x1_0000_0000));
    this.#view.setUint32(8, n >>> 0);
    return this.bytes;
  }
}

/** Length masks: 3 bytes per record, ten records to a 32-byte HMAC block. */
class LengthMask {
  #block = -1;
  #bytes: Uint8Array = new Uint8Array(32);
  #counter = new Nonce();
  #mac: FrameMac;
  constructor(key: Uint8Array) {
    this.#mac = new FrameMac(key);
  }

  /** Masks (or unmasks) the 3 length bytes of record `n` at `b[off]`. */
  apply(n: number, b: Uint8Array, off: number): void {
    const block = Math.floor(n / 10);
    if (block !== this.#block) {
      // HMAC-SHA256(mask key, block number as 8 bytes big-endian).
      this.#bytes = this.#mac.compute(this.#counter.of(block).subarray(4));
      this.#block = block;
    }
    const m = (n % 10) * LEN_BYTES;
    b[off] ^= this.#bytes[m];
    b[off + 1] ^= this.#bytes[m + 1];
    b[off + 2] ^= this.#bytes[m + 2];
  }
}

/** Seals what a writer sends on one leg in one direction. */
export class RecordSealer {
  #n = 0;
  #dgram = 0;
  #mask: LengthMask;
  #nonce = new Nonce();
  #aad = new Uint8Array(LEN_BYTES);

  constructor(private keys: DirectionKeys) {
    this.#mask = new LengthMask(keys.mask);
  }

  /**
   * One record holding `parts` (whole frames, in order) followed by `pad` zero bytes. Returns a
   * fresh buffer: the caller's frames stay as they are (the replay ring keeps them in plaintext).
   */
  seal(parts: readonly Uint8Array[], pad: number): Uint8Array {
    let plain = pad;
    for (const p of parts) plain += p.length;
    const len = plain + TAG_LEN;
    if (len > MAX_RECORD) throw new FrameError(`record of ${len} bytes exceeds ${MAX_RECORD}`);
    const out = new Uint8Array(LEN_BYTES + len);
    out[0] = len >>> 16;
    out[1] = (len >>> 8) & 0xff;
    out[2] = len & 0xff;
    this.#aad.set(out.subarray(0, LEN_BYTES));
    const c = createCipheriv(ALG, this.keys.aead, this.#nonce.of(this.#n), {
      authTagLength: TAG_LEN,
    });
    c.setAAD(this.#aad, { plaintextLength: plain });
    let o = LEN_BYTES;
    for (const p of parts) {
      const ct = c.update(p);
      out.set(ct, o);
      o += ct.length;
    }
    for (let left = pad; left > 0; left -= ZEROS.length) {
      const ct = c.update(left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left));
      out.set(ct, o);
      o += ct.length;
    }
    c.final();
    out.set(c.getAuthTag(), o);
    this.#mask.apply(this.#n, out, 0);
    this.#n++;
    return out;
  }

  /** A datagram of its own (QUIC): its number, then the sealed frame. */
  sealDatagram(frame: Uint8Array): Uint8Array {
    const n = this.#dgram++;
    const out = new Uint8Array(8 + frame.length + TAG_LEN);
    const nonce = this.#nonce.of(n);
    out.set(nonce.subarray(4), 0);
    const c = createCipheriv(ALG, this.keys.datagram, nonce, { authTagLength: TAG_LEN });
    out.set(c.update(frame), 8);
    c.final();
    out.set(c.getAuthTag(), 8 + frame.length);
    return out;
  }
}

/**
 * Opens the records of one leg in one direction as its bytes arrive in chunks of any size; hands
 * each record's plaintext on once its tag has verified (never before), as a fresh buffer. Throws a
 * FrameError on a record that fails to verify or whose length is out of bounds.
 */
export class RecordOpener {
  #n = 0;
  #mask: LengthMask;
  #nonce = new Nonce();
  #head = new Uint8Array(LEN_BYTES);
  #headGot = 0;
  /** The record being read: its length (0: reading the length), and the ciphertext so far. */
  #len = 0;
  #body: Uint8Array | null = null;
  #got = 0;

  constructor(private keys: DirectionKeys, private onRecord: (plain: Uint8Array) => void) {
    this.#mask = new LengthMask(keys.mask);
  }

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#len === 0) {
        const take = Math.min(LEN_BYTES - this.#headGot, chunk.length - i);
        this.#head.set(chunk.subarray(i, i + take), this.#headGot);
        this.#headGot += take;
        i += take;
        if (this.#headGot < LEN_BYTES) return;
        this.#headGot = 0;
        this.#mask.apply(this.#n, this.#head, 0);
        const len = (this.#head[0] << 16) | (this.#head[1] << 8) | this.#head[2];
        if (len < TAG_LEN || len > MAX_RECORD) {
          throw new FrameError(`record length ${len} out of bounds (wrong key or not encrypted?)`);
        }
        this.#len = len;
        this.#got = 0;
        // A record that arrived whole inside the chunk is opened where it lies.
        if (chunk.length - i >= len) {
          this.#open(chunk.subarray(i, i + len));
          i += len;
          continue;
        }
        this.#body = new Uint8Array(len);
        continue;
      }
      const take = Math.min(this.#len - this.#got, chunk.length - i);
      this.#body!.set(chunk.subarray(i, i + take), this.#got);
      this.#got += take;
      i += take;
      if (this.#got === this.#len) {
        const body = this.#body!;
        this.#body = null;
        this.#open(body);
      }
    }
  }

  #open(body: Uint8Array): void {
    const len = this.#len;
    this.#len = 0;
    const d = createDecipheriv(ALG, this.keys.aead, this.#nonce.of(this.#n), {
      authTagLength: TAG_LEN,
    });
    d.setAAD(this.#head, { plaintextLength: len - TAG_LEN });
    d.setAuthTag(body.subarray(len - TAG_LEN));
    const plain = d.update(body.subarray(0, len - TAG_LEN));
    try {
      d.final();
    } catch {
      throw new FrameError(`record ${this.#n} does not verify (tampered, or another key)`);
    }
    this.#n++;
    this.onRecord(new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength));
  }

  /** A sealed datagram (see RecordSealer.sealDatagram); throws a FrameError if it does not verify. */
  openDatagram(b: Uint8Array): Uint8Array {
    if (b.length < DATAGRAM_OVERHEAD) throw new FrameError("sealed datagram too short");
    const nonce = this.#nonce.bytes;
    nonce.set(b.subarray(0, 8), 4);
    const d = createDecipheriv(ALG, this.keys.datagram, nonce, { authTagLength: TAG_LEN });
    d.setAuthTag(b.subarray(b.length - TAG_LEN));
    const plain = d.update(b.subarray(8, b.length - TAG_LEN));
    try {
      d.final();
    } catch {
      throw new FrameError("sealed datagram does not verify");
    }
    return new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength);
  }
}
