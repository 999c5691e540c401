// Headless Chromium (Debian's `chromium`) for the status page's tests and the
// screenshot script: a page opened and read live through the DevTools protocol
// (Runtime.evaluate, Page.captureScreenshot over its WebSocket), or one
// snapshot of the DOM after the scripts ran (--dump-dom). Every browser gets
// its own profile dir, removed with it; its process is killed at exit.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { track, trackDir, untrack, untrackDir } from "../../src/demo/cleanup.ts";
import { waitFor } from "../../src/demo/proc.ts";
import { requireTool } from "./tools.ts";

/** The browser; a test without it fails with the package to install. */
export function chromium(): string {
  return requireTool("chromium", "chromium");
}

/** Flags for a quiet, throwaway headless browser (no sandbox: the tests run as root). */
function flags(profile: string, width: number, height: number): string[] {
  return [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    `--user-data-dir=${profile}`,
    `--window-size=${width},${height}`,
  ];
}

function profileDir(): string {
  const dir = mkdtempSync(join(tmpdir(), `rs-chromium-${process.pid}-`));
  trackDir(dir);
  return dir;
}

function removeProfile(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  untrackDir(dir);
}

/** The most chromium may take to start and load a page: over 20 s was seen at a load average of 70. */
const START_TIMEOUT_MS = 120_000;
/** The most a --dump-dom run may take before it is killed. */
export const DUMP_TIMEOUT_MS = 150_000;

/** The DOM of `url` after its scripts ran for `budgetMs` of virtual time. */
export async function dumpDom(url: string, budgetMs = 4000, width = 1280, height = 800): Promise<string> {
  const profile = profileDir();
  try {
    const proc = Bun.spawn(
      [chromium(), ...flags(profile, width, height), `--virtual-time-budget=${budgetMs}`, "--dump-dom", url],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    track(proc.pid);
    // A loaded 2-core machine was seen taking 32 s for a page with one line of text.
    const timer = setTimeout(() => proc.kill("SIGKILL"), DUMP_TIMEOUT_MS);
    const [dom] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    await proc.exited;
    clearTimeout(timer);
    untrack(proc.pid);
    if (proc.exitCode !== 0)
      throw new Error(`chromium --dump-dom ${url} exited with ${proc.exitCode ?? proc.signalCode}`);
    return dom;
  } finally {
    removeProfile(profile);
  }
}

export interface Page extends AsyncDisposable {
  /** The value of a JavaScript expression in the page (JSON-serialisable). */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the viewport. */
  screenshot(path: string): Promise<void>;
  /** Changes the viewport (a phone, a wide screen). */
  resize(width: number, height: number): Promise<void>;
  close(): Promise<void>;
}

/** Opens `url` in a live headless browser, ready once the page has loaded. */
export async function openPage(url: string, width = 1280, height = 800): Promise<Page> {
  const profile = profileDir();
  const proc = Bun.spawn([chromium(), ...flags(profile, width, height), "--remote-debugging-port=0", "about:blank"], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  track(proc.pid);
  let ws: WebSocket | undefined;
  const close = async () => {
    ws?.close();
    proc.kill("SIGKILL");
    await proc.exited;
    untrack(proc.pid);
    removeProfile(profile);
  };
  try {
    const port = await waitFor(
      "chromium's DevTools port",
      () => readFileSync(join(profile, "DevToolsActivePort"), "utf8").split("\n")[0],
      START_TIMEOUT_MS,
      50,
    );
    const target = await waitFor("a page target", async () => {
      const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as {
        type: string;
        webSocketDebuggerUrl: string;
      }[];
      return list.find((t) => t.type === "page");
    });
    ws = new WebSocket(target!.webSocketDebuggerUrl);
    const socket = ws;
    await new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error("could not open chromium's DevTools socket"));
    });
    const pending = new Map<number, { resolve(v: any): void; reject(e: Error): void }>();
    let nextId = 1;
    socket.onmessage = (e) => {
      const msg = JSON.parse(String(e.data)) as { id?: number; result?: any; error?: { message: string } };
      const p = msg.id === undefined ? undefined : pending.get(msg.id);
      if (!p) return;
      pending.delete(msg.id!);
      if (msg.error) p.reject(new Error(`chromium: ${msg.error.message}`));
      else p.resolve(msg.result);
    };
    const send = (method: string, params: Record<string, unknown> = {}) =>
      new Promise<any>((resolve, reject) => {
        const id = nextId++;
        pending.set(id, { resolve, reject });
        socket.send(JSON.stringify({ id, method, params }));
      });
    await send("Page.enable");
    await send("Page.navigate", { url });
    const evaluate = async <T>(expression: string): Promise<T> => {
      const r = await send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
      if (r.exceptionDetails)
        throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
      return r.result.value as T;
    };
    await waitFor(
      "the page to load",
      async () => (await evaluate<string>("document.readyState")) === "complete",
      START_TIMEOUT_MS,
      50,
    );
    return {
      evaluate,
      async screenshot(path) {
        const { data } = await send("Page.captureScreenshot", { format: "png", captureBeyondViewport: false });
        await Bun.write(path, Buffer.from(data as string, "base64"));
      },
      async resize(w, h) {
        await send("Emulation.setDeviceMetricsOverride", {
          width: w,
          height: h,
          deviceScaleFactor: 1,
          mobile: w < 700,
        });
      },
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
