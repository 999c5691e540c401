// libpq's rules as tables: connection strings, .pgpass lines, service files,
// the precedence of the sources, and what TLS verifies. No server needed.
import { describe, expect, test } from "bun:test";
import { parseConninfo, redactConninfo, type Conninfo } from "../../src/poll/worker/libpq/conninfo.ts";
import { lookupPassword, passFileProblem, splitPassLine } from "../../src/poll/worker/libpq/pgpass.ts";
import { findService } from "../../src/poll/worker/libpq/service.ts";
import { resolveSettings, type Io } from "../../src/poll/worker/libpq/settings.ts";
import { keyFileProblem, tlsOptions } from "../../src/poll/worker/libpq/tls.ts";
import { describeTlsError } from "../../src/poll/worker/libpq/tlserror.ts";

describe("connection strings", () => {
  test.each<[string, Conninfo]>([
    ["", {}],
    ["host=db1 port=5433", { host: "db1", port: "5433" }],
    ["  host = db1   dbname=app  ", { host: "db1", dbname: "app" }],
    ["password='it\\'s a secret' user=x", { password: "it's a secret", user: "x" }],
    ["password=back\\\\slash\\ space", { password: "back\\slash space" }],
    ["password=''", { password: "" }],
    ["service=main sslmode=verify-full", { service: "main", sslmode: "verify-full" }],
    ["postgres://", {}],
    ["postgresql://u:p%40ss@db1:5433/app", { user: "u", password: "p@ss", host: "db1", port: "5433", dbname: "app" }],
    [
      "postgres://db1/app?sslmode=verify-ca&sslrootcert=/etc/ca.crt",
      {
        host: "db1",
        dbname: "app",
        sslmode: "verify-ca",
        sslrootcert: "/etc/ca.crt",
      },
    ],
    ["postgresql://[::1]:5432/x", { host: "::1", port: "5432", dbname: "x" }],
    ["postgresql://%2Fvar%2Frun%2Fpostgresql/x", { host: "/var/run/postgresql", dbname: "x" }],
    ["postgresql:///x?host=/tmp&port=5999", { dbname: "x", host: "/tmp", port: "5999" }],
    ["postgresql://h/?ssl=true", { host: "h", sslmode: "require" }],
    ["postgresql://u@h", { user: "u", host: "h" }],
  ])("%j", (text, want) => {
    expect(parseConninfo(text)).toEqual(want);
  });

  test.each([
    ["host=db1 port", 'missing "=" after the word at offset 9 of the connection string'],
    ["password='open", "unterminated quoted string in connection string"],
    ["hostname=db1", 'connection string: invalid connection option "hostname"'],
    ["requirepeer=postgres", 'connection string: connection option "requirepeer" is not supported'],
    ["postgres://h1,h2/db", "a URL with several hosts: replstatus watches one server"],
    ["postgres://h/db?sslmode", 'missing "=" in a URL query parameter'],
    ["postgres://h/db?bogus=1", 'URL: invalid connection option "bogus"'],
    ["postgres://[::1/db", 'missing "]" in IPv6 host address in URL'],
  ])("%j is refused: %s", (text, message) => {
    expect(() => parseConninfo(text)).toThrow(message);
  });

  test.each([
    ["postgres://u:secret@h/db", "postgres://u:***@h/db"],
    ["postgres://u:p@ss@h/db", "postgres://u:***@h/db"],
    ["postgres://h/db?password=secret&sslmode=require", "postgres://h/db?password=***&sslmode=require"],
    ["host=h password=secret user=u", "host=h password=*** user=u"],
    ["host=h password = 'a b' user=u", "host=h password = *** user=u"],
    ["sslpassword=secret", "sslpassword=***"],
    ["mysql://u:secret@h", "mysql://u:***@h"],
  ])("redacted: %j", (text, want) => {
    expect(redactConninfo(text)).toBe(want);
  });
});

describe(".pgpass", () => {
  test.each([
    ["h:5432:db:u:pw", ["h", "5432", "db", "u", "pw"]],
    ["h:*:*:u:p\\:w\\\\", ["h", "*", "*", "u", "p:w\\"]],
    ["\\/tmp:5432:*:*:x", ["/tmp", "5432", "*", "*", "x"]],
    ["h:5432:db:u:pw:ignored", ["h", "5432", "db", "u", "pw"]],
    ["# comment:a:b:c:d", undefined],
    ["h:5432:db", undefined],
  ])("%j", (line, want) => {
    expect(splitPassLine(line)).toEqual(want as string[] | undefined);
  });

  const file = [
    "# host:port:db:user:password",
    "db1:5432:app:alice:one",
    "db1:*:*:alice:two",
    "localhost:5432:*:bob:three",
    "/srv/pg:5432:*:bob:four",
    "*:*:*:*:five",
  ].join("\n");
  const SOCKET_DIRS = ["/var/run/postgresql", "/tmp"];
  test.each([
    [{ host: "db1", port: "5432", dbname: "app", user: "alice" }, "one"],
    [{ host: "db1", port: "5433", dbname: "app", user: "alice" }, "two"],
    [{ host: "localhost", port: "5432", dbname: "x", user: "bob" }, "three"],
    [{ host: "", port: "5432", dbname: "x", user: "bob" }, "three"],
    [{ host: "/var/run/postgresql", port: "5432", dbname: "x", user: "bob" }, "three"],
    [{ host: "/srv/pg", port: "5432", dbname: "x", user: "bob" }, "four"],
    [{ host: "127.0.0.1", port: "5432", dbname: "x", user: "bob" }, "five"],
  ])("%j -> %s", (key, want) => {
    expect(lookupPassword(file, key, SOCKET_DIRS)).toBe(want);
  });

  test("no line matches", () => {
    expect(
      lookupPassword("db1:5432:app:alice:one\r\n", { host: "db2", port: "5432", dbname: "app", user: "alice" }, []),
    ).toBeUndefined();
  });

  test.each([
    [0o100600, undefined],
    [0o100400, undefined],
    [0o100640, 'password file "/p" has group or world access; permissions should be u=rw (0600) or less'],
    [0o100604, 'password file "/p" has group or world access; permissions should be u=rw (0600) or less'],
    [0o040700, 'password file "/p" is not a plain file'],
  ])("mode %o", (mode, want) => {
    expect(passFileProblem("/p", mode)).toBe(want);
  });
});

describe("service files", () => {
  const text = "# services\n[a]\nhost=h1\nport=5433\nhost=ignored\n\n[b]\n  dbname=x y  \n[c]\n";
  test.each<[string, Conninfo | undefined]>([
    ["a", { host: "h1", port: "5433" }],
    ["b", { dbname: "x y" }],
    ["c", {}],
    ["d", undefined],
  ])("[%s]", (name, want) => {
    expect(findService(text, "/s", name)).toEqual(want);
  });

  test.each([
    ["[a]\nhost\n", 'syntax error in service file "/s", line 2'],
    ["[a\nhost=h\n", 'syntax error in service file "/s", line 1'],
    ["[a]\nservice=b\n", 'nested service specifications not supported in service file "/s", line 2'],
    ["[a]\nhots=h\n", 'service file "/s", line 2: invalid connection option "hots"'],
  ])("%j is refused", (bad, message) => {
    expect(() => findService(bad, "/s", "a")).toThrow(message);
  });
});

/** An Io over an in-memory file tree. */
function memIo(files: Record<string, string | { text: string; mode: number; uid?: number; unreadable?: true }>): Io {
  const get = (path: string) => {
    const f = files[path];
    return f === undefined
      ? undefined
      : typeof f === "string"
        ? { text: f, mode: 0o100600, uid: 1000 }
        : { uid: 1000, ...f };
  };
  return {
    home: "/home/u",
    readText(path) {
      const f = get(path);
      if (!f) throw Object.assign(new Error("ENOENT"), { code: "ENOENT" });
      if ("unreadable" in f) throw Object.assign(new Error("EACCES"), { code: "EACCES" });
      return f.text;
    },
    stat: (path) => get(path),
    defaultSocketDir: () => "/var/run/postgresql",
    socketDirs: ["/var/run/postgresql", "/tmp"],
    osUser: () => "osuser",
    uid: 1000,
  };
}

describe("precedence: --db, then the service, then PG*, then the defaults", () => {
  const services = {
    "/home/u/.pg_service.conf": "[main]\nhost=svc-host\nport=6000\nuser=svc-user\n",
    "/etc/postgresql-common/pg_service.conf": "[main]\nhost=sys-host\n[sys]\nhost=sys-only\n",
  };
  test.each<[string, Conninfo, Record<string, string>, Record<string, unknown>]>([
    ["defaults", {}, {}, { connectHost: "/var/run/postgresql", port: 5432, user: "osuser", dbname: "osuser" }],
    ["environment", {}, { PGHOST: "e", PGPORT: "7000", PGUSER: "eu" }, { connectHost: "e", port: 7000, user: "eu" }],
    ["--db over environment", { host: "x" }, { PGHOST: "e" }, { connectHost: "x" }],
    [
      "service over environment",
      { service: "main" },
      { PGHOST: "e", PGDATABASE: "d" },
      {
        connectHost: "svc-host",
        port: 6000,
        user: "svc-user",
        dbname: "d",
        service: "main",
      },
    ],
    ["--db over service", { service: "main", port: "6001" }, {}, { connectHost: "svc-host", port: 6001 }],
    ["PGSERVICE", {}, { PGSERVICE: "main" }, { connectHost: "svc-host" }],
    ["the user's file first, then the system's", { service: "sys" }, {}, { connectHost: "sys-only" }],
    [
      "hostaddr dials, host names",
      { host: "db.example", hostaddr: "10.0.0.1" },
      {},
      {
        connectHost: "10.0.0.1",
        host: "db.example",
      },
    ],
    ["sslmode default prefer", { host: "h" }, {}, { sslmode: "prefer" }],
    ["sslrootcert=system means verify-full", { sslrootcert: "system" }, {}, { sslmode: "verify-full" }],
    ["PGSSLMODE", {}, { PGSSLMODE: "verify-ca" }, { sslmode: "verify-ca" }],
    ["connect_timeout at least 2 s", {}, { PGCONNECT_TIMEOUT: "1" }, { connectTimeoutMs: 2000 }],
    ["connect_timeout 0 is none", { connect_timeout: "0" }, {}, { connectTimeoutMs: undefined }],
    ["PGAPPNAME", {}, { PGAPPNAME: "mon" }, { applicationName: "mon" }],
    ["application name default", {}, {}, { applicationName: "replstatus" }],
    ["target_session_attrs=any is harmless", { target_session_attrs: "any" }, {}, { port: 5432 }],
    [
      "TLS files default to ~/.postgresql",
      {},
      { PGSSLKEY: "/k" },
      {
        tls: {
          rootcert: "/home/u/.postgresql/root.crt",
          cert: "/home/u/.postgresql/postgresql.crt",
          key: "/k",
          crl: "/home/u/.postgresql/root.crl",
          passphrase: undefined,
        },
      },
    ],
  ])("%s", (_name, explicit, env, want) => {
    expect(resolveSettings(explicit, env, memIo(services))).toMatchObject(want);
  });

  test.each<[string, Conninfo, Record<string, string>, string]>([
    ["PGTARGETSESSIONATTRS", {}, { PGTARGETSESSIONATTRS: "primary" }, 'could not use PGTARGETSESSIONATTRS "primary"'],
    ["a missing service", { service: "nope" }, {}, 'definition of service "nope" not found'],
    ["a weak mode with system roots", { sslrootcert: "system", sslmode: "require" }, {}, 'weak sslmode "require"'],
    [
      "a bad port in a service",
      { service: "bad" },
      { PGSERVICEFILE: "/bad.conf" },
      'invalid value for port in service "bad"',
    ],
    ["several hosts", { host: "a,b" }, {}, 'could not use host in --db "a,b"'],
  ])("%s is refused", (_name, explicit, env, message) => {
    const io = memIo({ ...services, "/bad.conf": "[bad]\nport=high\n" });
    expect(() => resolveSettings(explicit, env, io)).toThrow(message);
  });

  test("a bad value from a service file is the file's fault (kept serving), from --db a configuration error", () => {
    const io = memIo({ "/bad.conf": "[bad]\nport=high\n" });
    const code = (explicit: Conninfo) => {
      try {
        resolveSettings(explicit, { PGSERVICEFILE: "/bad.conf" }, io);
      } catch (err) {
        return (err as { code?: string }).code;
      }
    };
    expect([code({ service: "bad" }), code({ port: "high" })]).toEqual(["CONNINFO_FILE", "CONNINFO_INVALID"]);
  });

  test.each<[string, Conninfo, Record<string, string>, Record<string, unknown>, unknown]>([
    ["from --db", { password: "p" }, {}, {}, { password: "p", passwordFrom: "--db" }],
    [
      "PGPASSWORD before .pgpass",
      {},
      { PGPASSWORD: "e" },
      { "/home/u/.pgpass": "*:*:*:*:f" },
      {
        password: "e",
        passwordFrom: "PGPASSWORD",
      },
    ],
    [
      "~/.pgpass",
      { host: "h" },
      {},
      { "/home/u/.pgpass": "h:5432:*:osuser:f" },
      {
        password: "f",
        passwordFrom: 'password file "/home/u/.pgpass"',
      },
    ],
    ["PGPASSFILE", {}, { PGPASSFILE: "/p" }, { "/p": "localhost:*:*:*:g" }, { password: "g" }],
    ["passfile=", { passfile: "/p" }, {}, { "/p": "*:*:*:*:g" }, { password: "g" }],
    [
      "a world-readable .pgpass is ignored",
      {},
      {},
      { "/home/u/.pgpass": { text: "*:*:*:*:f", mode: 0o100644 } },
      {
        password: undefined,
        warnings: [
          'password file "/home/u/.pgpass" has group or world access; permissions should be u=rw (0600) or less; it is ignored',
        ],
      },
    ],
    [
      "an unreadable .pgpass is ignored",
      {},
      {},
      { "/home/u/.pgpass": { text: "", mode: 0o100600, unreadable: true } },
      {
        password: undefined,
        warnings: ['could not read password file "/home/u/.pgpass": permission denied; it is ignored'],
      },
    ],
  ])("password: %s", (_name, explicit, env, files, want) => {
    expect(resolveSettings(explicit, env, memIo(files as Parameters<typeof memIo>[0]))).toMatchObject(
      want as Record<string, unknown>,
    );
  });
});

describe("TLS: what is read and what is verified", () => {
  const ca = "/home/u/.postgresql/root.crt";
  const crt = "/home/u/.postgresql/postgresql.crt";
  const key = "/home/u/.postgresql/postgresql.key";
  const tls = (sslmode: string, files: Parameters<typeof memIo>[0], host = "db.example") => {
    const io = memIo(files);
    return tlsOptions(resolveSettings({ host, sslmode }, {}, io), io);
  };
  test.each([
    ["require", {}, "none", false],
    ["require", { [ca]: "CA" }, "ca", true],
    ["prefer", { [ca]: "CA" }, "ca", true],
    ["verify-ca", { [ca]: "CA" }, "ca", true],
    ["verify-full", { [ca]: "CA" }, "full", true],
  ])("sslmode=%s with %j: verify %s", (mode, files, verify, reject) => {
    const o = tls(mode, files);
    expect([o.verify, o.rejectUnauthorized, o.servername, o.ca]).toEqual([
      verify,
      reject,
      "db.example",
      verify === "none" ? undefined : "CA",
    ]);
  });

  test("verify-ca accepts any name; verify-full wants the host's", () => {
    const cert = { subject: { CN: "other" }, subjectaltname: "DNS:other" } as never;
    expect(tls("verify-ca", { [ca]: "CA" }).checkServerIdentity!("db.example", cert)).toBeUndefined();
    expect(tls("verify-full", { [ca]: "CA" }).checkServerIdentity!("db.example", cert)?.message).toContain(
      "Host: db.example. is not in the cert's altnames: DNS:other",
    );
  });

  test("no SNI for an IP address", () => {
    expect(tls("require", {}, "127.0.0.1").servername).toBeUndefined();
  });

  test("a client certificate and key", () => {
    const o = tls("verify-full", { [ca]: "CA", [crt]: "CRT", [key]: "KEY", "/home/u/.postgresql/root.crl": "CRL" });
    expect([o.cert, o.key, o.crl]).toEqual(["CRT", "KEY", "CRL"]);
  });

  test.each([
    ["verify-full", {}, `root certificate file "${ca}" does not exist`],
    ["verify-ca", {}, `root certificate file "${ca}" does not exist`],
    ["require", { [crt]: "CRT" }, `certificate present, but not private key file "${key}"`],
    [
      "require",
      { [crt]: "CRT", [key]: { text: "K", mode: 0o100640 } },
      `private key file "${key}" has group or world access`,
    ],
    [
      "require",
      { [ca]: { text: "", mode: 0o100600, unreadable: true } },
      `could not read root certificate file "${ca}": permission denied`,
    ],
  ])("sslmode=%s with %j: %s", (mode, files, message) => {
    expect(() => tls(mode, files as Parameters<typeof memIo>[0])).toThrow(message);
  });

  test.each([
    [0o100600, 1000, undefined],
    [0o100640, 1000, "group or world access"],
    [0o100640, 0, undefined],
    [0o100644, 0, "group or world access"],
    [0o100644, 2000, undefined],
    [0o040700, 1000, "is not a regular file"],
  ])("key mode %o owned by %d", (mode, uid, want) => {
    const problem = keyFileProblem("/k", { mode, uid }, 1000);
    if (want === undefined) expect(problem).toBeUndefined();
    else expect(problem).toContain(want);
  });

  test("certificate errors name the root file or the host", () => {
    const s = resolveSettings({ host: "db.example", sslrootcert: "/ca.crt" }, {}, memIo({}));
    const err = (code: string, message: string) => Object.assign(new Error(message), { code });
    expect(describeTlsError(err("SELF_SIGNED_CERT_IN_CHAIN", "self signed certificate in certificate chain"), s)).toBe(
      `could not verify the server's certificate against root certificate file "/ca.crt": self signed certificate in certificate chain`,
    );
    expect(describeTlsError(err("ERR_TLS_CERT_ALTNAME_INVALID", "no match"), s)).toBe(
      `the server's certificate is not for "db.example": no match`,
    );
    expect(describeTlsError(err("ECONNREFUSED", "refused"), s)).toBeUndefined();
  });
});
