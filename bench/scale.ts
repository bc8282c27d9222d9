/**
 * Scale, ours only:
 * - `holders` locks (then as many campaigns) held at once through ONE session, `concurrency` requests
 *   in flight: time to take them all, memory per holder, and the streams and watchers etcd holds for
 *   them (from its /metrics);
 * - `waiters` candidates waiting on ONE name, each with its own session (one key per name per session),
 *   all made from one etcd3 client (they share its channels and watch stream; each has its own
 *   keepalive stream): time to queue them all, memory per waiter, streams and watchers; then hand-overs
 *   among them, counting the RPCs etcd handled around each: the resign's delete and one re-read by the
 *   one waiter whose turn came, nothing else.
 * Any process warning (MaxListenersExceededWarning...) fails the benchmark (run.ts listens).
 */
import { Election, Mutex, Session, type Lock, type Term } from "../src/index.js";
import { BenchWorker } from "./child.js";
import type { BenchEnv } from "./env.js";
import { delta, openNow, scrape, total, type Counts, type Streams } from "./etcd-metrics.js";
import { sleep, summarize, type Summary } from "./stats.js";
import type { ScalePart, ScaleSizes } from "./workers/protocol.js";

export interface HoldersResult {
  kind: "locks" | "campaigns";
  count: number;
  ttl: number;
  concurrency: number;
  /** From the first request to the last one held. */
  acquireMs: number;
  releaseMs: number;
  rssPerHolder: number;
  heapPerHolder: number;
  /** What etcd holds open for them, beyond what it held before. */
  streams: Streams;
}

export interface WaitersResult {
  count: number;
  ttl: number;
  /** Sessions made, concurrently (`concurrency` at a time). */
  sessionsMs: number;
  /** From the first campaign to every waiter's watch in place and its read answered. */
  queueMs: number;
  rssPerWaiter: number;
  heapPerWaiter: number;
  streams: Streams;
  /** Resign → next elected, among all of them. */
  handover: Summary;
  /** RPCs etcd handled around each hand-over (from the resign until 200 ms after the next was elected). */
  wakes: Counts[];
  closeMs: number;
}

export interface ScaleResult {
  holders: HoldersResult[];
  waiters: WaitersResult;
}

/**
 * Each part runs in a fresh process of its own (bench/workers/scale.ts): its memory per holder is
 * measured from that process's own baseline, not over what earlier parts left in the heap. Its process
 * warnings fail the benchmark like this process's own.
 */
export async function scale(env: BenchEnv, sizes: ScaleSizes): Promise<ScaleResult> {
  // The processes start together (that takes a while); the parts run one after the other.
  const parts: ScalePart[] = ["locks", "campaigns", "waiters"];
  const workers = parts.map((part) =>
    BenchWorker.start("scale", {
      endpoints: env.endpoints,
      name: env.prefix(`scale-${part}`),
      identity: part,
      ttl: 0,
      scale: { part, sizes, metricsEndpoint: env.metricsEndpoint, quick: env.quick },
    }),
  );
  try {
    await Promise.all(workers.map((w) => w.next("ready", 60_000)));
    const results: unknown[] = [];
    for (const [i, worker] of workers.entries()) {
      env.log(`scale: ${parts[i]} (in a process of its own)`);
      worker.send({ cmd: "run" });
      results.push((await worker.next("result", 600_000)).result);
      await worker.stop("SIGKILL");
    }
    return {
      holders: [results[0] as HoldersResult, results[1] as HoldersResult],
      waiters: results[2] as WaitersResult,
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop("SIGKILL")));
  }
}

/** One part, in this process (the scale worker's). */
export function runScalePart(
  env: BenchEnv,
  part: ScalePart,
  sizes: ScaleSizes,
): Promise<HoldersResult | WaitersResult> {
  if (part === "waiters") return wait(env, sizes.waiters, sizes.concurrency, sizes.handovers, sizes.waitersTtl);
  return hold(env, part, sizes.holders, sizes.concurrency, sizes.holdersTtl);
}

async function hold(
  env: BenchEnv,
  kind: "locks" | "campaigns",
  count: number,
  concurrency: number,
  ttl: number,
): Promise<HoldersResult> {
  env.log(`scale: ${count} ${kind} held through one session, ${concurrency} in flight`);
  const client = env.client();
  const prefix = env.prefix(kind);
  const base = await quietStreams(env);
  const session = await Session.create(client, { ttl });
  const held: (Lock | Term)[] = [];
  try {
    const mem0 = memory();
    const start = performance.now();
    await pool(count, concurrency, async (i) => {
      held.push(
        kind === "locks"
          ? await new Mutex(session, `${prefix}/${i}`).lock()
          : await new Election(session, `${prefix}/${i}`).campaign("v"),
      );
    });
    const acquireMs = performance.now() - start;
    const mem1 = memory();
    // The keepalive stream opens with the first renewal (TTL/3 after the grant); watches are made
    // asynchronously: count once both are in place.
    await renewed([session]);
    const now = await settledStreams(env, base, { watchers: count });
    const releaseStart = performance.now();
    await pool(held.length, concurrency, (i) => held[i]!.release());
    const releaseMs = performance.now() - releaseStart;
    return {
      kind,
      count,
      ttl,
      concurrency,
      acquireMs,
      releaseMs,
      rssPerHolder: (mem1.rss - mem0.rss) / count,
      heapPerHolder: (mem1.heap - mem0.heap) / count,
      streams: minus(now, base),
    };
  } finally {
    await session.close();
    await client.delete().prefix(prefix);
  }
}

async function wait(
  env: BenchEnv,
  count: number,
  concurrency: number,
  handovers: number,
  ttl: number,
): Promise<WaitersResult> {
  // Each waiter re-reads every TTL/2 (watches are hints): the TTL is long enough that none of those
  // periodic reads falls into the windows where the reads of a hand-over are counted.
  env.log(`scale: ${count} waiters on one name, one session each (TTL ${ttl} s), from one etcd3 client`);
  const client = env.client();
  const name = `${env.prefix("waiters")}/name`;
  const base = await quietStreams(env);
  const mem0 = memory();
  const sessionsStart = performance.now();
  const sessions: Session[] = [];
  await pool(count + 1, concurrency, async () => void sessions.push(await Session.create(client, { ttl })));
  const sessionsMs = performance.now() - sessionsStart;
  const elections = sessions.map((s) => new Election(s, name));
  let current = await elections[0]!.campaign("leader");
  // Who won next, in order: each waiter's campaign reports here when it resolves.
  const won: Term[] = [];
  let notify = (): void => {};
  const queueStart = performance.now();
  const failures: unknown[] = [];
  let closing = false;
  const pending = elections.slice(1).map((e, i) =>
    e.campaign(`waiter-${i}`).then(
      (term) => {
        won.push(term);
        notify();
      },
      (err: unknown) => {
        if (!closing) failures.push(err); // a waiter still queued when the sessions close rejects
      },
    ),
  );
  // Queued: every key in etcd and every waiter's watch in place (etcd's own watcher gauge).
  for (;;) {
    const keys = (await client.getAll().prefix(`${name}/`).keys()).length;
    const watchers = openNow(await scrape(env.metricsEndpoint)).watchers - base.watchers;
    if (keys === count + 1 && watchers >= count) break;
    if (failures.length > 0)
      throw new Error(`scale: ${failures.length} of ${count} campaigns failed, the first with ${String(failures[0])}`, {
        cause: failures[0],
      });
    if (performance.now() - queueStart > 120_000)
      throw new Error(`scale: ${keys} of ${count + 1} keys, ${watchers} of ${count} watchers after 120 s`);
    await sleep(50);
  }
  // ...and every waiter's read after its watch is in place answered: etcd handles no more reads.
  for (let last = -1, since = performance.now(); performance.now() - since < 500;) {
    const reads = total(await scrape(env.metricsEndpoint), "grpc_server_handled_total", 'grpc_method="Range"');
    if (reads !== last) since = performance.now();
    last = reads;
    await sleep(50);
  }
  const queueMs = performance.now() - queueStart - 500;
  const mem1 = memory();

  const times: number[] = [];
  const wakes: Counts[] = [];
  for (let h = 0; h < handovers; h++) {
    const before = await scrape(env.metricsEndpoint);
    const next = new Promise<void>((resolve) => (notify = resolve));
    const start = performance.now();
    await current.resign();
    await next;
    times.push(performance.now() - start);
    current = won[won.length - 1]!;
    await sleep(200); // anything else the hand-over set off (a herd) would arrive meanwhile
    // Unary RPCs only: a session's keepalive stream may open meanwhile (with its first renewal).
    wakes.push({ rpcs: delta(before, await scrape(env.metricsEndpoint)).rpcs, opened: {} });
  }
  // Every session's keepalive stream opens with its first renewal, TTL/3 after its grant.
  await renewed(sessions);
  const now = await settledStreams(env, base, { watchers: count - handovers, keepAliveStreams: count + 1 });
  await current.resign();
  closing = true;
  const closeStart = performance.now();
  await pool(sessions.length, concurrency, (i) => sessions[i]!.close());
  const closeMs = performance.now() - closeStart;
  await Promise.all(pending);
  await client.delete().prefix(`${name}/`);
  return {
    count,
    ttl,
    sessionsMs,
    queueMs,
    rssPerWaiter: (mem1.rss - mem0.rss) / count,
    heapPerWaiter: (mem1.heap - mem0.heap) / count,
    streams: minus(now, base),
    handover: summarize(times),
    wakes,
    closeMs,
  };
}

/** Resolves once every session has renewed its lease (so its keepalive stream is open). */
async function renewed(sessions: Session[]): Promise<void> {
  await Promise.all(sessions.map((s) => new Promise<void>((resolve) => s.once("renewed", () => resolve()))));
}

/** etcd's count of streams and watchers once it stopped changing for a second (what the part before closed is gone). */
async function quietStreams(env: BenchEnv): Promise<Streams> {
  let last = openNow(await scrape(env.metricsEndpoint));
  let since = performance.now();
  const start = since;
  while (performance.now() - since < (env.quick ? 300 : 1000) && performance.now() - start < 30_000) {
    await sleep(100);
    const now = openNow(await scrape(env.metricsEndpoint));
    if (JSON.stringify(now) !== JSON.stringify(last)) since = performance.now();
    last = now;
  }
  return last;
}

/** etcd's count of streams and watchers beyond `base`, once it reached `expect` or stopped changing (10 s at most). */
async function settledStreams(env: BenchEnv, base: Streams, expect: Partial<Streams>): Promise<Streams> {
  let last: Streams | undefined;
  const start = performance.now();
  for (;;) {
    const now = minus(openNow(await scrape(env.metricsEndpoint)), base);
    const reached = Object.entries(expect).every(([k, v]) => now[k as keyof Streams] >= v);
    const still = last !== undefined && JSON.stringify(last) === JSON.stringify(now);
    if (reached || (still && performance.now() - start > 2000) || performance.now() - start > 10_000) return now;
    last = now;
    await sleep(100);
  }
}

/** Runs `task(0..count-1)` with at most `concurrency` at once. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

function memory(): { rss: number; heap: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

function minus(a: Streams, b: Streams): Streams {
  return {
    keepAliveStreams: a.keepAliveStreams - b.keepAliveStreams,
    watchStreams: a.watchStreams - b.watchStreams,
    watchers: a.watchers - b.watchers,
  };
}
