/**
 * Failover between processes, TTL 2 s: a leader and a standby, each a worker process (ours: a
 * LeaderElector; etcd3: its Election), the standby waiting for a while (past etcd's 100 ms watch sync).
 * - crash: the leader gets SIGKILL; the standby leads once etcd expired the leader's lease. Measured from
 *   the kill to the standby's "elected", and from the moment this process saw the leader's key deleted
 *   (the lease expired in etcd) to "elected";
 * - graceful: the leader gets SIGTERM, resigns and exits; from the signal to the standby's "elected".
 * Each round the standby becomes the leader and a new standby starts. Ours and etcd3 run side by
 * side: crashes at the same moment, graceful hand-overs one after the other.
 */
import type { Etcd3 } from "etcd3";
import { BenchWorker, type Impl } from "./child.js";
import type { BenchEnv } from "./env.js";
import { keyPrefix, waitForKeys } from "./keys.js";
import { sleep, summarize, wallMs, type Summary } from "./stats.js";

export const FAILOVER_TTL = 2;

export interface FailoverResult {
  kind: "crash" | "graceful";
  impl: Impl;
  /** Signal to the standby elected. */
  total: Summary;
  /** The leader's key deleted in etcd (seen by a watch) to the standby elected; crash only. */
  afterExpiry?: Summary;
  /** Signal to the key deleted (the rest of the lease's TTL); crash only. */
  expiry?: Summary;
}

export async function failover(env: BenchEnv, sizes: { rounds: number }): Promise<FailoverResult[]> {
  const results: FailoverResult[] = [];
  for (const kind of ["crash", "graceful"] as const) {
    const [ours, etcd3] = await Promise.all([Rig.start(env, "ours", kind), Rig.start(env, "etcd3", kind)]);
    const rigs = { ours, etcd3 };
    const samples = {
      ours: { total: [] as number[], after: [] as number[], expiry: [] as number[] },
      etcd3: { total: [] as number[], after: [] as number[], expiry: [] as number[] },
    };
    try {
      for (let round = 0; round < sizes.rounds; round++) {
        // Both standbys join and settle; then a crash hits both leaders at once (each waits out its
        // own lease), while graceful hand-overs (milliseconds) go one after the other, the first
        // alternating, so neither competes with the other for the CPU.
        await Promise.all([rigs.ours.prepare(), rigs.etcd3.prepare()]);
        const order = round % 2 === 0 ? (["ours", "etcd3"] as const) : (["etcd3", "ours"] as const);
        const outcomes: Partial<Record<Impl, { total: number; after?: number; expiry?: number }>> = {};
        if (kind === "crash") {
          await Promise.all(order.map(async (impl) => void (outcomes[impl] = await rigs[impl].fire())));
        } else {
          for (const impl of order) outcomes[impl] = await rigs[impl].fire();
        }
        for (const impl of order) {
          const r = outcomes[impl]!;
          env.log(
            `failover (${kind}, ${impl}) round ${round + 1}/${sizes.rounds}: ${r.total.toFixed(1)} ms${r.expiry !== undefined ? `, key deleted after ${r.expiry.toFixed(0)} ms` : ""}`,
          );
          samples[impl].total.push(r.total);
          if (r.after !== undefined) samples[impl].after.push(r.after);
          if (r.expiry !== undefined) samples[impl].expiry.push(r.expiry);
        }
      }
    } finally {
      await Promise.all([rigs.ours.stop(), rigs.etcd3.stop()]);
    }
    for (const impl of ["ours", "etcd3"] as const) {
      const s = samples[impl];
      results.push({
        kind,
        impl,
        total: summarize(s.total),
        ...(kind === "crash" ? { afterExpiry: summarize(s.after), expiry: summarize(s.expiry) } : {}),
      });
    }
  }
  return results;
}

/** A leader and a standby of one implementation, and a watch of the election's keys. */
class Rig {
  #leader: BenchWorker | undefined;
  #n = 0;
  readonly #deleted: number[] = [];
  readonly #stopWatch: () => Promise<void>;

  private constructor(
    readonly env: BenchEnv,
    readonly impl: Impl,
    readonly kind: "crash" | "graceful",
    readonly name: string,
    readonly client: Etcd3,
    stopWatch: () => Promise<void>,
    deleted: number[],
  ) {
    this.#stopWatch = stopWatch;
    this.#deleted = deleted;
  }

  static async start(env: BenchEnv, impl: Impl, kind: "crash" | "graceful"): Promise<Rig> {
    const name = env.prefix(`failover-${kind}-${impl}`);
    const client = env.client();
    const deleted: number[] = [];
    const watcher = await client.watch().prefix(keyPrefix(impl, name)).create();
    watcher.on("delete", () => deleted.push(wallMs()));
    const rig = new Rig(env, impl, kind, name, client, () => watcher.cancel(), deleted);
    rig.#leader = rig.#spawn();
    await rig.#leader.next("elected");
    return rig;
  }

  #standby: BenchWorker | undefined;

  /** A standby joins, and settles: its watch is in place and caught up (etcd3's starts in the past). */
  async prepare(): Promise<void> {
    this.#standby = this.#spawn();
    await waitForKeys(this.client, keyPrefix(this.impl, this.name), 2, { intervalMs: 20, timeoutMs: 30_000 });
    await sleep(300);
  }

  /** One failover: the leader is stopped, the standby is elected and becomes the leader. */
  async fire(): Promise<{ total: number; after?: number; expiry?: number }> {
    const standby = this.#standby!;
    const deletesBefore = this.#deleted.length;
    const signalled = wallMs();
    this.#leader!.signal(this.kind === "crash" ? "SIGKILL" : "SIGTERM");
    const elected = await standby.next("elected", 20_000);
    await this.#leader!.stop("SIGKILL", 10_000);
    this.#leader = standby;
    const total = elected.at - signalled;
    if (this.kind === "graceful") return { total };
    const deletedAt = this.#deleted[deletesBefore];
    if (deletedAt === undefined) return { total };
    return { total, after: elected.at - deletedAt, expiry: deletedAt - signalled };
  }

  async stop(): Promise<void> {
    await this.#leader?.stop("SIGTERM");
    await this.#stopWatch();
    await this.client.delete().prefix(keyPrefix(this.impl, this.name));
  }

  #spawn(): BenchWorker {
    return BenchWorker.start(this.impl, {
      endpoints: this.env.endpoints,
      name: this.name,
      identity: `${this.impl}-${this.#n++}`,
      ttl: FAILOVER_TTL,
    });
  }
}
