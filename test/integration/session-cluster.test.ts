/** Sessions on a 3-member cluster: members isolated, stalled, killed; the raft leader killed. */
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Election, Session } from "../../src/index.js";
import { decisionCounts } from "../../src/queue/decide.js";
import { contextOf } from "../../src/session/context.js";
import {
  aroundEventMemberReads,
  countCalls,
  keepAliveEndpoint,
  keyOf,
  preferredEndpoint,
  watchEndpoint,
} from "../support/internals.js";
import { faultsUnavailableReason, startCluster, waitFor, type EtcdEnv, type EtcdMember } from "../support/index.js";
import { countEvents, serverTtl } from "../support/session-events.js";

describe.skipIf(!!faultsUnavailableReason)("Session on a 3-member cluster", () => {
  let etcd: EtcdEnv;

  beforeAll(async () => {
    etcd = await startCluster(3);
  });
  afterAll(() => etcd?.close());

  const memberServing = (session: Session): EtcdMember | undefined =>
    etcd.members.find((m) => m.clientUrl === keepAliveEndpoint(session));

  /**
   * A session whose keepalive stream runs through a member that `pick` accepts. Each session starts at a
   * random member; one that will not start at an accepted member is closed at once, before its keepalive
   * stream opens (its first renewal, TTL/3 in): a retry costs milliseconds, not seconds.
   */
  async function sessionOn(
    client: Etcd3,
    ttl: number,
    pick: (m: EtcdMember) => boolean | Promise<boolean>,
  ): Promise<{ session: Session; member: EtcdMember }> {
    for (let i = 0; i < 60; i++) {
      const session = await Session.create(client, { ttl });
      const preferred = etcd.members.find((m) => m.clientUrl === preferredEndpoint(session));
      if (preferred && (await pick(preferred))) {
        const member = await waitFor(() => memberServing(session), { timeoutMs: ttl * 1000 });
        if (await pick(member)) return { session, member };
      }
      await session.close();
    }
    throw new Error("no session landed on the wanted member");
  }

  it("the member serving the keepalive stream is isolated from its peers: the session moves or is lost in time", async () => {
    const client = etcd.client();
    const leader = await etcd.leader();
    const { session, member } = await sessionOn(client, 5, (m) => m !== leader);
    const healthy = etcd.members.find((m) => m !== member)!;
    const direct = etcd.client({}, [healthy.directClientUrl]);
    let ttlAtLoss: Promise<number> | undefined;
    session.on("lost", () => {
      ttlAtLoss = serverTtl(direct, session.leaseId);
    });
    try {
      await member.isolate();
      // Either it rides over to a healthy member...
      await waitFor(
        () =>
          session.state === "lost" ||
          (memberServing(session) !== member && memberServing(session) !== undefined && session.state === "connected"),
        {
          timeoutMs: 30_000,
        },
      );
      if (session.state === "lost") {
        // ...or it gives up before etcd could expire the lease: never late.
        expect(await ttlAtLoss).toBeGreaterThan(0);
      } else {
        // Still alive as etcd's majority sees it, and it keeps being renewed there.
        const ttl = session.ttl;
        const until = Date.now() + ttl * 2000;
        while (Date.now() < until) {
          expect(await serverTtl(direct, session.leaseId)).toBeGreaterThan(0);
          await sleep(500); // sampling a duration
        }
        expect(session.state).toBe("connected");
      }
    } finally {
      await member.heal();
      await session.close();
      await etcd.waitHealthy();
    }
  });

  it("a keepalive stream that stays open but stops answering is replaced, on another member first", async () => {
    for (let round = 0; round < 3; round++) {
      const client = etcd.client();
      const { session, member } = await sessionOn(client, 6, () => true);
      const counts = countEvents(session);
      // Every endpoint the session's stream uses from now on, in order.
      const endpoints: string[] = [];
      const poll = setInterval(() => {
        const e = keepAliveEndpoint(session);
        if (e && e !== endpoints.at(-1)) endpoints.push(e);
      }, 5);
      try {
        endpoints.push(member.clientUrl);
        member.clientProxy.blackhole();
        await waitFor(() => endpoints.length >= 2 && session.state === "connected", { timeoutMs: 20_000 });
        expect(endpoints[1]).not.toBe(member.clientUrl);
        expect(counts.lost).toBe(0);
      } finally {
        clearInterval(poll);
        member.clientProxy.open();
        await session.close();
      }
    }
  });

  it("the member carrying a waiter's watch is isolated from its peers: the watch moves, and the hand-over still takes milliseconds, not TTL/2", async () => {
    const leader = await etcd.leader();
    const member = etcd.members.find((m) => m !== leader)!;
    const others = etcd.members.filter((m) => m !== member);
    const name = `${etcd.prefix()}isolated-watch`;
    const a = await Session.create(
      etcd.client(
        {},
        others.map((m) => m.clientUrl),
      ),
      { ttl: 20 },
    );
    // TTL 20: the waiter's periodic re-read comes every 10 s; a hand-over sooner is its watch's doing.
    const { session: b } = await sessionOn(etcd.client(), 20, (m) => m === member);
    try {
      const term = await new Election(a, name).campaign("a");
      const waiting = new Election(b, name).campaign("b");
      waiting.catch(() => {}); // awaited below
      await waitFor(() => watchEndpoint(b) === member.clientUrl, { description: "the waiter watching on the member" });
      const calls = countCalls(b, "answered");
      await member.isolate();
      await waitFor(() => watchEndpoint(b) !== undefined && watchEndpoint(b) !== member.clientUrl, {
        timeoutMs: 20_000,
        description: "the watch stream off the isolated member",
      });
      // The moved watch asks the waiter to read again; it waits again, its new watch in place once it has
      // read (answered) that the leader's key is still there. Only then the resign: its delete is the
      // watch's to tell.
      await waitFor(() => calls().filter((c) => c === "KV.range").length >= 2, {
        timeoutMs: 20_000,
        description: "the waiter settled on its moved watch",
      });
      const before = decisionCounts(contextOf(b));
      const resignedAt = Date.now();
      await term.resign();
      const next = await waiting;
      expect(Date.now() - resignedAt).toBeLessThan(2000);
      // Decided at the delete's revision, on the member the watch moved to.
      expect(
        decisionCounts(contextOf(b)).decidedSerializable - before.decidedSerializable,
        JSON.stringify([before, decisionCounts(contextOf(b))]),
      ).toBe(1);
      expect(b.state).toBe("connected");
      await next.resign();
    } finally {
      await member.heal();
      await Promise.all([a.close(), b.close()]);
      await etcd.waitHealthy();
    }
  }, 90_000); // the heal and the cluster's recovery come on top of the test's own bounds

  it("a serializable read on a member that has not applied the event's revision (cut from its peers) falls back to a linearizable read", async () => {
    const leader = await etcd.leader();
    const lagging = etcd.members.find((m) => m !== leader)!;
    const watching = etcd.members.find((m) => m !== lagging)!;
    const name = `${etcd.prefix()}lagging-read`;
    const a = await Session.create(etcd.client({}, [watching.clientUrl]), { ttl: 20 });
    // The waiter talks to the watching member; its serializable read after the event is sent to the lagging one.
    const { session: b } = await sessionOn(
      etcd.client({}, [watching.clientUrl, lagging.clientUrl]),
      20,
      (m) => m === watching,
    );
    const readsAt = aroundEventMemberReads(b, { to: lagging.clientUrl });
    try {
      const term = await new Election(a, name).campaign("a");
      const waiting = new Election(b, name).campaign("b");
      waiting.catch(() => {}); // awaited below
      await waitFor(() => watchEndpoint(b) === watching.clientUrl, { description: "the waiter watching" });
      await lagging.isolate(); // it applies nothing from here on: the resign's delete is in its future
      const before = decisionCounts(contextOf(b));
      await term.resign();
      const next = await waiting;
      expect(readsAt()).toEqual([expect.objectContaining({ meantFor: watching.clientUrl })]);
      const after = decisionCounts(contextOf(b));
      expect(after.fellBack.behind - before.fellBack.behind).toBe(1);
      expect(after.decidedLinearizable - before.decidedLinearizable).toBe(1);
      expect(next.token).toBeGreaterThan(term.token);
      await next.resign();
    } finally {
      await lagging.heal();
      await Promise.all([a.close(), b.close()]);
      await etcd.waitHealthy();
    }
  }, 90_000);

  it("the member that told the waiter's wake-up, cut off from its peers and leaderless, refuses its read: the waiter reads linearizably and does not win on a key deleted meanwhile", async () => {
    const leader = await etcd.leader();
    const cutOff = etcd.members.find((m) => m !== leader)!;
    const others = etcd.members.filter((m) => m !== cutOff).map((m) => m.clientUrl);
    const name = `${etcd.prefix()}leaderless-read`;
    const healthy = etcd.client({}, others);
    const a = await Session.create(etcd.client({}, others), { ttl: 20 });
    const c = await Session.create(etcd.client({}, others), { ttl: 20 });
    const { session: b } = await sessionOn(etcd.client({}, [cutOff.clientUrl, ...others]), 20, (m) => m === cutOff);
    const ours = keyOf(b, name);
    // Between the wake-up and the read: the member is cut off and knows it has lost its leader, and the
    // majority deletes the waiter's key (a forced resign). Its store still holds the key; it must not answer.
    const cutOffStatus = etcd.client({}, [cutOff.directClientUrl]);
    let deleted = false;
    aroundEventMemberReads(b, {
      before: async () => {
        if (deleted) return;
        deleted = true;
        await cutOff.isolate();
        await waitFor(async () => (await cutOffStatus.maintenance.status()).leader === "0", {
          timeoutMs: 20_000,
          description: "the cut-off member without a leader",
        });
        await healthy.delete().key(ours);
      },
    });
    try {
      const term = await new Election(a, name).campaign("a");
      const waiting = new Election(b, name).campaign("b");
      waiting.catch(() => {}); // awaited below
      await waitFor(() => watchEndpoint(b) === cutOff.clientUrl, { description: "the waiter watching on the member" });
      const third = new Election(c, name).campaign("c");
      await waitFor(async () => (await healthy.getAll().prefix(`${name}/`).keys()).length === 3);
      const before = decisionCounts(contextOf(b));
      await term.resign();
      await expect(waiting).rejects.toMatchObject({ code: "NOT_LEADER" });
      const after = decisionCounts(contextOf(b));
      expect(deleted).toBe(true);
      expect(after.fellBack.leaderless - before.fellBack.leaderless).toBe(1);
      expect(after.decidedSerializable - before.decidedSerializable).toBe(0);
      expect(after.vanished - before.vanished).toBe(1);
      const next = await third;
      expect(next.token).toBeGreaterThan(term.token);
      await next.resign();
    } finally {
      await cutOff.heal();
      await Promise.all([a.close(), b.close(), c.close()]);
      await etcd.waitHealthy();
    }
  }, 90_000);

  it("the member serving the keepalive stream is killed: the session rides over", async () => {
    const client = etcd.client();
    const { session, member } = await sessionOn(client, 5, () => true);
    const counts = countEvents(session);
    try {
      await member.kill();
      await waitFor(
        () =>
          memberServing(session) !== undefined && memberServing(session) !== member && session.state === "connected",
        {
          timeoutMs: 20_000,
        },
      );
      expect(counts.lost).toBe(0);
      const direct = etcd.client({}, [etcd.members.find((m) => m !== member)!.directClientUrl]);
      expect(await serverTtl(direct, session.leaseId)).toBeGreaterThan(0);
    } finally {
      await member.restart();
      await session.close();
      await etcd.waitHealthy();
    }
  });

  it("the raft leader is killed: the session rides over", async () => {
    const client = etcd.client();
    const session = await Session.create(client, { ttl: 5 });
    const counts = countEvents(session);
    const leader = await etcd.leader();
    try {
      await leader.kill();
      const others = etcd.members.filter((m) => m !== leader);
      const direct = etcd.client(
        {},
        others.map((m) => m.directClientUrl),
      );
      await waitFor(async () => (await etcd.leader()) !== leader, { timeoutMs: 20_000 });
      // Ride over: for two TTLs after the new leader is in, the session is never lost.
      const until = Date.now() + session.ttl * 2000;
      while (Date.now() < until) {
        expect(session.state).not.toBe("lost");
        await sleep(250); // sampling a duration
      }
      expect(session.state).toBe("connected");
      expect(counts.lost).toBe(0);
      expect(await serverTtl(direct, session.leaseId)).toBeGreaterThan(0);
    } finally {
      await leader.restart();
      await session.close();
      await etcd.waitHealthy();
    }
  });
});
