import type { IKeyValue, IRangeRequest } from "etcd3";
import { linkedController, onAbort } from "../common/abort.js";
import { now } from "../common/clock.js";
import { assertUsable, type SessionContext } from "../session/context.js";
import { EtcdError } from "../errors.js";
import { isTransient } from "../etcd/errors.js";
import { KeyWatch } from "../etcd/key-watch.js";
import { inQueue, queueKey, type Keyspace } from "../etcd/keyspace.js";
import { range, retryRead, txn } from "../etcd/kv.js";
import { judgeJoin } from "./join.js";
import type { Blocking, QueueEntry, QueuePolicy } from "./policies.js";
import { removeOwnKey } from "./release.js";

/**
 * The one waiting algorithm of the library (elections, mutexes, semaphores, read-write locks).
 *
 * Every participant owns the key `<name>/<lease hex>` (put-if-absent, on its session's lease); the
 * queue is exactly those keys under `<name>/`, ordered by create revision. A participant waits only on
 * the keys its policy says block it, counting their deletes from a watch, re-reads linearizably when
 * the count says its turn may have come (or the watch may have missed something), and confirms its own
 * key still exists before reporting ownership (design: The queue; Re-check after waiting).
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
}

/**
 * Joins the queue under `name` and resolves with our ticket once `policy` says it is our turn, confirmed
 * by a linearizable read that also saw our own key. With `ifFree`, resolves undefined (our key removed)
 * instead of waiting when it is not our turn. On abort, timeout, session loss or error, our key is
 * removed (confirmed by etcd, or gone with the session) before the promise rejects. The caller holds the
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
    for (;;) {
      if (confirmed) {
        const blocking = policy.blocking(ahead);
        if (!blocking) break;
        if (options.ifFree) {
          await removeOwnKey(ctx, own.key, own.createRevision, "try");
          return undefined;
        }
        // Of this wait only: after a re-wait an earlier blocker's delete says nothing of when our turn came,
        // and a wait ended by a resync (a delete the watch may not have told) has no known moment.
        options.waiting?.(own);
        blockerGoneAt = await waitForDeletes(ctx, name, blocking, signal);
      }
      const read = await retryRead(() => readAhead(ctx, own, policy), signal, ctx.logger);
      signal.throwIfAborted();
      if (!read.exists)
        throw ctx.lease.signal.aborted
          ? ctx.lease.signal.reason
          : options.vanished(`our key ${own.key} was deleted while waiting`);
      ({ ahead, revision } = read);
      confirmed = true;
    }
    // Re-check after waiting: the last read saw our key and nothing blocking, and we have not been told
    // of a loss since (asking the lease's clock first, in case this process was paused).
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

/**
 * Resolves once `needed` of the blocking keys are deleted (with the monotonic time that was seen), or
 * the watch asks for a re-read (undefined); rejects with the signal's reason on abort. Leaves no watch,
 * timer or listener behind.
 *
 * The watch starts from now, not from the revision we read at: etcd feeds a watch that starts in the
 * past from a sync loop that runs every 100 ms, which would make every hand-over that slow. What was
 * deleted between our read and the watch's start, one read made once the watch is in place tells.
 */
function waitForDeletes(
  ctx: SessionContext,
  name: string,
  blocking: Blocking,
  signal: AbortSignal,
): Promise<number | undefined> {
  const waiting = new Set(blocking.keys.map((e) => e.key));
  let gone = 0;
  const count = (keys: Iterable<string>): void => {
    for (const key of keys) if (waiting.delete(key)) gone++;
    if (gone >= blocking.needed) finish(now());
  };
  let finish = (_goneAt?: number): void => {};
  let finished = false;
  return new Promise<number | undefined>((resolve, reject) => {
    const only = blocking.keys.length === 1 ? blocking.keys[0] : undefined;
    const target = only ? { key: only.key } : { prefix: `${name}/` };
    const watch = new KeyWatch(
      ctx,
      target,
      { resyncMs: ctx.resyncMs() },
      {
        event: (e) => e.type === "delete" && count([e.key]),
        resync: () => finish(),
        started: () => {
          if (finished) return; // a resync already sent the caller to read
          readExistingBlockers(ctx, name, blocking).then(
            (present) => count([...waiting].filter((key) => !present.has(key))),
            () => finish(), // let the caller's read, with its retries, decide
          );
        },
      },
    );
    finish = (goneAt?: number): void => {
      if (finished) return;
      finished = true;
      undo();
      resolve(goneAt);
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
 * Reads (one linearizable range) whether our key still exists and what is ahead of it: the queue up to
 * our create revision. Only our own join made a key at that revision, so our key is in it exactly when
 * it is still the one we created (a key re-made under our name has a later revision). When the policy
 * needs only the `nearest` keys ahead, the range is read newest first and limited to those and ours: a
 * waiter deep in a long queue gets a few keys back, not all of them (etcd still walks the range).
 */
async function readAhead(
  ctx: SessionContext,
  ticket: Ticket,
  policy: QueuePolicy,
): Promise<{ exists: boolean; ahead: QueueEntry[]; revision: bigint }> {
  const what = `read the queue of "${ticket.name}"`;
  const opts = { values: policy.readValues, maxCreateRevision: ticket.createRevision };
  let res = await range(
    ctx,
    queueRange(
      ctx.keyspace,
      ticket.name,
      policy.nearest === undefined ? opts : { ...opts, limit: policy.nearest + 1, newestFirst: true },
    ),
    what,
  );
  let entries = toEntries(ctx.keyspace, ticket.name, res.kvs, policy.readValues);
  if (policy.nearest !== undefined) {
    // Deeper keys (other names) took places in the limited read: read all of it instead.
    if (res.more && entries.length < res.kvs.length) {
      res = await range(ctx, queueRange(ctx.keyspace, ticket.name, opts), what);
      entries = toEntries(ctx.keyspace, ticket.name, res.kvs, policy.readValues);
    } else entries.reverse();
  }
  const exists = entries.some((e) => e.createRevision === ticket.createRevision && e.key === ticket.key);
  const ahead = entries.filter((e) => e.createRevision < ticket.createRevision);
  policy.check?.(ahead);
  return { exists, ahead, revision: BigInt(res.header.revision) };
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
    }
    entries.push(entry);
  }
  return entries;
}
