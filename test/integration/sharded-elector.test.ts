import type { Etcd3 } from "etcd3";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerMetrics } from "../../src/adapters/prometheus.js";
import { Session, ShardedElector, healthHandler, type Term } from "../../src/index.js";
import { contextOf } from "../../src/session/context.js";
import { assignShards } from "../../src/sharding/assignment.js";
import { GROUP_PAGE, observeGroup } from "../../src/sharding/shard-view.js";
import { Worker } from "../support/child.js";
import { etcdctl } from "../support/etcdctl.js";
import { parseSamples, sampleValue } from "../support/prometheus-text.js";
import { keysUnder } from "../support/observe.js";
import type { ShardedWorkerConfig } from "../support/sharded-worker.js";
import { faultsUnavailableReason, startEtcd, TcpProxy, waitFor, type EtcdEnv } from "../support/index.js";

const SHARDED_WORKER = fileURLToPath(new URL("../support/sharded-worker.ts", import.meta.url));
const TTL = 2;

interface Member {
  identity: string;
  elector: ShardedElector;
  stop: AbortController;
  done: Promise<void>;
  client: Etcd3;
  /** Each term's end, by token (performance.now()), the moment its signal aborted. */
  endedAt: Map<bigint, number>;
}

/** Who works on which shard right now, across every in-process member: two at once is a failure. */
class Workbench {
  readonly active = new Map<number, string>();
  readonly overlaps: string[] = [];
  /** Per shard, every term begun: its identity, token and the moment (performance.now()). */
  readonly begun = new Map<number, { identity: string; token: bigint; at: number }[]>();

  /** Per shard, when each term's work returned (performance.now()). */
  readonly returned = new Map<number, { identity: string; at: number }[]>();

  async work(
    identity: string,
    shard: number,
    term: Term,
    endedAt: Map<bigint, number>,
    windDownMs = 200,
  ): Promise<void> {
    const other = this.active.get(shard);
    if (other !== undefined) this.overlaps.push(`shard ${shard}: ${identity} began while ${other} worked`);
    this.active.set(shard, identity);
    const list = this.begun.get(shard) ?? [];
    list.push({ identity, token: term.token, at: performance.now() });
    this.begun.set(shard, list);
    await new Promise((resolve) => term.signal.addEventListener("abort", resolve, { once: true }));
    endedAt.set(term.token, performance.now());
    // Work that takes a moment to wind down: the next owner must still not begin before it returns.
    await new Promise((resolve) => setTimeout(resolve, windDownMs));
    if (this.active.get(shard) === identity) this.active.delete(shard);
    const list2 = this.returned.get(shard) ?? [];
    list2.push({ identity, at: performance.now() });
    this.returned.set(shard, list2);
  }
}

describe("ShardedElector", () => {
  let etcd: EtcdEnv;
  let client: Etcd3;
  const all: Member[] = [];
  const bench = new Workbench();

  function start(
    name: string,
    identity: string,
    shards: number,
    hosts?: string[],
    more: { windDownMs?: number; callTimeoutMs?: number } = {},
  ): Member {
    const endedAt = new Map<bigint, number>();
    const memberClient = etcd.client({}, hosts);
    const stop = new AbortController();
    const elector = new ShardedElector({
      client: memberClient,
      name,
      shards,
      identity,
      ttl: TTL,
      logger: false,
      ...(more.callTimeoutMs !== undefined && { callTimeoutMs: more.callTimeoutMs }),
      onAcquired: (shard, term) => bench.work(identity, shard, term, endedAt, more.windDownMs),
    });
    const m: Member = {
      identity,
      elector,
      stop,
      done: elector.run({ signal: stop.signal }),
      client: memberClient,
      endedAt,
    };
    all.push(m);
    return m;
  }

  async function leave(m: Member): Promise<void> {
    m.stop.abort();
    await m.done;
  }

  /** Shard -> holder identity, as etcd has it (oldest key of each shard's election). */
  async function holders(name: string, shards: number): Promise<(string | undefined)[]> {
    const kvs = await client.getAll().prefix(`${name}/shards/`).sort("Create", "Ascend").strings();
    const out = new Array<string | undefined>(shards).fill(undefined);
    for (const [key, value] of Object.entries(kvs)) {
      const shard = Number(key.slice(`${name}/shards/`.length).split("/")[0]);
      out[shard] ??= value;
    }
    return out;
  }

  /**
   * Waits until the group is at rest with `members`: every shard held by one of them, each owning
   * floor(S/M) or ceil(S/M) and exactly what etcd says it holds, the assignment (computed from these
   * holders) moving nothing more, and no key beyond one per shard and one per member (O(S + M)).
   */
  async function settled(name: string, shards: number, members: Member[], timeoutMs = 15_000): Promise<string[]> {
    const ids = members.map((m) => ({ id: m.identity, identity: m.identity }));
    const fair = [Math.floor(shards / members.length), Math.ceil(shards / members.length)];
    return waitFor(
      async () => {
        const now = await holders(name, shards);
        if (now.some((h) => !members.some((m) => m.identity === h))) return undefined;
        if (JSON.stringify(assignShards(ids, shards, now)) !== JSON.stringify(now)) return undefined;
        for (const m of members) {
          const mine = now.flatMap((id, s) => (id === m.identity ? [s] : []));
          if (!fair.includes(mine.length)) return undefined;
          if (JSON.stringify(m.elector.owned()) !== JSON.stringify(mine)) return undefined;
        }
        if ((await keysUnder(client, name)).length !== shards + members.length) return undefined;
        return now as string[];
      },
      { timeoutMs, description: `${members.length} members settled on ${shards} shards` },
    );
  }

  const moves = (a: readonly (string | undefined)[], b: readonly (string | undefined)[]): number =>
    a.filter((x, s) => x !== b[s]).length;

  /** Terms begun so far per shard (the bench's count): a transition's terms are the difference. */
  const begunCounts = (shards: number): number[] =>
    Array.from({ length: shards }, (_, s) => bench.begun.get(s)?.length ?? 0);
  /** Terms begun since `from`: how many in all, and the shards begun more than once. */
  const begunSince = (from: number[]): { terms: number; twice: number[] } => {
    const now = begunCounts(from.length).map((n, s) => n - from[s]!);
    return { terms: now.reduce((x, y) => x + y, 0), twice: now.flatMap((n, s) => (n > 1 ? [s] : [])) };
  };

  beforeAll(async () => {
    etcd = await startEtcd();
    client = etcd.client();
  });
  afterAll(async () => {
    for (const m of all) m.stop.abort();
    await Promise.all(all.map((m) => m.done.catch(() => {})));
    await etcd.close();
  });

  it("balances 64 shards over 1..5 members, a join moving only the newcomer's share and a leave only the leaver's shards, never two owners at once, and leaves nothing in etcd", async () => {
    const name = `${etcd.prefix()}balance`;
    const S = 64;
    const leasesBefore = (await client.leaseClient.leaseLeases()).leases.length;
    const members: Member[] = [];
    let before: string[] = new Array<string>(S).fill("");
    for (let m = 1; m <= 5; m++) {
      const from = begunCounts(S);
      members.push(start(name, `node-${m}`, S));
      const after = await settled(name, S, members);
      const counts = members.map((x) => x.elector.owned().length);
      for (const c of counts) expect([Math.floor(S / m), Math.ceil(S / m)]).toContain(c);
      if (m > 1) {
        // The minimum: exactly what the newcomer now owns, floor(S/M), taken from the others; and on the
        // way as well: one term begun per moved shard, none moved twice.
        expect(moves(before, after)).toBe(counts.at(-1));
        expect(after.filter((x) => x === `node-${m}`)).toHaveLength(counts.at(-1)!);
        expect(begunSince(from)).toEqual({ terms: counts.at(-1), twice: [] });
      }
      before = after;
    }
    const metrics = members[0]!.elector.metrics();
    expect(metrics).toMatchObject({ shards: S, members: 5, state: "leading" });
    expect(JSON.parse(JSON.stringify(metrics))).toEqual(metrics);
    // owners() is the watch-fed view: it catches up with etcd's holders a moment later.
    const view = before;
    await waitFor(() => JSON.stringify(members[0]!.elector.owners()) === JSON.stringify(view), {
      description: "the first member's view of the owners caught up",
    });
    // Leaves, oldest first: each hands its shards over; the others' stay unless the assignment moves them.
    while (members.length > 1) {
      const leaver = members.shift()!;
      const own = leaver.elector.owned();
      const from = begunCounts(S);
      await leave(leaver);
      expect(leaver.elector.owned()).toEqual([]);
      const after = await settled(name, S, members);
      expect(moves(before, after)).toBe(own.length); // the leaver's shards, and no other
      expect(begunSince(from)).toEqual({ terms: own.length, twice: [] });
      for (const s of own) expect(after[s]).not.toBe(leaver.identity);
      before = after;
    }
    await leave(members[0]!);
    expect(bench.overlaps).toEqual([]);
    expect(bench.active.size).toBe(0);
    expect(await keysUnder(client, name)).toEqual([]);
    expect((await client.leaseClient.leaseLeases()).leases.length).toBe(leasesBefore);
  }, 120_000);

  it("a join and a leave begin one term per moved shard and none twice, whichever member's hand-overs end first", async () => {
    // S = 10 over a, b (5 each), then c joins: one of a, b keeps a ceil quota of 4. Its hand-over ends at
    // once, the other's 1.5 s later, so the holders pass through 4/5 (the order that used to move the ceil
    // quota to the other and a shard twice); then the reverse order, then c leaves.
    const S = 10;
    for (const fastIsCeil of [true, false]) {
      const name = `${etcd.prefix()}order-${fastIsCeil}`;
      const base = assignShards(
        ["a", "b"].map((id) => ({ id, identity: id })),
        S,
      );
      const joined = assignShards(
        ["a", "b", "c"].map((id) => ({ id, identity: id })),
        S,
        base,
      );
      const ceil = joined.filter((o) => o === "a").length === 4 ? "a" : "b";
      const slow = (id: string): { windDownMs: number } => ({ windDownMs: (id === ceil) === fastIsCeil ? 0 : 1500 });
      const a = start(name, "a", S, undefined, slow("a"));
      const b = start(name, "b", S, undefined, slow("b"));
      const before = await settled(name, S, [a, b]);
      let from = begunCounts(S);
      const c = start(name, "c", S);
      const after = await settled(name, S, [a, b, c]);
      expect(moves(before, after)).toBe(3);
      expect(begunSince(from)).toEqual({ terms: 3, twice: [] });
      from = begunCounts(S);
      await leave(c);
      await settled(name, S, [a, b]);
      expect(begunSince(from)).toEqual({ terms: 3, twice: [] });
      await Promise.all([leave(a), leave(b)]);
    }
    expect(bench.overlaps).toEqual([]);
  }, 60_000);

  it("a member killed: its shards are owned again within TTL + etcd's expiry check + a little, and balance is back", async () => {
    const name = `${etcd.prefix()}killed`;
    const S = 64;
    const a = start(name, "a", S);
    const b = start(name, "b", S);
    const config: ShardedWorkerConfig = { hosts: etcd.endpoints, ttl: TTL, name, shards: S, identity: "c" };
    const worker = Worker.startScript(SHARDED_WORKER, config);
    try {
      await waitFor(async () => (await holders(name, S)).filter((h) => h === "c").length >= Math.floor(S / 3), {
        timeoutMs: 20_000,
      });
      const before = await holders(name, S);
      const renewals = worker.events.filter((e) => e.type === "renewed").length;
      await waitFor(() => worker.events.filter((e) => e.type === "renewed").length > renewals, { intervalMs: 2 });
      const killedAt = performance.now();
      await worker.kill();
      const after = await settled(name, S, [a, b], 20_000);
      const took = performance.now() - killedAt;
      // The lease expires TTL after the last keepalive; etcd's lessor checks every 500 ms; then a read
      // and a campaign per shard. 1.5 s is for this machine's scheduling.
      expect(took).toBeLessThan(TTL * 1000 + 500 + 1500);
      // Only c's shards moved.
      expect(moves(before, after)).toBe(before.filter((h) => h === "c").length);
    } finally {
      await worker.kill();
      await Promise.all([leave(a), leave(b)]);
    }
    expect(bench.overlaps).toEqual([]);
  }, 60_000);

  it.skipIf(!!faultsUnavailableReason)(
    "a member cut off: each of its shards' terms ends by its deadline, before the next owner's term begins",
    async () => {
      const name = `${etcd.prefix()}cut`;
      const S = 16;
      const direct = etcd.members[0]!.directClientUrl;
      const proxy = await TcpProxy.start({ targetPort: Number(direct.split(":")[1]) });
      const a = start(name, "a", S);
      const c = start(name, "c", S, [proxy.url]);
      try {
        await settled(name, S, [a, c]);
        const cShards = c.elector.owned();
        expect(cShards.length).toBe(S / 2);
        const cutAt = performance.now();
        proxy.blackhole();
        await settled(name, S, [a], 20_000);
        for (const shard of cShards) {
          const terms = bench.begun.get(shard)!;
          const cTerm = terms.findLast((t) => t.identity === "c")!;
          const next = terms.find((t) => t.identity === "a" && t.at > cTerm.at)!;
          const ended = c.endedAt.get(cTerm.token)!;
          expect(ended).toBeDefined();
          expect(ended).toBeLessThan(next.at);
          expect(next.token).toBeGreaterThan(cTerm.token);
          // c stepped down by its own deadline: within the TTL of the cut.
          expect(ended - cutAt).toBeLessThan(TTL * 1000);
        }
        expect(c.elector.owned()).toEqual([]);
        proxy.open();
        await settled(name, S, [a, c], 20_000); // it comes back and gets its share again
      } finally {
        proxy.open();
        await Promise.all([leave(a), leave(c)]);
        await proxy.close();
      }
      expect(bench.overlaps).toEqual([]);
    },
    60_000,
  );

  it.skipIf(!!faultsUnavailableReason)(
    "an outage of all of etcd: after the heal every shard is owned and balanced again, with no restart",
    async () => {
      const name = `${etcd.prefix()}outage`;
      const S = 16;
      const members = [start(name, "a", S), start(name, "b", S), start(name, "c", S)];
      try {
        await settled(name, S, members);
        const member = etcd.members[0]!;
        await member.kill();
        await waitFor(() => members.every((m) => m.elector.owned().length === 0), { timeoutMs: TTL * 1000 + 2000 });
        await member.restart();
        // Old member keys linger until their leases expire (etcd renews every lease on restart): TTL more.
        await settled(name, S, members, 30_000);
        expect(members.every((m) => m.elector.healthy() && m.elector.ready())).toBe(true);
      } finally {
        await Promise.all(members.map(leave));
      }
      expect(bench.overlaps).toEqual([]);
      expect(await keysUnder(client, name)).toEqual([]);
    },
    90_000,
  );

  it("a stop whose work winds down past the stop's old release point: the session stays until the work returned, and the next owner begins after", async () => {
    const name = `${etcd.prefix()}slow-stop`;
    const S = 4;
    // TTL 2 s, callTimeoutMs 1 s: the session used to be closed (its lease revoked) 1 s after the stop.
    const a = start(name, "a", S, undefined, { windDownMs: 1500, callTimeoutMs: 1000 });
    const b = start(name, "b", S);
    await settled(name, S, [a, b]);
    const moving = a.elector.owned();
    const stoppedAt = performance.now();
    await leave(a);
    expect(performance.now() - stoppedAt).toBeLessThan(Math.max(TTL * 1000, 1000) + 1000 + 500);
    // run() resolved after every moving shard's work returned (the session stayed until then).
    expect(moving.filter((shard) => !bench.returned.get(shard)?.some((r) => r.identity === "a"))).toEqual([]);
    await settled(name, S, [b]);
    for (const shard of moving) {
      const ended = bench.returned.get(shard)!.findLast((r) => r.identity === "a")!;
      const next = bench.begun.get(shard)!.findLast((t) => t.identity === "b")!;
      expect(ended.at - stoppedAt).toBeGreaterThan(1400); // it did wind down
      expect(next.at).toBeGreaterThan(ended.at);
    }
    await leave(b);
    expect(bench.overlaps).toEqual([]);
  });

  it("reads a group larger than one page whole, at one revision, and follows it from there", async () => {
    const name = `${etcd.prefix()}paged`;
    const S = GROUP_PAGE + 500;
    const session = await Session.create(client, { ttl: 10 });
    const hex = BigInt(session.leaseId).toString(16);
    try {
      for (let from = 0; from < S; from += 100) {
        const puts = Array.from({ length: Math.min(100, S - from) }, (_, i) =>
          client
            .put(`${name}/shards/${from + i}/${hex}`)
            .value(`h${from + i}`)
            .lease(session.leaseId),
        );
        await client
          .if(`${name}/x`, "Create", "==", 0)
          .then(...puts)
          .commit();
      }
      await client.put(`${name}/members/${hex}`).value("m").lease(session.leaseId);
      const stop = new AbortController();
      const views = observeGroup(contextOf(session), name, S, stop.signal)[Symbol.asyncIterator]();
      const first = (await views.next()).value!;
      expect(first.members.map((m) => m.identity)).toEqual(["m"]);
      expect(first.holders.every((h, s) => h?.identity === `h${s}`)).toBe(true);
      // A change after the read arrives through the watch.
      await client.delete().key(`${name}/shards/7/${hex}`);
      const next = (await views.next()).value!;
      expect(next.holders[7]).toBeUndefined();
      expect(next.holders[8]?.identity).toBe("h8");
      stop.abort();
      await views.return?.();
    } finally {
      await session.close();
    }
    expect(await keysUnder(client, name)).toEqual([]);
  });

  it("interoperates with etcdctl elect per shard, serves health and Prometheus metrics, and balances onAcquired with onReleased", async () => {
    const name = `${etcd.prefix()}interop`;
    const identity = "sharded-member-a";
    const acquired: number[] = [];
    const released: number[] = [];
    const stop = new AbortController();
    const elector = new ShardedElector({
      client,
      name,
      shards: 4,
      identity,
      ttl: TTL,
      logger: false,
      onAcquired: (shard, term) => {
        acquired.push(shard);
        return new Promise<void>((resolve) => term.signal.addEventListener("abort", () => resolve(), { once: true }));
      },
      onReleased: (shard) => void released.push(shard),
    });
    const registry = new Registry();
    const dispose = registerMetrics(elector, { registry });
    const gauge = async (): Promise<number | undefined> =>
      sampleValue(parseSamples(await registry.metrics()), "etcd_election_leader_status", { name });
    const server = http.createServer(healthHandler(elector));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const status = async (path: string): Promise<number> =>
      (await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`)).status;
    let done: Promise<void> | undefined;
    // etcdctl (Go's concurrency package) leads shard 2's election before the member joins.
    const ctl = etcdctl(etcd.endpoints, "elect", `${name}/shards/2`, "from-etcdctl");
    const lister = etcdctl(etcd.endpoints, "elect", "-l", `${name}/shards/0`);
    try {
      await ctl.printed("from-etcdctl");
      done = elector.run({ signal: stop.signal });
      // Every shard but the one etcdctl leads; shard 2's campaign waits behind etcdctl's key.
      await waitFor(() => JSON.stringify(elector.owned()) === "[0,1,3]", { description: "shards 0, 1, 3 owned" });
      expect((await holders(name, 4))[2]).toBe("from-etcdctl");
      await lister.printed(identity); // etcdctl elect -l names our member as shard 0's leader
      expect([await status("/healthz"), await status("/readyz"), await status("/leader")]).toEqual([200, 200, 200]);
      expect(await gauge()).toBe(1); // the Prometheus adapter: it owns shards
      await ctl.interrupt(); // etcdctl resigns: the member's waiting campaign wins shard 2
      await waitFor(() => JSON.stringify(elector.owned()) === "[0,1,2,3]", { description: "shard 2 owned" });
      stop.abort();
      await done;
      expect([await status("/healthz"), await status("/leader")]).toEqual([503, 503]);
      expect(await gauge()).toBe(0);
      dispose();
      expect(registry.getMetricsAsArray()).toEqual([]);
      expect([...acquired].sort()).toEqual([0, 1, 2, 3]);
      expect([...released].sort()).toEqual([0, 1, 2, 3]);
      expect(await keysUnder(client, name)).toEqual([]);
    } finally {
      stop.abort();
      await done?.catch(() => {});
      lister.kill();
      ctl.kill();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("rejects bad options before touching etcd, and tells nothing before run()", () => {
    const ok = { client, name: "x", shards: 8, identity: "a", onAcquired: () => {} };
    const elector = new ShardedElector(ok);
    expect(typeof healthHandler(elector)).toBe("function");
    expect(elector.ready()).toBe(false);
    expect(elector.owners()).toEqual(new Array(8).fill(undefined));
    for (const bad of [{ shards: 0 }, { shards: 1.5 }, { name: "" }, { ttl: 0 }, { onAcquired: undefined }]) {
      expect(() => new ShardedElector({ ...ok, ...bad } as typeof ok)).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT" }),
      );
    }
  });
});
