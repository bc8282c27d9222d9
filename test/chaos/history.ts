/**
 * What a chaos run records: every worker's reports, every signal and fault the runner applied, the
 * runner's own recovery checks, and at the end what etcd holds. One clock for all of it (see mono()).
 */

export { mono } from "../support/mono.js";

/**
 * What is held: a term of the LeaderElector's election, the Mutex, or a term of one shard of the
 * ShardedElector (`shard/<n>`). Each has its own counter and log, and the checker's rules hold per kind.
 */
export type ShardKind = `shard/${number}`;
export type HoldKind = "election" | "mutex" | ShardKind;
export const HOLD_KINDS: readonly HoldKind[] = ["election", "mutex"];
/** Shards of the sharded workload: each sharded worker runs a ShardedElector of this many. */
export const SHARDS = 16;
export const shardKind = (shard: number): ShardKind => `shard/${shard}`;
export const SHARD_KINDS: readonly ShardKind[] = Array.from({ length: SHARDS }, (_, s) => shardKind(s));
/** Every kind a run writes: the election's, the mutex's and each shard's. */
export const ALL_KINDS: readonly HoldKind[] = [...HOLD_KINDS, ...SHARD_KINDS];
/** The kinds of a history (older ones have no shards). */
export const kindsOf = (history: Pick<History, "data">): HoldKind[] => Object.keys(history.data) as HoldKind[];
/** Whose session a lease is: the LeaderElector's, the mutex loop's, or the ShardedElector's. */
export type SessionKind = "election" | "mutex" | "sharded";
/**
 * What a worker process runs: the LeaderElector and the Mutex loop ("election"), or only a ShardedElector
 * ("sharded"), so that neither workload's terms delay the other's on a resume.
 */
export type WorkerRole = "election" | "sharded";

/** The nemeses (docs/guarantees.md). */
export const FAULT_KINDS = [
  "pause-worker",
  "kill-worker",
  "term-worker",
  "cut-worker",
  "pause-raft-leader",
  "restart-member",
  "isolate-member",
  "partition",
  "compaction",
  "outage",
  "handover",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** What a worker reports (test/chaos/worker.ts), one JSON line each; `t` is mono() in the worker. */
export type WorkerReport =
  | { e: "ready" }
  /** A session of ours was made, or (`lost`) was lost: the elector's (seen through its logger) or the mutex loop's. */
  | { e: "session"; kind: SessionKind; lease: string; lost?: boolean }
  /** Believed hold begins: onStartedLeading was called, or lock() resolved. */
  | { e: "start"; kind: HoldKind; token: string; key: string }
  /** Believed hold ends: its signal aborted. `cause` is the reason's cause (a lost session's message). */
  | { e: "end"; kind: HoldKind; token: string; code: string; message: string; cause?: string }
  /** About to commit `counter = value` and `log/<value>` under `token`. */
  | { e: "op"; kind: HoldKind; op: string; token: string; value: number }
  | { e: "ok"; kind: HoldKind; op: string }
  /** Definitely not applied: refused by etcd's guard (`stale`), or refused locally before sending. */
  | { e: "rejected"; kind: HoldKind; op: string; stale: boolean; code: string }
  /** The worker cannot know whether it was applied (timeout, unreachable etcd): the log decides. */
  | { e: "unknown"; kind: HoldKind; op: string; code: string; message: string }
  /** The elector's onNewLeader. */
  | { e: "observed"; key: string | null; token: string | null }
  /** Sampled every 250 ms: elector.isLeader(), elector.healthy() (and the sharded elector's healthy()). */
  | { e: "status"; leader: boolean; healthy: boolean }
  /** A warning or error the library logged, with its error's code and message. */
  | { e: "log"; level: string; msg: string; code?: string; err?: string }
  /**
   * How this process's waiters decided their turn so far (cumulative, src/queue/decide.ts): by a
   * serializable read on the event's member, or linearizably; and the serializable reads not used, by reason. Sent after each
   * hold starts and before "stopped".
   */
  | {
      e: "decisions";
      atEvent: number;
      linearizable: number;
      stillBlocked?: number;
      vanished?: number;
      fellBack: Record<string, number>;
    }
  /** run() resolved and everything is closed after SIGTERM; the process should now exit by itself. */
  | { e: "stopped" };

/** What the runner did to a worker process. */
export type ProcessAct = "spawn" | "sigstop" | "sigcont" | "sigkill" | "sigterm" | "exit";

export type HistoryEvent = { t: number } & (
  | ({ w: string } & WorkerReport)
  | { e: ProcessAct; w: string; code?: number | null; signal?: string | null; stderr?: string }
  /**
   * A fault: "start" when it is applied, "heal" when undone; `n` numbers faults in the run; `target` is
   * the election worker it hit, if it hit one, and `shardTarget` the sharded worker hit beside it.
   */
  | {
      e: "fault";
      n: number;
      kind: FaultKind;
      phase: "start" | "heal";
      detail: string;
      target?: string;
      shardTarget?: string;
    }
  /** The raft leader member was resumed (the window where etcd #15247 may strike). */
  | { e: "raft-resume"; member: string }
  /** A recovery check the runner made after a heal, with how long it took (or its bound, if it failed). */
  | { e: "check"; n: number; rule: RecoveryRule; ok: boolean; ms: number; detail: string }
);

export type RecoveryRule =
  | "leader-again"
  | "mutex-again"
  | "dead-keys-gone"
  | "observers-agree"
  /** Every shard held by a live worker that believes it holds it, floor/ceil balanced over the live workers. */
  | "shards-balanced"
  /** While a worker fault is on (or after a SIGKILL or SIGTERM): another worker leads, others hold its shards. */
  | "taken-over"
  | "members-serving"
  | "worker-exits"
  | "nothing-left"
  /** The nemesis itself could not do its work (no leader to target, etcd's leader not found). */
  | "nemesis";

/** One log entry as stored: `log/<seq>` = JSON of the entry. */
export interface LogEntry {
  token: string;
  worker: string;
  op: string;
  value: number;
}

/** A counter and its log as etcd holds them at the end: values, and etcd's own versions and revisions. */
export interface RegisterData {
  counter: { value: number; version: number; modRevision: number } | null;
  log: { seq: number; version: number; modRevision: number; entry: LogEntry }[];
}

export interface History {
  seed: number;
  /** The command that replays this run's schedule. */
  replay: string;
  /** Where the workers wrote the counters and logs (absent in older histories: etcd). */
  store?: "etcd" | "postgres";
  etcdVersion: string;
  /** The image (or binary) etcd ran from. */
  image: string;
  /** Election worker processes at a time. */
  workers: number;
  /** Sharded worker processes at a time (runs with the sharded workload; older ones ran it inside `workers`). */
  shardedWorkers?: number;
  ttlMs: number;
  electionTimeoutMs: number;
  /** The bound of "a leader exists again": TTL + election timeout + 0.5 s + the elector's backoff cap. */
  recoveryBoundMs: number;
  startedAt: number;
  endedAt: number;
  events: HistoryEvent[];
  /** Per kind: the election's and the mutex's always; each shard's in runs with the sharded workload. */
  data: Partial<Record<HoldKind, RegisterData>> & Record<"election" | "mutex", RegisterData>;
}

/** Log keys sort by seq as strings too. */
export const logKey = (prefix: string, seq: number): string => `${prefix}log/${String(seq).padStart(9, "0")}`;

export type FaultEvent = Extract<HistoryEvent, { e: "fault" }>;

/** Every fault's start, in order, with when it healed (undefined: still on when the run ended). */
export function faultSpans(history: Pick<History, "events">): { fault: FaultEvent; healedAt: number | undefined }[] {
  const heals = new Map<number, number>();
  for (const e of history.events) if (e.e === "fault" && e.phase === "heal") heals.set(e.n, e.t);
  return history.events
    .filter((e): e is FaultEvent => e.e === "fault" && e.phase === "start")
    .map((fault) => ({ fault, healedAt: heals.get(fault.n) }));
}
