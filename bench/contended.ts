/**
 * Contended mutex throughput: `clients` clients (each its own etcd3 client, as separate processes
 * would have; all in this process) take one lock in a loop for `durationMs`, an empty critical section
 * each time. Ours: each client has a session and waits in the queue. etcd3's Lock cannot wait for a
 * holder (acquire fails while the key exists), so each client retries it with exponential backoff
 * (cockatiel, decorrelated jitter, 5 ms growing to 500 ms, reset after each success), as its users must.
 * Ours and etcd3 alternate at each size, the first of the two changing from size to size.
 */
import { EtcdLockFailedError, type Etcd3 } from "etcd3";
import { ExponentialBackoff } from "cockatiel";
import { Mutex, Session } from "../src/index.js";
import type { BenchEnv } from "./env.js";
import { delta, rpcTotal, scrape, type Counts } from "./etcd-metrics.js";
import { sleep, summarize, type Summary } from "./stats.js";

export interface ContendedRun {
  clients: number;
  impl: "ours" | "etcd3";
  /** Locks taken (and released) per second, all clients together. */
  perSec: number;
  /** Time from asking for the lock to holding it. */
  wait: Summary;
  /** Locks taken by the busiest client over those taken by the least busy. */
  spread: number;
  /** RPCs etcd handled per lock taken. */
  rpcsPerLock: number;
  counts: Counts;
}

export async function contended(
  env: BenchEnv,
  sizes: { clients: number[]; durationMs: number },
): Promise<ContendedRun[]> {
  const runs: ContendedRun[] = [];
  for (const [i, n] of sizes.clients.entries()) {
    const order: ("ours" | "etcd3")[] = i % 2 === 0 ? ["ours", "etcd3"] : ["etcd3", "ours"];
    for (const impl of order) {
      env.log(`contended: ${n} clients, ${impl}, ${sizes.durationMs} ms`);
      runs.push(await runOne(env, impl, n, sizes.durationMs));
    }
  }
  return runs;
}

async function runOne(env: BenchEnv, impl: "ours" | "etcd3", n: number, durationMs: number): Promise<ContendedRun> {
  const name = `${env.prefix(`contended-${impl}-${n}`)}/lock`;
  const clients = Array.from({ length: n }, () => env.client());
  const sessions = impl === "ours" ? await Promise.all(clients.map((c) => Session.create(c, { ttl: 10 }))) : [];
  // Every client's first lock request is warm-up: its channels are open before the clock starts.
  const loops =
    impl === "ours" ? sessions.map((s) => oursLoop(new Mutex(s, name))) : clients.map((c) => etcd3Loop(c, name));
  try {
    await Promise.all(loops.map((l) => l.warm()));
    const before = await scrape(env.metricsEndpoint);
    const start = performance.now();
    const results = await Promise.all(loops.map((l) => l.run(start + durationMs)));
    const elapsed = performance.now() - start;
    const counts = delta(before, await scrape(env.metricsEndpoint));
    const waits = results.flatMap((r) => r.waits);
    const taken = results.map((r) => r.waits.length);
    const total = waits.length;
    return {
      clients: n,
      impl,
      perSec: (total / elapsed) * 1000,
      wait: summarize(waits),
      spread: Math.max(...taken) / Math.max(1, Math.min(...taken)),
      rpcsPerLock: rpcTotal(counts) / Math.max(1, total),
      counts,
    };
  } finally {
    await Promise.all(sessions.map((s) => s.close()));
  }
}

interface Loop {
  warm(): Promise<void>;
  /** Takes and releases the lock until `until` (performance.now() ms); the waits, in ms. */
  run(until: number): Promise<{ waits: number[] }>;
}

function oursLoop(mutex: Mutex): Loop {
  return {
    warm: async () => (await mutex.lock()).unlock(),
    run: async (until) => {
      const waits: number[] = [];
      while (performance.now() < until) {
        const asked = performance.now();
        const lock = await mutex.lock();
        waits.push(performance.now() - asked);
        await lock.unlock();
      }
      return { waits };
    },
  };
}

function etcd3Loop(client: Etcd3, name: string): Loop {
  const attempt = async (): Promise<{ release(): Promise<void> } | undefined> => {
    const lock = client.lock(name).ttl(10);
    try {
      await lock.acquire();
      return lock;
    } catch (err) {
      if (err instanceof EtcdLockFailedError) return undefined; // held elsewhere: back off and retry
      throw err;
    }
  };
  const take = async (): Promise<{ release(): Promise<void> }> => {
    let backoff = new ExponentialBackoff({ initialDelay: 5, maxDelay: 500 }).next();
    for (;;) {
      const lock = await attempt();
      if (lock) return lock;
      await sleep(backoff.duration);
      backoff = backoff.next(undefined);
    }
  };
  return {
    warm: async () => (await take()).release(),
    run: async (until) => {
      const waits: number[] = [];
      while (performance.now() < until) {
        const asked = performance.now();
        const lock = await take();
        waits.push(performance.now() - asked);
        await lock.release();
      }
      return { waits };
    },
  };
}
