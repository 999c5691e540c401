// The reconnect backoff's bounds, apart from the loop: the main thread's log line names them,
// and importing loop.ts there would load postgres.js into the main thread too (2.6 MB of
// resident memory, measured), where nothing uses it.
export const BACKOFF_MIN_MS = 100;
export const BACKOFF_MAX_MS = 2000;
