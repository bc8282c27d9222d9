/**
 * A chaos worker: a library user in its own process, which the runner pauses, kills, stops and cuts
 * off. It runs a LeaderElector and a Mutex loop side by side (role "election"), or a ShardedElector
 * (role "sharded"); whoever holds does blind writes
 * `counter = v + 1` (v read once, at the start of the hold) guarded only by the holding's txn(), and in
 * the same transaction puts `log/<v + 1>` = (token, worker, op id, value). It reports everything it
 * believes, as JSON lines on stdout, timestamped with the system-wide monotonic clock (history.ts).
 *
 * Config comes in CHAOS_WORKER (WorkerConfig). SIGTERM stops it: it resigns, unlocks, closes, and must
 * then exit by itself.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Etcd3 } from "etcd3";
import pg from "pg";
import { withFence } from "../../src/adapters/postgres.js";
import { LeaderElector, Mutex, Session, ShardedElector, type Holding, type Logger } from "../../src/index.js";
import { decisionCounts } from "../../src/queue/decide.js";
import { FAST_RECONNECT } from "../support/probe.js";
import {
  logKey,
  mono,
  shardKind,
  type HoldKind,
  type SessionKind,
  type WorkerReport,
  type WorkerRole,
} from "./history.js";

export interface WorkerConfig {
  id: string;
  role: WorkerRole;
  /** This worker's own proxies, one per member. */
  hosts: string[];
  ttl: number;
  /** The library's default (5 s) unless set. */
  callTimeoutMs?: number;
  election: string;
  mutex: string;
  /** Where each kind's counter and log live: `<prefix>counter`, `<prefix>log/<seq>`. */
  data: Record<"election" | "mutex", string>;
  /**
   * The sharded workload (run by role "sharded"): a ShardedElector of `shards` shards on the group `name`;
   * shard n's counter and log live under `<data>n/`.
   */
  sharded?: { name: string; shards: number; data: string };
  /** Pause between writes while holding. */
  writeEveryMs: number;
  /**
   * `--store postgres`: the counter and log live in this Postgres (tables of postgres-store.ts), each
   * write one `withFence` transaction on the resource `<data prefix>`, instead of a guarded etcd txn.
   */
  postgres?: { port: number };
}

const config = JSON.parse(process.env.CHAOS_WORKER ?? "{}") as WorkerConfig;
const report = (r: WorkerReport): void => void process.stdout.write(`${JSON.stringify({ ...r, t: mono() })}\n`);
const codeOf = (e: unknown): string => {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" || typeof code === "number" ? String(code) : "ERROR";
};
const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

// The runner owns us: if it goes away (our stdin closes), so do we. Unref'd, so stdin alone does not
// keep a stopped worker alive.
process.stdin.on("end", () => process.exit(3)).resume();
(process.stdin as unknown as { unref?: () => void }).unref?.();

/** How this process's waiters decided their turns so far: the report sums the last of each process. */
const reportDecisions = (): void => {
  const d = decisionCounts();
  report({
    e: "decisions",
    atEvent: d.decidedSerializable,
    linearizable: d.decidedLinearizable,
    stillBlocked: d.stillBlocked,
    vanished: d.vanished,
    fellBack: d.fellBack,
  });
};

/**
 * Warnings and errors become reports. The elector makes its sessions itself: we learn their lease ids
 * from the lines a session logs when it is created and when it is lost.
 */
const logLease = (fields: object, msg: string, kind: SessionKind): void => {
  const leaseId = (fields as { leaseId?: unknown }).leaseId;
  if (typeof leaseId !== "string") return;
  if (msg === "session created") report({ e: "session", kind, lease: leaseId });
  else if (msg === "session lost") report({ e: "session", kind, lease: leaseId, lost: true });
};
const logLine = (level: string, fields: object, msg: string): void => {
  const err = (fields as { err?: unknown }).err;
  report({
    e: "log",
    level,
    msg,
    code: codeOf(err),
    err: err === undefined ? undefined : messageOf(err).slice(0, 300),
  });
};
const loggerFor = (kind: SessionKind): Logger => ({
  debug: () => {},
  info: (fields, msg) => logLease(fields, msg, kind),
  warn: (fields, msg) => logLine("warn", fields, msg),
  error: (fields, msg) => {
    logLease(fields, msg, kind);
    logLine("error", fields, msg);
  },
});

// Reconnect fast after an outage; the library's own channels take the client's gRPC options.
const client = new Etcd3({ hosts: config.hosts, grpcOptions: FAST_RECONNECT });
const stop = new AbortController();
process.once("SIGTERM", () => stop.abort());
let ops = 0;

/** Thrown by a hold whose write outcome is unknown: the next hold must start from what etcd has. */
class StepDown extends Error {}

/** Whether the hold is over: the holding's own loss error. */
const isLoss = (e: unknown): boolean => ["NOT_LEADER", "LOCK_LOST"].includes(codeOf(e));

/**
 * Reports the hold, reads the counter once (guarded), then writes blindly until the hold ends or
 * `until` (monotonic ms) passes. After a write whose outcome is unknown it throws StepDown: another
 * write from the remembered v could overwrite the unknown one if that landed.
 */
async function hold(kind: HoldKind, holding: Holding, until = Infinity): Promise<void> {
  const token = holding.token.toString();
  report({ e: "start", kind, token, key: holding.key });
  reportDecisions();
  const ended = (): void => {
    const reason = holding.signal.reason as { code?: string; message?: string; cause?: unknown };
    report({
      e: "end",
      kind,
      token,
      code: codeOf(reason),
      message: messageOf(reason),
      cause: reason?.cause === undefined ? undefined : messageOf(reason.cause),
    });
  };
  if (holding.signal.aborted) ended();
  else holding.signal.addEventListener("abort", ended, { once: true });

  const prefix = dataOf(kind);
  const read = await readCounter(holding, prefix);
  if (read === undefined) return;
  let v: number = read;
  while (!holding.signal.aborted && mono() < until) {
    const op = `${config.id}-${++ops}`;
    const value = v + 1;
    report({ e: "op", kind, op, token, value });
    try {
      const entry = { token, worker: config.id, op, value };
      if (pool) await writePostgres(pool, holding, prefix, entry);
      else
        await holding
          .txn()
          .then(
            client.put(`${prefix}counter`).value(String(value)),
            client.put(logKey(prefix, value)).value(JSON.stringify(entry)),
          )
          .commit();
      report({ e: "ok", kind, op });
      v = value;
    } catch (e) {
      if (isLoss(e)) {
        // The guard failing in etcd (or the fence in Postgres) is what fencing is for; a refusal before
        // sending is the clock's.
        report({
          e: "rejected",
          kind,
          op,
          stale: /refused by etcd|Postgres refused/.test(messageOf(e)),
          code: codeOf(e),
        });
        return;
      }
      if (codeOf(e) === "FENCE_BUSY") {
        // Nothing written: a paused predecessor holds the fence row until Postgres ends its transaction.
        report({ e: "rejected", kind, op, stale: false, code: codeOf(e) });
        continue;
      }
      report({ e: "unknown", kind, op, code: codeOf(e), message: messageOf(e) });
      throw new StepDown(`write ${op} outcome unknown (${codeOf(e)}): stepping down`);
    }
    await sleep(config.writeEveryMs * (0.5 + Math.random()), undefined, { signal: holding.signal }).catch(() => {});
  }
}

/** Where a kind's counter and log live. */
function dataOf(kind: HoldKind): string {
  if (kind === "election" || kind === "mutex") return config.data[kind];
  return `${config.sharded!.data}${kind.slice("shard/".length)}/`;
}

/** The counter, read under the hold's guard (retried: a read is harmless to repeat); undefined once the hold ends. */
async function readCounter(holding: Holding, prefix: string): Promise<number | undefined> {
  let told = false;
  while (!holding.signal.aborted) {
    try {
      if (pool) return await readPostgres(pool, holding, prefix);
      const res = await holding
        .txn()
        .then(client.get(`${prefix}counter`))
        .commit();
      const kv = res.responses[0]?.response_range.kvs[0];
      return kv ? Number(kv.value.toString()) : 0;
    } catch (e) {
      if (isLoss(e)) return undefined;
      if (!told)
        report({
          e: "log",
          level: "warn",
          msg: "reading the counter failed; trying again",
          code: codeOf(e),
          err: messageOf(e),
        });
      told = true;
      await sleep(100);
    }
  }
  return undefined;
}

const pool = config.postgres
  ? new pg.Pool({ host: "127.0.0.1", port: config.postgres.port, user: "postgres", database: "postgres", max: 4 })
  : undefined;
// A connection Postgres ended while it sat idle in the pool (the idle timeout of a paused transaction).
pool?.on("error", (err) =>
  report({ e: "log", level: "warn", msg: "idle Postgres connection failed", err: messageOf(err) }),
);
const FENCE_OPTIONS = { lockTimeoutMs: 1000, idleTimeoutMs: 5000, logger: false } as const;

/** One fenced transaction: counter = value, log/<value> = entry, each with its write count and a revision. */
async function writePostgres(
  db: pg.Pool,
  holding: Holding,
  resource: string,
  entry: { token: string; worker: string; op: string; value: number },
): Promise<void> {
  await withFence(
    db,
    holding,
    resource,
    async (tx) => {
      await tx.query(
        `INSERT INTO chaos_counter (prefix, value, version, rev) VALUES ($1, $2, 1, nextval('chaos_rev'))
         ON CONFLICT (prefix) DO UPDATE SET value = EXCLUDED.value, version = chaos_counter.version + 1, rev = EXCLUDED.rev`,
        [resource, entry.value],
      );
      await tx.query(
        `INSERT INTO chaos_log (prefix, seq, entry, version, rev) VALUES ($1, $2, $3, 1, nextval('chaos_rev'))
         ON CONFLICT (prefix, seq) DO UPDATE SET entry = EXCLUDED.entry, version = chaos_log.version + 1, rev = EXCLUDED.rev`,
        [resource, entry.value, JSON.stringify(entry)],
      );
    },
    FENCE_OPTIONS,
  );
}

/** The counter, read in a fenced transaction (which also moves the fence to our token). */
async function readPostgres(db: pg.Pool, holding: Holding, resource: string): Promise<number> {
  return withFence(
    db,
    holding,
    resource,
    async (tx) => {
      const { rows } = await tx.query<{ value: number }>("SELECT value FROM chaos_counter WHERE prefix = $1", [
        resource,
      ]);
      return rows[0]?.value ?? 0;
    },
    FENCE_OPTIONS,
  );
}

const elector =
  config.role === "election" &&
  new LeaderElector({
    client,
    name: config.election,
    identity: config.id,
    ttl: config.ttl,
    callTimeoutMs: config.callTimeoutMs,
    logger: loggerFor("election"),
    // Throwing (StepDown) makes the elector resign and campaign again.
    onStartedLeading: (term) => hold("election", term),
    onNewLeader: (leader) =>
      report({ e: "observed", key: leader?.key ?? null, token: leader?.token.toString() ?? null }),
  });

/** Lock, hold for a while, unlock, again; a new session (with backoff) after a lost one. */
async function mutexLoop(): Promise<void> {
  let session: Session | undefined;
  let backoff = 100;
  while (!stop.signal.aborted) {
    try {
      if (!session || session.signal.aborted) {
        void session?.close();
        session = await Session.create(client, {
          ttl: config.ttl,
          callTimeoutMs: config.callTimeoutMs,
          logger: loggerFor("mutex"),
        });
      }
      const lock = await new Mutex(session, config.mutex).lock({
        signal: AbortSignal.any([stop.signal, session.signal]),
      });
      try {
        await hold("mutex", lock, mono() + 300 + Math.random() * 600);
      } finally {
        await lock.unlock();
      }
      backoff = 100;
      await sleep(50 + Math.random() * 250, undefined, { signal: stop.signal }).catch(() => {});
    } catch (e) {
      if (stop.signal.aborted) break;
      if (!(e instanceof StepDown) && !isLoss(e) && codeOf(e) !== "SESSION_LOST")
        report({ e: "log", level: "warn", msg: `mutex loop: ${messageOf(e)}`, code: codeOf(e) });
      await sleep(backoff, undefined, { signal: stop.signal }).catch(() => {});
      backoff = Math.min(backoff * 2, config.ttl * 1000);
    }
  }
  await session?.close();
}

// The runner's commands, one JSON line each on stdin: the handover nemesis asks the leader to hand over.
let pending = "";
process.stdin.on("data", (d: Buffer) => {
  pending += d.toString();
  for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    const cmd = JSON.parse(line) as { cmd: string; to: string; timeoutMs: number };
    if (cmd.cmd !== "handover" || !elector) continue;
    elector.handOver(cmd.to, { timeoutMs: cmd.timeoutMs }).then(
      (leader) => report({ e: "log", level: "info", msg: `handover to ${cmd.to}: ${leader.value.toString()} leads` }),
      (err: unknown) =>
        report({
          e: "log",
          level: "info",
          msg: `handover to ${cmd.to} failed`,
          code: codeOf(err),
          err: messageOf(err),
        }),
    );
  }
});

/** The sharded workload: each shard's term holds and writes as the election's does, on its own counter. */
const sharded =
  config.role === "sharded" &&
  new ShardedElector({
    client,
    name: config.sharded!.name,
    shards: config.sharded!.shards,
    identity: config.id,
    ttl: config.ttl,
    callTimeoutMs: config.callTimeoutMs,
    logger: loggerFor("sharded"),
    // Throwing (StepDown) releases the shard; it is campaigned for again.
    onAcquired: (shard, term) => hold(shardKind(shard), term),
  });

const status = setInterval(
  () =>
    report({
      e: "status",
      leader: elector ? elector.isLeader() : false,
      // A stopped sharded elector is unhealthy (it serves nothing): sampled only until the stop.
      healthy: elector ? elector.healthy() : !sharded || stop.signal.aborted || sharded.healthy(),
    }),
  250,
);
report({ e: "ready" });
await Promise.all(
  elector ? [elector.run({ signal: stop.signal }), mutexLoop()] : sharded ? [sharded.run({ signal: stop.signal })] : [],
);
clearInterval(status);
await pool?.end();
client.close();
reportDecisions();
report({ e: "stopped" });
// Nothing else: the process must now exit by itself (design: Every outage ends in a working state).
