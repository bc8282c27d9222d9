import { describe, expect, it } from "vitest";
import {
  Backoff,
  callRetry,
  campaignBackoff,
  keepaliveRetry,
  readRetry,
  releaseRetry,
  retryWithBackoff,
  streamReopen,
  type BackoffBounds,
} from "../../src/common/backoff.js";

/** Decorrelated jitter's first delay is below 2 * tanh(2) / 1.4 (about 1.38) times the initial delay. */
const FIRST_FACTOR = 1.4;

const series = (backoff: Backoff, steps: number): number[] => Array.from({ length: steps }, () => backoff.next());

describe("each purpose backs off within its own bounds", () => {
  it.each<[string, BackoffBounds, number, number]>([
    ["a call sent again within its deadline", callRetry, 25, 500],
    ["our key's removal", releaseRetry, 50, 500],
    ["a read through an outage", readRetry, 50, 1000],
    ["the watch stream re-opened", streamReopen, 50, 1000],
    ["keepalives, interval 10 s", keepaliveRetry(10_000), 50, 1000],
    ["keepalives, interval 600 ms: half of it", keepaliveRetry(600), 50, 300],
    ["the elector's campaign, TTL 5 s", campaignBackoff(5), 200, 5000],
    ["the elector's campaign, TTL 60 s", campaignBackoff(60), 200, 60_000],
  ])("%s: from %#", (_, bounds, initialDelay, maxDelay) => {
    expect(bounds).toEqual({ initialDelay, maxDelay });
    let highest = 0;
    for (let i = 0; i < 200; i++) {
      const delays = series(new Backoff(bounds), 40);
      expect(delays[0]).toBeLessThan(FIRST_FACTOR * initialDelay);
      for (const delay of delays) {
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThanOrEqual(maxDelay);
      }
      highest = Math.max(highest, ...delays.slice(30));
    }
    // It grows to its ceiling and stays bounded by it.
    expect(highest).toBe(maxDelay);
  });

  it("a success starts the series over from the first delay", () => {
    const backoff = new Backoff(streamReopen);
    series(backoff, 40);
    expect(backoff.current).toBe(streamReopen.maxDelay);
    backoff.reset();
    expect(backoff.current).toBe(0);
    expect(backoff.next()).toBeLessThan(FIRST_FACTOR * streamReopen.initialDelay);
  });
});

describe("retryWithBackoff", () => {
  const tiny: BackoffBounds = { initialDelay: 1, maxDelay: 2 };
  const transient = new Error("transient");
  const final = new Error("final");

  it("tries again after failures it may retry, telling each, until the attempt succeeds", async () => {
    const told: number[] = [];
    const result = await retryWithBackoff(
      tiny,
      (attempt) => (attempt < 3 ? Promise.reject(transient) : Promise.resolve(attempt)),
      { retryable: (err) => err === transient, signal: undefined, onRetry: (_, attempt) => told.push(attempt) },
    );
    expect(result).toBe(3);
    expect(told).toEqual([1, 2]);
  });

  it("rethrows at once a failure it may not retry", async () => {
    const told: number[] = [];
    let attempts = 0;
    await expect(
      retryWithBackoff(
        tiny,
        (attempt) => {
          attempts = attempt;
          return Promise.reject(attempt === 1 ? transient : final);
        },
        { retryable: (err) => err === transient, signal: undefined, onRetry: (_, attempt) => told.push(attempt) },
      ),
    ).rejects.toBe(final);
    expect(attempts).toBe(2);
    expect(told).toEqual([1]);
  });

  it("an abort ends the wait between tries, rejecting with its reason", async () => {
    const controller = new AbortController();
    const reason = new Error("stopped");
    let attempts = 0;
    const run = retryWithBackoff(
      { initialDelay: 60_000, maxDelay: 60_000 }, // the test would time out waiting it out
      () => {
        attempts++;
        return Promise.reject(transient);
      },
      {
        retryable: () => true,
        signal: controller.signal,
        onRetry: () => queueMicrotask(() => controller.abort(reason)),
      },
    );
    await expect(run).rejects.toBe(reason);
    expect(attempts).toBe(1);
  });

  it("an aborted signal makes no attempt", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stopped"));
    let attempts = 0;
    await expect(
      retryWithBackoff(
        tiny,
        () => {
          attempts++;
          return Promise.resolve(1);
        },
        { retryable: () => true, signal: controller.signal, onRetry: () => {} },
      ),
    ).rejects.toThrow("stopped");
    expect(attempts).toBe(0);
  });
});
