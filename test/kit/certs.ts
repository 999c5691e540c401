// Throwaway certificates for the tests, made by the machine's `openssl`: a CA,
// server certificates for given IP addresses, client certificates, a second
// CA (an impostor's), an expired certificate. EC P-256 keys, fast to make.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trackDir, untrackDir } from "../../src/demo/cleanup.ts";

export interface CertPair {
  cert: string;
  key: string;
}

export interface Certs extends Disposable {
  dir: string;
  /** The CA's certificate, for --tls-ca, --peer-ca, haproxy's ca-file. */
  ca: string;
  /** A second CA: what an impostor has. */
  otherCa: string;
  /** A certificate for `ips` (subjectAltName) signed by the CA, or by the other CA with `fromOtherCa`. */
  server(name: string, ips: string[], opts?: { fromOtherCa?: boolean; expired?: boolean }): CertPair;
  /** A client certificate (extendedKeyUsage clientAuth). */
  client(name: string, opts?: { fromOtherCa?: boolean; expired?: boolean }): CertPair;
  /** haproxy's `crt` wants certificate and key in one file. */
  combined(pair: CertPair): string;
}

function openssl(dir: string, args: string[]): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) {
    throw new Error(
      `testkit: could not run openssl ${args[0]}: ${r.stderr.toString().trim()}\nhint: apt-get install -y openssl`,
    );
  }
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

export function makeCerts(): Certs {
  const dir = mkdtempSync(join(tmpdir(), "rs-certs-"));
  trackDir(dir);
  const ca = (name: string) => {
    openssl(
      dir,
      ["req", "-x509", ...EC, "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "3"].concat([
        "-subj",
        `/CN=${name}`,
      ]),
    );
    return join(dir, `${name}.crt`);
  };
  const caCert = ca("test-ca");
  const otherCa = ca("other-ca");
  const issue = (name: string, ext: string, opts: { fromOtherCa?: boolean; expired?: boolean } = {}): CertPair => {
    const issuer = opts.fromOtherCa ? "other-ca" : "test-ca";
    writeFileSync(join(dir, `${name}.ext`), ext + "\n");
    openssl(dir, ["req", ...EC, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`]);
    // -days -1: notAfter a day before notBefore, so the certificate is expired from birth.
    openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${issuer}.crt`,
      "-CAkey",
      `${issuer}.key`,
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      opts.expired ? "-1" : "3",
      "-extfile",
      `${name}.ext`,
    ]);
    return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  };
  return {
    dir,
    ca: caCert,
    otherCa,
    server: (name, ips, opts) => issue(name, `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(",")}`, opts),
    client: (name, opts) => issue(name, "extendedKeyUsage=clientAuth", opts),
    combined(pair) {
      const path = pair.cert.replace(/\.crt$/, ".pem");
      writeFileSync(path, readFileSync(pair.cert, "utf8") + readFileSync(pair.key, "utf8"));
      return path;
    },
    [Symbol.dispose]() {
      untrackDir(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
