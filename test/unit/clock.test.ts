import { describe, expect, it, vi } from "vitest";
import { MAX_TIMER_MS, now, timerAt } from "../../src/common/clock.js";
import { getEventListeners } from "node:events";
import { onAbort, sleep, withTimeout } from "../../src/common/abort.js";

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

describe("sleep and withTimeout take any length", () => {
  it("a 2^31 ms sleep and timeout do not fire at once (Node's setTimeout would after 1 ms)", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    try {
      let slept = false;
      void sleep(2 ** 31).then(() => (slept = true));
      const { signal, dispose } = withTimeout(undefined, 2 ** 31, () => new Error("timed out"));
      await vi.advanceTimersByTimeAsync(1000);
      expect(slept).toBe(false);
      expect(signal!.aborted).toBe(false);
      await vi.advanceTimersByTimeAsync(2 ** 31);
      expect(slept).toBe(true);
      expect(signal!.aborted).toBe(true);
      dispose();
    } finally {
      vi.useRealTimers();
    }
  });

  it("sleep rejects with the signal's reason and leaves no listener", async () => {
    const ac = new AbortController();
    const slept = sleep(60_000, ac.signal);
    ac.abort(new Error("stop"));
    await expect(slept).rejects.toThrow("stop");
    await expect(sleep(1, AbortSignal.abort(new Error("already")))).rejects.toThrow("already");
  });
});

describe("onAbort fans one listener out (no MaxListenersExceededWarning because of us)", () => {
  it("10,000 waiters on one signal add one listener, removed with the last; all are told once", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on("warning", onWarning);
    try {
      const ac = new AbortController();
      let told = 0;
      const undos = Array.from({ length: 10_000 }, () => onAbort(ac.signal, () => told++));
      expect(getEventListeners(ac.signal, "abort")).toHaveLength(1);
      for (const undo of undos.slice(0, 5_000)) undo();
      ac.abort();
      expect(told).toBe(5_000);
      const other = new AbortController();
      const undo = onAbort(other.signal, () => {});
      undo();
      expect(getEventListeners(other.signal, "abort")).toHaveLength(0);
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  });
});
