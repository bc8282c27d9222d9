import type { IKeyValue, IRangeRequest } from "etcd3";
import { linkedController, onAbort, raceAbort } from "../common/abort.js";
import { now } from "../common/clock.js";
import { assertUsable, type SessionContext } from "../session/context.js";
import { EtcdError } from "../errors.js";
import { isNoLeader, isPermissionDenied, isTransient } from "../etcd/errors.js";
import { KeyWatch } from "../etcd/key-watch.js";
import { inQueue, queueKey, type Keyspace } from "../etcd/keyspace.js";
import type { Endpoint } from "../etcd/internals.js";
import { range, rangeOn, retryRead, txn } from "../etcd/kv.js";
import {
  countDecision,
  countFallback,
  judgeRead,
  type EventPoint,
  type FallbackReason,
  type ReadKind,
} from "./decide.js";
import { judgeJoin } from "./join.js";
import type { Blocking, QueueEntry, QueuePolicy } from "./policies.js";
import { removeOwnKey } from "./release.js";

/**
 * The one waiting algorithm of the library (elections, mutexes, semaphores, read-write locks).
 *
 * Every participant owns the key `<name>/<lease hex>` (put-if-absent, on its session's lease); the
 * queue is exactly those keys under `<name>/`, ordered by create revision. A participant waits only on
 * the keys its policy says block it, counting their deletes from a watch, re-reads when the count says
 * its turn may have come (serializably on the member that told the delete that woke it, or linearizably
 * when the watch may have missed something), and confirms its own key is in that read before reporting
 * ownership (design: The queue; Re-check after waiting; Decide at the event's revision).
 */

export interface Ticket {
  name: string;
  key: string;
  createRevision: bigint;
  value: Buffer;
  /** The store revision at which our turn was confirmed. */
  revision: bigint;
  /**
   * When (monotonic ms) the wait that gave us the turn saw the last key that blocked us go; undefined if
   * we never waited, or that wait ended on a re-read (the watch was made again or TTL/2 passed).
   */
  blockerGoneAt?: number | undefined;
}

export interface AcquireOptions {
  signal?: AbortSignal | undefined;
  /** The error to raise when our key vanishes while we wait (deleted by someone else). */
  vanished: (message: string) => Error;
  /** Called with our ticket each time we are about to wait on keys ahead (an election's hand-over watch). */
  waiting?: ((own: Ticket) => void) | undefined;
  /**
   * A key read in the same transaction as each re-read the wait's watch asks for (every TTL/2, or after
   * the watch was made again), its key-value handed to `seen`: an election's hand-over request, read
   * without a periodic read of its own. Asked for each time (undefined: not this time).
   */
  alsoRead?: (() => AlsoRead | undefined) | undefined;
}

/** A key read beside the queue's periodic re-read. */
export interface AlsoRead {
  key: string;
  seen: (kv: IKeyValue | undefined) => void;
}

/**
 * Joins the queue under `name` and resolves with our ticket once `policy` says it is our turn, confirmed
 * by a read that also saw our own key with our create revision: serializable on the member whose watch
 * told the delete that woke us, or linearizable (design: Decide at the event's revision). With `ifFree`,
 * resolves undefined (our key removed) instead of waiting when it is not our turn. On abort, timeout,
 * session loss or error, our key is removed (confirmed by etcd, or gone with the session) before the
 * promise rejects. The caller holds the
 * name's local line throughout.
 */
export function acquire(
  ctx: SessionContext,
  name: string,
  value: Buffer,
  policy: QueuePolicy,
  options: AcquireOptions & { ifFree: true },
): Promise<Ticket | undefined>;
export function acquire(
  ctx: SessionContext,
  name: string,
  value: Buffer,
  policy: QueuePolicy,
  options: AcquireOptions,
): Promise<Ticket>;
export async function acquire(
  ctx: SessionContext,
  name: string,
  value: Buffer,
  policy: QueuePolicy,
  options: AcquireOptions & { ifFree?: boolean },
): Promise<Ticket | undefined> {
  assertUsable(ctx);
  // The session's signal alone when the caller gave none: no controller to make on the hot path.
  const linked = options.signal ? linkedController(ctx.lease.signal, options.signal) : undefined;
  const signal = linked ? linked.controller.signal : ctx.lease.signal;
  let ticket: Ticket | undefined;
  try {
    const first = await enqueue(ctx, name, value, policy);
    const own = (ticket = first.ticket);
    policy.check?.(first.entries);
    signal.throwIfAborted();
    let ahead = first.ahead;
    let revision = own.revision;
    let confirmed = first.complete;
    let blockerGoneAt: number | undefined;
    /** How the last read was made, when it followed a wait: it counts as how that wait ended. */
    let afterWait: ReadKind | undefined;
    /** No permission to read `options.alsoRead`'s key: the queue is read alone from then on. */
    let alsoDenied = false;
    for (;;) {
      let at: EventPoint | undefined;
      let also: AlsoRead | undefined;
      if (confirmed) {
        const blocking = policy.blocking(ahead);
        if (afterWait) countDecision(ctx, blocking ? "stillBlocked" : afterWait);
        if (!blocking) break;
        if (options.ifFree) {
          await removeOwnKey(ctx, own.key, own.createRevision, "try");
          return undefined;
        }
        // Of this wait only: after a re-wait an earlier blocker's delete says nothing of when our turn came,
        // and a wait ended by a resync (a delete the watch may not have told) has no known moment.
        options.waiting?.(own);
        // What a waiter waits on, and why it read again: a wait behind a key that never goes is otherwise
        // silent (etcd's order of joins, not the order of the calls, decides whom we wait behind).
        ctx.logger.debug(
          {
            name,
            key: own.key,
            nearest: blocking.keys.at(-1)?.key,
            blocking: blocking.keys.length,
            needed: blocking.needed,
          },
          "waiting for keys ahead to go",
        );
        let resync: boolean | undefined;
        ({ goneAt: blockerGoneAt, at, resync } = await waitForDeletes(ctx, name, blocking, signal));
        if (resync && !alsoDenied) also = options.alsoRead?.();
        ctx.logger.debug(
          {
            name,
            key: own.key,
            woken: blockerGoneAt === undefined ? "re-read due" : "deleted",
            eventRevision: at?.revision,
          },
          "reading the queue again",
        );
      }
      const onMember = at && (await readOnEventMember(ctx, own, policy, at, signal));
      let linearizable: Awaited<ReturnType<typeof readLinearizable>> | undefined;
      const read =
        onMember ??
        (linearizable = await retryRead(() => readLinearizable(ctx, own, policy, also?.key), signal, ctx.logger));
      if (linearizable?.alsoDenied) alsoDenied = true;
      else if (linearizable) also?.seen(linearizable.also);
      afterWait = confirmed ? (onMember ? "serializable" : "linearizable") : undefined;
      signal.throwIfAborted();
      if (!read && afterWait) countDecision(ctx, "vanished");
      if (!read)
        throw ctx.lease.signal.aborted
          ? ctx.lease.signal.reason
          : options.vanished(`our key ${own.key} was deleted while waiting`);
      ({ ahead, revision } = read);
      confirmed = true;
    }
    // Re-check after waiting: the last read saw our key and nothing blocking (now, or at the latest revision
    // of the member that told the delete that woke us, which stays true while our key lives: our own-key
    // watch starts there), and we have not been told of a loss since (asking the lease's clock first, in
    // case this process was paused).
    assertUsable(ctx);
    signal.throwIfAborted();
    return { ...own, revision, blockerGoneAt };
  } catch (err) {
    // Leave no key behind: without a ticket, the put may still have landed with its answer lost, unless
    // etcd refused the transaction outright (no permission, too large...).
    const reason: unknown = signal.aborted ? signal.reason : err;
    ctx.logger.debug({ err: reason, name }, "wait ended without the turn; removing our key");
    if (ticket || signal.aborted || isTransient(err)) {
      await removeOwnKey(ctx, queueKey(name, ctx.leaseHex), ticket?.createRevision, `leaving the queue of "${name}"`);
    }
    throw reason;
  } finally {
    linked?.dispose();
  }
}

/** Puts our key if absent and reads the head of the queue, in one transaction. */
async function enqueue(
  ctx: SessionContext,
  name: string,
  value: Buffer,
  policy: QueuePolicy,
  retried = false,
): Promise<{ ticket: Ticket; entries: QueueEntry[]; ahead: QueueEntry[]; complete: boolean }> {
  const key = queueKey(name, ctx.leaseHex);
  const full = ctx.keyspace.full(key);
  const head = {
    request_range: queueRange(ctx.keyspace, name, { limit: policy.lookahead, values: policy.readValues }),
  };
  const what = `join the queue of "${name}"`;
  const res = await txn(
    ctx,
    {
      compare: [{ key: full, result: "Equal", target: "Create", create_revision: 0 }],
      success: [{ request_put: { key: full, value, lease: ctx.lease.leaseId } }, head],
      failure: [{ request_range: { key: full } }, head],
    },
    what,
  );
  const found = res.succeeded ? undefined : res.responses[0]?.response_range.kvs[0];
  if (!res.succeeded && !found) throw new EtcdError(`${what}: etcd answered a failed put-if-absent without the key`);
  const kvs = res.responses[1]?.response_range.kvs ?? [];
  const entries = toEntries(ctx.keyspace, name, kvs, policy.readValues);
  const revision = BigInt(res.header.revision);
  const outcome = judgeJoin(
    {
      succeeded: res.succeeded,
      revision,
      own: found && { createRevision: BigInt(found.create_revision), value: found.value },
      entries,
      rangeCount: kvs.length,
      lookahead: policy.lookahead,
    },
    value,
    ctx.names.leftBehindAt(key),
  );
  if (outcome.kind === "leftover") {
    // A key of ours whose meaning differs, or an ended hold's: delete it (guarded) and queue afresh, at
    // the back, with a new token.
    if (retried) throw new EtcdError(`${what}: our key ${key} keeps coming back with another value`);
    const refused = await removeOwnKey(ctx, key, outcome.createRevision, "replacing a leftover key");
    if (refused !== undefined) throw refused;
    ctx.names.removed(key, outcome.createRevision);
    return enqueue(ctx, name, value, policy, true);
  }
  const { createRevision, ahead, complete } = outcome;
  return { ticket: { name, key, createRevision, value, revision }, entries, ahead, complete };
}

/** How a wait for deletes ended. */
interface Woken {
  /** When (monotonic ms) the last needed delete was seen; undefined when the watch asked for a re-read. */
  goneAt?: number | undefined;
  /**
   * The revision of that delete and the member that told it, when the watch told every counted delete:
   * a serializable read there (at a revision at least that one) decides. Undefined after a re-read
   * request, or when the read made once the watch was in place counted some (it was made elsewhere, at a
   * revision of its own).
   */
  at?: EventPoint | undefined;
  /** The watch asked for a re-read (TTL/2 passed, or it was made again). */
  resync?: boolean;
}

/**
 * Resolves once `needed` of the blocking keys are deleted (with the monotonic time that was seen, and
 * where), or the watch asks for a re-read (neither); rejects with the signal's reason on abort. Leaves no
 * watch, timer or listener behind.
 *
 * The watch starts from now, not from the revision we read at: etcd feeds a watch that starts in the
 * past from a sync loop that runs every 100 ms, which would make every hand-over that slow. What was
 * deleted between our read and the watch's start, one read made once the watch is in place tells.
 */
function waitForDeletes(ctx: SessionContext, name: string, blocking: Blocking, signal: AbortSignal): Promise<Woken> {
  const waiting = new Set(blocking.keys.map((e) => e.key));
  let gone = 0;
  let last: EventPoint | undefined;
  let countedByRead = false;
  const count = (keys: Iterable<string>, told?: EventPoint): void => {
    for (const key of keys) {
      if (!waiting.delete(key)) continue;
      gone++;
      if (!told) countedByRead = true;
      else if (!last || told.revision > last.revision) last = told;
    }
    if (gone >= blocking.needed) finish({ goneAt: now(), at: countedByRead ? undefined : last });
  };
  let finish = (_woken: Woken = {}): void => {};
  let finished = false;
  return new Promise<Woken>((resolve, reject) => {
    const only = blocking.keys.length === 1 ? blocking.keys[0] : undefined;
    const target = only ? { key: only.key } : { prefix: `${name}/` };
    const watch = new KeyWatch(
      ctx,
      target,
      { resyncMs: ctx.resyncMs() },
      {
        event: (e, from) => e.type === "delete" && count([e.key], { revision: e.modRevision, endpoint: from }),
        resync: () => finish({ resync: true }),
        started: () => {
          if (finished) return; // a resync already sent the caller to read
          readExistingBlockers(ctx, name, blocking).then(
            (present) => count([...waiting].filter((key) => !present.has(key))),
            () => finish(), // let the caller's read, with its retries, decide
          );
        },
      },
    );
    finish = (woken: Woken = {}): void => {
      if (finished) return;
      finished = true;
      undo();
      resolve(woken);
      // The caller's re-read is on the hand-over's critical path: let it go out first. Cancelling the
      // watch (a write on the watch stream) waits a turn; its events are ignored meanwhile.
      setImmediate(() => watch.close());
    };
    const undo = onAbort(signal, (reason) => {
      watch.close();
      reject(reason);
    });
  });
}

/**
 * Decides from a serializable read on the member whose watch told the delete that woke us (design: Decide
 * at the event's revision): that member has applied the delete's revision R, so it serves the queue as of
 * its latest revision H >= R from its own store. What was ahead of us there, if our key was there with our
 * create revision. Reading at H rather than at R also sees our own key deleted after R (a revoke, a forced
 * resign) and never meets a compaction. Undefined when that read cannot decide (the member is behind R,
 * our key is not in it, any failure): the caller reads linearizably instead, as without an event.
 */
async function readOnEventMember(
  ctx: SessionContext,
  ticket: Ticket,
  policy: QueuePolicy,
  at: EventPoint,
  signal: AbortSignal,
): Promise<{ ahead: QueueEntry[]; revision: bigint } | undefined> {
  const fields = { key: ticket.key, eventRevision: at.revision, endpoint: at.endpoint.address };
  let read: { entries: QueueEntry[]; revision: bigint };
  try {
    read = await raceAbort(readAhead(ctx, ticket, policy, at.endpoint), signal);
  } catch (err) {
    signal.throwIfAborted();
    // A member cut off from its peers: expected in a partition, and the linearizable read answers as before.
    const leaderless = isNoLeader(err);
    ctx.logger[leaderless ? "debug" : "warn"](
      { ...fields, err },
      "serializable read on the event's member failed; reading linearizably",
    );
    countFallback(ctx, leaderless ? "leaderless" : "failed");
    return undefined;
  }
  const fallBack = (reason: FallbackReason, msg: string): undefined => {
    ctx.logger.debug({ ...fields, revision: read.revision }, msg);
    countFallback(ctx, reason);
    return undefined;
  };
  // etcd tells watchers of a write just before its store's revision moves on, so a read right after can
  // rarely come back one short; or the address reaches several members (a load balancer).
  if (read.revision < at.revision)
    return fallBack("behind", "the member has not applied the event's revision; reading linearizably");
  const verdict = judgeRead(ticket, read.entries, "serializable");
  if (verdict.kind !== "ours")
    return fallBack("notInSnapshot", "our key is not in the member's read; reading linearizably");
  policy.check?.(verdict.ahead);
  return { ahead: verdict.ahead, revision: read.revision };
}

/**
 * Reads (one linearizable range) whether our key still exists and what is ahead of it: undefined when
 * our key is gone (only our own join made a key at our create revision, so a key re-made under our name
 * does not count). `also`: a key read in the same read-only transaction (its key-value returned as
 * `also`); when etcd denies that, the queue is read alone (`alsoDenied`).
 */
async function readLinearizable(
  ctx: SessionContext,
  ticket: Ticket,
  policy: QueuePolicy,
  also?: string,
): Promise<{ ahead: QueueEntry[]; revision: bigint; also?: IKeyValue | undefined; alsoDenied?: boolean } | undefined> {
  let read: { entries: QueueEntry[]; revision: bigint; also?: IKeyValue | undefined };
  let alsoDenied = false;
  try {
    read = await readAhead(ctx, ticket, policy, undefined, also);
  } catch (err) {
    // No permission to read `also` (a role limited to `<name>/`): the queue alone, as without it.
    if (also === undefined || !isPermissionDenied(err)) throw err;
    // Said once per wait: the caller reads the queue alone from here on.
    ctx.logger.info(
      { err, name: ticket.name, key: also },
      "no permission to read a key beside the queue in the wait's re-read; reading the queue alone from now on",
    );
    read = await readAhead(ctx, ticket, policy);
    alsoDenied = true;
  }
  const verdict = judgeRead(ticket, read.entries, "linearizable");
  if (verdict.kind !== "ours") return undefined;
  policy.check?.(verdict.ahead);
  return { ahead: verdict.ahead, revision: read.revision, also: read.also, alsoDenied };
}

/**
 * Reads the queue up to our create revision: linearizably, or serializably on the member `on`. When the policy needs only the `nearest` keys ahead, the range is read newest first and
 * limited to those and ours: a waiter deep in a long queue gets a few keys back, not all of them (etcd
 * still walks the range). `also` (linearizable only): a key read in the same read-only transaction as
 * the first range, returned as `also`.
 */
async function readAhead(
  ctx: SessionContext,
  ticket: Ticket,
  policy: QueuePolicy,
  on?: Endpoint,
  also?: string,
): Promise<{ entries: QueueEntry[]; revision: bigint; also?: IKeyValue | undefined }> {
  const what = `read the queue of "${ticket.name}"${on ? ` on ${on.address}` : ""}`;
  const read = (req: IRangeRequest) => (on ? rangeOn(ctx, req, on, what) : range(ctx, req, what));
  const opts = { values: policy.readValues, maxCreateRevision: ticket.createRevision };
  const first = queueRange(
    ctx.keyspace,
    ticket.name,
    policy.nearest === undefined ? opts : { ...opts, limit: policy.nearest + 1, newestFirst: true },
  );
  let alsoKv: IKeyValue | undefined;
  let res: { kvs: IKeyValue[]; more: boolean; header: { revision: string } };
  if (also === undefined || on) res = await read(first);
  else {
    const both = await txn(
      ctx,
      {
        compare: [],
        success: [{ request_range: first }, { request_range: { key: ctx.keyspace.full(also) } }],
        failure: [],
      },
      what,
    );
    const queue = both.responses[0]?.response_range;
    if (!queue) throw new EtcdError(`${what}: etcd answered a transaction of two reads without the first`);
    res = { kvs: queue.kvs, more: queue.more, header: both.header };
    alsoKv = both.responses[1]?.response_range.kvs[0];
  }
  let entries = toEntries(ctx.keyspace, ticket.name, res.kvs, policy.readValues);
  if (policy.nearest !== undefined) {
    // Deeper keys (other names) took places in the limited read: read all of it instead.
    if (res.more && entries.length < res.kvs.length) {
      res = await read(queueRange(ctx.keyspace, ticket.name, opts));
      entries = toEntries(ctx.keyspace, ticket.name, res.kvs, policy.readValues);
    } else entries.reverse();
  }
  return { entries, revision: BigInt(res.header.revision), also: alsoKv };
}

/** Which of the blocking keys still exist, as we saw them (keys only, linearizable). */
async function readExistingBlockers(ctx: SessionContext, name: string, blocking: Blocking): Promise<Set<string>> {
  const only = blocking.keys.length === 1 ? blocking.keys[0]! : undefined;
  if (only) {
    // One key (a mutex, an election, a writer): read just it, not everything ahead (1,000 waiters
    // would read half a million keys in all to settle in).
    const res = await range(ctx, { key: ctx.keyspace.full(only.key), keys_only: true }, `read the queue of "${name}"`);
    const kv = res.kvs[0];
    return new Set(kv && BigInt(kv.create_revision) === only.createRevision ? [only.key] : []);
  }
  const last = blocking.keys.reduce((max, e) => (e.createRevision > max ? e.createRevision : max), 0n);
  const res = await range(
    ctx,
    queueRange(ctx.keyspace, name, { values: false, maxCreateRevision: last }),
    `read the queue of "${name}"`,
  );
  return new Set(res.kvs.map((kv) => ctx.keyspace.relative(kv.key)));
}

/**
 * The range of `name`'s queue, by create revision (oldest first, or newest first). It covers every key
 * under `<name>/`; `toEntries` keeps only the queue's own (deeper keys belong to other names).
 */
export function queueRange(
  keyspace: Keyspace,
  name: string,
  opts: { limit?: number; values: boolean; maxCreateRevision?: bigint; newestFirst?: boolean },
): IRangeRequest {
  const req: IRangeRequest = {
    key: keyspace.full(`${name}/`),
    range_end: keyspace.rangeEnd(`${name}/`),
    sort_order: opts.newestFirst ? "Descend" : "Ascend",
    sort_target: "Create",
    keys_only: !opts.values,
  };
  if (opts.limit !== undefined && opts.limit > 0) req.limit = opts.limit;
  if (opts.maxCreateRevision !== undefined) req.max_create_revision = opts.maxCreateRevision.toString();
  return req;
}

/** The first `limit` entries of the queue (all with 0), and the revision read at. */
export async function readQueue(
  ctx: SessionContext,
  name: string,
  opts: { limit: number; values: boolean },
): Promise<{ entries: QueueEntry[]; revision: bigint }> {
  const res = await range(ctx, queueRange(ctx.keyspace, name, opts), `read the queue of "${name}"`);
  const entries = toEntries(ctx.keyspace, name, res.kvs, opts.values);
  // Deeper keys took places in a limited read: read the whole range (only names that nest pay this).
  if (opts.limit > 0 && entries.length < res.kvs.length && entries.length < opts.limit && res.more) {
    return readQueue(ctx, name, { ...opts, limit: 0 });
  }
  return { entries: opts.limit > 0 ? entries.slice(0, opts.limit) : entries, revision: BigInt(res.header.revision) };
}

/** The queue's own entries among `kvs` (deeper keys belong to other names). */
export function toEntries(keyspace: Keyspace, name: string, kvs: IKeyValue[], values: boolean): QueueEntry[] {
  const entries: QueueEntry[] = [];
  for (const kv of kvs) {
    const key = keyspace.relative(kv.key);
    if (!inQueue(name, key)) continue;
    const entry: QueueEntry = { key, createRevision: BigInt(kv.create_revision) };
    if (values) {
      entry.value = kv.value;
      entry.lease = kv.lease;
      entry.modRevision = BigInt(kv.mod_revision);
    }
    entries.push(entry);
  }
  return entries;
}
