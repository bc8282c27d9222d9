/**
 * A leader in its own process that writes into Postgres, for the fencing proofs: through `withFence`, or
 * the naive way (a fence check in its own statement, then the write). It can be held at a chosen point of
 * a write (synchronously, so a SIGSTOP lands exactly there, or waiting for a command) while the test
 * pauses it, cuts its network and lets another leader take over. Events are JSON lines on stdout, commands
 * JSON lines on stdin (see child.ts).
 */
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { Etcd3 } from "etcd3";
import pg from "pg";
import { withFence } from "../../src/adapters/postgres.js";
import { Election, Session } from "../../src/index.js";

export interface FenceWorkerConfig {
  /** etcd endpoints (a proxy's, for the network cut). */
  hosts: string[];
  ttl: number;
  name: string;
  /** Postgres on 127.0.0.1 (a proxy's port, for the network cut). */
  pgPort: number;
  resource: string;
  lockTimeoutMs: number;
  idleTimeoutMs: number;
}

/**
 * - `before-send`: withFence has checked the hold and taken a pool client; nothing has reached Postgres.
 * - `in-fn`: fn has written (the fence row is locked by this transaction) and has not returned.
 * - `after-check` (naive only): the check statement passed, the write is not sent.
 * `sync` blocks the whole process until `marker` exists (the test SIGSTOPs it there); `command` waits
 * for a `continue` command with the event loop running (its session keeps ticking).
 */
export interface WriteCommand {
  cmd: "fence" | "naive";
  id: string;
  value: string;
  holdAt?: "before-send" | "in-fn" | "after-check";
  hold?: { sync: string } | "command";
}

export type FenceCommand = WriteCommand | { cmd: "continue" } | { cmd: "exit" };

/** The data the leaders write: one row per resource, the last writer's value and token. */
const DATA_TABLE = "fenced_data";

const config = JSON.parse(process.env.WORKER_CONFIG ?? "{}") as FenceWorkerConfig;
const emit = (event: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...event, at: Date.now() })}\n`);
};
const codeOf = (e: unknown): string => (e as { code?: string }).code ?? String(e);

/** Blocks this process (timers, I/O, everything) until `marker` exists: a SIGSTOP then lands right here. */
function blockUntil(marker: string): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 120_000;
  while (!existsSync(marker)) {
    if (Date.now() > deadline) throw new Error(`fence worker: ${marker} never appeared`);
    Atomics.wait(cell, 0, 0, 10);
  }
}

let continued: (() => void) | undefined;
async function holdHere(hold: { sync: string } | "command" | undefined, at: string): Promise<void> {
  emit({ type: `held-${at}` });
  if (hold === "command") await new Promise<void>((resolve) => (continued = resolve));
  else if (hold) blockUntil(hold.sync);
}

const client = new Etcd3({ hosts: config.hosts });
const session = await Session.create(client, { ttl: config.ttl, logger: false });
const term = await new Election(session, config.name).campaign("fence-worker");
term.signal.addEventListener("abort", () => emit({ type: "hold-ended", code: codeOf(term.signal.reason) }), {
  once: true,
});
const pool = new pg.Pool({ host: "127.0.0.1", port: config.pgPort, user: "postgres", database: "postgres", max: 2 });
pool.on("error", () => undefined); // a connection the server ended while idle in the pool
emit({ type: "holding", token: term.token.toString() });

async function fenced(cmd: WriteCommand): Promise<void> {
  let onAcquire: (() => void) | undefined;
  if (cmd.holdAt === "before-send") {
    // pg's Pool emits 'acquire' synchronously before handing the client to withFence: after its
    // assertHeld() and before its BEGIN.
    onAcquire = () => void holdHere(cmd.hold, "before-send");
    pool.once("acquire", onAcquire);
  }
  await withFence(
    pool,
    term,
    config.resource,
    async (tx) => {
      await tx.query(`UPDATE ${DATA_TABLE} SET value = $1, token = $2 WHERE resource = $3`, [
        cmd.value,
        term.token.toString(),
        config.resource,
      ]);
      if (cmd.holdAt === "in-fn") await holdHere(cmd.hold, "in-fn");
    },
    { lockTimeoutMs: config.lockTimeoutMs, idleTimeoutMs: config.idleTimeoutMs, logger: false },
  );
}

/** The pattern the issue warns about: the check commits on its own, the write comes after. */
async function naive(cmd: WriteCommand): Promise<void> {
  const checked = await pool.query(`UPDATE etcd_election_fences SET token = $1 WHERE resource = $2 AND token < $1`, [
    term.token.toString(),
    config.resource,
  ]);
  if (checked.rowCount !== 1) throw Object.assign(new Error("naive check refused"), { code: "NAIVE_REFUSED" });
  if (cmd.holdAt === "after-check") await holdHere(cmd.hold, "after-check");
  await pool.query(`UPDATE ${DATA_TABLE} SET value = $1, token = $2 WHERE resource = $3`, [
    cmd.value,
    term.token.toString(),
    config.resource,
  ]);
}

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as FenceCommand;
  if (cmd.cmd === "fence" || cmd.cmd === "naive") {
    // Not awaited: a `continue` must get through while a write is held.
    void (cmd.cmd === "fence" ? fenced(cmd) : naive(cmd)).then(
      () => emit({ type: `result-${cmd.id}`, ok: true }),
      (e: unknown) => emit({ type: `result-${cmd.id}`, ok: false, code: codeOf(e), message: String(e) }),
    );
  } else if (cmd.cmd === "continue") {
    continued?.();
  } else if (cmd.cmd === "exit") {
    await pool.end();
    await session.close();
    client.close();
    emit({ type: "exited" });
    process.exit(0);
  }
}
