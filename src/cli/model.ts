/**
 * The reading model of a name, as an operator sees it: its kind, who holds it, who waits, in what order.
 * Built on the library's own rules (keyspace.ts: which keys are a name's queue; policies.ts: who holds
 * given the queue ahead), so the CLI can never disagree with what the primitives themselves decide.
 */
import { inQueue } from "../etcd/keyspace.js";
import { predecessorPolicy, READ, readerPolicy, semaphorePolicy, WRITE, type QueuePolicy } from "../queue/policies.js";

export type NameKind = "election" | "mutex" | "semaphore" | "read-write lock";

/** A key in a name's queue, as read from etcd. */
export interface QueueKey {
  key: string;
  value: Buffer;
  /** Create revision: the fencing token. */
  createRevision: bigint;
  /** Lease id, decimal (as etcd3 prints it). */
  lease: string;
}

export interface Participant {
  key: string;
  /** The value as text (the candidate value of an election; "read"/"write"; the semaphore's limit JSON). */
  value: string;
  token: string;
  lease: string;
  leaseHex: string;
  /** Seconds the lease has left (LeaseTimeToLive), -1 if the lease is gone; undefined until asked. */
  ttl?: number;
}

export interface NameState {
  name: string;
  kind: NameKind;
  /** The semaphore's limit, when it is one. */
  limit?: number;
  holders: Participant[];
  /** In the order they will get their turn (create revision). */
  waiters: Participant[];
}

/** A semaphore permit's value: exactly a JSON object `{"limit":N}`, N a positive integer; else undefined. */
export const limitOf = (value: Buffer): number | undefined => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString());
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
  const keys = Object.keys(parsed);
  const limit = (parsed as { limit?: unknown }).limit;
  return keys.length === 1 && keys[0] === "limit" && Number.isSafeInteger(limit) && (limit as number) > 0
    ? (limit as number)
    : undefined;
};

/**
 * A name's kind from its keys' values, only when every value says it: all empty = mutex, all `read` or
 * `write` = read-write lock, all `{"limit":N}` = semaphore (the limit of the oldest). Anything else is an
 * election's candidate values: a mix is never taken for a lock kind, whose holders would then be wrong.
 */
export function kindOf(values: Buffer[]): { kind: NameKind; limit?: number } {
  if (values.length === 0) return { kind: "election" };
  if (values.every((v) => v.length === 0)) return { kind: "mutex" };
  if (values.every((v) => v.equals(READ) || v.equals(WRITE))) return { kind: "read-write lock" };
  const limits = values.map(limitOf);
  if (limits.every((l) => l !== undefined)) return { kind: "semaphore", limit: limits[0]! };
  return { kind: "election" };
}

/**
 * The policy a participant waits by, from its own value, as each primitive does: `read` a reader, a
 * `{"limit":N}` permit a semaphore of N, anything else (a writer, a mutex, a candidate) its predecessor.
 * The name's kind only labels it: a queue mixing values is decided key by key, as the library decides it.
 */
function policyFor(value: Buffer): QueuePolicy {
  if (value.equals(READ)) return readerPolicy;
  const limit = limitOf(value);
  if (limit !== undefined) return semaphorePolicy(limit, () => {});
  return predecessorPolicy;
}

export const leaseHex = (lease: string): string => BigInt(lease).toString(16);

/**
 * The name whose queue `key` (relative) is in, by the library's own rule alone (`inQueue`: `<name>/<lease
 * hex>`, nothing deeper), or undefined. The key's own lease is not asked: a key the library counts in the
 * queue (on lease 0, or written by another client) is shown as the primitives see it, holding or waiting.
 */
export function queueNameOf(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  if (slash <= 0) return undefined;
  const name = key.slice(0, slash);
  return inQueue(name, key) ? name : undefined;
}

/** The queue's order as shown: create revision (ties, keys put in one transaction, by key, as a range lists them: display only). */
export const byCreateRevision = (a: QueueKey, b: QueueKey): number =>
  a.createRevision < b.createRevision
    ? -1
    : a.createRevision > b.createRevision
      ? 1
      : a.key < b.key
        ? -1
        : a.key > b.key
          ? 1
          : 0;

/** Holders and waiters of one name, from its queue keys (any order). */
export function nameState(name: string, keys: QueueKey[]): NameState {
  const queue = [...keys].sort(byCreateRevision);
  const { kind, limit } = kindOf(queue.map((k) => k.value));
  const state: NameState = { name, kind, ...(limit !== undefined && { limit }), holders: [], waiters: [] };
  queue.forEach((k, i) => {
    // Ahead: the keys created before it (as the library reads them); keys of one transaction share a
    // create revision, and none of them is ahead of another.
    const ahead = queue
      .slice(0, i)
      .filter((e) => e.createRevision < k.createRevision)
      .map((e) => ({ key: e.key, createRevision: e.createRevision, value: e.value }));
    const holds = policyFor(k.value).blocking(ahead) === undefined;
    const p: Participant = {
      key: k.key,
      value: k.value.toString(),
      token: k.createRevision.toString(),
      lease: k.lease,
      leaseHex: leaseHex(k.lease),
    };
    (holds ? state.holders : state.waiters).push(p);
  });
  return state;
}

/** Every name among `keys` (the range under a prefix), sorted by name; keys that are no queue key are left out. */
export function namesOf(keys: QueueKey[]): NameState[] {
  const byName = new Map<string, QueueKey[]>();
  for (const k of keys) {
    const name = queueNameOf(k.key);
    if (name === undefined) continue;
    byName.set(name, [...(byName.get(name) ?? []), k]);
  }
  return [...byName.keys()].sort().map((name) => nameState(name, byName.get(name)!));
}
