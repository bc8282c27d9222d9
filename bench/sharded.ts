/**
 * ShardedElector: how long the shards take to settle again after a join, a stop() in process, a SIGTERM
 * and a SIGKILL of a member process, how many move against the minimum, what etcd handles for each change
 * (RPCs, watch events delivered: its own /metrics), keepalives per second at rest against the model
 * (M x 3 / TTL), and what one member costs (heap, streams, watchers) at S = 2,000 (MAX_SHARDS; --shards
 * for others, comma-separated). Standalone:
 *
 *   node --expose-gc --import tsx bench/sharded.ts [--quick] [--ttl T] [--large [--shards S[,S...]]]
 *
 * Own etcd (test harness); prints markdown. Members run in this process (their own client each), except
 * the ones SIGTERMed and SIGKILLed, which run in a child (test/support/sharded-worker.ts). "Settled":
 * every shard held in etcd by one of the members it should see, each holding floor(S/M) or ceil(S/M),
 * nobody else waiting on a shard, and the (sticky) assignment of those holders moving nothing.
 */
import { fileURLToPath } from "node:url";
import { ShardedElector } from "../src/index.js";
import { assignShards, countMoves } from "../src/sharding/assignment.js";
import { Worker } from "../test/support/child.js";
import { startEtcd } from "../test/support/etcd.js";
import globalSetup from "../test/support/global-setup.js";
import { isAlive } from "../test/support/process-alive.js";
import { waitFor } from "../test/support/wait.js";
import { sleep } from "./stats.js";
import {
  delta,
  describeCounts,
  openNow,
  scrape,
  total,
  traffic,
  type Counts,
  type Samples,
  type StreamTraffic,
} from "./etcd-metrics.js";

const quick = process.argv.includes("--quick");
const arg = (flag: string): string | undefined => process.argv[process.argv.indexOf(flag) + 1];
const TTL = Number(process.argv.includes("--ttl") ? arg("--ttl") : 3);
const largeOnly = process.argv.includes("--large");
const SHARDED_WORKER = fileURLToPath(new URL("../test/support/sharded-worker.ts", import.meta.url));
// Any process warning fails the run (as bench/run.ts's): many shards must not make Node warn about listeners.
const warnings: string[] = [];
process.on("warning", (w) => void warnings.push(`${w.name}: ${w.message}`));

interface Member {
  identity: string;
  elector: ShardedElector;
  stop: AbortController;
  done: Promise<void>;
}

const teardown = await globalSetup(); // picks and builds the etcd image, as the tests' and the chaos run's
const etcd = await startEtcd();
const endpoint = etcd.endpoints[0]!;
const client = etcd.client();
const log = (m: string): void => void process.stderr.write(`[sharded bench] ${m}\n`);
let group = 0;

/** A member in this process, on a client of its own (closed once it has stopped). */
function member(name: string, identity: string, shards: number): Member {
  const c = etcd.client();
  const stop = new AbortController();
  const elector = new ShardedElector({
    client: c,
    name,
    shards,
    identity,
    ttl: TTL,
    logger: false,
    onAcquired: (_shard, term) =>
      new Promise<void>((resolve) => term.signal.addEventListener("abort", () => resolve(), { once: true })),
  });
  return { identity, elector, stop, done: elector.run({ signal: stop.signal }).finally(() => c.close()) };
}

/** Shard -> identity holding it in etcd (the oldest key of each shard's election; undefined: none). */
async function owners(name: string, shards: number): Promise<(string | undefined)[]> {
  return (await shardKeys(name, shards)).owners;
}

/** The owners, and how many keys the shards' elections hold (S at rest: nobody waiting). */
async function shardKeys(name: string, shards: number): Promise<{ owners: (string | undefined)[]; keys: number }> {
  const kvs = await client.getAll().prefix(`${name}/shards/`).sort("Create", "Ascend").strings();
  const out = new Array<string | undefined>(shards).fill(undefined);
  for (const [key, value] of Object.entries(kvs))
    out[Number(key.slice(`${name}/shards/`.length).split("/")[0])] ??= value;
  return { owners: out, keys: Object.keys(kvs).length };
}

/**
 * Resolves (with ms since `from`) once the in-process members are at rest as `identities`: every shard
 * owned, each owning floor(S/M) or ceil(S/M), nobody waiting on a shard (S keys: every hand-over and
 * withdrawn campaign done), and the (sticky) assignment of these owners moving nothing.
 */
async function settled(
  name: string,
  members: Member[],
  identities: string[],
  shards: number,
  from: number,
  limitMs = 60_000,
): Promise<number> {
  const ids = identities.map((id) => ({ id, identity: id }));
  const fair = [Math.floor(shards / identities.length), Math.ceil(shards / identities.length)];
  for (;;) {
    const { owners: now, keys } = await shardKeys(name, shards);
    const ok =
      keys === shards &&
      now.every((o) => o !== undefined && identities.includes(o)) &&
      identities.every((id) => fair.includes(now.filter((o) => o === id).length)) &&
      members.every((m) => m.elector.owned().length === now.filter((o) => o === m.identity).length) &&
      countMoves(now as string[], assignShards(ids, shards, now)) === 0;
    if (ok && members.every((m) => m.elector.metrics().members === identities.length)) return performance.now() - from;
    if (performance.now() - from > limitMs)
      throw new Error(`not settled within ${limitMs / 1000} s (${identities.join(",")}, ${shards} shards)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Row {
  change: string;
  m: number;
  ms: number;
  moves: number;
  minimum: number;
  counts: Counts;
  traffic: StreamTraffic;
  /** Members watching the group after the change: the model's M in M x (1 + 2k). */
  watching: number;
}

interface AtRest {
  m: number;
  seconds: number;
  traffic: StreamTraffic;
}

/**
 * Resolves with a scrape once etcd is quiet: no watch event delivered, no stream opened or closed and no
 * watcher made or cancelled over the last second (within 20 s; then the last scrape).
 */
async function quiet(): Promise<Samples> {
  let last = await scrape(endpoint);
  for (let i = 0; i < 20; i++) {
    await sleep(1000);
    const now = await scrape(endpoint);
    const [a, b] = [openNow(last), openNow(now)];
    const still =
      traffic(last, now).watchEvents === 0 &&
      a.keepAliveStreams === b.keepAliveStreams &&
      a.watchStreams === b.watchStreams &&
      a.watchers === b.watchers;
    last = now;
    if (still) return now;
  }
  log("etcd not quiet after 20 s");
  return last;
}

/** A member in a child process, started and settled in the group beside `members`. */
async function child(name: string, members: Member[], identity: string, shards: number): Promise<[Worker, number]> {
  const worker = Worker.startScript(SHARDED_WORKER, { hosts: etcd.endpoints, ttl: TTL, name, shards, identity });
  const pid = (await worker.next("started", 60_000)).pid as number;
  await settled(name, members, [...members.map((x) => x.identity), identity], shards, performance.now());
  // Just after a keepalive, so a SIGKILL's wait is a whole TTL (the worst case but for a lost keepalive).
  const renewed = (): number => worker.events.filter((e) => e.type === "renewed").length;
  const renewals = renewed();
  // A keepalive comes every TTL/3.
  await waitFor(() => renewed() > renewals, {
    timeoutMs: 2 * TTL * 1000,
    intervalMs: 2,
    description: `a keepalive of ${identity}`,
  });
  return [worker, pid];
}

/** The sharded worker's own account: every shard it acquired it saw end (handed over gracefully). */
function handedOverAll(worker: Worker): boolean {
  const acquired = worker.events.filter((e) => e.type === "acquired").length;
  return acquired > 0 && worker.events.filter((e) => e.type === "ended").length === acquired;
}

async function changes(shards: number, sizes: number[]): Promise<{ rows: Row[]; rest: AtRest[]; exits: number[] }> {
  const rows: Row[] = [];
  const rest: AtRest[] = [];
  const exits: number[] = [];
  for (const m of sizes) {
    const name = `bench/sharded-${group++}`;
    const members: Member[] = [];
    for (let i = 0; i < m; i++) members.push(member(name, `n${i}`, shards));
    const ids = members.map((x) => x.identity);
    await settled(name, members, ids, shards, performance.now());
    // At rest (once the start's stragglers are done): keepalives, and watch events (none expected), over 3 TTLs.
    const restFrom = await quiet();
    const restAt = performance.now();
    await sleep(TTL * 3000);
    const restEnd = await scrape(endpoint);
    rest.push({ m, seconds: (performance.now() - restAt) / 1000, traffic: traffic(restFrom, restEnd) });

    /** Runs `change`, then waits until the group is settled as `identities`; one row. */
    const measure = async (
      change: string,
      identities: string[],
      leaver: string | undefined,
      act: () => Promise<void> | void,
      inProcess: Member[] = members,
    ): Promise<void> => {
      const before = await scrape(endpoint);
      const owned = await owners(name, shards);
      const t = performance.now();
      await act();
      const ms = await settled(name, inProcess, identities, shards, t);
      const after = await owners(name, shards);
      const end = await scrape(endpoint);
      const moves = countMoves(owned as string[], after as string[]);
      rows.push({
        change,
        m: leaver === undefined ? identities.length - 1 : identities.length + 1,
        ms,
        moves,
        minimum:
          leaver === undefined
            ? after.filter((o) => o === identities.at(-1)).length
            : owned.filter((o) => o === leaver).length,
        counts: delta(before, end),
        traffic: traffic(before, end),
        watching: identities.length,
      });
    };

    // A join: member m+1, in this process.
    const inProcess = [...members];
    await measure(
      "join",
      [...ids, `n${m}`],
      undefined,
      () => void inProcess.push(member(name, `n${m}`, shards)),
      inProcess,
    );
    const joiner = inProcess.at(-1)!;
    // A stop() of the joiner in this process: its shards move back.
    await measure("stop() in process", ids, joiner.identity, () => joiner.stop.abort());
    await joiner.done;
    // A SIGTERM of a member process: it hands every shard over and exits by itself.
    const [termed, termedPid] = await child(name, members, `n${m}`, shards);
    let termAt = 0;
    await measure("SIGTERM", ids, `n${m}`, () => {
      termAt = Date.now();
      process.kill(termedPid, "SIGTERM");
    });
    // Timed by the worker itself as it exits (wall clock), not by when this bench looked.
    const exited = (await termed.next("exited", 30_000)) as { at?: number };
    await waitFor(() => !isAlive(termedPid), {
      timeoutMs: 30_000,
      intervalMs: 10,
      description: "the SIGTERMed worker gone",
    });
    exits.push((exited.at ?? Date.now()) - termAt);
    if (!handedOverAll(termed))
      throw new Error(`the SIGTERMed worker did not see every term end: ${JSON.stringify(termed.events)}`);
    await termed.kill();
    // A SIGKILL of a member process: its shards move once its lease expires.
    const [killed] = await child(name, members, `n${m}`, shards);
    await measure("SIGKILL", ids, `n${m}`, () => killed.kill());
    for (const x of members) x.stop.abort();
    await Promise.all(members.map((x) => x.done));
    log(`M = ${m} done`);
  }
  return { rows, rest, exits };
}

interface Large {
  shards: number;
  /** Why it did not settle, if it did not. */
  error?: string;
  owned: number;
  sessions: number;
  ms: number;
  keys: number;
  heapMiB: number;
  /** This member's, from etcd: open now less open before it started. */
  keepAliveStreams: number;
  watchStreams: number;
  watchers: number;
  leasesGranted: number;
  counts: Counts;
  stopMs: number;
}

/** One member alone with `shards` shards: time to own them all, heap, and what etcd holds for it. */
async function large(shards: number): Promise<Large> {
  const name = `bench/sharded-${group++}`;
  const before = await quiet();
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const t = performance.now();
  const m = member(name, "solo", shards);
  const result: Large = {
    shards,
    owned: 0,
    sessions: 0,
    ms: Number.NaN,
    keys: 0,
    heapMiB: Number.NaN,
    keepAliveStreams: 0,
    watchStreams: 0,
    watchers: 0,
    leasesGranted: 0,
    counts: { rpcs: {}, opened: {} },
    stopMs: Number.NaN,
  };
  try {
    result.ms = await settled(name, [m], ["solo"], shards, t, 180_000);
    const after = await quiet(); // every own-key watch made
    global.gc?.();
    result.heapMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    const [was, now] = [openNow(before), openNow(after)];
    result.keepAliveStreams = now.keepAliveStreams - was.keepAliveStreams;
    result.watchStreams =
      total(after, "etcd_debugging_mvcc_watch_stream_total") - total(before, "etcd_debugging_mvcc_watch_stream_total");
    result.watchers = now.watchers - was.watchers;
    result.leasesGranted =
      total(after, "etcd_debugging_lease_granted_total") - total(before, "etcd_debugging_lease_granted_total");
    result.counts = delta(before, after);
    result.keys = (await client.getAll().prefix(`${name}/`).keys()).length;
  } catch (err) {
    result.error = String(err);
  }
  result.owned = m.elector.owned().length;
  result.sessions = m.elector.metrics().sessions;
  m.stop.abort();
  const stopAt = performance.now();
  await m.done;
  if (result.error === undefined) result.stopMs = performance.now() - stopAt;
  return result;
}

const s1 = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

try {
  const sizes = quick ? [2, 3] : [2, 4, 6, 8];
  const shards = quick ? 64 : 256;
  if (!largeOnly) {
    const { rows, rest, exits } = await changes(shards, sizes);
    console.log(
      [
        `## ShardedElector, S = ${shards}, TTL ${TTL} s`,
        "",
        "| change | members before | settled after | moves (minimum) | etcd RPCs for the change | watch events delivered (model M × (1 + 2k)) |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
        ...rows.map(
          (r) =>
            `| ${r.change} | ${r.m} | ${Math.round(r.ms)} ms | ${r.moves} (${r.minimum}) | ${describeCounts(r.counts)} | ${r.traffic.watchEvents} in ${r.traffic.watchResponses} responses (${r.watching * (1 + 2 * r.moves)}) |`,
        ),
        "",
        `SIGTERMed workers exited by themselves, every term ended first, after ${exits.map((e) => s1(e)).join(", ")}.`,
        "",
        `### At rest (S = ${shards}, TTL ${TTL} s): keepalives against the model M × 3 / TTL`,
        "",
        "| members | over | keepalives/s received (model) | leases renewed/s | watch events |",
        "| ---: | ---: | ---: | ---: | ---: |",
        ...rest.map(
          (r) =>
            `| ${r.m} | ${r.seconds.toFixed(1)} s | ${(r.traffic.keepalives / r.seconds).toFixed(2)} (${((r.m * 3) / TTL).toFixed(2)}) | ${(r.traffic.renewals / r.seconds).toFixed(2)} | ${r.traffic.watchEvents} |`,
        ),
      ].join("\n"),
    );
  }
  const largeShards = (process.argv.includes("--shards") ? arg("--shards")! : quick ? "256" : "2000")
    .split(",")
    .map(Number);
  const results: Large[] = [];
  for (const n of largeShards) {
    results.push(await large(n));
    log(`S = ${n} alone done`);
  }
  console.log(
    [
      "",
      `### One member owning every shard (TTL ${TTL} s); streams, watchers and leases are etcd's count for it`,
      "",
      "| S | all owned after | sessions | keys | heap | keepalive streams | watch streams | watchers | leases | RPCs to own them all | stop (all handed over) |",
      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
      ...results.map((r) =>
        r.error !== undefined
          ? `| ${r.shards} | ${r.error}; owned ${r.owned} | ${r.sessions} | | | | | | | | |`
          : `| ${r.shards} | ${s1(r.ms)} | ${r.sessions} | ${r.keys} | +${r.heapMiB.toFixed(1)} MiB | ${r.keepAliveStreams} | ${r.watchStreams} | ${r.watchers} | ${r.leasesGranted} | ${describeCounts(r.counts)} | ${s1(r.stopMs)} |`,
      ),
    ].join("\n"),
  );
} finally {
  client.close();
  await etcd.close();
  await teardown?.();
}
if (warnings.length > 0) {
  console.error(`[sharded bench] FAILED: ${warnings.length} process warning(s):\n  ${warnings.join("\n  ")}`);
  process.exit(1);
}
