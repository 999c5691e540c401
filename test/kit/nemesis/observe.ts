// What the nemesis run watches from the observer's port: the scope's keys in
// etcd (one watch per member, merged by revision, so a member cut off from the
// others neither stalls nor reorders the history; a change is timed by the first
// watch to deliver it, and faults touch one member at a time, so two stay live), every replstatus's raw answer,
// and haproxy's view of its servers. Times are epoch ms (performance.timeOrigin +
// performance.now()), the clock the client process uses too.
import { probe } from "../../../src/demo/probe.ts";
import type { KeyEvent, Sample, ViewEvent } from "./check.ts";
import { PORTS, type Lab } from "./lab.ts";

export const now = () => performance.timeOrigin + performance.now();
const b64 = (s: string) => Buffer.from(s).toString("base64");
const unb64 = (s: string | undefined) => (s === undefined ? "" : Buffer.from(s, "base64").toString("utf8"));

interface Kv {
  key?: string;
  value?: string;
  mod_revision?: string;
}

export interface Member {
  state?: string;
  role?: string;
}

/** The scope's keys as the store has them now, and the leader key's history. */
export function watchStore(lab: Lab) {
  const prefix = `/service/${lab.scope}/`;
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  const values = new Map<string, string>();
  const applied = new Map<string, number>();
  const keys: KeyEvent[] = [];
  let stopped = false;
  const aborts = new Set<AbortController>();

  // A delete event's kv carries the deletion's revision as mod_revision.
  const apply = (kv: Kv, deleted: boolean, at: number) => {
    const key = unb64(kv.key);
    const rev = Number(kv.mod_revision ?? 0);
    if (rev <= (applied.get(key) ?? 0)) return;
    applied.set(key, rev);
    if (deleted) values.delete(key);
    else values.set(key, unb64(kv.value));
    if (key === lab.leaderKey) {
      const holder = values.get(key);
      if (keys.length === 0 || keys.at(-1)!.holder !== holder) keys.push({ at, holder });
    }
  };

  const post = (url: string, path: string, body: unknown, signal: AbortSignal) =>
    fetch(`${url}/v3/${path}`, {
      method: "POST",
      body: JSON.stringify(body),
      signal,
    });

  const follow = async (url: string) => {
    let rev = 0;
    while (!stopped) {
      const abort = new AbortController();
      aborts.add(abort);
      try {
        if (rev === 0) {
          const res = await post(url, "kv/range", { key: b64(prefix), range_end: b64(end) }, AbortSignal.timeout(2000));
          const r = (await res.json()) as { header: { revision: string }; kvs?: Kv[] };
          const at = now();
          for (const kv of r.kvs ?? []) apply(kv, false, at);
          if (!r.kvs?.some((kv) => unb64(kv.key) === lab.leaderKey) && keys.length === 0) {
            keys.push({ at, holder: undefined });
          }
          rev = Number(r.header.revision);
        }
        const res = await post(
          url,
          "watch",
          { create_request: { key: b64(prefix), range_end: b64(end), start_revision: rev + 1 } },
          abort.signal,
        );
        const reader = res.body!.getReader();
        const decoder = new TextDecoder();
        let text = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text += decoder.decode(value, { stream: true });
          for (let nl; (nl = text.indexOf("\n")) >= 0;) {
            const line = text.slice(0, nl).trim();
            text = text.slice(nl + 1);
            if (!line) continue;
            const msg = JSON.parse(line) as {
              result?: { events?: { type?: string; kv: Kv }[] };
              error?: unknown;
            };
            if (msg.error) throw new Error(JSON.stringify(msg.error));
            const at = now();
            for (const e of msg.result?.events ?? []) {
              apply(e.kv, e.type === "DELETE", at);
              rev = Math.max(rev, Number(e.kv.mod_revision ?? 0));
            }
          }
        }
      } catch {
        // a member down or cut off: try again
      } finally {
        aborts.delete(abort);
      }
      if (!stopped) await Bun.sleep(50);
    }
  };

  const loops = lab.etcdUrls.map(follow);
  return {
    keys,
    leader: () => values.get(lab.leaderKey),
    members(): Record<string, Member> {
      const out: Record<string, Member> = {};
      for (const [k, v] of values) {
        if (!k.startsWith(lab.membersPrefix)) continue;
        try {
          out[k.slice(lab.membersPrefix.length)] = JSON.parse(v) as Member;
        } catch {
          // not JSON: skip
        }
      }
      return out;
    },
    async stop() {
      stopped = true;
      for (const a of aborts) a.abort();
      await Promise.all(loops);
    },
  };
}

/** Every replstatus's raw answer every `everyMs`, and haproxy's view on each change. */
export function sampleAnswers(lab: Lab, everyMs: number) {
  const samples: Sample[] = [];
  const view: ViewEvent[] = [];
  const last: Record<string, boolean> = {};
  let stopped = false;
  const probeLoop = async (name: string, address: string) => {
    while (!stopped) {
      const from = now();
      const r = await probe(PORTS.raw, address).catch(() => ({ text: "", close: "error" }));
      samples.push({ node: name, from, to: now(), text: r.text || r.close });
      await Bun.sleep(Math.max(1, everyMs - (now() - from)));
    }
  };
  const viewLoop = async () => {
    while (!stopped) {
      try {
        const v = await lab.haproxyView();
        const at = now();
        for (const [server, state] of Object.entries(v)) {
          const up = state === 2;
          if (last[server] !== up) view.push({ at, server, up });
          last[server] = up;
        }
      } catch {
        // haproxy busy: next time
      }
      await Bun.sleep(100);
    }
  };
  const loops = [...lab.db.map((d) => probeLoop(d.name, d.address)), viewLoop()];
  return {
    samples,
    view,
    /** Servers haproxy has up now. */
    up: () =>
      Object.entries(last)
        .filter(([, up]) => up)
        .map(([s]) => s),
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}
