/**
 * The nemeses: each applies one fault, records when it started and when it healed, and returns healed
 * (healing in `finally`, so that a nemesis that fails midway leaves no fault behind for the next ones).
 * Where a fault must last "until someone else has taken over", it waits for that condition (bounded);
 * where its length is the scenario itself (an outage longer than the TTL), it sleeps that long.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { EtcdEnv, EtcdMember } from "../support/api.js";
import { waitFor } from "../support/wait.js";
import type { ChaosWorker, Fleet } from "./fleet.js";
import { mono, type FaultKind, type HistoryEvent, type HoldKind, type RecoveryRule } from "./history.js";
import type { FaultPlan } from "./schedule.js";

export interface NemesisContext {
  env: EtcdEnv;
  fleet: Fleet;
  record: (e: HistoryEvent) => void;
  ttlMs: number;
  electionTimeoutMs: number;
  /** TTL + election timeout + 0.5 s + the elector's backoff cap. */
  recoveryBoundMs: number;
  /** Called when a liveness bound was missed while the fault was on (recorded, the run goes on). */
  missed: (n: number, rule: RecoveryRule, what: string) => void;
}

type Nemesis = (ctx: NemesisContext, plan: FaultPlan, n: number) => Promise<void>;

const start = (
  ctx: NemesisContext,
  n: number,
  kind: FaultKind,
  detail: string,
  target?: ChaosWorker,
  shardTarget?: ChaosWorker,
  at = mono(),
): void =>
  ctx.record({
    t: at,
    e: "fault",
    n,
    kind,
    phase: "start",
    detail,
    target: target?.id,
    shardTarget: shardTarget?.id,
  });
const heal = (ctx: NemesisContext, n: number, kind: FaultKind, detail = ""): void =>
  ctx.record({ t: mono(), e: "fault", n, kind, phase: "heal", detail });

/** The worker leading the election (waits for one, bounded). */
async function leaderWorker(ctx: NemesisContext): Promise<ChaosWorker> {
  return waitFor(() => ctx.fleet.holder("election"), {
    timeoutMs: ctx.recoveryBoundMs,
    description: "a leader worker to target",
  });
}

const isShard = (kind: HoldKind): boolean => kind.startsWith("shard/");

/**
 * The workers a worker fault hits: the election's leader and, with the sharded workload, one sharded
 * worker beside it (drawn), hit the same way at the same time; and the shards that one holds now.
 */
async function targets(
  ctx: NemesisContext,
  plan: FaultPlan,
): Promise<[ChaosWorker, ChaosWorker | undefined, HoldKind[]]> {
  const leader = await leaderWorker(ctx);
  const sharded = ctx.fleet.live("sharded").filter((w) => !w.paused);
  const s = sharded[Math.floor((plan.draws[7] ?? 0) * sharded.length)];
  return [leader, s, s ? [...s.holds.keys()].filter(isShard) : []];
}

const named = (w: ChaosWorker, s: ChaosWorker | undefined): string => (s ? `${w.id} and ${s.id}` : w.id);

/**
 * Waits until each of `kinds` (what `w` held when the fault began: the election, or its shards) is held by
 * another live, running worker, within the recovery bound plus a TTL (w's lease must run out first); a
 * miss is recorded as a failed "taken-over" check. Nothing to wait for without `w`.
 */
async function othersTakeOver(
  ctx: NemesisContext,
  n: number,
  w: ChaosWorker | undefined,
  kinds: readonly HoldKind[],
): Promise<void> {
  if (!w) return;
  const elsewhere = (kind: HoldKind): boolean =>
    ctx.fleet.live().some((o) => o !== w && !o.paused && o.holds.has(kind));
  const boundMs = ctx.recoveryBoundMs + ctx.ttlMs;
  try {
    await waitFor(() => kinds.every(elsewhere), {
      timeoutMs: boundMs,
      description: `others holding what ${w.id} held while it is out`,
    });
  } catch {
    const missing = kinds.filter((k) => !elsewhere(k)).join(", ");
    ctx.missed(n, "taken-over", `${missing} of ${w.id} not taken over within ${boundMs} ms`);
  }
}

/**
 * Ends the workers a fault hits (the leader and the sharded one) with `end`, while checking from that
 * moment that the others take over; then starts a replacement for each, and heals once they run.
 */
async function endAndReplace(
  ctx: NemesisContext,
  n: number,
  kind: FaultKind,
  [w, s, held]: [ChaosWorker, ChaosWorker | undefined, HoldKind[]],
  end: (x: ChaosWorker) => Promise<void>,
): Promise<void> {
  start(ctx, n, kind, named(w, s), w, s);
  let replaced = "no replacement";
  try {
    await Promise.all([end(w), s && end(s), othersTakeOver(ctx, n, w, ["election"]), othersTakeOver(ctx, n, s, held)]);
    const [r, rs] = await Promise.all([ctx.fleet.replace("election"), s && ctx.fleet.replace("sharded")]);
    replaced = `replaced by ${named(r, rs || undefined)}`;
  } finally {
    heal(ctx, n, kind, `${named(w, s)} ${replaced}`);
  }
}

async function memberOf(ctx: NemesisContext, plan: FaultPlan): Promise<EtcdMember> {
  return plan.member < 0 ? ctx.env.leader() : ctx.env.members[plan.member]!;
}

const NEMESES: Record<FaultKind, Nemesis> = {
  handover: (ctx, plan, n) => handOverNemesis(ctx, plan, n),

  /**
   * SIGSTOP the leader past its TTL, until someone else leads and a little longer. It is stopped the
   * moment it reports a write it is about to commit, as a GC pause would catch it: if the write had not
   * left yet, it leaves after the resume, late, and etcd must refuse it (fencing). With the sharded
   * workload a sharded worker is stopped the same way, until its shards are held by others.
   */
  "pause-worker": async (ctx, plan, n) => {
    const [w, s, held] = await targets(ctx, plan);
    const [pw, ps] = await Promise.all([
      ctx.fleet.pauseAtNextWrite(w, (kind) => kind === "election", 1000),
      s && ctx.fleet.pauseAtNextWrite(s, isShard, 1000),
    ]);
    const stopped = (x: ChaosWorker, op: string | undefined): string =>
      `${x.id}, stopped ${op ? `as it committed ${op}` : "(no write seen)"}`;
    const detail = [stopped(w, pw.op), s && ps && stopped(s, ps.op)].filter(Boolean).join("; ");
    // The fault began at the first SIGSTOP (each process is stopped at its own next write).
    start(ctx, n, "pause-worker", detail, w, s, Math.min(pw.at, ps ? ps.at : Infinity));
    try {
      await Promise.all([othersTakeOver(ctx, n, w, ["election"]), othersTakeOver(ctx, n, s, held)]);
      await sleep(plan.extraMs / 2); // how long past the take-over it stays paused: part of the scenario
    } finally {
      ctx.fleet.resume(w);
      if (s) ctx.fleet.resume(s);
      heal(ctx, n, "pause-worker", named(w, s));
    }
  },

  /** SIGKILL the leader (and a sharded worker); a replacement starts for each. */
  "kill-worker": async (ctx, plan, n) =>
    endAndReplace(ctx, n, "kill-worker", await targets(ctx, plan), (x) => ctx.fleet.kill(x)),

  /** SIGTERM the leader (and a sharded worker): each hands over and exits by itself; a replacement starts for each. */
  "term-worker": async (ctx, plan, n) =>
    endAndReplace(ctx, n, "term-worker", await targets(ctx, plan), (x) => ctx.fleet.stop(x, n)),

  /**
   * Cut the leader (and a sharded worker) off from every member until someone else leads (and others
   * hold its shards), then a little longer. Its proxies drop every byte: its writes hang rather than fail,
   * so its terms end by the session's own deadline (a write that fails at once would make it step down
   * by itself).
   */
  "cut-worker": async (ctx, plan, n) => {
    const [w, s, held] = await targets(ctx, plan);
    start(ctx, n, "cut-worker", named(w, s), w, s);
    ctx.fleet.cut(w, undefined, "blackhole");
    if (s) ctx.fleet.cut(s, undefined, "blackhole");
    try {
      await Promise.all([othersTakeOver(ctx, n, w, ["election"]), othersTakeOver(ctx, n, s, held)]);
      await sleep(plan.extraMs / 2); // part of the scenario: how long past the take-over it stays cut off
    } finally {
      ctx.fleet.open(w);
      if (s) ctx.fleet.open(s);
      heal(ctx, n, "cut-worker", named(w, s));
    }
  },

  /** Pause the raft leader past a lease's TTL, then resume it: etcd #15247's trigger. */
  "pause-raft-leader": async (ctx, plan, n) => {
    const m = await ctx.env.leader();
    start(ctx, n, "pause-raft-leader", m.name);
    await m.pause();
    try {
      await sleep(ctx.ttlMs + ctx.electionTimeoutMs + plan.extraMs); // the pause's length is the scenario
    } finally {
      await m.unpause();
      ctx.record({ t: mono(), e: "raft-resume", member: m.name });
      heal(ctx, n, "pause-raft-leader", m.name);
    }
  },

  /** SIGKILL a member, keep it down a while, start it again with its data. */
  "restart-member": async (ctx, plan, n) => {
    const m = await memberOf(ctx, plan);
    start(ctx, n, "restart-member", m.name);
    await m.kill();
    try {
      await sleep(500 + plan.extraMs); // downtime: the scenario
    } finally {
      await m.restart();
      heal(ctx, n, "restart-member", m.name);
    }
  },

  /** Cut a member off from its peers; clients still reach it. */
  "isolate-member": async (ctx, plan, n) => {
    const m = await memberOf(ctx, plan);
    start(ctx, n, "isolate-member", m.name);
    await m.isolate();
    try {
      await sleep(ctx.ttlMs + plan.extraMs); // the partition's length: the scenario
    } finally {
      await m.heal();
      heal(ctx, n, "isolate-member", m.name);
    }
  },

  /**
   * A minority member with some workers (the leader half the time) on one side, the majority with the
   * rest on the other: each worker reaches only its side's members.
   */
  partition: async (ctx, plan, n) => {
    const m = await memberOf(ctx, plan);
    const minority = ctx.env.members.indexOf(m);
    const majority = ctx.env.members.map((_, i) => i).filter((i) => i !== minority);
    const leader = ctx.fleet.holder("election");
    const live = ctx.fleet.live();
    const small = live.filter((w, i) =>
      w === leader ? (plan.draws[0] ?? 0) < 0.5 : (plan.draws[(i + 1) % plan.draws.length] ?? 0) < 0.34,
    );
    start(ctx, n, "partition", `${m.name} with [${small.map((w) => w.id).join(" ")}], the rest apart`);
    try {
      for (const w of live) ctx.fleet.cut(w, small.includes(w) ? majority : [minority]);
      await m.isolate();
      await sleep(ctx.ttlMs + ctx.electionTimeoutMs + plan.extraMs); // the scenario: the minority's leases run out
    } finally {
      await m.heal();
      for (const w of live) ctx.fleet.open(w);
      heal(ctx, n, "partition", m.name);
    }
  },

  /**
   * Compact (physically, at the current revision) every 250 ms for 2 s while everyone observes and
   * writes; a follower is cut off for 0.8 s meanwhile, so its watches come back to a compacted history.
   */
  compaction: async (ctx, plan, n) => {
    const followers = ctx.fleet.live("election").filter((w) => !w.holds.has("election"));
    const cut = followers[Math.floor((plan.draws[0] ?? 0) * followers.length)];
    start(ctx, n, "compaction", cut ? `follower ${cut.id} cut off 0.8 s meanwhile` : "");
    const until = mono() + 2000;
    const reopenAt = mono() + 800;
    if (cut) ctx.fleet.cut(cut);
    try {
      while (mono() < until) {
        await ctx.env.compact();
        if (cut && mono() >= reopenAt) ctx.fleet.open(cut);
        await sleep(250); // the compaction rate: the scenario
      }
    } finally {
      if (cut) ctx.fleet.open(cut);
      heal(ctx, n, "compaction");
    }
  },

  /** Every member down for longer than the TTL, then all back with their data. */
  outage: async (ctx, plan, n) => {
    start(ctx, n, "outage", "all members");
    try {
      await Promise.all(ctx.env.members.map((m) => m.kill()));
      await sleep(ctx.ttlMs + 1000 + plan.extraMs); // the outage's length: the scenario
    } finally {
      await Promise.all(ctx.env.members.map((m) => m.restart()));
      heal(ctx, n, "outage");
    }
  },
};

/**
 * Asks the leading worker to hand the lead to a random other worker (elector.handOver) while another fault
 * heals: a random third worker is cut off from etcd as it starts and let back in 0.5 s later, so the
 * hand-over runs through a reconnect (a cut candidate ahead of the target steps aside late, or the
 * hand-over fails with the term held). Either way the checker's rules are the same: one holder at a time,
 * tokens increasing, no lost or phantom write.
 */
async function handOverNemesis(ctx: NemesisContext, plan: FaultPlan, n: number): Promise<void> {
  const w = await leaderWorker(ctx);
  const others = ctx.fleet.live("election").filter((o) => o !== w && !o.paused);
  const target = others[Math.floor((plan.draws[0] ?? 0) * others.length)];
  const bystanders = others.filter((o) => o !== target);
  const cut = plan.draws[1]! < 0.5 ? bystanders[Math.floor((plan.draws[2] ?? 0) * bystanders.length)] : undefined;
  start(
    ctx,
    n,
    "handover",
    `${w.id} to ${target?.id ?? "nobody"}${cut ? `, ${cut.id} cut off 0.5 s meanwhile` : ""}`,
    w,
  );
  let outcome = "no target";
  if (cut) ctx.fleet.cut(cut);
  const reopen = setTimeout(() => cut && ctx.fleet.open(cut), 500);
  try {
    if (target) outcome = await ctx.fleet.handOver(w, target.id, ctx.recoveryBoundMs);
    if (outcome === "ok") await othersTakeOver(ctx, n, w, ["election"]);
  } finally {
    clearTimeout(reopen);
    if (cut) ctx.fleet.open(cut);
    heal(ctx, n, "handover", outcome);
  }
  // Done, or failed clean with the term held (a cut candidate ahead did not step aside in time): anything
  // else (no answer, NOT_LEADER from a leader nobody cut, an etcd error) is reported as the nemesis failing.
  if (!EXPECTED_HANDOVER.has(outcome)) throw new Error(`the hand-over of ${w.id} ended unexpectedly: ${outcome}`);
}

const EXPECTED_HANDOVER = new Set(["ok", "HANDOVER_FAILED", "no target"]);

export function applyFault(ctx: NemesisContext, plan: FaultPlan, n: number): Promise<void> {
  return NEMESES[plan.kind](ctx, plan, n);
}
