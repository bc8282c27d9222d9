/**
 * Graceful hand-over: the holder resigns (unlocks) and the next in line is elected (gets the lock). The
 * time from calling resign() to the next candidate's campaign resolving, against its floor ("the delete,
 * then one serializable read on the member that applied it": what the waiter does, design: Decide at the
 * event's revision), the former floor ("the delete, then one linearizable read") and one put, measured
 * side by side in one run.
 *
 * Each implementation has a line of `size` candidates: the leader resigns, the next is elected, and the
 * one that resigned joins the back of the line; once with every candidate in this process (its own
 * client and session each), once with each in a process of its own. So the candidate taking over has
 * waited a while, as a standby does (etcd3's waiter watches from a past revision, which etcd
 * serves from a 100 ms sync loop until the watcher catches up: a waiter that joined just before would
 * make etcd3 look slower than it is in service).
 *
 * Every measured operation, floors included, comes after the same idle gap: a process that slept
 * answers slower than a busy one, so peers are only compared after the same sleep.
 */
import { Election, Mutex, Session, type Lock, type Term } from "../src/index.js";
import { contextOf } from "../src/session/context.js";
import { BenchWorker } from "./child.js";
import type { BenchEnv } from "./env.js";
import { countRpcs, delta, scrape, type Counts } from "./etcd-metrics.js";
import { keyPrefix, waitForKeys } from "./keys.js";
import { interleave, sleep, summarize, type Summary } from "./stats.js";

export interface HandoverPath {
  key: string;
  label: string;
  impl: "floor" | "ours" | "etcd3";
  summary: Summary;
  /** RPCs etcd handled from the resign to the next one elected (floors: per operation). */
  counts: Counts;
}

/**
 * Where the time of ours goes (Election, one process), per hand-over, p50 of each phase: from resign()
 * to the waiter handling the delete's watch event (the delete committed, etcd's watch notification, gRPC
 * delivering it); from that event to its serializable read being sent (our event-loop turns); the read
 * (a round trip: etcd serves it from its store); from its answer to campaign() resolving (our turns).
 */
export interface HandoverPhases {
  toEvent: Summary;
  toRead: Summary;
  read: Summary;
  afterRead: Summary;
  /** Hand-overs whose read was not the serializable one on the event's member (a fallback): left out of the phases. */
  fellBack: number;
}

export interface HandoverResult {
  rounds: number;
  gapMs: number;
  lineSize: number;
  paths: HandoverPath[];
  phases?: HandoverPhases | undefined;
}

/**
 * The candidates' TTL. Waiters and holders re-read every TTL/2 (watches are hints); with a long TTL no
 * such periodic read falls into the windows where RPCs per hand-over are counted.
 */
const LINE_TTL = 60;

/** A line of candidates passing leadership along. */
interface Line {
  /** Resigns the leader; resolves with the ms until the next one was elected. `between` runs before the resign and after the election, before anyone rejoins. */
  handover(between?: { before(): Promise<void>; after(): Promise<void> }): Promise<number>;
  close(): Promise<void>;
  /** Each timed hand-over's phases (ours, elections in this process only). */
  phases?: Phase[];
}

interface Phase {
  toEvent: number;
  toRead: number;
  read: number;
  afterRead: number;
  atEvent: boolean;
}

export async function handover(
  env: BenchEnv,
  sizes: { rounds: number; warmup: number; gapMs: number; lineSize: number; countTimes: number },
): Promise<HandoverResult> {
  const prefix = env.prefix("handover");
  const client = env.client();
  // Set up side by side (starting processes takes a while); measured one at a time, interleaved.
  const [oursElection, oursMutex, etcd3Election, oursProcs, etcd3Procs] = await Promise.all([
    oursLine(env, `${prefix}/ours-election`, sizes.lineSize, "election"),
    oursLine(env, `${prefix}/ours-mutex`, sizes.lineSize, "mutex"),
    etcd3Line(env, `${prefix}/etcd3-election`, sizes.lineSize),
    line(env, "ours-election", `${prefix}/ours-election-procs`, sizes.lineSize),
    line(env, "etcd3-election", `${prefix}/etcd3-election-procs`, sizes.lineSize),
  ]);
  const lines: Record<string, Line> = {
    "ours-election": oursElection,
    "ours-mutex": oursMutex,
    "etcd3-election": etcd3Election,
    "ours-election-procs": oursProcs,
    "etcd3-election-procs": etcd3Procs,
  };
  const floorKey = `${prefix}/floor`;
  const floors: Record<string, () => Promise<number>> = {
    put: async () => {
      await client.delete().key(floorKey);
      await sleep(sizes.gapMs);
      const start = performance.now();
      await client.put(floorKey).value("x");
      return performance.now() - start;
    },
    "delete-range": async () => {
      await client.put(floorKey).value("x");
      await sleep(sizes.gapMs);
      const start = performance.now();
      await client.delete().key(floorKey);
      await client.get(floorKey);
      return performance.now() - start;
    },
    "delete-serializable": async () => {
      await client.put(floorKey).value("x");
      await sleep(sizes.gapMs);
      const start = performance.now();
      await client.delete().key(floorKey);
      await client.get(floorKey).serializable(true); // on the member that applied the delete: etcd3 has one endpoint here
      return performance.now() - start;
    },
  };
  const paths: Record<string, () => Promise<number>> = { ...floors };
  for (const [key, line] of Object.entries(lines)) {
    paths[key] = async () => {
      await sleep(sizes.gapMs);
      return line.handover();
    };
  }
  try {
    env.log(
      `hand-over: ${sizes.rounds} rounds, lines of ${sizes.lineSize}, ${sizes.gapMs} ms idle before each measured operation`,
    );
    const { samples } = await interleave(paths, sizes);
    const counts: Record<string, Counts> = {};
    await sleep(300); // the last candidate to rejoin a line is settled in its place
    for (const [key, run] of Object.entries(floors)) {
      const c = await countRpcs(env.metricsEndpoint, sizes.countTimes, async () => void (await run()));
      // The untimed setup of each floor (a delete, or a put) is one more RPC per operation.
      const setup = key === "put" ? "DeleteRange" : "Put";
      c.rpcs[setup] = (c.rpcs[setup] ?? 0) - 1;
      if (c.rpcs[setup] === 0) delete c.rpcs[setup];
      counts[key] = c;
    }
    for (const [key, line] of Object.entries(lines)) {
      const all: Counts[] = [];
      for (let i = 0; i < sizes.countTimes; i++) {
        await sleep(300); // the candidate that rejoined last time is settled in its place
        let before = new Map<string, number>();
        await line.handover({
          before: async () => void (before = await scrape(env.metricsEndpoint)),
          after: async () => {
            await sleep(50); // anything the hand-over sets off arrives meanwhile
            all.push(delta(before, await scrape(env.metricsEndpoint)));
          },
        });
      }
      counts[key] = average(all);
    }
    const labels: Record<string, [string, HandoverPath["impl"]]> = {
      put: ["floor: one put", "floor"],
      "delete-range": ["former floor: delete, then a linearizable range", "floor"],
      "delete-serializable": ["floor: delete, then a serializable range", "floor"],
      "ours-election": ["Election hand-over (resign → next elected), one process", "ours"],
      "ours-mutex": ["Mutex hand-over (unlock → next locked), one process", "ours"],
      "etcd3-election": ["etcd3 Election hand-over, one process", "etcd3"],
      "ours-election-procs": ["Election hand-over, between processes", "ours"],
      "etcd3-election-procs": ["etcd3 Election hand-over, between processes", "etcd3"],
    };
    const phases = oursElection.phases?.slice(-sizes.rounds) ?? [];
    const atEvent = phases.filter((p) => p.atEvent);
    return {
      rounds: sizes.rounds,
      gapMs: sizes.gapMs,
      lineSize: sizes.lineSize,
      phases:
        phases.length === 0
          ? undefined
          : {
              toEvent: summarize(atEvent.map((p) => p.toEvent)),
              toRead: summarize(atEvent.map((p) => p.toRead)),
              read: summarize(atEvent.map((p) => p.read)),
              afterRead: summarize(atEvent.map((p) => p.afterRead)),
              fellBack: phases.length - atEvent.length,
            },
      paths: Object.keys(paths).map((key) => ({
        key,
        label: labels[key]![0],
        impl: labels[key]![1],
        summary: summarize(samples.get(key)!),
        counts: counts[key]!,
      })),
    };
  } finally {
    for (const line of Object.values(lines)) await line.close();
    await client.delete().prefix(prefix);
  }
}

function average(all: Counts[]): Counts {
  const out: Counts = { rpcs: {}, opened: {} };
  for (const c of all) {
    for (const [m, n] of Object.entries(c.rpcs)) out.rpcs[m] = (out.rpcs[m] ?? 0) + n / all.length;
    for (const [m, n] of Object.entries(c.opened)) out.opened[m] = (out.opened[m] ?? 0) + n / all.length;
  }
  return out;
}

/**
 * A line of `size` candidates in this process, each with its own client and session (as separate
 * processes would have): one event loop sees the resign's answers and the next one's wake-up, as the
 * floor's one client sees its delete and its read.
 */
async function oursLine(env: BenchEnv, name: string, size: number, kind: "election" | "mutex"): Promise<Line> {
  const lookup = env.client();
  const sessions = await Promise.all(
    Array.from({ length: size }, () => Session.create(env.client(), { ttl: LINE_TTL })),
  );
  const take: (() => Promise<Term | Lock>)[] = sessions.map((s) => {
    if (kind === "election") {
      const e = new Election(s, name);
      return () => e.campaign("candidate");
    }
    const m = new Mutex(s, name);
    return () => m.lock();
  });
  // The waiter's read of the queue, timed through its connection (elections only: a term tells when the
  // waiter saw its predecessor's key go). One await more on that path, for every round alike.
  let lastRead: { start: number; end: number; atEvent: boolean } | undefined;
  if (kind === "election") {
    for (const s of sessions) {
      const conn = contextOf(s).conn;
      const call = conn.call.bind(conn);
      conn.call = async <Res>(...args: Parameters<typeof call>): Promise<Res> => {
        const [, method, req] = args;
        if (method !== "range") return call<Res>(...args);
        const start = performance.now();
        const res = await call<Res>(...args);
        lastRead = {
          start,
          end: performance.now(),
          atEvent: (req as { serializable?: boolean }).serializable === true,
        };
        return res;
      };
    }
  }
  const phases: Phase[] = [];
  const queue: number[] = [];
  const pending = new Map<number, Promise<Term | Lock>>();
  const enter = (i: number): void => {
    const p = take[i]!();
    p.catch(() => undefined); // a campaign still waiting when the line closes rejects
    pending.set(i, p);
  };
  const join = async (i: number): Promise<void> => {
    enter(i);
    queue.push(i);
    await waitForKeys(lookup, keyPrefix("ours", name), queue.length, { intervalMs: 5, timeoutMs: 10_000 });
  };
  for (let i = 0; i < size; i++) await join(i);
  let holder = await pending.get(queue[0]!)!;
  await sleep(200); // everyone's watch in place
  return {
    handover: async (between) => {
      const [gone, next] = [queue[0]!, queue[1]!];
      let at = 0;
      const won = pending.get(next)!.then((h) => ((at = performance.now()), h));
      await between?.before();
      lastRead = undefined;
      const start = performance.now();
      await holder.release();
      holder = await won;
      const elapsed = at - start;
      const goneAt = (holder as Partial<Term>).predecessorGoneAt;
      if (!between && goneAt !== undefined && lastRead) {
        const read: { start: number; end: number; atEvent: boolean } = lastRead;
        phases.push({
          toEvent: goneAt - start,
          toRead: read.start - goneAt,
          read: read.end - read.start,
          afterRead: at - read.end,
          atEvent: read.atEvent,
        });
      }
      await between?.after();
      queue.shift();
      pending.delete(gone);
      enter(gone);
      queue.push(gone);
      return elapsed;
    },
    close: async () => {
      await Promise.all(sessions.map((s) => s.close()));
      await Promise.allSettled(pending.values());
    },
    ...(kind === "election" ? { phases } : {}),
  };
}

async function etcd3Line(env: BenchEnv, name: string, size: number): Promise<Line> {
  const lookup = env.client();
  const elections = Array.from({ length: size }, () => env.client().election(name, LINE_TTL));
  type Campaign = ReturnType<(typeof elections)[number]["campaign"]>;
  const queue: number[] = [];
  const campaigns = new Map<number, { campaign: Campaign; elected: Promise<void> }>();
  const join = async (i: number): Promise<void> => {
    const campaign = elections[i]!.campaign("candidate");
    campaigns.set(i, { campaign, elected: elected(campaign) });
    queue.push(i);
    await waitForKeys(lookup, keyPrefix("etcd3", name), queue.length, { intervalMs: 5, timeoutMs: 10_000 });
  };
  for (let i = 0; i < size; i++) await join(i);
  await campaigns.get(queue[0]!)!.elected;
  await sleep(200); // past etcd's 100 ms watch sync: every waiter's watcher has caught up
  return {
    handover: async (between) => {
      const [gone, next] = [queue[0]!, queue[1]!];
      let at = 0;
      const won = campaigns.get(next)!.elected.then(() => void (at = performance.now()));
      await between?.before();
      const start = performance.now();
      await campaigns.get(gone)!.campaign.resign();
      await won;
      const elapsed = at - start;
      await between?.after();
      queue.shift();
      campaigns.delete(gone);
      const campaign = elections[gone]!.campaign("candidate");
      campaigns.set(gone, { campaign, elected: elected(campaign) });
      queue.push(gone);
      return elapsed;
    },
    close: async () => {
      for (const { campaign } of campaigns.values()) await campaign.resign().catch(() => undefined);
    },
  };
}

/** Resolves when the campaign is elected (a campaign resigned while waiting never is). */
function elected(campaign: { wait(): Promise<unknown> }): Promise<void> {
  const p = campaign.wait().then(() => undefined);
  p.catch(() => undefined);
  return p;
}

/**
 * A line of `size` candidates, each a process of its own (bench/workers/candidate.ts): the hand-over
 * is timed from the resigning process's call to resign() to the next one's campaign resolving, on the
 * system-wide monotonic clock. Each process sees only its own part, as in service: the one that resigns
 * handles its own answers, the one taking over its own.
 */
async function line(
  env: BenchEnv,
  kind: "ours-election" | "etcd3-election",
  name: string,
  size: number,
): Promise<Line> {
  const lookup = env.client();
  const keys = keyPrefix(kind === "etcd3-election" ? "etcd3" : "ours", name);
  const workers = Array.from({ length: size }, (_, i) =>
    BenchWorker.start("candidate", {
      endpoints: env.endpoints,
      name,
      identity: `candidate-${i}`,
      ttl: LINE_TTL,
      candidate: kind,
    }),
  );
  await Promise.all(workers.map((w) => w.next("ready")));
  for (const [i, w] of workers.entries()) {
    w.send({ cmd: "join" });
    await waitForKeys(lookup, keys, i + 1, { intervalMs: 5, timeoutMs: 10_000 });
  }
  await workers[0]!.next("elected");
  await sleep(200); // everyone's watch in place, and past etcd's 100 ms sync for etcd3's (from a past revision)
  const queue = workers.map((_, i) => i);
  return {
    handover: async (between) => {
      const gone = workers[queue[0]!]!;
      const next = workers[queue[1]!]!;
      const electedBefore = next.count("elected");
      const resignedBefore = gone.count("resigned");
      await between?.before();
      gone.send({ cmd: "resign" });
      const won = await next.next("elected", 30_000, electedBefore);
      const resigned = await gone.next("resigned", 30_000, resignedBefore);
      await between?.after();
      queue.push(queue.shift()!);
      gone.send({ cmd: "join" }); // back of the line
      return (won.mono as number) - (resigned.mono as number);
    },
    close: async () => {
      for (const w of workers) w.send({ cmd: "exit" });
      await Promise.all(workers.map((w) => Promise.race([w.exited, sleep(10_000)])));
      await Promise.all(workers.map((w) => w.stop("SIGKILL")));
      await lookup.delete().prefix(keys);
    },
  };
}
