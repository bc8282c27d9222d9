/**
 * ShardedElector: how long the shards take to settle again after a join, a SIGTERM (graceful stop) and a
 * SIGKILL of a member, how many move against the minimum, what etcd handles for each change (from its
 * own /metrics), and what one member costs at S = 2,000 (MAX_SHARDS; --shards for another). Standalone:
 *
 *   npx tsx bench/sharded.ts [--quick] [--ttl T] [--large [--shards S]]   # own etcd (test harness); markdown
 *
 * Members run in this process (their own client each), except the one SIGKILLed, which runs in a child
 * (test/support/sharded-worker.ts). "Settled": every shard held in etcd by one of the members it should
 * see, each holding floor(S/M) or ceil(S/M), and the (sticky) assignment of those holders moving nothing.
 */
import { fileURLToPath } from "node:url";
import type { Etcd3 } from "etcd3";
import { ShardedElector } from "../src/index.js";
import { assignShards, countMoves } from "../src/sharding/assignment.js";
import { Worker } from "../test/support/child.js";
import { startEtcd } from "../test/support/etcd.js";
import globalSetup from "../test/support/global-setup.js";
import { delta, describeCounts, openNow, scrape, type Counts } from "./etcd-metrics.js";

const quick = process.argv.includes("--quick");
const arg = (flag: string): string | undefined => process.argv[process.argv.indexOf(flag) + 1];
const TTL = Number(process.argv.includes("--ttl") ? arg("--ttl") : 3);
const largeOnly = process.argv.includes("--large");
const SHARDED_WORKER = fileURLToPath(new URL("../test/support/sharded-worker.ts", import.meta.url));

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

function member(name: string, identity: string, shards: number, c: Etcd3 = etcd.client()): Member {
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
  return { identity, elector, stop, done: elector.run({ signal: stop.signal }) };
}

/** Shard -> identity holding it in etcd (the oldest key of each shard's election; undefined: none). */
async function owners(name: string, shards: number): Promise<(string | undefined)[]> {
  const kvs = await client.getAll().prefix(`${name}/shards/`).sort("Create", "Ascend").strings();
  const out = new Array<string | undefined>(shards).fill(undefined);
  for (const [key, value] of Object.entries(kvs))
    out[Number(key.slice(`${name}/shards/`.length).split("/")[0])] ??= value;
  return out;
}

/**
 * Resolves (with ms since `from`) once the in-process members are at rest as `identities`: every shard
 * owned, each owning floor(S/M) or ceil(S/M), and the (sticky) assignment of these owners moving nothing.
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
    const now = await owners(name, shards);
    const ok =
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
}

async function changes(shards: number, sizes: number[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const m of sizes) {
    const name = `bench/sharded-${group++}`;
    const members: Member[] = [];
    for (let i = 0; i < m; i++) members.push(member(name, `n${i}`, shards));
    await settled(
      name,
      members,
      members.map((x) => x.identity),
      shards,
      performance.now(),
    );
    const ids = members.map((x) => x.identity);
    // A join: member m+1.
    let before = await scrape(endpoint);
    let t = performance.now();
    let owned = await owners(name, shards);
    const joiner = member(name, `n${m}`, shards);
    const ms = await settled(name, [...members, joiner], [...ids, joiner.identity], shards, t);
    let after = await owners(name, shards);
    rows.push({
      change: "join",
      m,
      ms,
      moves: countMoves(owned as string[], after as string[]),
      minimum: after.filter((o) => o === joiner.identity).length,
      counts: delta(before, await scrape(endpoint)),
    });
    // A graceful stop of the joiner (SIGTERM in a real worker): its shards move back.
    before = await scrape(endpoint);
    t = performance.now();
    owned = after;
    joiner.stop.abort();
    const stopped = await settled(name, members, ids, shards, t);
    await joiner.done;
    after = await owners(name, shards);
    rows.push({
      change: "SIGTERM",
      m: m + 1,
      ms: stopped,
      moves: countMoves(owned as string[], after as string[]),
      minimum: owned.filter((o) => o === joiner.identity).length,
      counts: delta(before, await scrape(endpoint)),
    });
    // A SIGKILL of a member in its own process: its shards move once its lease expires.
    const worker = Worker.startScript(SHARDED_WORKER, {
      hosts: etcd.endpoints,
      ttl: TTL,
      name,
      shards,
      identity: `n${m}`,
    });
    await settled(name, members, [...ids, `n${m}`], shards, performance.now());
    const renewals = worker.events.filter((e) => e.type === "renewed").length;
    while (worker.events.filter((e) => e.type === "renewed").length === renewals)
      await new Promise((r) => setTimeout(r, 2));
    before = await scrape(endpoint);
    owned = await owners(name, shards);
    t = performance.now();
    await worker.kill();
    const killedMs = await settled(name, members, ids, shards, t);
    rows.push({
      change: "SIGKILL",
      m: m + 1,
      ms: killedMs,
      moves: countMoves(owned as string[], (await owners(name, shards)) as string[]),
      minimum: owned.filter((o) => o === `n${m}`).length,
      counts: delta(before, await scrape(endpoint)),
    });
    for (const x of members) x.stop.abort();
    await Promise.all(members.map((x) => x.done));
    log(`M = ${m} done`);
  }
  return rows;
}

/** One member alone with `shards` shards: time to own them all, heap, and what etcd holds for it. */
async function large(shards: number): Promise<string[]> {
  const name = `bench/sharded-${group++}`;
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const before = await scrape(endpoint);
  const t = performance.now();
  const m = member(name, "solo", shards);
  let ms: number;
  try {
    ms = await settled(name, [m], ["solo"], shards, t, 180_000);
  } catch (err) {
    const owned = m.elector.owned().length;
    const sessions = m.elector.metrics().sessions;
    m.stop.abort();
    await m.done;
    return [`- S = ${shards}, one member: ${String(err)}; it owned ${owned}, sessions made ${sessions}.`];
  }
  const sessions = m.elector.metrics().sessions;
  global.gc?.();
  const heap = process.memoryUsage().heapUsed - heapBefore;
  const after = await scrape(endpoint);
  const streams = openNow(after);
  const counts = delta(before, after);
  const keys = (await client.getAll().prefix(`${name}/`).keys()).length;
  m.stop.abort();
  const stopAt = performance.now();
  await m.done;
  const stopMs = performance.now() - stopAt;
  return [
    `- S = ${shards}, one member: all owned after ${(ms / 1000).toFixed(1)} s (sessions made: ${sessions}); keys in etcd ${keys}; heap +${(heap / 2 ** 20).toFixed(0)} MiB;`,
    `  etcd streams open (whole server, this member's and the bench's client): ${JSON.stringify(streams)};`,
    `  RPCs to own them all: ${describeCounts(counts)}; stop (every shard handed over, key deleted) ${(stopMs / 1000).toFixed(1)} s.`,
  ];
}

try {
  const sizes = quick ? [2, 3] : [2, 4, 6, 8];
  const shards = quick ? 64 : 256;
  const rows = largeOnly ? [] : await changes(shards, sizes);
  const table = [
    `## ShardedElector, S = ${shards}, TTL ${TTL} s`,
    "",
    "| change | members before | settled after | moves (minimum) | etcd RPCs for the change |",
    "| --- | ---: | ---: | ---: | --- |",
    ...rows.map(
      (r) =>
        `| ${r.change} | ${r.m} | ${Math.round(r.ms)} ms | ${r.moves} (${r.minimum}) | ${describeCounts(r.counts)} |`,
    ),
  ];
  console.log(table.join("\n"));
  const largeShards = process.argv.includes("--shards") ? Number(arg("--shards")) : quick ? 1000 : 2000;
  console.log(["", ...(await large(largeShards))].join("\n"));
} finally {
  client.close();
  await etcd.close();
  await teardown?.();
}
