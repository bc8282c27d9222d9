/**
 * Noticing a cut-off: a leader process talks to etcd only through a TCP proxy in this process; once it
 * leads (and has kept its lease alive for a while), the proxy black-holes every byte. etcd then expires
 * the lease (this process sees the key deleted, through its own direct watch), and the leader notices it
 * lost leadership: ours when the term's signal aborts (the session's local deadline: the last
 * acknowledged keepalive's send time + TTL − margin), etcd3's when its campaign emits the lease's loss.
 * Reported: when each noticed, relative to etcd's expiry (negative: before it, as a leader must step
 * down; positive: after it, while another process may already lead). TTL 2 s.
 */
import { TcpProxy } from "../test/support/tcp-proxy.js";
import { BenchWorker, type Impl } from "./child.js";
import type { BenchEnv } from "./env.js";
import { FAILOVER_TTL } from "./failover.js";
import { keyPrefix } from "./keys.js";
import { sleep, summarize, wallMs, type Summary } from "./stats.js";

export interface CutoffResult {
  impl: Impl;
  /** Noticed − key deleted in etcd, ms (negative: early). */
  relative: Summary;
  /** Cut-off → noticed, ms. */
  noticed: Summary;
  /** Cut-off → key deleted in etcd, ms. */
  expired: Summary;
}

export async function cutoff(env: BenchEnv, sizes: { rounds: number }): Promise<CutoffResult[]> {
  const samples = {
    ours: { rel: [] as number[], noticed: [] as number[], expired: [] as number[] },
    etcd3: { rel: [] as number[], noticed: [] as number[], expired: [] as number[] },
  };
  const port = Number(env.endpoints[0]!.split(":").pop());
  for (let round = 0; round < sizes.rounds; round++) {
    // Ours and etcd3 side by side, each behind its own proxy, each cut at its own random moment.
    const outcomes = await Promise.all(
      (["ours", "etcd3"] as const).map(async (impl) => ({ impl, ...(await once(env, impl, port)) })),
    );
    for (const r of outcomes) {
      env.log(
        `cut-off (${r.impl}) round ${round + 1}/${sizes.rounds}: noticed ${r.noticed.toFixed(0)} ms after the cut, etcd expired the lease after ${r.expired.toFixed(0)} ms`,
      );
      samples[r.impl].rel.push(r.noticed - r.expired);
      samples[r.impl].noticed.push(r.noticed);
      samples[r.impl].expired.push(r.expired);
    }
  }
  return (["ours", "etcd3"] as const).map((impl) => ({
    impl,
    relative: summarize(samples[impl].rel),
    noticed: summarize(samples[impl].noticed),
    expired: summarize(samples[impl].expired),
  }));
}

async function once(env: BenchEnv, impl: Impl, targetPort: number): Promise<{ noticed: number; expired: number }> {
  const name = env.prefix(`cutoff-${impl}`);
  const client = env.client();
  const proxy = await TcpProxy.start({ targetPort });
  const watcher = await client.watch().prefix(keyPrefix(impl, name)).create();
  let deletedAt: number | undefined;
  const deleted = new Promise<void>((resolve) =>
    watcher.on("delete", () => {
      deletedAt ??= wallMs();
      resolve();
    }),
  );
  const worker = BenchWorker.start(impl, { endpoints: [proxy.url], name, identity: impl, ttl: FAILOVER_TTL });
  try {
    await worker.next("elected");
    // Leading for a while, keepalives flowing, at a random phase of the keepalive interval.
    await sleep(1000 + Math.random() * 700);
    const cut = wallMs();
    proxy.blackhole();
    const lost = await worker.next("lost", 20_000);
    await Promise.race([deleted, sleep(20_000)]);
    if (deletedAt === undefined) throw new Error(`cut-off (${impl}): etcd never deleted the leader's key`);
    return { noticed: lost.at - cut, expired: deletedAt - cut };
  } finally {
    await worker.stop("SIGKILL");
    await proxy.close();
    await watcher.cancel();
    await client.delete().prefix(keyPrefix(impl, name));
  }
}
