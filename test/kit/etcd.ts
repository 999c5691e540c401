// A throwaway single-member etcd (Debian's etcd-server, 3.4) on loopback, for
// the Patroni tests and benchmarks. Its v3 JSON gateway (/v3/...) is on the
// client port, as etcd 3.4 serves it by default (--enable-grpc-gateway).
// The caller stops what it starts; until then the process and its data dir
// are registered with src/demo/cleanup.ts (nothing at import).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { atExit } from "../../src/demo/cleanup.ts";
import { freePort, waitFor } from "../../src/demo/proc.ts";

export interface Etcd extends AsyncDisposable {
  /** http://127.0.0.1:PORT, the client URL (gRPC and the JSON gateway). */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Everything etcd wrote to stderr since it was first started. */
  readonly log: string;
  readonly running: boolean;
  /** SIGTERM, and waits for the exit (SIGKILL after 5 s); the data dir stays. */
  pause(): Promise<void>;
  /** Starts it again on the same ports and data dir; resolves once it answers. */
  resume(): Promise<void>;
  /** A v3 gateway call: POST /v3/PATH with a JSON body; throws on a non-2xx answer. */
  call(path: string, body: unknown): Promise<Record<string, unknown>>;
  /** The value of one key, or undefined. */
  get(key: string): Promise<string | undefined>;
  /** Stops it and removes its data dir. Idempotent. */
  stop(): Promise<void>;
}

const startTimeoutMs = 20_000;

export function etcdBinary(): string {
  const found = Bun.which("etcd") ?? Bun.which("etcd", { PATH: "/usr/bin:/usr/local/bin" });
  if (!found) throw new Error("testkit: could not find etcd\nhint: apt-get install -y etcd-server");
  return found;
}

export function b64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}

/** One member that elects itself at once: short ticks, client and peer on loopback. */
function etcdArgs(bin: string, dataDir: string, url: string, peer: string): string[] {
  return [
    bin,
    "--name=rs",
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${url}`,
    `--advertise-client-urls=${url}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=rs=${peer}`,
    "--initial-cluster-state=new",
    "--enable-grpc-gateway=true",
    "--heartbeat-interval=50",
    "--election-timeout=500",
    "--log-level=warn",
    "--logger=zap",
  ];
}

/** Serve the client port over TLS: PEM file paths; with clientCa, client certificates signed by it are required. */
export interface EtcdTlsFiles {
  cert: string;
  key: string;
  /** The CA that signed cert, for the testkit's own calls. */
  ca: string;
  clientCa?: string;
}

/** POST /v3/PATH with a JSON body on etcd's gateway; throws on a non-2xx answer. */
function gateway(url: string, tls: { ca: string; cert?: string; key?: string } | undefined) {
  return async (path: string, body: unknown) => {
    const res = await fetch(`${url}/v3/${path}`, {
      method: "POST",
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(2000),
      ...(tls && { tls }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`etcd ${path}: HTTP ${res.status}: ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
}

export async function startEtcd(tls?: EtcdTlsFiles): Promise<Etcd> {
  const bin = etcdBinary();
  const dir = mkdtempSync(join(tmpdir(), "rs-etcd-"));
  const dataDir = join(dir, "data");
  const [port, peerPort] = [await freePort(), await freePort()];
  const url = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const args = etcdArgs(bin, dataDir, url, peer);
  if (tls) args.push(`--cert-file=${tls.cert}`, `--key-file=${tls.key}`);
  if (tls?.clientCa) args.push(`--trusted-ca-file=${tls.clientCa}`, "--client-cert-auth=true");
  const own = tls && {
    ca: readFileSync(tls.ca, "utf8"),
    ...(tls.clientCa && { cert: readFileSync(tls.cert, "utf8"), key: readFileSync(tls.key, "utf8") }),
  };
  let proc: Bun.Subprocess<"ignore", "ignore", "pipe"> | undefined;
  let log = "";
  let stopped = false;
  const forget = atExit(() => {
    proc?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  const call = gateway(url, own);

  const launch = async () => {
    const p = Bun.spawn(args, { cwd: dir, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    proc = p;
    void (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of p.stderr) log += decoder.decode(chunk, { stream: true });
    })();
    await waitFor(
      "etcd to answer on its gateway",
      async () => {
        if (p.exitCode !== null) throw new Error(`etcd exited with ${p.exitCode}:\n${log}`);
        return (await call("kv/range", { key: b64("/"), count_only: true })).header !== undefined;
      },
      startTimeoutMs,
      20,
    );
  };

  const halt = async () => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null) return;
    p.kill("SIGTERM");
    const timer = setTimeout(() => p.kill("SIGKILL"), 5000);
    await p.exited;
    clearTimeout(timer);
  };

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    forget();
    await halt();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await launch();
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    url,
    port,
    dataDir,
    get log() {
      return log;
    },
    get running() {
      return proc !== undefined && proc.exitCode === null;
    },
    pause: halt,
    async resume() {
      if (proc) return;
      await launch();
    },
    call,
    async get(key) {
      const r = (await call("kv/range", { key: b64(key) })) as { kvs?: { value?: string }[] };
      const v = r.kvs?.[0]?.value;
      return v === undefined ? undefined : Buffer.from(v, "base64").toString("utf8");
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
