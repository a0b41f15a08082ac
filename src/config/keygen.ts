/** `half-tunnel keygen`: a fresh shared key, 32 random bytes in base64url without padding. */

export function generateKey(): string {
  const b = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...b)).replaceAll("+", "-").replaceAll("/", "_").replace(
    /=+$/,
    "",
  );
}
