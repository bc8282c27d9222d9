/** Every failure is typed: what etcd and the network do to calls comes back as an ElectionError with a code. */
import { describe, expect, it } from "vitest";
import { Election, LeaderElector, Mutex, Session } from "../../src/index.js";
import { faultsUnavailableReason, startEtcd, useEtcd, waitFor } from "../support/index.js";

describe("failures talking to etcd are typed", () => {
  const fx = useEtcd();

  it.skipIf(!!faultsUnavailableReason)(
    "etcd unreachable: ETCD_UNAVAILABLE within the call deadline, etcd3's error as the cause",
    async () => {
      const member = fx.etcd.members[0]!;
      const session = await Session.create(fx.etcd.client({}, [member.clientUrl]), { ttl: 10, callTimeoutMs: 500 });
      member.clientProxy.blackhole();
      try {
        const started = Date.now();
        const err = await new Election(session, `${fx.etcd.prefix()}x`).leader().catch((e: unknown) => e);
        expect(err).toMatchObject({ code: "ETCD_UNAVAILABLE", name: "EtcdUnavailableError" });
        expect((err as Error).cause).toBeInstanceOf(Error);
        expect(Date.now() - started).toBeLessThan(500 + 500);
      } finally {
        member.clientProxy.open();
        await session.close();
      }
    },
  );

  it("a closed client: CLIENT_CLOSED for a new session and for calls of an existing one", async () => {
    const c = fx.etcd.client();
    const session = await Session.create(c, { ttl: 10 });
    c.close();
    await expect(Session.create(c, { ttl: 10 })).rejects.toMatchObject({ code: "CLIENT_CLOSED" });
    await expect(new Election(session, `${fx.etcd.prefix()}x`).leader()).rejects.toMatchObject({
      code: "CLIENT_CLOSED",
    });
    await session.close();
  });

  it("a closed client makes LeaderElector.run() reject with CLIENT_CLOSED instead of retrying forever", async () => {
    const c = fx.etcd.client();
    c.close();
    const elector = new LeaderElector({
      client: c,
      name: `${fx.etcd.prefix()}e`,
      identity: "a",
      logger: false,
      onStartedLeading: () => {},
    });
    await expect(elector.run()).rejects.toMatchObject({ code: "CLIENT_CLOSED" });
    expect(elector.metrics().lastError).toMatchObject({ code: "CLIENT_CLOSED" });
  });

  it("aborts reject with the signal's own reason, as events.on does", async () => {
    const session = await fx.newSession();
    const name = `${fx.etcd.prefix()}abort`;
    const held = await new Mutex(session, name).lock();
    const other = await fx.newSession();
    const reason = new Error("the user gave up");
    const ac = new AbortController();
    const waiting = new Mutex(other, name).lock({ signal: ac.signal });
    await waitFor(async () => (await fx.client.getAll().prefix(`${name}/`).keys()).length === 2);
    ac.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    await held.unlock();
  });

  it("metrics() is JSON-safe while leading: the token is a string, the last error says what, when", async () => {
    const stop = new AbortController();
    const elector = new LeaderElector({
      client: fx.etcd.client(),
      name: `${fx.etcd.prefix()}m`,
      identity: "a",
      ttl: 5,
      logger: false,
      onStartedLeading: () => {},
    });
    const done = elector.run({ signal: stop.signal });
    await waitFor(() => elector.isLeader());
    await waitFor(() => elector.metrics().keepaliveRoundTripMs !== undefined, { timeoutMs: 5000 });
    const metrics = JSON.parse(JSON.stringify(elector.metrics())) as Record<string, unknown>;
    expect(metrics).toMatchObject({ state: "leading", termsLed: 1, sessionState: "connected" });
    expect(typeof metrics.token).toBe("string");
    expect(typeof metrics.keepaliveRoundTripMs).toBe("number");
    stop.abort();
    await done;
  });
});

describe.skipIf(!!faultsUnavailableReason)("a value over etcd's request limit (--max-request-bytes=65536)", () => {
  const fx = useEtcd(() => startEtcd({ extraArgs: ["--max-request-bytes=65536"] }));

  it("is REQUEST_TOO_LARGE from etcd (its own check, and gRPC's), and leaves nothing behind", async () => {
    const session = await fx.newSession({ ttl: 5 });
    const name = `${fx.etcd.prefix()}big`;
    for (const size of [100 * 1024, 700 * 1024]) {
      const err = await new Election(session, name).campaign(Buffer.alloc(size, 1)).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "REQUEST_TOO_LARGE" });
      expect(await fx.client.getAll().prefix(`${name}/`).keys()).toEqual([]);
    }
    // Set to the server's limit, the session refuses it before sending anything.
    const bounded = await Session.create(fx.client, { ttl: 5, maxValueBytes: 64 * 1024 - 8 * 1024 });
    await expect(new Election(bounded, name).campaign(Buffer.alloc(100 * 1024))).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await bounded.close();
  });
});
