/** The one error type for configuration problems; its message names the key, value and source. */

export class ConfigError extends Error {
  override name = "ConfigError";
}
