// A systemd unit's [Service] as the tests need it to start its command the way
// systemd would, on a machine where systemd does not run (a container, CI):
// the user, the environment, the limits, the directories, the command line.
// Only what the units of packaging/debian use is understood; anything else
// with a % specifier is an error rather than a silent difference.

export interface ServiceCommand {
  user: string;
  group: string;
  /** SupplementaryGroups=, added to the user's own groups. */
  groups: string[];
  /** Environment= assignments, in order; later ones win. */
  env: Record<string, string>;
  argv: string[];
  /** LimitNOFILE, when set. */
  nofile: number | undefined;
  /** Below /run and /var/lib: RuntimeDirectory=, StateDirectory=. */
  runtimeDirs: string[];
  stateDirs: string[];
}

/** Section name -> [key, value] pairs in order; comments and blank lines dropped. */
export function parseUnit(text: string): Map<string, [string, string][]> {
  const sections = new Map<string, [string, string][]>();
  let current: [string, string][] | undefined;
  for (const line of text.replace(/\\\n/g, " ").split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith(";")) continue;
    const section = /^\[(.+)\]$/.exec(trimmed);
    if (section) {
      current = [];
      sections.set(section[1]!, current);
      continue;
    }
    const eq = trimmed.indexOf("=");
    if (eq === -1 || !current) throw new Error(`unit: cannot parse line ${JSON.stringify(line)}`);
    current.push([trimmed.slice(0, eq).trim(), trimmed.slice(eq + 1).trim()]);
  }
  return sections;
}

/** Words of a command line or an Environment= value: spaces split, double quotes group. */
function words(text: string): string[] {
  return [...text.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => m[1]?.replace(/\\(.)/g, "$1") ?? m[2]!);
}

/** The [Service] of a template unit for one instance (`%i`); throws on what it does not know. */
export function serviceCommand(unitText: string, instance = ""): ServiceCommand {
  const service = parseUnit(unitText).get("Service");
  if (!service) throw new Error("unit: no [Service] section");
  const expand = (value: string) => {
    const out = value.replace(/%i/g, instance).replace(/%%/g, "\0");
    const unknown = /%./.exec(out);
    if (unknown) throw new Error(`unit: specifier ${unknown[0]} in ${JSON.stringify(value)} is not handled here`);
    return out.replace(/\0/g, "%");
  };
  const cmd: ServiceCommand = {
    user: "",
    group: "",
    groups: [],
    env: {},
    argv: [],
    nofile: undefined,
    runtimeDirs: [],
    stateDirs: [],
  };
  for (const [key, raw] of service) {
    const value = expand(raw);
    if (key === "User") cmd.user = value;
    else if (key === "Group") cmd.group = value;
    else if (key === "SupplementaryGroups") cmd.groups.push(...words(value));
    else if (key === "Environment") {
      for (const word of words(value)) {
        const eq = word.indexOf("=");
        cmd.env[word.slice(0, eq)] = word.slice(eq + 1);
      }
    } else if (key === "ExecStart") {
      if (!value.startsWith("/")) throw new Error(`unit: ExecStart with a prefix is not handled here: ${value}`);
      cmd.argv = words(value);
    } else if (key === "LimitNOFILE") cmd.nofile = Number(value);
    else if (key === "RuntimeDirectory") cmd.runtimeDirs.push(...words(value).map((d) => `/run/${d}`));
    else if (key === "StateDirectory") cmd.stateDirs.push(...words(value).map((d) => `/var/lib/${d}`));
    else if (key === "EnvironmentFile") throw new Error("unit: EnvironmentFile is not handled here");
  }
  if (cmd.argv.length === 0) throw new Error("unit: no ExecStart");
  return cmd;
}

/**
 * The command that runs it as systemd would for a system service: the open
 * file limit set as root (at most `maxNofile`: a container may not raise its
 * hard limit), then the unit's user and group, and only the environment
 * systemd gives (its default PATH, the user's identity, the unit's variables
 * and directories).
 */
export function asSystemd(cmd: ServiceCommand, home: string, shell: string, maxNofile = Infinity): string[] {
  const nofile = cmd.nofile === undefined ? undefined : Math.min(cmd.nofile, maxNofile);
  const env = {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    USER: cmd.user,
    LOGNAME: cmd.user,
    HOME: home,
    SHELL: shell,
    ...(cmd.runtimeDirs.length ? { RUNTIME_DIRECTORY: cmd.runtimeDirs.join(":") } : {}),
    ...(cmd.stateDirs.length ? { STATE_DIRECTORY: cmd.stateDirs.join(":") } : {}),
    ...cmd.env,
  };
  // The user's groups (initgroups), then the unit's SupplementaryGroups=.
  const own = Bun.spawnSync(["id", "-Gn", cmd.user], { stderr: "ignore" }).stdout.toString().trim().split(/\s+/);
  const groups = cmd.groups.length
    ? [`--groups=${[...new Set([...own, ...cmd.groups])].join(",")}`]
    : ["--init-groups"];
  return [
    ...(nofile ? ["prlimit", `--nofile=${nofile}:${nofile}`, "--"] : []),
    "setpriv",
    `--reuid=${cmd.user}`,
    `--regid=${cmd.group || cmd.user}`,
    ...groups,
    "--",
    "env",
    "-i",
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    ...cmd.argv,
  ];
}
