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

const limitOf = (value: Buffer): number | undefined => {
  try {
    const parsed = JSON.parse(value.toString()) as unknown;
    const limit = (parsed as { limit?: unknown } | null)?.limit;
    return typeof parsed === "object" && Number.isSafeInteger(limit) && (limit as number) > 0
      ? (limit as number)
      : undefined;
  } catch {
    return undefined;
  }
};

/** A name's kind from its keys' values: empty = mutex, read/write = rwlock, {"limit":N} = semaphore, else election. */
export function kindOf(values: Buffer[]): { kind: NameKind; limit?: number } {
  if (values.some((v) => v.equals(READ) || v.equals(WRITE))) return { kind: "read-write lock" };
  const limits = values.map(limitOf);
  if (limits.length > 0 && limits.every((l) => l !== undefined)) return { kind: "semaphore", limit: limits[0]! };
  if (values.length > 0 && values.every((v) => v.length === 0)) return { kind: "mutex" };
  return { kind: "election" };
}

/** The policy a participant waits by: the same ones the primitives use. */
function policyFor(kind: NameKind, value: Buffer, limit: number | undefined): QueuePolicy {
  if (kind === "semaphore") return semaphorePolicy(limit ?? 1, () => {});
  if (kind === "read-write lock" && value.equals(READ)) return readerPolicy;
  return predecessorPolicy;
}

export const leaseHex = (lease: string): string => BigInt(lease).toString(16);

/**
 * Whether `key` (relative) is a queue key: `<name>/<lease hex>` whose hex is the key's own lease (as
 * every primitive and `etcdctl elect/lock` write it); returns the name, or undefined.
 */
export function queueNameOf(key: string, lease: string): string | undefined {
  const slash = key.lastIndexOf("/");
  if (slash <= 0) return undefined;
  const name = key.slice(0, slash);
  if (!inQueue(name, key) || lease === "0" || key.slice(slash + 1) !== leaseHex(lease)) return undefined;
  return name;
}

/** Holders and waiters of one name, from its queue keys (any order). */
export function nameState(name: string, keys: QueueKey[]): NameState {
  const queue = [...keys].sort((a, b) => (a.createRevision < b.createRevision ? -1 : 1));
  const { kind, limit } = kindOf(queue.map((k) => k.value));
  const state: NameState = { name, kind, ...(limit !== undefined && { limit }), holders: [], waiters: [] };
  queue.forEach((k, i) => {
    const ahead = queue.slice(0, i).map((e) => ({ key: e.key, createRevision: e.createRevision, value: e.value }));
    const holds = policyFor(kind, k.value, limit).blocking(ahead) === undefined;
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
    const name = queueNameOf(k.key, k.lease);
    if (name === undefined) continue;
    byName.set(name, [...(byName.get(name) ?? []), k]);
  }
  return [...byName.keys()].sort().map((name) => nameState(name, byName.get(name)!));
}
