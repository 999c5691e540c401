// A node's http endpoints read as a peer or a monitor reads them: /status as JSON, /metrics as
// Prometheus text (by sample), and the port --metrics-listen got, from the start line.
import { expect } from "bun:test";
import type { Responder } from "../../src/demo/responder.ts";

/** A JSON object as a test reads it: any field, checked with toMatchObject. */
export type Json = Record<string, any>;

export interface HttpTarget {
  /** Default 127.0.0.1. */
  host?: string;
  /** https with these TLS settings (a CA, a client certificate) instead of http. */
  tls?: { ca?: Bun.BunFile; cert?: Bun.BunFile; key?: Bun.BunFile };
}

function url(port: number, path: string, at: HttpTarget): string {
  return `${at.tls ? "https" : "http"}://${at.host ?? "127.0.0.1"}:${port}${path}`;
}

/** GET `path` of a replstatus http listener: the status code and the JSON body. */
export async function getJson(
  port: number,
  path: string,
  at: HttpTarget = {},
): Promise<{ status: number; json: Json }> {
  const res = await fetch(url(port, path, at), at.tls ? { tls: at.tls } : {});
  return { status: res.status, json: (await res.json()) as Json };
}

/** A node's /status, as its peers read it. */
export async function getStatus(port: number, at: HttpTarget = {}): Promise<Json> {
  return (await getJson(port, "/status", at)).json;
}

/** The port of the metrics endpoint (--metrics-listen), from the start line. */
export function metricsPort(r: Responder): number {
  return Number(/metrics http [^ ]*:(\d+)\/metrics/.exec(r.log)![1]);
}

/**
 * GET /metrics: asserts a 200 in the Prometheus text format 0.0.4; returns the text and every
 * sample's value by `name{labels}` as written.
 */
export async function scrape(
  port: number,
  at: HttpTarget = {},
): Promise<{ text: string; values: Map<string, number> }> {
  const res = await fetch(url(port, "/metrics", at), at.tls ? { tls: at.tls } : {});
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4");
  const text = await res.text();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) values.set(m[1]!, m[2] === "+Inf" ? Infinity : Number(m[2]));
  }
  return { text, values };
}

/** One sample of /metrics, e.g. `replstatus_state{state="primary"}`; throws when there is no such sample. */
export async function metric(port: number, sample: string, at: HttpTarget = {}): Promise<number> {
  const value = (await scrape(port, at)).values.get(sample);
  if (value === undefined) throw new Error(`no sample ${sample} in /metrics of port ${port}`);
  return value;
}
