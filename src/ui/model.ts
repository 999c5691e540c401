// The cluster at a glance, as pure functions: a /status body (a node's, or
// `replstatus route`'s) in, one row per node and the disagreements between the
// store, each node's own answer and haproxy out, in plain words. Shared by the
// status page (page.ts inlines this file's text into the page, so it imports
// nothing and uses nothing the browser lacks) and `replstatus status`
// (term.ts). ARCHITECTURE.md, "The status page".

/** One node as the source knows it. Unknown facts are null. */
export interface NodeRow {
  name: string;
  /** Where its /status lives, where known. */
  url: string | null;
  /** The node that served the document. */
  self: boolean;
  /**
   * "ok": its answer is known; "unreachable": it was asked and did not answer
   * (detail says why; the facts are its last good answer, if any);
   * "pending": not asked yet; "not asked": only the store knows it.
   */
  reach: "ok" | "unreachable" | "pending" | "not asked";
  detail: string | null;
  /** The answered state: primary, standby, unknown, lagging, fenced. */
  answer: string | null;
  /** The listener's raw text, where the source says it (events carry it). */
  answerText: string | null;
  /** The poller's state before the fence and the override: PostgreSQL's role by the node's own poll. */
  polled: string | null;
  /** Role by the store (Patroni): "leader" for the leader key's holder, else the member key's role; null without a store. */
  store: string | null;
  /** The member key's state (running, stopped, ...). */
  storeState: string | null;
  timeline: number | null;
  systemId: string | null;
  lagBytes: number | null;
  replayAgeS: number | null;
  /** Lag the store shows (leader optime less the member's), when there is no fresher one. */
  storeLagBytes: number | null;
  receiver: string | null;
  fence: string | null;
  override: string | null;
  /** ISO time of the node's last change of answer. */
  changedAt: string | null;
  haproxy: HaproxyView[];
}

/** haproxy's view of one server that stands for the node. */
export interface HaproxyView {
  backend: string;
  /** "primary" (routes writes to the node that answers MASTER) or "replica" (replstatus route's --replica-backend). */
  kind: string;
  server: string;
  /** UP, DOWN, MAINT, DRAIN, ... (haproxy's words). */
  status: string;
  /** Whether haproxy sends new sessions to it: running and admin ready. */
  routed: boolean;
}

export interface TransitionRow {
  node: string;
  at: string;
  from: string;
  to: string;
  reason: string;
}

export interface Cluster {
  /** "node": a node's /status; "route": `replstatus route`'s. */
  source: "node" | "route";
  /** "peers" (split-brain guard), "patroni", "single" (neither), "route". */
  mode: "peers" | "patroni" | "single" | "route";
  /** The store's leader key: a name, null for none; undefined without a store. */
  leader: string | null | undefined;
  /** Why the store's view is not live (Patroni mode), or null. */
  storeProblem: string | null;
  nodes: NodeRow[];
  /** Newest first. */
  transitions: TransitionRow[];
}

export interface Finding {
  /** A stable code, for scripts. */
  code: string;
  /** The disagreement in plain words. */
  text: string;
  nodes: string[];
}

/** The raw texts as shipped (--text-*), for a state whose text the source does not say. */
export const DEFAULT_TEXTS: Record<string, string> = {
  primary: "MASTER",
  standby: "STANDBY",
  unknown: "UNKNOWN",
  lagging: "LAGGING",
  fenced: "FENCED",
};

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** The text a node answers, as a person reads it. */
export function answerWord(n: Pick<NodeRow, "answer" | "answerText" | "reach">): string {
  if (n.reach === "not asked" || n.reach === "pending") return "?";
  if (n.reach === "unreachable") return "NO ANSWER";
  return n.answerText ?? (n.answer === null ? "?" : (DEFAULT_TEXTS[n.answer] ?? n.answer.toUpperCase()));
}

/** `host:port` of an http(s) URL, for a name. */
export function hostOf(url: string): string {
  const m = /^[a-z+]+:\/\/([^/]+)/i.exec(url);
  return m ? m[1]! : url;
}

/** The last digits of a system identifier: enough to tell clusters apart on a screen. */
export function shortId(id: string | null): string {
  return id === null ? "" : id.length > 6 ? `…${id.slice(-6)}` : id;
}

function emptyRow(name: string, url: string | null, self: boolean): NodeRow {
  return {
    name,
    url,
    self,
    reach: "ok",
    detail: null,
    answer: null,
    answerText: null,
    polled: null,
    store: null,
    storeState: null,
    timeline: null,
    systemId: null,
    lagBytes: null,
    replayAgeS: null,
    storeLagBytes: null,
    receiver: null,
    fence: null,
    override: null,
    changedAt: null,
    haproxy: [],
  };
}

/** A node's own fields (its /status body, an event's data, or what a guard kept of a peer's). */
function fill(row: NodeRow, b: Json): void {
  row.answer = str(b.state);
  row.answerText = str(b.answer);
  row.polled = str(b.polled);
  row.timeline = num(b.timeline);
  row.systemId = str(b.system_identifier);
  row.lagBytes = num(b.lag_bytes);
  row.replayAgeS = num(b.replay_age_seconds);
  row.receiver = str(b.receiver);
  row.fence = str(b.fence);
  row.override = str(b.override);
  row.changedAt = str(b.changed_at);
}

function transitionsOf(node: string, b: Json): TransitionRow[] {
  return list(b.transitions)
    .filter(isObj)
    .map((t) => ({
      node,
      at: str(t.at) ?? "",
      from: str(t.from) ?? "",
      to: str(t.to) ?? "",
      reason: str(t.reason) ?? "",
    }));
}

/** The store's members (Patroni mode) laid over the rows, adding the members no row stands for. */
function addStore(rows: NodeRow[], patroni: Json): void {
  const leader = str(patroni.leader);
  for (const m of list(patroni.members).filter(isObj)) {
    const name = str(m.name) ?? "?";
    let row = rows.find((r) => r.name === name);
    if (!row) {
      row = emptyRow(name, null, false);
      row.reach = "not asked";
      rows.push(row);
    }
    row.store = name === leader ? "leader" : (str(m.role) ?? "member");
    row.storeState = str(m.state);
    row.storeLagBytes = num(m.lag_bytes);
    if (row.reach === "not asked") row.timeline = num(m.timeline);
  }
}

/** A node's /status body; `selfName` names the node that served it when it has no name of its own. */
export function fromNodeStatus(b: Json, selfName: string): Cluster {
  const patroni = isObj(b.patroni) ? b.patroni : undefined;
  const self = emptyRow(str(patroni?.member) ?? selfName, null, true);
  fill(self, b);
  const rows = [self];
  const transitions = transitionsOf(self.name, b);
  for (const p of list(b.peers).filter(isObj)) {
    const url = str(p.url) ?? "?";
    const row = emptyRow(hostOf(url), url, false);
    const node = isObj(p.node) ? p.node : undefined;
    if (node) {
      fill(row, node);
      transitions.push(...transitionsOf(row.name, node));
    } else {
      row.answer = str(p.state);
      row.timeline = num(p.timeline);
      row.systemId = str(p.system_identifier);
    }
    const result = str(p.result);
    row.reach = result === "ok" || result === "other_cluster" ? "ok" : result === "pending" ? "pending" : "unreachable";
    row.detail = result === "ok" ? null : str(p.detail);
    rows.push(row);
  }
  if (patroni) addStore(rows, patroni);
  const live = patroni && patroni.view === "live";
  return {
    source: "node",
    mode: patroni ? "patroni" : rows.length > 1 ? "peers" : "single",
    leader: patroni ? str(patroni.leader) : undefined,
    storeProblem:
      !patroni || live ? null : (str(patroni.view_reason) ?? str(patroni.etcd_reason) ?? "no view of the store"),
    nodes: rows,
    transitions: newestFirst(transitions),
  };
}

/** haproxy's words for a server's state (the stats socket's `show servers state` numbers). */
export function haproxyStatus(h: Json): { status: string; routed: boolean } {
  const given = str(h.status);
  const op = num(h.op_state);
  const admin = num(h.admin_state);
  // srv_admin_state bits (haproxy's SRV_ADMF_*): maint forced, inherited, from config, from resolution,
  // from a failed check (0x01, 0x02, 0x04, 0x20, 0x40); drain forced or inherited (0x08, 0x10).
  const maint = admin !== null && (admin & 0x67) !== 0;
  const drain = admin !== null && (admin & 0x18) !== 0;
  const status =
    given ??
    (maint ? "MAINT" : drain ? "DRAIN" : op === 2 ? "UP" : op === 0 ? "DOWN" : op === 3 ? "STOPPING" : "STARTING");
  const routed = given !== null ? /^UP/.test(given) && !maint && !drain : op === 2 && !maint && !drain;
  return { status, routed };
}

/** `replstatus route`'s /status body: every server it follows, with haproxy's view. */
export function fromRouteStatus(b: Json): Cluster {
  const rows: NodeRow[] = [];
  const transitions: TransitionRow[] = [];
  let leader: string | null | undefined;
  for (const s of list(b.servers).filter(isObj)) {
    const url = str(s.url);
    const name = str(s.server) ?? (url ? hostOf(url) : "?");
    let row = rows.find((r) => (url !== null && r.url === url) || (url === null && r.name === name));
    if (!row) {
      row = emptyRow(name, url, false);
      const node = isObj(s.node) ? s.node : undefined;
      const stream = str(s.stream);
      if (node) {
        fill(row, node);
        transitions.push(...transitionsOf(name, node));
        const p = isObj(node.patroni) ? node.patroni : undefined;
        if (p) {
          if (leader === undefined || p.view === "live") leader = str(p.leader);
          row.store = str(p.leader) === str(p.member) ? "leader" : "replica";
        }
      }
      row.reach = stream === "connected" && node ? "ok" : node || stream === "lost" ? "unreachable" : "pending";
      row.detail = row.reach === "ok" ? null : stream === "lost" ? "its event stream is lost" : "connecting";
      rows.push(row);
    }
    if (isObj(s.haproxy)) {
      const h = { backend: str(s.backend) ?? "?", server: str(s.server) ?? "?", kind: str(s.kind) ?? "primary" };
      row.haproxy.push({ ...h, ...haproxyStatus(s.haproxy) });
    }
  }
  return {
    source: "route",
    mode: "route",
    leader,
    storeProblem: null,
    nodes: rows,
    transitions: newestFirst(transitions),
  };
}

/** Either kind of /status body. */
export function clusterOf(b: unknown, selfName: string): Cluster {
  if (!isObj(b)) throw new Error("the answer is not a JSON object");
  return b.kind === "route" ? fromRouteStatus(b) : fromNodeStatus(b, selfName);
}

function newestFirst(t: TransitionRow[]): TransitionRow[] {
  return t.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0)).slice(0, 20);
}

const COUNT_WORDS = ["no", "one", "two", "three", "four", "five", "six"];
const count = (n: number) => COUNT_WORDS[n] ?? String(n);
const names = (rows: NodeRow[]) => rows.map((r) => r.name);
const andList = (items: string[]) =>
  items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;

function why(n: NodeRow): string {
  if (n.answer === "fenced") return n.fence ? `: ${n.fence}` : "";
  if (n.override === "maint") return ": it is in maint (replstatus maint)";
  return "";
}

/** The nodes' answers against each other and against PostgreSQL's own role. */
function answerFindings(nodes: NodeRow[]): Finding[] {
  const out: Finding[] = [];
  const known = nodes.filter((n) => n.reach === "ok");
  for (const n of nodes.filter((n) => n.reach === "unreachable")) {
    out.push({
      code: "unreachable",
      text: `${n.name} cannot be reached${n.detail ? `: ${n.detail}` : ""}`,
      nodes: [n.name],
    });
  }
  const masters = known.filter((n) => n.answer === "primary");
  if (masters.length > 1) {
    out.push({
      code: "several-masters",
      text: `${count(masters.length)} nodes answer MASTER: ${andList(names(masters))}`,
      nodes: names(masters),
    });
  }
  const unsure = nodes.some((n) => n.reach === "not asked" || n.reach === "pending");
  if (masters.length === 0 && known.length > 0 && !unsure) {
    const reachable = nodes.some((n) => n.reach === "unreachable") ? "reachable " : "";
    out.push({ code: "no-master", text: `no ${reachable}node answers MASTER`, nodes: [] });
  }
  for (const n of known) {
    if (n.polled === "primary" && n.answer !== "primary") {
      out.push({
        code: "primary-held-back",
        text: `${n.name} is a primary by its own poll but answers ${answerWord(n)}${why(n)}`,
        nodes: [n.name],
      });
    }
  }
  const ids = [...new Set(known.map((n) => n.systemId).filter((id) => id !== null))];
  if (ids.length > 1) {
    const byId = ids.map((id) => `${andList(names(known.filter((n) => n.systemId === id)))} (${shortId(id)})`);
    out.push({
      code: "other-cluster",
      text: `the nodes belong to different clusters: ${byId.join("; ")}`,
      nodes: names(known),
    });
  }
  return out;
}

/** The store (Patroni's leader key) against the answers. */
function storeFindings(c: Cluster): Finding[] {
  if (c.leader === undefined) return [];
  const out: Finding[] = [];
  if (c.storeProblem) out.push({ code: "store", text: `the store's view is not live: ${c.storeProblem}`, nodes: [] });
  const leader = c.nodes.find((n) => n.name === c.leader);
  if (c.leader === null) out.push({ code: "no-leader", text: "the store has no leader", nodes: [] });
  else if (leader && leader.reach === "ok" && leader.answer !== "primary") {
    out.push({
      code: "leader-not-master",
      text: `the store's leader ${leader.name} answers ${answerWord(leader)}${why(leader)}`,
      nodes: [leader.name],
    });
  } else if (leader && leader.reach === "unreachable") {
    out.push({
      code: "leader-unreachable",
      text: `the store's leader ${leader.name} cannot be reached`,
      nodes: [leader.name],
    });
  }
  for (const n of c.nodes) {
    if (n.reach !== "ok" || n.answer !== "primary" || n.name === c.leader) continue;
    const holder = c.leader === null ? "the store has no leader" : `the store's leader is ${c.leader}`;
    out.push({ code: "master-not-leader", text: `${n.name} answers MASTER but ${holder}`, nodes: [n.name] });
  }
  return out;
}

/** haproxy (through route) against the answers: per backend, where it sends sessions. */
function haproxyFindings(nodes: NodeRow[]): Finding[] {
  const out: Finding[] = [];
  // A replica backend routes to standbys on purpose: only primary backends are judged.
  const backends = [
    ...new Set(nodes.flatMap((n) => n.haproxy.filter((h) => h.kind === "primary").map((h) => h.backend))),
  ];
  for (const backend of backends) {
    const members = nodes.filter((n) => n.haproxy.some((h) => h.backend === backend));
    const routed = members.filter((n) => n.haproxy.some((h) => h.backend === backend && h.routed));
    const where = backends.length > 1 ? ` (backend ${backend})` : "";
    for (const n of routed) {
      if (n.reach === "ok" && n.answer === "primary") continue;
      const word = n.reach === "ok" ? `which is ${answerWord(n)}` : "which cannot be reached";
      out.push({ code: "haproxy-routes-wrong", text: `haproxy routes to ${n.name}${where}, ${word}`, nodes: [n.name] });
    }
    if (routed.length > 1) {
      out.push({
        code: "haproxy-routes-several",
        text: `haproxy routes to ${count(routed.length)} servers${where}: ${andList(names(routed))}`,
        nodes: names(routed),
      });
    }
    const master = members.find((n) => n.reach === "ok" && n.answer === "primary");
    if (routed.length === 0 && master) {
      out.push({
        code: "haproxy-routes-none",
        text: `haproxy routes to no server${where}, though ${master.name} answers MASTER`,
        nodes: [master.name],
      });
    }
  }
  return out;
}

/** Every disagreement, in the order a person should read them. */
export function disagreements(c: Cluster): Finding[] {
  return [...storeFindings(c), ...answerFindings(c.nodes), ...haproxyFindings(c.nodes)];
}
