/**
 * `--store postgres`: the workers keep each kind's counter and log in PostgreSQL, every write one
 * `withFence` transaction, and the checker reads them from there. A row's `version` counts its writes
 * (as etcd's key version does) and `rev` numbers every write from one sequence (as etcd's mod revision
 * does): the checker's data rules then hold unchanged.
 */
import pg from "pg";
import { createFenceTable } from "../../src/adapters/postgres.js";
import { startPostgres, type PostgresEnv } from "../support/postgres.js";
import type { LogEntry, RegisterData } from "./history.js";

export interface PostgresStore {
  readonly port: number;
  read(prefix: string): Promise<RegisterData>;
  close(): Promise<void>;
}

export async function startPostgresStore(): Promise<PostgresStore> {
  const env: PostgresEnv = await startPostgres();
  const pool: pg.Pool = env.pool({ max: 2 });
  try {
    await createFenceTable(pool);
    await pool.query(`CREATE SEQUENCE chaos_rev;
      CREATE TABLE chaos_counter (prefix text PRIMARY KEY, value int NOT NULL, version int NOT NULL, rev bigint NOT NULL);
      CREATE TABLE chaos_log (prefix text, seq int, entry jsonb NOT NULL, version int NOT NULL, rev bigint NOT NULL,
        PRIMARY KEY (prefix, seq));`);
  } catch (error) {
    await env.close();
    throw error;
  }
  return {
    port: env.port,
    async read(prefix) {
      const counter = await pool.query<{ value: number; version: number; rev: string }>(
        "SELECT value, version, rev FROM chaos_counter WHERE prefix = $1",
        [prefix],
      );
      const log = await pool.query<{ seq: number; version: number; rev: string; entry: LogEntry }>(
        "SELECT seq, version, rev, entry FROM chaos_log WHERE prefix = $1 ORDER BY seq",
        [prefix],
      );
      const c = counter.rows[0];
      return {
        counter: c ? { value: c.value, version: c.version, modRevision: Number(c.rev) } : null,
        log: log.rows.map((r) => ({ seq: r.seq, version: r.version, modRevision: Number(r.rev), entry: r.entry })),
      };
    },
    close: () => env.close(),
  };
}
