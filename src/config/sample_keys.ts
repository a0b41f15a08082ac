/**
 * Every key this repository publishes as a sample (in configs/, README.md, docs/, deployments/),
 * with where it is shown. Every copy of half-tunnel carries them, so a tunnel keyed with one is
 * open to anyone: the config refuses them (`auth_key.ts`). A sample stays listed after it leaves
 * the files, because older copies still show it. `sample_keys_test.ts` scans those files and fails
 * when one shows a key that the config would accept, so a new sample cannot ship as a usable key.
 */

/** Sample key, lower case → where it is shown, as the refusal names it. */
export const SAMPLE_KEYS: ReadonlyMap<string, string> = new Map([
  ["change-me-to-a-long-random-key-0123456789", "configs/*.yaml"],
  ["change-me-to-a-long-random-token", "configs/reverse-*.toml"],
  ["a-long-random-shared-token", "README.md"],
]);
