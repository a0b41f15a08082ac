/** The one error type for configuration problems; its message names the key, value and source. */

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
