/**
 * Figures from a checked history, per fault and per fault kind: what a reader wants to know about
 * failover and recovery, measured, not asserted (the checker and the recovery bounds assert).
 */
import type { Interval, Op, Verdict } from "./checker.js";
import {
  FAULT_KINDS,
  faultSpans,
  type FaultEvent,
  type FaultKind,
  type History,
  type HistoryEvent,
  type HoldKind,
} from "./history.js";

export interface WriteCounts {
  /** Acknowledged by etcd. */
  ok: number;
  /** Refused by etcd's guard: a stale holder's write, stopped by fencing. */
  stale: number;
  /** Refused by the library before sending (assertHeld: the hold had already ended by its clock). */
  refused: number;
  /** Outcome unknown to the worker; and how many of those the log shows committed. */
  unknown: number;
  unknownCommitted: number;
}

export interface FaultFigures {
  n: number;
  kind: FaultKind;
  detail: string;
  target: string | undefined;
  start: number;
  heal: number | undefined;
  /** From the fault (kill, SIGTERM, cut, SIGSTOP) to the next worker's first believed term. */
  failoverMs: number | undefined;
  /** Paused leader: from SIGCONT to the end of its believed term. */
  noticeAfterResumeMs: number | undefined;
  /** Cut-off leader: from the end of its term to the start of the next one (positive: no overlap). */
  gapBeforeNextMs: number | undefined;
  /** From the heal to a leader etcd agrees with (the recovery check). */
  recoveryMs: number | undefined;
  writes: Record<"election" | "mutex", WriteCounts>;
  /** Holds etcd #15247 ended after this fault's raft-leader resume; and of those, how many overlapped. */
  etcdRevokes: number;
  etcdBugs: number;
  /** The sharded workload's, where the run had one. */
  shards?: ShardFigures;
}

/** A fault seen from the sharded workload: what it did to the sharded worker it hit, and to all shards. */
export interface ShardFigures {
  /** From the fault to the moment every shard its sharded target held had another worker's term. */
  takenOverMs: number | undefined;
  /** Paused sharded worker: from SIGCONT to the end of the last of its terms. */
  noticeAfterResumeMs: number | undefined;
  /** Cut-off sharded worker: the least time from one of its terms ending to that shard's next term. */
  gapBeforeNextMs: number | undefined;
  /** From the heal to every shard held and balanced (the recovery check). */
  balancedMs: number | undefined;
  writes: WriteCounts;
}

export interface KindShardFigures {
  takenOverMs: number[];
  noticeAfterResumeMs: number[];
  gapBeforeNextMs: number[];
  balancedMs: number[];
  writes: WriteCounts;
}

export interface KindFigures {
  kind: FaultKind;
  count: number;
  failoverMs: number[];
  noticeAfterResumeMs: number[];
  gapBeforeNextMs: number[];
  recoveryMs: number[];
  writes: WriteCounts;
  etcdRevokes: number;
  etcdBugs: number;
  shards: KindShardFigures;
}

const zero = (): WriteCounts => ({ ok: 0, stale: 0, refused: 0, unknown: 0, unknownCommitted: 0 });

const isShard = (kind: HoldKind): boolean => kind.startsWith("shard/");

/** Writes whose outcome came (or, never known, which were issued) in [from, to): a stale write counts where etcd refused it. */
function countWrites(ops: Op[], from: number, to: number, of: (kind: HoldKind) => boolean): WriteCounts {
  const out = zero();
  for (const o of ops) {
    const at = o.settledAt ?? o.t;
    if (!of(o.kind) || at < from || at >= to) continue;
    if (o.outcome === "unknown") {
      out.unknown++;
      if (o.committed) out.unknownCommitted++;
    } else out[o.outcome]++;
  }
  return out;
}

const firstStartAfter = (
  intervals: Interval[],
  t: number,
  notBy: string | undefined,
  kind: HoldKind = "election",
): Interval | undefined => intervals.find((i) => i.kind === kind && i.start >= t && i.w !== notBy);

const checkMs = (history: History, n: number, rule: string): number | undefined => {
  const c = history.events.find((e) => e.e === "check" && e.n === n && e.rule === rule);
  return c && c.e === "check" && c.ok ? c.ms : undefined;
};

/** When the runner first did `act` to worker `w` in [from, until). */
const actAt = (history: History, act: "sigstop" | "sigcont", w: string | undefined, from: number, until: number) =>
  history.events.find((e) => e.e === act && e.w === w && e.t >= from && e.t < until)?.t;

/**
 * When fault `f` hit worker `w`: its own SIGSTOP for a pause (the election's and the sharded worker are
 * each stopped at their own next write, up to a second apart; the fault starts at the first), else the
 * fault's start.
 */
const hitAt = (history: History, f: FaultEvent, w: string | undefined, until: number): number =>
  (f.kind === "pause-worker" ? actAt(history, "sigstop", w, f.t, until) : undefined) ?? f.t;

/** The sharded workload's figures for fault `f` (until `until`, the next fault's start). */
function shardFigures(history: History, verdict: Verdict, f: FaultEvent, until: number): ShardFigures {
  const target = f.shardTarget;
  const shards = verdict.intervals.filter((i) => isShard(i.kind)).sort((a, b) => a.start - b.start);
  const held = target ? shards.filter((i) => i.w === target && i.start <= f.t && i.end >= f.t) : [];
  const next = held.map((i) => firstStartAfter(shards, f.t, target, i.kind));
  const sigcont = actAt(history, "sigcont", target, f.t, until);
  const hit = hitAt(history, f, target, until);
  const taken = next.flatMap((x) => (x ? [x.start - hit] : []));
  const gaps = held.flatMap((i, k) => (next[k] ? [next[k].start - i.end] : []));
  return {
    // Only once every shard it held had a next term: the time the last of them began.
    takenOverMs: held.length && taken.length === held.length ? Math.max(...taken) : undefined,
    noticeAfterResumeMs:
      f.kind === "pause-worker" && sigcont !== undefined && held.length
        ? Math.max(...held.map((i) => i.end)) - sigcont
        : undefined,
    gapBeforeNextMs: f.kind === "cut-worker" && gaps.length ? Math.min(...gaps) : undefined,
    balancedMs: checkMs(history, f.n, "shards-balanced"),
    writes: countWrites(verdict.ops, f.t, until, isShard),
  };
}

export function faultFigures(history: History, verdict: Verdict): FaultFigures[] {
  const spans = faultSpans(history);
  const election = verdict.intervals.filter((i) => i.kind === "election");
  return spans.map(({ fault: f, healedAt: heal }, idx) => {
    const until = spans[idx + 1]?.fault.t ?? history.endedAt;
    const target = f.target;
    const byTarget = election.find((i) => i.w === target && i.start <= f.t && i.end >= f.t);
    const next = firstStartAfter(election, f.t, target);
    const sigcont = actAt(history, "sigcont", target, f.t, until);
    return {
      n: f.n,
      kind: f.kind,
      detail: f.detail,
      target,
      start: f.t,
      heal,
      failoverMs: target && next ? next.start - hitAt(history, f, target, until) : undefined,
      noticeAfterResumeMs:
        f.kind === "pause-worker" && sigcont !== undefined && byTarget ? byTarget.end - sigcont : undefined,
      gapBeforeNextMs: f.kind === "cut-worker" && byTarget && next ? next.start - byTarget.end : undefined,
      recoveryMs: checkMs(history, f.n, "leader-again"),
      writes: {
        election: countWrites(verdict.ops, f.t, until, (k) => k === "election"),
        mutex: countWrites(verdict.ops, f.t, until, (k) => k === "mutex"),
      },
      etcdRevokes: verdict.etcdRevokes.filter((r) => r.resumeAt >= f.t && r.resumeAt < until).length,
      etcdBugs: verdict.etcdBugs.filter((b) => b.resumeAt >= f.t && b.resumeAt < until).length,
      shards: history.shardedWorkers ? shardFigures(history, verdict, f, until) : undefined,
    };
  });
}

/** Two counts of writes added up. */
export function addWrites(a: WriteCounts, b: WriteCounts): WriteCounts {
  return {
    ok: a.ok + b.ok,
    stale: a.stale + b.stale,
    refused: a.refused + b.refused,
    unknown: a.unknown + b.unknown,
    unknownCommitted: a.unknownCommitted + b.unknownCommitted,
  };
}

export function kindFigures(perFault: FaultFigures[]): KindFigures[] {
  return FAULT_KINDS.map((kind) => {
    const list = perFault.filter((f) => f.kind === kind);
    const writes = list.reduce((sum, f) => addWrites(addWrites(sum, f.writes.election), f.writes.mutex), zero());
    const values = (pick: (f: FaultFigures) => number | undefined): number[] =>
      list.map(pick).filter((x): x is number => x !== undefined);
    return {
      kind,
      count: list.length,
      failoverMs: values((f) => f.failoverMs),
      noticeAfterResumeMs: values((f) => f.noticeAfterResumeMs),
      gapBeforeNextMs: values((f) => f.gapBeforeNextMs),
      recoveryMs: values((f) => f.recoveryMs),
      writes,
      etcdRevokes: list.reduce((s, f) => s + f.etcdRevokes, 0),
      etcdBugs: list.reduce((s, f) => s + f.etcdBugs, 0),
      shards: {
        takenOverMs: values((f) => f.shards?.takenOverMs),
        noticeAfterResumeMs: values((f) => f.shards?.noticeAfterResumeMs),
        gapBeforeNextMs: values((f) => f.shards?.gapBeforeNextMs),
        balancedMs: values((f) => f.shards?.balancedMs),
        writes: list.reduce((sum, f) => (f.shards ? addWrites(sum, f.shards.writes) : sum), zero()),
      },
    };
  });
}

/** "median (min–max)" of a list of ms, or "–". */
export function spread(values: number[]): string {
  if (values.length === 0) return "–";
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
  const fmt = (ms: number): string => (Math.abs(ms) >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`);
  return sorted.length === 1 ? fmt(median) : `${fmt(median)} (${fmt(sorted[0]!)}–${fmt(sorted.at(-1)!)})`;
}

/** How the workers' waiters decided their turns, all processes together (each process's last report). */
export interface DecisionTotals {
  /** Turns decided by a serializable read on the event's member / a linearizable read (the read that ended the wait). */
  atEvent: number;
  linearizable: number;
  /** Reads after a wait that still found blockers; those without the waiter's key. */
  stillBlocked: number;
  vanished: number;
  fellBack: Record<string, number>;
}

export function decisionTotals(history: History): DecisionTotals {
  const totals: DecisionTotals = { atEvent: 0, linearizable: 0, stillBlocked: 0, vanished: 0, fellBack: {} };
  const last = new Map<string, Extract<HistoryEvent, { e: "decisions" }>>();
  const fold = (w: string): void => {
    const d = last.get(w);
    if (!d) return;
    totals.atEvent += d.atEvent;
    totals.linearizable += d.linearizable;
    totals.stillBlocked += d.stillBlocked ?? 0;
    totals.vanished += d.vanished ?? 0;
    for (const [reason, n] of Object.entries(d.fellBack)) totals.fellBack[reason] = (totals.fellBack[reason] ?? 0) + n;
    last.delete(w);
  };
  for (const e of [...history.events].sort((a, b) => a.t - b.t)) {
    if (e.e === "spawn")
      fold(e.w); // a new process under that id: the counts start again
    else if (e.e === "decisions") last.set(e.w, e);
  }
  for (const w of [...last.keys()]) fold(w);
  return totals;
}

export function decisionLine(d: DecisionTotals): string {
  const reasons = Object.entries(d.fellBack)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason} ${n}`);
  return `waiters decided ${d.atEvent} turns by a serializable read on the event's member, ${d.linearizable} linearizably; ${d.stillBlocked} reads after a wait found blockers still there, ${d.vanished} found the waiter's key gone (serializable reads not used: ${reasons.length ? reasons.join(", ") : "none"})`;
}
