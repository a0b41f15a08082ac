/** A throwaway self-signed certificate for localhost/127.0.0.1, made with openssl in a temp dir. */

export interface TempCert {
  certFile: string;
  keyFile: string;
  cleanup(): Promise<void>;
}

/**
 * `backhaul`: made as Backhaul's docs make one (`openssl req -x509` as is, so CA:TRUE), which the
 * runtime's TLS refuses as a server certificate even when given as a CA (CaUsedAsEndEntity).
 */
export async function selfSignedCert(opts: { backhaul?: boolean } = {}): Promise<TempCert> {
  const dir = await Deno.makeTempDir({ prefix: "ht-cert-" });
  const certFile = `${dir}/cert.pem`, keyFile = `${dir}/key.pem`;
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      ...(opts.backhaul ? [] : ["-addext", "basicConstraints=critical,CA:FALSE"]),
      "-days",
      "2",
      "-keyout",
      keyFile,
      "-out",
      certFile,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`openssl failed: ${new TextDecoder().decode(out.stderr)}`);
  return { certFile, keyFile, cleanup: () => Deno.remove(dir, { recursive: true }) };
}
