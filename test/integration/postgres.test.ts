import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFenceTable, fenceTableSql, withFence } from "../../src/adapters/postgres.js";
import { Election, Mutex, type Holding, type Term } from "../../src/index.js";
import { Worker, type WorkerEvent } from "../support/child.js";
import type { FenceCommand, FenceWorkerConfig } from "../support/fence-worker.js";
import { TcpProxy, useEtcd, waitFor } from "../support/index.js";
import { usePostgres } from "../support/postgres.js";

const FENCE_WORKER = fileURLToPath(new URL("../support/fence-worker.ts", import.meta.url));

const fx = useEtcd();
const db = usePostgres();
let pool: pg.Pool;
let scratch: string;

beforeAll(async () => {
  pool = db.env.pool();
  await createFenceTable(pool);
  await pool.query("CREATE TABLE fenced_data (resource text PRIMARY KEY, value text NOT NULL, token bigint)");
  scratch = mkdtempSync(join(tmpdir(), "etcd-election-fence-"));
});
afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const codeOf = (e: unknown): unknown => (e as { code?: unknown }).code;

async function seed(resource: string): Promise<void> {
  await pool.query("INSERT INTO fenced_data (resource, value) VALUES ($1, 'initial')", [resource]);
}

async function data(resource: string): Promise<{ value: string; token: bigint | null }> {
  const { rows } = await pool.query<{ value: string; token: string | null }>(
    "SELECT value, token FROM fenced_data WHERE resource = $1",
    [resource],
  );
  return { value: rows[0]!.value, token: rows[0]!.token === null ? null : BigInt(rows[0]!.token) };
}

async function fenceOf(resource: string): Promise<bigint | undefined> {
  const { rows } = await pool.query<{ token: string }>("SELECT token FROM etcd_election_fences WHERE resource = $1", [
    resource,
  ]);
  return rows[0] ? BigInt(rows[0].token) : undefined;
}

/** A write of `value` through withFence, as the leaders below make it. */
function write(holder: Holding, resource: string, value: string, options = {}): Promise<void> {
  return withFence(
    pool,
    holder,
    resource,
    async (tx) => {
      await tx.query("UPDATE fenced_data SET value = $1, token = $2 WHERE resource = $3", [
        value,
        holder.token.toString(),
        resource,
      ]);
    },
    options,
  );
}

async function campaign(name: string, value: string, ttl = 10): Promise<Term> {
  return new Election(await fx.newSession({ ttl }), name).campaign(value);
}

/** Moves the fence row on as a newer holder's write would have. */
async function newerHolderWrote(resource: string): Promise<void> {
  await pool.query("UPDATE etcd_election_fences SET token = token + 1000 WHERE resource = $1", [resource]);
}

describe("withFence", () => {
  it("commits fn's writes and moves the fence row to the holder's token, in one transaction", async () => {
    const resource = `${fx.etcd.prefix()}commits`;
    await seed(resource);
    const term = await campaign(resource, "a");
    const result = await withFence(pool, term, resource, async (tx) => {
      await tx.query("UPDATE fenced_data SET value = 'a' WHERE resource = $1", [resource]);
      // Inside the transaction, the fence row already names us.
      const { rows } = await tx.query("SELECT token FROM etcd_election_fences WHERE resource = $1", [resource]);
      return rows[0].token as string;
    });
    expect(result).toBe(term.token.toString());
    expect(await fenceOf(resource)).toBe(term.token);
    expect((await data(resource)).value).toBe("a");
    // The same holder writes again: an equal token passes.
    await write(term, resource, "a2");
    expect((await data(resource)).value).toBe("a2");
    await term.resign();
  });

  it("a term whose token is older than the fence row's is refused by Postgres with NOT_LEADER, nothing of fn commits, and the term ends", async () => {
    const resource = `${fx.etcd.prefix()}stale-term`;
    await seed(resource);
    const term = await campaign(resource, "a");
    await write(term, resource, "a");
    await newerHolderWrote(resource);
    let fnRan = false;
    const err = await withFence(pool, term, resource, async (tx) => {
      fnRan = true;
      await tx.query("UPDATE fenced_data SET value = 'stale' WHERE resource = $1", [resource]);
    }).catch((e: unknown) => e);
    expect(codeOf(err)).toBe("NOT_LEADER");
    expect(String(err)).toContain("Postgres refused");
    expect(fnRan).toBe(false);
    expect((await data(resource)).value).toBe("a");
    expect(term.signal.aborted).toBe(true);
    expect(codeOf(term.signal.reason)).toBe("NOT_LEADER");
    await term.resign();
  });

  it("a lock whose token is older than the fence row's is refused with LOCK_LOST", async () => {
    const resource = `${fx.etcd.prefix()}stale-lock`;
    await seed(resource);
    const lock = await new Mutex(await fx.newSession(), resource).lock();
    await write(lock, resource, "a");
    await newerHolderWrote(resource);
    const err = await write(lock, resource, "stale").catch((e: unknown) => e);
    expect(codeOf(err)).toBe("LOCK_LOST");
    expect((await data(resource)).value).toBe("a");
    await lock.unlock();
  });

  it("a lock refused by Postgres gives up its key: the same session's next lock of the name gets a new key with a greater token", async () => {
    const resource = `${fx.etcd.prefix()}refused-relock`;
    await seed(resource);
    const session = await fx.newSession();
    const lock = await new Mutex(session, resource).lock();
    await write(lock, resource, "a");
    await newerHolderWrote(resource);
    expect(codeOf(await write(lock, resource, "stale").catch((e: unknown) => e))).toBe("LOCK_LOST");
    const again = await new Mutex(session, resource).lock();
    expect(again.token).toBeGreaterThan(lock.token);
    await again.unlock();
    await lock.unlock();
  });

  it("a holder already gone locally sends nothing: it rejects with its own loss error", async () => {
    const resource = `${fx.etcd.prefix()}gone`;
    await seed(resource);
    const term = await campaign(resource, "a");
    await term.resign();
    let fnRan = false;
    const err = await withFence(pool, term, resource, async () => {
      fnRan = true;
    }).catch((e: unknown) => e);
    expect(codeOf(err)).toBe("NOT_LEADER");
    expect(fnRan).toBe(false);
    expect(await fenceOf(resource)).toBeUndefined();
  });

  it("an error thrown by fn rolls everything back, fence row included, and rejects with that error", async () => {
    const resource = `${fx.etcd.prefix()}fn-throws`;
    await seed(resource);
    const term = await campaign(resource, "a");
    const boom = new Error("boom");
    const err = await withFence(pool, term, resource, async (tx) => {
      await tx.query("UPDATE fenced_data SET value = 'half' WHERE resource = $1", [resource]);
      throw boom;
    }).catch((e: unknown) => e);
    expect(err).toBe(boom);
    expect((await data(resource)).value).toBe("initial");
    expect(await fenceOf(resource)).toBeUndefined();
    expect(pool.idleCount).toBeGreaterThan(0); // the connection went back to the pool
    await term.resign();
  });

  it("a fence row held by another transaction rejects with FENCE_BUSY within lockTimeoutMs, and fn's statements keep the session's lock_timeout", async () => {
    const resource = `${fx.etcd.prefix()}busy`;
    await seed(resource);
    const term = await campaign(resource, "a");
    await write(term, resource, "a");
    const other = await pool.connect();
    try {
      await other.query("BEGIN");
      await other.query("SELECT * FROM etcd_election_fences WHERE resource = $1 FOR UPDATE", [resource]);
      const started = Date.now();
      let fnRan = false;
      const err = await withFence(
        pool,
        term,
        resource,
        async () => {
          fnRan = true;
        },
        { lockTimeoutMs: 300 },
      ).catch((e: unknown) => e);
      expect(codeOf(err)).toBe("FENCE_BUSY");
      expect((err as Error).cause).toMatchObject({ code: "55P03" });
      expect(fnRan).toBe(false);
      expect(Date.now() - started).toBeLessThan(300 + 5_000);
      expect(term.signal.aborted).toBe(false); // busy is not lost
      await other.query("ROLLBACK");
    } finally {
      other.release();
    }
    const inside = await withFence(
      pool,
      term,
      resource,
      async (tx) => (await tx.query<object>("SHOW lock_timeout")).rows[0],
      {
        lockTimeoutMs: 300,
      },
    );
    expect(inside).toEqual({ lock_timeout: "0" });
    await term.resign();
  });

  it("under serializable isolation, a fence row updated by a transaction that committed while we waited rejects with FENCE_BUSY (a serialization failure), and a retry passes", async () => {
    const resource = `${fx.etcd.prefix()}serializable`;
    await seed(resource);
    const term = await campaign(resource, "a");
    await write(term, resource, "a");
    const strict = new pg.Pool({
      connectionString: db.env.url,
      options: "-c default_transaction_isolation=serializable",
      max: 1,
    });
    strict.on("error", () => undefined);
    try {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let entered!: () => void;
      const inside = new Promise<void>((r) => (entered = r));
      const first = withFence(pool, term, resource, async () => {
        entered();
        await gate;
      });
      await inside;
      const second = withFence(strict, term, resource, async () => "second").catch((e: unknown) => e);
      await waitFor(
        async () =>
          (
            await pool.query(
              "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO%etcd_election_fences%'",
            )
          ).rowCount === 1,
        { timeoutMs: 10_000, description: "the serializable withFence waits for the fence row" },
      );
      release();
      await first;
      const err = await second;
      expect(codeOf(err)).toBe("FENCE_BUSY");
      expect((err as Error).cause).toMatchObject({ code: "40001" });
      expect(await withFence(strict, term, resource, async () => "retried")).toBe("retried");
    } finally {
      await strict.end();
    }
    await term.resign();
  });

  it("concurrent writers of one resource serialize on the fence row: the newer token wins, the older is refused after it", async () => {
    const resource = `${fx.etcd.prefix()}serialize`;
    await seed(resource);
    const older = await campaign(`${resource}-a`, "a");
    const newer = await campaign(`${resource}-b`, "b");
    expect(newer.token).toBeGreaterThan(older.token);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let newerInFn!: () => void;
    const entered = new Promise<void>((r) => (newerInFn = r));
    const first = withFence(pool, newer, resource, async (tx) => {
      await tx.query("UPDATE fenced_data SET value = 'newer' WHERE resource = $1", [resource]);
      newerInFn();
      await gate;
    });
    await entered;
    const second = write(older, resource, "older").catch((e: unknown) => e); // waits for the row
    await waitFor(async () => {
      const { rows } = await pool.query("SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted");
      return rows[0].n > 0;
    });
    release();
    await first;
    expect(codeOf(await second)).toBe("NOT_LEADER");
    expect(await data(resource)).toEqual({ value: "newer", token: null });
    await Promise.all([older.resign(), newer.resign()]);
  });

  it("works with a pg Client (calls on it queue) and with postgres.js", async () => {
    const resource = `${fx.etcd.prefix()}drivers`;
    await seed(resource);
    const term = await campaign(resource, "a");
    const client = new pg.Client({ connectionString: db.env.url });
    await client.connect();
    const sql = postgres(db.env.url, { max: 2, onnotice: () => undefined });
    try {
      const update = (v: string) => async (tx: pg.Client) => {
        await tx.query("UPDATE fenced_data SET value = value || $1 WHERE resource = $2", [v, resource]);
      };
      await Promise.all([
        withFence(client, term, resource, update("-1")),
        withFence(client, term, resource, update("-2")),
      ]);
      expect((await data(resource)).value).toBe("initial-1-2");
      const got = await withFence(sql, term, resource, async (tx) => {
        await tx`UPDATE fenced_data SET value = 'js' WHERE resource = ${resource}`;
        return "done";
      });
      expect(got).toBe("done");
      expect((await data(resource)).value).toBe("js");
      await newerHolderWrote(resource);
      const err = await withFence(sql, term, resource, async (tx) => {
        await tx`UPDATE fenced_data SET value = 'stale' WHERE resource = ${resource}`;
      }).catch((e: unknown) => e);
      expect(codeOf(err)).toBe("NOT_LEADER");
      expect((await data(resource)).value).toBe("js");
    } finally {
      await client.end();
      await sql.end();
    }
    await term.resign();
  });

  it("createFenceTable is idempotent, and bad input is refused before anything is sent", async () => {
    await createFenceTable(pool);
    const sql = postgres(db.env.url, { max: 1, onnotice: () => undefined });
    await createFenceTable(sql, { table: "public.other_fences" });
    await sql.end();
    expect(fenceTableSql("s.t")).toContain('CREATE TABLE IF NOT EXISTS "s"."t"');
    const term = await campaign(`${fx.etcd.prefix()}bad`, "a");
    const fn = async (): Promise<void> => undefined;
    const cases: (() => Promise<unknown>)[] = [
      () => withFence(pool, term, "", fn),
      () => withFence(pool, term, "é".repeat(600), fn), // 600 characters, 1200 bytes
      () => withFence(pool, term, "a\u0000b", fn),
      () => withFence(pool, term, "lone \uD800 surrogate", fn),
      () => withFence(pool, term, "r", fn, { table: 'x"; DROP TABLE y; --' }),
      () => withFence(pool, term, "r", fn, { lockTimeoutMs: 0 }),
      () => withFence(pool, term, "r", fn, { idleTimeoutMs: -1 }),
      () => withFence({} as pg.Pool, term, "r", fn),
      () => withFence(pool, { token: 1n, assertHeld() {} }, "r", fn),
    ];
    for (const c of cases) expect(codeOf(await c().catch((e: unknown) => e))).toBe("INVALID_ARGUMENT");
    await term.resign();
  });
});

describe("withFence misuse and aborted transactions", () => {
  it("a withFence nested in another's fn (on its tx) is refused with INVALID_ARGUMENT, and the outer transaction stays whole", async () => {
    const resource = `${fx.etcd.prefix()}nested-pool`;
    await seed(resource);
    const term = await campaign(resource, "a");
    let inner: unknown;
    const outer = await withFence(pool, term, resource, async (tx) => {
      await tx.query("UPDATE fenced_data SET value = 'outer-1' WHERE resource = $1", [resource]);
      inner = await withFence(tx, term, `${resource}-2`, async () => undefined).catch((e: unknown) => e);
      await tx.query("UPDATE fenced_data SET value = 'outer-2' WHERE resource = $1", [resource]);
      throw new Error("outer fails");
    }).catch((e: unknown) => e);
    expect(codeOf(inner)).toBe("INVALID_ARGUMENT");
    expect(String(outer)).toContain("outer fails");
    expect(await data(resource)).toEqual({ value: "initial", token: null });
    expect(await fenceOf(resource)).toBeUndefined();
    const sql = postgres(db.env.url, { max: 1, onnotice: () => undefined });
    try {
      const nested = await withFence(sql, term, resource, async (tx) =>
        withFence(tx as never, term, `${resource}-2`, async () => undefined).catch((e: unknown) => codeOf(e)),
      );
      expect(nested).toBe("INVALID_ARGUMENT");
    } finally {
      await sql.end();
    }
    await term.resign();
  });

  it("fn that catches a database error leaves the transaction aborted: nothing commits and withFence rejects (TRANSACTION_ABORTED with pg; the driver's error with postgres.js)", async () => {
    const resource = `${fx.etcd.prefix()}aborted`;
    await seed(resource);
    const term = await campaign(resource, "a");
    const err = await withFence(pool, term, resource, async (tx) => {
      await tx.query("UPDATE fenced_data SET value = 'lost' WHERE resource = $1", [resource]);
      await tx.query("INSERT INTO fenced_data (resource, value) VALUES ($1, 'dup')", [resource]).catch(() => undefined); // 23505, ignored
      return "resolved";
    }).catch((e: unknown) => e);
    expect(codeOf(err)).toBe("TRANSACTION_ABORTED");
    expect(await data(resource)).toEqual({ value: "initial", token: null });
    expect(await fenceOf(resource)).toBeUndefined();
    const sql = postgres(db.env.url, { max: 1, onnotice: () => undefined });
    try {
      const jsErr = await withFence(sql, term, resource, async (tx) => {
        await tx`UPDATE fenced_data SET value = 'lost' WHERE resource = ${resource}`;
        await tx`INSERT INTO fenced_data (resource, value) VALUES (${resource}, 'dup')`.catch(() => undefined);
        return "resolved";
      }).catch((e: unknown) => e);
      expect(codeOf(jsErr)).toBe("23505");
    } finally {
      await sql.end();
    }
    expect(await data(resource)).toEqual({ value: "initial", token: null });
    expect(await fenceOf(resource)).toBeUndefined();
    // The pool's connection is usable again.
    await write(term, resource, "after");
    expect((await data(resource)).value).toBe("after");
    await term.resign();
  });

  it("a withFence nested in another's fn on the same pg Client is refused, not queued for ever; a Client already in a transaction is refused", async () => {
    const resource = `${fx.etcd.prefix()}nested-client`;
    await seed(resource);
    const term = await campaign(resource, "a");
    const client = new pg.Client({ connectionString: db.env.url });
    await client.connect();
    try {
      const bounded = <T>(p: Promise<T>): Promise<T | "hung"> =>
        Promise.race([p, new Promise<"hung">((r) => setTimeout(() => r("hung"), 5_000).unref())]);
      const outcome = await bounded(
        withFence(client, term, resource, async (tx) => {
          await tx.query("UPDATE fenced_data SET value = 'outer' WHERE resource = $1", [resource]);
          return withFence(client, term, `${resource}-2`, async () => "inner").catch((e: unknown) => codeOf(e));
        }),
      );
      expect(outcome).toBe("INVALID_ARGUMENT");
      expect((await data(resource)).value).toBe("outer");
      await client.query("BEGIN");
      const err = await bounded(withFence(client, term, resource, async () => undefined).catch((e: unknown) => e));
      expect(codeOf(err)).toBe("INVALID_ARGUMENT");
      await client.query("ROLLBACK");
    } finally {
      await client.end();
    }
    await term.resign();
  });
});

/** Retries a write while the fence row is busy, within `timeoutMs`. */
async function writeWhenFree(holder: Holding, resource: string, value: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let busy = 0;
  for (;;) {
    try {
      await write(holder, resource, value, { lockTimeoutMs: 500 });
      return busy;
    } catch (e) {
      if (codeOf(e) !== "FENCE_BUSY" || Date.now() > deadline) throw e;
      busy++;
    }
  }
}

describe("fencing into Postgres under faults (a leader in a child process, a newer leader here)", () => {
  function startLeader(config: Partial<FenceWorkerConfig> & { name: string }): Worker {
    return Worker.startScript(FENCE_WORKER, {
      hosts: fx.etcd.endpoints,
      ttl: 2,
      pgPort: db.env.port,
      resource: config.name,
      lockTimeoutMs: 500,
      idleTimeoutMs: 8_000,
      ...config,
    } satisfies FenceWorkerConfig);
  }
  const send = (w: Worker, cmd: FenceCommand): void => w.send(cmd as never);
  const marker = (label: string): string => join(scratch, label);

  it("a leader paused after calling withFence, before its transaction reaches Postgres, is refused by Postgres once a newer leader wrote; the newer write stands", async () => {
    const name = `${fx.etcd.prefix()}paused-before-send`;
    await seed(name);
    const a = startLeader({ name });
    try {
      const aToken = BigInt((await a.next("holding")).token as string);
      send(a, { cmd: "fence", id: "a", value: "A", holdAt: "before-send", hold: { sync: marker("before-send") } });
      await a.next("held-before-send");
      a.pause();
      const b = await campaign(name, "b"); // after A's lease expired
      expect(b.token).toBeGreaterThan(aToken);
      await write(b, name, "B");
      writeFileSync(marker("before-send"), "");
      a.resume();
      const result = await a.next("result-a");
      expect(result).toMatchObject({ ok: false, code: "NOT_LEADER" });
      expect(result.message).toContain("Postgres refused");
      expect(await data(name)).toEqual({ value: "B", token: b.token });
      expect(await fenceOf(name)).toBe(b.token);
      await b.resign();
    } finally {
      await a.kill();
    }
  });

  for (const idleTimeoutMs of [8_000, 0]) {
    const freed =
      idleTimeoutMs > 0
        ? "Postgres ends its idle transaction and the newer leader writes while it still sleeps"
        : "without the idle timeout the newer leader gets in once it resumes";
    it(`a leader paused inside fn holds the fence row: the newer leader's withFence fails FENCE_BUSY in bounded time, ${freed}; the paused leader's commit never lands`, async () => {
      const name = `${fx.etcd.prefix()}paused-in-fn-${idleTimeoutMs}`;
      await seed(name);
      const a = startLeader({ name, idleTimeoutMs });
      try {
        await a.next("holding");
        send(a, {
          cmd: "fence",
          id: "a",
          value: "A",
          holdAt: "in-fn",
          hold: { sync: marker(name.replace(/\W/g, "_")) },
        });
        await a.next("held-in-fn");
        a.pause();
        const b = await campaign(name, "b");
        const started = Date.now();
        const busy = await write(b, name, "B", { lockTimeoutMs: 500 }).catch((e: unknown) => e);
        expect(codeOf(busy)).toBe("FENCE_BUSY");
        expect(Date.now() - started).toBeLessThan(500 + 5_000);
        let bWrote: Promise<number>;
        if (idleTimeoutMs > 0) {
          await writeWhenFree(b, name, "B", idleTimeoutMs + 15_000); // A is still stopped
          expect(await data(name)).toEqual({ value: "B", token: b.token });
          writeFileSync(marker(name.replace(/\W/g, "_")), "");
          a.resume();
          bWrote = Promise.resolve(0);
        } else {
          bWrote = writeWhenFree(b, name, "B", 30_000);
          writeFileSync(marker(name.replace(/\W/g, "_")), "");
          a.resume();
        }
        // Resumed, A's fn returns and the helper finds its term gone before COMMIT.
        expect(await a.next("result-a")).toMatchObject({ ok: false, code: "NOT_LEADER" });
        await bWrote;
        expect(await data(name)).toEqual({ value: "B", token: b.token });
        expect(await fenceOf(name)).toBe(b.token);
        await b.resign();
      } finally {
        await a.kill();
      }
    }, 60_000);
  }

  it("a leader cut off from etcd and Postgres inside fn: the newer leader's write lands once Postgres ends the stale transaction, and the old leader's commit never does", async () => {
    const name = `${fx.etcd.prefix()}cut-in-fn`;
    await seed(name);
    const etcdProxy = await TcpProxy.start({ targetPort: Number(fx.etcd.endpoints[0]!.split(":")[1]) });
    const pgProxy = await TcpProxy.start({ targetPort: db.env.port });
    const a = startLeader({ name, hosts: [etcdProxy.url], pgPort: pgProxy.listenPort });
    try {
      await a.next("holding");
      send(a, { cmd: "fence", id: "a", value: "A", holdAt: "in-fn", hold: "command" });
      await a.next("held-in-fn");
      etcdProxy.blackhole();
      pgProxy.blackhole();
      const b = await campaign(name, "b");
      expect((await a.next("hold-ended")).code).toBe("NOT_LEADER"); // A noticed on its own clock
      const busy = await write(b, name, "B", { lockTimeoutMs: 500 }).catch((e: unknown) => e);
      expect(codeOf(busy)).toBe("FENCE_BUSY");
      await writeWhenFree(b, name, "B", 8_000 + 15_000);
      expect(await data(name)).toEqual({ value: "B", token: b.token });
      etcdProxy.open();
      pgProxy.open();
      send(a, { cmd: "continue" });
      expect(await a.next("result-a")).toMatchObject({ ok: false, code: "NOT_LEADER" });
      expect(await data(name)).toEqual({ value: "B", token: b.token });
      expect(await fenceOf(name)).toBe(b.token);
      await b.resign();
    } finally {
      await a.kill();
      await Promise.all([etcdProxy.close(), pgProxy.close()]);
    }
  }, 60_000);

  it("the naive pattern (the fence check in its own statement, then the write) loses the newer leader's write to a leader paused in between", async () => {
    const name = `${fx.etcd.prefix()}naive`;
    await seed(name);
    await pool.query("INSERT INTO etcd_election_fences (resource, token) VALUES ($1, 1)", [name]);
    const a = startLeader({ name });
    try {
      const aToken = BigInt((await a.next("holding")).token as string);
      send(a, { cmd: "naive", id: "a", value: "A", holdAt: "after-check", hold: { sync: marker("naive") } });
      await a.next("held-after-check");
      a.pause();
      const b = await campaign(name, "b");
      // B does the same: its check passes, its write lands.
      const checked = await pool.query(
        "UPDATE etcd_election_fences SET token = $1 WHERE resource = $2 AND token < $1",
        [b.token.toString(), name],
      );
      expect(checked.rowCount).toBe(1);
      await pool.query("UPDATE fenced_data SET value = 'B', token = $1 WHERE resource = $2", [
        b.token.toString(),
        name,
      ]);
      writeFileSync(marker("naive"), "");
      a.resume();
      const result: WorkerEvent = await a.next("result-a");
      expect(result).toMatchObject({ ok: true });
      // B's write is lost: the stale leader overwrote it, though the fence row says B.
      expect(await data(name)).toEqual({ value: "A", token: aToken });
      expect(await fenceOf(name)).toBe(b.token);
      await b.resign();
    } finally {
      await a.kill();
    }
  }, 60_000);
});

describe("examples/postgres-worker.ts", () => {
  it("leads and writes its ticks into Postgres through withFence, with its token, then exits", async () => {
    const path = fileURLToPath(new URL("../../examples/postgres-worker.ts", import.meta.url));
    const election = `${fx.etcd.prefix()}example`;
    const child = spawn(process.execPath, ["--import", "tsx", path], {
      env: {
        ...process.env,
        ETCD_ENDPOINTS: fx.etcd.endpoints.join(","),
        DATABASE_URL: db.env.url,
        ELECTION: election,
        WORKER_ID: "example",
        TTL: "2",
        TICKS: "3",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise((resolve) => child.once("exit", resolve));
    expect(code, out).toBe(0);
    expect(out).toContain('"msg":"done","written":3');
    const { rows } = await pool.query<{ token: string }>("SELECT token FROM worker_ticks WHERE worker = 'example'");
    expect(rows).toHaveLength(3);
    expect(new Set(rows.map((r) => r.token)).size).toBe(1); // one term wrote them all
    expect((await fenceOf(election))?.toString()).toBe(rows[0]!.token);
  }, 60_000);
});
