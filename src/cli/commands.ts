/** The commands: status, watch, history, resign. Each returns its exit code; output goes to `io`. */
import { writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Etcd3, Watcher } from "etcd3";
import { EtcdUnavailableError } from "../errors.js";
import { isTransient, isWatchCompacted, toElectionError } from "../etcd/errors.js";
import { EXIT, Interrupted, UsageError } from "./connection.js";
import { readHistory } from "./history.js";
import type { NameState } from "./model.js";
import { readName, readNames } from "./read.js";
import {
  escaped,
  historyJson,
  safeJson,
  historySvg,
  historyTable,
  oneLine,
  shown,
  statusJson,
  statusTable,
} from "./render.js";

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Whether stdout is a terminal (watch redraws then), and stdin (resign asks then). */
  outTty: boolean;
  inTty: boolean;
  /** Aborted on SIGINT or SIGTERM, its reason the Interrupted error to end with. */
  signal: AbortSignal;
  timeoutMs: number;
  /** Where resign reads its confirmation (stdin by default). */
  input?: NodeJS.ReadableStream;
}

/** `work`, or the interruption (io.signal's reason) as soon as it comes. */
export function interruptible<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(interruption(signal));
  let onAbort!: () => void;
  const stopped = new Promise<never>((_, reject) => {
    onAbort = () => reject(interruption(signal));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([work, stopped]).finally(() => signal.removeEventListener("abort", onAbort));
}

const interruption = (signal: AbortSignal): Interrupted =>
  signal.reason instanceof Interrupted ? signal.reason : new Interrupted(EXIT.sigint);

export async function status(client: Etcd3, prefix: string, json: boolean, io: Io): Promise<number> {
  const { revision, names } = await interruptible(readNames(client, prefix), io.signal);
  io.out(json ? statusJson(revision, names) : statusTable(names));
  return EXIT.ok;
}

/**
 * Status again on every change under the prefix (the watch is a hint; each redraw is a fresh read), until
 * interrupted (exit 130 on SIGINT, 143 on SIGTERM). On a terminal the screen is redrawn; otherwise each
 * state is printed after a line naming its revision (`--json`: one JSON document a line). The first read
 * comes before the watch, so a connection that does not work fails at once, as `status` does. A lost
 * connection is said on stderr ("disconnected, retrying") and the state redrawn once it is back; errors
 * retrying cannot cure (credentials, permissions) end it.
 */
export async function watch(client: Etcd3, prefix: string, json: boolean, io: Io): Promise<number> {
  let last = "";
  const show = ({ revision, names }: { revision: string; names: NameState[] }): void => {
    const text = json ? safeJson({ revision, names }) + "\n" : statusTable(names);
    if (text === last) return;
    last = text;
    if (io.outTty) io.out(`\x1b[2J\x1b[H${escaped(prefix) || "(all keys)"} at revision ${revision}\n\n${text}`);
    else io.out(json ? text : `--- revision ${revision}\n${text}`);
  };
  const first = await interruptible(readNames(client, prefix), io.signal);
  show(first);

  let failure: unknown;
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const fail = (err: unknown): void => {
    failure ??= err;
    stop();
  };
  const onAbort = (): void => fail(interruption(io.signal));
  io.signal.addEventListener("abort", onAbort, { once: true });
  let disconnected = false;
  const lost = (err: unknown): void => {
    last = ""; // redrawn once back, even if unchanged
    if (disconnected) return;
    disconnected = true;
    const e = toElectionError(err, `watch ${prefix}`);
    io.err(`disconnected (${e.code}: ${oneLine(e.message)}), retrying\n`);
  };
  let pending: Promise<void> = Promise.resolve();
  let retry: ReturnType<typeof setTimeout> | undefined;
  // One read in flight, at most one more queued: a burst of events is one or two reads, not one each.
  let reading = false;
  let again = false;
  /** Reads and shows the state; returns its revision, or undefined if it failed or the watch stops. */
  const readAndShow = async (): Promise<bigint | undefined> => {
    if (failure !== undefined) return undefined;
    try {
      const state = await readNames(client, prefix);
      if (failure !== undefined) return undefined;
      show(state);
      if (disconnected) io.err("reconnected\n");
      disconnected = false;
      return BigInt(state.revision);
    } catch (err) {
      const e = toElectionError(err, `status ${prefix}`);
      if (!isTransient(e)) {
        fail(e);
        return undefined;
      }
      lost(e);
      return undefined;
    }
  };
  const redraw = (): void => {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    pending = (async () => {
      do {
        again = false;
        if ((await readAndShow()) === undefined && failure === undefined) {
          clearTimeout(retry);
          retry = setTimeout(redraw, Math.min(io.timeoutMs, 2000));
        }
      } while (again && failure === undefined);
    })().finally(() => (reading = false));
  };
  let w: Watcher | undefined;
  /** Starts watching from `from`; resolves once started or stopped. A compacted watch starts again. */
  const begin = async (from: bigint): Promise<void> => {
    const creating = client.watch().prefix(prefix).startRevision(from.toString()).create();
    // Not started within the command timeout (the connection dropped since the read): say so, and keep
    // waiting for it (etcd3 retries), until stopped.
    const dial = setTimeout(
      () => lost(new EtcdUnavailableError(`watch ${prefix}: etcd did not start the watch within ${io.timeoutMs} ms`)),
      io.timeoutMs,
    );
    let started: Watcher | undefined;
    try {
      started = await Promise.race([creating, stopped.then(() => undefined)]).finally(() => clearTimeout(dial));
    } catch (err) {
      if (isWatchCompacted(err)) return void restart();
      throw err;
    }
    if (started === undefined) {
      // Stopped before the watch started: closing the client (main) ends it, whenever it connects.
      creating.then(
        (late) => void late.cancel().catch(() => {}),
        () => {},
      );
      return;
    }
    w = started;
    if (disconnected) redraw(); // it started late: the state since, and "reconnected"
    started.on("put", redraw).on("delete", redraw).on("connected", redraw);
    started.on("disconnected", lost);
    started.on("error", (err) => {
      if (started !== w) return;
      if (isWatchCompacted(err)) restart();
      else fail(toElectionError(err, `watch ${prefix}`));
    });
  };
  /**
   * etcd cancelled the watch (its revision compacted, as after a long disconnection): cancel it, read
   * afresh, and watch again from that read's revision + 1.
   */
  const restart = (): void => {
    const old = w;
    w = undefined;
    pending = pending
      .then(async () => {
        if (old) await within(old.cancel(), 500);
        let revision: bigint | undefined;
        while (failure === undefined && (revision = await readAndShow()) === undefined && failure === undefined)
          await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, Math.min(io.timeoutMs, 2000)))]);
        if (failure === undefined && revision !== undefined) await begin(revision + 1n);
      })
      .catch(fail);
  };
  try {
    // From the revision after the first read: a change between the two is not missed.
    await begin(BigInt(first.revision) + 1n);
    await stopped;
  } catch (err) {
    fail(err);
  } finally {
    io.signal.removeEventListener("abort", onAbort);
    clearTimeout(retry);
    // Cancel the watch in etcd; bounded (closing the client ends it anyway).
    if (w) await within(w.cancel(), 500);
  }
  await within(pending, 500);
  throw failure instanceof Interrupted ? failure : toElectionError(failure, `watch ${prefix}`);
}

/** Waits for `p` (its failure ignored) at most `ms`. */
async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p.catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

export async function history(
  client: Etcd3,
  name: string,
  opts: { json: boolean; svg?: string },
  io: Io,
): Promise<number> {
  const h = await interruptible(readHistory(client, name, io.timeoutMs), io.signal);
  if (opts.svg !== undefined) writeFileSync(opts.svg, historySvg(h));
  io.out(opts.json ? historyJson(h) : historyTable(h));
  return EXIT.ok;
}

/**
 * Asks on the terminal; true for y/yes. Ctrl-C (the terminal's, which readline reads in raw mode, or a
 * SIGINT/SIGTERM) rejects with Interrupted; end of input is a no.
 */
export async function confirm(
  question: string,
  io: Pick<Io, "signal" | "input">,
  output: NodeJS.WritableStream = process.stderr,
): Promise<boolean> {
  const input = io.input ?? process.stdin;
  const rl = createInterface({ input, output, terminal: (input as { isTTY?: boolean }).isTTY === true });
  try {
    const answer = await interruptible(
      new Promise<string>((resolve, reject) => {
        rl.on("SIGINT", () => reject(new Interrupted(EXIT.sigint)));
        rl.on("close", () => resolve(""));
        rl.question(question, resolve);
      }),
      io.signal,
    );
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/**
 * Deletes the key at the head of the name's queue, as the library orders it (create revision; a key of
 * any lease or writer counts), guarded by its create revision, so a newer holder's key is never touched.
 * The holder's signal aborts once its watch sees the delete; its late writes fail on the fence.
 */
export async function resign(
  client: Etcd3,
  name: string,
  opts: { force: boolean; yes: boolean },
  io: Io,
): Promise<number> {
  if (!opts.force) throw new UsageError("resign deletes the holder's key: say --force");
  const { state } = await interruptible(readName(client, name), io.signal);
  const holders = state?.holders ?? [];
  if (holders.length === 0) {
    io.err(`${escaped(name)}: nobody holds it\n`);
    return EXIT.nothingToDo;
  }
  if (holders.length > 1) {
    throw new UsageError(
      `${name} is a ${state!.kind} with ${holders.length} holders: resign takes a name with one holder (delete a key with etcdctl)`,
    );
  }
  const holder = holders[0]!;
  const lease = holder.lease === "0" ? "no lease" : `lease ${holder.leaseHex}`;
  const who = `${escaped(holder.key)} (token ${holder.token}, ${lease}${holder.value ? `, value "${shown(holder.value)}"` : ""})`;
  if (!opts.yes) {
    if (!io.inTty) throw new UsageError("not a terminal to confirm on: add --yes");
    if (!(await confirm(`Delete ${who}? [y/N] `, io))) {
      io.err("not deleted\n");
      return EXIT.nothingToDo;
    }
  }
  let res;
  try {
    res = await interruptible(
      client.if(holder.key, "Create", "==", holder.token).then(client.delete().key(holder.key)).commit(),
      io.signal,
    );
  } catch (err) {
    if (err instanceof Interrupted) throw err;
    throw toElectionError(err, `resign ${name}`);
  }
  if (!res.succeeded) {
    io.err(`${escaped(name)}: the holder changed meanwhile; nothing deleted\n`);
    return EXIT.nothingToDo;
  }
  io.out(`deleted ${who} at revision ${res.header.revision}\n`);
  return EXIT.ok;
}
