/**
 * Against a secured etcd: TLS with client certificates (--client-cert-auth), and, separately,
 * authentication with a least-privilege user whose role may read and write `app/` only.
 */
import { describe, expect, it } from "vitest";
import { Election, LeaderElector, Mutex, RWLock, Semaphore, Session, type EtcdClient } from "../../src/index.js";
import { contextOf } from "../../src/session/context.js";
import { handledRpcs } from "../support/metrics.js";
import { collect, keysUnder } from "../support/observe.js";
import {
  APP,
  APP_PREFIX,
  aborted,
  faultsUnavailableReason,
  startEtcd,
  useEtcd,
  waitFor,
  type EtcdEnv,
} from "../support/index.js";

/** Every primitive, start to finish, under `prefix`: what an application does with the library. */
async function everyPrimitive(env: EtcdEnv, client: EtcdClient, prefix: string): Promise<void> {
  const a = await Session.create(client, { ttl: 5 });
  const b = await Session.create(client, { ttl: 5 });
  try {
    const election = new Election(a, `${prefix}election`);
    const seen = collect(new Election(b, `${prefix}election`).observe());
    const term = await election.campaign("a");
    const next = new Election(b, `${prefix}election`).campaign("b");
    await term.proclaim("a2");
    expect((await election.leader())?.value.toString()).toBe("a2");
    await waitFor(() => seen.items.at(-1)?.value.toString() === "a2");
    await term.resign();
    const second = await next;
    await waitFor(() => seen.items.at(-1)?.token === second.token);
    await second.resign();

    const lock = await new Mutex(a, `${prefix}mutex`).lock();
    const waiting = new Mutex(b, `${prefix}mutex`).lock();
    await lock
      .txn()
      .then(env.client({}).put(`${prefix}data`).value("fenced"))
      .commit();
    await lock.unlock();
    await (await waiting).unlock();
    await new Semaphore(a, `${prefix}sem`, { limit: 2 }).withPermit(() =>
      new Semaphore(b, `${prefix}sem`, { limit: 2 }).withPermit(() => {}),
    );
    await new RWLock(a, `${prefix}rw`).withReadLock(() => new RWLock(b, `${prefix}rw`).withReadLock(() => {}));

    const stop = new AbortController();
    const elector = new LeaderElector({
      session: a,
      name: `${prefix}elector`,
      identity: "a",
      logger: false,
      onStartedLeading: () => {},
    });
    const done = elector.run({ signal: stop.signal });
    await waitFor(() => elector.isLeader());
    stop.abort();
    await done;
  } finally {
    await a.close();
    await b.close();
  }
  const root = env.client();
  for (const name of ["election", "mutex", "sem", "rw", "elector"])
    expect(await keysUnder(root, `${prefix}${name}`)).toEqual([]);
  expect(await root.get(`${prefix}data`).string()).toBe("fenced");
}

describe.skipIf(!!faultsUnavailableReason)("etcd over TLS with client certificates", () => {
  const fx = useEtcd(() => startEtcd({ tls: true }));

  it("every primitive works over TLS with a client certificate", async () => {
    await everyPrimitive(fx.etcd, fx.client, fx.etcd.prefix("tls"));
  });

  it("a client certificate from a CA etcd does not trust, none, or a server certificate we do not trust: AUTH_FAILED in bounded time, no lease left", async () => {
    const tls = fx.etcd.security.tls!;
    const leasesBefore = (await fx.client.leaseClient.leaseLeases()).leases.length;
    for (const credentials of [
      { rootCertificate: tls.ca, certChain: tls.strangerCert, privateKey: tls.strangerKey },
      { rootCertificate: tls.ca },
      { rootCertificate: tls.strangerCa, certChain: tls.clientCert, privateKey: tls.clientKey }, // etcd's certificate not trusted
    ]) {
      const bad = fx.etcd.client({ credentials });
      const started = Date.now();
      const err = await Session.create(bad, { ttl: 5, callTimeoutMs: 2000 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "AUTH_FAILED", message: expect.stringMatching(/TLS/) });
      expect(Date.now() - started).toBeLessThan(2000 + 1000);
      bad.close();
    }
    expect((await fx.client.leaseClient.leaseLeases()).leases.length).toBe(leasesBefore);
  });
});

describe.skipIf(!!faultsUnavailableReason)("etcd with authentication (auth tokens live 2 s idle)", () => {
  const fx = useEtcd(() => startEtcd({ auth: true, extraArgs: ["--auth-token-ttl=2"] }));
  const leases = async (): Promise<string[]> => (await fx.client.leaseClient.leaseLeases()).leases.map((l) => l.ID);

  it("every primitive works as the least-privilege user, whose role may read and write its prefix only", async () => {
    await everyPrimitive(fx.etcd, fx.etcd.client({ auth: APP }), `${APP_PREFIX}${fx.etcd.prefix("app")}`);
  });

  it("a name outside the user's prefix: the campaign fails with PERMISSION_DENIED naming the key, nothing left", async () => {
    const before = await leases();
    const session = await Session.create(fx.etcd.client({ auth: APP }), { ttl: 5 });
    const name = `elsewhere/${fx.etcd.prefix("denied")}jobs`;
    const err = await new Election(session, name).campaign("x").catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "PERMISSION_DENIED", message: expect.stringContaining(name) });
    expect(await keysUnder(fx.client, name)).toEqual([]);
    const lockErr = await new Mutex(session, name).lock().catch((e: unknown) => e);
    expect(lockErr).toMatchObject({ code: "PERMISSION_DENIED" });
    await session.close();
    expect(await leases()).toEqual(before);
  });

  it("a wrong password: AUTH_FAILED for a session, and LeaderElector.run() rejects instead of retrying; no lease left", async () => {
    const before = await leases();
    const wrong = fx.etcd.client({ auth: { username: APP.username, password: "not-the-password" } });
    await expect(Session.create(wrong, { ttl: 5 })).rejects.toMatchObject({ code: "AUTH_FAILED" });
    const elector = new LeaderElector({
      client: wrong,
      name: `${APP_PREFIX}x`,
      identity: "a",
      logger: false,
      onStartedLeading: () => {},
    });
    await expect(elector.run()).rejects.toMatchObject({ code: "AUTH_FAILED" });
    expect(await leases()).toEqual(before);
  });

  it("a create aborted while its grant fails with AUTH_FAILED sends no revoke (no lease can exist) and warns of none", async () => {
    const lines: { level: string; fields: object; message: string }[] = [];
    const at =
      (level: string) =>
      (fields: object, message: string): void =>
        void lines.push({ level, fields, message });
    const logger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
    const wrong = fx.etcd.client({ auth: { username: APP.username, password: "not-the-password" } });
    const controller = new AbortController();
    const creating = Session.create(wrong, { ttl: 5, signal: controller.signal, logger });
    controller.abort(new Error("shutting down"));
    await expect(creating).rejects.toThrow("shutting down");
    // The grant goes on after the abort; once it settled, the abort path either revokes or says why not.
    await waitFor(() => lines.some((l) => /revoke/.test(l.message)), { description: "the aborted grant settled" });
    expect(lines.filter((l) => l.level === "warn" || l.level === "error")).toEqual([]);
    expect(lines.find((l) => /revoke/.test(l.message))).toMatchObject({
      level: "debug",
      fields: { err: expect.objectContaining({ code: "AUTH_FAILED" }) },
    });
  });

  it("a holder whose role loses read permission is told (its signal aborts with PERMISSION_DENIED), and re-authentication stays bounded", async () => {
    const member = fx.etcd.members[0]!;
    const app = fx.etcd.client({ auth: APP }, [member.clientUrl]);
    const prefix = `${APP_PREFIX}${fx.etcd.prefix("revoked")}`;
    const role = fx.client.role("app");
    // TTL 20: the holder's own re-read comes every 10 s, so the watch is what must tell it.
    const session = await Session.create(app, { ttl: 20 });
    try {
      const held = await new Mutex(session, `${prefix}mutex`).lock();
      await role.revoke({ permission: "Readwrite", range: fx.client.range({ prefix: APP_PREFIX }) });
      await role.grant({ permission: "Write", range: fx.client.range({ prefix: APP_PREFIX }) });
      // The stream breaks: its watches are made again, and etcd now refuses them.
      member.clientProxy.cut();
      member.clientProxy.open();
      expect(await aborted(held.signal, 10_000)).toMatchObject({ code: "PERMISSION_DENIED" });
      const before = await handledRpcs(member, "Authenticate");
      await new Promise((resolve) => setTimeout(resolve, 4000)); // the window in which Authenticate calls are counted
      expect((await handledRpcs(member, "Authenticate")) - before).toBeLessThanOrEqual(2);
    } finally {
      await role.revoke({ permission: "Readwrite", range: fx.client.range({ prefix: APP_PREFIX }) }).catch(() => {});
      await role.grant({ permission: "Readwrite", range: fx.client.range({ prefix: APP_PREFIX }) });
      await session.close();
    }
  });

  it("a release etcd refused (no write permission) leaves no token to reuse: the next lock of the session gets a greater one", async () => {
    const app = fx.etcd.client({ auth: APP });
    const name = `${APP_PREFIX}${fx.etcd.prefix("refused")}mutex`;
    const role = fx.client.role("app");
    const session = await Session.create(app, { ttl: 20, logger: false });
    try {
      const first = await new Mutex(session, name).lock();
      await role.revoke({ permission: "Readwrite", range: fx.client.range({ prefix: APP_PREFIX }) });
      await role.grant({ permission: "Read", range: fx.client.range({ prefix: APP_PREFIX }) });
      await first.unlock(); // refused by etcd: the key stays, under a live lease
      expect(await keysUnder(fx.client, name)).toEqual([first.key]);
      await role.revoke({ permission: "Read", range: fx.client.range({ prefix: APP_PREFIX }) });
      await role.grant({ permission: "Readwrite", range: fx.client.range({ prefix: APP_PREFIX }) });
      const second = await new Mutex(session, name).lock();
      expect(second.token).toBeGreaterThan(first.token);
      expect(await fx.client.get(second.key).exec()).toMatchObject({
        kvs: [expect.objectContaining({ create_revision: second.token.toString() })],
      });
      await second.unlock();
      expect(await keysUnder(fx.client, name)).toEqual([]);
    } finally {
      await role.revoke({ permission: "Read", range: fx.client.range({ prefix: APP_PREFIX }) }).catch(() => {});
      await role.grant({ permission: "Readwrite", range: fx.client.range({ prefix: APP_PREFIX }) });
      await session.close();
    }
  });

  it("a hold ended by a refused watch of its key leaves no token to reuse: the next lock of the session gets a greater one", async () => {
    const member = fx.etcd.members[0]!;
    const app = fx.etcd.client({ auth: APP }, [member.clientUrl]);
    const name = `${APP_PREFIX}${fx.etcd.prefix("denied-watch")}mutex`;
    const role = fx.client.role("app");
    const session = await Session.create(app, { ttl: 20, logger: false });
    try {
      const first = await new Mutex(session, name).lock();
      await role.revoke({ permission: "Readwrite", range: fx.client.range({ prefix: APP_PREFIX }) });
      await role.grant({ permission: "Write", range: fx.client.range({ prefix: APP_PREFIX }) });
      member.clientProxy.cut(); // the watch is made again, and etcd now refuses it
      member.clientProxy.open();
      expect(await aborted(first.signal, 10_000)).toMatchObject({ code: "PERMISSION_DENIED" });
      await role.revoke({ permission: "Write", range: fx.client.range({ prefix: APP_PREFIX }) });
      await role.grant({ permission: "Readwrite", range: fx.client.range({ prefix: APP_PREFIX }) });
      const second = await new Mutex(session, name).lock();
      expect(second.token).toBeGreaterThan(first.token);
      await first.unlock(); // the first hold's late release must not remove the second's key
      expect(await keysUnder(fx.client, name)).toEqual([second.key]);
      expect(second.signal.aborted).toBe(false);
      await second.unlock();
    } finally {
      await role.revoke({ permission: "Write", range: fx.client.range({ prefix: APP_PREFIX }) }).catch(() => {});
      await role.grant({ permission: "Readwrite", range: fx.client.range({ prefix: APP_PREFIX }) });
      await session.close();
    }
  });

  describe("a role limited to <name>/ (no access to <name>.handover nor <name>.priority.)", () => {
    /** A user whose role may read and write `<name>/` only; removed by `drop`. */
    async function limitedTo(name: string, id: string) {
      const role = await fx.client.role(`limited-${id}`).create();
      await role.grant({ permission: "Readwrite", range: fx.client.range({ prefix: `${name}/` }) });
      const user = await fx.client.user(`limited-${id}`).create("limited-secret");
      await user.addRole(role);
      const client = fx.etcd.client({ auth: { username: `limited-${id}`, password: "limited-secret" } });
      return {
        client,
        async drop(): Promise<void> {
          client.close();
          await user.delete();
          await role.delete();
        },
      };
    }
    const logged = () => {
      const lines: string[] = [];
      const at =
        (level: string) =>
        (_f: object, message: string): void =>
          void lines.push(`${level}: ${message}`);
      return { lines, logger: { debug() {}, info: at("info"), warn: at("warn"), error: at("error") } };
    };
    /** Resolves after `n` keepalives of `session`: time passing, told by events (TTL 2: one every ~0.7 s). */
    const renewals = (session: Session, n: number): Promise<void> =>
      new Promise((resolve) => {
        let seen = 0;
        const on = (): void => {
          if (++seen < n) return;
          session.off("renewed", on);
          resolve();
        };
        session.on("renewed", on);
      });

    it("a candidate whose request watch is denied says so once, its campaign still wins, and it says nothing after close()", async () => {
      const name = fx.etcd.prefix("limited-waiter") + "jobs";
      const limited = await limitedTo(name, "waiter");
      const boss = await Session.create(fx.client, { ttl: 2 });
      const { lines, logger } = logged();
      const session = await Session.create(limited.client, { ttl: 2, logger });
      const stop = new AbortController();
      let done: Promise<void> | undefined;
      try {
        const held = await new Election(boss, name).campaign("boss");
        const elector = new LeaderElector({ session, name, identity: "w", logger, onStartedLeading: () => {} });
        done = elector.run({ signal: stop.signal });
        await waitFor(() => lines.some((l) => l.includes("no permission to watch the hand-over request")));
        await renewals(session, 4); // past two of the waiter's periodic re-reads (TTL/2)
        // Said once: by the watch stream, at error; what it means, at info.
        expect(lines.filter((l) => /^(warn|error)/.test(l))).toEqual([
          "error: etcd refuses a watch: no permission to read the key; the watch is given up",
        ]);
        expect(lines.filter((l) => l.includes("cannot step aside for a hand-over"))).toHaveLength(1);
        await held.resign();
        await waitFor(() => elector.isLeader()); // the campaign works without the request
        await renewals(session, 4); // leading past two re-reads, the priorities out of its reach
        stop.abort();
        await done;
        await session.close();
        const atClose = lines.length;
        await renewals(boss, 4);
        expect(lines.slice(atClose)).toEqual([]);
        // Leading: the watch of the priorities is denied too, said once as well; no warning every TTL/2.
        const denied = "error: etcd refuses a watch: no permission to read the key; the watch is given up";
        expect(lines.filter((l) => /^(warn|error)/.test(l))).toEqual([denied, denied]);
        expect(await keysUnder(fx.client, name)).toEqual([]);
      } finally {
        stop.abort();
        await done?.catch(() => {});
        await session.close();
        await boss.close();
        await limited.drop();
      }
    });

    it("campaigns on one client whose request watch is denied: the denied watch is tried once per client, not once per campaign", async () => {
      const name = fx.etcd.prefix("limited-many") + "jobs";
      const limited = await limitedTo(name, "many");
      const boss = await Session.create(fx.client, { ttl: 2 });
      const { lines, logger } = logged();
      const sessions = [
        await Session.create(limited.client, { ttl: 2, logger }),
        await Session.create(limited.client, { ttl: 2, logger }),
      ];
      try {
        const held = await new Election(boss, name).campaign("boss");
        const denied = (): number => lines.filter((l) => l.includes("etcd refuses a watch")).length;
        const first = new Election(sessions[0]!, name).campaign("w1");
        first.catch(() => {});
        await waitFor(() => denied() === 1);
        const second = new Election(sessions[1]!, name).campaign("w2");
        second.catch(() => {});
        await waitFor(async () => (await keysUnder(fx.client, name)).length === 3);
        await renewals(sessions[1]!, 2); // the second campaign's wait has begun, and read again
        expect(denied()).toBe(1); // each denied watch re-opens the client's shared stream: once, not per campaign
        await held.resign();
        await (await first).resign();
        await (await second).resign();
        expect(await keysUnder(fx.client, name)).toEqual([]);
      } finally {
        for (const s of sessions) await s.close();
        await boss.close();
        await limited.drop();
      }
    });

    it("a candidate that loses read access to the request while it waits still wins (its periodic re-read reads the queue alone)", async () => {
      const name = fx.etcd.prefix("limited-revoked") + "jobs";
      const limited = await limitedTo(name, "revoked");
      const request = fx.client.range({ prefix: `${name}.handover` });
      const role = fx.client.role("limited-revoked");
      await role.grant({ permission: "Read", range: request }); // at first it may read the request
      const boss = await Session.create(fx.client, { ttl: 2 });
      const { lines, logger } = logged();
      const session = await Session.create(limited.client, { ttl: 2, logger });
      try {
        const held = await new Election(boss, name).campaign("boss");
        const ctx = contextOf(session);
        const calls: string[] = [];
        const call = ctx.conn.call.bind(ctx.conn);
        ctx.conn.call = (service, method, req, o) => {
          calls.push(o.what ?? method);
          return call(service, method, req, o);
        };
        const waiting = new Election(session, name).campaign("w");
        waiting.catch(() => {}); // awaited below
        await waitFor(() => calls.includes(`read the hand-over request of "${name}"`)); // its watch is in place
        await role.revoke({ permission: "Read", range: request });
        const reads = (): number => calls.filter((w) => w === `read the queue of "${name}"`).length;
        const before = reads();
        await waitFor(() => reads() >= before + 3, { description: "a periodic re-read after the revoke" });
        // The fallback is said once, not at every re-read.
        expect(lines.filter((l) => l.includes("reading the queue alone"))).toHaveLength(1);
        await held.resign();
        await (await waiting).resign();
        expect(await keysUnder(fx.client, name)).toEqual([]);
      } finally {
        await session.close();
        await boss.close();
        await limited.drop();
      }
    });

    it("an elector with a priority but no access to <name>.priority. rejects run() with PERMISSION_DENIED, nothing left", async () => {
      const name = fx.etcd.prefix("limited-priority") + "jobs";
      const limited = await limitedTo(name, "priority");
      const session = await Session.create(limited.client, { ttl: 2 });
      try {
        const elector = new LeaderElector({
          session,
          name,
          identity: "p",
          priority: 5,
          logger: false,
          onStartedLeading: () => {},
        });
        await expect(elector.run()).rejects.toMatchObject({ code: "PERMISSION_DENIED" });
        expect(await keysUnder(fx.client, name)).toEqual([]);
      } finally {
        await session.close();
        await limited.drop();
      }
    });
  });

  it("streams outlive an expired token: after a blip, the keepalive and every watch (holder, waiter, observer) work again", async () => {
    const member = fx.etcd.members[0]!;
    const app = fx.etcd.client({ auth: APP }, [member.clientUrl]);
    const prefix = `${APP_PREFIX}${fx.etcd.prefix("expiry")}`;
    // TTL 20: the periodic re-reads come every 10 s, so anything sooner is the watches' doing.
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => Session.create(app, { ttl: 20 })));
    try {
      const held = await new Mutex(a!, `${prefix}mutex`).lock();
      const waiting = new Mutex(b!, `${prefix}mutex`).lock();
      waiting.catch(() => {}); // awaited below; a failed test must not leave it unhandled
      const term = await new Election(a!, `${prefix}election`).campaign("a");
      const seen = collect(new Election(c!, `${prefix}election`).observe());
      await waitFor(async () => (await keysUnder(fx.client, `${prefix}mutex`)).length === 2 && seen.items.length === 1);
      await new Promise((resolve) => setTimeout(resolve, 3000)); // idle past the token's 2 s: the scenario
      member.clientProxy.cut();
      member.clientProxy.open();
      // The holder's watch: its key deleted behind its back (by root) ends the hold, well before a re-read.
      const cutAt = Date.now();
      await fx.client.delete().key(held.key);
      await waitFor(() => held.signal.aborted, { timeoutMs: 5000, description: "the holder's watch told it" });
      // The waiter's watch woke it.
      const next = await waiting;
      // The observer's watch saw the leader go.
      await term.resign();
      await waitFor(() => seen.items.at(-1) === undefined, {
        timeoutMs: 5000,
        description: "the observer's watch told it",
      });
      expect(Date.now() - cutAt).toBeLessThan(9000);
      // The keepalive stream renews again.
      await waitFor(() => a!.state === "connected" && a!.remainingMs() > 15_000, { timeoutMs: 10_000 });
      await next.unlock();
    } finally {
      for (const s of [a, b, c]) await s?.close();
    }
  });
});

describe.skipIf(!!faultsUnavailableReason)(
  "etcd with authentication and JWT tokens (a token goes stale when users change)",
  () => {
    const fx = useEtcd(() => startEtcd({ auth: true, jwt: true }));

    it("a user added while a mutex is held: unlock() still removes the key with a fresh token, and a waiter on a stream opened before is woken", async () => {
      const name = `${APP_PREFIX}${fx.etcd.prefix("stale")}mutex`;
      const errors: unknown[] = [];
      const logger = { debug() {}, info() {}, warn() {}, error: (fields: object) => void errors.push(fields) };
      const a = await Session.create(fx.etcd.client({ auth: APP }), { ttl: 10, logger });
      const b = await Session.create(fx.etcd.client({ auth: APP }), { ttl: 10, logger });
      try {
        await (await new Mutex(b, `${name}-warm`).lock()).unlock(); // b's watch stream is open, on the old token
        const held = await new Mutex(a, name).lock();
        // Adding a user moves the auth store's revision on: every token issued before it is now stale.
        const admin = fx.etcd.client();
        await admin.user(`user-${Date.now()}`).create("secret");
        admin.close();
        // TTL 10: the waiter's periodic re-read comes after 5 s, so a sooner wake is its watch's doing.
        const waiting = new Mutex(b, name).lock({ timeoutMs: 4000 });
        await waitFor(async () => (await keysUnder(fx.etcd.client(), name)).length === 2);
        await held.unlock();
        const next = await waiting;
        await next.unlock();
        expect(await keysUnder(fx.etcd.client(), name)).toEqual([]);
        expect(errors).toEqual([]);
      } finally {
        await a.close();
        await b.close();
      }
    });
  },
);
