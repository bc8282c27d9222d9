/**
 * The elector's rules on a fake clock and a fake campaign/observe side: fast and deterministic. The same
 * rules against real etcd on the wall clock stay in test/integration/leader-elector.test.ts.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Logger } from "../../src/common/logger.js";
import { Backoff, campaignBackoff } from "../../src/common/backoff.js";
import { LeaderElector, type LeaderElectorOptions } from "../../src/leader-elector.js";
import {
  AuthFailedError,
  EtcdUnavailableError,
  NameConflictError,
  PermissionDeniedError,
  type ElectionErrorCode,
} from "../../src/errors.js";
import type { Term } from "../../src/term.js";
import { FakeBackend, FakeClock, FakeSession, flush } from "../support/fake-elector.js";

interface Logged {
  level: keyof Logger;
  message: string;
}

function setup(
  options: Partial<LeaderElectorOptions> & { ttl?: number; callTimeoutMs?: number; given?: boolean } = {},
) {
  const clock = new FakeClock();
  const given = options.given ? new FakeSession(clock) : undefined;
  const backend = new FakeBackend(clock, given);
  const logged: Logged[] = [];
  const logger = Object.fromEntries(
    (["debug", "info", "warn", "error"] as const).map((level) => [
      level,
      (_fields: object, message: string) => void logged.push({ level, message }),
    ]),
  ) as unknown as Logger;
  const stop = new AbortController();
  const { given: _g, ...rest } = options;
  const elector = LeaderElector.withSeam(
    {
      client: {} as never,
      name: "jobs/e",
      identity: "node-a",
      logger,
      onStartedLeading: () => {},
      ...rest,
    },
    { backend, clock },
  );
  let settled: { ok: boolean; error?: unknown } | undefined;
  const running = elector.run({ signal: stop.signal }).then(
    () => void (settled = { ok: true }),
    (error: unknown) => void (settled = { ok: false, error }),
  );
  return { clock, backend, elector, stop, logged, running, settled: () => settled };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("LeaderElector on a fake clock", () => {
  it("backs off more and more between failures (capped at the TTL), and starts over after a term", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.5); // the jitter, fixed
    const { clock, backend, stop, running } = setup({ ttl: 2 });
    backend.refuse(() => new EtcdUnavailableError("etcd unavailable: fake"));
    await clock.until(() => backend.attempts.length >= 8, 60_000);
    const gaps = backend.attempts.slice(1).map((at, i) => at - backend.attempts[i]!);
    // The named policy's sequence, step for step: it grows and stops at the TTL.
    const policy = new Backoff(campaignBackoff(2));
    const expected = gaps.map(() => policy.next());
    gaps.forEach((gap, i) => expect(gap).toBeCloseTo(expected[i]!, 6));
    expect(gaps[1]!).toBeGreaterThan(gaps[0]!);
    expect(gaps.at(-1)).toBeCloseTo(2000, 6);

    // A session at last, a term led and lost: the next failure waits the first step again.
    backend.refuse(undefined);
    await clock.until(() => backend.campaigns.length === 1, 3000);
    const won = backend.campaigns[0]!.win();
    await flush();
    backend.refuse(() => new EtcdUnavailableError("etcd unavailable: fake"));
    backend.sessions[0]!.lose(); // the term's session: lost, so the elector makes a new one
    won.lose();
    const before = backend.attempts.length;
    await clock.until(() => backend.attempts.length >= before + 2, 10_000);
    const after = backend.attempts.at(-1)! - backend.attempts.at(-2)!;
    expect(after).toBeCloseTo(gaps[0]!, 6);
    stop.abort();
    await clock.advance(5000);
    await running;
  });

  it("never campaigns again before the last term's onStartedLeading settled, warning every TTL meanwhile", async () => {
    let finish!: () => void;
    const starts: number[] = [];
    const { clock, backend, stop, logged, running } = setup({
      ttl: 5,
      onStartedLeading: () => {
        starts.push(clock.now());
        return new Promise<void>((resolve) => (finish = resolve)); // ignores term.signal
      },
    });
    await clock.until(() => backend.campaigns.length === 1, 1000);
    const first = backend.campaigns[0]!.win();
    await clock.until(() => starts.length === 1, 100);
    first.lose(); // the term ends; the work goes on
    await clock.advance(3 * 5000 + 100);
    expect(first.resigned).toBe(true);
    expect(backend.campaigns).toHaveLength(1);
    const waiting = logged.filter((l) => l.level === "warn" && /has not returned after its term ended/.test(l.message));
    expect(waiting).toHaveLength(3);

    finish();
    await clock.until(() => backend.campaigns.length === 2, 1000);
    backend.campaigns[1]!.win();
    await clock.until(() => starts.length === 2, 100);
    stop.abort();
    finish();
    await clock.advance(10_000);
    await running;
  });

  for (const [ttl, callTimeoutMs] of [
    [10, 1000],
    [2, 4000],
  ] as const) {
    it(`run() resolves by max(TTL, 2 × callTimeoutMs) after the stop though the resign never settles, the session closed (TTL ${ttl} s, calls ${callTimeoutMs} ms)`, async () => {
      const { clock, backend, elector, stop, running, settled, logged } = setup({ ttl, callTimeoutMs });
      await clock.until(() => backend.campaigns.length === 1, 1000);
      const won = backend.campaigns[0]!.win({ resign: "hangs" });
      await clock.until(() => elector.isLeader(), 100);
      const stoppedAt = clock.now();
      stop.abort();
      const bound = Math.max(ttl * 1000, 2 * callTimeoutMs);
      await clock.until(() => settled() !== undefined, bound, 1);
      expect(settled()).toEqual({ ok: true });
      expect(clock.now() - stoppedAt).toBeLessThanOrEqual(bound);
      // It waited for the resign as long as the bound allows, keeping time for the close.
      expect(clock.now() - stoppedAt).toBeGreaterThanOrEqual(bound - callTimeoutMs);
      expect(won.resigned).toBe(true);
      expect(backend.sessions[0]!.closed).toBe(true);
      expect(elector.metrics().state).toBe("stopped");
      expect(logged.some((l) => /resign not confirmed in time/.test(l.message))).toBe(true);
      expect(clock.pending).toBe(0);
      await running;
    });
  }

  it("healthy() is false only while holding a term and no keepalive was acknowledged for over 2 × TTL", async () => {
    const { clock, backend, elector, stop, running } = setup({ ttl: 3 });
    await clock.until(() => backend.campaigns.length === 1, 1000);
    const session = backend.sessions[0]!;
    await clock.advance(7000); // a follower, however long since its last renewal
    expect(elector.healthy()).toBe(true);
    session.renew();
    backend.campaigns[0]!.win();
    await clock.until(() => elector.isLeader(), 100);
    await clock.advance(6000);
    expect(elector.healthy()).toBe(true); // exactly 2 × TTL: still healthy
    await clock.advance(1);
    expect(elector.healthy()).toBe(false);
    session.renew();
    expect(elector.healthy()).toBe(true);
    expect(elector.metrics().keepaliveRoundTripMs).toBe(3);
    stop.abort();
    await clock.advance(10_000);
    await running;
    expect(elector.healthy()).toBe(true);
  });

  it("a term seen to end is stepping down, not wedged: healthy() stays true while its resign hangs past 2 × TTL", async () => {
    const { clock, backend, elector, stop, running } = setup({ ttl: 3 });
    await clock.until(() => backend.campaigns.length === 1, 1000);
    backend.sessions[0]!.renew();
    const won = backend.campaigns[0]!.win({ resign: "hangs" });
    await clock.until(() => elector.isLeader(), 100);
    won.lose(); // the term ends (its key deleted, say) and etcd then goes away: the resign cannot get through
    await clock.until(() => won.resigned, 100);
    await clock.advance(7000);
    expect(elector.isLeader()).toBe(false);
    expect(elector.healthy()).toBe(true);
    stop.abort();
    await clock.advance(10_000);
    await running;
  });

  it("a listener that throws is logged and never skips stepping down: the term is still resigned", async () => {
    const { clock, backend, elector, stop, logged, running } = setup({ ttl: 3 });
    elector.on("state", (state) => {
      if (state === "stopping") throw new Error("listener bug");
    });
    elector.on("elected", () => {
      throw new Error("listener bug");
    });
    await clock.until(() => backend.campaigns.length === 1, 1000);
    const won = backend.campaigns[0]!.win();
    await clock.until(() => elector.isLeader(), 100);
    stop.abort();
    await clock.advance(10_000);
    await running;
    expect(won.resigned).toBe(true);
    expect(
      logged.filter((l) => l.level === "error" && /listener of "(state|elected)" threw/.test(l.message)),
    ).toHaveLength(2);
  });

  const incurable: [ElectionErrorCode, () => Error][] = [
    ["PERMISSION_DENIED", () => new PermissionDeniedError("permission denied: fake")],
    ["AUTH_FAILED", () => new AuthFailedError("auth failed: fake")],
    ["NAME_CONFLICT", () => new NameConflictError("name conflict: fake")],
  ];
  for (const [code, make] of incurable) {
    it(`a ${code} from the campaign rejects run() instead of retrying`, async () => {
      const { clock, backend, running, settled, elector } = setup();
      await clock.until(() => backend.campaigns.length === 1, 1000);
      backend.campaigns[0]!.fail(make());
      await clock.until(() => settled() !== undefined, 20_000);
      expect((settled()?.error as { code?: string }).code).toBe(code);
      expect(backend.campaigns).toHaveLength(1);
      expect(backend.sessions[0]!.closed).toBe(true);
      expect(elector.metrics().lastError?.code).toBe(code);
      await running;
    });
  }

  it("an incurable code of another build (a plain Error with its code) rejects run() too", async () => {
    const { clock, backend, running, settled } = setup();
    backend.refuse(() => Object.assign(new Error("permission denied (other build)"), { code: "PERMISSION_DENIED" }));
    await clock.until(() => settled() !== undefined, 20_000);
    expect((settled()?.error as { code?: string }).code).toBe("PERMISSION_DENIED");
    expect(backend.attempts).toHaveLength(1);
    await running;
  });

  it("a transient failure is retried, counted and not fatal", async () => {
    const { clock, backend, elector, stop, running, settled } = setup();
    await clock.until(() => backend.campaigns.length === 1, 1000);
    backend.campaigns[0]!.fail(new EtcdUnavailableError("etcd unavailable: fake"));
    await clock.until(() => backend.campaigns.length === 2, 20_000);
    expect(settled()).toBeUndefined();
    expect(elector.metrics()).toMatchObject({ failures: 1, sessions: 1, state: "campaigning" });
    stop.abort();
    await clock.advance(20_000);
    await running;
  });

  it("a lost session of its own makes a fresh one; the lost one is closed", async () => {
    const { clock, backend, elector, stop, running, settled } = setup();
    await clock.until(() => backend.campaigns.length === 1, 1000);
    backend.sessions[0]!.lose(); // the campaign rejects with the session's loss
    await clock.until(() => backend.sessions.length === 2 && backend.campaigns.length === 2, 20_000);
    expect(backend.sessions[0]!.closed).toBe(true);
    expect(backend.campaigns[1]!.signal.aborted).toBe(false);
    expect(settled()).toBeUndefined();
    expect(elector.metrics()).toMatchObject({ sessions: 2, failures: 1 });
    stop.abort();
    await clock.advance(20_000);
    await running;
    expect(backend.sessions[1]!.closed).toBe(true);
  });

  it("a lost session given by the user ends run() (only its owner can make a new one)", async () => {
    const { clock, backend, running, settled } = setup({ given: true, ttl: undefined, callTimeoutMs: undefined });
    await clock.until(() => backend.campaigns.length === 1, 1000);
    (backend.given as FakeSession).lose();
    await clock.until(() => settled() !== undefined, 20_000);
    expect((settled()?.error as { code?: string }).code).toBe("SESSION_LOST");
    expect(backend.sessions).toHaveLength(0);
    expect((backend.given as FakeSession).closed).toBe(false); // not ours to close
    await running;
  });

  it("metrics count a term's leading time and its failover on the elector's clock", async () => {
    const terms: Term[] = [];
    const { clock, backend, elector, stop, running } = setup({ onStartedLeading: (t) => void terms.push(t) });
    await clock.until(() => backend.campaigns.length === 1, 1000);
    backend.campaigns[0]!.win({ predecessorGoneAt: clock.now() - 40 });
    await clock.until(() => elector.isLeader(), 100);
    await clock.advance(1500);
    expect(elector.metrics()).toMatchObject({ state: "leading", termsLed: 1, leadingMs: 1500, lastFailoverMs: 40 });
    expect(elector.metrics().token).toBe(terms[0]!.token.toString());
    stop.abort();
    await clock.advance(20_000);
    await running;
    expect(elector.metrics()).toMatchObject({ state: "stopped", leadingMs: 1500, token: undefined });
  });
});
