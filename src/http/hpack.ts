/**
 * HPACK, the header compression of HTTP/2 (RFC 7541): a decoder with the static and dynamic
 * tables, table size updates, Huffman strings and bounds on what a peer can make it build, and an
 * encoder that indexes what it can (static table, then its own dynamic table) and Huffman-codes
 * literals where that is shorter, as browsers and servers do. Field names and values are Latin-1
 * text, one character per byte. Input that is not valid HPACK is an HpackError naming what was
 * wrong; nothing else is thrown for it.
 */

import { latin1Text } from "./head.ts";
import { huffmanDecode, huffmanEncode, huffmanLength } from "./hpack_huffman.ts";

/** Header fields in order: lowercase names, pseudo-header fields first. */
export type HeaderList = [string, string][];

/** A header block that is not valid HPACK (a COMPRESSION_ERROR in HTTP/2). */
export class HpackError extends Error {
  override name = "HpackError";
}

/** A header list past the decoder's size limit: valid HPACK, but more than was allowed. */
export class HeaderListTooLarge extends HpackError {
  override name = "HeaderListTooLarge";
}

/** What each entry costs beyond its name and value, in a table and in a header list's size. */
const ENTRY_OVERHEAD = 32;

/** The size a field counts for (RFC 7541 §4.1, RFC 9113 §6.5.2). */
function fieldSize(name: string, value: string): number {
  return name.length + value.length + ENTRY_OVERHEAD;
}

/** RFC 7541 Appendix A. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

const STATIC_LEN = STATIC_TABLE.length;

/**
 * The dynamic table (RFC 7541 §2.3.2, §4): newest entry first, evicted oldest first to stay within
 * its size. A ring of as many slots as the largest allowed size can hold entries.
 */
class DynamicTable {
  readonly #names: string[];
  readonly #values: string[];
  #head = 0;
  #count = 0;
  size = 0;
  /** Entries ever added: entry i (0 = newest) was the (added - 1 - i)th. */
  added = 0;

  constructor(
    public max: number,
    limit: number,
    private onEvict?: (key: string, id: number) => void,
  ) {
    const slots = Math.floor(limit / ENTRY_OVERHEAD) + 1;
    this.#names = new Array(slots);
    this.#values = new Array(slots);
  }

  get length(): number {
    return this.#count;
  }

  #slot(i: number): number {
    const n = this.#names.length;
    return (this.#head - 1 - i + n) % n;
  }

  name(i: number): string {
    return this.#names[this.#slot(i)];
  }

  value(i: number): string {
    return this.#values[this.#slot(i)];
  }

  add(name: string, value: string): void {
    const size = fieldSize(name, value);
    this.#evictTo(this.max - size);
    // An entry larger than the table empties it and is not added (§4.4).
    if (size > this.max) return;
    this.#names[this.#head] = name;
    this.#values[this.#head] = value;
    this.#head = (this.#head + 1) % this.#names.length;
    this.#count++;
    this.size += size;
    this.added++;
  }

  resize(max: number): void {
    this.max = max;
    this.#evictTo(max);
  }

  #evictTo(max: number): void {
    while (this.#count > 0 && this.size > Math.max(max, 0)) {
      const i = this.#count - 1, slot = this.#slot(i);
      const name = this.#names[slot], value = this.#values[slot];
      this.size -= fieldSize(name, value);
      this.onEvict?.(name + "\0" + value, this.added - 1 - i);
      this.#names[slot] = this.#values[slot] = "";
      this.#count--;
    }
    if (this.#count === 0) this.size = 0;
  }
}

/** Decodes the header blocks of one connection direction, in order. */
export class HpackDecoder {
  readonly #table: DynamicTable;
  #b: Uint8Array = new Uint8Array(0);
  #i = 0;
  /** Huffman output; grown to the longest string seen. */
  #scratch = new Uint8Array(256);

  /**
   * `tableLimit`: the SETTINGS_HEADER_TABLE_SIZE we advertised (size updates past it are errors);
   * `maxListSize`: the most a decoded header list may count (SETTINGS_MAX_HEADER_LIST_SIZE).
   */
  constructor(readonly tableLimit: number, readonly maxListSize: number) {
    this.#table = new DynamicTable(tableLimit, tableLimit);
  }

  /** The header list in `block`; the dynamic table keeps what the block added. */
  decode(block: Uint8Array): HeaderList {
    this.#b = block;
    this.#i = 0;
    const out: HeaderList = [];
    let listSize = 0;
    while (this.#i < block.length) {
      const c = block[this.#i];
      let name: string, value: string;
      if (c & 0x80) {
        // Indexed field (§6.1).
        const index = this.#int(7);
        if (index === 0) throw new HpackError("HPACK index 0");
        name = this.#name(index);
        value = index <= STATIC_LEN
          ? STATIC_TABLE[index - 1][1]
          : this.#table.value(index - STATIC_LEN - 1);
      } else if (c & 0x40) {
        // Literal with incremental indexing (§6.2.1).
        const index = this.#int(6);
        name = index ? this.#name(index) : this.#string();
        value = this.#string();
        this.#table.add(name, value);
      } else if (c & 0x20) {
        // Dynamic table size update (§6.3): only before the block's first field.
        if (out.length) throw new HpackError("HPACK table size update after a header field");
        const size = this.#int(5);
        if (size > this.tableLimit) {
          throw new HpackError(
            `HPACK table size update to ${size}, above the limit ${this.tableLimit}`,
          );
        }
        this.#table.resize(size);
        continue;
      } else {
        // Literal without indexing or never indexed (§6.2.2, §6.2.3).
        const index = this.#int(4);
        name = index ? this.#name(index) : this.#string();
        value = this.#string();
      }
      listSize += fieldSize(name, value);
      if (listSize > this.maxListSize) {
        throw new HeaderListTooLarge(`header list larger than ${this.maxListSize} bytes`);
      }
      out.push([name, value]);
    }
    this.#b = EMPTY;
    return out;
  }

  #name(index: number): string {
    if (index <= STATIC_LEN) return STATIC_TABLE[index - 1][0];
    const i = index - STATIC_LEN - 1;
    if (i >= this.#table.length) {
      throw new HpackError(
        `HPACK index ${index} past the tables (${STATIC_LEN} static, ${this.#table.length} dynamic)`,
      );
    }
    return this.#table.name(i);
  }

  /** An integer with an N-bit prefix (§5.1); at most 2^31 - 1, more is an error. */
  #int(prefix: number): number {
    const b = this.#b, max = (1 << prefix) - 1;
    let v = b[this.#i++] & max;
    if (v < max) return v;
    for (let shift = 0;; shift += 7) {
      if (this.#i >= b.length) throw new HpackError("HPACK integer cut off at the block's end");
      const c = b[this.#i++];
      v += (c & 0x7f) * 2 ** shift;
      // Five continuation bytes carry 35 bits: past 31 is more than any length or index here.
      if (v > 0x7fffffff || shift > 28) throw new HpackError("HPACK integer overflow");
      if (!(c & 0x80)) return v;
    }
  }

  /** A string literal (§5.2). */
  #string(): string {
    if (this.#i >= this.#b.length) throw new HpackError("HPACK string missing at the block's end");
    const huffman = (this.#b[this.#i] & 0x80) !== 0;
    const len = this.#int(7);
    const start = this.#i, end = start + len;
    if (end > this.#b.length) {
      throw new HpackError(`HPACK string of ${len} bytes runs past the block's end`);
    }
    this.#i = end;
    if (!huffman) return latin1Text(this.#b.subarray(start, end));
    const need = Math.ceil(len * 8 / 5);
    if (this.#scratch.length < need) this.#scratch = new Uint8Array(need);
    const n = huffmanDecode(this.#b, start, end, this.#scratch);
    if (n < 0) throw new HpackError("invalid Huffman-coded HPACK string");
    return latin1Text(this.#scratch.subarray(0, n));
  }
}

const EMPTY: Uint8Array = new Uint8Array(0);

/** "name\0value" of each static entry with a value, and each static name, to its first index. */
const STATIC_EXACT = new Map<string, number>();
const STATIC_NAME = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (value && !STATIC_EXACT.has(name + "\0" + value)) STATIC_EXACT.set(name + "\0" + value, i + 1);
  if (!STATIC_NAME.has(name)) STATIC_NAME.set(name, i + 1);
});

/** Fields never put in a table (§7.1.3): credentials, and cookies short enough to guess. */
function sensitive(name: string, value: string): boolean {
  return name === "authorization" || name === "proxy-authorization" ||
    (name === "cookie" && value.length < 20);
}

/** Encodes the header blocks of one connection direction, in order. */
export class HpackEncoder {
  readonly #table: DynamicTable;
  /** "name\0value" and name of the dynamic entries, to the id of the newest entry with it. */
  readonly #exact = new Map<string, number>();
  readonly #names = new Map<string, number>();
  /** Size updates owed before the next block: the smallest since the last block, then the last. */
  #minSize = -1;
  #buf = new Uint8Array(512);
  #len = 0;

  /**
   * `tableLimit`: the most table this encoder keeps, whatever the peer allows (4096, the default
   * both sides start from, as Go and browsers do); `huffman`: Huffman-code shorter literals.
   */
  constructor(readonly tableLimit = 4096, private huffman = true) {
    this.#table = new DynamicTable(tableLimit, tableLimit, (key, id) => {
      if (this.#exact.get(key) === id) this.#exact.delete(key);
      const name = key.slice(0, key.indexOf("\0"));
      if (this.#names.get(name) === id) this.#names.delete(name);
    });
  }

  /** The peer's SETTINGS_HEADER_TABLE_SIZE: the table follows it, up to our own limit. */
  setMaxTableSize(peerSize: number): void {
    const size = Math.min(peerSize, this.tableLimit);
    if (size === this.#table.max) return;
    this.#minSize = this.#minSize < 0 ? size : Math.min(this.#minSize, size);
    this.#table.resize(size);
  }

  /** The block for `headers`: a view of a buffer reused by the next call. */
  encode(headers: readonly (readonly [string, string])[]): Uint8Array {
    this.#len = 0;
    if (this.#minSize >= 0) {
      if (this.#minSize < this.#table.max) this.#int(0x20, 5, this.#minSize);
      this.#int(0x20, 5, this.#table.max);
      this.#minSize = -1;
    }
    for (const [name, value] of headers) {
      this.#reserve(12 + name.length + value.length);
      const key = name + "\0" + value;
      const exact = STATIC_EXACT.get(key) ?? this.#dynamicIndex(this.#exact.get(key));
      if (exact && !sensitive(name, value)) {
        this.#int(0x80, 7, exact);
        continue;
      }
      const nameIndex = STATIC_NAME.get(name) ?? this.#dynamicIndex(this.#names.get(name)) ?? 0;
      const secret = sensitive(name, value);
      const indexing = !secret && fieldSize(name, value) <= this.#table.max;
      if (secret) this.#int(0x10, 4, nameIndex);
      else if (indexing) this.#int(0x40, 6, nameIndex);
      else this.#int(0x00, 4, nameIndex);
      if (!nameIndex) this.#string(name);
      this.#string(value);
      if (indexing) {
        this.#table.add(name, value);
        this.#exact.set(key, this.#table.added - 1);
        this.#names.set(name, this.#table.added - 1);
      }
    }
    return this.#buf.subarray(0, this.#len);
  }

  #dynamicIndex(id: number | undefined): number | undefined {
    return id === undefined ? undefined : STATIC_LEN + this.#table.added - id;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const b = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + n));
    b.set(this.#buf.subarray(0, this.#len));
    this.#buf = b;
  }

  /** An integer with an N-bit prefix after the representation's leading bits. */
  #int(bits: number, prefix: number, v: number): void {
    const max = (1 << prefix) - 1;
    if (v < max) {
      this.#buf[this.#len++] = bits | v;
      return;
    }
    this.#buf[this.#len++] = bits | max;
    for (v -= max; v >= 0x80; v = Math.floor(v / 0x80)) this.#buf[this.#len++] = (v % 0x80) | 0x80;
    this.#buf[this.#len++] = v;
  }

  #string(s: string): void {
    for (let i = 0; i < s.length; i++) {
      if (s.charCodeAt(i) > 0xff) {
        throw new TypeError(`header text ${JSON.stringify(s)} is not Latin-1`);
      }
    }
    // Huffman when no longer than the plain text, as RFC 7541's examples code "307".
    const h = this.huffman && s.length ? huffmanLength(s) : Infinity;
    if (h <= s.length) {
      this.#int(0x80, 7, h);
      this.#len = huffmanEncode(s, this.#buf, this.#len);
      return;
    }
    this.#int(0, 7, s.length);
    for (let i = 0; i < s.length; i++) this.#buf[this.#len++] = s.charCodeAt(i);
  }
}
