// The nemesis client: run inside the client host's namespace, it writes unique
// ids through haproxy for as long as it runs, on a new connection per write
// (one started every --every ms, at most --in-flight at once) and on --pooled
// sessions that stay open and write one after another (reconnecting when one
// fails). Every write is one JSON line on stdout: sent, done, outcome (true:
// acknowledged, false: refused, null: unknown), and for an acknowledged one
// the node's address, system identifier and WAL timeline. SIGTERM stops new
// writes; the ones in flight end within their deadline, then it exits.
//
// Usage: bun client.ts --host H --port P [--every 50] [--in-flight 40] [--pooled 3] [--deadline 2000]
import { parseArgs } from "node:util";
import { connectSession, type Outcome, type Session } from "./wire.ts";

const { values } = parseArgs({
  options: {
    host: { type: "string" },
    port: { type: "string" },
    user: { type: "string", default: "postgres" },
    every: { type: "string", default: "50" },
    "in-flight": { type: "string", default: "40" },
    pooled: { type: "string", default: "3" },
    "pooled-every": { type: "string", default: "100" },
    deadline: { type: "string", default: "2000" },
  },
});
const host = values.host!;
const port = Number(values.port);
const everyMs = Number(values.every);
const maxInFlight = Number(values["in-flight"]);
const deadlineMs = Number(values.deadline);
const pooledEveryMs = Number(values["pooled-every"]);
const now = () => performance.timeOrigin + performance.now();

/** The insert, and what says where it landed: the server's address, system id and WAL timeline. */
const insert = (id: number) =>
  `insert into nemesis_writes (id) values (${id}) returning inet_server_addr()::text, ` +
  `(select system_identifier from pg_control_system())::text, pg_walfile_name(pg_current_wal_lsn())`;

let nextId = 1;
let stopping = false;
const out: string[] = [];
const flush = () => {
  if (out.length) process.stdout.write(out.splice(0).join(""));
};
const flusher = setInterval(flush, 200);

function record(id: number, kind: string, sent: number, o: Outcome): void {
  const row = o.ok ? o.row : undefined;
  const rec = {
    id,
    kind,
    sent: Math.round(sent * 10) / 10,
    done: Math.round(now() * 10) / 10,
    ok: o.ok,
    ...(row && { node: row[0], sysid: row[1], tli: parseInt((row[2] ?? "").slice(0, 8), 16) }),
    ...(!o.ok && { error: o.error.slice(0, 80) }),
  };
  out.push(`${JSON.stringify(rec)}\n`);
}

async function once(): Promise<void> {
  const id = nextId++;
  const sent = now();
  let session: Session;
  try {
    session = await connectSession(host, port, values.user!, "postgres", deadlineMs);
  } catch (err) {
    return record(id, "new", sent, { ok: false, error: (err as Error).message });
  }
  const o = await session.query(insert(id), Math.max(1, deadlineMs - (now() - sent)));
  session.close();
  record(id, "new", sent, o);
}

let inFlight = 0;
const starter = setInterval(() => {
  if (stopping || inFlight >= maxInFlight) return;
  inFlight++;
  void once().finally(() => inFlight--);
}, everyMs);

async function pooled(n: number): Promise<void> {
  let session: Session | undefined;
  while (!stopping) {
    if (!session?.open) {
      session = await connectSession(host, port, values.user!, "postgres", deadlineMs).catch(() => undefined);
      if (!session) {
        await Bun.sleep(pooledEveryMs);
        continue;
      }
    }
    const id = nextId++;
    const sent = now();
    const o = await session.query(insert(id), deadlineMs);
    record(id, `pool${n}`, sent, o);
    if (o.ok !== true) session.close();
    await Bun.sleep(pooledEveryMs);
  }
  session?.close();
}
const pools = Array.from({ length: Number(values.pooled) }, (_, i) => pooled(i));

process.on("SIGTERM", async () => {
  stopping = true;
  clearInterval(starter);
  await Promise.all(pools);
  while (inFlight > 0) await Bun.sleep(20);
  clearInterval(flusher);
  flush();
  process.exit(0);
});
