import { describe, expect, it } from "vitest";
import {
  ackTimeoutMs,
  elapsedMs,
  leaseDeadline,
  leaseRemainingMs,
  renewIntervalMs,
  safetyMarginMs,
} from "../../src/lease/timing.js";

describe("the lease's clock arithmetic (design: Step down first)", () => {
  it("the margin is the larger of 5% of the TTL and the smallest margin", () => {
    expect(safetyMarginMs(2, 250)).toBe(250);
    expect(safetyMarginMs(10, 250)).toBe(500);
    expect(safetyMarginMs(60, 250)).toBe(3000);
    expect(safetyMarginMs(10, 1200)).toBe(1200);
  });

  it("the deadline counts from when the acknowledged keepalive was sent, less the margin", () => {
    expect(leaseDeadline(1000, 10, 500)).toBe(1000 + 10_000 - 500);
  });

  it("the time left is the shorter of the two clocks' counts: a suspend shortens it, a wall clock stepped back never lengthens it", () => {
    const sent = { mono: 1000, wall: 1_700_000_000_000 };
    // 2 s later on both clocks: 10 s - 0.5 s margin - 2 s.
    expect(leaseRemainingMs(sent, { mono: 3000, wall: sent.wall + 2000 }, 10, 500)).toBe(7500);
    // Suspended 60 s: the monotonic clock stood still, the wall clock did not.
    expect(leaseRemainingMs(sent, { mono: 3000, wall: sent.wall + 62_000 }, 10, 500)).toBe(-52_500);
    expect(elapsedMs(sent, { mono: 3000, wall: sent.wall + 62_000 })).toBe(62_000);
    // The wall clock stepped back an hour: the monotonic count still ends it.
    expect(leaseRemainingMs(sent, { mono: 3000, wall: sent.wall - 3_600_000 }, 10, 500)).toBe(7500);
    expect(elapsedMs(sent, { mono: 3000, wall: sent.wall - 3_600_000 })).toBe(2000);
  });

  it("renewals every TTL/3 (at least 100 ms); a keepalive may go unanswered TTL/6, between 0.5 and 5 s", () => {
    expect(renewIntervalMs(9)).toBe(3000);
    expect(renewIntervalMs(0.1)).toBe(100);
    expect(ackTimeoutMs(2)).toBe(500);
    expect(ackTimeoutMs(12)).toBe(2000);
    expect(ackTimeoutMs(600)).toBe(5000);
  });
});
