/**
 * The Huffman code of HPACK string literals (RFC 7541 §5.2, Appendix B). The code is canonical:
 * each symbol's code follows from the code lengths alone (shorter codes first, equal lengths in
 * symbol order), so only the lengths are written here and the codes are derived at load. Decoding
 * walks a table of 4 bits at a time; encoding is used only where it makes a literal shorter.
 */

/** Code length in bits of each symbol: the 256 byte values, then EOS (256). */
// deno-fmt-ignore
const LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;

/** Each symbol's code, right-aligned (at most 30 bits, so it fits a 32-bit integer). */
const CODES = new Uint32Array(257);
{
  const order = [...LENGTHS.keys()].sort((a, b) => LENGTHS[a] - LENGTHS[b] || a - b);
  let code = 0;
  for (let i = 0; i < order.length; i++) {
    if (i > 0) code = (code + 1) * 2 ** (LENGTHS[order[i]] - LENGTHS[order[i - 1]]);
    CODES[order[i]] = code;
  }
}

/**
 * The decoding automaton. A state is an inner node of the code tree (0 is the root); for each
 * state and 4-bit input, NEXT is the state after those bits and EMIT the symbol completed on the
 * way (-1 none; EOS in the input is an error). ACCEPT marks the states a string may end in: the
 * root, or at most 7 bits into EOS's code of all ones (§5.2: padding is a prefix of EOS).
 */
const NEXT = new Uint8Array(256 * 16);
const EMIT = new Int16Array(256 * 16);
const ACCEPT = new Uint8Array(256);
{
  // The tree: inner nodes 0..255, children as node numbers, leaves as -(symbol + 1).
  const kids = new Int32Array(256 * 2);
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    let node = 0;
    for (let bit = LENGTHS[sym] - 1; bit >= 0; bit--) {
      const slot = node * 2 + ((CODES[sym] >>> bit) & 1);
      if (bit === 0) kids[slot] = -(sym + 1);
      else node = kids[slot] || (kids[slot] = nodes++);
    }
  }
  // The root and the inner nodes at most 7 bits down the all-ones path accept.
  for (let node = 0, depth = 0; depth <= 7; depth++, node = kids[node * 2 + 1]) ACCEPT[node] = 1;
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state, emit = -1;
      for (let bit = 3; bit >= 0; bit--) {
        const next = kids[node * 2 + ((nibble >>> bit) & 1)];
        if (next < 0) {
          // The shortest code is 5 bits, so at most one symbol ends within 4 bits.
          emit = -next - 1;
          node = 0;
        } else {
          node = next;
        }
      }
      NEXT[state * 16 + nibble] = node;
      EMIT[state * 16 + nibble] = emit;
    }
  }
}

/**
 * Decodes `src[start, end)` into `out` from offset 0 and returns the decoded length, or -1 if the
 * input is not a valid code (EOS inside it, padding longer than 7 bits or not all ones). `out`
 * must hold (end - start) * 8 / 5 bytes, the most the shortest codes can make.
 */
export function huffmanDecode(
  src: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
): number {
  let state = 0, n = 0;
  for (let i = start; i < end; i++) {
    const b = src[i];
    let k = state * 16 + (b >>> 4);
    let sym = EMIT[k];
    state = NEXT[k];
    if (sym >= 0) {
      if (sym === EOS) return -1;
      out[n++] = sym;
    }
    k = state * 16 + (b & 15);
    sym = EMIT[k];
    state = NEXT[k];
    if (sym >= 0) {
      if (sym === EOS) return -1;
      out[n++] = sym;
    }
  }
  return ACCEPT[state] ? n : -1;
}

/** Bytes the Huffman code of `s` (Latin-1, one byte per character) takes. */
export function huffmanLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += LENGTHS[s.charCodeAt(i) & 0xff];
  return Math.ceil(bits / 8);
}

/** Writes the Huffman code of `s` at `out[off]`, padded with ones; returns the offset after it. */
export function huffmanEncode(s: string, out: Uint8Array, off: number): number {
  // Pending bits, at most 7 + 30: kept in a double, which is exact to 53 bits.
  let acc = 0, bits = 0;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    acc = acc * 2 ** LENGTHS[sym] + CODES[sym];
    bits += LENGTHS[sym];
    while (bits >= 8) {
      bits -= 8;
      const scale = 2 ** bits;
      const byte = Math.floor(acc / scale);
      out[off++] = byte;
      acc -= byte * scale;
    }
  }
  if (bits > 0) out[off++] = (acc << (8 - bits)) | (0xff >>> bits);
  return off;
}
