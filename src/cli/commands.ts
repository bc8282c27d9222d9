/** The commands: status, watch, history, resign. Each returns its exit code; output goes to `io`. */
import { writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Etcd3 } from "etcd3";
import { toElectionError } from "../etcd/errors.js";
import { EXIT, UsageError } from "./connection.js";
import { readHistory } from "./history.js";
import { readName, readNames } from "./read.js";
import { historyJson, historyTable, statusJson, statusTable } from "./render.js";
import { timelineSvg } from "./timeline.js";

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Whether stdout is a terminal (watch redraws then), and stdin (resign asks then). */
  outTty: boolean;
  inTty: boolean;
  signal: AbortSignal;
  timeoutMs: number;
}

export async function status(client: Etcd3, prefix: string, json: boolean, io: Io): Promise<number> {
  const { revision, names } = await readNames(client, prefix);
  io.out(json ? statusJson(revision, names) : statusTable(names));
  return EXIT.ok;
}

/**
 * Status again on every change under the prefix (the watch is a hint; each redraw is a fresh read), until
 * interrupted. On a terminal the screen is redrawn; otherwise each state is printed after a line naming
 * its revision (`--json`: one JSON document a line).
 */
export async function watch(client: Etcd3, prefix: string, json: boolean, io: Io): Promise<number> {
  let pending: Promise<void> = Promise.resolve();
  let last = "";
  const draw = async (): Promise<void> => {
    const { revision, names } = await readNames(client, prefix);
    const text = json ? JSON.stringify({ revision, names }) + "\n" : statusTable(names);
    if (text === last) return;
    last = text;
    if (io.outTty) io.out(`\x1b[2J\x1b[H${prefix || "(all keys)"} at revision ${revision}\n\n${text}`);
    else io.out(json ? text : `--- revision ${revision}\n${text}`);
  };
  const watcher = (prefix === "" ? client.watch().prefix("") : client.watch().prefix(prefix)).create();
  let failure: Error | undefined;
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const onAbort = (): void => stop();
  io.signal.addEventListener("abort", onAbort, { once: true });
  const redraw = (): void => {
    pending = pending.then(draw).catch((err: unknown) => {
      failure = toElectionError(err, `status ${prefix}`);
      stop();
    });
  };
  try {
    const w = await watcher;
    w.on("put", redraw).on("delete", redraw).on("connected", redraw);
    w.on("error", (err) => {
      failure = toElectionError(err, `watch ${prefix}`);
      stop();
    });
    redraw();
    await stopped;
    await w.cancel().catch(() => {});
  } finally {
    io.signal.removeEventListener("abort", onAbort);
  }
  await pending;
  if (failure) throw failure;
  return EXIT.ok;
}

export async function history(
  client: Etcd3,
  name: string,
  opts: { json: boolean; svg?: string },
  io: Io,
): Promise<number> {
  const h = await readHistory(client, name, io.timeoutMs);
  if (opts.svg !== undefined) {
    const to = Number(h.toRevision);
    writeFileSync(
      opts.svg,
      timelineSvg({
        heading: `${h.name}${h.kind ? ` (${h.kind})` : ""}: terms, revisions ${h.fromRevision}–${h.toRevision}`,
        from: Number(h.fromRevision),
        to,
        axisLabel: "etcd revision (revisions carry no time)",
        bars: h.terms.map((t) => ({
          lane: t.value && h.kind === "election" ? `${t.holder} ${t.value}` : t.holder,
          start: Number(t.began),
          end: t.ended === undefined ? to : Number(t.ended),
          token: t.token,
          tip: `${t.key} token ${t.token}: revision ${t.began}–${t.ended ?? "now"}${t.value ? `, value ${t.value}` : ""}; ${t.how}`,
        })),
      }),
    );
  }
  io.out(opts.json ? historyJson(h) : historyTable(h));
  return EXIT.ok;
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await new Promise<string>((resolve) => rl.question(question, resolve));
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/**
 * Deletes the current holder's key, guarded by its create revision, so a newer holder's key is never
 * touched. The holder's signal aborts once its watch sees the delete; its late writes fail on the fence.
 */
export async function resign(
  client: Etcd3,
  name: string,
  opts: { force: boolean; yes: boolean },
  io: Io,
): Promise<number> {
  if (!opts.force) throw new UsageError("resign deletes the holder's key: say --force");
  const { state } = await readName(client, name);
  const holders = state?.holders ?? [];
  if (holders.length === 0) {
    io.err(`${name}: nobody holds it\n`);
    return EXIT.nothingToDo;
  }
  if (holders.length > 1) {
    throw new UsageError(
      `${name} is a ${state!.kind} with ${holders.length} holders: resign takes a name with one holder (delete a key with etcdctl)`,
    );
  }
  const holder = holders[0]!;
  const who = `${holder.key} (token ${holder.token}, lease ${holder.leaseHex}${holder.value ? `, value ${JSON.stringify(holder.value)}` : ""})`;
  if (!opts.yes) {
    if (!io.inTty) throw new UsageError("not a terminal to confirm on: add --yes");
    if (!(await confirm(`Delete ${who}? [y/N] `))) {
      io.err("not deleted\n");
      return EXIT.nothingToDo;
    }
  }
  let res;
  try {
    res = await client.if(holder.key, "Create", "==", holder.token).then(client.delete().key(holder.key)).commit();
  } catch (err) {
    throw toElectionError(err, `resign ${name}`);
  }
  if (!res.succeeded) {
    io.err(`${name}: the holder changed meanwhile; nothing deleted\n`);
    return EXIT.nothingToDo;
  }
  io.out(`deleted ${who} at revision ${res.header.revision}\n`);
  return EXIT.ok;
}
