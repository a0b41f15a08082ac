/**
 * Judges the shared key (auth.key, Backhaul's token, HT_AUTH_KEY) before a tunnel uses it. Keys
 * that anyone can know are refused: the samples this repository publishes, placeholders such as
 * change-me or your-token, and variables or templates nobody filled in. Keys that are short or
 * easy to guess (repeats, runs like 1234, few different characters) are only warned about: they
 * still need guessing, and each guess costs the PBKDF2 of the handshake. A verdict says what is
 * wrong without repeating the key.
 */

import { SAMPLE_KEYS } from "./sample_keys.ts";

/** Keys shorter than this are warned about. */
export const MIN_KEY_LENGTH = 16;
/**
 * Keys whose estimate (`estimateBits`) is lower than this are warned about. Each guess at a
 * captured handshake costs 100,000 PBKDF2 rounds (about 2^17), so 56 bits cost some 2^73 hashes;
 * a random 16-letter key (75 bits, estimated a few bits lower) nearly always stays above it.
 */
export const MIN_KEY_BITS = 56;

/** What is wrong with a key, worded to follow its name: "auth.key (HT_AUTH_KEY) <what>". */
export interface KeyVerdict {
  /** Refused (the key is known to others), or only warned about (it is weak). */
  refuse: boolean;
  what: string;
}

/**
 * Placeholders, matched against the key in lower case with only its letters and digits, so
 * `Change_Me`, `<your-token>` and `YOUR TOKEN HERE` all count.
 */
const PLACEHOLDERS: readonly RegExp[] = [
  // change-me-to-a-long-random-key, replace_this_with_…: an instruction, whatever follows.
  /^(change|replace)(me|this|it)/,
  /^fill(me|this)in/,
  // your-token, my_secret_key, the-shared-key-here, password, example-token…
  /^(your|my|the|an?|some|example|sample|dummy|default|test)?(shared|auth|secret|api|tunnel)?(key|token|secret|password|passwd|pass|passphrase)(here|goeshere|value)?$/,
  /^(placeholder|example|sample|dummy|default|todo|tbd|fixme|none|null|undefined|empty|test|foo|foobar|admin|qwerty|letmein)$/,
  /^x+$/,
];

/** `$HT_AUTH_KEY`, `${KEY}`, `$(cat key.txt)`, `%KEY%`, `{{ key }}`: a substitution that never ran. */
const UNEXPANDED = /^(\$\w+|\$\{[^}]*\}|\$\(.*\)|%\w+%|\{\{.*\}\})$/s;

/** The verdict on `key` (non-empty), or null when it is fine. */
export function judgeKey(key: string): KeyVerdict | null {
  const trimmed = key.trim();
  const sample = SAMPLE_KEYS.get(trimmed.toLowerCase());
  if (sample) {
    return {
      refuse: true,
      what: `is the sample key shown in half-tunnel's ${sample}; anyone can read it there, ` +
        "so anyone could use this tunnel",
    };
  }
  if (UNEXPANDED.test(trimmed)) {
    return {
      refuse: true,
      what: "is a variable, command or template that was never filled in ($…, $(…), {{…}})",
    };
  }
  const letters = trimmed.toLowerCase().replace(/[^\p{L}\p{N}]/gu, "");
  if (letters === "" || PLACEHOLDERS.some((p) => p.test(letters))) {
    return {
      refuse: true,
      what: "is a placeholder (like change-me, your-token, <key> or ...), not a secret",
    };
  }
  if (key.length < MIN_KEY_LENGTH) {
    return { refuse: false, what: `is shorter than ${MIN_KEY_LENGTH} characters` };
  }
  if (estimateBits(key) < MIN_KEY_BITS) {
    return {
      refuse: false,
      what: "is easy to guess (repeated characters or pieces, runs like 1234 or abcd)",
    };
  }
  return null;
}

/**
 * A rough, deliberately low guess of how many bits of `key` an attacker would have to guess:
 * every character that a guesser could not predict from the one before adds the bits of the
 * character classes the key uses. Predictable are a repeat (`aa`), a neighbour (`ab`, `21`), the
 * same step again (`246`) and a pair of characters seen before (`abab`, `pass1pass1`). A key from
 * `half-tunnel keygen` scores 190 to 280 (100,000 tried); `1234567890123456` scores 7.
 */
export function estimateBits(key: string): number {
  let pool = 0;
  for (
    const [re, n] of [[/[a-z]/, 26], [/[A-Z]/, 26], [/[0-9]/, 10], [/[^a-zA-Z0-9]/, 33]] as const
  ) {
    if (re.test(key)) pool += n;
  }
  const pairs = new Set<string>();
  let fresh = 0, prev = -1, step = NaN;
  for (const ch of key) {
    const c = ch.codePointAt(0)!;
    const d = c - prev, pair = `${prev} ${c}`;
    if (prev < 0 || (Math.abs(d) > 1 && d !== step && !pairs.has(pair))) fresh++;
    pairs.add(pair);
    prev = c;
    step = d;
  }
  return fresh * Math.log2(pool || 1);
}
