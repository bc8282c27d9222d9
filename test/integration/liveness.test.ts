/**
 * Every outage ends in a working state, with no restart: releases are confirmed, blips do not lose
 * sessions, the elector never overlaps work, followers stay healthy, stopped processes exit, names are
 * exact, long timeouts wait, a blocked event loop is not a stall, observe reads only when the leader may
 * have changed, assertHeld() reads the clock, and a stop is bounded.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Election, LeaderElector, Mutex, Session, type Lock, type Logger, type Term } from "../../src/index.js";
import { contextOf } from "../../src/session/context.js";
import { failKvCalls } from "../support/internals.js";
import { handledRpcs } from "../support/metrics.js";
import { collect, keysUnder } from "../support/observe.js";
import {
  faultsUnavailableReason,
  startCluster,
  startEtcd,
  waitFor,
  type EtcdEnv,
  type EtcdMember,
} from "../support/index.js";

/** Settles `promise` into a flag the test can read: has it settled yet? */
function track<T>(promise: Promise<T>): { settled: () => boolean; promise: Promise<T> } {
  let settled = false;
  const p = promise.finally(() => (settled = true));
  p.catch(() => {});
  return { settled: () => settled, promise: p };
}

/** A logger that keeps every line. */
function recordingLogger(): Logger & { lines: { level: string; message: string; fields: object }[] } {
  const lines: { level: string; message: string; fields: object }[] = [];
  const at = (level: string) => (fields: object, message: string) => void lines.push({ level, message, fields });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

const busyWait = (ms: number): void => {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // block the event loop, as a long GC or a synchronous job does
  }
};

describe.skipIf(!!faultsUnavailableReason)("liveness on a single node", () => {
  let etcd: EtcdEnv;
  let member: EtcdMember;
  /** Through the member's proxy: the one the tests cut off. */
  let proxied: Etcd3;
  /** Straight to etcd: the other participants, unaffected by the proxy. */
  let direct: Etcd3;

  beforeAll(async () => {
    etcd = await startEtcd();
    member = etcd.members[0]!;
    proxied = etcd.client({}, [member.clientUrl]);
    direct = etcd.client({}, [member.directClientUrl]);
  });
  afterAll(() => etcd?.close());

  /** Black-holes the proxy for `ms`, returning the moment it opened again. */
  async function blackholeFor(ms: number): Promise<number> {
    member.clientProxy.blackhole();
    await new Promise((resolve) => setTimeout(resolve, ms)); // the outage's length is the scenario itself
    member.clientProxy.open();
    return Date.now();
  }

  /**
   * A holder behind the proxy releases while it is black-holed for 2.5 s; a waiter on the direct path is
   * next. The release must not resolve before etcd confirmed it, and the waiter must get in within 1 s of
   * the heal.
   */
  async function releaseLostInABlackHole<H extends { signal: AbortSignal }>(
    kind: string,
    take: (s: Session, name: string) => Promise<H>,
    release: (h: H) => Promise<void>,
  ): Promise<void> {
    const name = `${etcd.prefix()}${kind}`;
    const a = await Session.create(proxied, { ttl: 20, callTimeoutMs: 1000 });
    const b = await Session.create(direct, { ttl: 20 });
    const held = await take(a, name);
    const next = take(b, name).then((h) => ({ held: h, at: Date.now() }));
    await waitFor(async () => (await keysUnder(direct, name)).length === 2);
    member.clientProxy.blackhole();
    const releasing = track(release(held));
    expect(held.signal.aborted).toBe(true); // it stops acting at once, whatever etcd hears
    const healedAt = await blackholeFor(2500);
    expect(releasing.settled()).toBe(false); // not resolved on a delete that never happened
    const won = await next;
    expect(won.at - healedAt).toBeLessThan(1000);
    await releasing.promise;
    await release(won.held);
    expect(await keysUnder(direct, name)).toEqual([]);
    await a.close();
    await b.close();
  }

  it("an unlock lost in a 2.5 s black hole is retried: it resolves after the network heals, the next holder gets in within 1 s, nothing is left", async () => {
    await releaseLostInABlackHole(
      "unlock",
      (s, name) => new Mutex(s, name).lock(),
      (lock) => lock.unlock(),
    );
  });

  it("a resign lost in a black hole is retried until etcd confirms it; the next candidate leads within 1 s of the heal", async () => {
    await releaseLostInABlackHole(
      "resign",
      (s, name) => new Election(s, name).campaign("x"),
      (term) => term.resign(),
    );
  });

  it("a campaign aborted during a black hole never becomes leader: its key is removed once etcd is back, and the next candidate leads", async () => {
    const name = `${etcd.prefix()}aborted`;
    const leaderSession = await Session.create(direct, { ttl: 20 });
    const a = await Session.create(proxied, { ttl: 20, callTimeoutMs: 1000 });
    const c = await Session.create(direct, { ttl: 20 });
    const leader = await new Election(leaderSession, name).campaign("leader");
    const stop = new AbortController();
    const aborted = track(new Election(a, name).campaign("a", { signal: stop.signal }));
    await waitFor(async () => (await keysUnder(direct, name)).length === 2);
    const third = new Election(c, name).campaign("c").then((t) => ({ term: t, at: Date.now() }));
    await waitFor(async () => (await keysUnder(direct, name)).length === 3);
    member.clientProxy.blackhole();
    stop.abort(new Error("given up"));
    await leader.resign(); // a's key is the head now, and nobody acts on it
    const healedAt = await blackholeFor(2500);
    await expect(aborted.promise).rejects.toThrow("given up");
    const won = await third;
    expect(won.at - healedAt).toBeLessThan(1000);
    expect(won.term.value.toString()).toBe("c");
    await won.term.resign();
    expect(await keysUnder(direct, name)).toEqual([]);
    for (const s of [leaderSession, a, c]) await s.close();
  });

  it("a 1.2 s blip with failing calls does not lose a session (no client-side breaker between it and etcd)", async () => {
    const name = `${etcd.prefix()}breaker`;
    const session = await Session.create(proxied, { ttl: 4, callTimeoutMs: 1000 });
    let lost = 0;
    session.on("lost", () => lost++);
    const held = await new Mutex(session, name).lock();
    const election = new Election(session, `${name}-e`);
    member.clientProxy.cut();
    // Library calls and the user's own calls fail during the blip (etcd3 would open its breaker for 5 s).
    const failures = await Promise.allSettled(
      [...Array(6)].flatMap(() => [election.leader(), proxied.get("x").string()]),
    );
    expect(failures.every((f) => f.status === "rejected")).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 1200)); // the blip's length is the scenario
    member.clientProxy.open();
    await waitFor(() => session.state === "connected", { timeoutMs: 3000 });
    // Past the point where the old breaker would have lost it: renewed, and usable.
    await waitFor(async () => (await election.leader()) === undefined, { timeoutMs: 3000 });
    await waitFor(() => contextOf(session).lease.sinceRenewalMs < 1500, { timeoutMs: 3000 });
    expect(lost).toBe(0);
    expect(held.signal.aborted).toBe(false);
    await held.unlock();
    await session.close();
  });

  it("LeaderElector never runs two terms' work at once: it waits for work that ignores its signal, and warns while it does", async () => {
    const name = `${etcd.prefix()}overlap`;
    const logger = recordingLogger();
    const intervals: { start: number; end?: number }[] = [];
    let terms = 0;
    const elector = new LeaderElector({
      client: etcd.client(),
      name,
      identity: "stubborn",
      ttl: 2,
      logger,
      onStartedLeading: async (term) => {
        const interval: { start: number; end?: number } = { start: Date.now() };
        intervals.push(interval);
        terms++;
        await new Promise((resolve) => term.signal.addEventListener("abort", resolve, { once: true }));
        // Ignores the end of its term for 2.5 s (longer than the 2 s TTL).
        await new Promise((resolve) => setTimeout(resolve, 2500));
        interval.end = Date.now();
      },
    });
    const stop = new AbortController();
    const done = elector.run({ signal: stop.signal });
    await waitFor(() => terms === 1 && elector.isLeader());
    const leader = (await new Election(await Session.create(direct, { ttl: 10 }), name).leader())!;
    await direct.leaseClient.leaseRevoke({ ID: leader.leaseId }); // the term ends behind its back
    await waitFor(() => terms === 2, { timeoutMs: 15_000 });
    expect(intervals[0]!.end).toBeDefined();
    expect(intervals[1]!.start).toBeGreaterThanOrEqual(intervals[0]!.end!);
    expect(logger.lines.some((l) => l.level === "warn" && /has not returned/.test(l.message))).toBe(true);
    stop.abort();
    await done;
  });

  it("names are exact: a deeper name's key never counts in a shorter name's queue, both ways", async () => {
    const base = `${etcd.prefix()}X/jobs`;
    const session = await Session.create(direct, { ttl: 10 });
    const other = await Session.create(direct, { ttl: 10 });
    const deep = await new Mutex(session, `${base}/cleanup`).lock();
    expect(await new Election(other, base).leader()).toBeUndefined();
    const shallow = await new Mutex(other, base).lock({ timeoutMs: 5000 });
    expect(await new Election(session, `${base}/cleanup/x`).leader()).toBeUndefined();
    const seen = collect(new Election(other, `${base}/cleanup`).observe());
    await waitFor(() => seen.items.length === 1);
    expect(seen.items[0]?.key).toBe(deep.key);
    await shallow.unlock();
    await deep.unlock();
    await other.close();
    await session.close();
  });

  it("a timeout of 2^31 ms or more waits (it does not fire at once)", async () => {
    const name = `${etcd.prefix()}long`;
    const session = await Session.create(direct, { ttl: 10 });
    const other = await Session.create(direct, { ttl: 10 });
    const held = await new Mutex(session, name).lock();
    const waiting = new Mutex(other, name).lock({ timeoutMs: 2 ** 31 });
    await waitFor(async () => (await keysUnder(direct, name)).length === 2);
    await held.unlock();
    const lock: Lock = await waiting; // rejected at once with LOCK_TIMEOUT before the fix
    await lock.unlock();
    await other.close();
    await session.close();
  });

  it("a 2.5 s event-loop block with a keepalive answer waiting is not a stall: not suspended, the user's channels untouched", async () => {
    const session = await Session.create(proxied, { ttl: 10 });
    const ctx = contextOf(session);
    const events: string[] = [];
    session.on("suspended", () => events.push("suspended"));
    session.on("lost", () => events.push("lost"));
    const userKey = `${etcd.prefix()}user`;
    const userWatch = await proxied.watch().key(userKey).create();
    userWatch.on("disconnected", () => events.push("user watch disconnected"));
    // Block right after the next keepalive is written, so its answer arrives during the block.
    const original = ctx.conn.stream.bind(ctx.conn);
    let blocked = false;
    ctx.conn.stream = (async (service: "Lease", method: string, timeoutMs: number) => {
      const opened = await original(service, method, timeoutMs);
      const write = opened.stream.write.bind(opened.stream);
      opened.stream.write = (req: never) => {
        const ok = write(req);
        if (!blocked) {
          blocked = true;
          setImmediate(() => busyWait(2500));
        }
        return ok;
      };
      return opened;
    }) as typeof ctx.conn.stream;
    await waitFor(() => blocked, { timeoutMs: 10_000 });
    await waitFor(() => contextOf(session).lease.sinceRenewalMs < 5000, { timeoutMs: 10_000 });
    const value = `${Date.now()}`;
    const put = new Promise((resolve) => userWatch.once("put", resolve));
    await direct.put(userKey).value(value).exec();
    await put;
    expect(events).toEqual([]);
    await userWatch.cancel();
    await session.close();
  });

  it("assertHeld() reads the clock: after a block past the deadline it throws, though a signal kept from before has not flipped yet", async () => {
    const session = await Session.create(direct, { ttl: 2, marginMs: 250 });
    const term: Term = await new Election(session, `${etcd.prefix()}assert`).campaign("a");
    const signal = term.signal; // kept, as user code does
    term.assertHeld();
    busyWait(session.remainingMs() + 50);
    expect(signal.aborted).toBe(false); // a stored signal cannot know before this process runs again
    expect(() => term.assertHeld()).toThrow(expect.objectContaining({ code: "NOT_LEADER" }));
    expect(signal.aborted).toBe(true);
    await session.close();
  });

  it("healthy() is false for a leader that has not renewed for 2 x TTL (a wedged process), and true again once it stepped down", async () => {
    const name = `${etcd.prefix()}wedged`;
    const stop = new AbortController();
    const elector = new LeaderElector({
      client: etcd.client(),
      name,
      identity: "wedged",
      ttl: 2,
      logger: false,
      onStartedLeading: () => {},
    });
    const done = elector.run({ signal: stop.signal });
    await waitFor(() => elector.isLeader());
    expect(elector.healthy()).toBe(true);
    busyWait(2 * 2000 + 200); // wedged: nothing of the elector runs, no keepalive is answered
    expect(elector.healthy()).toBe(false);
    // Once it runs again it notices its session is gone, steps down, and gets back in with a new one.
    try {
      await waitFor(() => elector.healthy() && elector.metrics().sessions === 2, { timeoutMs: 5000 });
    } finally {
      stop.abort();
      await done;
    }
  });

  it("run() stops within max(TTL, 2 x callTimeoutMs) while keepalives succeed and every write fails, and its key goes with the lease", async () => {
    const name = `${etcd.prefix()}writes-fail`;
    const c = etcd.client();
    const kv = failKvCalls(c);
    const elector = new LeaderElector({
      client: c,
      name,
      identity: "a",
      ttl: 3,
      callTimeoutMs: 1000,
      logger: false,
      onStartedLeading: () => {},
    });
    const stop = new AbortController();
    const done = elector.run({ signal: stop.signal });
    await waitFor(() => elector.isLeader());
    kv.on();
    const stoppedAt = Date.now();
    stop.abort();
    await done;
    expect(Date.now() - stoppedAt).toBeLessThan(Math.max(3000, 2 * 1000) + 500);
    kv.off();
    // The resign never got through; closing the session revoked the lease, and the key with it.
    await waitFor(async () => (await keysUnder(direct, name)).length === 0, { timeoutMs: 5000 });
  });

  it("with the caller's session, a stop whose resign cannot get through is bounded too; the key goes when the session closes", async () => {
    const name = `${etcd.prefix()}writes-fail-own`;
    const c = etcd.client();
    const kv = failKvCalls(c);
    const session = await Session.create(c, { ttl: 3, callTimeoutMs: 1000 });
    const elector = new LeaderElector({ session, name, identity: "a", logger: false, onStartedLeading: () => {} });
    const stop = new AbortController();
    const done = elector.run({ signal: stop.signal });
    await waitFor(() => elector.isLeader());
    kv.on();
    const stoppedAt = Date.now();
    stop.abort();
    await done;
    expect(Date.now() - stoppedAt).toBeLessThan(Math.max(3000, 2 * 1000) + 500);
    expect(await keysUnder(direct, name)).toHaveLength(1);
    kv.off();
    await session.close();
    expect(await keysUnder(direct, name)).toEqual([]);
  });

  it("a stopped worker exits by itself within 1 s of run() resolving, also after an etcd blip", async () => {
    const name = `${etcd.prefix()}exit`;
    const child = spawn(process.execPath, ["--import", "tsx", WORKER], {
      env: { ...process.env, WORKER_ID: "exit", ETCD_ENDPOINTS: member.clientUrl, ELECTION: name, TTL: "5" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let resolvedAt = 0;
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (!resolvedAt && out.includes("run() resolved")) resolvedAt = Date.now();
    });
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number>((resolve) => child.once("exit", () => resolve(Date.now())));
    try {
      await waitFor(() => out.includes("started leading"), {
        timeoutMs: 20_000,
        description: `the worker leads (${out})`,
      });
      member.clientProxy.cut();
      await new Promise((resolve) => setTimeout(resolve, 1000)); // the blip's length is the scenario
      member.clientProxy.open();
      child.kill("SIGTERM");
      const exitAt = await exited;
      expect(resolvedAt, out).toBeGreaterThan(0);
      expect(exitAt - resolvedAt).toBeLessThan(1000);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("a process that closes only its client", () => {
  let etcd: EtcdEnv;

  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(() => etcd?.close());

  /** Runs `script` in a child process; it must exit by itself within `boundMs` of printing "closed". */
  async function exitsAfterClosing(script: string, ttl: number, boundMs: number): Promise<void> {
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      env: {
        ...process.env,
        ETCD_ENDPOINTS: etcd.endpoints.join(","),
        TTL: String(ttl),
        NAME: `${etcd.prefix()}close-client`,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let closedAt = 0;
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (!closedAt && out.includes("closed")) closedAt = Date.now();
    });
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number>((resolve) => child.once("exit", () => resolve(Date.now())));
    try {
      await waitFor(() => closedAt > 0, { timeoutMs: 20_000, description: `the client is closed (${out})` });
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<number>((resolve) => (timer = setTimeout(() => resolve(0), boundMs)));
      const exitAt = await Promise.race([exited, bound]).finally(() => clearTimeout(timer));
      expect(exitAt, `the process is still running ${boundMs} ms after closing its client (${out})`).toBeGreaterThan(0);
    } finally {
      child.kill("SIGKILL");
    }
  }

  it("a process that locks, unlocks and closes only its etcd3 client (not the session) exits by itself within the TTL", async () => {
    // The session notices the closed client at its next keepalive (TTL/3); everything of ours ends then.
    await exitsAfterClosing(CLOSE_CLIENT_ONLY, 3, 3000 + 2000);
  });

  it("a process whose session was lost and that then closes only its etcd3 client exits by itself", async () => {
    // No keeper reads the client's state after the loss: the watch stream notices on its own, within a check.
    await exitsAfterClosing(LOST_THEN_CLOSE_CLIENT, 3, 3000);
  });
});

describe.skipIf(!!faultsUnavailableReason)("liveness through an etcd outage", () => {
  let etcd: EtcdEnv;

  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(() => etcd?.close());

  it("etcd down 5 s (3 electors, TTL 3) and back with its data: exactly one leads within 10 s, every follower healthy from 3 s after", async () => {
    const name = `${etcd.prefix()}outage`;
    const member = etcd.members[0]!;
    const runs = ["a", "b", "c"].map((identity) => {
      const stop = new AbortController();
      const elector = new LeaderElector({
        client: etcd.client(),
        name,
        identity,
        ttl: 3,
        logger: false,
        onStartedLeading: () => {},
      });
      return { elector, stop, done: elector.run({ signal: stop.signal }) };
    });
    try {
      await waitFor(() => runs.filter((r) => r.elector.isLeader()).length === 1);
      await member.kill();
      await new Promise((resolve) => setTimeout(resolve, 5000)); // the outage's length is the scenario
      await member.restart();
      const restartedAt = Date.now();
      await waitFor(() => runs.filter((r) => r.elector.isLeader()).length === 1, { timeoutMs: 10_000 });
      // Sample health from 3 s after the restart for 3 s: followers are healthy throughout.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, restartedAt + 3000 - Date.now())));
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        for (const r of runs) if (!r.elector.isLeader()) expect(r.elector.healthy()).toBe(true);
        expect(runs.filter((r) => r.elector.isLeader()).length).toBe(1);
        await new Promise((resolve) => setTimeout(resolve, 100)); // sampling a duration
      }
    } finally {
      for (const r of runs) r.stop.abort();
      await Promise.all(runs.map((r) => r.done));
    }
  });
});

describe.skipIf(!!faultsUnavailableReason)("observe on a 3-member cluster", () => {
  let etcd: EtcdEnv;

  beforeAll(async () => {
    etcd = await startCluster(3);
  });
  afterAll(() => etcd?.close());

  it("observe() reads only when the leader may have changed: 20 candidates joining and leaving behind a leader cost no read", async () => {
    const [observed, others] = [etcd.members[0]!, etcd.members[1]!];
    const name = `${etcd.prefix()}observe-reads`;
    const candidates = etcd.client({}, [others.clientUrl]);
    const leaderSession = await Session.create(candidates, { ttl: 10 });
    const leader = await new Election(leaderSession, name).campaign("leader");
    // The observer talks to one member only, so that member's Range count is the observer's reads.
    const observerSession = await Session.create(etcd.client({}, [observed.clientUrl]), { ttl: 60 });
    const seen = collect(new Election(observerSession, name).observe());
    await waitFor(() => seen.items.length === 1);
    const before = await handledRpcs(observed, "Range");
    for (let i = 0; i < 20; i++) {
      const s = await Session.create(candidates, { ttl: 10 });
      const stop = new AbortController();
      const campaign = new Election(s, name).campaign(`c${i}`, { signal: stop.signal });
      await waitFor(async () => (await keysUnder(candidates, name)).length === 2);
      stop.abort();
      await campaign.catch(() => {});
      await s.close();
    }
    expect((await handledRpcs(observed, "Range")) - before).toBe(0);
    expect(seen.items).toHaveLength(1);
    // A change of leader costs a read, and is seen.
    await leader.resign();
    await waitFor(() => seen.items.length === 2);
    expect((await handledRpcs(observed, "Range")) - before).toBeGreaterThanOrEqual(1);
    await observerSession.close();
    await leaderSession.close();
  });
});

const WORKER = fileURLToPath(new URL("../../examples/worker.ts", import.meta.url));
const CLOSE_CLIENT_ONLY = fileURLToPath(new URL("../support/close-client-only.ts", import.meta.url));
const LOST_THEN_CLOSE_CLIENT = fileURLToPath(new URL("../support/lost-then-close-client.ts", import.meta.url));
