/**
 * The uncontended paths, one client, back to back, interleaved (in a shuffled order each
 * round), in two groups run one after the other:
 * - "limit": the floor (an etcd3 put and delete of one key: what any lock must at least cost), the same
 *   with the key on a lease (as a lock's key is), our two transactions sent raw on the session's
 *   channel with no library around them (what the RPCs themselves cost), our Mutex lock+unlock and our
 *   Election campaign+resign (one session, reused);
 * - "peers": the floor, ours, and etcd3's Lock acquire+release and Election campaign+wait+resign (each
 *   grants and revokes a lease and opens a keepalive stream per operation).
 * Then, path by path in a pass of its own: the RPCs and streams etcd handled per operation (from its
 * /metrics), and what the operation cost this process's event loop.
 */
import type { Etcd3 } from "etcd3";
import { Election, Mutex, Session } from "../src/index.js";
import { contextOf } from "../src/session/context.js";
import { queueRange } from "../src/queue/queue.js";
import type { BenchEnv } from "./env.js";
import { countRpcs, type Counts } from "./etcd-metrics.js";
import { loopCost, type LoopCost } from "./loop.js";
import { interleave, summarize, type Summary } from "./stats.js";

export type Impl = "floor" | "ours" | "etcd3" | "raw";

export interface PathResult {
  key: string;
  label: string;
  impl: Impl;
  summary: Summary;
  counts?: Counts;
  loop?: LoopCost;
}

export interface GroupResult {
  name: "limit" | "peers";
  paths: PathResult[];
}

export interface UncontendedResult {
  rounds: number;
  warmup: number;
  groups: GroupResult[];
}

interface Path {
  key: string;
  label: string;
  impl: Impl;
  run: () => Promise<void>;
}

export interface UncontendedSizes {
  rounds: number;
  warmup: number;
  /** Operations per path in the counting passes (0: no counting, e.g. on the cluster). */
  countTimes: number;
}

export async function uncontended(env: BenchEnv, sizes: UncontendedSizes): Promise<UncontendedResult> {
  const client = env.client();
  const prefix = env.prefix("uncontended");
  const session = await Session.create(client, { ttl: 10 });
  try {
    const all = paths(client, session, prefix);
    const pick = (...keys: string[]): Path[] => keys.map((k) => all.find((p) => p.key === k)!);
    const groups: [GroupResult["name"], Path[]][] = [
      ["limit", pick("floor", "floor-lease", "raw", "ours-mutex", "ours-campaign")],
      ["peers", pick("floor", "ours-mutex", "etcd3-lock", "ours-campaign", "etcd3-campaign")],
    ];
    const results: GroupResult[] = [];
    for (const [name, group] of groups) {
      env.log(
        `uncontended (${name}): ${sizes.rounds} rounds of ${group.length} paths, interleaved, after ${sizes.warmup} warm-up rounds`,
      );
      const { samples } = await interleave(Object.fromEntries(group.map((p) => [p.key, p.run])), sizes);
      results.push({
        name,
        paths: group.map((p) => ({
          key: p.key,
          label: p.label,
          impl: p.impl,
          summary: summarize(samples.get(p.key)!),
        })),
      });
    }
    if (sizes.countTimes > 0) {
      for (const p of all) {
        const counts = await countRpcs(env.metricsEndpoint, sizes.countTimes, p.run);
        const loop = await loopCost(sizes.countTimes, p.run);
        for (const g of results) for (const r of g.paths) if (r.key === p.key) Object.assign(r, { counts, loop });
      }
    }
    return { rounds: sizes.rounds, warmup: sizes.warmup, groups: results };
  } finally {
    await session.close();
    await client.delete().prefix(prefix);
  }
}

function paths(client: Etcd3, session: Session, prefix: string): Path[] {
  const mutex = new Mutex(session, `${prefix}/ours-mutex`);
  const election = new Election(session, `${prefix}/ours-election`);
  const theirs = client.election(`${prefix}/etcd3-election`, 10);
  return [
    {
      key: "floor",
      label: "floor: put + delete",
      impl: "floor",
      run: async () => {
        await client.put(`${prefix}/floor`).value("x");
        await client.delete().key(`${prefix}/floor`);
      },
    },
    {
      key: "floor-lease",
      label: "floor, the key on a lease: put + delete",
      impl: "floor",
      run: async () => {
        await client.put(`${prefix}/floor-lease`).value("x").lease(session.leaseId);
        await client.delete().key(`${prefix}/floor-lease`);
      },
    },
    {
      key: "raw",
      label: "our two transactions, sent raw (no library)",
      impl: "raw",
      run: rawTransactions(session, `${prefix}/raw`),
    },
    { key: "ours-mutex", label: "Mutex lock + unlock", impl: "ours", run: async () => (await mutex.lock()).unlock() },
    {
      key: "etcd3-lock",
      label: "etcd3 Lock acquire + release",
      impl: "etcd3",
      run: async () => {
        const lock = client.lock(`${prefix}/etcd3-lock`).ttl(10);
        await lock.acquire();
        await lock.release();
      },
    },
    {
      key: "ours-campaign",
      label: "Election campaign + resign",
      impl: "ours",
      run: async () => (await election.campaign("v")).resign(),
    },
    {
      key: "etcd3-campaign",
      label: "etcd3 Election campaign + wait + resign",
      impl: "etcd3",
      run: async () => {
        const campaign = theirs.campaign("v");
        await campaign.wait();
        await campaign.resign();
      },
    },
  ];
}

/**
 * Our lock+unlock's two RPCs exactly as the library sends them (put-if-absent with the head of the
 * queue; the guarded delete), on the session's own channel, with nothing of the library around them.
 */
function rawTransactions(session: Session, name: string): () => Promise<void> {
  const ctx = contextOf(session);
  const key = ctx.keyspace.full(`${name}/${ctx.leaseHex}`);
  const head = { request_range: queueRange(ctx.keyspace, name, { limit: 1, values: false }) };
  const call = <T>(req: object): Promise<T> =>
    ctx.conn.call<T>("KV", "txn", req, { timeoutMs: 5000, idempotent: true, what: "raw" });
  return async () => {
    const joined = await call<{ header: { revision: string } }>({
      compare: [{ key, result: "Equal", target: "Create", create_revision: 0 }],
      success: [{ request_put: { key, value: Buffer.alloc(0), lease: ctx.lease.leaseId } }, head],
      failure: [{ request_range: { key } }, head],
    });
    await call({
      compare: [{ key, result: "Equal", target: "Create", create_revision: joined.header.revision }],
      success: [{ request_delete_range: { key } }],
      failure: [],
    });
  };
}
