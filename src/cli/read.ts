/** Reading names and leases from etcd: linearizable ranges and LeaseTimeToLive, each error typed. */
import type { Etcd3, IKeyValue } from "etcd3";
import { toElectionError } from "../etcd/errors.js";
import { namesOf, type NameState, type QueueKey } from "./model.js";

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

/** Seconds each lease has left; -1 for a lease etcd no longer has. */
export async function leaseTtls(client: Etcd3, leases: Iterable<string>): Promise<Map<string, number>> {
  const ttls = new Map<string, number>();
  await Promise.all(
    [...new Set(leases)].map(async (lease) => {
      const res = await typed(`LeaseTimeToLive ${lease}`, () => client.leaseClient.leaseTimeToLive({ ID: lease }));
      ttls.set(lease, Number(res.TTL));
    }),
  );
  return ttls;
}

/** Every name under `prefix` ("" = the whole keyspace), with each lease's time left; and the revision read at. */
export async function readNames(client: Etcd3, prefix: string): Promise<{ revision: string; names: NameState[] }> {
  const res = await typed(`range ${prefix === "" ? "(all keys)" : prefix}`, () =>
    (prefix === "" ? client.getAll() : client.getAll().prefix(prefix)).exec(),
  );
  const names = namesOf(res.kvs.map(toQueueKey));
  await withTtls(client, names);
  return { revision: res.header.revision, names };
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
  for (const p of all) p.ttl = ttls.get(p.lease);
}
