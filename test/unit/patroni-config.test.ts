// --patroni FILE and its flags: what is read from patroni.yml, what the flags
// override, and one clear line for what is not supported.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { buildConfig, parseArgv } from "../../src/config/load.ts";
import { ReplstatusError } from "../../src/errors.ts";
import { configTarget } from "../../src/poll/target.ts";
import { cleanEnv, MAIN } from "../../src/demo/responder.ts";
import { numberedFiles, tempDir } from "../kit/tmp.ts";

const dir = tempDir("rs-patroni-config-");
const yml = numberedFiles(dir, "p", ".yml");
const build = (args: string[]) => buildConfig(parseArgv(args), {});

test("patroni.yml: scope, namespace, name, etcd3 hosts and tags", () => {
  const file = yml(
    [
      "scope: batman",
      "namespace: /db/",
      "name: pg1",
      "etcd3:",
      "  hosts: 10.0.0.1:2379,10.0.0.2",
      "  protocol: https",
      "  username: patroni",
      "  password: s3cret",
      "  cacert: /etc/ssl/ca.pem",
      "postgresql:",
      "  listen: 127.0.0.1,10.0.0.5:5433",
      "  parameters:",
      "    unix_socket_directories: /run/pg, /tmp",
      "tags:",
      "  nofailover: false",
      "  noloadbalance: true",
      "  dc: east",
      "  weight: 2",
    ].join("\n"),
  );
  const c = build(["--patroni", file]);
  expect(c.patroni).toEqual({
    file,
    scope: "batman",
    namespace: "/db/",
    member: "pg1",
    prefix: "/db/batman/",
    pgEnv: { PGPORT: "5433", PGHOST: "/run/pg" },
    etcd: {
      urls: ["https://10.0.0.1:2379", "https://10.0.0.2:2379"],
      username: "patroni",
      password: "s3cret",
      cacert: "/etc/ssl/ca.pem",
      cert: undefined,
      key: undefined,
    },
  });
  // nofailover: false is dropped, as Patroni drops falsy special tags; others compare as lowercased str().
  expect(c.tags).toEqual({ values: { noloadbalance: "true", dc: "east", weight: "2" }, noloadbalance: true });
});

test.each([
  ["etcd3 url with credentials", "etcd3:\n  url: http://u:p@127.0.0.1:2380\n", ["http://127.0.0.1:2380"], "u"],
  [
    "etcd3 url as a comma list, credentials from the first",
    "etcd3:\n  url: http://u:p@127.0.0.1:2380,http://127.0.0.2:2380\n",
    ["http://127.0.0.1:2380", "http://127.0.0.2:2380"],
    "u",
  ],
  [
    "etcd3 url as a YAML list",
    "etcd3:\n  url:\n  - http://v:p@127.0.0.1:2380\n  - http://127.0.0.2:2380\n",
    ["http://127.0.0.1:2380", "http://127.0.0.2:2380"],
    "v",
  ],
  ["etcd3 host, default port", "etcd3:\n  host: 127.0.0.1\n", ["http://127.0.0.1:2379"], undefined],
  ["etcd3 hosts as a list", "etcd3:\n  hosts:\n  - a:1\n  - b:2\n", ["http://a:1", "http://b:2"], undefined],
] as const)("%s", (_, section, urls, username) => {
  const c = build(["--patroni", yml(`scope: s\nname: n\n${section}`)]);
  expect(c.patroni?.etcd.urls).toEqual([...urls]);
  expect(c.patroni?.etcd.username).toBe(username);
  expect(c.patroni?.prefix).toBe("/service/s/");
});

test("flags override the file; --etcd alone turns the mode on; --tag adds tags", () => {
  const file = yml("scope: a\nname: n1\netcd3:\n  host: 10.0.0.1:2379\ntags:\n  dc: east\n");
  const c = build(["--patroni", file, "--etcd", "http://127.0.0.1:1234", "--scope", "b", "--member", "n2"]);
  expect(c.patroni?.etcd.urls).toEqual(["http://127.0.0.1:1234"]);
  expect([c.patroni?.scope, c.patroni?.member, c.patroni?.prefix]).toEqual(["b", "n2", "/service/b/"]);
  const bare = build(["--etcd", "http://127.0.0.1:2379", "--scope", "s", "--member", "m", "--tag", "dc=west"]);
  expect(bare.patroni?.prefix).toBe("/service/s/");
  expect(bare.tags).toEqual({ values: { dc: "west" }, noloadbalance: false });
  expect(build([]).patroni).toBeUndefined();
  expect(build(["--tag", "noloadbalance=true"]).tags.noloadbalance).toBe(true);
});

test.each([
  [
    "an etcd (v2) store",
    "scope: s\nname: n\netcd:\n  host: 127.0.0.1:2379\n",
    /its store is "etcd:", and only etcd v3/,
  ],
  ["a consul store", "scope: s\nname: n\nconsul:\n  host: x\n", /its store is "consul:"/],
  ["no scope", "name: n\netcd3:\n  host: 127.0.0.1\n", /missing scope: give --scope or a scope: in/],
  [
    "SRV discovery",
    "scope: s\nname: n\netcd3:\n  srv: example.com\n",
    /DNS SRV discovery of etcd \(srv\) is not supported/,
  ],
  ["not YAML", "scope: [\n", /could not parse .* \(--patroni\)/],
] as const)("one clear line for %s", (_, text, message) => {
  expect(() => build(["--patroni", yml(text)])).toThrow(message);
  expect(() => build(["--patroni", yml(text)])).toThrow(ReplstatusError);
});

test("a missing file, a bad --etcd, a bad --tag, --peer with the mode", () => {
  expect(() => build(["--patroni", join(dir, "none.yml")])).toThrow(
    /could not read .*none\.yml \(--patroni\): no such file/,
  );
  expect(() => build(["--etcd", "etcd:2379", "--scope", "s", "--member", "m"])).toThrow(/invalid value for --etcd/);
  expect(() => build(["--tag", "novalue"])).toThrow(/invalid value for --tag: "novalue"/);
  expect(() =>
    build(["--etcd", "http://127.0.0.1:2379", "--scope", "s", "--member", "m", "--peer", "http://127.0.0.1:1"]),
  ).toThrow(/--peer cannot be combined with the Patroni mode/);
});

test("the CLI: a store other than etcd v3 is one line on stderr and exit 2", async () => {
  const file = yml("scope: s\nname: n\nzookeeper:\n  hosts: ['127.0.0.1:2181']\n");
  const proc = Bun.spawn([process.execPath, MAIN, "--patroni", file], {
    env: cleanEnv(),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  expect(out).toBe("");
  expect(err).toBe(
    `replstatus: could not use ${file}: its store is "zookeeper:", and only etcd v3 (an "etcd3:" section) is supported\n`,
  );
  expect(code).toBe(2);
});

// patroni.yml's socket dir and port sit below --db, the service and PG*, as --cluster's do (poll/target.ts).
test.each([
  ["patroni.yml alone", undefined, {}, "u@/run/pg/.s.PGSQL.5433/u"],
  ["PGPORT over the file's port", undefined, { PGPORT: "6000" }, "u@/run/pg/.s.PGSQL.6000/u"],
  ["PGHOST over the file's socket dir", undefined, { PGHOST: "/tmp" }, "u@/tmp/.s.PGSQL.5433/u"],
  ["--db over both", "host=10.0.0.9 port=5999", {}, "u@10.0.0.9:5999/u"],
] as const)("the target: %s", (_, db, env, display) => {
  const patroni = { pgEnv: { PGHOST: "/run/pg", PGPORT: "5433" } };
  const target = configTarget({ db, cluster: undefined, patroni }, { PGUSER: "u", HOME: dir, ...env });
  expect(target.display).toBe(display);
});
