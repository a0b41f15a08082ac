/**
 * The one error type for configuration problems, the pieces of its messages (a message names the
 * key, the value and its source, and a near miss of a known name is suggested), and the list that
 * gathers every problem of one load so that one run names them all.
 */

export class ConfigError extends Error {
  override name = "ConfigError";

  /** One line per problem: the message itself, or each problem of a load that found several. */
  readonly problems: readonly string[];

  constructor(message: string, problems: readonly string[] = [message]) {
    super(message);
    this.problems = problems;
  }
}

/**
 * The problems of one load, at most one per key: a key's first problem is the one to fix, and the
 * checks that would read its value again only repeat it. A problem may stand for several keys (a
 * Backhaul key that sets two).
 */
export class Problems {
  readonly #found: string[][] = [];
  readonly #byKey = new Map<string, string[]>();

  /** Records `e` as the problem of `keys`, unless one of them has one already; says which. */
  add(keys: string | readonly string[], e: ConfigError): boolean {
    const all = typeof keys === "string" ? [keys] : keys;
    if (all.some((k) => this.#byKey.has(k))) return false;
    const lines = [...e.problems];
    this.#found.push(lines);
    for (const k of all) this.#byKey.set(k, lines);
    return true;
  }

  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  /** Runs `f`; a ConfigError it throws becomes the problem of `keys`, and the result undefined. */
  catch<T>(keys: string | readonly string[], f: () => T): T | undefined {
    try {
      return f();
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      this.add(keys, e);
      return undefined;
    }
  }

  /** Adds `more` to the end of the problem recorded for `key`. */
  amend(key: string, more: string): void {
    const lines = this.#byKey.get(key);
    if (lines) lines[lines.length - 1] += more;
  }

  /** Throws every problem, if there is one, as one ConfigError. */
  throwAll(): void {
    const lines = this.#found.flat();
    if (lines.length) throw combined(lines);
  }

  /** Throws every problem and then `last`, a problem that ends the reading. */
  end(last: ConfigError): never {
    throw combined([...this.#found.flat(), ...last.problems]);
  }
}

/** One ConfigError for `lines`: a single problem as it is, several counted, a line each. */
function combined(lines: string[]): ConfigError {
  return lines.length === 1
    ? new ConfigError(lines[0])
    : new ConfigError(`${lines.length} problems:\n  ${lines.join("\n  ")}`, lines);
}

/** A value as it should appear in a message: strings quoted, structures as JSON. */
export function shown(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint" || typeof v === "number" || typeof v === "boolean") return String(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** ` (did you mean "client.socks5"?)` when a known name is a near miss of `name`, else "". */
export function suggest(name: string, known: Iterable<string>): string {
  const best = nearest(name, known);
  return best ? ` (did you mean "${best}"?)` : "";
}

/** The known name closest to `name` when it is a near miss (at most two edits), else undefined. */
export function nearest(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined, bestDist = 3;
  for (const k of known) {
    const dist = editDistance(name, k);
    if (dist < bestDist) [best, bestDist] = [k, dist];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
