import { getEventListeners } from "node:events";
import type { Etcd3 } from "etcd3";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Mutex, RWLock, Semaphore, Session, type Lock } from "../../src/index.js";
import { etcdctl } from "../support/etcdctl.js";
import { keysUnder } from "../support/observe.js";
import { pausedHolderIsReplaced } from "../support/paused-holder.js";
import { decisionCounts } from "../../src/queue/decide.js";
import { contextOf } from "../../src/session/context.js";
import {
  activeTimers,
  aroundEventMemberReads,
  beforeNextWatch,
  countCalls,
  keyOf,
  watchCount,
  watchEndpoint,
  watchEventsDelivered,
} from "../support/internals.js";
import { watchersInEtcd } from "../support/metrics.js";
import { aborted, useEtcd, waitFor } from "../support/index.js";

describe("locks on a single node", () => {
  const fx = useEtcd();
  const newSession = (c: Etcd3 = fx.client, ttl = 10): Promise<Session> => fx.newSession({ client: c, ttl });
  /** Compare-and-set increment of an integer key; `guard` wraps the txn (a permit's guarded txn). */
  async function casAdd(key: string, delta: number, permit: Lock): Promise<number> {
    for (;;) {
      const res = await fx.client.get(key).exec();
      const kv = res.kvs[0];
      const value = Number(kv?.value.toString() ?? "0") + delta;
      const rev = kv?.mod_revision ?? "0";
      const txn = await permit
        .txn()
        .and(key, "Mod", "==", rev)
        .then(fx.client.put(key).value(String(value)))
        .commit();
      if (txn.succeeded) return value;
    }
  }

  afterEach(() => vi.restoreAllMocks());

  it("8 clients x 50 critical sections: a blind counter guarded only by lock.txn() ends exact, in FIFO token order", async () => {
    const name = `${fx.etcd.prefix()}counter`;
    const counterKey = `${name}-value`;
    await fx.client.put(counterKey).value("0");
    const grants: bigint[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const mutex = new Mutex(await newSession(fx.etcd.client()), name);
        for (let i = 0; i < 50; i++) {
          await mutex.withLock(async (lock) => {
            grants.push(lock.token);
            const v = Number(await fx.client.get(counterKey).string());
            await lock
              .txn()
              .then(fx.client.put(counterKey).value(String(v + 1)))
              .commit();
          });
        }
      }),
    );
    expect(await fx.client.get(counterKey).string()).toBe("400");
    // FIFO by create revision: each holder's token is larger than the one before it.
    for (let i = 1; i < grants.length; i++) expect(grants[i]!).toBeGreaterThan(grants[i - 1]!);
    expect(await keysUnder(fx.client, name)).toEqual([]);
  });

  it("uncontended: one round trip to lock and one to unlock, nothing else on that path", async () => {
    const name = `${fx.etcd.prefix()}one-rtt`;
    const c = fx.etcd.client();
    const session = await newSession(c);
    const mutex = new Mutex(session, name);
    await (await mutex.lock()).unlock(); // the session's watch of its own key is set up once, off this path
    const calls = countCalls(session);
    const lock = await mutex.lock();
    expect(calls()).toEqual(["KV.txn"]);
    await lock.unlock();
    expect(calls()).toEqual(["KV.txn", "KV.txn"]);
  });

  it("waiters are served in the order they queued", async () => {
    const name = `${fx.etcd.prefix()}fifo`;
    const holder = await new Mutex(await newSession(), name).lock();
    const order: number[] = [];
    const waiters: Promise<Lock>[] = [];
    for (let i = 0; i < 4; i++) {
      const mutex = new Mutex(await newSession(), name);
      waiters.push(mutex.lock().then((l) => (order.push(i), l)));
      await waitFor(async () => (await keysUnder(fx.client, name)).length === i + 2);
    }
    await holder.unlock();
    for (const w of waiters) await (await w).unlock();
    expect(order).toEqual([0, 1, 2, 3]);
  });

  it("a waiter's re-read, limited to the keys just ahead of it, reads the whole queue when deeper names take their places", async () => {
    const name = `${fx.etcd.prefix()}nested`;
    const holder = await new Mutex(await newSession(), name).lock();
    // Keys of deeper names, created between the holder's key and the waiter's: a re-read of "our key and
    // the one just before it", newest first, finds only these two before our own.
    const deep = [
      await new Mutex(await newSession(), `${name}/a`).lock(),
      await new Mutex(await newSession(), `${name}/b`).lock(),
    ];
    const waiterSession = await newSession();
    const calls = countCalls(waiterSession);
    let got = false;
    const waiting = new Mutex(waiterSession, name).lock().then((l) => ((got = true), l));
    await waitFor(() => calls().filter((c) => c === "KV.range").length >= 2); // the re-read and the full read after it
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toBe(false); // the holder still holds it: the waiter saw it behind the deeper keys
    await holder.unlock();
    const lock = await waiting;
    expect(lock.token).toBeGreaterThan(holder.token);
    await lock.unlock();
    for (const d of deep) await d.unlock();
  });

  it("tryLock resolves undefined at once when held elsewhere, leaving no key", async () => {
    const name = `${fx.etcd.prefix()}try`;
    const held = await new Mutex(await newSession(), name).lock();
    const other = await newSession();
    expect(await new Mutex(other, name).tryLock()).toBeUndefined();
    expect(await keysUnder(fx.client, name)).toEqual([held.key]);
    await held.unlock();
    const got = await new Mutex(other, name).tryLock();
    expect(got?.key).toBe(keyOf(other, name));
    await got!.unlock();
  });

  it("timeout and abort remove the waiter key and reject with typed errors", async () => {
    const name = `${fx.etcd.prefix()}timeout`;
    const held = await new Mutex(await newSession(), name).lock();
    const mutex = new Mutex(await newSession(), name);
    await expect(mutex.lock({ timeoutMs: 300 })).rejects.toMatchObject({
      code: "LOCK_TIMEOUT",
      name: "LockTimeoutError",
    });
    expect(await keysUnder(fx.client, name)).toEqual([held.key]);
    const ac = new AbortController();
    const pending = mutex.lock({ signal: ac.signal });
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
    const reason = new Error("stop waiting");
    ac.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(await keysUnder(fx.client, name)).toEqual([held.key]);
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(0);
    await held.unlock();
  });

  it("rule 6: two Mutex objects (and two lock() calls) on one session exclude each other behind one key", async () => {
    const name = `${fx.etcd.prefix()}local`;
    const session = await newSession();
    const a = new Mutex(session, name);
    const b = new Mutex(session, name);
    const first = await a.lock();
    let secondHeld = false;
    const second = b.lock().then((l) => ((secondHeld = true), l));
    const third = a.lock();
    expect(await b.tryLock()).toBeUndefined();
    expect(await keysUnder(fx.client, name)).toEqual([first.key]);
    expect(secondHeld).toBe(false);
    await first.unlock();
    const s = await second;
    expect(s.token).toBeGreaterThan(first.token);
    expect(await keysUnder(fx.client, name)).toEqual([s.key]);
    expect(await a.tryLock()).toBeUndefined(); // the third still waits behind the second
    await s.unlock();
    await (await third).unlock();
    expect(await keysUnder(fx.client, name)).toEqual([]);
  });

  it("a late unlock never deletes a newer holder's key (etcd #22082), and unlock is idempotent", async () => {
    const name = `${fx.etcd.prefix()}late-unlock`;
    const session = await newSession();
    const mutex = new Mutex(session, name);
    const old = await mutex.lock();
    await fx.client.delete().key(old.key); // someone removes it behind our back
    await aborted(old.signal);
    expect(old.signal.reason).toMatchObject({ code: "LOCK_LOST" });
    const newer = await mutex.lock(); // same session, same key name, new create revision
    expect(newer.key).toBe(old.key);
    expect(newer.token).toBeGreaterThan(old.token);
    await old.unlock();
    await old.unlock();
    expect(await keysUnder(fx.client, name)).toEqual([newer.key]);
    await newer.unlock();
  });

  it("rule 3: a mutex waiter whose key was deleted behind its back does not get the lock", async () => {
    const name = `${fx.etcd.prefix()}rule3`;
    const holder = await new Mutex(await newSession(fx.client, 30), name).lock();
    const waiter = await newSession(fx.client, 30);
    const pending = new Mutex(waiter, name).lock();
    pending.catch(() => {}); // it is meant to reject: judged below
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
    await fx.client.delete().key(keyOf(waiter, name));
    await holder.unlock();
    await expect(pending).rejects.toMatchObject({ code: "LOCK_LOST" });
    expect(await keysUnder(fx.client, name)).toEqual([]);
  });

  it("etcd itself refuses a lock's guarded transaction once its key is gone", async () => {
    const name = `${fx.etcd.prefix()}refused`;
    const lock = await new Mutex(await newSession(fx.client, 30), name).lock();
    await fx.client.delete().key(lock.key);
    await expect(
      lock
        .txn()
        .then(fx.client.put(`${name}-data`).value("x"))
        .commit(),
    ).rejects.toMatchObject({ code: "LOCK_LOST" });
    expect(await fx.client.get(`${name}-data`).string()).toBeNull();
    expect(lock.signal.aborted).toBe(true);
  });

  it("withLock releases on both outcomes and rejects with LockLostError when the lock was lost meanwhile", async () => {
    const name = `${fx.etcd.prefix()}withlock`;
    const mutex = new Mutex(await newSession(), name);
    expect(await mutex.withLock(() => 42)).toBe(42);
    await expect(mutex.withLock(() => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(await keysUnder(fx.client, name)).toEqual([]);
    const lostSession = await newSession();
    const lost = new Mutex(lostSession, name).withLock(async (lock) => {
      await fx.etcd.client().leaseClient.leaseRevoke({ ID: lostSession.leaseId });
      await aborted(lock.signal, 15_000);
      return "finished anyway";
    });
    await expect(lost).rejects.toMatchObject({ code: "LOCK_LOST" });
  });

  it("await using releases the lock", async () => {
    const name = `${fx.etcd.prefix()}using`;
    const mutex = new Mutex(await newSession(), name);
    {
      await using lock = await mutex.lock();
      expect(await keysUnder(fx.client, name)).toEqual([lock.key]);
    }
    expect(await keysUnder(fx.client, name)).toEqual([]);
  });

  it("a holder in a child process paused past its deadline loses the lock; after resuming its signal aborts and its writes are refused", async () => {
    const name = `${fx.etcd.prefix()}paused`;
    const takeOver = async () => new Mutex(await newSession(), name).lock();
    await pausedHolderIsReplaced({ etcd: fx.etcd, client: fx.client, name, role: "lock", code: "LOCK_LOST", takeOver });
  });

  it("semaphore: at most `limit` holders at once (counted with a guarded counter), FIFO, no key left", async () => {
    const name = `${fx.etcd.prefix()}sem`;
    const inside = `${name}-inside`;
    let max = 0;
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        const sem = new Semaphore(await newSession(fx.etcd.client()), name, { limit: 3 });
        for (let i = 0; i < 8; i++) {
          await sem.withPermit(async (permit) => {
            max = Math.max(max, await casAdd(inside, 1, permit));
            await casAdd(inside, -1, permit);
          });
        }
      }),
    );
    expect(max).toBeLessThanOrEqual(3);
    expect(max).toBeGreaterThan(1);
    expect(await fx.client.get(inside).string()).toBe("0");
    expect(await keysUnder(fx.client, name)).toEqual([]);
  });

  it("semaphore: a waiter gets in when any permit ahead frees; tryAcquire and limit mismatch", async () => {
    const name = `${fx.etcd.prefix()}sem2`;
    const permits = await Promise.all(
      [0, 1].map(async () => new Semaphore(await newSession(), name, { limit: 2 }).acquire()),
    );
    const third = new Semaphore(await newSession(), name, { limit: 2 });
    expect(await third.tryAcquire()).toBeUndefined();
    expect(await keysUnder(fx.client, name)).toHaveLength(2);
    const waiting = third.acquire();
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 3);
    await permits[1]!.release(); // not the oldest: any permit ahead frees a place
    const got = await waiting;
    await expect(
      new Semaphore(await newSession(), name, { limit: 5 }).acquire({ timeoutMs: 2000 }),
    ).rejects.toMatchObject({
      code: "LIMIT_MISMATCH",
    });
    expect(await keysUnder(fx.client, name)).toHaveLength(2);
    await got.release();
    await permits[0]!.release();
  });

  it("semaphore: a release makes only the waiter whose turn came re-read", async () => {
    const name = `${fx.etcd.prefix()}sem-herd`;
    const holders = await Promise.all(
      [0, 1].map(async () => new Semaphore(await newSession(), name, { limit: 2 }).acquire()),
    );
    const waiters = await Promise.all(
      [0, 1, 2].map(async () => {
        const session = await newSession(fx.etcd.client(), 30);
        return { session, sem: new Semaphore(session, name, { limit: 2 }) };
      }),
    );
    const pending: Promise<Lock>[] = [];
    const calls = waiters.map((w) => countCalls(w.session));
    const kvCalls = (c: () => string[]): number =>
      c().filter((call) => call === "KV.range" || call === "KV.txn").length;
    for (const [i, w] of waiters.entries()) {
      pending.push(w.sem.acquire());
      await waitFor(async () => (await keysUnder(fx.client, name)).length === 3 + i);
    }
    // Each waiter has joined (one txn), read the queue ahead of it, and, once its watch was in place, read
    // which blockers still exist: only then does it sit on its watch. Count from there.
    await waitFor(() => waiters.every((w, i) => watchCount(w.session) >= 1 && kvCalls(calls[i]!) >= 3));
    const joined = calls.map(kvCalls);
    // A re-read is one linearizable range; nothing else a waiter sends reads or writes KV meanwhile.
    const rereads = (): number[] => calls.map((c, i) => kvCalls(c) - joined[i]!);
    expect(joined).toEqual([3, 3, 3]);
    await holders[0]!.release();
    const first = await pending[0]!;
    expect(rereads()).toEqual([1, 0, 0]); // one re-read, by the first waiter only
    await holders[1]!.release();
    const second = await pending[1]!;
    expect(rereads()).toEqual([1, 1, 0]);
    expect(first.token).toBeLessThan(second.token); // FIFO
    await first.release();
    await second.release();
    await (await pending[2]!).release();
    expect(await keysUnder(fx.client, name)).toEqual([]);
  });

  it("read-write lock: readers share, a waiting writer is not starved by later readers, and its release wakes the readers behind it", async () => {
    const name = `${fx.etcd.prefix()}rw`;
    const rw = async () => new RWLock(await newSession(), name);
    const r1 = await (await rw()).readLock();
    const r2 = await (await rw()).readLock(); // readers share
    const events: string[] = [];
    let readersReleased = false;
    let writerEarly = false;
    const writer = (await rw()).writeLock().then((l) => ((writerEarly = !readersReleased), events.push("writer"), l));
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 3);
    const lateReaders = [await rw(), await rw()].map((l) => l.readLock().then((r) => (events.push("reader"), r)));
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 5);
    const second = await rw();
    expect(await second.tryReadLock()).toBeUndefined(); // a writer is queued: readers wait behind it
    await r1.unlock();
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 4);
    expect(events).toEqual([]);
    readersReleased = true;
    await r2.unlock();
    const w = await writer;
    expect(writerEarly).toBe(false); // it got in only after every earlier reader was gone
    expect(events).toEqual(["writer"]);
    await w.unlock();
    const readers = await Promise.all(lateReaders); // both readers behind the writer get in together
    expect(events).toEqual(["writer", "reader", "reader"]);
    const writer2 = (await rw()).tryWriteLock();
    expect(await writer2).toBeUndefined();
    for (const r of readers) await r.unlock();
    expect(await keysUnder(fx.client, name)).toEqual([]);
  });

  for (const kind of ["mutex", "rwlock writer"] as const) {
    it(`${kind}: a waiter whose session expires mid-queue lets nobody past the holder (etcd #16221)`, async () => {
      const name = `${fx.etcd.prefix()}midqueue-${kind.replace(" ", "-")}`;
      const take = (session: Session, signal?: AbortSignal): Promise<Lock> =>
        kind === "mutex" ? new Mutex(session, name).lock({ signal }) : new RWLock(session, name).writeLock({ signal });
      const holder = await take(await newSession());
      const s2 = await newSession();
      const middle = take(s2);
      middle.catch(() => {}); // it is meant to reject: judged below
      await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
      let holderReleased = false;
      let lastHeldEarly = false;
      const last = take(await newSession()).then((l) => ((lastHeldEarly = !holderReleased), l));
      await waitFor(async () => (await keysUnder(fx.client, name)).length === 3);
      await fx.etcd.client().leaseClient.leaseRevoke({ ID: s2.leaseId });
      // The middle waiter's key is gone at once; by the time its own session notices, the last waiter
      // has long had its wake-up and re-read, and must have found the holder still there.
      await expect(middle).rejects.toMatchObject({ code: expect.stringMatching(/SESSION_LOST|LOCK_LOST/) });
      expect(await keysUnder(fx.client, name)).toHaveLength(2);
      holderReleased = true;
      await holder.unlock();
      const l = await last;
      expect(lastHeldEarly).toBe(false);
      await l.unlock();
    });
  }

  it("a hand-over is decided by one serializable read on the member whose watch told the delete (at its latest revision)", async () => {
    const name = `${fx.etcd.prefix()}at-event`;
    const holder = await new Mutex(await newSession(), name).lock();
    const waiterSession = await newSession(fx.etcd.client()); // its own client: the hooks see its calls only
    const readsAt = aroundEventMemberReads(waiterSession);
    const calls = countCalls(waiterSession);
    const waiting = new Mutex(waiterSession, name).lock();
    // Joined (a txn), read what is ahead (a range), and, its watch in place, read that the holder's key is there.
    await waitFor(() => calls().length === 3 && watchEndpoint(waiterSession) !== undefined);
    const before = decisionCounts(contextOf(waiterSession));
    const deleted = await fx.client.delete().key(holder.key).exec(); // the holder's key goes, at this revision
    const lock = await waiting;
    expect(readsAt()).toEqual([{ revision: expect.any(BigInt), meantFor: watchEndpoint(waiterSession) }]);
    expect(readsAt()[0]!.revision).toBeGreaterThanOrEqual(BigInt(deleted.header.revision)); // the member has applied it
    expect(calls()).toEqual(["KV.txn", "KV.range", "KV.range", "KV.range"]); // that read alone: no linearizable one after it
    const after = decisionCounts(contextOf(waiterSession));
    expect(after.decidedSerializable - before.decidedSerializable).toBe(1);
    expect(after.decidedLinearizable - before.decidedLinearizable).toBe(0);
    expect(lock.token).toBeGreaterThan(holder.token);
    await lock.unlock();
    await holder.unlock(); // its key is gone already: a no-op
  });

  it("our key deleted after the delete that woke us, before the waiter's read on that member: the waiter does not take the turn", async () => {
    const name = `${fx.etcd.prefix()}at-event-own-gone`;
    const holder = await new Mutex(await newSession(), name).lock();
    const waiterSession = await newSession(fx.etcd.client()); // its own client: the hooks see its calls only
    const ours = keyOf(waiterSession, name);
    let deletedAt: bigint | undefined;
    // Between the holder's delete (R, which wakes the waiter) and its read, our own key goes at D > R (a
    // revoke, a forced resign): a snapshot at R would still show it, and the waiter would lead without a key.
    const readsAt = aroundEventMemberReads(waiterSession, {
      before: async () => {
        deletedAt ??= BigInt((await fx.client.delete().key(ours).exec()).header.revision);
      },
    });
    const calls = countCalls(waiterSession);
    const waiting = new Mutex(waiterSession, name).lock();
    waiting.catch(() => {}); // it is meant to reject: judged below
    await waitFor(() => calls().length === 3); // joined, read ahead, and (its watch in place) saw the holder there
    const before = decisionCounts(contextOf(waiterSession));
    await holder.unlock();
    await expect(waiting).rejects.toMatchObject({ code: "LOCK_LOST" });
    expect(readsAt()).toHaveLength(1);
    expect(readsAt()[0]!.revision).toBeGreaterThanOrEqual(deletedAt!); // read at the member's latest revision
    const after = decisionCounts(contextOf(waiterSession));
    expect(after.fellBack.notInSnapshot - before.fellBack.notInSnapshot).toBe(1);
    expect(after.decidedSerializable - before.decidedSerializable).toBe(0);
    expect(after.vanished - before.vanished).toBe(1); // the linearizable read confirmed it gone
    expect(await keysUnder(fx.client, name)).toEqual([]);
  });

  it("semaphore: a waiter woken by two deletes reads at the later one's revision", async () => {
    const name = `${fx.etcd.prefix()}sem-at-event`;
    const [a, b] = await Promise.all(
      [0, 1].map(async () => new Semaphore(await newSession(), name, { limit: 2 }).acquire()),
    );
    const third = new Semaphore(await newSession(), name, { limit: 2 }).acquire();
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 3);
    const waiterSession = await newSession(fx.etcd.client()); // its own client: the hooks see its calls only
    const readsAt = aroundEventMemberReads(waiterSession);
    const calls = countCalls(waiterSession);
    const waiting = new Semaphore(waiterSession, name, { limit: 2 }).acquire(); // three ahead: two must go
    await waitFor(() => calls().length === 3); // joined, read ahead, and (its watch in place) saw all three there
    const first = await fx.client.delete().key(a!.key).exec();
    const c = await third; // the first delete lets the third in, and the waiter still waits
    expect(readsAt()).toEqual([]);
    const second = await fx.client.delete().key(b!.key).exec();
    const permit = await waiting;
    expect(BigInt(second.header.revision)).toBeGreaterThan(BigInt(first.header.revision));
    expect(readsAt()).toEqual([{ revision: expect.any(BigInt), meantFor: watchEndpoint(waiterSession) }]);
    expect(readsAt()[0]!.revision).toBeGreaterThanOrEqual(BigInt(second.header.revision));
    expect(calls()).toEqual(["KV.txn", "KV.range", "KV.range", "KV.range"]); // no linearizable read after it
    // Its one wait ended by that read (the read completing its join's look ahead counts as none).
    expect(decisionCounts(contextOf(waiterSession))).toMatchObject({
      decidedSerializable: 1,
      decidedLinearizable: 0,
      stillBlocked: 0,
      vanished: 0,
    });
    expect(await keysUnder(fx.client, name)).toEqual([c.key, permit.key]);
    await permit.release();
    await c.release();
  });

  it("semaphore: a blocker deleted before the waiter's watch is in place (counted by its read) makes the decision linearizable", async () => {
    const name = `${fx.etcd.prefix()}sem-counted-by-read`;
    const [a, b] = await Promise.all(
      [0, 1].map(async () => new Semaphore(await newSession(), name, { limit: 2 }).acquire()),
    );
    const third = new Semaphore(await newSession(), name, { limit: 2 }).acquire();
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 3);
    const waiterSession = await newSession(fx.etcd.client()); // its own client: the hooks see its calls only
    const readsAt = aroundEventMemberReads(waiterSession);
    const calls = countCalls(waiterSession);
    // The waiter's watch goes out only once the first blocker is gone: no watch tells that delete.
    beforeNextWatch(waiterSession, async () => {
      await fx.client.delete().key(a!.key);
    });
    const waiting = new Semaphore(waiterSession, name, { limit: 2 }).acquire();
    await waitFor(() => calls().length === 3); // joined, read ahead, and (its watch in place) saw one gone
    const c = await third;
    await fx.client.delete().key(b!.key); // told by the watch, but the other was counted by the read
    const permit = await waiting;
    expect(readsAt()).toEqual([]); // no read at an event's revision
    expect(calls()).toEqual(["KV.txn", "KV.range", "KV.range", "KV.range"]); // the last one linearizable
    expect(decisionCounts(contextOf(waiterSession))).toMatchObject({
      decidedSerializable: 0,
      decidedLinearizable: 1,
    });
    expect(await keysUnder(fx.client, name)).toEqual([c.key, permit.key]);
    await permit.release();
    await c.release();
  });

  it("a delete of our key told to the session's idle own-key watch before the new hold subscribes still ends that hold", async () => {
    const name = `${fx.etcd.prefix()}idle-watch`;
    // Its own client: the read hook below sees its reads only. Its re-check (TTL/2 = 15 s) is not what tells.
    const session = await newSession(fx.etcd.client(), 30);
    const delivered = watchEventsDelivered(session);
    // A lock and an unlock leave the session's watch of its key running, with no holder, for 30 s.
    await (await new Mutex(session, name).lock()).unlock();
    const holder = await new Mutex(await newSession(fx.client, 30), name).lock();
    const ours = keyOf(session, name);
    let deletedAt: bigint | undefined;
    // Once the read on the event's member has answered (at its revision H, our key there), our key goes at
    // D > H, and the idle watch is told of it before the new hold subscribes from H.
    aroundEventMemberReads(session, {
      after: async () => {
        if (deletedAt !== undefined) return;
        deletedAt = BigInt((await fx.client.delete().key(ours).exec()).header.revision);
        await waitFor(() =>
          delivered().some((e) => e.type === "Delete" && e.key.endsWith(ours) && e.revision === deletedAt),
        );
      },
    });
    const calls = countCalls(session);
    const waiting = new Mutex(session, name).lock();
    await waitFor(() => calls().length === 3); // joined, read ahead, and (its watch in place) saw the holder there
    await holder.unlock();
    const lock = await waiting;
    expect(deletedAt).toBeDefined();
    expect(await keysUnder(fx.client, name)).toEqual([]);
    await aborted(lock.signal, 2_000);
    expect(() => lock.assertHeld()).toThrow(expect.objectContaining({ code: "LOCK_LOST" }));
  });

  it("a leftover key of ours with another mode is never taken over: a writer queues afresh", async () => {
    const name = `${fx.etcd.prefix()}leftover`;
    const session = await newSession();
    // As if a reader's release had not got through: our key, on our lease, saying "read".
    const lease = session.leaseId;
    await fx.client.put(keyOf(session, name)).value("read").lease(lease).exec();
    const leftover = BigInt((await fx.client.get(keyOf(session, name)).exec()).kvs[0]!.create_revision);
    const writer = await new RWLock(session, name).writeLock();
    expect(writer.token).toBeGreaterThan(leftover);
    expect(await fx.client.get(writer.key).string()).toBe("write");
    expect(await new RWLock(await newSession(), name).tryReadLock()).toBeUndefined();
    await writer.unlock();
  });

  it("500 lock/unlock cycles leave no listeners, timers or watchers behind", async () => {
    const name = `${fx.etcd.prefix()}cycles`;
    const c = fx.etcd.client();
    const session = await Session.create(c, { ttl: 10 });
    const mutex = new Mutex(session, name);
    const watchers = (): number => watchCount(session);
    const inEtcd = await watchersInEtcd(fx.etcd.members[0]!);
    const cycle = async (): Promise<void> => {
      const lock = await mutex.lock();
      await lock.unlock();
    };
    // Warm up first (channels, the own-key watch), then count: a timer left per cycle would be 500 more;
    // the slack is for the client's own timers (keepalive, gRPC) coming and going meanwhile.
    for (let i = 0; i < 20; i++) await cycle();
    const before = activeTimers();
    for (let i = 0; i < 500; i++) await cycle();
    expect(getEventListeners(session.signal, "abort")).toHaveLength(0);
    // One watch of the session's own key serves every successive holder; it stays with the session.
    expect(watchers()).toBeLessThanOrEqual(1);
    expect(activeTimers() - before).toBeLessThan(20);
    expect(await keysUnder(fx.client, name)).toEqual([]);
    await session.close();
    expect(watchers()).toBe(0);
    await waitFor(async () => (await watchersInEtcd(fx.etcd.members[0]!)) <= inEtcd, {
      timeoutMs: 10_000,
      description: "the session's watches gone from etcd",
    });
  });

  describe("Mutex interop with etcdctl lock", () => {
    it("etcdctl lock and our Mutex exclude each other in both directions", async () => {
      const name = `${fx.etcd.prefix()}ctl`;
      const session = await Session.create(fx.client, { ttl: 10 });
      const ctl = etcdctl(fx.etcd.endpoints, "lock", name);
      let ctl2: ReturnType<typeof etcdctl> | undefined;
      try {
        // etcdctl holds: we wait until it exits.
        await ctl.printed(name);
        let ours = false;
        const pending = new Mutex(session, name).lock().then((l) => ((ours = true), l));
        await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
        expect(ours).toBe(false);
        await ctl.interrupt();
        const lock = await pending;

        // We hold: etcdctl (running a put while it holds the lock) gets in only after we unlock.
        const marker = `${name}-marker`;
        ctl2 = etcdctl(fx.etcd.endpoints, "lock", name, "etcdctl", "put", marker, "by-etcdctl");
        await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
        const beforeUnlock = BigInt((await fx.client.get(marker).exec()).header.revision);
        await lock.unlock();
        await waitFor(async () => (await fx.client.get(marker).string()) === "by-etcdctl", { timeoutMs: 15_000 });
        const written = BigInt((await fx.client.get(marker).exec()).kvs[0]!.mod_revision);
        expect(written).toBeGreaterThan(beforeUnlock);
      } finally {
        ctl.kill();
        ctl2?.kill();
        await session.close();
      }
    });
  });
});
