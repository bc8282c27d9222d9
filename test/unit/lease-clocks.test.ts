import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { stamp } from "../../src/common/clock.js";
import { silentLogger } from "../../src/common/logger.js";
import type { Connection } from "../../src/etcd/connection.js";
import { LeaseKeeper } from "../../src/lease/keeper.js";

/** A connection whose keepalive stream never opens: nothing renews the lease, so only the clocks decide. */
const silentConn = {
  closed: false,
  stream: () => new Promise(() => {}),
  call: () => Promise.reject(new Error("offline")),
  failed: () => {},
} as unknown as Connection;

const keepers: LeaseKeeper[] = [];
/** A lease of `ttl` s granted now, margin 500 ms (5% of 10 s): its deadline is 9.5 s away on both clocks. */
function grantedNow(ttl = 10, lost: () => void = () => {}): LeaseKeeper {
  const keeper = new LeaseKeeper(
    silentConn,
    { leaseId: "1", ttl, sentAt: stamp(), minMarginMs: 250, callTimeoutMs: 1000, logger: silentLogger },
    { renewed: () => {}, suspended: () => {}, reconnected: () => {}, lost },
  );
  keepers.push(keeper);
  return keeper;
}

/** A system suspend: the monotonic clock (performance.now) stands still while the wall clock runs on. */
const suspendFor = (ms: number): void => {
  vi.setSystemTime(Date.now() + ms);
};

describe("the deadline counts by whichever clock ran further (design: Step down first)", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "performance", "Date"] });
  });
  afterEach(() => {
    for (const k of keepers.splice(0)) k.stop(new Error("test over"));
    vi.useRealTimers();
  });

  it("after a system suspend past the deadline, the first check says lost at once", () => {
    const keeper = grantedNow();
    vi.advanceTimersByTime(1000);
    suspendFor(60_000);
    expect(keeper.remainingMs()).toBe(0);
    expect(keeper.check()).toBe(false);
    expect(keeper.signal.reason).toMatchObject({ code: "SESSION_LOST" });
  });

  it("a signal already in hand aborts within 250 ms of the resume, with nobody asking", () => {
    const keeper = grantedNow();
    const signal = keeper.signal;
    vi.advanceTimersByTime(1000);
    suspendFor(60_000);
    vi.advanceTimersByTime(250);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toMatchObject({ code: "SESSION_LOST" });
  });

  it("one lease found past its deadline checks every other lease of the process at once", () => {
    const first = grantedNow();
    vi.advanceTimersByTime(1000);
    const second = grantedNow(); // its deadline a second later than the first's
    const third = grantedNow(60); // its deadline far away: the pause does not end it
    suspendFor(60_000 - 30_000);
    // No timer has run since the resume: the first check of any one lease tells the others it concerns.
    expect(first.check()).toBe(false);
    expect(second.signal.aborted).toBe(true);
    expect(second.signal.reason).toMatchObject({ code: "SESSION_LOST" });
    expect(third.signal.aborted).toBe(false);
  });

  it("a suspend shorter than what is left only shortens the time left", () => {
    const keeper = grantedNow();
    suspendFor(4000);
    expect(keeper.check()).toBe(true);
    expect(keeper.remainingMs()).toBe(9500 - 4000);
    expect(keeper.sinceRenewalMs).toBe(4000);
  });

  it("a wall clock stepped back never extends the deadline: the monotonic one still ends it", () => {
    const keeper = grantedNow();
    vi.setSystemTime(Date.now() - 3_600_000);
    expect(keeper.remainingMs()).toBe(9500);
    vi.advanceTimersByTime(9499);
    expect(keeper.check()).toBe(true);
    vi.advanceTimersByTime(1);
    expect(keeper.signal.aborted).toBe(true);
    expect(keeper.state).toBe("lost");
  });

  it("a keeper whose loss handler throws does not stop the process-wide check from telling the others", () => {
    const throwing = grantedNow(10, () => {
      throw new Error("a user's lost listener threw");
    });
    const other = grantedNow();
    vi.advanceTimersByTime(1000);
    suspendFor(60_000);
    expect(() => vi.advanceTimersByTime(250)).not.toThrow();
    expect(throwing.signal.aborted).toBe(true);
    expect(other.signal.aborted).toBe(true);
    expect(other.signal.reason).toMatchObject({ code: "SESSION_LOST" });
  });
});
