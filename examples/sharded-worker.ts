/**
 * A worker process that owns its share of S shards of work and hands them over cleanly on SIGTERM.
 *
 *   ETCD_ENDPOINTS=127.0.0.1:2379 WORKER_ID=a npx tsx examples/sharded-worker.ts
 *   ETCD_ENDPOINTS=127.0.0.1:2379 npx tsx examples/sharded-worker.ts --demo   # shards moving, as tables
 *
 * Run two or three: each owns floor(S/M) or ceil(S/M) shards; start another and about S/(M+1) move to
 * it; stop one (Ctrl-C, `kill <pid>`) and its shards move at once; SIGKILL it and they move within the
 * TTL. Each shard's work is fenced by its own term's token. It logs JSON lines on stdout.
 *
 * `--demo` starts workers as child processes of this file, adds one, SIGKILLs one and SIGTERMs one, and
 * prints the shard table after each change, then stops them all.
 *
 * Environment: ETCD_ENDPOINTS (comma-separated), WORKER_ID, GROUP, SHARDS (default 16), TTL (seconds,
 * default 5).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Etcd3 } from "etcd3";
import { ShardedElector, shardOf, type Logger } from "../src/index.js";

const hosts = (process.env.ETCD_ENDPOINTS ?? "127.0.0.1:2379").split(",");
const group = process.env.GROUP ?? "examples/sharded";
const shards = Number(process.env.SHARDS ?? 16);
const ttl = Number(process.env.TTL ?? 5);

if (process.argv.includes("--demo")) await demo();
else await work(process.env.WORKER_ID ?? `worker-${process.pid}`);

/** One worker: owns its shards until SIGTERM / Ctrl-C, then hands them over and exits. */
async function work(id: string): Promise<void> {
  const line = (level: string) => (fields: object, msg: string) =>
    process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level, worker: id, msg, ...fields })}\n`);
  const logger: Logger = { debug: () => {}, info: line("info"), warn: line("warn"), error: line("error") };
  const client = new Etcd3({ hosts });
  const stop = new AbortController();
  process.once("SIGTERM", () => stop.abort());
  process.once("SIGINT", () => stop.abort());
  const tenants = Array.from({ length: 100 }, (_, i) => `tenant-${i}`);
  const sharded = new ShardedElector({
    client,
    name: group,
    shards,
    identity: id,
    ttl,
    logger,
    onAcquired: async (shard, term) => {
      const mine = tenants.filter((t) => shardOf(t, shards) === shard);
      logger.info({ shard, token: term.token.toString(), tenants: mine.length }, "shard acquired");
      // The work: a fenced write per tick until the term ends (the next owner's token refuses ours after).
      while (!term.signal.aborted) {
        await term
          .txn()
          .then(client.put(`${group}-state/${shard}`).value(`${id}@${term.token}`))
          .commit()
          .catch((err: unknown) =>
            logger.info({ shard, err }, "fenced write failed (the term is ending, or etcd is away)"),
          ); // the loop sees it
        // Waits a tick or until the term ends; the timer and its abort listener go either way (no
        // listener piles up on the term's signal, one a tick).
        await sleep(1000, undefined, { signal: term.signal }).catch(() => {});
      }
    },
    onReleased: (shard) => logger.info({ shard }, "shard released"),
  });
  sharded.on("assigned", (owned, members) => logger.info({ shards: owned, members }, "assigned"));
  await sharded.run({ signal: stop.signal });
  client.close();
  logger.info({}, "stopped: every shard handed over");
}

/** Starts workers, changes the membership, and prints who owns what after each change. */
async function demo(): Promise<void> {
  const client = new Etcd3({ hosts });
  const self = fileURLToPath(import.meta.url);
  const children = new Map<string, ChildProcess>();
  const startWorker = (id: string): void => {
    const child = spawn(process.execPath, ["--import", "tsx", self], {
      env: { ...process.env, WORKER_ID: id, GROUP: group, SHARDS: String(shards), TTL: String(ttl) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    createInterface({ input: child.stdout }).on("line", () => {}); // drained: their logs are not the demo
    children.set(id, child);
  };
  const owners = async (): Promise<(string | undefined)[]> => {
    const kvs = await client.getAll().prefix(`${group}/shards/`).sort("Create", "Ascend").strings();
    const out = new Array<string | undefined>(shards).fill(undefined);
    for (const [key, value] of Object.entries(kvs)) out[Number(key.split("/").at(-2))] ??= value;
    return out;
  };
  const members = async (): Promise<number> => (await client.getAll().prefix(`${group}/members/`).keys()).length;
  /** Waits until every shard is owned by a live worker and the counts are balanced, then prints the table. */
  const show = async (what: string, live: string[]): Promise<void> => {
    const started = Date.now();
    let table: (string | undefined)[] = [];
    for (;;) {
      // A TTL for a lease to expire, then some: a demo that cannot settle says so instead of hanging.
      if (Date.now() - started > ttl * 1000 + 30_000) throw new Error(`${what}: not settled in ${ttl + 30} s`);
      table = await owners();
      const counts = live.map((id) => table.filter((o) => o === id).length);
      const balanced = counts.every(
        (c) => c === Math.floor(shards / live.length) || c === Math.ceil(shards / live.length),
      );
      if (table.every((o) => o && live.includes(o)) && balanced && (await members()) === live.length) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    console.log(`\n${what} (settled in ${Date.now() - started} ms)`);
    for (const id of live) {
      const mine = table.flatMap((o, s) => (o === id ? [s] : []));
      console.log(`  ${id.padEnd(8)} ${String(mine.length).padStart(3)} shards  ${mine.join(" ")}`);
    }
  };
  try {
    const live = ["w1", "w2", "w3"];
    for (const id of live) startWorker(id);
    await show("3 workers", live);
    startWorker("w4");
    live.push("w4");
    await show("w4 joined", live);
    children.get("w2")!.kill("SIGKILL");
    live.splice(live.indexOf("w2"), 1);
    await show(`w2 killed (SIGKILL: its shards move once its lease expires, TTL ${ttl} s)`, live);
    children.get("w1")!.kill("SIGTERM");
    live.splice(live.indexOf("w1"), 1);
    await show("w1 stopped (SIGTERM: it hands its shards over at once)", live);
  } finally {
    for (const child of children.values()) child.kill("SIGTERM");
    await Promise.all(
      [...children.values()].map((c) =>
        c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once("exit", r)),
      ),
    );
    await client.delete().prefix(`${group}-state/`);
    client.close();
  }
  console.log("\ndemo done");
}
