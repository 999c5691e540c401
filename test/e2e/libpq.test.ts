// libpq's ways of connecting, against a real PostgreSQL: a scram-sha-256
// password from .pgpass and from a service file, TLS with verify-full against
// a CA made here with openssl, certificate authentication, and the one line
// each bad file or wrong secret gives while the answer stays UNKNOWN.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPrimary, type PgPrimary } from "../../src/demo/pg.ts";
import { answer, waitForAnswer } from "../../src/demo/probe.ts";
import { startResponder, type Responder } from "../../src/demo/responder.ts";
import { HOOK_TIMEOUT_MS } from "../kit/timeouts.ts";

const PASSWORD = String.raw`s3cr:et\pw`;

let dir: string;
let pg: PgPrimary;

/** Runs openssl in dir; throws with its stderr. */
function openssl(...args: string[]): void {
  const out = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe", timeout: 30_000 });
  if (out.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${out.stderr.toString()}`);
}

/** A self-signed CA: NAME.key, NAME.crt. */
function makeCa(name: string): void {
  openssl(
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"],
    ...["-keyout", `${name}.key`, "-out", `${name}.crt`, "-subj", `/CN=${name}`],
    ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
  );
}

/** NAME.key and NAME.crt signed by ca, with the subject's CN and, when given, subjectAltName. */
function issue(name: string, ca: string, cn: string, san?: string): void {
  openssl(
    ...["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
    ...["-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`],
  );
  writeFileSync(join(dir, `${name}.ext`), san ? `subjectAltName=${san}\n` : "basicConstraints=CA:FALSE\n");
  openssl(
    ...["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial"],
    ...["-days", "2", "-out", `${name}.crt`, "-extfile", `${name}.ext`],
  );
}

const read = (name: string) => readFileSync(join(dir, name), "utf8");

/** A HOME of its own for one responder, with the given files (mode 0600 unless told). */
function home(name: string, files: Record<string, string | [string, number]>): string {
  const h = join(dir, name);
  mkdirSync(join(h, ".postgresql"), { recursive: true });
  for (const [file, content] of Object.entries(files)) {
    const [text, mode] = Array.isArray(content) ? content : [content, 0o600];
    writeFileSync(join(h, file), text);
    chmodSync(join(h, file), mode);
  }
  return h;
}

const ARGS = ["--listen", "127.0.0.1:0", "--poll-interval", "20ms", "--stale-after", "500ms"];

/** The log's lines without their timestamps. */
function lines(r: Responder): string[] {
  return r.log
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => l.replace(/^\S+ /, ""));
}

/** The start line's database part. */
function database(r: Responder): string | undefined {
  return /; database (.*?); poll every/.exec(r.log)?.[1];
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "rs-libpq-"));
  makeCa("ca");
  makeCa("otherca");
  issue("server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1");
  issue("client", "ca", "certuser");
  pg = await startPrimary({
    primaryConf: ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'", "ssl_ca_file = 'ca.crt'"],
    hbaPrepend: [
      "host all pwuser 127.0.0.1/32 scram-sha-256",
      "hostssl all certuser 127.0.0.1/32 cert clientcert=verify-full",
      "host all certuser 127.0.0.1/32 reject",
    ],
    dataFiles: { "server.crt": read("server.crt"), "server.key": read("server.key"), "ca.crt": read("ca.crt") },
  });
  await pg.primary.sql(`create role pwuser login password '${PASSWORD.replace(/'/g, "''")}'`);
  await pg.primary.sql("create role certuser login");
}, HOOK_TIMEOUT_MS);

afterAll(async () => {
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, HOOK_TIMEOUT_MS);

/** .pgpass's escapes: `:` and `\` in the password. */
const pgpassLine = (port: number, password = PASSWORD) =>
  `# host:port:db:user:password\nother:*:*:*:nope\n127.0.0.1:${port}:*:pwuser:${password.replace(/[\\:]/g, "\\$&")}\n`;

describe("a password from a file, never from the command line", () => {
  test(
    ".pgpass: scram-sha-256 login with the environment naming host and user",
    async () => {
      const port = pg.primary.port;
      const HOME = home("pgpass-ok", { ".pgpass": pgpassLine(port) });
      const env = { HOME, PGHOST: "127.0.0.1", PGPORT: String(port), PGUSER: "pwuser", PGDATABASE: "postgres" };
      await using r = await startResponder(ARGS, env);
      await waitForAnswer(r.ports[0]!, "MASTER");
      expect(database(r)).toBe(`pwuser@127.0.0.1:${port}/postgres`);
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([]);
    },
    HOOK_TIMEOUT_MS,
  );

  test(
    "a service file names the server, the role and the password",
    async () => {
      const port = pg.primary.port;
      const HOME = home("service-ok", {});
      const services = join(HOME, "services.conf");
      writeFileSync(
        services,
        `# the cluster\n[other]\nhost=nowhere\n\n[main]\nhost=127.0.0.1\nport=${port}\nuser=pwuser\ndbname=postgres\npassword=${PASSWORD}\n`,
      );
      await using r = await startResponder([...ARGS, "--db", "service=main"], { HOME, PGSERVICEFILE: services });
      await waitForAnswer(r.ports[0]!, "MASTER");
      expect(database(r)).toBe(`pwuser@127.0.0.1:${port}/postgres (service main)`);
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([]);
      expect(r.log).not.toContain(PASSWORD);
    },
    HOOK_TIMEOUT_MS,
  );

  test(
    "a wrong password in .pgpass: one line naming the file, UNKNOWN",
    async () => {
      const port = pg.primary.port;
      const HOME = home("pgpass-wrong", { ".pgpass": pgpassLine(port, "wrong-one") });
      const db = `postgres://pwuser@127.0.0.1:${port}/postgres`;
      await using r = await startResponder([...ARGS, "--db", db], { HOME });
      const line =
        `warning: poll failed: password authentication failed for user "pwuser" ` +
        `(the password came from password file "${HOME}/.pgpass") (retrying every 100ms..2s)`;
      await r.waitForLog(/poll failed/);
      expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([line]);
      expect(r.log).not.toContain("wrong-one");
    },
    HOOK_TIMEOUT_MS,
  );

  test(
    "a world-readable .pgpass is ignored with one warning, as libpq does",
    async () => {
      const port = pg.primary.port;
      const HOME = home("pgpass-open", { ".pgpass": [pgpassLine(port), 0o644] });
      const db = `host=127.0.0.1 port=${port} user=pwuser dbname=postgres`;
      await using r = await startResponder([...ARGS, "--db", db], { HOME });
      await r.waitForLog(/poll failed/);
      expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([
        `warning: password file "${HOME}/.pgpass" has group or world access; permissions should be u=rw (0600) or less; it is ignored`,
        `warning: poll failed: password authentication failed for user "pwuser" ` +
          `(no password was found: put it in ~/.pgpass or the file PGPASSFILE names) (retrying every 100ms..2s)`,
      ]);
    },
    HOOK_TIMEOUT_MS,
  );

  test(
    "a password in --db still works, with one warning naming the safer ways and no password in any line",
    async () => {
      const port = pg.primary.port;
      const db = `postgres://pwuser:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}/postgres`;
      const http = ["--listen", "http:127.0.0.1:0"];
      await using r = await startResponder([...ARGS, ...http, "--db", db], { HOME: home("argv", {}) });
      await waitForAnswer(r.ports[0]!, "MASTER");
      for (const path of ["/status", "/metrics"]) {
        const body = await (await fetch(`http://127.0.0.1:${r.ports[1]}${path}`)).text();
        expect(body).toContain("primary");
        expect(body).not.toContain(PASSWORD);
        expect(body).not.toContain(encodeURIComponent(PASSWORD));
      }
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([
        "warning: --db holds a password, which every user of this host can read in the process list; put it in ~/.pgpass (or the file PGPASSFILE names) instead, or use a service file or certificate authentication",
      ]);
      expect(r.log).not.toContain(encodeURIComponent(PASSWORD));
      expect(r.log).not.toContain(PASSWORD);
    },
    HOOK_TIMEOUT_MS,
  );

  test(
    "a service that no file defines: one line naming the files, UNKNOWN, and it keeps serving",
    async () => {
      const HOME = home("service-missing", {});
      const env = { HOME, PGSERVICE: "nosuch", PGSYSCONFDIR: join(HOME, "etc") };
      await using r = await startResponder(ARGS, env);
      await r.waitForLog(/poll failed/);
      expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
      const why = `definition of service "nosuch" not found (looked in ${HOME}/.pg_service.conf, ${HOME}/etc/pg_service.conf)`;
      expect(database(r)).toBe(`service nosuch (not usable yet: ${why})`);
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([
        `warning: poll failed: ${why} (retrying every 100ms..2s)`,
      ]);
      // Fixed while running: the next attempt reads it.
      const port = pg.primary.port;
      writeFileSync(
        join(HOME, ".pg_service.conf"),
        `[nosuch]\nhost=127.0.0.1\nport=${port}\nuser=pwuser\ndbname=postgres\npassword=${PASSWORD}\n`,
      );
      await waitForAnswer(r.ports[0]!, "MASTER");
    },
    HOOK_TIMEOUT_MS,
  );
});

describe("sslmode without certificates: whether the connection is encrypted", () => {
  // allow tries without TLS first; prefer (the default) takes TLS when the server offers it.
  test.each([
    ["disable", "f"],
    ["allow", "f"],
    ["prefer", "t"],
    ["require", "t"],
  ])(
    "sslmode=%s: pg_stat_ssl says %s",
    async (mode, ssl) => {
      const port = pg.primary.port;
      const HOME = home(`mode-${mode}`, { ".pgpass": pgpassLine(port) });
      const app = `replstatus-${mode}`;
      // "any" is libpq's default and harmless; postgres.js alone would refuse it.
      const env = { HOME, PGSSLMODE: mode, PGAPPNAME: app, PGTARGETSESSIONATTRS: "any" };
      await using r = await startResponder(
        [...ARGS, "--db", `host=127.0.0.1 port=${port} user=pwuser dbname=postgres`],
        env,
      );
      await waitForAnswer(r.ports[0]!, "MASTER");
      const seen = await pg.primary.sql(
        `select ssl from pg_stat_ssl join pg_stat_activity using (pid) where application_name = '${app}'`,
      );
      expect(seen).toBe(ssl);
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([]);
    },
    HOOK_TIMEOUT_MS,
  );
});

test(
  "sslmode=require against a server without TLS: one line, UNKNOWN",
  async () => {
    await using plain = await startPrimary();
    const db = `host=127.0.0.1 port=${plain.primary.port} user=${plain.primary.user} sslmode=require`;
    await using r = await startResponder([...ARGS, "--db", db], { HOME: home("require-plain", {}) });
    await r.waitForLog(/poll failed/);
    expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
    expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([
      "warning: poll failed: server does not support SSL, but SSL was required (sslmode=require) (retrying every 100ms..2s)",
    ]);
  },
  HOOK_TIMEOUT_MS,
);

describe("TLS with a private CA", () => {
  // hostaddr dials 127.0.0.1 while host is the name the certificate must carry.
  const certDb = (extra = "") =>
    `host=localhost hostaddr=127.0.0.1 port=${pg.primary.port} user=certuser dbname=postgres ${extra}`;
  const clientFiles = () => ({
    ".postgresql/root.crt": read("ca.crt"),
    ".postgresql/postgresql.crt": read("client.crt"),
    ".postgresql/postgresql.key": read("client.key"),
  });

  test(
    "verify-full and certificate authentication from ~/.postgresql/, no secret on the command line",
    async () => {
      const HOME = home("tls-ok", clientFiles());
      await using r = await startResponder([...ARGS, "--db", certDb("sslmode=verify-full")], { HOME });
      await waitForAnswer(r.ports[0]!, "MASTER");
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([]);
      const seen = await pg.primary.sql(
        "select ssl, client_dn from pg_stat_ssl join pg_stat_activity using (pid) where usename = 'certuser'",
      );
      expect(seen).toBe("t|/CN=certuser");
    },
    HOOK_TIMEOUT_MS,
  );

  test(
    "sslmode=allow: refused without TLS by pg_hba.conf, it tries again with TLS",
    async () => {
      const HOME = home("tls-allow", clientFiles());
      await using r = await startResponder([...ARGS, "--db", certDb("sslmode=allow application_name=allow")], { HOME });
      await waitForAnswer(r.ports[0]!, "MASTER");
      const seen = await pg.primary.sql(
        "select ssl from pg_stat_ssl join pg_stat_activity using (pid) where application_name = 'allow'",
      );
      expect(seen).toBe("t");
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([
        `warning: poll failed: pg_hba.conf rejects connection for host "127.0.0.1", user "certuser", database "postgres", no encryption ` +
          "(set PGUSER or the user in --db, or run as an OS user PostgreSQL lets in; see pg_hba.conf) (retrying every 100ms..2s)",
      ]);
    },
    HOOK_TIMEOUT_MS,
  );

  test(
    "verify-ca checks the chain but not the name; verify-full checks the name",
    async () => {
      const HOME = home("tls-name", clientFiles());
      const db = (mode: string) =>
        `host=db.example hostaddr=127.0.0.1 port=${pg.primary.port} user=certuser dbname=postgres sslmode=${mode}`;
      await using ca = await startResponder([...ARGS, "--db", db("verify-ca")], { HOME });
      await waitForAnswer(ca.ports[0]!, "MASTER");
      await using full = await startResponder([...ARGS, "--db", db("verify-full")], { HOME });
      await full.waitForLog(/poll failed/);
      expect(await answer(full.ports[0]!)).toBe("UNKNOWN");
      expect(lines(full).filter((l) => !l.startsWith("info: "))).toEqual([
        `warning: poll failed: the server's certificate is not for "db.example": Hostname/IP does not match certificate's altnames: Host: db.example. is not in the cert's altnames: DNS:localhost, IP Address:127.0.0.1 (retrying every 100ms..2s)`,
      ]);
    },
    HOOK_TIMEOUT_MS,
  );

  test(
    "a wrong CA: one line, UNKNOWN",
    async () => {
      const HOME = home("tls-wrong-ca", { ...clientFiles(), "otherca.crt": read("otherca.crt") });
      const env = { HOME, PGSSLROOTCERT: join(HOME, "otherca.crt") };
      await using r = await startResponder([...ARGS, "--db", certDb("sslmode=verify-full")], env);
      await r.waitForLog(/poll failed/);
      expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([
        `warning: poll failed: could not verify the server's certificate against root certificate file "${HOME}/otherca.crt": self signed certificate in certificate chain (retrying every 100ms..2s)`,
      ]);
    },
    HOOK_TIMEOUT_MS,
  );

  test.each([
    ["a key others may read", "key"],
    ["no root certificate for verify-full", "root"],
  ])(
    "%s: one line naming the file, UNKNOWN",
    async (_what, which) => {
      const files: Record<string, string | [string, number]> = { ...clientFiles() };
      if (which === "key") files[".postgresql/postgresql.key"] = [read("client.key"), 0o644];
      else delete files[".postgresql/root.crt"];
      const HOME = home(`tls-bad-${which}`, files);
      await using r = await startResponder([...ARGS, "--db", certDb("sslmode=verify-full")], { HOME });
      await r.waitForLog(/poll failed/);
      expect(await answer(r.ports[0]!)).toBe("UNKNOWN");
      const why =
        which === "key"
          ? `private key file "${HOME}/.postgresql/postgresql.key" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root`
          : `root certificate file "${HOME}/.postgresql/root.crt" does not exist; either provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification`;
      expect(lines(r).filter((l) => !l.startsWith("info: "))).toEqual([
        `warning: poll failed: ${why} (retrying every 100ms..2s)`,
      ]);
    },
    HOOK_TIMEOUT_MS,
  );
});
