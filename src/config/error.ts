/**
 * The one error type for configuration problems, and the pieces of its messages: a message names
 * the key, the value and its source, and a near miss of a known name is suggested.
 */

export class ConfigError extends Error {
  override name = "ConfigError";
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
  let best = "", bestDist = 3;
  for (const k of known) {
    const dist = editDistance(name, k);
    if (dist < bestDist) [best, bestDist] = [k, dist];
  }
  return best ? ` (did you mean "${best}"?)` : "";
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
