// One load-client process, started by loadgen.ts with its settings as a JSON argument. It runs
// its share of the slots and prints one JSON line (counters and a sparse histogram) at the end.
//
// Each slot loops: connect -> read until EOF -> compare with the expected text -> close. A
// connection's latency runs from just before connect to the close that follows the server's
// FIN. Connections still in flight at the deadline are not counted, as in a C epoll client.
import { createHistogram, record, toSparse, type SparseHistogram } from "./histogram.ts";

/** What the parent passes to each worker. */
export interface WorkerConfig {
  host: string;
  port: number;
  /** Slots in this process. */
  slots: number;
  /** Most connections this process starts; 0 = no limit. */
  maxConns: number;
  /** Wall-clock time (Date.now()) at which all workers start together. */
  startAtMs: number;
  /** Run length from startAtMs, in ms. */
  durationMs: number;
  expect: string;
  /** Source addresses to rotate through (empty: let the kernel choose). */
  sources: string[];
  /** A connection open this long counts as a timeout and its slot starts over. */
  timeoutMs: number;
  /** Burst mode: every slot opens one connection per wave; waves start this far apart. */
  waves: number;
  waveGapMs: number;
}

/** What each worker prints on its single stdout line. */
export interface WorkerReport {
  conns: number;
  elapsedMs: number;
  mismatches: number;
  resets: number;
  errRefused: number;
  errTimeout: number;
  errConnect: number;
  errRead: number;
  /** First few distinct error codes seen, for the human line. */
  errorCodes: string[];
  hist: SparseHistogram;
}

interface Conn {
  slot: number;
  t0: number;
  received: number;
  ok: boolean;
  done: boolean;
  socket: { terminate(): void } | null;
}

const config = JSON.parse(process.argv[2] ?? "{}") as WorkerConfig;
const expected = Buffer.from(config.expect);
const hist = createHistogram();
const report: WorkerReport = {
  conns: 0,
  elapsedMs: 0,
  mismatches: 0,
  resets: 0,
  errRefused: 0,
  errTimeout: 0,
  errConnect: 0,
  errRead: 0,
  errorCodes: [],
  hist: { buckets: [], maxUs: 0 },
};

let started = 0;
let inFlight = 0;
let sourceNext = 0;
let runStart = 0;
let deadline = 0;
let lastDone = 0;
let stopping = false;
const current: (Conn | null)[] = new Array(config.slots).fill(null);

function noteCode(code: string | undefined): void {
  const c = code ?? "unknown";
  if (report.errorCodes.length < 8 && !report.errorCodes.includes(c)) report.errorCodes.push(c);
}

function nextSource(): string | undefined {
  const n = config.sources.length;
  if (n === 0) return undefined;
  const s = config.sources[sourceNext]!;
  sourceNext = sourceNext + 1 === n ? 0 : sourceNext + 1;
  return s;
}

function compare(c: Conn, chunk: Uint8Array): void {
  const base = c.received;
  c.received += chunk.length;
  if (!c.ok) return;
  if (c.received > expected.length) {
    c.ok = false;
    return;
  }
  for (let i = 0; i < chunk.length; i++) {
    if (chunk[i] !== expected[base + i]) {
      c.ok = false;
      return;
    }
  }
}

// The end of a connection, whatever ended it. `code` is the error code when it did not end
// with a clean FIN.
function finish(c: Conn, code: string | undefined): void {
  if (c.done) return;
  c.done = true;
  inFlight--;
  if (current[c.slot] === c) current[c.slot] = null;
  const t1 = performance.now();
  if (t1 <= deadline && !stopping) {
    if (code === undefined || (code === "ECONNRESET" && c.received > 0)) {
      report.conns++;
      lastDone = t1;
      record(hist, (t1 - c.t0) * 1000);
      if (code !== undefined) report.resets++;
      if (!c.ok || c.received !== expected.length) report.mismatches++;
    } else {
      noteCode(code);
      if (code === "ECONNREFUSED") report.errRefused++;
      else if (code === "ECONNRESET" || code === "EPIPE") report.errRead++;
      else report.errConnect++;
    }
  }
  if (config.waves === 0) {
    // A failed connect is retried after a breath, so a refusing server is not hammered in a
    // tight loop; a good one is followed at once by the next.
    if (code !== undefined && c.received === 0) setTimeout(startSlot, 1, c.slot);
    else startSlot(c.slot);
  }
  maybeEnd();
}

const bunHandler: Bun.SocketHandler<Conn> = {
  open(socket) {
    if (socket.data.done) socket.terminate();
    else socket.data.socket = socket;
  },
  data(socket, chunk) {
    compare(socket.data, chunk);
  },
  close(socket, error) {
    finish(socket.data, error ? ((error as NodeJS.ErrnoException).code ?? "EIO") : undefined);
  },
  connectError(socket, error) {
    finish(socket.data, (error as NodeJS.ErrnoException).code ?? "ECONNECT");
  },
};

// `localAddress` is not in Bun's published types, but Bun.connect honours it: it binds the
// source address before connecting (EADDRNOTAVAIL for an address the host does not have).
type ConnectOptions = Bun.TCPSocketConnectOptions<Conn> & { localAddress?: string };

function connect(c: Conn): void {
  const options: ConnectOptions = {
    hostname: config.host,
    port: config.port,
    data: c,
    socket: bunHandler,
  };
  const localAddress = nextSource();
  if (localAddress) options.localAddress = localAddress;
  // With a connectError handler the returned promise's rejection is not reported, and the
  // socket arrives in open(): no promise reaction per connection.
  void Bun.connect(options);
}

function startSlot(slot: number): void {
  if (stopping) return;
  if (config.maxConns > 0 && started >= config.maxConns) return;
  if (performance.now() >= deadline) return;
  started++;
  inFlight++;
  const c: Conn = {
    slot,
    t0: performance.now(),
    received: 0,
    ok: true,
    done: false,
    socket: null,
  };
  current[slot] = c;
  connect(c);
}

// Time-outs are found by a scan every 50 ms rather than one timer per connection: timers
// would cost more than the connections they watch.
function scanTimeouts(): void {
  const now = performance.now();
  for (let slot = 0; slot < current.length; slot++) {
    const c = current[slot];
    if (c && !c.done && now - c.t0 > config.timeoutMs) {
      c.done = true;
      inFlight--;
      current[slot] = null;
      if (now <= deadline) {
        report.errTimeout++;
        noteCode("ETIMEDOUT");
      }
      c.socket?.terminate();
      if (config.waves === 0) startSlot(slot);
    }
  }
  maybeEnd();
}

function maybeEnd(): void {
  if (stopping) return;
  const now = performance.now();
  const capped = config.maxConns > 0 && started >= config.maxConns && inFlight === 0;
  const wavesDone = config.waves > 0 && wavesStarted >= config.waves && inFlight === 0;
  if (now >= deadline || capped || wavesDone) end(now >= deadline ? deadline : lastDone);
}

function end(at: number): void {
  stopping = true;
  report.elapsedMs = Math.max(0, at - runStart);
  report.hist = toSparse(hist);
  process.stdout.write(`${JSON.stringify(report)}\n`);
  // In-flight sockets are dropped with the process, as a C client's are at its deadline.
  process.exit(0);
}

let wavesStarted = 0;

// Burst mode: every slot opens one connection at the same instant. Wave k starts at
// k * waveGapMs after the common start, so the waves of all workers coincide. A slot still
// waiting on the previous wave (a SYN retransmit, say) sits the next one out.
function startWave(): void {
  if (stopping) return;
  wavesStarted++;
  for (let slot = 0; slot < config.slots; slot++) if (current[slot] === null) startSlot(slot);
  if (wavesStarted < config.waves) {
    const next = runStart + wavesStarted * config.waveGapMs;
    setTimeout(startWave, Math.max(0, next - performance.now()));
  }
  maybeEnd();
}

function begin(): void {
  runStart = performance.now();
  deadline = runStart + (config.startAtMs + config.durationMs - Date.now());
  lastDone = runStart;
  setInterval(scanTimeouts, 50);
  setTimeout(maybeEnd, Math.max(0, deadline - performance.now()) + 1);
  if (config.waves > 0) startWave();
  else for (let slot = 0; slot < config.slots; slot++) startSlot(slot);
}

// All workers start at the same wall-clock instant, so their windows line up.
setTimeout(begin, Math.max(0, config.startAtMs - Date.now()));
