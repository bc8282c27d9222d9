import { randomUUID } from "node:crypto";
import { linkedController, raceAbort } from "../common/abort.js";
import { now, timerIn, type Timer } from "../common/clock.js";
import { HandoverFailedError, NotLeaderError, isElectionError, type ElectionError } from "../errors.js";
import { KeyWatch } from "../etcd/key-watch.js";
import type { WatchStream } from "../etcd/watch-stream.js";
import { range, txn } from "../etcd/kv.js";
import { readLeader, type Leader } from "../leader.js";
import { predecessorPolicy, type QueueEntry } from "../queue/policies.js";
import { acquire, queueRange, readQueue, toEntries, type Ticket } from "../queue/queue.js";
import { removeOwned } from "../queue/release.js";
import { releaseRetry, retryWithBackoff } from "../common/backoff.js";
import { isTransient } from "../etcd/errors.js";
import type { SessionContext } from "../session/context.js";

/**
 * Controlled hand-overs (design: Hand-overs). The leader names a waiting candidate; the candidates of
 * this library ahead of it step aside (delete their own key and join again, behind it); once the target
 * is next, the leader resigns. Nothing deletes another participant's key, and keys are never reordered in
 * place: a candidate that cannot step aside (an `etcdctl elect` process, an older version, a dead one)
 * makes the hand-over fail with the term still held.
 *
 * The request lives in `<name>.handover`, on the leader's lease: not under `<name>/` (etcdctl elect
 * counts every key there as a candidate), its last segment not a lease id (so no version of this library
 * takes it for a queue key of any name, design: Names are exact), and it vanishes with the leader's lease.
 */
export const handoverKey = (name: string): string => `${name}.handover`;

/**
 * What a hand-over request names: the target's key and create revision, and the leader that asked (its
 * key and token). A waiter obeys it only while that leader still leads: a request left behind (its
 * withdrawal failed, or the put's answer was lost) is ignored under any later leader.
 */
export interface HandoverRequest {
  to: string;
  token: bigint;
  from: { key: string; token: bigint };
}

/**
 * The request's value. `attempt` (ignored by readers, older versions included) makes each hand-over's
 * value its own: a withdrawal that judges "ours" by the value never takes a later attempt's for its own.
 */
export function encodeRequest(req: HandoverRequest, attempt: string = randomUUID()): Buffer {
  return Buffer.from(
    JSON.stringify({
      to: req.to,
      token: req.token.toString(),
      from: { key: req.from.key, token: req.from.token.toString() },
      attempt,
    }),
  );
}

const isRevision = (v: unknown): v is string => typeof v === "string" && /^\d+$/.test(v);

/** The request in `value`; undefined when it is not one (a stray value is ignored, never obeyed). */
export function parseRequest(value: Buffer | undefined): HandoverRequest | undefined {
  if (!value || value.length === 0) return undefined;
  try {
    const o = JSON.parse(value.toString()) as {
      to?: unknown;
      token?: unknown;
      from?: { key?: unknown; token?: unknown };
    };
    const from = o.from;
    if (typeof o.to === "string" && isRevision(o.token) && typeof from?.key === "string" && isRevision(from.token))
      return { to: o.to, token: BigInt(o.token), from: { key: from.key, token: BigInt(from.token) } };
  } catch {
    // not a request
  }
  return undefined;
}

/** A waiter steps aside only when it is ahead of the target (and is not the target). */
export const mustStepAside = (
  own: { key: string; createRevision: bigint },
  req: HandoverRequest | undefined,
): boolean => req !== undefined && req.to !== own.key && own.createRevision < req.token;

/**
 * Whether the leader that made `req` still leads: its key, with the create revision it had, heads the
 * queue. Once false, false forever (a key that went never comes back with the same create revision).
 */
async function askerLeads(ctx: SessionContext, name: string, req: HandoverRequest): Promise<boolean> {
  const { entries } = await readQueue(ctx, name, { limit: 1, values: false });
  const head = entries[0];
  return head?.key === req.from.key && head.createRevision === req.from.token;
}

/** Why a campaign's wait was cut short: to join again behind a hand-over's target. Never reaches a user. */
const STEP_ASIDE = Symbol("step aside");

/**
 * An election's campaign: the queue's wait, stepping aside (our key removed, then made again, behind
 * the target) whenever a hand-over asks a waiter ahead of its target to. The caller sees one campaign
 * that resolves once it leads, as before: stepping aside is never a loss (design: Hand-overs).
 */
export async function campaignOrStepAside(
  ctx: SessionContext,
  name: string,
  value: Buffer,
  signal: AbortSignal | undefined,
  vanished: (message: string) => Error,
): Promise<Ticket> {
  for (;;) {
    const aside = new AbortController();
    const { controller, dispose } = linkedController(signal, aside.signal);
    let watch: RequestWatch | undefined;
    try {
      return await acquire(ctx, name, value, predecessorPolicy, {
        signal: controller.signal,
        vanished,
        waiting: (own) => void (watch ??= new RequestWatch(ctx, name, own, () => aside.abort(STEP_ASIDE))),
        // The request is read again with the wait's own periodic re-read (one transaction), not by a read
        // of its own; not once the watch is closed (denied, or stepping aside).
        alsoRead: () => (watch?.open ? { key: handoverKey(name), seen: (kv) => watch?.judge(kv?.value) } : undefined),
      });
    } catch (err) {
      // acquire removed our key (confirmed) before it rejected. The private reason never reaches the user:
      // a cancellation or a lost session during the removal rejects with their own reason.
      if (err !== STEP_ASIDE) throw err;
      if (signal?.aborted) throw signal.reason;
      if (ctx.lease.signal.aborted) throw ctx.lease.signal.reason;
      ctx.logger.info({ name }, "stepped aside for a hand-over: joining again behind its target");
    } finally {
      watch?.close();
      dispose();
    }
  }
}

/**
 * A waiter's watch of the hand-over request of its name (watches are hints, reads are truth): read once
 * the watch is in place; after that, with the wait's periodic re-read (the campaign hands it `judge`).
 */
class RequestWatch {
  readonly #watch: KeyWatch | undefined;
  /** Judges a value of the request key, as read or told. */
  readonly judge: (value: Buffer | undefined) => void;
  /** Askers found no longer leading (`key@token`): their requests are ignored without another read. */
  readonly #stale = new Set<string>();
  #closed = false;

  constructor(ctx: SessionContext, name: string, own: Ticket, stepAside: () => void) {
    const key = handoverKey(name);
    // A request for a target behind us: obeyed only if its asker still leads (one read of the queue's
    // head). Stepping aside for a request that goes stale meanwhile is harmless (we only queue again).
    const judge = (this.judge = (value: Buffer | undefined): void => {
      const req = parseRequest(value);
      if (this.#closed || !req || !mustStepAside(own, req)) return;
      const asker = `${req.from.key}@${req.from.token}`;
      if (this.#stale.has(asker)) return;
      askerLeads(ctx, name, req).then(
        (leads) => {
          if (this.#closed) return;
          if (leads) {
            this.close();
            stepAside();
          } else if (!this.#stale.has(asker)) {
            this.#stale.add(asker);
            ctx.logger.info(
              { name, from: req.from.key, to: req.to },
              "ignored a hand-over request: the leader that made it no longer leads",
            );
          }
        },
        (err: unknown) => {
          if (!this.#closed)
            ctx.logger.warn({ err, name }, "reading who leads for a hand-over request failed; reading again later");
        },
      );
    });
    // A request made between our join and the watch's start, a read tells; one the watch missed, the wait's
    // periodic re-read (which also follows the watch stream being made again).
    const read = (): void =>
      void range(ctx, { key: ctx.keyspace.full(key) }, `read the hand-over request of "${name}"`).then(
        (res) => judge(res.kvs[0]?.value),
        (err: unknown) => {
          if (!this.#closed)
            ctx.logger.warn({ err, name }, "reading the hand-over request failed; reading again later");
        },
      );
    // Denied lately on this client: each denied watch makes the client's shared stream authenticate and
    // open again (every watch on it re-reads), so campaigns do not try again for a while.
    const full = ctx.keyspace.full(key).toString();
    const denials = deniedRequestWatches.get(ctx.watches) ?? new Map<string, number>();
    deniedRequestWatches.set(ctx.watches, denials);
    const deniedAt = denials.get(full);
    if (deniedAt !== undefined && now() - deniedAt < DENIED_FOR_MS) {
      this.#closed = true;
      this.#watch = undefined;
      ctx.logger.info(
        { name, key },
        "no permission to watch the hand-over request (denied lately on this client): this candidate cannot step aside for a hand-over",
      );
      return;
    }
    this.#watch = new KeyWatch(
      ctx,
      { key },
      { resyncMs: ctx.resyncMs() },
      {
        event: (e) => e.type === "put" && judge(e.value),
        resync: () => {},
        started: read,
        // Denied (a role limited to `<name>/`): the watch stops (it would be denied forever). The watch
        // stream said so at error; what it means here is said at info, once.
        denied: (err) => {
          denials.set(full, now());
          if (this.#closed) return;
          this.close();
          ctx.logger.info(
            { err, name, key },
            "no permission to watch the hand-over request: this candidate cannot step aside for a hand-over",
          );
        },
      },
    );
  }

  /** Still listening: not denied, not stepping aside, not closed. */
  get open(): boolean {
    return !this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch?.close();
  }
}

/** When (monotonic ms) etcd last denied the watch of a request key, per watch stream (one per client). */
const deniedRequestWatches = new WeakMap<WatchStream, Map<string, number>>();
/** How long a denied request watch is not tried again on that client (a grant is noticed after it). */
const DENIED_FOR_MS = 10 * 60_000;

/** The term a hand-over works on (a Term, seen from inside). */
export interface HandingTerm {
  readonly ctx: SessionContext;
  readonly name: string;
  readonly key: string;
  readonly token: bigint;
  readonly signal: AbortSignal;
  release(): Promise<void>;
  /** Ends the term locally: etcd said our key no longer leads (as a refused proclaim does). */
  lost(err: ElectionError): void;
}

/** Whom to hand over to: the next in line, the first candidate with a value, or one key. */
export interface HandoverTarget {
  to?: Buffer | undefined;
  toKey?: string | undefined;
  timeoutMs: number;
  /** The user's cancellation: the hand-over rejects with its reason (the term held unless resigned). */
  signal?: AbortSignal | undefined;
}

/** The put of our request, kept past the hand-over's give-up: its answer (and its landing) may come later. */
interface Put {
  readonly promise: Promise<bigint>;
  readonly request: Buffer;
  /** Our key's mod revision and value the put is guarded by (a fence write moves the former). */
  readonly leaderMod: bigint;
  readonly leaderValue: Buffer;
  /**
   * What its answer said: none yet; it landed; refused by its guard (our key changed or went: no attempt
   * of it can land from then on); or failed (a timeout: an attempt may still be in flight and land later).
   */
  outcome: "pending" | "landed" | "refused" | "failed";
}

/**
 * Hands the term over and resolves with the new leader, read once our key is gone. Fails with
 * HANDOVER_FAILED while the term still holds (its signal not aborted) when no such candidate waits, one
 * ahead of it did not step aside in time, or it went away; with the term's loss reason if the term ends
 * meanwhile. Once the resign has begun the term is over: a failure then (the target went in the very last
 * round trip, the resign or the read of the new leader not confirmed in time) is HANDOVER_FAILED with the
 * signal aborted.
 */
export async function handOverTerm(t: HandingTerm, target: HandoverTarget): Promise<Leader> {
  const { ctx, name } = t;
  const timeout = new AbortController();
  const timer = timerIn(target.timeoutMs, () => timeout.abort());
  const { controller, dispose } = linkedController(t.signal, timeout.signal, target.signal);
  const stop = controller.signal;
  const whom =
    target.toKey !== undefined
      ? `candidate ${target.toKey}`
      : target.to
        ? `candidate ${JSON.stringify(target.to.toString())}`
        : "the next candidate";
  let chosen: QueueEntry | undefined;
  let put: Put | undefined;
  const state = { inTheWay: [] as QueueEntry[] };
  try {
    const { entries } = await raceAbort(readQueue(ctx, name, { limit: 0, values: true }), stop);
    const head = entries[0];
    if (head?.key !== t.key || head.createRevision !== t.token)
      throw new NotLeaderError(`not the leader: our key ${t.key} no longer leads "${name}"`);
    const waiting = entries.slice(1);
    // Of several with the value, the newest: a restarted process's live key, not its previous run's dead one.
    chosen =
      target.toKey !== undefined
        ? waiting.find((e) => e.key === target.toKey)
        : target.to
          ? waiting.findLast((e) => e.value?.equals(target.to!))
          : waiting[0];
    if (!chosen) throw new HandoverFailedError(`hand-over of "${name}": ${whom} is not waiting; the term still holds`);
    if (chosen !== waiting[0]) {
      // From here on, a request of ours may be in etcd, or land later, even if we give up on the put.
      put = putRequest(t, chosen, head.modRevision!, head.value!);
      await raceAbort(put.promise, stop);
      await untilNext(t, chosen, stop, state);
    }
    // Last look, right before we go: our term and the target are there. Nothing came between meanwhile:
    // a key made later than the target is behind it (design: Decide at the event's revision). A read-only
    // transaction (no write to wait for); the request is withdrawn after the resign, off the critical path.
    const full = ctx.keyspace.full(t.key);
    const last = await raceAbort(
      txn(
        ctx,
        {
          compare: [
            { key: full, result: "Equal", target: "Create", create_revision: t.token.toString() },
            {
              key: ctx.keyspace.full(chosen.key),
              result: "Equal",
              target: "Create",
              create_revision: chosen.createRevision.toString(),
            },
          ],
          success: [],
          failure: [{ request_range: { key: full, keys_only: true } }],
        },
        `hand-over of "${name}": last check`,
      ),
      stop,
    );
    if (!last.succeeded) {
      const ours = last.responses[0]?.response_range.kvs[0];
      if (!ours || BigInt(ours.create_revision) !== t.token)
        throw new NotLeaderError(`not the leader: our key ${t.key} is gone`);
      throw new HandoverFailedError(`hand-over of "${name}": ${whom} went away; the term still holds`);
    }
  } catch (err) {
    timer.cancel(); // no timer left behind by a hand-over that failed early
    // etcd said our key no longer leads: the term is over (as a refused proclaim ends it).
    if (isElectionError(err) && err.code === "NOT_LEADER" && !t.signal.aborted) t.lost(err);
    if (put) await withinBound(withdraw(t, put));
    if (t.signal.aborted) throw t.signal.reason;
    if (target.signal?.aborted) throw target.signal.reason;
    if (timeout.signal.aborted) {
      const keys = state.inTheWay.map((e) => e.key).join(", ");
      throw new HandoverFailedError(
        `hand-over of "${name}" to ${whom} not done within ${target.timeoutMs} ms` +
          (keys
            ? `: ${keys} did not step aside (an etcdctl elect process, an older version, or a dead candidate)`
            : "") +
          "; the term still holds",
      );
    }
    throw err;
  } finally {
    dispose();
  }
  // The target is next: step down (the signal aborts at once, then our key goes). The resign and the read
  // of the new leader are bounded by what is left of timeoutMs (and the user's signal); a resign not
  // confirmed by then goes on in the background (retried until etcd confirms or the session ends). Our
  // request is then moot (nobody is ahead of the target) and is withdrawn meanwhile; it also goes with
  // our lease.
  let leader: Leader | undefined;
  const { controller: after, dispose: undo } = linkedController(timeout.signal, target.signal);
  try {
    const releasing = t.release();
    const withdrawing = put ? withdraw(t, put, true) : undefined;
    try {
      try {
        await raceAbort(releasing, after.signal);
      } catch {
        releasing.then(
          () => ctx.logger.info({ name, key: t.key }, "the hand-over's resign is confirmed, after its answer"),
          (err: unknown) => ctx.logger.warn({ err, name, key: t.key }, "the hand-over's resign failed"),
        );
        if (target.signal?.aborted) throw target.signal.reason;
        throw new HandoverFailedError(
          `hand-over of "${name}": resigned, but etcd did not confirm our key's removal within ${target.timeoutMs} ms; ` +
            "it goes on until etcd confirms or the session ends",
        );
      }
      ({ leader } = await raceAbort(readLeader(ctx, name), after.signal));
    } catch (err) {
      if (target.signal?.aborted) throw target.signal.reason;
      if (isElectionError(err) && err.code === "HANDOVER_FAILED") throw err;
      throw new HandoverFailedError(`hand-over of "${name}": resigned, but reading the new leader failed`, {
        cause: err,
      });
    } finally {
      if (withdrawing) await withinBound(withdrawing);
    }
  } finally {
    timer.cancel();
    undo();
  }
  if (!leader) throw new HandoverFailedError(`hand-over of "${name}": resigned, but nobody leads now`);
  if (leader.key !== chosen.key && (target.to || target.toKey !== undefined)) {
    throw new HandoverFailedError(
      `hand-over of "${name}": resigned, but ${leader.key} leads instead of ${whom} (it went away at the last moment)`,
    );
  }
  return leader;
}

/**
 * Puts the request on our lease, guarded by our key's create revision and its mod revision as read (so
 * a put that reaches etcd only after {@link fence} is refused); started at once, its answer kept.
 */
function putRequest(t: HandingTerm, chosen: QueueEntry, leaderMod: bigint, leaderValue: Buffer): Put {
  const { ctx, name } = t;
  const full = ctx.keyspace.full(t.key);
  const request = encodeRequest({ to: chosen.key, token: chosen.createRevision, from: { key: t.key, token: t.token } });
  const promise = txn(
    ctx,
    {
      compare: [
        { key: full, result: "Equal", target: "Create", create_revision: t.token.toString() },
        { key: full, result: "Equal", target: "Mod", mod_revision: leaderMod.toString() },
      ],
      success: [
        { request_put: { key: ctx.keyspace.full(handoverKey(name)), value: request, lease: ctx.lease.leaseId } },
      ],
      failure: [{ request_range: { key: full, keys_only: true } }],
    },
    `hand-over of "${name}": ask candidates ahead of ${chosen.key} to step aside`,
  ).then((res) => {
    if (res.succeeded) return BigInt(res.header.revision);
    const ours = res.responses[0]?.response_range.kvs[0];
    if (!ours || BigInt(ours.create_revision) !== t.token)
      throw new NotLeaderError(`not the leader: our key ${t.key} is gone`);
    throw new HandoverFailedError(
      `hand-over of "${name}": our key changed meanwhile (a proclaim, or a late request fenced off); the term still holds`,
    );
  });
  const put: Put = { promise, request, leaderMod, leaderValue, outcome: "pending" };
  promise.then(
    () => (put.outcome = "landed"),
    (err: unknown) => {
      const refused = isElectionError(err) && (err.code === "HANDOVER_FAILED" || err.code === "NOT_LEADER");
      put.outcome = refused ? "refused" : "failed";
    },
  );
  return put;
}

/**
 * How long a hand-over's answer waits for the withdrawal of its request (ms): a failure answers within
 * `timeoutMs` plus this, however slow etcd is; a withdrawal not confirmed by then goes on in the
 * background until etcd confirms it or the session ends (logged), and a request left meanwhile moves
 * nobody once our term is over (waiters check that its asker leads).
 */
export const WITHDRAW_WAIT_MS = 1_000;

/** Waits for `withdrawal` at most WITHDRAW_WAIT_MS; it goes on (settling on its own, never throwing) after. */
async function withinBound(withdrawal: Promise<void>): Promise<void> {
  let timer: Timer | undefined;
  await Promise.race([withdrawal, new Promise<void>((resolve) => (timer = timerIn(WITHDRAW_WAIT_MS, resolve)))]);
  timer?.cancel();
}

/**
 * Withdraws our request. While the term holds, an attempt of the put may yet land (no answer yet, a
 * timeout, or a resent attempt beside the one that answered): unless its guard refused it, first fence it
 * off (our key written again, same value and lease: its mod revision moves, so the put's guard fails
 * whenever an attempt arrives), retried until etcd confirms or the session ends. After the resign
 * (`resigned`) our key is gone and the put's guard fails anyway. Then whatever of it landed is removed,
 * judged by its exact value (each request carries its own attempt id). Logged, never thrown.
 */
async function withdraw(t: HandingTerm, put: Put, resigned = false): Promise<void> {
  const { ctx, name } = t;
  if (!resigned && put.outcome !== "refused") {
    try {
      await retryWithBackoff(releaseRetry, () => fence(t, put), {
        retryable: isTransient,
        signal: ctx.lease.signal,
        onRetry: (err, attempt) =>
          ctx.logger[attempt === 1 ? "warn" : "debug"](
            { err, name, attempt },
            "fencing off our hand-over request failed; retrying until etcd confirms or the session ends",
          ),
      });
    } catch (err) {
      if (ctx.lease.signal.aborted) return; // the session ended: the request goes with its lease
      // Not fenced (etcd refuses the write): wait for the put's answer instead, then remove what landed.
      ctx.logger.warn({ err, name }, "fencing off our hand-over request failed; waiting for its answer");
      await put.promise.catch(() => undefined);
    }
  }
  await removeRequest(ctx, name, put.request);
}

/** Our key written again as it was (guarded by the mod revision the put is guarded by); either answer is final. */
async function fence(t: HandingTerm, put: Put): Promise<void> {
  const { ctx, name } = t;
  const full = ctx.keyspace.full(t.key);
  await txn(
    ctx,
    {
      compare: [
        { key: full, result: "Equal", target: "Create", create_revision: t.token.toString() },
        { key: full, result: "Equal", target: "Mod", mod_revision: put.leaderMod.toString() },
      ],
      success: [{ request_put: { key: full, value: put.leaderValue, lease: ctx.lease.leaseId } }],
      failure: [],
    },
    `hand-over of "${name}": fence off the unanswered request`,
  );
  ctx.logger.debug({ name }, "fenced off an unanswered hand-over request (our key written again, same value)");
}

/**
 * Removes our request if it is still the one we put (a later leader's, or a newer one of ours, is never
 * touched): read first and removed (guarded by the mod revision read) only if it holds exactly our
 * request (same asker, target, token and attempt id) on our lease; by value, not by the revision the put
 * answered with, since a resent attempt of the put may have landed after it. Retried as our own key's
 * removal is, until etcd confirms or the session ends (it then goes with our lease). Logged, not thrown.
 */
async function removeRequest(ctx: SessionContext, name: string, request: Buffer): Promise<void> {
  await removeOwned(
    ctx,
    {
      key: handoverKey(name),
      guard: "Mod",
      revision: undefined,
      values: true,
      ours: (kv) =>
        String(kv.lease) === String(ctx.lease.leaseId) && kv.value.equals(request)
          ? BigInt(kv.mod_revision)
          : undefined,
      what: "our hand-over request",
    },
    `hand-over of "${name}": withdraw the request`,
  );
}

/**
 * Resolves once nothing is left between our key and the target (those ahead of it stepped aside),
 * watching the queue's deletes and reading once the watch is in place, after each delete, and every TTL/2.
 * Rejects if our key or the target's is gone, or when `stop` aborts; `state.inTheWay` says who was left.
 */
async function untilNext(
  t: HandingTerm,
  chosen: QueueEntry,
  stop: AbortSignal,
  state: { inTheWay: QueueEntry[] },
): Promise<void> {
  const { ctx, name } = t;
  let dirty = false;
  let wake = (): void => {};
  const poke = (): void => {
    dirty = true;
    wake();
  };
  const watch = new KeyWatch(
    ctx,
    { prefix: `${name}/` },
    { resyncMs: ctx.resyncMs(), deletesOnly: true },
    { event: poke, resync: poke, started: poke },
  );
  try {
    for (;;) {
      if (!dirty) await raceAbort(new Promise<void>((resolve) => (wake = resolve)), stop);
      dirty = false;
      const res = await raceAbort(
        range(
          ctx,
          queueRange(ctx.keyspace, name, { values: false, maxCreateRevision: chosen.createRevision }),
          `hand-over of "${name}": read the queue`,
        ),
        stop,
      );
      const entries = toEntries(ctx.keyspace, name, res.kvs, false);
      if (!entries.some((e) => e.key === t.key && e.createRevision === t.token))
        throw new NotLeaderError(`not the leader: our key ${t.key} is gone`);
      if (!entries.some((e) => e.key === chosen.key && e.createRevision === chosen.createRevision))
        throw new HandoverFailedError(`hand-over of "${name}": ${chosen.key} went away; the term still holds`);
      state.inTheWay = entries.filter((e) => e.createRevision > t.token && e.createRevision < chosen.createRevision);
      if (state.inTheWay.length === 0) return;
    }
  } finally {
    watch.close();
  }
}
