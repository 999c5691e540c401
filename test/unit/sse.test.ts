// The Server-Sent Events reader (src/route/sse.ts) on the cases of the
// WHATWG parsing rules: line ends, comments, fields, pieces split anywhere.
import { expect, test } from "bun:test";
import { createSseReader, MAX_LINE_CHARS, type SseEvent } from "../../src/route/sse.ts";

function read(pieces: string[]): { events: SseEvent[]; comments: string[] } {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const reader = createSseReader(
    (e) => events.push(e),
    (c) => comments.push(c),
  );
  for (const p of pieces) reader.feed(p);
  return { events, comments };
}

test.each([
  ["LF", ["id: 1\nevent: state\ndata: {}\n\n"], [{ id: "1", event: "state", data: "{}" }]],
  ["CRLF", ["id: 1\r\nevent: state\r\ndata: {}\r\n\r\n"], [{ id: "1", event: "state", data: "{}" }]],
  // A CR last in a piece may be half a CRLF: the line ends when the next piece comes.
  ["CR", ["id: 1\revent: state\rdata: {}\r\r", ":"], [{ id: "1", event: "state", data: "{}" }]],
  ["a CRLF split between pieces", ["data: a\r", "\n\r", "\n"], [{ id: undefined, event: "message", data: "a" }]],
  ["split in a field", ["da", "ta: x", "y\n", "\n"], [{ id: undefined, event: "message", data: "xy" }]],
  ["two data lines", ["data: a\ndata: b\n\n"], [{ id: undefined, event: "message", data: "a\nb" }]],
  ["no space after the colon", ["data:a\n\n"], [{ id: undefined, event: "message", data: "a" }]],
  ["no data: nothing dispatched", ["event: state\n\n"], []],
  [
    "retry and unknown fields ignored",
    ["retry: 1000\n\nfoo: bar\ndata: a\n\n"],
    [{ id: undefined, event: "message", data: "a" }],
  ],
  [
    "the id carries over",
    ["id: 4\ndata: a\n\ndata: b\n\n"],
    [
      { id: "4", event: "message", data: "a" },
      { id: "4", event: "message", data: "b" },
    ],
  ],
  ["an unfinished event is not dispatched", ["data: a\n"], []],
] as [string, string[], SseEvent[]][])("%s", (_, pieces, want) => {
  expect(read(pieces).events).toEqual(want);
});

test("comments are heartbeats, without the colon and the space", () => {
  expect(read([": 1796541526943\n\n:x\n"]).comments).toEqual(["1796541526943", "x"]);
});

test("a line over the bound throws instead of growing", () => {
  const reader = createSseReader(() => {});
  expect(() => reader.feed("data: " + "x".repeat(MAX_LINE_CHARS))).toThrow(/stream line over/);
});
