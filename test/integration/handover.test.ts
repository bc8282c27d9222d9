import type { Etcd3 } from "etcd3";
import { describe, expect, it } from "vitest";
import { Election, LeaderElector, Session, isElectionError, type Logger, type Term } from "../../src/index.js";
import { etcdctl, type Etcdctl } from "../support/etcdctl.js";
import { watchCount } from "../support/internals.js";
import { contextOf } from "../../src/session/context.js";
import { EtcdUnavailableError } from "../../src/errors.js";
import { keysUnder } from "../support/observe.js";
import { TcpProxy, faultsUnavailableReason, useEtcd, waitFor } from "../support/index.js";

/** An etcdctl candidate's value: nothing else it prints contains it (its name, paths, warnings). */
const CTL = "successor-from-go";

const codeOf = (err: unknown): string | undefined => (isElectionError(err) ? err.code : String(err));

describe("Hand-overs", () => {
  const fx = useEtcd();

  /**
   * Candidates of one name joined in the given order (each key in place before the next joins). Every win
   * is checked as it happens: no earlier term of ours still holds, and its token is larger than the last.
   */
  async function line(name: string) {
    const wins: { value: string; term: Term }[] = [];
    const violations: string[] = [];
    const sessions = new Map<string, Session>();
    const campaigns = new Map<string, Promise<Term>>();
    const won = (value: string, term: Term): Term => {
      for (const w of wins)
        if (!w.term.signal.aborted) violations.push(`${value} won while ${w.value} (${w.term.token}) held`);
      const last = wins.at(-1);
      if (last && term.token <= last.term.token) violations.push(`token ${term.token} after ${last.term.token}`);
      wins.push({ value, term });
      return term;
    };
    const count = async (): Promise<number> => (await keysUnder(fx.client, name)).length;
    return {
      wins,
      violations,
      sessions,
      /** Our candidate `value` joins; resolves once its key is in the queue. */
      /** `client`: a client of its own (its own watch stream, so that its watches can be counted). */
      /** `logger`: the session's (default: the library's default). */
      async join(value: string, ttl = 10, client?: Etcd3, logger?: Logger): Promise<void> {
        const before = await count();
        const session = logger
          ? await Session.create(client ?? fx.client, { ttl, logger })
          : await fx.newSession({ ttl, ...(client ? { client } : {}) });
        sessions.set(value, session);
        const campaign = new Election(session, name).campaign(value).then((t) => won(value, t));
        campaign.catch(() => {}); // judged by the test that awaits it
        campaigns.set(value, campaign);
        await waitFor(async () => (await count()) === before + 1);
      },
      /** An `etcdctl elect` candidate joins. */
      async joinEtcdctl(value: string): Promise<Etcdctl> {
        const before = await count();
        const ctl = etcdctl(fx.etcd.endpoints, "elect", name, value);
        await waitFor(async () => (await count()) === before + 1);
        return ctl;
      },
      campaign: (value: string): Promise<Term> => campaigns.get(value)!,
      /** The values in the queue, in order. */
      async order(): Promise<string[]> {
        const res = await fx.client.getAll().prefix(`${name}/`).sort("Create", "Ascend").strings();
        return Object.values(res);
      },
      requestPresent: async (): Promise<boolean> => (await fx.client.get(`${name}.handover`).string()) !== null,
      async close(): Promise<void> {
        await Promise.all([...sessions.values()].map((s) => s.close()));
      },
    };
  }

  it("handOver() resigns to the next in line and resolves with it once it leads; with nobody waiting it fails, the term held", async () => {
    const name = `${fx.etcd.prefix()}next`;
    const l = await line(name);
    await l.join("a");
    const a = await l.campaign("a");
    for (const bad of [{ to: 42 }, { timeoutMs: -1 }, { timeoutMs: Number.NaN }])
      expect(codeOf(await a.handOver(bad as never).catch((e: unknown) => e))).toBe("INVALID_ARGUMENT");
    const alone = await a.handOver().catch((e: unknown) => e);
    expect(codeOf(alone)).toBe("HANDOVER_FAILED");
    expect(a.signal.aborted).toBe(false);
    await l.join("b");
    await l.join("c");
    const leader = await a.handOver();
    expect(leader.value.toString()).toBe("b");
    expect(a.signal.aborted).toBe(true);
    const b = await l.campaign("b");
    expect(leader.token).toBe(b.token);
    expect(await l.order()).toEqual(["b", "c"]);
    await b.handOver({ to: "c" }); // the next, named
    await (await l.campaign("c")).resign();
    expect(l.violations).toEqual([]);
    expect(l.wins.map((w) => w.value)).toEqual(["a", "b", "c"]);
    expect(await keysUnder(fx.client, name)).toEqual([]);
    await l.close();
  });

  it("handOver({ to }) to one further back: those ahead step aside and join again behind it, their campaigns going on", async () => {
    const name = `${fx.etcd.prefix()}further`;
    const l = await line(name);
    for (const v of ["a", "b", "c", "d", "e"]) await l.join(v);
    const a = await l.campaign("a");
    const keysBefore = await keysUnder(fx.client, name);
    const leader = await a.handOver({ to: "d" });
    expect(leader.value.toString()).toBe("d");
    const d = await l.campaign("d");
    expect(d.token).toBe(leader.token);
    await waitFor(async () => (await l.order()).length === 4); // b and c join again once their keys are gone
    const order = await l.order();
    expect(order[0]).toBe("d");
    expect(order.indexOf("e")).toBeLessThan(order.indexOf("b")); // b and c went behind everyone then waiting
    expect(new Set(order.slice(2))).toEqual(new Set(["b", "c"]));
    // The same keys (each session's own), re-made: nobody deleted anyone else's.
    expect(new Set(await keysUnder(fx.client, name))).toEqual(new Set(keysBefore.slice(1)));
    expect(await l.requestPresent()).toBe(false);
    // The ones that stepped aside still campaign, and win in their new order.
    await d.resign();
    for (const v of order.slice(1)) await (await l.campaign(v)).resign();
    expect(l.violations).toEqual([]);
    expect(l.wins.map((w) => w.value)).toEqual(["a", ...order]);
    await l.close();
  });

  it("an etcdctl elect candidate cannot step aside: a hand-over behind it fails, the term held; to it, it works", async () => {
    const name = `${fx.etcd.prefix()}etcdctl`;
    const l = await line(name);
    const own = fx.etcd.client();
    await l.join("a", 10, own);
    const a = await l.campaign("a");
    await l.join("b");
    const ctl = await l.joinEtcdctl(CTL);
    try {
      await l.join("c");
      const watches = watchCount(l.sessions.get("a")!);
      const failed = await a.handOver({ to: "c", timeoutMs: 1500 }).catch((e: unknown) => e);
      expect(codeOf(failed)).toBe("HANDOVER_FAILED");
      expect((failed as Error).message).toContain("did not step aside");
      expect(a.signal.aborted).toBe(false);
      a.assertHeld();
      expect(await l.requestPresent()).toBe(false);
      expect(watchCount(l.sessions.get("a")!)).toBe(watches); // the hand-over's watch of the queue is gone
      // b stepped aside (it could); etcdctl stays where it was, and still waits.
      await waitFor(async () => (await l.order()).length === 4); // b joins again once its key is gone
      expect(await l.order()).toEqual(["a", CTL, "c", "b"]);
      const leader = await a.handOver({ to: CTL });
      expect(leader.value.toString()).toBe(CTL);
      await ctl.printed(CTL);
      await ctl.interrupt();
      const c = await l.campaign("c");
      expect(c.token).toBeGreaterThan(leader.token);
      await c.resign();
      await (await l.campaign("b")).resign();
      expect(l.violations).toEqual([]);
    } finally {
      ctl.kill();
      await l.close();
      own.close();
    }
  });

  it("the target going away mid-hand-over fails it at once, the term held", async () => {
    const name = `${fx.etcd.prefix()}target-dies`;
    const l = await line(name);
    await l.join("a");
    const a = await l.campaign("a");
    const ctl = await l.joinEtcdctl(CTL); // holds the hand-over up
    try {
      await l.join("c");
      const handing = a.handOver({ to: "c", timeoutMs: 30_000 }).catch((e: unknown) => e);
      await waitFor(() => l.requestPresent());
      await l.sessions.get("c")!.close(); // the target's lease revoked: its key goes
      const failed = await handing;
      expect(codeOf(failed)).toBe("HANDOVER_FAILED");
      expect((failed as Error).message).toContain("went away");
      a.assertHeld();
      expect(await l.requestPresent()).toBe(false);
      await a.resign();
      await ctl.printed(CTL);
      expect(l.violations).toEqual([]);
    } finally {
      ctl.kill();
      await l.close();
    }
  });

  it("the leader's session lost mid-hand-over: the hand-over rejects with the loss, the request goes with the lease", async () => {
    const name = `${fx.etcd.prefix()}leader-lost`;
    const l = await line(name);
    await l.join("a");
    const a = await l.campaign("a");
    const ctl = await l.joinEtcdctl(CTL);
    try {
      await l.join("c");
      const handing = a.handOver({ to: "c", timeoutMs: 30_000 }).catch((e: unknown) => e);
      await waitFor(() => l.requestPresent());
      await fx.client.leaseClient.leaseRevoke({ ID: l.sessions.get("a")!.leaseId });
      const failed = await handing;
      expect(["NOT_LEADER", "SESSION_LOST"]).toContain(codeOf(failed));
      expect(a.signal.aborted).toBe(true);
      expect(await l.requestPresent()).toBe(false);
      await ctl.printed(CTL); // the next in line leads
      await ctl.interrupt();
      const c = await l.campaign("c");
      expect(c.token).toBeGreaterThan(a.token);
      await c.resign();
      expect(l.violations).toEqual([]);
    } finally {
      ctl.kill();
      await l.close();
    }
  });

  it.skipIf(!!faultsUnavailableReason)(
    "a failed hand-over answers within timeoutMs + 1 s while the request's withdrawal hangs; the withdrawal lands later",
    async () => {
      const name = `${fx.etcd.prefix()}slow-withdrawal`;
      const l = await line(name);
      const proxy = await TcpProxy.start({ targetPort: Number(fx.etcd.members[0]!.directClientUrl.split(":")[1]) });
      const own = fx.etcd.client({}, [proxy.url]); // the leader's path to etcd, and only its
      await l.join("a", 10, own);
      const a = await l.campaign("a");
      const ctl = await l.joinEtcdctl(CTL); // cannot step aside: the hand-over runs into its timeout
      try {
        await l.join("c");
        const started = performance.now();
        const handing = a.handOver({ to: "c", timeoutMs: 1500 }).catch((e: unknown) => e);
        await waitFor(() => l.requestPresent());
        proxy.blackhole(); // from here the leader's calls get no answer: withdrawing the request hangs
        const failed = await handing;
        const took = performance.now() - started;
        expect(codeOf(failed)).toBe("HANDOVER_FAILED");
        expect(took).toBeLessThan(1500 + 1000 + 1000); // timeoutMs + the documented bound + slack
        expect(a.signal.aborted).toBe(false);
        expect(await l.requestPresent()).toBe(true);
        proxy.open();
        await waitFor(async () => !(await l.requestPresent())); // the withdrawal went on, and landed
        a.assertHeld();
        await a.resign();
        await ctl.printed(CTL);
        expect(l.violations).toEqual([]);
      } finally {
        proxy.open();
        ctl.kill();
        await l.close();
        own.close();
        await proxy.close();
      }
    },
  );

  it.skipIf(!!faultsUnavailableReason)(
    "etcd unreachable once the resign has begun: the hand-over answers within timeoutMs + 1 s, the term ended; the resign lands later",
    async () => {
      const name = `${fx.etcd.prefix()}resign-hangs`;
      const l = await line(name);
      const proxy = await TcpProxy.start({ targetPort: Number(fx.etcd.members[0]!.directClientUrl.split(":")[1]) });
      const own = fx.etcd.client({}, [proxy.url]); // the leader's path to etcd, and only its
      try {
        await l.join("a", 10, own);
        const a = await l.campaign("a");
        await l.join("b");
        const ctx = contextOf(l.sessions.get("a")!);
        const call = ctx.conn.call.bind(ctx.conn);
        ctx.conn.call = (async (service, method, req, o) => {
          const res = await call(service, method, req, o);
          if ((o.what ?? "").includes("last check")) proxy.blackhole(); // the resign's delete gets no answer
          return res;
        }) as typeof ctx.conn.call;
        const started = performance.now();
        const failed = await a.handOver({ timeoutMs: 1000 }).catch((e: unknown) => e);
        const took = performance.now() - started;
        expect(codeOf(failed)).toBe("HANDOVER_FAILED");
        expect(took).toBeLessThan(1000 + 1000 + 1000); // timeoutMs + the documented bound + slack
        expect(a.signal.aborted).toBe(true); // resigned: the term is over whatever etcd says
        expect(() => a.assertHeld()).toThrow();
        proxy.open();
        const b = await l.campaign("b"); // the resign went on in the background, and landed
        expect(b.token).toBeGreaterThan(a.token);
        await b.resign();
        expect(l.violations).toEqual([]);
      } finally {
        proxy.open();
        await l.close();
        own.close();
        await proxy.close();
      }
    },
  );

  it("a request whose put reaches etcd only after the hand-over failed moves nobody, and does not stay", async () => {
    const name = `${fx.etcd.prefix()}late-put`;
    const l = await line(name);
    try {
      for (const v of ["a", "b", "c"]) await l.join(v);
      const a = await l.campaign("a");
      const ctx = contextOf(l.sessions.get("a")!);
      const call = ctx.conn.call.bind(ctx.conn);
      let landed: () => void = () => {};
      const putDone = new Promise<void>((resolve) => (landed = resolve));
      // The put reaches etcd late (a member that answers late, or a resend after a lost answer): after the
      // hand-over's timeout.
      ctx.conn.call = async (service, method, req, o) => {
        if (!(o.what ?? "").includes("ask candidates ahead")) return call(service, method, req, o);
        await new Promise((r) => setTimeout(r, 1500));
        try {
          return await call(service, method, req, o);
        } finally {
          landed();
        }
      };
      const failed = await a.handOver({ to: "c", timeoutMs: 500 }).catch((e: unknown) => e);
      expect(codeOf(failed)).toBe("HANDOVER_FAILED");
      a.assertHeld();
      await putDone;
      // Whatever came of the late put, it is gone once the withdrawal that waited for it ran.
      await waitFor(async () => !(await l.requestPresent()));
      const order = (await fx.client.getAll().prefix(`${name}/`).sort("Create", "Ascend").exec()).kvs;
      expect(order.map((kv) => kv.value.toString())).toEqual(["a", "b", "c"]); // b never stepped aside
      a.assertHeld();
      await a.resign();
      expect((await l.campaign("b")).token).toBeGreaterThan(a.token);
      await (await l.campaign("b")).resign();
      await (await l.campaign("c")).resign();
      expect(l.violations).toEqual([]);
    } finally {
      await l.close();
    }
  });

  it("a request put whose answer was a timeout but which lands later is fenced off: it moves nobody and does not stay", async () => {
    const name = `${fx.etcd.prefix()}timed-out-put`;
    const l = await line(name);
    try {
      for (const v of ["a", "b", "c"]) await l.join(v);
      const a = await l.campaign("a");
      const ctx = contextOf(l.sessions.get("a")!);
      const call = ctx.conn.call.bind(ctx.conn);
      let lateCall: Promise<unknown> | undefined;
      // The put's answer is a timeout, yet the attempt reaches etcd later (a slow member applies it).
      ctx.conn.call = async (service, method, req, o) => {
        if (!(o.what ?? "").includes("ask candidates ahead")) return call(service, method, req, o);
        lateCall = new Promise((r) => setTimeout(r, 1500)).then(() =>
          call(service, method, req, o).catch((e: unknown) => e),
        );
        throw new EtcdUnavailableError(`${o.what}: no answer from etcd (injected by the test)`);
      };
      const failed = await a.handOver({ to: "c", timeoutMs: 5_000 }).catch((e: unknown) => e);
      expect(isElectionError(failed)).toBe(true);
      a.assertHeld();
      await lateCall; // the late attempt has reached etcd: its guard (our key's mod revision) refused it
      await waitFor(async () => !(await l.requestPresent()));
      const order = (await fx.client.getAll().prefix(`${name}/`).sort("Create", "Ascend").exec()).kvs;
      expect(order.map((kv) => kv.value.toString())).toEqual(["a", "b", "c"]); // b never stepped aside
      expect(await l.requestPresent()).toBe(false);
      a.assertHeld();
      await a.resign();
      await (await l.campaign("b")).resign();
      await (await l.campaign("c")).resign();
      expect(l.violations).toEqual([]);
    } finally {
      await l.close();
    }
  });

  it("a hand-over that finds our key gone rejects with NOT_LEADER and the term is over at once", async () => {
    const name = `${fx.etcd.prefix()}not-leader`;
    const sa = await fx.newSession({ ttl: 10 });
    const others = [await fx.newSession({ ttl: 10 }), await fx.newSession({ ttl: 10 })];
    try {
      // The leader's watch of its own key is slow to tell (held back until the hand-over answered): only
      // the hand-over can end the term in time.
      const ctx = contextOf(sa);
      const add = ctx.watches.add.bind(ctx.watches);
      let hold = false;
      const held: (() => void)[] = [];
      ctx.watches.add = (target, handlers) =>
        add(target, {
          ...handlers,
          events: (events, from) => {
            if (hold) held.push(() => handlers.events(events, from));
            else handlers.events(events, from);
          },
        });
      const a = await new Election(sa, name).campaign("a");
      const waiting: Promise<Term>[] = [];
      for (const [i, v] of ["b", "c"].entries()) {
        waiting.push(new Election(others[i]!, name).campaign(v)); // b ahead of c: the hand-over asks b
        waiting[i]!.catch(() => {});
        await waitFor(async () => (await keysUnder(fx.client, name)).length === i + 2);
      }
      const call = ctx.conn.call.bind(ctx.conn);
      // Our key goes (an operator's delete) right before the request's put, whose guard then fails.
      ctx.conn.call = async (service, method, req, o) => {
        if ((o.what ?? "").includes("ask candidates ahead")) {
          hold = true;
          await fx.client.delete().key(a.key);
        }
        return call(service, method, req, o);
      };
      const failed = await a.handOver({ to: "c", timeoutMs: 5000 }).catch((e: unknown) => e);
      expect(codeOf(failed)).toBe("NOT_LEADER");
      expect(a.signal.aborted).toBe(true);
      expect(
        codeOf(
          await Promise.resolve()
            .then(() => a.assertHeld())
            .catch((e: unknown) => e),
        ),
      ).toBe("NOT_LEADER");
      hold = false;
      for (const h of held) h();
      await (await waiting[0]!).resign();
      await (await waiting[1]!).resign();
    } finally {
      await sa.close();
      for (const s of others) await s.close();
    }
  });

  it("a request left behind by a leader that no longer leads makes no candidate step aside; the next leader's hand-over works", async () => {
    const name = `${fx.etcd.prefix()}stale-request`;
    const l = await line(name);
    const said: string[] = [];
    const logger = { debug() {}, info: (_f: object, m: string) => void said.push(m), warn() {}, error() {} };
    await l.join("a");
    const a = await l.campaign("a");
    await l.join("b");
    await l.join("c", 10, undefined, logger);
    await l.join("d");
    const kvs = async () => (await fx.client.getAll().prefix(`${name}/`).sort("Create", "Ascend").exec()).kvs;
    const [ka, , kc, kd] = await kvs();
    await a.resign();
    const b = await l.campaign("b");
    // As if a's withdrawal had failed: a's request, for d, is still there under b.
    const stale = {
      to: kd!.key.toString(),
      token: kd!.create_revision,
      from: { key: ka!.key.toString(), token: ka!.create_revision },
    };
    await fx.client.put(`${name}.handover`).value(JSON.stringify(stale));
    await waitFor(async () => said.some((m) => m.includes("no longer leads")) || (await l.order())[1] !== "c");
    expect(await l.order()).toEqual(["b", "c", "d"]);
    expect((await kvs())[1]!.create_revision).toBe(kc!.create_revision); // c never left
    // b's own hand-over past c, to d: c steps aside for it.
    const leader = await b.handOver({ to: "d" });
    expect(leader.value.toString()).toBe("d");
    await waitFor(async () => (await l.order()).length === 2); // c joins again once its key is gone
    expect(await l.order()).toEqual(["d", "c"]);
    expect(await l.requestPresent()).toBe(false);
    await (await l.campaign("d")).resign();
    await (await l.campaign("c")).resign();
    expect(l.violations).toEqual([]);
    await l.close();
  });

  it("a waiter reads the request with its wait's periodic re-read, not on its own; a request its watch missed is still obeyed", async () => {
    const name = `${fx.etcd.prefix()}folded-read`;
    const l = await line(name);
    await l.join("a");
    const a = await l.campaign("a");
    const own = fx.etcd.client(); // b's calls, and only its, go through this client
    const b = await Session.create(own, { ttl: 2 });
    try {
      const ctx = contextOf(b);
      const calls: string[] = [];
      const call = ctx.conn.call.bind(ctx.conn);
      ctx.conn.call = (service, method, req, o) => {
        calls.push(o.what ?? method);
        return call(service, method, req, o);
      };
      // b's watch of the request tells nothing: as if it missed every event.
      const add = ctx.watches.add.bind(ctx.watches);
      ctx.watches.add = (target, handlers) =>
        add(target, target.key.toString().endsWith(".handover") ? { ...handlers, events: () => {} } : handlers);
      const count = (what: string): number => calls.filter((w) => w === what).length;
      const requestReads = (): number => count(`read the hand-over request of "${name}"`);
      const queueReads = (): number => count(`read the queue of "${name}"`);
      const campaign = new Election(b, name).campaign("b");
      campaign.catch(() => {}); // awaited below
      await waitFor(async () => (await l.order()).length === 2);
      await l.join("c");
      const before = queueReads();
      await waitFor(() => queueReads() >= before + 4, { description: "two of b's periodic re-reads" });
      expect(requestReads()).toBe(1); // once, when its watch was in place
      // The request reaches b only through its wait's re-read (within TTL/2): it steps aside all the same.
      const leader = await a.handOver({ to: "c" });
      expect(leader.value.toString()).toBe("c");
      await waitFor(async () => (await l.order()).length === 2); // b joins again once its key is gone
      expect(await l.order()).toEqual(["c", "b"]);
      expect(requestReads()).toBeLessThanOrEqual(2); // and once more when it joined again
      await (await l.campaign("c")).resign();
      await (await campaign).resign();
      expect(l.violations).toEqual([]);
    } finally {
      await b.close();
      await l.close();
      own.close();
    }
  });

  it("two hand-overs racing on one term: one goes through, the other fails at once; the new leader can hand over again", async () => {
    const name = `${fx.etcd.prefix()}racing`;
    const l = await line(name);
    for (const v of ["a", "b", "c", "d"]) await l.join(v);
    const a = await l.campaign("a");
    const results = await Promise.allSettled([a.handOver({ to: "c" }), a.handOver({ to: "d" })]);
    expect(results[0].status).toBe("fulfilled");
    expect(results[1].status === "rejected" && codeOf(results[1].reason)).toBe("HANDOVER_FAILED");
    const c = await l.campaign("c");
    const [again, late] = await Promise.allSettled([c.handOver({ to: "d" }), a.handOver({ to: "b" })]);
    expect(again.status === "fulfilled" && again.value.value.toString()).toBe("d");
    expect(late.status === "rejected" && codeOf(late.reason)).toBe("NOT_LEADER");
    const d = await l.campaign("d");
    await d.resign();
    await (await l.campaign("b")).resign();
    expect(l.violations).toEqual([]);
    expect(l.wins.map((w) => w.value)).toEqual(["a", "c", "d", "b"]);
    await l.close();
  });

  it("handOver({ to }) with two candidates of that value picks the newest (a restarted pod's live key, not its dead one)", async () => {
    const name = `${fx.etcd.prefix()}same-value`;
    const l = await line(name);
    await l.join("a");
    const a = await l.campaign("a");
    await l.join("b"); // the old pod's key
    const old = l.sessions.get("b")!;
    const oldCampaign = l.campaign("b");
    await l.join("b"); // its restart (the map now holds the new one)
    const fresh = l.sessions.get("b")!;
    expect(fresh).not.toBe(old);
    const newest = (await keysUnder(fx.client, name))[2]!;
    const leader = await a.handOver({ to: "b" });
    expect(`${name}/${leader.key.slice(leader.key.lastIndexOf("/") + 1)}`).toBe(newest);
    expect((await l.campaign("b")).key).toBe(leader.key);
    await (await l.campaign("b")).resign();
    await (await oldCampaign).resign();
    await old.close();
    expect(l.violations).toEqual([]);
    await l.close();
  });

  it("20 waiters ahead of the target step aside: the target leads, every campaign goes on, nothing is left", async () => {
    const name = `${fx.etcd.prefix()}many`;
    const l = await line(name);
    await l.join("leader");
    const a = await l.campaign("leader");
    const ahead = Array.from({ length: 20 }, (_, i) => `w${i}`);
    for (const v of ahead) await l.join(v);
    await l.join("target");
    const leader = await a.handOver({ to: "target", timeoutMs: 30_000 });
    expect(leader.value.toString()).toBe("target");
    await waitFor(async () => (await l.order()).length === 21, { timeoutMs: 20_000 }); // those that stepped aside joined again
    const order = await l.order();
    expect(order[0]).toBe("target");
    expect(new Set(order.slice(1))).toEqual(new Set(ahead));
    expect(await l.requestPresent()).toBe(false);
    await (await l.campaign("target")).resign();
    for (const v of order.slice(1)) await (await l.campaign(v)).resign();
    expect(l.violations).toEqual([]);
    expect(await keysUnder(fx.client, name)).toEqual([]);
    await l.close();
  });

  describe("LeaderElector: elector.handOver and preferred leaders", () => {
    /** Electors of one name; every election is checked as it happens, as in `line`. */
    function fleet(name: string, ttl = 2) {
      const elected: { id: string; token: bigint; at: number }[] = [];
      const violations: string[] = [];
      const running = new Map<string, { elector: LeaderElector; stop: AbortController; done: Promise<void> }>();
      /** Every line each elector logged at info or above, as `id level: message`. */
      const logs: string[] = [];
      const electors = new Map<string, LeaderElector>();
      /** Every `failure` event, as `id: code`. */
      const failures: string[] = [];
      const logger = (id: string) => ({
        debug() {},
        info: (_f: object, m: string) => void logs.push(`${id} info: ${m}`),
        warn: (f: { err?: Error }, m: string) =>
          void logs.push(`${id} warn: ${m}${f.err ? ` (${f.err.message})` : ""}`),
        error: (_f: object, m: string) => void logs.push(`${id} error: ${m}`),
      });
      return {
        elected,
        violations,
        logs,
        failures,
        start(id: string, priority?: number, work?: (term: Term) => Promise<void>): LeaderElector {
          // A candidate started again is the same elector run again (it flaps), not a new one.
          const again = electors.get(id);
          if (again) {
            const stop = new AbortController();
            running.set(id, { elector: again, stop, done: again.run({ signal: stop.signal }) });
            return again;
          }
          const elector = new LeaderElector({
            client: fx.client,
            name,
            identity: id,
            ttl,
            ...(priority === undefined ? {} : { priority }),
            logger: logger(id),
            onStartedLeading:
              work ??
              ((term) => new Promise<void>((resolve) => term.signal.addEventListener("abort", () => resolve()))),
          });
          elector.on("failure", (err) => failures.push(`${id}: ${err.code}`));
          electors.set(id, elector);
          elector.on("elected", (term) => {
            for (const [other, r] of running)
              if (r.elector !== elector && r.elector.isLeader()) violations.push(`${id} elected while ${other} leads`);
            const last = elected.at(-1);
            if (last && term.token <= last.token) violations.push(`token ${term.token} after ${last.token}`);
            elected.push({ id, token: term.token, at: performance.now() });
          });
          const stop = new AbortController();
          running.set(id, { elector, stop, done: elector.run({ signal: stop.signal }) });
          return elector;
        },
        async stop(id: string): Promise<void> {
          const r = running.get(id)!;
          r.stop.abort();
          await r.done;
          running.delete(id);
        },
        leads: (id: string): boolean => elected.at(-1)?.id === id && running.get(id)!.elector.isLeader(),
        queued: async (n: number): Promise<boolean> => (await keysUnder(fx.client, name)).length === n,
        async stopAll(): Promise<void> {
          for (const id of [...running.keys()]) await this.stop(id);
        },
      };
    }

    it("elector.handOver(identity) hands the lead to that candidate; the old leader campaigns again behind it", async () => {
      const name = `${fx.etcd.prefix()}elector-handover`;
      const f = fleet(name, 10);
      const a = f.start("a");
      await waitFor(() => f.leads("a"));
      for (const id of ["b", "c", "d"]) {
        f.start(id);
        await waitFor(() => f.queued(["b", "c", "d"].indexOf(id) + 2));
      }
      const leader = await a.handOver("d");
      expect(leader.value.toString()).toBe("d");
      await waitFor(() => f.leads("d"));
      await waitFor(() => f.queued(4)); // a queued again
      expect(codeOf(await a.handOver("b").catch((e: unknown) => e))).toBe("NOT_LEADER");
      await f.stopAll();
      expect(f.violations).toEqual([]);
      expect(f.elected.map((e) => e.id).slice(0, 2)).toEqual(["a", "d"]);
      expect(await keysUnder(fx.client, name)).toEqual([]);
    });

    it("priority with 3 candidates: the leader hands over to the highest waiting, past a hold-down of one TTL; lower ones wait", async () => {
      const name = `${fx.etcd.prefix()}priority`;
      const f = fleet(name);
      f.start("low", 1);
      await waitFor(() => f.leads("low"));
      f.start("mid", 2);
      await waitFor(() => f.queued(2));
      f.start("high", 3);
      await waitFor(() => f.leads("high"));
      const low = f.elected[0]!;
      const high = f.elected[1]!;
      expect(high.at - low.at).toBeGreaterThanOrEqual(2_000); // the hold-down
      // mid stepped aside; low campaigns again, behind it: neither preempts a higher priority.
      await waitFor(() => f.queued(3));
      await f.stop("high");
      await waitFor(() => f.leads("mid"));
      await f.stop("mid");
      await waitFor(() => f.leads("low"));
      await f.stopAll();
      expect(f.elected.map((e) => e.id)).toEqual(["low", "high", "mid", "low"]);
      expect(f.violations).toEqual([]);
      // mid stepping aside changed the queue mid-hand-over: no second hand-over, no false failure.
      expect(f.failures).toEqual([]);
      expect(f.logs.filter((l) => / warn| error/.test(l))).toEqual([]);
      expect(f.logs).toContain("low info: handed the lead over");
      expect(await keysUnder(fx.client, name)).toEqual([]);
      expect(await fx.client.getAll().prefix(`${name}.priority.`).keys()).toEqual([]); // gone with the leases
    });

    it('a preferred hand-over under way is not started again by queue changes (no false failure, no "already under way")', async () => {
      const name = `${fx.etcd.prefix()}busy`;
      const f = fleet(name);
      f.start("low", 1);
      await waitFor(() => f.leads("low"));
      const ctl = etcdctl(fx.etcd.endpoints, "elect", name, CTL); // cannot step aside: the hand-over waits
      try {
        await waitFor(() => f.queued(2));
        f.start("high", 5);
        await waitFor(async () => (await fx.client.get(`${name}.handover`).string()) !== null);
        f.start("z"); // the queue changes while the hand-over waits
        await waitFor(() => f.queued(4));
        await waitFor(() => f.failures.length > 0);
        const warned = f.logs.filter((l) => / warn| error/.test(l));
        expect(warned.join("\n")).not.toContain("already under way");
        expect(warned.join("\n")).toContain("did not step aside");
        expect(f.failures).toEqual(["low: HANDOVER_FAILED"]);
        await ctl.interrupt(); // it resigns: its key goes
      } finally {
        ctl.kill();
        await f.stopAll();
      }
      expect(f.violations).toEqual([]);
      expect(await keysUnder(fx.client, name)).toEqual([]);
    });

    it("an elector on the user's session removes its priority key when run() ends (the session lives on)", async () => {
      const name = `${fx.etcd.prefix()}priority-own-session`;
      const session = await fx.newSession({ ttl: 10 });
      try {
        for (let run = 0; run < 2; run++) {
          const elector = new LeaderElector({
            session,
            name,
            identity: "p",
            priority: 3,
            logger: false,
            onStartedLeading: () => {},
          });
          const stop = new AbortController();
          const done = elector.run({ signal: stop.signal });
          await waitFor(() => elector.isLeader());
          expect(await fx.client.getAll().prefix(`${name}.priority.`).keys()).toHaveLength(1);
          stop.abort();
          await done;
          expect(await fx.client.getAll().prefix(`${name}.priority.`).keys()).toEqual([]);
          expect(await keysUnder(fx.client, name)).toEqual([]);
        }
      } finally {
        await session.close();
      }
    });

    it("an elector on the user's session stopped while its priority key's put is under way removes the key once the put lands", async () => {
      const name = `${fx.etcd.prefix()}priority-late-put`;
      const session = await fx.newSession({ ttl: 10 });
      try {
        const ctx = contextOf(session);
        const call = ctx.conn.call.bind(ctx.conn);
        let reached: () => void = () => {};
        const atPut = new Promise<void>((resolve) => (reached = resolve));
        let letGo: () => void = () => {};
        const gate = new Promise<void>((resolve) => (letGo = resolve));
        ctx.conn.call = async (service, method, req, o) => {
          if ((o.what ?? "").includes("publish the priority")) {
            reached();
            await gate; // the put reaches etcd only after the stop
          }
          return call(service, method, req, o);
        };
        const elector = new LeaderElector({
          session,
          name,
          identity: "p",
          priority: 3,
          logger: false,
          onStartedLeading: () => {},
        });
        const stop = new AbortController();
        const done = elector.run({ signal: stop.signal });
        await atPut;
        stop.abort();
        letGo();
        await done;
        await waitFor(async () => (await fx.client.getAll().prefix(`${name}.priority.`).keys()).length === 0, {
          description: "the late priority key withdrawn",
        });
        expect(await keysUnder(fx.client, name)).toEqual([]);
      } finally {
        await session.close();
      }
    });

    it("a leader watches the queue only while a higher priority than its own waits (one watch fewer otherwise)", async () => {
      const name = `${fx.etcd.prefix()}costs`;
      const own = fx.etcd.client(); // a watch stream of its own, to count the leader's watches
      const session = await fx.newSession({ ttl: 2, client: own });
      const f = fleet(name);
      const leader = new LeaderElector({
        session,
        name,
        identity: "leader",
        preemptAfterMs: 600_000, // sees the better candidate, but does not hand over within the test
        logger: false,
        onStartedLeading: (term) => new Promise<void>((r) => term.signal.addEventListener("abort", () => r())),
      });
      const stop = new AbortController();
      const done = leader.run({ signal: stop.signal });
      try {
        await waitFor(() => leader.isLeader());
        f.start("plain"); // no priority: nothing to prefer
        await waitFor(() => f.queued(2));
        const base = watchCount(session);
        f.start("better", 5);
        await waitFor(() => f.queued(3));
        await waitFor(() => watchCount(session) === base + 1); // now it watches the queue
        await f.stop("better");
        await waitFor(() => watchCount(session) === base); // and no more
      } finally {
        stop.abort();
        await done;
        await f.stopAll();
        await session.close();
        own.close();
      }
      expect(await keysUnder(fx.client, name)).toEqual([]);
    });

    it("bad options to elector.handOver fail with INVALID_ARGUMENT before the leader check", async () => {
      const name = `${fx.etcd.prefix()}elector-bad`;
      const f = fleet(name, 10);
      const a = f.start("a");
      for (const bad of [{ timeoutMs: -1 }, { timeoutMs: Number.NaN }, { signal: 1 }])
        expect(codeOf(await a.handOver("b", bad as never).catch((e: unknown) => e))).toBe("INVALID_ARGUMENT");
      await f.stopAll();
    });

    it("term.handOver() called inside the work is logged as a hand-over, not as the term ending", async () => {
      const name = `${fx.etcd.prefix()}work-handover`;
      const f = fleet(name, 10);
      let handed: Promise<unknown> | undefined;
      const handing = new Promise<void>((resolve) => {
        f.start("a", undefined, async (term) => {
          await waitFor(() => f.queued(2));
          handed = term.handOver();
          resolve();
          await handed;
        });
      });
      await waitFor(() => f.leads("a"));
      f.start("b");
      await handing;
      await handed;
      await waitFor(() => f.leads("b"));
      await f.stopAll();
      expect(f.logs).toContain("a info: handed the lead over");
      expect(f.logs.filter((l) => / warn| error/.test(l))).toEqual([]);
      expect(f.failures).toEqual([]);
      expect(f.violations).toEqual([]);
    });

    it("a flapping preferred candidate moves the lead at most once per hold-down", async () => {
      const name = `${fx.etcd.prefix()}flapping`;
      const f = fleet(name);
      f.start("low", 1);
      await waitFor(() => f.leads("low"));
      for (let i = 0; i < 2; i++) {
        f.start("high", 5); // one candidate, the same elector each time
        await waitFor(() => f.leads("high"));
        await f.stop("high"); // it goes away; low leads again, and it comes straight back
        await waitFor(() => f.leads("low"));
      }
      await f.stopAll();
      const ids = f.elected.map((e) => e.id);
      expect(ids).toEqual(["low", "high", "low", "high", "low"]);
      for (let i = 1; i < f.elected.length; i += 2)
        expect(f.elected[i]!.at - f.elected[i - 1]!.at).toBeGreaterThanOrEqual(2_000);
      expect(f.violations).toEqual([]);
    });
  });
});
