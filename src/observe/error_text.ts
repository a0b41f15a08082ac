/** The message of anything thrown, for log lines and errors that wrap another error. */

export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
