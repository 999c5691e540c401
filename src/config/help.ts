// --help, built from the option table.
import { DEFAULT_TEXTS, envName, hasEnv, inScope, OPTIONS, type Option } from "./options.ts";

function row(o: Option): string {
  const left = `  --${o.name}${o.arg ? " " + o.arg : ""}`;
  const def = o.default !== undefined ? ` (default: ${o.default === "" ? '""' : o.default})` : "";
  const env = hasEnv(o) ? ` [${envName(o.name)}${o.arg ? "" : "=1"}]` : "";
  return `${left.padEnd(34)} ${o.help}${def}${env}`;
}

export function helpText(version: string): string {
  return [
    `replstatus ${version}: tells a load balancer whether this PostgreSQL node is the primary`,
    "",
    "Usage: replstatus [flags]                    serve (the default)",
    "       replstatus drain|maint|ready [flags]  set the override of the replstatus started with the same",
    "                                             --port/--listen/--control-socket; ready clears it",
    "       replstatus demo [demo flags]          a throwaway primary + standby (+ haproxy) and a failover",
    "       replstatus route [route flags]        beside haproxy: push every node's role change into it (docs/routing.md)",
    "       replstatus status [status flags]      every node's answer, role, timeline, lag and the disagreements",
    "                                             between them (exit 1 on one), from this host's http listener",
    "",
    "Every connection gets the current state's text, then the server closes:",
    `${DEFAULT_TEXTS.primary} (primary), ${DEFAULT_TEXTS.standby} (standby), ${DEFAULT_TEXTS.unknown} (no fresh answer from PostgreSQL),`,
    `${DEFAULT_TEXTS.lagging} for a standby over a lag limit, or ${DEFAULT_TEXTS.fenced} for a fenced primary: a --peer is primary on a higher`,
    "timeline, the isolation rule holds, or (Patroni) it does not hold the leader key; /status says which.",
    "An http listener answers haproxy's option httpchk on /primary, /replica[?lag=16MB], /read-only, /health,",
    "/liveness, /readiness, /status and /metrics (see docs/haproxy.md), and the status page /ui.",
    "",
    "Flags (environment variable in brackets; durations as 250ms, 2s, or milliseconds):",
    ...OPTIONS.filter((o) => inScope(o, "server") && o.name !== "help" && o.name !== "version").map(row),
    ...OPTIONS.filter((o) => o.name === "help" || o.name === "version").map(row),
    "",
    "Flags of replstatus demo:",
    ...OPTIONS.filter((o) => o.demo).map(row),
    "",
    "Flags of replstatus route (also --listen http:HOST:PORT for its /status and /events, --peer-ca,",
    "--peer-cert, --peer-key for https nodes, --config and --log-format; SIGHUP reads them again, but for",
    "--listen and --log-format):",
    ...OPTIONS.filter((o) => o.route === true).map(row),
    "",
    "Flags of replstatus status (and the flags above that say where this host's http listener is):",
    ...OPTIONS.filter((o) => o.status === true).map(row),
    "",
  ].join("\n");
}
