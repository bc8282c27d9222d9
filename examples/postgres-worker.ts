/**
 * A worker that writes into PostgreSQL only while it leads, every write fenced by its term's token: a
 * leader that was paused or cut off and is no longer the leader cannot overwrite its successor's writes.
 *
 *   ETCD_ENDPOINTS=127.0.0.1:2379 DATABASE_URL=postgres://postgres@127.0.0.1/postgres WORKER_ID=a \
 *     npx tsx examples/postgres-worker.ts
 *
 * Run two; stop the leader (Ctrl-C) or pause it (`kill -STOP <pid>`, later `kill -CONT <pid>`): the other
 * takes over, and the paused one's writes are refused by Postgres when it wakes. Each leader appends a row
 * to `worker_ticks` every second, with its token. Needs `npm i pg`.
 *
 * Environment: ETCD_ENDPOINTS (comma-separated), DATABASE_URL, WORKER_ID, ELECTION, TTL (seconds,
 * default 5), TICKS (stop after this many fenced writes; unset: run until SIGTERM / Ctrl-C).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Etcd3 } from "etcd3";
import pg from "pg";
import { createFenceTable, withFence } from "../src/adapters/postgres.js";
import { LeaderElector, isElectionError, type Term } from "../src/index.js";

const id = process.env.WORKER_ID ?? `worker-${process.pid}`;
const hosts = (process.env.ETCD_ENDPOINTS ?? "127.0.0.1:2379").split(",");
const name = process.env.ELECTION ?? "examples/postgres-worker";
const ttl = Number(process.env.TTL ?? 5);
const ticks = process.env.TICKS ? Number(process.env.TICKS) : Infinity;
const log = (msg: string, fields: object = {}): void =>
  console.log(JSON.stringify({ worker: id, msg, ...fields }, (_k, v: unknown) => (typeof v === "bigint" ? `${v}` : v)));

const client = new Etcd3({ hosts });
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1/postgres" });
pool.on("error", (err) => log("idle database connection failed", { err: err.message }));

// Once at start-up: both are idempotent (in production, put them in your migrations).
await createFenceTable(pool);
await pool.query(
  "CREATE TABLE IF NOT EXISTS worker_ticks (id bigserial PRIMARY KEY, worker text NOT NULL, token bigint NOT NULL, at timestamptz NOT NULL DEFAULT now())",
);

const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

let written = 0;

async function lead(term: Term): Promise<void> {
  log("leading", { token: term.token });
  while (!term.signal.aborted && written < ticks) {
    try {
      // One transaction: the fence row of `name` moves to our token unless a newer leader's is there,
      // then our write; a stale token rejects with NOT_LEADER and nothing is written.
      await withFence(pool, term, name, async (tx) => {
        await tx.query("INSERT INTO worker_ticks (worker, token) VALUES ($1, $2)", [id, term.token.toString()]);
      });
      written++;
      log("wrote", { token: term.token, written });
    } catch (err) {
      if (isElectionError(err, "FENCE_BUSY")) continue; // a stalled predecessor holds the row: retry
      if (isElectionError(err, "NOT_LEADER")) return log("refused: no longer the leader", { token: term.token });
      throw err;
    }
    await sleep(1_000, undefined, { signal: term.signal }).catch(() => undefined);
  }
  if (written >= ticks) stop.abort();
}

const elector = new LeaderElector({ client, name, identity: id, ttl, onStartedLeading: lead });
try {
  await elector.run({ signal: stop.signal });
} finally {
  await pool.end();
  client.close();
}
log("done", { written });
