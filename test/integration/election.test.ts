import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Election, Mutex, Session, type Leader, type Term } from "../../src/index.js";
import { etcdctl } from "../support/etcdctl.js";
import { collect, keysUnder } from "../support/observe.js";
import { handledRpcs, metricsAt } from "../support/metrics.js";
import { pausedHolderIsReplaced } from "../support/paused-holder.js";
import { keyOf, leaseHex, watchCount } from "../support/internals.js";
import { aborted, faultsUnavailableReason, startCluster, useEtcd, waitFor, type EtcdEnv } from "../support/index.js";

const ABANDONED_OBSERVER = fileURLToPath(new URL("../support/abandoned-observer.ts", import.meta.url));

/** The abandoned-observer child on `endpoints`: its output so far, and when it exited (Date.now()). */
function startObserver(endpoints: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, ["--import", "tsx", ABANDONED_OBSERVER], {
    env: { ...process.env, ENDPOINTS: endpoints.join(","), ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number>((resolve) => child.once("exit", () => resolve(Date.now())));
  return { child, output: () => out, exited };
}

describe("Election on a single node", () => {
  const fx = useEtcd();
  const newSession = (ttl = 10): Promise<Session> => fx.newSession({ ttl });

  it("5 candidates campaigning at once win in the order of their create revisions, with increasing tokens", async () => {
    const name = `${fx.etcd.prefix()}five`;
    const elections = await Promise.all([0, 1, 2, 3, 4].map(async () => new Election(await newSession(), name)));
    const order: Term[] = [];
    const campaigns = elections.map((e, i) => e.campaign(`c${i}`).then((t) => (order.push(t), t)));
    // Everyone is queued while the first winner holds.
    const queued = await waitFor(async () => {
      const res = await fx.client.getAll().prefix(`${name}/`).sort("Create", "Ascend").exec();
      return res.kvs.length === 5 ? res.kvs : undefined;
    });
    for (let i = 0; i < 5; i++) {
      await waitFor(() => order.length === i + 1);
      const term = order[i]!;
      expect(term.token).toBe(BigInt(queued[i]!.create_revision));
      expect(term.key).toBe(queued[i]!.key.toString());
      expect((await elections[0]!.leader())?.key).toBe(term.key);
      expect(order.length).toBe(i + 1); // nobody else won meanwhile
      if (i > 0) expect(term.token).toBeGreaterThan(order[i - 1]!.token);
      await term.resign();
    }
    await Promise.all(campaigns);
    expect(await keysUnder(fx.client, name)).toEqual([]);
  });

  it("a campaign waits behind the candidate etcd queued just before it, whatever the order of the calls: it says so at debug after each TTL/2 re-read, and leads once that one resigns", async () => {
    const name = `${fx.etcd.prefix()}behind`;
    const logged: { message: string; fields: { nearest?: string; woken?: string } }[] = [];
    const log = (fields: object, message: string): void => void logged.push({ message, fields });
    // TTL 4: the waiter re-reads every 2 s.
    const sb = await Session.create(fx.client, { ttl: 4, logger: { debug: log, info: log, warn: log, error: log } });
    try {
      const first = await new Election(await newSession(30), name).campaign("a");
      // c joins before b, as two campaigns called at once may under load: etcd's order, not the calls', counts.
      const third = new Election(await newSession(30), name).campaign("c");
      third.catch(() => undefined); // awaited below; a failure before must not leave it unhandled
      const [, cKey] = await waitFor(async () => {
        const keys = await keysUnder(fx.client, name);
        return keys.length === 2 && keys;
      });
      let won = false;
      const second = new Election(sb, name).campaign("b").then((t) => ((won = true), t));
      second.catch(() => undefined);
      const waits = (): typeof logged => logged.filter((l) => l.message === "waiting for keys ahead to go");
      await waitFor(() => waits().length === 1);
      await first.resign();
      const cTerm = await third;
      expect(cTerm.key).toBe(cKey);
      // a's delete does not wake b (it waits on c's key alone); its TTL/2 re-reads find c still ahead.
      await waitFor(() => waits().length >= 3, { timeoutMs: 15_000 });
      expect(won).toBe(false);
      expect(waits().map((l) => l.fields.nearest)).toEqual(waits().map(() => cKey));
      const wakes = logged.filter((l) => l.message === "reading the queue again").map((l) => l.fields.woken);
      expect(wakes.length).toBeGreaterThanOrEqual(2);
      expect(new Set(wakes)).toEqual(new Set(["re-read due"]));
      await cTerm.resign();
      const bTerm = await second;
      expect(bTerm.token).toBeGreaterThan(cTerm.token);
      await bTerm.resign();
    } finally {
      await sb.close();
    }
  });

  it("resign hands over to the next in line, and the old term's signal aborts", async () => {
    const name = `${fx.etcd.prefix()}resign`;
    const a = new Election(await newSession(), name);
    const b = new Election(await newSession(), name);
    const first = await a.campaign("a");
    const second = b.campaign("b");
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
    await first.resign();
    await first.resign(); // idempotent
    expect(first.signal.aborted).toBe(true);
    const next = await second;
    expect(next.token).toBeGreaterThan(first.token);
    expect((await a.leader())?.value.toString()).toBe("b");
    await next.resign();
  });

  it("leader's lease revoked by another fx.client: the next candidate takes over and the old term aborts", async () => {
    const name = `${fx.etcd.prefix()}revoked`;
    const s1 = await newSession();
    const first = await new Election(s1, name).campaign("a");
    const second = new Election(await newSession(), name).campaign("b");
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
    await fx.etcd.client().leaseClient.leaseRevoke({ ID: s1.leaseId });
    const next = await second;
    await aborted(first.signal, 10_000);
    expect(first.signal.reason).toMatchObject({ code: "NOT_LEADER" });
    // A stale term's guarded write is refused, by etcd or before it is sent: never silent.
    await expect(
      first
        .txn()
        .then(fx.client.put(`${name}-data`).value("stale"))
        .commit(),
    ).rejects.toMatchObject({ code: "NOT_LEADER" });
    await expect(first.proclaim("again")).rejects.toMatchObject({ code: "NOT_LEADER" });
    expect(await fx.client.get(`${name}-data`).string()).toBeNull();
    expect(next.token).toBeGreaterThan(first.token);
    await next.resign();
  });

  it("a guarded write whose key was deleted behind its back is refused by etcd itself", async () => {
    const name = `${fx.etcd.prefix()}guard`;
    const term = await new Election(await newSession(), name).campaign("a");
    const ok = await term
      .txn()
      .then(fx.client.put(`${name}-data`).value("1"))
      .commit();
    expect(ok.succeeded).toBe(true);
    // Another fx.client deletes the key and we commit at once, before our watch can tell us.
    await fx.client.delete().key(term.key);
    const stale = term
      .txn()
      .then(fx.client.put(`${name}-data`).value("2"))
      .else(fx.client.put(`${name}-else`).value("stale"));
    await expect(stale.commit()).rejects.toMatchObject({ code: "NOT_LEADER" });
    expect(await fx.client.get(`${name}-data`).string()).toBe("1");
    expect(await fx.client.get(`${name}-else`).string()).toBeNull(); // not even the caller's .else() ran
    expect(term.signal.aborted).toBe(true);
  });

  it("a caller's own failed comparison resolves { succeeded: false } while the term holds", async () => {
    const name = `${fx.etcd.prefix()}usercmp`;
    const term = await new Election(await newSession(), name).campaign("a");
    const res = await term
      .txn()
      .and(`${name}-missing`, "Version", ">", 0)
      .then(fx.client.put(`${name}-x`).value("1"))
      .else(fx.client.put(`${name}-else`).value("ran"))
      .commit();
    expect(res.succeeded).toBe(false);
    expect(await fx.client.get(`${name}-x`).string()).toBeNull();
    expect(await fx.client.get(`${name}-else`).string()).toBe("ran");
    expect(term.signal.aborted).toBe(false);
    await term.resign();
  });

  it("a leader in a child process paused past its deadline is replaced; after resuming its term aborts and its writes are refused", async () => {
    const name = `${fx.etcd.prefix()}paused`;
    const takeOver = async () => new Election(await newSession(), name).campaign("parent");
    await pausedHolderIsReplaced({
      etcd: fx.etcd,
      client: fx.client,
      name,
      role: "campaign",
      code: "NOT_LEADER",
      takeOver,
    });
  });

  it("rule 3: a waiter whose key was deleted behind its back does not win when its turn comes", async () => {
    const name = `${fx.etcd.prefix()}rule3`;
    const leader = await new Election(await newSession(30), name).campaign("a");
    const waiter = await newSession(30);
    const pending = new Election(waiter, name).campaign("b");
    pending.catch(() => {}); // it is meant to reject: judged below
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
    await fx.client.delete().key(keyOf(waiter, name)); // its session lives on; only its key is gone
    await leader.resign();
    await expect(pending).rejects.toMatchObject({ code: "NOT_LEADER" });
    expect(await new Election(waiter, name).leader()).toBeUndefined();
    expect(await keysUnder(fx.client, name)).toEqual([]);
  });

  it("a term's signal aborts at once when its key is deleted, or deleted and created anew by someone else", async () => {
    const name = `${fx.etcd.prefix()}watched`;
    const session = await newSession(30); // the periodic re-read is 15 s away: only the watch can tell
    const term = await new Election(session, name).campaign("a");
    await fx.client.delete().key(term.key);
    await aborted(term.signal, 3000);
    expect(term.signal.reason).toMatchObject({ code: "NOT_LEADER" });

    const again = await new Election(session, name).campaign("b");
    await fx.client.delete().key(again.key);
    await fx.client.put(again.key).value("someone else").exec(); // same key, new create revision
    await aborted(again.signal, 3000);
    await expect(
      again
        .txn()
        .then(fx.client.put(`${name}-data`).value("x"))
        .commit(),
    ).rejects.toMatchObject({ code: "NOT_LEADER" });
    expect(await fx.client.get(`${name}-data`).string()).toBeNull();
    await fx.client.delete().key(again.key);
  });

  it("proclaim keeps the key on the session's lease, and etcd itself refuses a stale proclaim", async () => {
    const name = `${fx.etcd.prefix()}proclaim`;
    const session = await newSession(30);
    const term = await new Election(session, name).campaign("a");
    await term.proclaim("b");
    const kv = (await fx.client.get(term.key).exec()).kvs[0]!;
    expect(kv.value.toString()).toBe("b");
    expect(kv.lease).toBe(session.leaseId);
    expect(term.value.toString()).toBe("b");
    await fx.client.delete().key(term.key);
    await expect(term.proclaim("c")).rejects.toMatchObject({ code: "NOT_LEADER" }); // sent before the watch tells us
    expect(await fx.client.get(term.key).string()).toBeNull(); // not put back
  });

  it("a second campaign through one session while the first is still waiting fails clearly", async () => {
    const name = `${fx.etcd.prefix()}pending-twice`;
    const leader = await new Election(await newSession(), name).campaign("a");
    const session = await newSession();
    const pending = new Election(session, name).campaign("b");
    await expect(new Election(session, name).campaign("c")).rejects.toMatchObject({ code: "NAME_CONFLICT" });
    await leader.resign();
    await (await pending).resign();
  });

  it("abort of a waiting campaign rejects with the reason and leaves no key", async () => {
    const name = `${fx.etcd.prefix()}abort`;
    const leader = await new Election(await newSession(), name).campaign("a");
    const s2 = await newSession();
    const ac = new AbortController();
    const pending = new Election(s2, name).campaign("b", { signal: ac.signal });
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
    const reason = new Error("give up");
    ac.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(await keysUnder(fx.client, name)).toEqual([leader.key]);
    // Nothing of the aborted campaign comes back when the leader goes away: nobody leads.
    await leader.resign();
    expect(await keysUnder(fx.client, name)).toEqual([]);
    // And the session can campaign again on the name.
    const again = await new Election(s2, name).campaign("b2");
    await again.resign();
  });

  it("session loss while waiting rejects the campaign and removes its key", async () => {
    const name = `${fx.etcd.prefix()}loss-waiting`;
    const leader = await new Election(await newSession(), name).campaign("a");
    const s2 = await newSession();
    const pending = new Election(s2, name).campaign("b");
    pending.catch(() => {}); // it is meant to reject: judged below
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
    await fx.etcd.client().leaseClient.leaseRevoke({ ID: s2.leaseId });
    await expect(pending).rejects.toMatchObject({ code: expect.stringMatching(/SESSION_LOST|NOT_LEADER/) });
    expect(await keysUnder(fx.client, name)).toEqual([leader.key]);
    await leader.resign();
  });

  it("rule 6: a second campaign on one name through one session, or a Mutex of the same name, fails clearly", async () => {
    const name = `${fx.etcd.prefix()}twice`;
    const session = await newSession();
    const term = await new Election(session, name).campaign("a");
    await expect(new Election(session, name).campaign("b")).rejects.toMatchObject({ code: "NAME_CONFLICT" });
    await expect(new Mutex(session, name).lock()).rejects.toMatchObject({ code: "NAME_CONFLICT" });
    await term.resign();
    const again = await new Election(session, name).campaign("c");
    expect(again.token).toBeGreaterThan(term.token);
    await again.resign();
  });

  it("proclaim is seen by observers; observe starts with the current leader and never repeats or goes back", async () => {
    const name = `${fx.etcd.prefix()}observe`;
    const observerSession = await Session.create(fx.etcd.client(), { ttl: 10 });
    const observer = new Election(observerSession, name);
    const ac = new AbortController();
    const seen = collect(observer.observe({ signal: ac.signal }));
    await waitFor(() => seen.items.length === 1);
    expect(seen.items[0]).toBeUndefined();
    const a = await new Election(await newSession(), name).campaign("a");
    await waitFor(() => seen.items.at(-1)?.value.toString() === "a");
    await a.proclaim("a2");
    await waitFor(() => seen.items.at(-1)?.value.toString() === "a2");
    expect(seen.items.at(-1)?.token).toBe(a.token);
    const bPending = new Election(await newSession(), name).campaign("b");
    await a.resign();
    const b = await bPending;
    await waitFor(() => seen.items.at(-1)?.token === b.token);
    expect((await observer.leader())?.leaseId).toBe(seen.items.at(-1)?.leaseId);
    expect(watchCount(observerSession)).toBe(1);
    ac.abort();
    await expect(seen.done).rejects.toThrow();
    assertLatestState(seen.items);
    await waitFor(() => watchCount(observerSession) === 0, { description: "the observer's watch removed on abort" });
    // Leaving the loop removes it too.
    for await (const leader of observer.observe()) {
      expect(leader?.token).toBe(b.token);
      break;
    }
    await waitFor(() => watchCount(observerSession) === 0, { description: "the observer's watch removed on break" });
    await b.resign();
    await observer.session.close();
  });

  it("observe ends with its session, throwing the session's reason", async () => {
    const session = await Session.create(fx.client, { ttl: 10 });
    const seen = collect(new Election(session, `${fx.etcd.prefix()}observe-ends`).observe());
    await waitFor(() => seen.items.length === 1);
    await session.close();
    await expect(seen.done).rejects.toMatchObject({ code: "SESSION_CLOSED" });
  });

  it("an observe() stream left at its yield loses its watch when its session closes, and the process still exits by itself", async () => {
    const name = `${fx.etcd.prefix()}observe-abandoned`;
    const watchers = async (): Promise<number> =>
      (await metricsAt(fx.etcd.endpoints[0]!)).get("etcd_debugging_mvcc_watcher_total") ?? Number.NaN;
    const before = await watchers();
    const { child, output, exited } = startObserver(fx.etcd.endpoints, { NAME: name });
    try {
      await waitFor(() => output().includes("observing"), {
        timeoutMs: 20_000,
        description: `observing (${output()})`,
      });
      await waitFor(async () => (await watchers()) === before + 1, { description: "the observer's watch in etcd" });
      // The client's other session keeps the shared watch stream open: only the observer's watch may go.
      child.stdin.write("close-observer\n");
      await waitFor(() => output().includes("observer-closed"), {
        description: `observer's session closed (${output()})`,
      });
      await waitFor(async () => (await watchers()) === before, {
        timeoutMs: 5000,
        description: "etcd's watcher count back to what it was",
      });
      child.stdin.write("close-all\n");
      await waitFor(() => output().includes("closed\n"), { description: `everything closed (${output()})` });
      const closedAt = Date.now();
      const exitAt = await Promise.race([exited, sleep(5000).then(() => Number.NaN)]);
      expect(exitAt - closedAt, `the process exits by itself (${output()})`).toBeLessThan(2000);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("an observe() stream left at its yield ends when only its client is closed, and the process exits by itself", async () => {
    const ttl = 3;
    const { child, output, exited } = startObserver(fx.etcd.endpoints, {
      NAME: `${fx.etcd.prefix()}observe-client-closed`,
      TTL: String(ttl),
    });
    try {
      await waitFor(() => output().includes("observing"), {
        timeoutMs: 20_000,
        description: `observing (${output()})`,
      });
      child.stdin.write("close-client\n");
      await waitFor(() => output().includes("client-closed"), { description: `client closed (${output()})` });
      const closedAt = Date.now();
      // The sessions notice the closed client at their next keepalive (TTL/3); the observe ends then.
      const bound = ttl * 1000 + 2000;
      const exitAt = await Promise.race([exited, sleep(bound + 1000).then(() => Number.NaN)]);
      expect(exitAt - closedAt, `the process exits by itself within ${bound} ms (${output()})`).toBeLessThan(bound);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("observe ends with CLIENT_CLOSED once its client is closed, though its session was never closed", async () => {
    const client = fx.etcd.client();
    const session = await Session.create(client, { ttl: 3 });
    const seen = collect(new Election(session, `${fx.etcd.prefix()}observe-client-gone`).observe());
    await waitFor(() => seen.items.length === 1);
    client.close();
    await expect(seen.done).rejects.toMatchObject({ code: "CLIENT_CLOSED" });
    expect(watchCount(session)).toBe(0);
  });

  it("waiters on a namespaced client are woken by their watch, not only by the periodic re-read", async () => {
    const nsClient = fx.client.namespace(fx.etcd.prefix("ns-wait"));
    const [s1, s2] = [
      await fx.newSession({ client: nsClient, ttl: 30 }),
      await fx.newSession({ client: nsClient, ttl: 30 }),
    ];
    const first = await new Election(s1, "jobs").campaign("a");
    const second = new Election(s2, "jobs").campaign("b");
    await waitFor(async () => (await keysUnder(fx.client, `${nsClient.prefix.toString()}jobs`)).length === 2);
    await first.resign();
    // The periodic re-read comes only every 15 s (TTL/2); the watch must wake the waiter long before.
    let won = false;
    void second.then(() => (won = true));
    await waitFor(() => won, { timeoutMs: 5000 });
    await (await second).resign();
  });

  it("works through a namespaced client, with keys under the namespace", async () => {
    const ns = fx.etcd.prefix("ns");
    const nsClient = fx.client.namespace(ns);
    const session = await fx.newSession({ client: nsClient });
    const term = await new Election(session, "jobs").campaign("x");
    expect(term.key).toBe(`jobs/${leaseHex(session)}`);
    expect(await fx.client.get(`${ns}${term.key}`).string()).toBe("x");
    expect((await new Election(session, "jobs").leader())?.key).toBe(term.key);
    await term.txn().then(nsClient.put("data").value("1")).commit();
    expect(await fx.client.get(`${ns}data`).string()).toBe("1");
    await term.resign();
    expect(await keysUnder(fx.client, `${ns}jobs`)).toEqual([]);
  });

  it("closing the sessions leaves no key or lease behind", async () => {
    const name = `${fx.etcd.prefix()}cleanup`;
    const s1 = await Session.create(fx.client, { ttl: 10 });
    const s2 = await Session.create(fx.client, { ttl: 10 });
    await new Election(s1, name).campaign("a");
    const ac = new AbortController();
    const pending = new Election(s2, name).campaign("b", { signal: ac.signal });
    const observed = collect(new Election(s2, name).observe({ signal: ac.signal }));
    await waitFor(async () => (await keysUnder(fx.client, name)).length === 2 && observed.items.length > 0);
    ac.abort();
    await expect(pending).rejects.toThrow();
    await expect(observed.done).rejects.toThrow();
    await s1.close();
    await s2.close();
    expect(await keysUnder(fx.client, name)).toEqual([]);
    for (const s of [s1, s2])
      expect(Number((await fx.client.leaseClient.leaseTimeToLive({ ID: s.leaseId })).TTL)).toBe(-1);
  });

  describe("Election interop with etcdctl elect", () => {
    it("an etcdctl leader makes us wait, our observer sees its value, and we win when it exits on SIGINT", async () => {
      const name = `${fx.etcd.prefix()}ctl-leads`;
      const ctl = etcdctl(fx.etcd.endpoints, "elect", name, "from-etcdctl");
      const session = await Session.create(fx.client, { ttl: 10 });
      try {
        await ctl.printed("from-etcdctl");
        const election = new Election(session, name);
        const ac = new AbortController();
        const seen = collect(election.observe({ signal: ac.signal }));
        await waitFor(() => seen.items.at(-1)?.value.toString() === "from-etcdctl");
        let won = false;
        const campaign = election.campaign("ours").then((t) => ((won = true), t));
        await waitFor(async () => (await keysUnder(fx.client, name)).length === 2);
        expect(won).toBe(false);
        await ctl.interrupt();
        const term = await campaign;
        await waitFor(() => seen.items.at(-1)?.token === term.token);
        ac.abort();
        await seen.done.catch(() => {});
        await term.resign();
      } finally {
        ctl.kill();
        await session.close();
      }
    });

    it("etcdctl elect -l sees our leader's value", async () => {
      const name = `${fx.etcd.prefix()}we-lead`;
      const session = await Session.create(fx.client, { ttl: 10 });
      const term = await new Election(session, name).campaign("ours-value");
      const ctl = etcdctl(fx.etcd.endpoints, "elect", "-l", name);
      try {
        await ctl.printed("ours-value");
        await term.proclaim("proclaimed");
        await ctl.printed("proclaimed");
      } finally {
        ctl.kill();
        await session.close();
      }
    });
  });
});

describe.skipIf(!!faultsUnavailableReason)("Election observe on a 3-member cluster", () => {
  let etcd: EtcdEnv;

  beforeAll(async () => {
    etcd = await startCluster(3);
  });
  afterAll(() => etcd?.close());

  it("observe through a member isolated from its peers still sees leader changes (re-read elsewhere)", async () => {
    const name = `${etcd.prefix()}observe-isolated`;
    const [isolated, other] = [etcd.members[1]!, etcd.members[2]!];
    const observerClient = etcd.client({}, [isolated.clientUrl, other.clientUrl]);
    const writer = etcd.client({}, [etcd.members[0]!.clientUrl, other.clientUrl]);
    const s1 = await Session.create(writer, { ttl: 10 });
    // Pin the observer's watch stream to the member we will isolate: the other is cut while it starts.
    other.clientProxy.cut();
    const observerSession = await Session.create(observerClient, { ttl: 4 });
    const ac = new AbortController();
    const seen = collect(new Election(observerSession, name).observe({ signal: ac.signal }));
    try {
      await waitFor(() => seen.items.length === 1);
      other.clientProxy.open();
      const a = await new Election(s1, name).campaign("a");
      await waitFor(() => seen.items.at(-1)?.value.toString() === "a");
      await isolated.isolate();
      await a.proclaim("a-while-isolated");
      await waitFor(() => seen.items.at(-1)?.value.toString() === "a-while-isolated", { timeoutMs: 30_000 });
      assertLatestState(seen.items);
      await a.resign();
    } finally {
      other.clientProxy.open();
      await isolated.heal();
      ac.abort();
      await seen.done.catch(() => {});
      await Promise.all([observerSession.close(), s1.close()]);
      await etcd.waitHealthy();
    }
  });

  it("observe judges a change heard while its read is in flight against that read's leader, not the one before", async () => {
    const name = `${etcd.prefix()}observe-in-flight`;
    const [watchMember, readMember] = [etcd.members[1]!, etcd.members[2]!];
    const writer = etcd.client({}, [etcd.members[0]!.clientUrl]);
    const [s1, s2] = [await Session.create(writer, { ttl: 10 }), await Session.create(writer, { ttl: 10 })];
    // A long TTL: its periodic re-read (every 30 s) is too slow to pass this test. Each read attempt
    // gets 3 s (half the call deadline).
    const observerClient = etcd.client({}, [watchMember.clientUrl, readMember.clientUrl]);
    readMember.clientProxy.cut(); // the observer's grant, first read and watch all go to watchMember
    const observerSession = await Session.create(observerClient, { ttl: 60, callTimeoutMs: 6000 });
    const observer = new Election(observerSession, name);
    const ac = new AbortController();
    const seen = collect(observer.observe({ signal: ac.signal }));
    try {
      const a = await new Election(s1, name).campaign("a");
      await waitFor(() => seen.items.at(-1)?.value.toString() === "a");
      readMember.clientProxy.open();
      // Move the observer's reads (not its watch stream) to readMember: a read that times out on
      // watchMember fails over, and readMember is preferred from then on.
      watchMember.clientProxy.delay(2000);
      expect((await observer.leader())?.key).toBe(a.key);
      watchMember.clientProxy.delay(0);
      const bPending = new Election(s2, name).campaign("b");
      await waitFor(async () => (await keysUnder(writer, name)).length === 2);
      // Reads now take a second each way; the watch is quick.
      readMember.clientProxy.delay(1000);
      const served = await handledRpcs(readMember, "Range");
      await a.resign(); // the observer hears it and reads: b leads at that read's revision
      const b = await bPending;
      await waitFor(async () => (await handledRpcs(readMember, "Range")) > served, { intervalMs: 10 });
      // The read was served; its answer is on its way back when b leaves. The watch tells the observer
      // before the answer arrives: b's delete must not be judged against a (the leader before the read).
      await b.resign();
      await waitFor(() => seen.items.length > 0 && seen.items.at(-1) === undefined, {
        timeoutMs: 10_000,
        description: "the observer sees nobody leads, long before its periodic re-read",
      });
      assertLatestState(seen.items);
    } finally {
      readMember.clientProxy.delay(0);
      watchMember.clientProxy.delay(0);
      readMember.clientProxy.open();
      ac.abort();
      await seen.done.catch(() => {});
      await Promise.all([observerSession.close(), s1.close(), s2.close()]);
    }
  });

  it("observe survives a restart of the member serving it, then a compaction past its revision", async () => {
    const name = `${etcd.prefix()}observe-faults`;
    // The observer talks to one member only, so restarting that member really cuts its watch.
    const member = etcd.members[0]!;
    const observerClient = etcd.client({}, [member.clientUrl]);
    // A long TTL: its periodic re-read (every 30 s) is too slow to pass this test; the watch must.
    const observerSession = await Session.create(observerClient, { ttl: 60 });
    const writer = etcd.client(
      {},
      etcd.members.slice(1).map((m) => m.clientUrl),
    );
    const s1 = await Session.create(writer, { ttl: 10 });
    const s2 = await Session.create(writer, { ttl: 10 });
    const ac = new AbortController();
    const seen = collect(new Election(observerSession, name).observe({ signal: ac.signal }));
    try {
      const a = await new Election(s1, name).campaign("a");
      await waitFor(() => seen.items.at(-1)?.value.toString() === "a");

      await member.kill();
      await a.proclaim("a-while-down");
      await member.restart();
      await waitFor(() => seen.items.at(-1)?.value.toString() === "a-while-down", { timeoutMs: 20_000 });

      // Cut the observer off, change leaders, and compact past everything it saw.
      member.clientProxy.cut();
      const bPending = new Election(s2, name).campaign("b");
      await a.resign();
      const b = await bPending;
      await b.proclaim("b2");
      await etcd.compact();
      member.clientProxy.open();
      await waitFor(() => seen.items.at(-1)?.value.toString() === "b2", { timeoutMs: 20_000 });
      expect(seen.items.at(-1)?.token).toBe(b.token);
      assertLatestState(seen.items);
      await b.resign();
    } finally {
      member.clientProxy.open();
      ac.abort();
      await seen.done.catch(() => {});
      await Promise.all([observerSession.close(), s1.close(), s2.close()]);
    }
  });
});

/** The stream's promises: never two equal items in a row, and a leader's token never decreases. */
function assertLatestState(items: (Leader | undefined)[]): void {
  let lastToken = -1n;
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    const prev = items[i - 1];
    if (i > 0) {
      const same = item === prev || (!!item && !!prev && item.token === prev.token && item.value.equals(prev.value));
      expect(same, `item ${i} repeats item ${i - 1}`).toBe(false);
    }
    if (item) {
      expect(item.token >= lastToken, `token went back at item ${i}`).toBe(true);
      lastToken = item.token;
    }
  }
}
