/**
 * The sharded elector's rules on a fake clock and a fake group (test/support/fake-sharded.ts): stops,
 * hand-overs and health, deterministic. The same rules against real etcd are in
 * test/integration/sharded-elector.test.ts.
 */
import { metrics } from "@opentelemetry/api";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { instrument } from "../../src/adapters/opentelemetry.js";
import { registerMetrics } from "../../src/adapters/prometheus.js";
import { parseSamples, sampleValue } from "../support/prometheus-text.js";
import type { Logger } from "../../src/common/logger.js";
import { ShardedElector, type ShardedElectorOptions } from "../../src/sharded-elector.js";
import type { Term } from "../../src/term.js";
import { FakeClock } from "../support/fake-elector.js";
import { FakeShardedBackend } from "../support/fake-sharded.js";

function setup(options: Partial<ShardedElectorOptions> = {}, backendOptions: { given?: boolean } = {}) {
  const clock = new FakeClock();
  const backend = new FakeShardedBackend(clock, backendOptions);
  const logged: { level: keyof Logger; message: string }[] = [];
  const logger = Object.fromEntries(
    (["debug", "info", "warn", "error"] as const).map((level) => [
      level,
      (_fields: object, message: string) => void logged.push({ level, message }),
    ]),
  ) as unknown as Logger;
  const stop = new AbortController();
  const elector = ShardedElector.withSeam(
    { client: {} as never, name: "ingest", shards: 2, identity: "node-a", logger, onAcquired: () => {}, ...options },
    { backend, clock },
  );
  let settled: { ok: boolean; at: number; error?: unknown } | undefined;
  const running = elector.run({ signal: stop.signal }).then(
    () => void (settled = { ok: true, at: clock.now() }),
    (error: unknown) => void (settled = { ok: false, at: clock.now(), error }),
  );
  /** Our member as the group shows it, alone. */
  const alone = () => [{ id: backend.session.leaseHex, identity: "node-a" }];
  return { clock, backend, elector, stop, logged, running, settled: () => settled, alone };
}

/** Work that ignores its term's end until the test lets it go (or, with `fail`, until it throws). */
function stubborn(fail = false) {
  const releases: (() => void)[] = [];
  const started: number[] = [];
  const onAcquired = (shard: number, _term: Term): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      started.push(shard);
      releases.push(fail ? () => reject(new Error("late throw")) : resolve);
    });
  return { onAcquired, started, releaseAll: () => releases.forEach((r) => r()) };
}

/**
 * Two shards (TTL 2 s, call timeout 1 s), work that returns only when told, the member alone in its group
 * and campaigning for both; `events` and `released` record what the elector told.
 */
async function twoShardsCampaigning() {
  const work = stubborn();
  const released: number[] = [];
  const fixture = setup({
    ttl: 2,
    callTimeoutMs: 1000,
    shards: 2,
    onAcquired: work.onAcquired,
    onReleased: (shard) => void released.push(shard),
  });
  const { clock, backend, elector, alone } = fixture;
  const events: string[] = [];
  elector.on("acquired", (shard) => events.push(`acquired ${shard}`));
  elector.on("released", (shard) => events.push(`released ${shard}`));
  await clock.until(() => backend.session?.memberships.length === 1, 1000);
  backend.session.show(alone());
  await clock.until(() => backend.campaigns.length === 2, 2000);
  return { ...fixture, work, released, events };
}

describe("ShardedElector on a fake clock", () => {
  it("a stop that comes while a lost membership's hand-overs hang still ends run() within the stop bound", async () => {
    const { clock, backend, elector, stop, settled, alone } = setup({ ttl: 2, callTimeoutMs: 1000, shards: 1 });
    await clock.until(() => backend.sessions.length === 1 && backend.session.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 1, 2000);
    backend.campaigns[0]!.win({ resign: "hangs" }); // etcd takes no writes: the shard's resign never confirms
    await clock.until(() => elector.owned().length === 1, 1000);
    backend.session.memberships[0]!.lose(); // our member key deleted; the session itself is fine
    await clock.advance(100);
    const stoppedAt = clock.now();
    stop.abort();
    await clock.until(() => settled() !== undefined, 2000 + 500);
    expect(settled()!.at - stoppedAt).toBeLessThanOrEqual(2000);
    expect(backend.session.closed).toBe(true); // closing revoked what the resign could not delete
  });

  it("a slow stop does not close the session while a shard's work runs within its TTL: the next owner cannot begin before it ended", async () => {
    const work = stubborn();
    const { clock, backend, elector, stop, settled, alone } = setup({
      ttl: 10,
      shards: 1,
      onAcquired: work.onAcquired,
    });
    await clock.until(() => backend.session?.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 1, 2000);
    const won = backend.campaigns[0]!.win();
    await clock.until(() => work.started.length === 1, 1000);
    stop.abort();
    const stoppedAt = clock.now();
    // The work winds down for 7 s, inside the TTL it is given after its term ended.
    await clock.advance(7000);
    expect(backend.session.closed).toBe(false);
    expect(won.resigned).toBe(false);
    work.releaseAll();
    await clock.until(() => settled() !== undefined, 10_000);
    expect(won.resigned).toBe(true);
    expect(backend.session.closed).toBe(true);
    expect(settled()!.at - stoppedAt).toBeLessThan(7000 + 100);
    expect(elector.owned()).toEqual([]);
  });

  it("work that never returns: run() resolves within max(TTL, callTimeoutMs) + callTimeoutMs of the stop, and nothing changes after it resolved", async () => {
    const work = stubborn();
    const { clock, backend, elector, stop, settled, alone, logged } = setup({
      ttl: 10,
      callTimeoutMs: 2000,
      shards: 1,
      onAcquired: work.onAcquired,
    });
    await clock.until(() => backend.session?.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 1, 2000);
    backend.campaigns[0]!.win();
    await clock.until(() => work.started.length === 1, 1000);
    const events: string[] = [];
    for (const e of ["state", "released", "steppedDown", "failure"] as const) elector.on(e, () => events.push(e));
    stop.abort();
    const stoppedAt = clock.now();
    await clock.until(() => settled() !== undefined, 12_000 + 500);
    expect(settled()!.at - stoppedAt).toBeLessThanOrEqual(12_000);
    expect(elector.metrics().state).toBe("stopped");
    const seen = [...events];
    const logCount = logged.length;
    await clock.advance(60_000);
    work.releaseAll();
    await clock.advance(1000);
    expect(events).toEqual(seen);
    expect(logged.slice(logCount)).toEqual([]);
    expect(elector.metrics().state).toBe("stopped");
    expect(clock.pending).toBe(0);
  });

  it("a second run() does not campaign for a shard whose work from the first run has not returned: one shard's work never overlaps", async () => {
    const work = stubborn();
    const { clock, backend, elector, stop, settled, alone } = setup({
      ttl: 2,
      callTimeoutMs: 1000,
      shards: 1,
      onAcquired: work.onAcquired,
    });
    await clock.until(() => backend.session?.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 1, 2000);
    backend.campaigns[0]!.win();
    await clock.until(() => work.started.length === 1, 1000);
    stop.abort();
    await clock.until(() => settled() !== undefined, 3000 + 100); // the work never returned
    const again = new AbortController();
    const second = elector.run({ signal: again.signal });
    await clock.until(() => backend.sessions.length === 2 && backend.session.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.advance(5000);
    expect(backend.session.campaigns).toHaveLength(0);
    work.releaseAll(); // the first run's work returns: now the shard may be campaigned for
    await clock.until(() => backend.session.campaigns.length === 1, 3000);
    again.abort();
    await clock.until(() => false, 3000).catch(() => {});
    await second;
  });

  it("a stop while joining the group, whose member key's removal never confirms: run() resolves within the stop bound and the session is closed", async () => {
    const clock = new FakeClock();
    const backend = new FakeShardedBackend(clock);
    backend.memberJoin = "hangs";
    const elector = ShardedElector.withSeam(
      {
        client: {} as never,
        name: "g",
        shards: 1,
        identity: "a",
        ttl: 2,
        callTimeoutMs: 1000,
        logger: false,
        onAcquired: () => {},
      },
      { backend, clock },
    );
    const stop = new AbortController();
    let resolvedAt: number | undefined;
    const done = elector.run({ signal: stop.signal }).then(() => void (resolvedAt = clock.now()));
    await clock.until(() => backend.sessions.length === 1, 1000);
    await clock.advance(100);
    const stoppedAt = clock.now();
    stop.abort();
    await clock.until(() => resolvedAt !== undefined, 2000 + 1000 + 500);
    expect(resolvedAt! - stoppedAt).toBeLessThanOrEqual(2000 + 1000);
    expect(backend.session.closed).toBe(true);
    expect(elector.metrics().state).toBe("stopped");
    await done;
  });

  it("a term that ended before the elector acted on its win is not reported: no onAcquired, no acquired, and it campaigns again", async () => {
    const begun: number[] = [];
    const { clock, backend, elector, stop, settled, alone } = setup({
      ttl: 2,
      shards: 1,
      onAcquired: (shard) => void begun.push(shard),
    });
    const events: string[] = [];
    for (const e of ["acquired", "elected", "released", "steppedDown"] as const) elector.on(e, () => events.push(e));
    await clock.until(() => backend.session?.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 1, 2000);
    const won = backend.campaigns[0]!.win();
    won.lose(); // in the same tick, before the elector's continuation runs
    await clock.until(() => backend.campaigns.length === 2, 5000);
    expect(won.resigned).toBe(true);
    expect(begun).toEqual([]);
    expect(events).toEqual([]);
    expect(elector.owned()).toEqual([]);
    stop.abort();
    await clock.until(() => settled() !== undefined, 5000);
  });

  it("a shard whose release had not finished when run() resolved is told released before it resolves: acquired and released balance", async () => {
    const { work, released, events, clock, backend, stop, settled } = await twoShardsCampaigning();
    backend.campaigns[0]!.win();
    backend.campaigns[1]!.win({ resign: "hangs" }); // its release is not confirmed before run() resolves
    await clock.until(() => work.started.length === 2, 1000);
    stop.abort();
    await clock.until(() => settled() !== undefined, 3000 + 100);
    expect(events.filter((e) => e.startsWith("released")).sort()).toEqual(["released 0", "released 1"]);
    expect(released.sort()).toEqual([0, 1]);
    work.releaseAll();
    await clock.advance(3000);
    expect(events).toHaveLength(4); // nothing more after run() resolved
  });

  it("a shard moved away and back while its hand-over still runs, then a stop: released balances acquired", async () => {
    const { work, released, events, clock, backend, elector, stop, settled, alone } = await twoShardsCampaigning();
    backend.campaigns[0]!.win({ resign: "hangs" });
    backend.campaigns[1]!.win({ resign: "hangs" });
    await clock.until(() => work.started.length === 2, 1000);
    const ours = [backend.session.leaseHex, backend.session.leaseHex];
    backend.session.show([...alone(), { id: "zz", identity: "other" }], ours); // one shard moves to the other
    await clock.until(() => elector.metrics().assigned === 1, 1000);
    backend.session.show(alone(), ours); // the other leaves before our hand-over ended: the shard is ours again
    await clock.until(() => elector.metrics().assigned === 2, 1000);
    stop.abort();
    await clock.until(() => settled() !== undefined, 3000 + 100);
    expect(events.filter((e) => e.startsWith("released")).sort()).toEqual(["released 0", "released 1"]);
    expect(released.sort()).toEqual([0, 1]);
    expect(elector.metrics().owned).toBe(0);
  });

  it("work that throws after run() resolved changes nothing: no failure event, no lastError, no count", async () => {
    const work = stubborn(true);
    const { clock, backend, elector, stop, settled, alone, logged } = setup({
      ttl: 2,
      callTimeoutMs: 1000,
      shards: 1,
      onAcquired: work.onAcquired,
    });
    await clock.until(() => backend.session?.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 1, 2000);
    backend.campaigns[0]!.win();
    await clock.until(() => work.started.length === 1, 1000);
    stop.abort();
    await clock.until(() => settled() !== undefined, 3000 + 100); // the work never returned
    const failures: string[] = [];
    elector.on("failure", (error) => failures.push(error.code));
    const before = elector.metrics();
    const logCount = logged.length;
    work.releaseAll(); // it throws now
    await clock.advance(100);
    expect(failures).toEqual([]);
    expect(elector.metrics()).toEqual({ ...before, inStateMs: before.inStateMs + 100 });
    expect(logged.slice(logCount).filter((l) => l.level !== "debug")).toEqual([]);
  });

  it("on a given session, a second run() does not campaign for a shard while the first run's term of it is still resigning (its key holds the name), and its stop is not held up by that", async () => {
    const { clock, backend, elector, stop, settled, alone } = setup(
      { ttl: 2, callTimeoutMs: 1000, shards: 1 },
      { given: true },
    );
    let confirm: () => void = () => {};
    const resigning = new Promise<void>((resolve) => (confirm = resolve));
    await clock.until(() => backend.session.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 1, 2000);
    backend.campaigns[0]!.win({ resign: resigning }); // etcd has not confirmed the key's removal yet
    await clock.until(() => elector.owned().length === 1, 1000);
    stop.abort();
    await clock.until(() => settled() !== undefined, 3000 + 100);
    const again = new AbortController();
    let resolvedAt: number | undefined;
    const second = elector.run({ signal: again.signal }).then(() => void (resolvedAt = clock.now()));
    await clock.until(() => backend.session.memberships.length === 2, 1000);
    backend.session.show(alone());
    await clock.advance(5000);
    expect(backend.campaigns).toHaveLength(1);
    confirm(); // the first run's key is gone: now the shard may be campaigned for
    await clock.until(() => backend.campaigns.length === 2, 3000);
    again.abort();
    const stoppedAt = clock.now();
    await clock.until(() => resolvedAt !== undefined, 3000 + 100);
    expect(resolvedAt! - stoppedAt).toBeLessThanOrEqual(3000);
    await second;
  });

  it("on a given session, a stop while the first run's term still resigns is not held up by it", async () => {
    const { clock, backend, elector, stop, settled, alone, logged } = setup(
      { ttl: 2, callTimeoutMs: 1000, shards: 1 },
      { given: true },
    );
    await clock.until(() => backend.session.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 1, 2000);
    backend.campaigns[0]!.win({ resign: "hangs" });
    await clock.until(() => elector.owned().length === 1, 1000);
    stop.abort();
    await clock.until(() => settled() !== undefined, 3000 + 100);
    const again = new AbortController();
    let resolvedAt: number | undefined;
    const second = elector.run({ signal: again.signal }).then(() => void (resolvedAt = clock.now()));
    await clock.until(() => backend.session.memberships.length === 2, 1000);
    backend.session.show(alone());
    await clock.advance(1000);
    const logCount = logged.length;
    again.abort();
    const stoppedAt = clock.now();
    await clock.until(() => resolvedAt !== undefined, 3000 + 100);
    expect(resolvedAt! - stoppedAt).toBeLessThan(2000); // it owned nothing: no TTL's wait
    expect(logged.slice(logCount).filter((l) => l.level === "warn" || l.level === "error")).toEqual([]);
    await second;
  });

  it("a second run() that owned nothing stops without waiting for the first run's leftovers (work that never returned, a member key's removal that never confirmed)", async () => {
    const work = stubborn();
    const { clock, backend, elector, stop, settled, alone, logged } = setup({
      ttl: 2,
      callTimeoutMs: 1000,
      shards: 1,
      onAcquired: work.onAcquired,
    });
    await clock.until(() => backend.session?.memberships.length === 1, 1000);
    backend.session.memberResign = "hangs";
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 1, 2000);
    backend.campaigns[0]!.win();
    await clock.until(() => work.started.length === 1, 1000);
    stop.abort();
    await clock.until(() => settled() !== undefined, 3000 + 100);
    const again = new AbortController();
    let resolvedAt: number | undefined;
    const second = elector.run({ signal: again.signal }).then(() => void (resolvedAt = clock.now()));
    await clock.until(() => backend.sessions.length === 2 && backend.session.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.advance(1000);
    expect(backend.session.campaigns).toHaveLength(0); // the first run's work still holds the shard back
    const logCount = logged.length;
    again.abort();
    const stoppedAt = clock.now();
    await clock.until(() => resolvedAt !== undefined, 3000 + 100);
    expect(resolvedAt! - stoppedAt).toBeLessThan(2000); // no TTL's wait for work it did not run
    expect(logged.slice(logCount).filter((l) => l.level === "warn" || l.level === "error")).toEqual([]);
    await second;
  });

  it("hands `assigned` listeners a copy: a listener that changes the array changes nothing in the elector", async () => {
    const { clock, backend, elector, stop, settled, alone } = setup({ ttl: 2, shards: 2 });
    const seen: number[][] = [];
    elector.on("assigned", (shards) => {
      seen.push([...shards]);
      (shards as number[]).length = 0;
    });
    await clock.until(() => backend.session?.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => seen.length === 1, 1000);
    expect(seen).toEqual([[0, 1]]);
    expect(elector.metrics().assigned).toBe(2);
    stop.abort();
    await clock.until(() => settled() !== undefined, 5000);
  });

  it("healthy(): false for an owner that has not seen its term end with no keepalive for 2 × TTL, for a member kept out of its group while etcd answers, and once stopped", async () => {
    const { clock, backend, elector, stop, settled, alone } = setup({ ttl: 2, shards: 1 });
    await clock.until(() => backend.session?.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 1, 2000);
    const won = backend.campaigns[0]!.win();
    await clock.until(() => elector.owned().length === 1, 1000);
    expect(elector.healthy()).toBe(true);
    // No keepalive acknowledged for 2 × TTL while it still holds a term it has not seen end: wedged.
    await clock.advance(4001);
    expect(elector.healthy()).toBe(false);
    backend.session.renew();
    expect(elector.healthy()).toBe(true);
    // Its term ends and it steps down: whatever etcd does now, restarting cannot help.
    won.lose();
    await clock.advance(4001);
    expect(elector.healthy()).toBe(true);

    // Its member key deleted and every put of it refused while keepalives go through: out of the group.
    backend.session.joinRefusal = () => new Error("put refused: fake");
    backend.session.memberships[0]!.lose();
    for (let t = 0; t < 4000; t += 500) {
      backend.session.renew();
      await clock.advance(500);
    }
    expect(elector.healthy()).toBe(true); // 2 × TTL not yet passed
    backend.session.renew();
    await clock.advance(600);
    backend.session.renew();
    expect(elector.healthy()).toBe(false);
    backend.session.joinRefusal = undefined;
    await clock.until(() => backend.session.memberships.length === 2, 5000, 50);
    backend.session.renew();
    expect(elector.healthy()).toBe(true);

    stop.abort();
    await clock.until(() => settled() !== undefined, 5000);
    expect(elector.healthy()).toBe(false);
  });

  it("the Prometheus and OpenTelemetry adapters take it, as a summary: leader while it owns a shard, one term per shard term", async () => {
    const { clock, backend, elector, stop, settled, alone } = setup({ ttl: 2, shards: 2 });
    const registry = new Registry();
    const dispose = registerMetrics(elector, { registry });
    const disposeOtel = instrument(elector, { meter: metrics.getMeter("test") });
    await clock.until(() => backend.session?.memberships.length === 1, 1000);
    backend.session.show(alone());
    await clock.until(() => backend.campaigns.length === 2, 2000);
    backend.campaigns[0]!.win();
    backend.campaigns[1]!.win();
    await clock.until(() => elector.owned().length === 2, 1000);
    const samples = parseSamples(await registry.metrics());
    expect(sampleValue(samples, "etcd_election_leader_status", { name: "ingest" })).toBe(1);
    expect(sampleValue(samples, "etcd_election_terms_total", { name: "ingest" })).toBe(2);
    expect(sampleValue(samples, "etcd_election_state", { name: "ingest", state: "leading" })).toBe(1);
    dispose();
    disposeOtel();
    expect(elector.listenerCount("elected")).toBe(0);
    stop.abort();
    await clock.until(() => settled() !== undefined, 5000);
  });

  it("refuses a name whose derived names (<name>/shards/<n>, <name>/members) would be too long, with INVALID_ARGUMENT before touching etcd", () => {
    const clock = new FakeClock();
    const backend = new FakeShardedBackend(clock);
    const make = (name: string, shards: number) =>
      ShardedElector.withSeam(
        { client: {} as never, name, shards, identity: "a", logger: false, onAcquired: () => {} },
        { backend, clock },
      );
    expect(() => make("g".repeat(1024 - "/shards/9".length), 10)).not.toThrow();
    expect(() => make("g".repeat(1024 - "/shards/9".length), 11)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringContaining("/shards/10") as unknown }),
    );
    expect(() => make("g".repeat(1020), 1)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    // More shards than measured to work (MAX_SHARDS): refused too.
    expect(() => make("g", 2000)).not.toThrow();
    expect(() => make("g", 2001)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(backend.sessions).toEqual([]);
  });

  it("withSeam puts the fake in place for that one elector only, even when its options are refused", async () => {
    const clock = new FakeClock();
    const backend = new FakeShardedBackend(clock);
    const options = {
      client: {} as never,
      name: "g",
      shards: 4,
      identity: "a",
      logger: false as const,
      onAcquired: () => {},
    };
    const invalid = expect.objectContaining({ code: "INVALID_ARGUMENT" });
    expect(() => ShardedElector.withSeam({ ...options, shards: 0 }, { backend, clock })).toThrow(invalid);
    // Without the seam, `{}` is no etcd3 client: refused, so the seam did not outlive its call.
    const noClient = expect.objectContaining({ code: "INVALID_CLIENT" });
    expect(() => new ShardedElector(options)).toThrow(noClient);
    const elector = ShardedElector.withSeam(options, { backend, clock });
    expect(() => new ShardedElector(options)).toThrow(noClient);
    // The elector made on the seam runs on it: its session is the fake's.
    const stop = new AbortController();
    const done = elector.run({ signal: stop.signal });
    await clock.until(() => backend.sessions.length === 1 && backend.session.memberships.length === 1, 1000);
    stop.abort();
    await clock.advance(10);
    await done;
    expect(backend.session.closed).toBe(true);
  });
});
