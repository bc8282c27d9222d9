/**
 * The history checker: pure functions from a History (the workers' reports, the runner's acts, etcd's
 * data at the end) to a verdict. Its rules (docs/guarantees.md):
 *
 * From etcd's own data, per kind (the election's counter and log, the mutex's):
 * - the counter equals the committed increments: its value is N, and etcd's version of the key is N too
 *   (two writes of the same value, a lost update, would leave version > value);
 * - the log is gap-free: exactly log/1..log/N, each written once (etcd version 1), each holding its seq;
 * - committed tokens never decrease along the log, and the log's revisions increase with it;
 * - every log entry is an op a worker issued under that token (no phantom); every op etcd acknowledged is
 *   in the log (no lost update); no op refused by etcd or by the library is; ops whose outcome the worker
 *   could not learn (unknown) are resolved by the log: in it, committed, else not.
 * From the workers' reports (one monotonic clock for every process):
 * - believed holds of two workers never overlap, except while one was SIGSTOPped by the nemesis and up to
 *   100 ms after its SIGCONT; one process never holds twice at once. A hold runs from onStartedLeading
 *   (lock() resolving) until its signal aborted, or until SIGKILL (it acts no more after), or its exit;
 * - the one exception we know of in etcd itself (#15247, #12528): the earlier holder was *told by etcd*
 *   (its lease revoked, its key deleted) right after a raft-leader resume (within TTL + election
 *   timeout), and fencing held (every data rule above passed). Such overlaps are reported apart, as etcd
 *   bug sightings; so is every hold etcd ended that way, overlap or not;
 * - followers stay healthy: every healthy() sample is true;
 * - the library logs no error the faults do not explain (EXPECTED_ERRORS), and Node prints no warning;
 * - workers exit only when the runner kills or stops them, and cleanly when stopped.
 * The runner's own recovery checks (recovery.ts) that failed are violations too.
 */
import { CALL_TIMEOUT_MS } from "./settings.js";
import { faultSpans, kindsOf, type History, type HistoryEvent, type HoldKind, type WorkerReport } from "./history.js";

/** How long after SIGCONT a resumed worker may still believe it holds: its first tick must end it. */
const RESUME_GRACE_MS = 100;

/**
 * The error-level lines the library logs that the faults and the workers explain: a session lost to a
 * fault; a worker stepping down after a write of unknown outcome (its callback throws StepDown); a shard's
 * work still inside a write to an unreachable etcd (the call deadline is longer than the TTL) when its
 * term ended. Each is excused only while a fault is on and for a while after its heal (faultWindows); any
 * other error-level line, or one of these in calm, is a violation.
 */
const EXPECTED_ERRORS: { msg: RegExp; err?: RegExp }[] = [
  { msg: /^session lost$/ },
  { msg: /^(onStartedLeading|onAcquired) threw/, err: /outcome unknown .*: stepping down$/ },
  { msg: /^onAcquired has not returned a TTL after its term ended/ },
];

/**
 * [start, heal + aftermath] of every fault (one still on at the end runs to the end). The aftermath is how
 * long after a heal a fault still explains those lines: a lease etcd expires (TTL + its election timeout),
 * then a write that hangs until its deadline (the workers' call deadline) before the work returns.
 */
function faultWindows(history: History): [number, number][] {
  const aftermath = history.ttlMs + history.electionTimeoutMs + CALL_TIMEOUT_MS;
  return faultSpans(history).map(({ fault, healedAt }) => [fault.t, (healedAt ?? history.endedAt) + aftermath]);
}

export interface Interval {
  w: string;
  kind: HoldKind;
  token: string;
  start: number;
  end: number;
  /** What ended it: the abort reason's code and message, "killed", "exited" or "run ended". */
  reason: string;
  /** Ended because etcd said so (lease revoked, key deleted, guard refused), not by our own clock. */
  toldByEtcd: boolean;
}

export type OpOutcome = "ok" | "stale" | "refused" | "unknown";

export interface Op {
  w: string;
  kind: HoldKind;
  op: string;
  token: string;
  value: number;
  t: number;
  /** When the worker learned the outcome (undefined if it never did). */
  settledAt?: number;
  /** "unknown" also for an op whose worker died before it learned the outcome. */
  outcome: OpOutcome;
  /** Whether it is in etcd's log. */
  committed: boolean;
}

export interface Violation {
  rule: string;
  message: string;
  /** When it happened (monotonic ms), for the timeline. */
  at?: number;
  /** The events that show it. */
  excerpt?: unknown[];
}

export interface EtcdBugSighting {
  kind: HoldKind;
  /** The holder etcd told too late, and the one elected meanwhile. */
  told: Interval;
  next: Interval;
  overlapMs: number;
  /** The raft-leader resume it followed, and how long after it the next holder began. */
  resumeAt: number;
  afterResumeMs: number;
}

/** A hold etcd ended (its lease revoked, its key deleted) right after a raft-leader resume: etcd #15247. */
export interface EtcdRevoke {
  hold: Interval;
  resumeAt: number;
  /** From the resume to the holder being told. */
  afterResumeMs: number;
}

export interface Verdict {
  ok: boolean;
  violations: Violation[];
  /** Overlaps caused by etcd #15247, set apart from the violations. */
  etcdBugs: EtcdBugSighting[];
  /** Every hold etcd #15247 ended, whether or not someone else had begun by then. */
  etcdRevokes: EtcdRevoke[];
  intervals: Interval[];
  ops: Op[];
  /** Committed increments per kind (= the counter, when the data rules pass). */
  committed: Record<HoldKind, number>;
}

type Report<E extends WorkerReport["e"]> = Extract<HistoryEvent, { e: E; w: string }>;
const is = <E extends HistoryEvent["e"]>(e: HistoryEvent, name: E): e is HistoryEvent & { e: E } => e.e === name;

const TOLD_BY_ETCD = /etcd reports the lease|was deleted|is gone|was replaced|refused by etcd/;

/** Believed holds, from start/end reports, closed by SIGKILL or exit if the worker never reported an end. */
function intervalsOf(history: History): Interval[] {
  const open = new Map<string, Interval[]>();
  const done: Interval[] = [];
  const close = (w: string, at: number, pick: (i: Interval) => boolean, reason: string, toldByEtcd = false): void => {
    const list = open.get(w) ?? [];
    for (const i of list.filter(pick)) {
      done.push({ ...i, end: at, reason, toldByEtcd });
      list.splice(list.indexOf(i), 1);
    }
  };
  for (const e of history.events) {
    if (is(e, "start")) {
      const s = e as Report<"start">;
      const list = open.get(s.w) ?? [];
      list.push({ w: s.w, kind: s.kind, token: s.token, start: s.t, end: Infinity, reason: "", toldByEtcd: false });
      open.set(s.w, list);
    } else if (is(e, "end")) {
      const x = e as Report<"end">;
      const why = `${x.code}: ${x.message}${x.cause ? ` (${x.cause})` : ""}`;
      close(x.w, x.t, (i) => i.kind === x.kind && i.token === x.token, why, TOLD_BY_ETCD.test(why));
    } else if (is(e, "sigkill") || is(e, "exit")) {
      close(e.w, e.t, () => true, e.e === "sigkill" ? "killed" : "exited");
    }
  }
  for (const [w] of open) close(w, history.endedAt, () => true, "run ended");
  return done.sort((a, b) => a.start - b.start);
}

/** Per worker, the windows in which it may believe anything: [SIGSTOP, SIGCONT + grace]. */
function excusedWindows(history: History): Map<string, [number, number][]> {
  const out = new Map<string, [number, number][]>();
  const stoppedAt = new Map<string, number>();
  for (const e of history.events) {
    if (is(e, "sigstop")) stoppedAt.set(e.w, e.t);
    else if ((is(e, "sigcont") || is(e, "sigkill")) && stoppedAt.has(e.w)) {
      const list = out.get(e.w) ?? [];
      list.push([stoppedAt.get(e.w)!, e.t + RESUME_GRACE_MS]);
      out.set(e.w, list);
      stoppedAt.delete(e.w);
    }
  }
  return out;
}

/** Length of [from, to] not covered by `windows`. */
function uncovered(from: number, to: number, windows: [number, number][]): number {
  let left = 0;
  let cursor = from;
  for (const [a, b] of [...windows].sort((x, y) => x[0] - y[0])) {
    if (b <= cursor) continue;
    if (a >= to) break;
    if (a > cursor) left += a - cursor;
    cursor = Math.max(cursor, b);
    if (cursor >= to) return left;
  }
  return left + Math.max(0, to - cursor);
}

/** The ops each worker issued, with what it learned and what the log says. */
function opsOf(history: History): Op[] {
  const inLog = new Set(kindsOf(history).flatMap((k) => history.data[k]!.log.map((l) => l.entry.op)));
  const ops = new Map<string, Op>();
  for (const e of history.events) {
    if (is(e, "op")) {
      const o = e as Report<"op">;
      ops.set(o.op, {
        w: o.w,
        kind: o.kind,
        op: o.op,
        token: o.token,
        value: o.value,
        t: o.t,
        outcome: "unknown",
        committed: inLog.has(o.op),
      });
    } else if (is(e, "ok") || is(e, "rejected") || is(e, "unknown")) {
      const r = e as Report<"ok" | "rejected" | "unknown">;
      const op = ops.get(r.op);
      if (!op) continue;
      op.settledAt = r.t;
      if (r.e === "ok") op.outcome = "ok";
      else if (r.e === "rejected") op.outcome = r.stale ? "stale" : "refused";
    }
  }
  return [...ops.values()];
}

/** The data rules for one kind; returns violations. */
function checkRegister(history: History, kind: HoldKind, ops: Op[]): Violation[] {
  const out: Violation[] = [];
  const { counter, log } = history.data[kind]!;
  const n = counter?.value ?? 0;
  const v = (rule: string, message: string, excerpt?: unknown[]): number =>
    out.push({ rule: `${kind}: ${rule}`, message, excerpt });
  if (counter && counter.version !== n) {
    v("lost update", `the counter is ${n} but etcd wrote it ${counter.version} times: some writes overwrote others`);
  }
  const bySeq = new Map(log.map((l) => [l.seq, l]));
  const missing = [...Array(n).keys()].map((i) => i + 1).filter((s) => !bySeq.has(s));
  if (missing.length) v("gap", `the log misses ${missing.length} of 1..${n}: ${missing.slice(0, 10).join(", ")}`);
  const beyond = log.filter((l) => l.seq > n || l.seq < 1);
  if (beyond.length)
    v(
      "phantom",
      `the log holds entries past the counter (${n}): seqs ${beyond
        .slice(0, 10)
        .map((l) => l.seq)
        .join(", ")}`,
      beyond.slice(0, 5),
    );
  const byOp = new Map(ops.map((o) => [o.op, o]));
  const sorted = [...log].sort((a, b) => a.seq - b.seq);
  for (let i = 0; i < sorted.length; i++) {
    const l = sorted[i]!;
    if (l.version !== 1) v("lost update", `log/${l.seq} was written ${l.version} times (last by ${l.entry.op})`, [l]);
    if (l.entry.value !== l.seq) v("bad entry", `log/${l.seq} holds value ${l.entry.value}`, [l]);
    const prev = sorted[i - 1];
    if (prev && BigInt(l.entry.token) < BigInt(prev.entry.token)) {
      v(
        "token decreased",
        `log/${l.seq} was committed with token ${l.entry.token} after token ${prev.entry.token} (log/${prev.seq})`,
        [prev, l],
      );
    }
    if (prev && l.modRevision <= prev.modRevision)
      v("order", `log/${l.seq} was committed at revision ${l.modRevision}, not after log/${prev.seq}`, [prev, l]);
    const op = byOp.get(l.entry.op);
    if (
      !op ||
      op.w !== l.entry.worker ||
      op.token !== l.entry.token ||
      op.value !== l.entry.value ||
      op.kind !== kind
    ) {
      v("phantom", `log/${l.seq} holds op ${l.entry.op}, which no worker issued as such`, [l, op]);
    } else if (op.outcome === "stale" || op.outcome === "refused") {
      v("refused write committed", `op ${op.op} was refused (${op.outcome}) yet is in the log at ${l.seq}`, [l, op]);
    }
  }
  const mine = ops.filter((o) => o.kind === kind);
  for (const o of mine.filter((x) => x.outcome === "ok" && !x.committed)) {
    v("lost update", `op ${o.op} (${o.w}, token ${o.token}, value ${o.value}) was acknowledged but is not in the log`, [
      o,
    ]);
  }
  const committed = mine.filter((o) => o.committed).length;
  if (committed !== n) v("count", `${committed} ops are in the log but the counter is ${n}`);
  return out;
}

export function check(history: History): Verdict {
  const violations: Violation[] = [];
  const etcdBugs: EtcdBugSighting[] = [];
  const intervals = intervalsOf(history);
  const ops = opsOf(history);
  const registerOk = {} as Record<HoldKind, boolean>;
  for (const kind of kindsOf(history)) {
    const found = checkRegister(history, kind, ops);
    registerOk[kind] = found.length === 0;
    violations.push(...found);
  }

  const excused = excusedWindows(history);
  const resumes = history.events.filter((e) => is(e, "raft-resume")).map((e) => e.t);
  const bugWindowMs = history.ttlMs + history.electionTimeoutMs;
  for (const kind of kindsOf(history)) {
    const list = intervals.filter((i) => i.kind === kind);
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i]!;
        const b = list[j]!;
        if (b.start >= a.end) break; // sorted by start: no later one overlaps a either
        const from = b.start;
        const to = Math.min(a.end, b.end);
        if (a.w === b.w) {
          violations.push({
            rule: `${kind}: one process held twice`,
            message: `${a.w} held ${a.token} and ${b.token} at once`,
            at: from,
            excerpt: [a, b],
          });
          continue;
        }
        const windows = [...(excused.get(a.w) ?? []), ...(excused.get(b.w) ?? [])];
        const left = uncovered(from, to, windows);
        if (left <= 0) continue;
        const resumeAt = resumes.filter((r) => r <= b.start && b.start - r <= bugWindowMs).pop();
        if (a.toldByEtcd && resumeAt !== undefined && registerOk[kind]) {
          etcdBugs.push({ kind, told: a, next: b, overlapMs: to - from, resumeAt, afterResumeMs: b.start - resumeAt });
        } else {
          violations.push({
            rule: `${kind}: holds overlap`,
            message: `${a.w} (token ${a.token}, ended by ${a.reason}) and ${b.w} (token ${b.token}) both believed they held for ${left.toFixed(1)} ms not explained by a pause`,
            at: from,
            excerpt: [a, b, ...windows.map(([s, e]) => ({ excusedFrom: s, to: e }))],
          });
        }
      }
    }
  }

  const windows = faultWindows(history);
  for (const e of history.events) {
    if (is(e, "status") && !(e as Report<"status">).healthy) {
      const s = e as Report<"status">;
      violations.push({
        rule: "healthy",
        message: `${s.w} reported healthy() false (leader: ${s.leader})`,
        at: s.t,
        excerpt: [s],
      });
    } else if (is(e, "log") && (e as Report<"log">).level === "node-warning") {
      const l = e as Report<"log">;
      violations.push({ rule: "node warning", message: `${l.w}: ${l.msg}`, at: l.t, excerpt: [l] });
    } else if (is(e, "log") && (e as Report<"log">).level === "error") {
      const l = e as Report<"log">;
      const explained =
        windows.some(([from, to]) => l.t >= from && l.t <= to) &&
        EXPECTED_ERRORS.some((x) => x.msg.test(l.msg) && (!x.err || x.err.test(l.err ?? "")));
      if (!explained)
        violations.push({
          rule: "library error",
          message: `${l.w} logged "${l.msg}" (${l.code ?? ""}: ${l.err ?? ""})`,
          at: l.t,
          excerpt: [l],
        });
    } else if (is(e, "check") && !e.ok) {
      violations.push({
        rule: `recovery: ${e.rule}`,
        message: `after fault ${e.n}: ${e.detail}`,
        at: e.t,
        excerpt: [e],
      });
    } else if (is(e, "exit")) {
      const asked = history.events.some((x) => (is(x, "sigkill") || is(x, "sigterm")) && x.w === e.w && x.t <= e.t);
      if (!asked || (e.signal !== "SIGKILL" && e.code !== 0)) {
        violations.push({
          rule: "worker exit",
          message: `${e.w} exited with ${e.code ?? e.signal}${asked ? "" : " unasked"}: ${e.stderr ?? ""}`,
          at: e.t,
          excerpt: [e],
        });
      }
    }
  }

  // The holds etcd ended right after a raft-leader resume, the holder running all along: the revoke of a
  // lease that was kept alive, whether or not it let someone else in first.
  const etcdRevokes: EtcdRevoke[] = [];
  for (const hold of intervals) {
    const resumeAt = resumes.filter((r) => r <= hold.end && hold.end - r <= bugWindowMs).pop();
    const paused = (excused.get(hold.w) ?? []).some(([a, b]) => a < hold.end && b > (resumeAt ?? Infinity));
    if (hold.toldByEtcd && resumeAt !== undefined && !paused)
      etcdRevokes.push({ hold, resumeAt, afterResumeMs: hold.end - resumeAt });
  }

  const committed = Object.fromEntries(
    kindsOf(history).map((k) => [k, ops.filter((o) => o.kind === k && o.committed).length]),
  ) as Record<HoldKind, number>;
  return { ok: violations.length === 0, violations, etcdBugs, etcdRevokes, intervals, ops, committed };
}
