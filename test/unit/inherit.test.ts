// Which passed socket serves which --listen address, and when passed sockets count at all.
import { expect, test } from "bun:test";
import { canonicalHost, inheritedSockets, takeInherited } from "../../src/listen/inherit.ts";

test.each([
  ["127.0.0.1", "127.0.0.1"],
  ["0.0.0.0", "0.0.0.0"],
  ["::1", "::1"],
  ["0:0:0:0:0:0:0:1", "::1"],
  ["0:0:0:0:0:0:0:0", "::"],
  ["fd00:0:0:0:0:0:0:a", "fd00::a"],
  ["FD00::A", "fd00::a"],
])("canonicalHost(%p) is %p", (host, want) => {
  expect(canonicalHost(host)).toBe(want);
});

test("a passed socket serves the --listen address it is bound to, once", () => {
  const sockets = [
    { fd: 3, host: "127.0.0.1", port: 5400 },
    { fd: 4, host: "::1", port: 5400 },
  ];
  expect(takeInherited(sockets, { host: "0.0.0.0", port: 5400 })).toBeUndefined();
  expect(takeInherited(sockets, { host: "127.0.0.1", port: 5401 })).toBeUndefined();
  expect(takeInherited(sockets, { host: "0:0:0:0:0:0:0:1", port: 5400 })).toEqual({ fd: 4, host: "::1", port: 5400 });
  expect(takeInherited(sockets, { host: "::1", port: 5400 })).toBeUndefined();
  expect(sockets).toEqual([{ fd: 3, host: "127.0.0.1", port: 5400 }]);
});

test.each([
  ["no LISTEN_PID", { LISTEN_FDS: "1" }],
  ["another process's", { LISTEN_PID: "1", LISTEN_FDS: "1" }],
  ["no LISTEN_FDS", { LISTEN_PID: String(process.pid) }],
])("%s: no passed socket, and the variables are cleared", (_, vars) => {
  const env: Record<string, string | undefined> = { ...vars, LISTEN_FDNAMES: "x", OTHER: "kept" };
  expect(inheritedSockets(env)).toEqual([]);
  expect(env).toEqual({ OTHER: "kept" });
});

test("a LISTEN_FDS that is not a count is one clear error", () => {
  expect(() => inheritedSockets({ LISTEN_PID: String(process.pid), LISTEN_FDS: "lots" })).toThrow(
    "could not use LISTEN_FDS=lots: not a count",
  );
});
