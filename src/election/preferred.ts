import { linkedController, raceAbort } from "../common/abort.js";
import type { Clock, Timer } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import { KeyWatch } from "../etcd/key-watch.js";
import { range, txn } from "../etcd/kv.js";
import { readQueue } from "../queue/queue.js";
import type { SessionContext } from "../session/context.js";
import type { Term } from "../term.js";

/**
 * Preferred leaders (design: Hand-overs). Each elector with a `priority` publishes it in
 * `<name>.priority.<lease hex>`, on its session's lease: beside the queue, not in it (not under `<name>/`,
 * and its last segment is no lease id, so neither etcdctl nor any version of this library takes it for a
 * candidate), gone with the candidate. A candidate without one counts as priority 0. The leader watches
 * the waiting candidates and hands over to the best one with a higher priority than its own.
 */
export const priorityPrefix = (name: string): string => `${name}.priority.`;

/** A waiting candidate, as the leader sees it. */
export interface PriorityCandidate {
  key: string;
  createRevision: bigint;
  priority: number;
}

/**
 * The candidate to hand over to: the highest priority above ours; among equals the oldest in line (so
 * equal priorities keep today's order). Undefined: keep the lead.
 */
export function choosePreferred(ours: number, waiting: readonly PriorityCandidate[]): PriorityCandidate | undefined {
  let best: PriorityCandidate | undefined;
  for (const c of waiting) {
    if (c.priority <= ours) continue;
    if (!best || c.priority > best.priority || (c.priority === best.priority && c.createRevision < best.createRevision))
      best = c;
  }
  return best;
}

export interface PreemptionRules {
  /** This leader's priority. */
  priority: number;
  /** How long a better candidate must have waited (continuously: the same key) before it is handed the lead. */
  preemptAfterMs: number;
  /**
   * How long a term is never preempted, from its start and from a failed hand-over: against flapping. A
   * candidate that keeps coming and going can move the lead at most once per hold-down.
   */
  holdDownMs: number;
}

/**
 * When to hand over, on an injected clock: fed the waiting candidates as they change, it calls `fire`
 * with the chosen candidate's key once it has waited `preemptAfterMs` (a candidate that left and came
 * back starts again: a new create revision) and the term is past its hold-down. Pure of etcd.
 */
export class PreemptionPlanner {
  readonly #clock: Clock;
  readonly #rules: PreemptionRules;
  readonly #fire: (key: string, createRevision: bigint) => void;
  /** Targets whose hand-over failed, by key and create revision: never picked again (a new join is new). */
  readonly #gaveUp = new Set<string>();
  /** First seen (clock ms) of each waiting candidate, by key and create revision. */
  #since = new Map<string, number>();
  #notBefore: number;
  #timer: Timer | undefined;
  #waiting: readonly PriorityCandidate[] = [];
  #closed = false;

  constructor(clock: Clock, rules: PreemptionRules, fire: (key: string, createRevision: bigint) => void) {
    this.#clock = clock;
    this.#rules = rules;
    this.#fire = fire;
    this.#notBefore = clock.now() + rules.holdDownMs;
  }

  /** The waiting candidates now (the leader excluded). */
  update(waiting: readonly PriorityCandidate[]): void {
    if (this.#closed) return;
    const now = this.#clock.now();
    const since = new Map<string, number>();
    for (const c of waiting) {
      const id = `${c.key}@${c.createRevision}`;
      since.set(id, this.#since.get(id) ?? now);
    }
    this.#since = since;
    this.#waiting = waiting;
    this.#plan();
  }

  /**
   * A hand-over failed (the term still holds): not again before another hold-down, and never again to
   * `target` (the one that failed, if it was ours: stuck behind a candidate that cannot step aside, it
   * would fail every time).
   */
  failed(target?: { key: string; createRevision: bigint }): void {
    if (target) this.#gaveUp.add(`${target.key}@${target.createRevision}`);
    this.#notBefore = this.#clock.now() + this.#rules.holdDownMs;
    this.#plan();
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
  }

  #plan(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    if (this.#closed) return;
    const best = choosePreferred(
      this.#rules.priority,
      this.#waiting.filter((c) => !this.#gaveUp.has(`${c.key}@${c.createRevision}`)),
    );
    if (!best) return;
    const since = this.#since.get(`${best.key}@${best.createRevision}`) ?? this.#clock.now();
    const at = Math.max(this.#notBefore, since + this.#rules.preemptAfterMs);
    this.#timer = this.#clock.timerIn(Math.max(0, at - this.#clock.now()), () => {
      this.#timer = undefined;
      if (!this.#closed) this.#fire(best.key, best.createRevision);
    });
  }
}

/**
 * Publishes our priority for `name` on the session's lease (a plain put: the same again changes nothing);
 * resolves with the key's create revision, which {@link withdrawPriority} is guarded by.
 */
export async function publishPriority(ctx: SessionContext, name: string, priority: number): Promise<bigint> {
  const key = ctx.keyspace.full(`${priorityPrefix(name)}${ctx.leaseHex}`);
  const res = await txn(
    ctx,
    {
      compare: [],
      success: [
        { request_put: { key, value: Buffer.from(String(priority)), lease: ctx.lease.leaseId } },
        { request_range: { key, keys_only: true } },
      ],
      failure: [],
    },
    `publish the priority of this candidate of "${name}"`,
  );
  const kv = res.responses[1]?.response_range.kvs[0];
  return kv ? BigInt(kv.create_revision) : BigInt(res.header.revision);
}

/**
 * Removes our priority key of `name` if it is still the one we made (its create revision): when an elector
 * on the user's session stops, the session lives on and so would the key. Logged, not thrown.
 */
export async function withdrawPriority(ctx: SessionContext, name: string, createRevision: bigint): Promise<void> {
  const key = ctx.keyspace.full(`${priorityPrefix(name)}${ctx.leaseHex}`);
  try {
    await txn(
      ctx,
      {
        compare: [{ key, result: "Equal", target: "Create", create_revision: createRevision.toString() }],
        success: [{ request_delete_range: { key } }],
        failure: [],
      },
      `remove the priority of this candidate of "${name}"`,
    );
  } catch (err) {
    ctx.logger.warn({ err, name }, "removing our priority key failed; it goes with the session's lease");
  }
}

/**
 * The candidates waiting behind the leader of `name` that could be preferred to it, with their
 * priorities, yielded when changed. Cheap while the feature is unused: only the priority prefix is watched
 * (and read once in place, on each change and every TTL/2); the queue is watched and read (on each of its
 * changes) only while some priority above `ours` exists. Otherwise nobody is better: `[]`. Ends (throwing)
 * when `signal` aborts.
 */
export async function* waitingCandidates(
  ctx: SessionContext,
  name: string,
  ours: number,
  signal: AbortSignal,
): AsyncGenerator<PriorityCandidate[], void, undefined> {
  const { controller, dispose } = linkedController(signal, ctx.closed);
  let started = 0;
  let dirty = false;
  let denied = false;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  const handlers = {
    event: poke,
    resync: poke,
    started: () => {
      started++;
      poke();
    },
    // A role limited to `<name>/`: the watch stream said so at error; this term looks no further (it would
    // be denied forever), and says what it means at info.
    denied: (err: unknown) => {
      if (!denied)
        ctx.logger.info({ err, name }, "no permission to watch the candidates: this leader cannot prefer any");
      denied = true;
      wake?.();
    },
  };
  const priorities = new KeyWatch(ctx, { prefix: priorityPrefix(name) }, { resyncMs: ctx.resyncMs() }, handlers);
  let queue: KeyWatch | undefined;
  let last = "";
  try {
    for (;;) {
      // The watches in place before a read: nothing after it goes untold.
      while (!denied && (started < (queue ? 2 : 1) || !dirty))
        await raceAbort(new Promise<void>((r) => (wake = r)), controller.signal);
      if (denied) return;
      dirty = false;
      let waiting: PriorityCandidate[];
      try {
        const byLease = await raceAbort(readPriorities(ctx, name), controller.signal);
        if (![...byLease.values()].some((p) => p > ours)) {
          if (queue) {
            queue.close();
            queue = undefined;
            started = 1;
          }
          waiting = [];
        } else if (!queue) {
          // A better candidate may wait: watch the queue too, and read once that watch is in place.
          queue = new KeyWatch(ctx, { prefix: `${name}/` }, { resyncMs: ctx.resyncMs() }, handlers);
          continue;
        } else {
          waiting = await raceAbort(readWaiting(ctx, name, byLease), controller.signal);
        }
      } catch (err) {
        controller.signal.throwIfAborted();
        ctx.logger.warn({ err, name }, "reading the waiting candidates failed; reading again at the next change");
        continue;
      }
      const seen = waiting.map((c) => `${c.key}@${c.createRevision}:${c.priority}`).join(",") || "-";
      if (seen === last) continue;
      last = seen;
      yield waiting;
    }
  } finally {
    priorities.close();
    queue?.close();
    dispose();
  }
}

/** The published priorities of `name`, by lease hex. */
async function readPriorities(ctx: SessionContext, name: string): Promise<Map<string, number>> {
  const prefix = priorityPrefix(name);
  const prios = await range(
    ctx,
    { key: ctx.keyspace.full(prefix), range_end: ctx.keyspace.rangeEnd(prefix) },
    `read the priorities of "${name}"`,
  );
  const byLease = new Map<string, number>();
  for (const kv of prios.kvs) {
    const n = Number(kv.value.toString());
    if (Number.isFinite(n)) byLease.set(ctx.keyspace.relative(kv.key).slice(prefix.length), n);
  }
  return byLease;
}

async function readWaiting(
  ctx: SessionContext,
  name: string,
  byLease: Map<string, number>,
): Promise<PriorityCandidate[]> {
  const { entries } = await readQueue(ctx, name, { limit: 0, values: false });
  return entries.slice(1).map((e) => ({
    key: e.key,
    createRevision: e.createRevision,
    priority: byLease.get(e.key.slice(name.length + 1)) ?? 0,
  }));
}

/**
 * While `term` leads: watches the waiting candidates and hands the lead to a preferred one by the
 * planner's rules. A failed hand-over leaves the term held (the planner waits a hold-down before the next
 * try). Resolves when `signal` aborts (the term ended, or the elector stops).
 */
export async function preferLeaders(o: {
  /** The waiting candidates as they change (ElectorSession.waitingCandidates); undefined: priorities unused. */
  candidates: AsyncIterable<PriorityCandidate[]> | undefined;
  term: Term;
  signal: AbortSignal;
  clock: Clock;
  logger: Logger;
  rules: PreemptionRules;
  timeoutMs: number;
  /** A hand-over this started failed, the term still held (the elector logs it and emits `failure`). */
  failed: (err: unknown) => void;
}): Promise<void> {
  const stream = o.candidates;
  if (!stream) return;
  // One hand-over at a time: while one is pending (ours, or the user's through term.handOver or
  // elector.handOver) the planner's firing is ignored; queue changes meanwhile must not start a second.
  let busy = false;
  const planner = new PreemptionPlanner(o.clock, o.rules, (key, createRevision) => {
    if (busy || o.term.handingOver) {
      if (!busy) planner.failed(); // the user's hand-over: look again a hold-down later
      return;
    }
    busy = true;
    o.logger.info({ to: key, priority: o.rules.priority }, "a candidate with a higher priority waits: handing over");
    o.term.handOverTo({ toKey: key, timeoutMs: o.timeoutMs }).then(
      () => {
        busy = false;
      },
      (err: unknown) => {
        busy = false;
        if (o.term.signal.aborted) {
          o.logger.debug({ err }, "the preferred hand-over ended with the term");
          return; // the term ended anyway: nothing to keep
        }
        o.failed(err);
        planner.failed({ key, createRevision });
      },
    );
  });
  try {
    for await (const waiting of stream) planner.update(waiting);
  } catch (err) {
    if (!o.signal.aborted)
      o.logger.warn({ err }, "watching the waiting candidates failed; not preferring any this term");
  } finally {
    planner.close();
  }
}
