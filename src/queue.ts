import type { IKeyValue, IRangeRequest, IRequestOp, ITxnResponse } from "etcd3";
import { linkedController, onAbort } from "./common/abort.js";
import { retryUntilAborted } from "./common/retry.js";
import { deadlineIn } from "./common/client.js";
import { KeyWatch } from "./common/watch.js";
import type { Session } from "./session.js";

/**
 * The one waiting algorithm of the library (elections, mutexes, semaphores, read-write locks).
 *
 * Every participant owns the key `<name>/<lease hex>` (put-if-absent, attached to its session's lease);
 * the queue is the keys under `<name>/` ordered by create revision. A participant waits only on the
 * keys a policy says block it, counting their deletes from a watch, re-reads with a linearizable range
 * when the count says its turn may have come (or the watch may have missed something), and confirms
 * its own key still exists before reporting ownership.
 */

export interface QueueEntry {
  key: string;
  createRevision: bigint;
  /** Present when the policy reads values. */
  value?: Buffer;
}

export interface Blocking {
  /** Keys ahead that hold us back. */
  keys: QueueEntry[];
  /** How many of them must go before our turn may have come (1 for a mutex). */
  needed: number;
}

export interface QueuePolicy {
  /** What blocks us, given every entry ahead of us (ascending create revision); undefined: our turn. */
  blocking(ahead: QueueEntry[]): Blocking | undefined;
  /** Entries the first lookup fetches (0: all): enough to decide the uncontended case in one round trip. */
  lookahead: number;
  /** Whether entries carry values (a semaphore's limit, a read-write lock's mode). */
  readValues: boolean;
  /** Checks the entries we read (e.g. a semaphore limit that disagrees); throws to give up. */
  check?(entries: QueueEntry[]): void;
}

export interface Ticket {
  name: string;
  key: string;
  createRevision: bigint;
  value: Buffer;
  /** The store revision at which our turn was confirmed. */
  revision: bigint;
}

const prefixOf = (name: string): string => `${name}/`;

/** Puts our key if absent and reads the head of the queue, in one transaction. */
async function enqueue(
  session: Session,
  name: string,
  value: Buffer,
  policy: QueuePolicy,
  retried = false,
): Promise<{ ticket: Ticket; entries: QueueEntry[]; ahead: QueueEntry[]; complete: boolean }> {
  const ks = session.keyspace;
  const key = session.keyFor(name);
  const head: IRequestOp = { request_range: queueRange(session, name, { limit: policy.lookahead, values: policy.readValues }) };
  const res = await session.client.kv.txn(
    {
      compare: [{ key: ks.full(key), result: "Equal", target: "Create", create_revision: 0 }],
      success: [{ request_put: { key: ks.full(key), value, lease: session.leaseId } }, head],
      failure: [{ request_range: { key: ks.full(key) } }, head],
    },
    deadlineIn(session.callTimeoutMs),
  );
  const revision = BigInt(res.header.revision);
  let createRevision = revision;
  if (!res.succeeded) {
    const kv = res.responses[0]?.response_range.kvs[0];
    if (!kv) throw new Error("etcd answered a failed put-if-absent without the key");
    createRevision = BigInt(kv.create_revision);
    // Our key is there already. With our value, it is an earlier attempt of this very call that etcd3
    // retried: ours. Anything else is a leftover whose meaning differs (a reader's key for a writer):
    // delete it (guarded) and queue afresh, at the back.
    if (!kv.value.equals(value)) {
      if (retried) throw new Error(`our key ${key} keeps coming back with another value`);
      await removeKey(session, key, createRevision);
      return enqueue(session, name, value, policy, true);
    }
  }
  const entries = toEntries(session, res.responses[1]?.response_range.kvs ?? [], policy.readValues);
  const ahead = entries.filter((e) => e.createRevision < createRevision);
  // The lookahead saw everything ahead of us when it reached our own key or the end of the queue.
  const complete = policy.lookahead === 0 || entries.length < policy.lookahead || entries.some((e) => e.createRevision >= createRevision);
  return { ticket: { name, key, createRevision, value, revision }, entries, ahead, complete };
}

/** Reads (one linearizable txn) whether our key still exists and everything ahead of it. */
async function readAhead(session: Session, ticket: Ticket, policy: QueuePolicy): Promise<{ exists: boolean; ahead: QueueEntry[]; revision: bigint }> {
  const ks = session.keyspace;
  const res: ITxnResponse = await session.client.kv.txn(
    {
      compare: [],
      success: [
        { request_range: { key: ks.full(ticket.key), keys_only: true } },
        { request_range: queueRange(session, ticket.name, { values: policy.readValues, maxCreateRevision: ticket.createRevision - 1n }) },
      ],
      failure: [],
    },
    deadlineIn(session.callTimeoutMs),
  );
  const own = res.responses[0]?.response_range.kvs[0];
  const exists = own !== undefined && BigInt(own.create_revision) === ticket.createRevision;
  const ahead = toEntries(session, res.responses[1]?.response_range.kvs ?? [], policy.readValues);
  policy.check?.(ahead);
  return { exists, ahead, revision: BigInt(res.header.revision) };
}

/** The queue under `name`, oldest first (by create revision): the one range every reader of it uses. */
export function queueRange(session: Session, name: string, opts: { limit?: number; values: boolean; maxCreateRevision?: bigint }): IRangeRequest {
  const ks = session.keyspace;
  const req: IRangeRequest = {
    key: ks.full(prefixOf(name)),
    range_end: ks.rangeEnd(prefixOf(name)),
    sort_order: "Ascend",
    sort_target: "Create",
    keys_only: !opts.values,
  };
  if (opts.limit !== undefined) req.limit = opts.limit;
  if (opts.maxCreateRevision !== undefined) req.max_create_revision = opts.maxCreateRevision.toString();
  return req;
}

function toEntries(session: Session, kvs: IKeyValue[], values: boolean): QueueEntry[] {
  return kvs.map((kv) => {
    const entry: QueueEntry = { key: session.keyspace.relative(kv.key), createRevision: BigInt(kv.create_revision) };
    if (values) entry.value = kv.value;
    return entry;
  });
}

/** Deletes our key only if it is still the one we created (a newer holder's key is never touched). */
export async function removeKey(session: Session, key: string, createRevision: bigint): Promise<void> {
  const full = session.keyspace.full(key);
  await session.client.kv.txn(
    {
      compare: [{ key: full, result: "Equal", target: "Create", create_revision: createRevision.toString() }],
      success: [{ request_delete_range: { key: full } }],
      failure: [],
    },
    deadlineIn(session.callTimeoutMs),
  );
}


/**
 * Resolves once `needed` of the blocking keys are deleted, or the watch asks for a re-read; rejects
 * with the signal's reason on abort. Leaves no watch, timer or listener behind.
 *
 * The watch starts from now, not from the revision we read at: etcd feeds a watch that starts in the
 * past from a sync loop that runs every 100 ms, which would make every hand-over that slow. What was
 * deleted between our read and the watch's start, one read made once the watch is in place tells.
 */
function waitForDeletes(session: Session, name: string, blocking: Blocking, signal: AbortSignal): Promise<void> {
  const waiting = new Set(blocking.keys.map((e) => e.key));
  let gone = 0;
  const count = (keys: Iterable<string>): void => {
    for (const key of keys) if (waiting.delete(key)) gone++;
    if (gone >= blocking.needed) finish();
  };
  let finish = (): void => {};
  return new Promise<void>((resolve, reject) => {
    const only = blocking.keys.length === 1 ? blocking.keys[0] : undefined;
    const target = only ? { key: only.key } : { prefix: prefixOf(name) };
    const watch = new KeyWatch(session.client, target, undefined, session.resyncMs, session.callTimeoutMs, {
      // etcd3's watcher hands out keys already relative to the client's namespace.
      event: (type, kv) => type === "delete" && count([kv.key.toString()]),
      resync: () => finish(),
      started: () => {
        stillThere(session, name, blocking).then(
          (present) => count([...waiting].filter((key) => !present.has(key))),
          () => finish(), // let the caller's read, with its retries, decide
        );
      },
    });
    finish = (): void => {
      undo();
      void watch.close();
      resolve();
    };
    const undo = onAbort(signal, (reason) => {
      void watch.close();
      reject(reason);
    });
  });
}

/** Which of the keys up to the last blocking one still exist (keys only, linearizable). */
async function stillThere(session: Session, name: string, blocking: Blocking): Promise<Set<string>> {
  const last = blocking.keys.reduce((max, e) => (e.createRevision > max ? e.createRevision : max), 0n);
  const res = await session.client.kv.range(queueRange(session, name, { values: false, maxCreateRevision: last }), deadlineIn(session.callTimeoutMs));
  return new Set(res.kvs.map((kv) => session.keyspace.relative(kv.key)));
}

/**
 * Deletes a key of ours that an earlier release or attempt could not (rule 9). Called inside the name's
 * local line, so no live holder of ours can own the key; an unknown create revision is read first.
 */
async function clearStale(session: Session, key: string): Promise<void> {
  const stale = session.takeStale(key);
  if (!stale) return;
  try {
    let revision = stale.createRevision;
    if (revision === undefined) {
      const res = await session.client.kv.range({ key: session.keyspace.full(key), keys_only: true }, deadlineIn(session.callTimeoutMs));
      const kv = res.kvs[0];
      revision = kv && BigInt(kv.create_revision);
    }
    if (revision !== undefined) await removeKey(session, key, revision);
  } catch (err) {
    session.markStale(key, stale.createRevision);
    throw err;
  }
}

export interface AcquireOptions {
  signal?: AbortSignal | undefined;
  /** Give up at once (removing our key) instead of waiting. */
  tryOnly?: boolean;
  /** The error to raise when our key vanishes while we wait (deleted by someone else). */
  vanished: (message: string) => Error;
}

/**
 * Joins the queue under `name` and resolves with our ticket once `policy` says it is our turn, confirmed
 * by a linearizable read that also saw our own key. On abort, timeout, session loss or error, our key is
 * removed (guarded) before the promise rejects; with `tryOnly`, resolves undefined instead of waiting.
 */
export async function acquire(session: Session, name: string, value: Buffer, policy: QueuePolicy, options: AcquireOptions): Promise<Ticket | undefined> {
  session.assertUsable();
  const { controller, dispose } = linkedController(session.signal, options.signal);
  const signal = controller.signal;
  let ticket: Ticket | undefined;
  try {
    await clearStale(session, session.keyFor(name));
    const first = await enqueue(session, name, value, policy);
    ticket = first.ticket;
    policy.check?.(first.entries);
    signal.throwIfAborted();
    let ahead = first.ahead;
    let revision = ticket.revision;
    let confirmed = first.complete;
    for (;;) {
      if (confirmed) {
        const blocking = policy.blocking(ahead);
        if (!blocking) break;
        if (options.tryOnly) {
          await removeKey(session, ticket.key, ticket.createRevision);
          return undefined;
        }
        await waitForDeletes(session, name, blocking, signal);
      }
      const read = await retryUntilAborted(() => readAhead(session, ticket!, policy), signal);
      signal.throwIfAborted();
      if (!read.exists) throw session.signal.aborted ? session.signal.reason : options.vanished(`our key ${ticket.key} was deleted while waiting`);
      ({ ahead, revision } = read);
      confirmed = true;
    }
    // Rule 3: the last read saw our key and nothing blocking, and we have not been told of a loss since
    // (asking the session's clock first, in case this process was paused).
    session.assertUsable();
    signal.throwIfAborted();
    return { ...ticket, revision };
  } catch (err) {
    // Leave no key behind. If the delete does not get through, the session retries it before its next
    // use of the name. Without a ticket, the put may still have landed with its answer lost.
    const key = session.keyFor(name);
    session.markStale(key, ticket?.createRevision);
    await clearStale(session, key).catch(() => {});
    throw signal.aborted ? signal.reason : err;
  } finally {
    dispose();
  }
}
