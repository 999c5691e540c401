// The one error type: every failure a module reports to its caller carries a code of ERRORS, a one-line
// lowercase message and an optional hint. main.ts is the only place that prints one and exits, with the
// code's exit status (ARCHITECTURE.md, "The rules that must not break", 7).

/** Every code, what it means and the exit status main.ts gives it: 2 a bad configuration, 1 a failure to serve. */
export const ERRORS = {
  CONFIG_INVALID: { exit: 2, about: "a flag, variable, config file or value that does not pass, alone or with others" },
  CLUSTER_INVALID: { exit: 2, about: "a --cluster whose configuration cannot be read or makes no sense" },
  CONNINFO_INVALID: { exit: 2, about: "a connection string or setting that libpq would refuse" },
  CONNINFO_FILE: {
    exit: 2,
    about:
      "a service, password or TLS file of the connection is missing, unreadable or wrong: a poll failure once running",
  },
  ETCD_TLS: { exit: 2, about: "a TLS file of patroni.yml's etcd3 section cannot be read" },
  LISTEN_FAILED: { exit: 1, about: "an address or a socket passed by the service manager cannot be served" },
  TLS_FAILED: { exit: 1, about: "the TLS files of the tls+ listeners or of the peers cannot be used" },
  CONTROL_FAILED: {
    exit: 1,
    about: "the control socket or the state directory cannot be served, or drain|maint|ready finds no replstatus",
  },
  ETCD_REQUEST: { exit: 1, about: "an etcd request failed: the Patroni view retries, it never reaches main.ts" },
} as const satisfies Record<string, { exit: 1 | 2; about: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class ReplstatusError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }

  /** The process's exit status when this error stops it. */
  get exitStatus(): 1 | 2 {
    return ERRORS[this.code].exit;
  }
}

/** Whether `err` is one of ours with one of `codes`. */
export function isError(err: unknown, ...codes: ErrorCode[]): err is ReplstatusError {
  return err instanceof ReplstatusError && codes.includes(err.code);
}
