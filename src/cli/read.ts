/** Reading names and leases from etcd: linearizable ranges and LeaseTimeToLive, each error typed. */
import type { Etcd3, IKeyValue } from "etcd3";
import { isCompacted, toElectionError } from "../etcd/errors.js";
import { namesOf, queueNameOf, type NameState, type QueueKey } from "./model.js";

/** Keys per range call: the whole keyspace (the default prefix) is read in pages, never in one answer. */
export const PAGE = 500;
/** LeaseTimeToLive calls in flight at once: one per lease, however many keys share it. */
export const LEASE_LOOKUPS = 8;

export const toQueueKey = (kv: IKeyValue): QueueKey => ({
  key: kv.key.toString(),
  value: kv.value,
  createRevision: BigInt(kv.create_revision),
  lease: kv.lease,
});

async function typed<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw toElectionError(err, what);
  }
}

/** Seconds each lease has left; -1 for a lease etcd no longer has. At most LEASE_LOOKUPS calls at once. */
export async function leaseTtls(client: Etcd3, leases: Iterable<string>): Promise<Map<string, number>> {
  const ttls = new Map<string, number>();
  const todo = [...new Set(leases)].filter((l) => l !== "0");
  const worker = async (): Promise<void> => {
    for (let lease = todo.pop(); lease !== undefined; lease = todo.pop()) {
      const id = lease;
      const res = await typed(`LeaseTimeToLive ${id}`, () => client.leaseClient.leaseTimeToLive({ ID: id }));
      ttls.set(id, Number(res.TTL));
    }
  };
  await Promise.all(Array.from({ length: Math.min(LEASE_LOOKUPS, todo.length) }, worker));
  return ttls;
}

/** The key after `key` in etcd's byte order (a page continues there). */
const after = (key: Buffer): Buffer => Buffer.concat([key, Buffer.from([0])]);

/** The end of the range of keys starting with `prefix` ("\0": every key, for ""). */
export function prefixEnd(prefix: Buffer): Buffer {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) return Buffer.concat([prefix.subarray(0, i), Buffer.from([prefix[i]! + 1])]);
  }
  return Buffer.from([0]);
}

/** Value reads per transaction (etcd's --max-txn-ops defaults to 128). */
export const VALUES_PER_TXN = 64;
/** Compactions of the pinned revision while paging before the read gives up. */
export const RESTARTS = 5;

/**
 * The queue keys under `prefix` (those `queueNameOf` takes; the rest never leave the page they are on),
 * with their values, read in pages of PAGE keys without values (a page of values could pass gRPC's 4 MiB
 * limit), continuing after the last key read, every page at the first one's revision so the pages are one
 * consistent view; each page's queue keys' values are then read at that revision. A compaction of that
 * revision while paging starts the read again. Returns the keys and the revision.
 */
export async function rangeAll(
  client: Etcd3,
  prefix: string,
  what: string,
  page = PAGE,
): Promise<{ revision: string; kvs: IKeyValue[] }> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await rangeOnce(client, prefix, what, page);
    } catch (err) {
      if (!isCompacted(err) || attempt >= RESTARTS) throw err;
    }
  }
}

async function rangeOnce(
  client: Etcd3,
  prefix: string,
  what: string,
  page: number,
): Promise<{ revision: string; kvs: IKeyValue[] }> {
  const start = prefix === "" ? Buffer.from([0]) : Buffer.from(prefix);
  const end = prefixEnd(Buffer.from(prefix));
  const kvs: IKeyValue[] = [];
  let key: Buffer = start;
  let revision: string | undefined;
  for (;;) {
    const res = await typed(what, () =>
      client.kv.range({
        key,
        range_end: end,
        limit: page,
        keys_only: true,
        ...(revision !== undefined && { revision }),
      }),
    );
    revision ??= res.header.revision;
    const queued = res.kvs.filter((kv) => queueNameOf(kv.key.toString()) !== undefined);
    for (let i = 0; i < queued.length; i += VALUES_PER_TXN) {
      const chunk = queued.slice(i, i + VALUES_PER_TXN);
      const at = revision;
      const values = await typed(what, () =>
        client.kv.txn({ success: chunk.map((kv) => ({ request_range: { key: kv.key, revision: at } })) }),
      );
      values.responses.forEach((r) => kvs.push(...r.response_range.kvs));
    }
    const last = res.kvs.at(-1);
    if (!res.more || !last) return { revision, kvs };
    key = after(last.key);
  }
}

/** Every name under `prefix` ("" = the whole keyspace), with each lease's time left; and the revision read at. */
export async function readNames(
  client: Etcd3,
  prefix: string,
  page = PAGE,
): Promise<{ revision: string; names: NameState[] }> {
  const { revision, kvs } = await rangeAll(client, prefix, `range ${prefix === "" ? "(all keys)" : prefix}`, page);
  const names = namesOf(kvs.map(toQueueKey));
  await withTtls(client, names);
  return { revision, names };
}

/** One name exactly (its queue `<name>/<lease hex>`), or undefined if nobody holds or waits. */
export async function readName(client: Etcd3, name: string): Promise<{ revision: string; state?: NameState }> {
  const { revision, names } = await readNames(client, `${name}/`);
  return { revision, state: names.find((n) => n.name === name) };
}

async function withTtls(client: Etcd3, names: NameState[]): Promise<void> {
  const all = names.flatMap((n) => [...n.holders, ...n.waiters]);
  const ttls = await leaseTtls(
    client,
    all.map((p) => p.lease),
  );
  // A key on no lease (lease 0, put by another client) never expires: no time left to show.
  for (const p of all) p.ttl = p.lease === "0" ? undefined : ttls.get(p.lease);
}
