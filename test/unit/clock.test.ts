import { describe, expect, it, vi } from "vitest";
import { MAX_TIMER_MS, now, timerAt } from "../../src/common/clock.js";

describe("timerAt", () => {
  it("re-arms in steps instead of firing at once for delays over 2^31-1 ms", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    try {
      let fired = false;
      const start = now();
      timerAt(start + MAX_TIMER_MS * 2.5, () => (fired = true));
      vi.advanceTimersByTime(MAX_TIMER_MS);
      expect(fired).toBe(false);
      vi.advanceTimersByTime(MAX_TIMER_MS);
      expect(fired).toBe(false);
      vi.advanceTimersByTime(MAX_TIMER_MS);
      expect(fired).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it("cancel stops it", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    try {
      let fired = false;
      const t = timerAt(now() + 10, () => (fired = true));
      t.cancel();
      vi.advanceTimersByTime(100);
      expect(fired).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });
});
