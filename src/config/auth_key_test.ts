import assert from "node:assert/strict";
import { estimateBits, judgeKey, MIN_KEY_BITS } from "./auth_key.ts";
import { generateKey } from "./keygen.ts";
import { SAMPLE_KEYS } from "./sample_keys.ts";

Deno.test("the repository's sample keys are refused in any case and spacing, naming where", () => {
  assert.ok(SAMPLE_KEYS.size > 0);
  for (const [key, from] of SAMPLE_KEYS) {
    for (const k of [key, key.toUpperCase(), ` ${key}\n`]) {
      const v = judgeKey(k);
      assert.equal(v?.refuse, true, k);
      assert.match(v!.what, /^is the sample key shown in half-tunnel's /);
      assert.ok(v!.what.includes(from), v!.what);
      assert.ok(!v!.what.toLowerCase().includes(key), "the verdict repeats the key");
    }
  }
});

Deno.test("placeholders and unexpanded variables are refused", () => {
  const placeholders = [
    "change-me",
    "CHANGE_ME",
    "changeme",
    "Change me to a long random key please",
    "change-me-to-a-long-random-key-9876543210",
    "replace-this-with-a-real-key",
    "fill-me-in",
    "your-token",
    "<your key here>",
    "YOUR_SECRET_KEY",
    "my-shared-secret",
    "secret",
    "Password",
    "passwd",
    "token",
    "key",
    "api_key",
    "example-token",
    "placeholder",
    "TODO",
    "...",
    "…",
    "   ",
    "***",
    "<>",
    "xxxxxxxxxxxxxxxxxxxxxxxx",
  ];
  for (const k of placeholders) {
    const v = judgeKey(k);
    assert.equal(v?.refuse, true, k);
    assert.match(v!.what, /is a placeholder/, k);
  }
  for (
    const k of ["$HT_AUTH_KEY", "${HT_AUTH_KEY}", "$(cat key.txt)", "%HT_AUTH_KEY%", "{{ key }}"]
  ) {
    const v = judgeKey(k);
    assert.equal(v?.refuse, true, k);
    assert.match(v!.what, /never filled in/, k);
  }
});

Deno.test("short or guessable keys are warned about, not refused", () => {
  for (const k of ["shortsecret", "hunter2", "k-0123"]) {
    assert.deepEqual(judgeKey(k), { refuse: false, what: "is shorter than 16 characters" }, k);
  }
  const guessable = [
    "aaaaaaaaaaaaaaaaaaaa",
    "1234567890123456",
    "abcdefghijklmnopqrstuvwxyz",
    "zyxwvutsrqponmlkjihgfedcba",
    "abababababababababababab",
    "2468024680246802468024680",
    "passwordpasswordpassword",
    "Tunnel1!Tunnel1!Tunnel1!",
    "k".repeat(32),
  ];
  for (const k of guessable) {
    const v = judgeKey(k);
    assert.equal(v?.refuse, false, k);
    assert.match(v!.what, /^is easy to guess/, k);
    assert.ok(estimateBits(k) < MIN_KEY_BITS, `${k}: ${estimateBits(k)}`);
  }
  assert.ok(estimateBits("1234567890123456") < 10);
});

Deno.test("generated keys and ordinary long keys pass without a word", () => {
  let least = Infinity;
  for (let i = 0; i < 2000; i++) {
    const k = generateKey();
    assert.equal(judgeKey(k), null, k);
    least = Math.min(least, estimateBits(k));
  }
  // Far above the line, so the estimate never warns about a generated key.
  assert.ok(least > 3 * MIN_KEY_BITS, `least estimate of a generated key: ${least}`);
  const ordinary = [
    "a-test-key-that-is-long-enough",
    "test-key-0123456789-abcdefghijklmnop",
    "the-right-key-0123456789-abcdef",
    "reverse-test-token-0123456789",
    "correct-horse-battery-staple",
    "secret-tunnel-key-for-the-office",
    "Zq8vN3kLp0Xr7TfW",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "пароль-для-туннеля-между-серверами",
  ];
  for (const k of ordinary) assert.equal(judgeKey(k), null, `${k}: ${estimateBits(k)}`);
});
