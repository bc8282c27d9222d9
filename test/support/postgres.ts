/**
 * A throwaway PostgreSQL for a test file, as the harness starts etcd: Debian's `postgresql` binaries
 * (installed by .ci/setup), initdb into a dir under the run's dir (ETCD_ELECTION_RUN_DIR), the server on a free loopback port with its unix socket
 * in that dir, run as the `postgres` user when we are root (Postgres refuses to run as root), stopped and
 * removed after the file. Trust authentication on 127.0.0.1 only.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { freePort } from "./ports.js";
import { waitFor } from "./wait.js";

export interface PostgresEnv {
  readonly port: number;
  readonly host: "127.0.0.1";
  readonly user: "postgres";
  readonly database: "postgres";
  /** A connection string for postgres.js and pg (`postgres://postgres@127.0.0.1:<port>/postgres`). */
  readonly url: string;
  /** A pg Pool closed with the instance (on another port than `port`, e.g. a proxy's, if given). */
  pool(options?: { port?: number; max?: number }): pg.Pool;
  close(): Promise<void>;
}

/** Debian's server binaries: PG_BIN, or the newest /usr/lib/postgresql/<major>/bin. */
export function postgresBin(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = "/usr/lib/postgresql";
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((d) => existsSync(join(root, d, "bin", "postgres")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (majors.length === 0)
    throw new Error("postgres harness: no PostgreSQL server found (apt-get install postgresql; .ci/setup does)");
  return join(root, majors[0]!, "bin");
}

/** Run as `postgres` when we are root. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  return { uid, gid };
}

export async function startPostgres(): Promise<PostgresEnv> {
  const bin = postgresBin();
  const user = runAs();
  // Under the run's dir: global-setup's sweep of dead runs stops a postmaster left there and deletes it.
  const runDir = process.env.ETCD_ELECTION_RUN_DIR;
  if (runDir) {
    mkdirSync(runDir, { recursive: true });
    if (user) chmodSync(runDir, 0o755); // the postgres user must reach its dir
  }
  const parent = runDir ?? tmpdir();
  const dir = mkdtempSync(join(parent, "etcd-election-pg-"));
  const data = join(dir, "data");
  try {
    if (user) chownSync(dir, user.uid, user.gid);
    execFileSync(join(bin, "initdb"), ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"], {
      ...user,
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, LC_ALL: "C" },
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const port = await freePort();
  const server: ChildProcess = spawn(
    join(bin, "postgres"),
    [
      "-D",
      data,
      "-p",
      String(port),
      "-k",
      dir,
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
      "-c",
      "max_connections=50",
    ],
    { ...user, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, LC_ALL: "C" } },
  );
  let stderr = "";
  server.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => server.once("exit", () => resolve()));
  // If the test process dies first, the server must not outlive it.
  const killOnExit = (): void => void server.kill("SIGKILL");
  process.once("exit", killOnExit);

  const pools: pg.Pool[] = [];
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const env: PostgresEnv = {
    port,
    host: "127.0.0.1",
    user: "postgres",
    database: "postgres",
    url,
    pool(options = {}) {
      const pool = new pg.Pool({
        host: "127.0.0.1",
        port: options.port ?? port,
        user: "postgres",
        database: "postgres",
        max: options.max ?? 5,
      });
      // A connection the server ended (idle timeout, a test's fault) must not crash the test process.
      pool.on("error", () => undefined);
      pools.push(pool);
      return pool;
    },
    async close() {
      await Promise.all(pools.splice(0).map((p) => p.end().catch(() => undefined)));
      if (server.exitCode === null && server.signalCode === null) {
        server.kill("SIGINT"); // fast shutdown: ends sessions, no checkpoint wait
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
        if (server.exitCode === null && server.signalCode === null) {
          server.kill("SIGKILL");
          await exited;
        }
      }
      process.off("exit", killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(
      async () => {
        if (server.exitCode !== null) throw new Error(`postgres exited: ${stderr}`);
        const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
        try {
          await client.connect();
          await client.query("SELECT 1");
          return true;
        } finally {
          await client.end().catch(() => undefined);
        }
      },
      { timeoutMs: 30_000, intervalMs: 100, description: "postgres accepting connections" },
    );
  } catch (err) {
    await env.close();
    throw new Error(`postgres harness: the server did not start: ${String(err)}; stderr: ${stderr}`);
  }
  return env;
}

/** One PostgreSQL for the test file, stopped and removed after its last test. */
export function usePostgres(): { readonly env: PostgresEnv } {
  let env: PostgresEnv | undefined;
  beforeAll(async () => {
    env = await startPostgres();
  });
  afterAll(async () => {
    await env?.close();
  });
  return {
    get env() {
      if (!env) throw new Error("usePostgres(): not started yet (use it inside tests)");
      return env;
    },
  };
}
