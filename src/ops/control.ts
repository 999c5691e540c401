// The operator override reaches the running process through a unix socket
// that only its own user can use: the socket file is 0600 and, by default,
// lives in a 0700 directory of that user's. One request per connection: a
// word ("drain", "maint", "ready") and a newline; the reply is the override
// now in force, or "error ..." for anything else or a failed save.
import type { Socket, UnixSocketListener } from "bun";
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../log.ts";
import { OVERRIDE_NAMES, type Override, type Cell } from "../cell.ts";
import { ReplstatusError } from "../errors.ts";

const REQUEST_LIMIT_BYTES = 64;
export const CONTROL_TIMEOUT_MS = 2000;

export interface Control {
  path: string;
  /** Stops listening and removes the socket file. */
  stop(): void;
}

/** `save` keeps the override across restarts (ops/override.ts); it returns an error text, or undefined. */
export async function startControl(
  path: string,
  cell: Cell,
  log: Logger,
  save: (override: Override) => string | undefined = () => undefined,
): Promise<Control> {
  prepareDir(dirname(path));
  if (existsSync(path)) {
    if (!lstatSync(path).isSocket()) {
      throw new ReplstatusError(
        "CONTROL_FAILED",
        `could not use control socket ${path}: a file that is not a socket is in the way`,
      );
    }
    // A live socket means another replstatus; a dead one is left over from a kill -9.
    if (await reachable(path)) {
      throw new ReplstatusError(
        "CONTROL_FAILED",
        `could not listen on control socket ${path}: another replstatus is using it`,
        "give each replstatus its own --control-socket (the default includes the port)",
      );
    }
    unlinkSync(path);
  }
  let server: UnixSocketListener<string>;
  // The file gets 0600 from the umask at bind(); there is no window with a looser mode.
  const umask = process.umask(0o077);
  try {
    server = Bun.listen<string>({
      unix: path,
      data: "",
      socket: {
        data(socket, chunk) {
          socket.data += chunk.toString("latin1");
          const end = socket.data.indexOf("\n");
          if (end === -1 && socket.data.length <= REQUEST_LIMIT_BYTES) return;
          socket.end(reply(socket.data.slice(0, end === -1 ? REQUEST_LIMIT_BYTES : end).trim()));
        },
        error() {},
      },
    });
  } catch (err) {
    throw new ReplstatusError(
      "CONTROL_FAILED",
      `could not listen on control socket ${path}: ${(err as Error).message}`,
    );
  } finally {
    process.umask(umask);
  }
  chmodSync(path, 0o600);

  function reply(word: string): string {
    const override = OVERRIDE_NAMES.indexOf(word as (typeof OVERRIDE_NAMES)[number]);
    if (override === -1)
      return `error unknown command ${JSON.stringify(word)} (expected ${OVERRIDE_NAMES.join(", ")})\n`;
    const from = cell.override;
    if (cell.setOverride(override as Override)) {
      log.info(`override ${OVERRIDE_NAMES[from]} -> ${word} (replstatus ${word})`);
    }
    // Saved even when unchanged: it also rewrites a file that could not be read at start.
    const failed = save(override as Override);
    if (failed === undefined) return `${word}\n`;
    const message = `could not save override ${word}: ${failed}; it is in force until replstatus restarts`;
    log.error(message);
    return `error ${message}\n`;
  }

  return {
    path,
    stop() {
      server.stop(true);
      try {
        unlinkSync(path);
      } catch {}
    },
  };
}

const CONTROL_DIR = { what: "control socket directory", flag: "--control-socket", content: "the socket" };

// The default directory under /tmp is shared ground: refuse one that another
// user made or could write to, since its owner could stand in for us (the
// control socket's, and the --state-dir that keeps the override).
/** Creates `dir` (0700), or refuses one that another user owns or could write to; throws CONTROL_FAILED. */
export function prepareDir(dir: string, { what, flag, content } = CONTROL_DIR): void {
  if (!existsSync(dir)) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new ReplstatusError("CONTROL_FAILED", `could not create ${what} ${dir}: ${(err as Error).message}`);
    }
    return;
  }
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory()) {
    throw new ReplstatusError("CONTROL_FAILED", `could not use ${what} ${dir}: not a directory`);
  }
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
    throw new ReplstatusError(
      "CONTROL_FAILED",
      `could not use ${what} ${dir}: owned by uid ${st.uid}, not by this user (uid ${uid})`,
      `remove it, or choose another ${flag}`,
    );
  }
  if (st.uid === uid && (st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
    throw new ReplstatusError(
      "CONTROL_FAILED",
      `could not use ${what} ${dir}: mode ${(st.mode & 0o777).toString(8)} lets other users replace ${content}`,
      `chmod 700 it, or choose another ${flag}`,
    );
  }
}

async function reachable(path: string): Promise<boolean> {
  try {
    (await Bun.connect({ unix: path, socket: { data() {} } })).terminate();
    return true;
  } catch {
    return false;
  }
}

/** Sends one override word to a running replstatus; resolves to its reply line. */
export async function sendControl(path: string, word: string, timeoutMs = CONTROL_TIMEOUT_MS): Promise<string> {
  let text = "";
  let done: (reply: string) => void = () => {};
  const replied = new Promise<string>((resolve) => (done = resolve));
  let socket: Socket;
  try {
    socket = await Bun.connect({
      unix: path,
      socket: {
        data: (_, chunk) => void (text += chunk.toString("latin1")),
        close: () => done(text.trim()),
      },
    });
  } catch (err) {
    throw unreachable(path, err as NodeJS.ErrnoException);
  }
  socket.write(`${word}\n`);
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      socket.terminate();
      reject(new ReplstatusError("CONTROL_FAILED", `no answer on control socket ${path} within ${timeoutMs}ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([replied, late]);
  } finally {
    clearTimeout(timer);
  }
}

function unreachable(path: string, err: NodeJS.ErrnoException): ReplstatusError {
  const hint = "start replstatus first, or give the same --port/--listen/--control-socket as the running one";
  switch (err.code) {
    case "ENOENT":
      return new ReplstatusError("CONTROL_FAILED", `no replstatus is listening on ${path}: no such socket`, hint);
    case "ECONNREFUSED":
      return new ReplstatusError("CONTROL_FAILED", `no replstatus is listening on ${path}: connection refused`, hint);
    case "EACCES":
      return new ReplstatusError(
        "CONTROL_FAILED",
        `could not reach ${path}: permission denied`,
        "run as the user that runs replstatus",
      );
    default:
      return new ReplstatusError("CONTROL_FAILED", `could not reach ${path}: ${err.code ?? err.message}`);
  }
}
