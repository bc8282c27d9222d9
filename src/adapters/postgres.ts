/**
 * Fencing into PostgreSQL: `import { withFence } from "etcd-election/postgres"`. `pg` (Pool, Client) and
 * `postgres` (postgres.js) are optional peer dependencies; this entry point loads neither, it drives the
 * one it is handed.
 *
 * @module etcd-election/postgres
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Pool, PoolClient, Client } from "pg";
import type postgres from "postgres";
import { consoleLogger, toLogger, type Logger } from "../common/logger.js";
import { FenceBusyError, InvalidArgumentError, TransactionAbortedError, type ElectionError } from "../errors.js";

/**
 * What `withFence` needs of a hold: a `Term` or a `Lock` of etcd-election (a permit or read/write lock too).
 * Its `token` is what the fence row records; `assertHeld()` is read before the transaction and before its commit.
 */
export interface FenceHolder {
  /** The fencing token (create revision of the holder's key). */
  readonly token: bigint;
  /** Throws the holder's loss error (`NOT_LEADER`, `LOCK_LOST`) if the hold may be gone. */
  assertHeld(): void;
}

/** Options of {@link withFence} and {@link createFenceTable}. */
export interface FenceOptions {
  /** The fence table, optionally schema-qualified (default `etcd_election_fences`); see {@link createFenceTable}. */
  table?: string;
  /**
   * How long to wait for the fence row while another transaction holds it (default 5,000 ms), as
   * Postgres's `lock_timeout` on the fence statement only: then `withFence` rejects with `FENCE_BUSY`
   * (retryable) and nothing was written. Must be positive: waiting for ever on a holder paused inside its
   * transaction is what this bounds.
   */
  lockTimeoutMs?: number;
  /**
   * Postgres's `idle_in_transaction_session_timeout` for the transaction (default 10,000 ms): a holder
   * paused or cut off inside `fn` (idle between statements for this long) has its connection ended by the
   * server, which rolls its transaction back and frees the fence row for the next holder. `fn` must not sit
   * idle between statements for longer. 0 leaves the server's setting alone.
   */
  idleTimeoutMs?: number;
  /** Where a failed rollback is reported (the error `withFence` rejects with is the one that caused it). */
  logger?: Logger | false;
}

/** What `fn` is handed: the pool's client, your Client, or postgres.js's transaction `sql`. */
export type FenceTx<D> = D extends Pool ? PoolClient : D extends postgres.Sql<infer T> ? postgres.TransactionSql<T> : D;

/** The databases {@link withFence} works with: a `pg` Pool or Client, or a postgres.js `sql`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any type map of postgres.js
export type FenceDatabase = Pool | Client | PoolClient | postgres.Sql<any>;

const DEFAULT_TABLE = "etcd_election_fences";
const DEFAULT_LOCK_TIMEOUT_MS = 5_000;
const DEFAULT_IDLE_TIMEOUT_MS = 10_000;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const LOCK_NOT_AVAILABLE = "55P03";
const SERIALIZATION_FAILURE = "40001";
const DEADLOCK_DETECTED = "40P01";

/**
 * The fence table's DDL (what {@link createFenceTable} runs): one row per resource, the newest token that
 * wrote to it.
 */
export function fenceTableSql(table: string = DEFAULT_TABLE): string {
  return `CREATE TABLE IF NOT EXISTS ${quoteTable(table)} (
  resource text PRIMARY KEY,
  token bigint NOT NULL CHECK (token > 0),
  updated_at timestamptz NOT NULL DEFAULT now()
)`;
}

/**
 * Creates the fence table if it is missing (idempotent): run it once at start-up or put
 * {@link fenceTableSql}'s DDL in your migrations. `withFence` never creates it, so the role that writes
 * needs no CREATE privilege and no DDL runs on the write path.
 */
export async function createFenceTable(db: FenceDatabase, options: Pick<FenceOptions, "table"> = {}): Promise<void> {
  const sql = fenceTableSql(options.table ?? DEFAULT_TABLE);
  const kind = kindOf(db);
  if (kind === "postgres.js") await (db as postgres.Sql).unsafe(sql);
  else await (db as Pool | Client).query(sql);
}

/**
 * Runs `fn` in one database transaction fenced by the holder's token:
 *
 * 1. the fence row of `resource` moves to `holder.token` unless a newer token is there, in one statement
 *    that row-locks it, so concurrent writers to the resource serialize until commit;
 * 2. `fn(tx)` runs in the same transaction;
 * 3. if the holder may still hold (`assertHeld()`), the transaction commits, and `withFence` resolves with
 *    what `fn` returned.
 *
 * A token older than the row's rejects with the holder's own loss error (`NOT_LEADER` for a term,
 * `LOCK_LOST` for a lock; the hold ends, as when etcd refuses a guarded write) and nothing of `fn` commits.
 * A fence row held by another transaction for longer than `lockTimeoutMs` rejects with `FENCE_BUSY`
 * (retryable). Errors of `fn` and of the database reject as they are, after the rollback.
 *
 * `db` is a `pg` Pool (a client is taken for the transaction and given back), a `pg` Client (used as is;
 * calls on one Client queue behind each other), or a postgres.js `sql` (through `sql.begin`).
 */
export async function withFence<D extends FenceDatabase, T>(
  db: D,
  holder: FenceHolder,
  resource: string,
  fn: (tx: FenceTx<D>) => Promise<T>,
  options: FenceOptions = {},
): Promise<T> {
  const settings = validate(holder, resource, fn, options);
  const kind = kindOf(db);
  if (kind === "client" && (fencing.has(db) || insideFence.getStore()?.has(db)))
    // Its BEGIN would only warn and its COMMIT would commit the outer transaction early, fence row released.
    throw new InvalidArgumentError(
      "withFence: called inside another withFence's fn on its connection; nested fences are not supported (fence each resource in its own withFence call)",
    );
  holder.assertHeld(); // a holder already gone sends nothing
  if (kind === "postgres.js") return viaPostgresJs(db as postgres.Sql, holder, resource, fn as never, settings);
  if (kind === "pool") return viaPg(db as Pool, true, holder, resource, fn as never, settings);
  return serialized(db as Client, () => viaPg(db as Client, false, holder, resource, fn as never, settings));
}

interface Settings {
  table: string;
  lockTimeoutMs: number;
  idleTimeoutMs: number;
  logger: Logger;
}

type Kind = "pool" | "client" | "postgres.js";

function kindOf(db: unknown): Kind {
  const d = db as Record<string, unknown> | null;
  const has = (name: string): boolean => typeof (d as Record<string, unknown>)[name] === "function";
  if (typeof db === "function" && has("begin") && has("unsafe")) return "postgres.js";
  if (d && typeof d === "object" && typeof d.query === "function") {
    // pg's Pool counts its clients; a Client (or a PoolClient taken by the caller) does not.
    return typeof d.totalCount === "number" && typeof d.connect === "function" ? "pool" : "client";
  }
  throw new InvalidArgumentError("withFence: db must be a pg Pool or Client, or a postgres.js sql");
}

function validate(holder: FenceHolder, resource: string, fn: unknown, options: FenceOptions): Settings {
  if (!holder || typeof holder.token !== "bigint" || typeof holder.assertHeld !== "function")
    throw new InvalidArgumentError("withFence: holder must be a Term or a Lock");
  if (typeof (holder as Partial<Refusable>).fenceRefused !== "function")
    throw new InvalidArgumentError("withFence: holder must be a Term or a Lock of etcd-election");
  // Bytes, not characters; NUL is refused by Postgres's text; a lone surrogate would become U+FFFD and
  // collide with another name.
  if (
    typeof resource !== "string" ||
    resource.length === 0 ||
    Buffer.byteLength(resource, "utf8") > 1024 ||
    resource.includes("\u0000") ||
    Buffer.from(resource, "utf8").toString("utf8") !== resource
  )
    throw new InvalidArgumentError(
      "withFence: resource must be a non-empty, well-formed string of at most 1024 UTF-8 bytes, without NUL",
    );
  if (typeof fn !== "function") throw new InvalidArgumentError("withFence: fn must be a function");
  const table = options.table ?? DEFAULT_TABLE;
  quoteTable(table);
  const lockTimeoutMs = options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  if (!Number.isSafeInteger(lockTimeoutMs) || lockTimeoutMs < 1)
    throw new InvalidArgumentError("withFence: lockTimeoutMs must be a whole number of milliseconds above 0");
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  if (!Number.isSafeInteger(idleTimeoutMs) || idleTimeoutMs < 0)
    throw new InvalidArgumentError("withFence: idleTimeoutMs must be a whole number of milliseconds, 0 or more");
  return { table, lockTimeoutMs, idleTimeoutMs, logger: toLogger(options.logger, consoleLogger) };
}

/** `table` or `schema.table`, quoted; anything else is refused (it is spliced into SQL). */
function quoteTable(table: string): string {
  const parts = typeof table === "string" ? table.split(".") : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p)))
    throw new InvalidArgumentError(
      `fence table must be an identifier or schema.identifier (letters, digits, _), got ${JSON.stringify(table)}`,
    );
  return parts.map((p) => `"${p}"`).join(".");
}

/** The hook every Holding has (internal): ends the hold and returns its loss error. */
interface Refusable {
  fenceRefused(message: string): ElectionError;
}

/** A statement runner over either driver. */
type Run = (text: string, params: unknown[]) => Promise<Record<string, unknown>[]>;

/**
 * Step 1, the fence: sets the transaction's timeouts, moves the fence row (waiting at most lockTimeoutMs
 * for it), and gives `fn` back the session's own lock_timeout. OFFSET 0 keeps the subquery, so the old
 * value is read before set_config replaces it.
 */
async function fence(run: Run, holder: FenceHolder, resource: string, s: Settings): Promise<void> {
  const [timeouts] = await run(
    `SELECT p.prev, set_config('lock_timeout', $1, true),
       set_config('idle_in_transaction_session_timeout', coalesce($2::text, current_setting('idle_in_transaction_session_timeout')), true)
     FROM (SELECT current_setting('lock_timeout') AS prev OFFSET 0) AS p`,
    [`${s.lockTimeoutMs}ms`, s.idleTimeoutMs === 0 ? null : `${s.idleTimeoutMs}ms`],
  );
  const table = quoteTable(s.table);
  let rows: Record<string, unknown>[];
  try {
    // ON CONFLICT DO UPDATE row-locks the existing row (waiting for a transaction that holds it), then
    // re-reads its newest committed token: the WHERE decides on what the last committed holder left.
    rows = await run(
      `INSERT INTO ${table} AS f (resource, token) VALUES ($1, $2)
       ON CONFLICT (resource) DO UPDATE SET token = EXCLUDED.token, updated_at = now()
       WHERE f.token <= EXCLUDED.token
       RETURNING f.token`,
      [resource, holder.token.toString()],
    );
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    if (code === LOCK_NOT_AVAILABLE)
      throw new FenceBusyError(
        `withFence: the fence row of ${JSON.stringify(resource)} is held by another transaction (waited ${s.lockTimeoutMs} ms); retry`,
        { cause: err },
      );
    // Under repeatable read / serializable, a fence row another holder committed while we waited (40001),
    // or a deadlock with one (40P01): the same contention, nothing written, a retry starts afresh.
    if (code === SERIALIZATION_FAILURE || code === DEADLOCK_DETECTED)
      throw new FenceBusyError(
        `withFence: the fence row of ${JSON.stringify(resource)} was moved by a concurrent transaction (${code}); retry`,
        { cause: err },
      );
    throw err;
  }
  if (rows.length === 0)
    throw (holder as unknown as Refusable).fenceRefused(
      `Postgres refused token ${holder.token} for ${JSON.stringify(resource)}: a newer holder has written to it`,
    );
  await run("SELECT set_config('lock_timeout', $1, true)", [timeouts?.prev]);
}

async function viaPg<T>(
  db: Pool | Client,
  pooled: boolean,
  holder: FenceHolder,
  resource: string,
  fn: (tx: Client | PoolClient) => Promise<T>,
  s: Settings,
): Promise<T> {
  const client = pooled ? await (db as Pool).connect() : (db as Client);
  const run: Run = async (text, params) => (await client.query(text, params)).rows as Record<string, unknown>[];
  let broken: Error | undefined;
  // The server may end the connection between statements (our idle timeout, a restart): pg then emits
  // 'error' on the client, which would crash the process with no listener while the client is ours.
  const onError = (err: Error): void => {
    broken = err;
    s.logger.warn({ err }, "withFence: the database connection failed during the transaction");
  };
  client.on("error", onError);
  try {
    const status = (client as Partial<Pick<Client, "getTransactionStatus">>).getTransactionStatus?.();
    if (status === "T" || status === "E")
      throw new InvalidArgumentError(
        "withFence: the pg Client is already in a transaction; withFence begins and commits its own",
      );
    await client.query("BEGIN");
    if (pooled) fencing.add(client);
    try {
      await fence(run, holder, resource, s);
      const result = await insideFence.run(new Set([...(insideFence.getStore() ?? []), client]), () => fn(client));
      holder.assertHeld(); // a holder that may be gone commits nothing
      // A failed statement that fn caught aborts the transaction: Postgres then answers COMMIT with a
      // ROLLBACK tag and no error.
      const done = await client.query("COMMIT");
      if (done.command !== "COMMIT")
        throw new TransactionAbortedError(
          `withFence: a statement of fn failed and fn went on, so the transaction was aborted; Postgres rolled it back at COMMIT (${String(done.command)}): nothing was committed`,
        );
      return result;
    } catch (err) {
      if (!(await rollback(() => client.query("ROLLBACK"), s, err))) broken = asError(err);
      throw err;
    }
  } catch (err) {
    broken ??= isConnectionLost(err) ? asError(err) : undefined;
    throw err;
  } finally {
    fencing.delete(client);
    client.off("error", onError);
    // A connection whose rollback failed or hung is discarded: the server rolls back when it goes.
    if (pooled) (client as PoolClient).release(broken);
  }
}

async function viaPostgresJs<T>(
  sql: postgres.Sql,
  holder: FenceHolder,
  resource: string,
  fn: (tx: postgres.TransactionSql) => Promise<T>,
  s: Settings,
): Promise<T> {
  // sql.begin commits when the callback resolves and rolls back when it throws.
  const result = await sql.begin(async (tx) => {
    const run: Run = async (text, params) => [...(await tx.unsafe(text, params as never[]))];
    await fence(run, holder, resource, s);
    const value = await fn(tx);
    holder.assertHeld();
    return { value };
  });
  return result.value;
}

/**
 * Rolls back within lockTimeoutMs; false if that failed or hung (a dead network path): the caller then
 * discards the connection. Either way the error that caused it is what the caller rejects with.
 */
async function rollback(send: () => Promise<unknown>, s: Settings, cause: unknown): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), s.lockTimeoutMs);
  });
  try {
    const outcome = await Promise.race([send().then(() => "done" as const), timedOut]);
    if (outcome === "timeout") {
      s.logger.warn(
        { cause },
        `withFence: no answer to ROLLBACK within ${s.lockTimeoutMs} ms; discarding the connection`,
      );
      return false;
    }
    return true;
  } catch (err) {
    s.logger.warn({ err, cause }, "withFence: ROLLBACK failed; discarding the connection");
    return false;
  } finally {
    clearTimeout(timer);
  }
}

function isConnectionLost(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  // Class 08 (connection exception), 57P (operator intervention: terminated), or a socket error.
  return typeof code === "string" && (/^(08|57P)/.test(code) || code.startsWith("E"));
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** The pg connections we took from a Pool, while in a withFence transaction: only its fn has them. */
const fencing = new WeakSet<object>();
/** The connections whose withFence fn we are running in (a Client's other calls queue, nested ones hang). */
const insideFence = new AsyncLocalStorage<ReadonlySet<object>>();

/** One transaction at a time per pg Client: its queries would otherwise interleave into one transaction. */
const queues = new WeakMap<object, Promise<unknown>>();

function serialized<T>(client: object, task: () => Promise<T>): Promise<T> {
  const before = queues.get(client) ?? Promise.resolve();
  const run = before.then(task, task);
  queues.set(
    client,
    run.catch(() => undefined),
  );
  return run;
}
