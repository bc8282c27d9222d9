import { getEventListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Election, Session } from "../../src/index.js";
import { contextOf } from "../../src/session/context.js";
import { Worker } from "../support/child.js";
import { collect } from "../support/observe.js";
import { stallKeepAlives } from "../support/stall.js";
import { activeTimers, holdAnswers, leaseHex, keepAliveEndpoint, loseFirstAnswer } from "../support/internals.js";
import { faultsUnavailableReason, startEtcd, waitFor, type EtcdEnv, type EtcdMember } from "../support/index.js";

import { countEvents, once, serverTtl } from "../support/session-events.js";

describe("Session on a single node", () => {
  let etcd: EtcdEnv;
  let client: Etcd3;
  let direct: Etcd3;

  beforeAll(async () => {
    etcd = await startEtcd();
    client = etcd.client();
    // A second client that bypasses the proxies, to ask etcd while the first one is cut off.
    direct = etcd.members.length ? etcd.client({}, [etcd.members[0]!.directClientUrl]) : etcd.client();
  });
  afterAll(() => etcd?.close());

  it("keeps a TTL=2 lease alive for 10 s, as etcd itself reports", async () => {
    const session = await Session.create(client, { ttl: 2 });
    try {
      expect(session.state).toBe("connected");
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        expect(await serverTtl(direct, session.leaseId)).toBeGreaterThan(0);
        expect(session.state).toBe("connected");
        await sleep(500); // sampling a duration, not waiting for a condition
      }
    } finally {
      await session.close();
    }
  });

  it("reports the TTL etcd granted and a remaining time inside it", async () => {
    const session = await Session.create(client, { ttl: 1 });
    try {
      const info = await direct.leaseClient.leaseTimeToLive({ ID: session.leaseId });
      expect(session.ttl).toBe(Number(info.grantedTTL));
      expect(session.ttl).toBeGreaterThanOrEqual(1);
      expect(session.remainingMs()).toBeGreaterThan(0);
      expect(session.remainingMs()).toBeLessThanOrEqual(session.ttl * 1000 - session.marginMs);
      expect(leaseHex(session)).toBe(BigInt(session.leaseId).toString(16));
    } finally {
      await session.close();
    }
  });

  it("a wall clock stepped back does not extend the deadline; stepped forward past it, the session is lost (it counts on both clocks)", async () => {
    const session = await Session.create(client, { ttl: 5 });
    try {
      const before = session.remainingMs();
      vi.useFakeTimers({ toFake: ["Date"], now: Date.now() - 3_600_000 });
      try {
        expect(session.state).toBe("connected");
        expect(session.remainingMs()).toBeGreaterThan(0);
        expect(session.remainingMs()).toBeLessThanOrEqual(before);
      } finally {
        vi.useRealTimers();
      }
      // As after a system suspend of an hour: etcd may well have expired the lease meanwhile.
      vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 3_600_000 });
      try {
        expect(session.state).toBe("lost");
        expect(session.remainingMs()).toBe(0);
        expect(session.signal.reason).toMatchObject({ code: "SESSION_LOST" });
      } finally {
        vi.useRealTimers();
      }
    } finally {
      await session.close();
    }
  });

  it("a lost listener that throws is logged, not thrown: the getter that noticed the loss answers", async () => {
    const lines: { level: string; message: string }[] = [];
    const at = (level: string) => (_: object, message: string) => void lines.push({ level, message });
    const logger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
    const session = await Session.create(client, { ttl: 5, logger });
    try {
      session.on("lost", () => {
        throw new Error("a user's listener threw");
      });
      // As after a system suspend past the deadline: the next getter notices the loss and tells listeners.
      vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 3_600_000 });
      try {
        expect(() => session.state).not.toThrow();
        expect(session.state).toBe("lost");
        expect(session.signal.reason).toMatchObject({ code: "SESSION_LOST" });
      } finally {
        vi.useRealTimers();
      }
      expect(lines).toContainEqual({ level: "error", message: expect.stringMatching(/"lost" listener threw/) });
    } finally {
      await session.close();
    }
  });

  it("close() revokes the lease at once, aborts the signal, and is idempotent", async () => {
    const session = await Session.create(client, { ttl: 30 });
    const closed = once(session, "closed");
    await Promise.all([session.close(), session.close()]);
    await closed;
    expect(session.state).toBe("closed");
    expect(session.signal.aborted).toBe(true);
    expect(session.signal.reason).toMatchObject({ code: "SESSION_CLOSED" });
    expect(session.remainingMs()).toBe(0);
    expect(await serverTtl(direct, session.leaseId)).toBe(-1);
    await session.close();
  });

  it("the signal option closes the session and revokes the lease", async () => {
    const ac = new AbortController();
    const session = await Session.create(client, { ttl: 30, signal: ac.signal });
    ac.abort();
    expect(session.state).toBe("closed"); // closing starts the moment the signal aborts
    await waitFor(async () => (await serverTtl(direct, session.leaseId)) === -1, { timeoutMs: 5000 });
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(0);
  });

  it("is lost at once when the lease is revoked elsewhere, long before its own deadline", async () => {
    const session = await Session.create(client, { ttl: 30 });
    const revokedAt = Date.now();
    const lost = once(session, "lost", 20_000);
    await direct.leaseClient.leaseRevoke({ ID: session.leaseId });
    // The next keepalive (every TTL/3 = 10 s) hears that the lease is gone; the deadline is 28.5 s away.
    expect((await lost) - revokedAt).toBeLessThan(10_000 + 3_000);
    expect(session.state).toBe("lost");
    expect(session.signal.reason).toMatchObject({ code: "SESSION_LOST" });
    await session.close();
  });

  it("loss is final: a session whose keepalives stall stops renewing, revokes its lease, and never reconnects", async () => {
    const c = etcd.client();
    // Lost 5 s after the grant (the margin), while etcd would keep the lease for 10 s.
    const session = await Session.create(c, { ttl: 10, marginMs: 5000 });
    const stall = stallKeepAlives(session); // before the first keepalive, due at TTL/3
    const counts = countEvents(session);
    const grantedAt = Date.now();
    try {
      await once(session, "lost", 15_000);
      const writesAtLoss = stall.writes();
      // The best-effort revoke went through: the lease is gone well before it could have expired.
      await waitFor(async () => (await serverTtl(direct, session.leaseId)) === -1, { timeoutMs: 3000, intervalMs: 50 });
      expect(Date.now() - grantedAt).toBeLessThan(10_000);
      // Keepalives work again, yet the session stays lost and sends nothing more.
      stall.restore();
      await waitFor(async () => (await serverTtl(direct, session.leaseId)) === -1); // still gone
      expect(stall.writes()).toBe(writesAtLoss);
      expect(session.state).toBe("lost");
      expect([counts.reconnected, counts.lost]).toEqual([0, 1]);
      expect(keepAliveEndpoint(session)).toBeUndefined();
    } finally {
      stall.restore();
      await session.close();
    }
  });

  it("closing the client under a live session ends the session: it stops renewing and the lease expires", async () => {
    const c = etcd.client();
    const session = await Session.create(c, { ttl: 3 });
    await waitFor(() => keepAliveEndpoint(session) !== undefined); // a stream is open (gRPC keeps it past close)
    const lost = once(session, "lost", 10_000);
    c.close();
    await lost;
    expect(session.signal.reason).toMatchObject({ code: "SESSION_LOST" });
    await waitFor(async () => (await serverTtl(direct, session.leaseId)) === -1, { timeoutMs: 10_000 });
  });

  it("a grant retried after its answer was lost adopts the lease it made instead of leaking a second one", async () => {
    const c = etcd.client();
    // The grant lands, but its answer is lost: the library sends it again, and etcd says "lease already exists".
    const grants = loseFirstAnswer(c, "leaseGrant");
    const session = await Session.create(c, { ttl: 7 });
    try {
      expect(grants.calls()).toBe(2);
      expect(session.ttl).toBe(7);
      const leases = (await direct.leaseClient.leaseLeases()).leases.map((l) => l.ID);
      expect(leases.filter((id) => id === session.leaseId)).toHaveLength(1);
      expect(await serverTtl(direct, session.leaseId)).toBeGreaterThan(0);
      expect(session.state).toBe("connected");
    } finally {
      await session.close();
    }
    expect(await serverTtl(direct, session.leaseId)).toBe(-1);
  });

  it("a grant answered only when sent again, late in its TTL, renews at once rather than being lost before its first keepalive", async () => {
    // Found by the fault suite (test/chaos) after partitions: the deadline counts from the first send (that
    // grant may have made the lease), so the first keepalive must not wait a whole TTL/3.
    const c = etcd.client();
    const grants = loseFirstAnswer(c, "leaseGrant", 1500);
    const session = await Session.create(c, { ttl: 2 });
    const events = countEvents(session);
    try {
      expect(grants.calls()).toBe(2);
      await sleep(1500); // past the deadline counted from the first send (1.75 s), and past the lease's first TTL
      expect(events).toMatchObject({ lost: 0 });
      expect(session.state).toBe("connected");
      expect(await serverTtl(direct, session.leaseId)).toBeGreaterThan(0);
    } finally {
      await session.close();
    }
  });

  it("aborting its signal while the grant is on its way rejects create at once, and the lease that grant made is revoked", async () => {
    const c = etcd.client();
    const leases = async (): Promise<string[]> => (await direct.leaseClient.leaseLeases()).leases.map((l) => l.ID);
    const before = new Set(await leases());
    const grants = holdAnswers(c, "leaseGrant");
    const ac = new AbortController();
    const creating = Session.create(c, { ttl: 60, signal: ac.signal });
    // etcd made the lease; its answer is held back.
    await waitFor(() => grants.answered() === 1);
    const made = (await leases()).filter((id) => !before.has(id));
    expect(made).toHaveLength(1);
    const reason = new Error("stopped while granting");
    ac.abort(reason);
    const outcome = await Promise.race([
      creating.then(
        () => "created",
        (err: unknown) => err,
      ),
      sleep(2000).then(() => "still granting 2 s after the abort"),
    ]);
    expect(outcome).toBe(reason);
    // The answer arrives after all: the lease it made must not live on for its 60 s TTL.
    grants.release();
    await waitFor(async () => (await serverTtl(direct, made[0]!)) === -1, {
      timeoutMs: 5000,
      description: "the lease granted for the abandoned create revoked",
    });
  });

  it("sessions of one client share its channels and watch stream; the last to close closes them", async () => {
    const c = etcd.client();
    const [a, b] = [await Session.create(c, { ttl: 5 }), await Session.create(c, { ttl: 5 })];
    const logged = await Session.create(c, { ttl: 5, logger: false });
    const [ca, cb, cl] = [contextOf(a), contextOf(b), contextOf(logged)];
    expect(ca.conn).toBe(cb.conn);
    expect(ca.watches).toBe(cb.watches);
    expect(cl.conn).not.toBe(ca.conn); // another logger: channels of its own, so its lines reach it
    await a.close();
    expect(cb.conn.closed).toBe(false);
    expect(await new Election(b, `${etcd.prefix()}shared`).leader()).toBeUndefined();
    await b.close();
    expect(cb.conn.closed).toBe(true);
    await logged.close();
    expect(cl.conn.closed).toBe(true);
  });

  it("300 create/close cycles leave no timers or listeners behind", async () => {
    const ac = new AbortController();
    const cycle = async (): Promise<void> => (await Session.create(client, { ttl: 5, signal: ac.signal })).close();
    for (let i = 0; i < 20; i++) await cycle(); // warm up: channels open, then count
    const before = activeTimers();
    for (let i = 0; i < 300; i++) await cycle();
    // Some with their keepalive stream open (it opens at the first tick, TTL/3 in), then closed.
    const opened: Session[] = [];
    for (let i = 0; i < 5; i++) {
      const session = await Session.create(client, { ttl: 1, signal: ac.signal });
      await waitFor(() => keepAliveEndpoint(session) !== undefined);
      await session.close();
      opened.push(session);
    }
    for (const s of opened) expect(await serverTtl(direct, s.leaseId)).toBe(-1);
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(0);
    // Timers of the client's own (gRPC) may come and go; ours must not pile up (a leak per cycle is 300).
    expect(activeTimers() - before).toBeLessThan(20);
  });

  it("tells its call deadline, value limit, renewal age and last round trip (what the elector reads)", async () => {
    const session = await Session.create(client, { ttl: 3, callTimeoutMs: 1234, maxValueBytes: 4096 });
    try {
      expect(session.callTimeoutMs).toBe(1234);
      expect(session.maxValueBytes).toBe(4096);
      const roundTripMs = await new Promise<number>((resolve) => session.once("renewed", resolve));
      expect(session.roundTripMs).toBe(roundTripMs);
      expect(session.sinceRenewalMs).toBeGreaterThanOrEqual(roundTripMs);
      expect(session.sinceRenewalMs).toBeLessThan(session.ttl * 1000);
    } finally {
      await session.close();
    }
  });
});

describe.skipIf(!!faultsUnavailableReason)("Session under faults on a single node", () => {
  let etcd: EtcdEnv;
  let member: EtcdMember;
  let direct: Etcd3;

  beforeAll(async () => {
    etcd = await startEtcd();
    member = etcd.members[0]!;
    direct = etcd.client({}, [member.directClientUrl]);
  });
  afterAll(() => etcd?.close());

  // With a margin over a second, etcd's whole-second TTL still reads > 0 when the session gives up.
  for (const [round, mode, marginMs] of [
    [1, "cut", 1200],
    [2, "blackhole", 1200],
    [3, "cut", 1200],
    [4, "blackhole", undefined],
  ] as const) {
    it(`client cut off (${mode}, round ${round}, margin ${marginMs ?? "default"}): suspended, then lost before etcd expires the lease`, async () => {
      const client = etcd.client();
      const session = await Session.create(client, { ttl: 3, marginMs });
      const counts = countEvents(session);
      let ttlAtLoss: Promise<number> | undefined;
      session.on("lost", () => {
        ttlAtLoss = serverTtl(direct, session.leaseId);
      });
      const suspended = once(session, "suspended");
      const lost = once(session, "lost");
      try {
        if (mode === "cut") member.clientProxy.cut();
        else member.clientProxy.blackhole();
        await suspended;
        await lost;
        // Local loss strictly precedes server expiry: etcd still has the lease when we give up
        // (TTL reads in whole seconds, truncated: -1 means gone).
        if (marginMs) expect(await ttlAtLoss).toBeGreaterThan(0);
        else expect(await ttlAtLoss).toBeGreaterThanOrEqual(0);
        expect(counts).toEqual({ suspended: 1, reconnected: 0, lost: 1 });
        expect(session.signal.aborted).toBe(true);
      } finally {
        member.clientProxy.open();
        await session.close();
      }
      // With the network back, the session renews nothing: the lease expires on its own.
      await waitFor(async () => (await serverTtl(direct, session.leaseId)) === -1, { timeoutMs: 10_000 });
    });
  }

  it("a short cut gives one suspended and one reconnected, and the lease survives", async () => {
    const client = etcd.client();
    const session = await Session.create(client, { ttl: 6 });
    const counts = countEvents(session);
    try {
      const suspended = once(session, "suspended");
      member.clientProxy.cut();
      await suspended;
      const reconnected = once(session, "reconnected");
      member.clientProxy.open();
      await reconnected;
      expect(session.state).toBe("connected");
      expect(counts).toEqual({ suspended: 1, reconnected: 1, lost: 0 });
      expect(await serverTtl(direct, session.leaseId)).toBeGreaterThan(0);
    } finally {
      member.clientProxy.open();
      await session.close();
    }
  });

  it("close() with etcd unreachable closes locally within its call deadline and leaves the lease to expire", async () => {
    const session = await Session.create(etcd.client(), { ttl: 10, callTimeoutMs: 1000 });
    // Something holding and someone observing: their watches must not hold close() up either.
    const name = `${etcd.prefix()}close-unreachable`;
    const term = await new Election(session, name).campaign("a");
    const seen = collect(new Election(session, name).observe());
    await waitFor(() => seen.items.length === 1);
    member.clientProxy.blackhole();
    try {
      const started = Date.now();
      await session.close();
      expect(Date.now() - started).toBeLessThan(1000 + 2000); // the call deadline, not the client's defaults
      expect(session.state).toBe("closed");
      expect(session.signal.aborted).toBe(true);
      expect(term.signal.aborted).toBe(true);
      await expect(seen.done).rejects.toMatchObject({ code: "SESSION_CLOSED" });
    } finally {
      member.clientProxy.open();
    }
    expect(await serverTtl(direct, session.leaseId)).toBeGreaterThan(0);
    await direct.leaseClient.leaseRevoke({ ID: session.leaseId });
  });

  it("watches cancelled by etcd after a compaction are re-made, with several watches on one stream", async () => {
    const client = etcd.client();
    const session = await Session.create(client, { ttl: 60 }); // re-reads every 30 s: only the watch can be quick
    const name = `${etcd.prefix()}compacted`;
    try {
      const term = await new Election(session, name).campaign("a"); // its key is watched on this stream
      const ac = new AbortController();
      const seen = collect(new Election(session, name).observe({ signal: ac.signal })); // a second watch
      await waitFor(() => seen.items.at(-1)?.value.toString() === "a");
      member.clientProxy.cut();
      // While we are away, the store moves on and is compacted past both watches' revisions.
      let revision = "0";
      for (let i = 0; i < 5; i++)
        revision = (await direct.put(`${name}-other`).value(String(i)).exec()).header.revision;
      await direct.kv.compact({ revision, physical: true }); // the proxy is cut: compact directly
      member.clientProxy.open();
      await waitFor(() => session.state === "connected");
      await term.proclaim("b");
      await waitFor(() => seen.items.at(-1)?.value.toString() === "b", { timeoutMs: 5000 });
      expect(term.signal.aborted).toBe(false);
      ac.abort();
      await seen.done.catch(() => {});
      await term.resign();
    } finally {
      member.clientProxy.open();
      await session.close();
    }
  });

  it("a session in a child process SIGSTOPped past its deadline reports lost within 100 ms of SIGCONT", async () => {
    const worker = Worker.start({ hosts: etcd.endpoints, ttl: 2, role: "session" });
    try {
      const { leaseId } = (await worker.next("session")) as unknown as { leaseId: string };
      worker.pause();
      // Past its deadline: wait until etcd itself has expired the lease.
      await waitFor(async () => (await serverTtl(direct, leaseId)) === -1, { timeoutMs: 15_000, intervalMs: 50 });
      const resumedAt = Date.now();
      worker.resume();
      const lost = await worker.next("lost", 5000);
      expect(lost.at - resumedAt).toBeLessThan(100);
    } finally {
      await worker.kill();
    }
  });
});
