// A Debian cluster's port and socket directory, as pg_lsclusters reads them:
// tables against an in-memory /etc/postgresql, then the CLI's --cluster.
import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  clusterEnv,
  findDebianCluster,
  parseClusterName,
  parseConfLine,
  type ConfReader,
} from "../../src/config/debian-cluster.ts";
import { resolveTarget } from "../../src/poll/target.ts";
import { startResponder } from "../../src/demo/responder.ts";
import { runCli } from "../kit/cli.ts";
import { ReplstatusError } from "../../src/errors.ts";
import { tempDir } from "../kit/tmp.ts";

function memory(files: Record<string, string>): ConfReader {
  return {
    readText: (path) => files[path],
    listDir: (path) => {
      const names = Object.keys(files)
        .filter((f) => f.startsWith(path + "/"))
        .map((f) => f.slice(path.length + 1))
        .filter((n) => !n.includes("/"));
      return names.length ? names : undefined;
    },
  };
}

const CONF = "/etc/postgresql/15/main/postgresql.conf";

test.each([
  ["15-main", { version: "15", cluster: "main" }],
  ["9.6-main", { version: "9.6", cluster: "main" }],
  ["16-my-other.one", { version: "16", cluster: "my-other.one" }],
  ["main", undefined],
  ["15-", undefined],
  ["15-../x", undefined],
  ["15-.hidden", undefined],
  ["x-main", undefined],
])("parseClusterName(%j)", (text, want) => {
  expect(parseClusterName(text)).toEqual(want);
});

test.each([
  ["port = 5433", { kind: "set", name: "port", value: "5433" }],
  ["PORT=5433 # the second cluster", { kind: "set", name: "port", value: "5433" }],
  ["port 5433", { kind: "set", name: "port", value: "5433" }],
  ["unix_socket_directories = '/a, /b'", { kind: "set", name: "unix_socket_directories", value: "/a, /b" }],
  ["x = 'it''s # not a comment'", { kind: "set", name: "x", value: "it's # not a comment" }],
  ["x = 'back\\'slash'", { kind: "set", name: "x", value: "back'slash" }],
  ["include 'other.conf'", { kind: "include", path: "other.conf" }],
  ["include_if_exists = '/etc/x.conf'", { kind: "include_if_exists", path: "/etc/x.conf" }],
  ["include_dir 'conf.d'", { kind: "include_dir", path: "conf.d" }],
  ["#port = 5433", undefined],
  ["   ", undefined],
  ["= 5", undefined],
])("parseConfLine(%j)", (line, want) => {
  expect(parseConfLine(line)).toEqual(want as ReturnType<typeof parseConfLine>);
});

describe("findDebianCluster", () => {
  test.each([
    ["nothing set: Debian's defaults", { [CONF]: "# empty\n" }, 5432, "/var/run/postgresql"],
    [
      "as pg_createcluster writes it",
      {
        [CONF]: [
          "data_directory = '/var/lib/postgresql/15/main'",
          "port = 5433\t\t\t\t# (change requires restart)",
          "unix_socket_directories = '/var/run/postgresql'\t# comma-separated list of directories",
          "include_dir = 'conf.d'",
        ].join("\n"),
      },
      5433,
      "/var/run/postgresql",
    ],
    [
      "conf.d in name order, the last wins; dot files and other names skipped",
      {
        [CONF]: "port = 5433\ninclude_dir = 'conf.d'\n",
        "/etc/postgresql/15/main/conf.d/10-port.conf": "port = 5434\n",
        "/etc/postgresql/15/main/conf.d/20-port.conf": "port = 5435\n",
        "/etc/postgresql/15/main/conf.d/.30-port.conf": "port = 5436\n",
        "/etc/postgresql/15/main/conf.d/40-port.conf.bak": "port = 5437\n",
      },
      5435,
      "/var/run/postgresql",
    ],
    [
      "a setting after an include overrides it",
      { [CONF]: "include 'extra.conf'\nport = 5440\n", "/etc/postgresql/15/main/extra.conf": "port = 5441\n" },
      5440,
      "/var/run/postgresql",
    ],
    [
      "include_if_exists of a missing file, absolute include",
      { [CONF]: "include_if_exists 'missing.conf'\ninclude '/srv/pg.conf'\n", "/srv/pg.conf": "port = 6000\n" },
      6000,
      "/var/run/postgresql",
    ],
    ["the first socket directory", { [CONF]: `unix_socket_directories = '/run/pg-a, /tmp'\n` }, 5432, "/run/pg-a"],
    ["no unix socket: TCP to localhost", { [CONF]: `unix_socket_directories = ''\n` }, 5432, undefined],
    [
      "ALTER SYSTEM in the data directory wins",
      {
        [CONF]: "data_directory = '/var/lib/postgresql/15/main'\nport = 5433\n",
        "/var/lib/postgresql/15/main/postgresql.auto.conf": "port = '5450'\n",
      },
      5450,
      "/var/run/postgresql",
    ],
    [
      "an include loop stops at PostgreSQL's depth limit",
      { [CONF]: "port = 5460\ninclude 'postgresql.conf'\n" },
      5460,
      "/var/run/postgresql",
    ],
  ])("%s", (_, files, port, socketDir) => {
    const c = findDebianCluster("15-main", {}, memory(files));
    expect({ port: c.port, socketDir: c.socketDir, confFile: c.confFile }).toEqual({ port, socketDir, confFile: CONF });
  });

  test("PG_CLUSTER_CONF_ROOT moves /etc/postgresql", () => {
    const c = findDebianCluster(
      "15-main",
      { PG_CLUSTER_CONF_ROOT: "/x" },
      memory({ "/x/15/main/postgresql.conf": "port = 7" }),
    );
    expect(c.port).toBe(7);
  });

  test.each([
    ["15-other", {}, "could not read cluster 15-other: no readable /etc/postgresql/15/other/postgresql.conf"],
    [
      "15-main",
      { [CONF]: "port = 'many'\n" },
      `could not read cluster 15-main: port "many" in ${CONF} is not an integer 1..65535`,
    ],
    ["main", {}, 'invalid cluster name: "main" (expected VERSION-NAME, e.g. 15-main)'],
  ])("%s: %j fails", (name, files, message) => {
    expect(() => findDebianCluster(name, {}, memory(files))).toThrow(new ReplstatusError("CLUSTER_INVALID", message));
  });
});

describe("clusterEnv", () => {
  const services = tempDir("replstatus-services-");
  writeFileSync(join(services, "pg_service.conf"), "[other]\nhost=/run/other\nport=7000\n");

  test.each<[string, string | undefined, Record<string, string>, string]>([
    ["the cluster's socket and port", undefined, {}, "replstatus@/run/pg/.s.PGSQL.5433/postgres"],
    ["PGPORT wins over the cluster", undefined, { PGPORT: "6000" }, "replstatus@/run/pg/.s.PGSQL.6000/postgres"],
    ["PGHOST wins over the cluster", undefined, { PGHOST: "10.0.0.9" }, "replstatus@10.0.0.9:5433/postgres"],
    ["--db's host wins, the cluster's port stays", "host=10.0.0.8", {}, "replstatus@10.0.0.8:5433/postgres"],
    ["--db's port wins, the cluster's socket stays", "port=6001", {}, "replstatus@/run/pg/.s.PGSQL.6001/postgres"],
    [
      "a service wins over the cluster",
      "service=other",
      { PGSYSCONFDIR: services },
      "replstatus@/run/other/.s.PGSQL.7000/postgres (service other)",
    ],
  ])("%s", (_, db, env, display) => {
    const cluster = findDebianCluster(
      "15-main",
      {},
      memory({ [CONF]: "port=5433\nunix_socket_directories='/run/pg'" }),
    );
    const target = resolveTarget(db, clusterEnv(cluster, { PGUSER: "replstatus", PGDATABASE: "postgres", ...env }));
    expect(target.display).toBe(display);
  });
});

describe("--cluster", () => {
  const root = tempDir("replstatus-clusters-");
  mkdirSync(join(root, "15", "main"), { recursive: true });
  writeFileSync(join(root, "15", "main", "postgresql.conf"), `port = 5499\nunix_socket_directories = '${root}'\n`);

  test("the target comes from the cluster's postgresql.conf", async () => {
    await using r = await startResponder(["--listen", "127.0.0.1:0", "--cluster", "15-main"], {
      PG_CLUSTER_CONF_ROOT: root,
      PGUSER: "replstatus",
      PGDATABASE: "postgres",
    });
    expect(r.log).toContain(`; database replstatus@${root}/.s.PGSQL.5499/postgres;`);
  });

  test.each([
    [
      "15-other",
      `replstatus: could not read cluster 15-other: no readable ${root}/15/other/postgresql.conf\n` +
        "hint: pg_lsclusters lists the clusters of this host; PG_CLUSTER_CONF_ROOT moves /etc/postgresql\n",
    ],
    [
      "main",
      'replstatus: invalid value for --cluster: "main" (expected VERSION-NAME of a Debian cluster, such as 15-main)\n',
    ],
  ])("--cluster %s: one error line and exit 2", (name, stderr) => {
    const r = runCli(["--listen", "127.0.0.1:0", "--cluster", name], { PG_CLUSTER_CONF_ROOT: root });
    expect(r).toEqual({
      code: 2,
      stdout: "",
      stderr,
    });
  });
});
