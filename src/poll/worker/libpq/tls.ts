// The TLS side of sslmode (PostgreSQL docs, "SSL Support"): which files are
// read and what is verified, as options for node:tls's connect, which
// postgres.js takes as its `ssl` option. Read only once the server has agreed
// to TLS, as libpq does, so a stray key does not stop a plaintext connection.
import { checkServerIdentity, type ConnectionOptions, type PeerCertificate } from "node:tls";
import { isIP } from "node:net";
import { fileCause, type Io, type Settings } from "./settings.ts";
import { ReplstatusError } from "../../../errors.ts";

/** What the server's certificate must prove: nothing, a chain to the root, or also the host name. */
export type Verify = "none" | "ca" | "full";

export function tlsOptions(s: Settings, io: Io): ConnectionOptions & { verify: Verify } {
  const { tls } = s;
  const out: ConnectionOptions & { verify: Verify } = { verify: "none", rejectUnauthorized: false };
  if (s.sni && isIP(s.host) === 0) out.servername = s.host;
  // Without a root file, require means "encrypt, trust anyone"; with one, the
  // chain is checked: libpq keeps that for backwards compatibility.
  if (tls.rootcert !== "system") {
    const ca = readIfPresent(tls.rootcert, "root certificate file", io);
    if (ca === undefined && (s.sslmode === "verify-ca" || s.sslmode === "verify-full")) {
      throw new ReplstatusError(
        "CONNINFO_FILE",
        `root certificate file "${tls.rootcert}" does not exist; either provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification`,
      );
    }
    if (ca !== undefined) {
      out.ca = ca;
      out.verify = s.sslmode === "verify-full" ? "full" : "ca";
      const crl = readIfPresent(tls.crl, "certificate revocation list file", io);
      if (crl !== undefined) out.crl = crl;
    }
  } else {
    out.verify = "full";
  }
  if (out.verify !== "none") {
    out.rejectUnauthorized = true;
    // verify-ca: the chain, not the name. verify-full: the name is the host
    // setting (not hostaddr), matched against the certificate's SANs.
    const host = s.host;
    out.checkServerIdentity =
      out.verify === "ca" ? () => undefined : (_name: string, cert: PeerCertificate) => checkServerIdentity(host, cert);
  }
  const cert = readIfPresent(tls.cert, "certificate file", io);
  if (cert !== undefined) {
    const st = statOrThrow(tls.key, "private key file", io);
    if (st === undefined)
      throw new ReplstatusError("CONNINFO_FILE", `certificate present, but not private key file "${tls.key}"`);
    const problem = keyFileProblem(tls.key, st, io.uid);
    if (problem) throw new ReplstatusError("CONNINFO_FILE", problem);
    out.cert = cert;
    out.key = readOrThrow(tls.key, "private key file", io);
    if (tls.passphrase !== undefined) out.passphrase = tls.passphrase;
  }
  return out;
}

/** libpq refuses a private key that others may read: 0600 for the owner, 0640 when root owns it. */
export function keyFileProblem(path: string, st: { mode: number; uid: number }, uid: number): string | undefined {
  if ((st.mode & 0o170000) !== 0o100000) return `private key file "${path}" is not a regular file`;
  const tooOpen = (st.uid === uid && (st.mode & 0o077) !== 0) || (st.uid === 0 && (st.mode & 0o037) !== 0);
  if (!tooOpen) return undefined;
  return `private key file "${path}" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root`;
}

function statOrThrow(path: string, what: string, io: Io): { mode: number; uid: number } | undefined {
  try {
    return io.stat(path);
  } catch (err) {
    throw new ReplstatusError("CONNINFO_FILE", `could not read ${what} "${path}": ${fileCause(err)}`);
  }
}

function readOrThrow(path: string, what: string, io: Io): string {
  try {
    return io.readText(path);
  } catch (err) {
    throw new ReplstatusError("CONNINFO_FILE", `could not read ${what} "${path}": ${fileCause(err)}`);
  }
}

function readIfPresent(path: string, what: string, io: Io): string | undefined {
  return statOrThrow(path, what, io) === undefined ? undefined : readOrThrow(path, what, io);
}
