import { describe, expect, it } from "vitest";
import { CampaignPacer } from "../../src/sharding/campaign-pacer.js";
import { FakeClock, flush } from "../support/fake-elector.js";

/** A campaign the test settles by hand. */
function pending(): { promise: Promise<string>; resolve: (v: string) => void } {
  let resolve!: (v: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  return { promise, resolve };
}

describe("the campaign pacer (many shards are not campaigned for in one burst)", () => {
  it("starts at most `limit` at once; a place frees when one settles, or `holdMs` after it began", async () => {
    const clock = new FakeClock();
    const pacer = new CampaignPacer(2, 1000, clock);
    const signal = new AbortController().signal;
    const started: number[] = [];
    const campaigns = [pending(), pending(), pending(), pending()];
    const runs = campaigns.map((c, i) =>
      pacer.run(signal, () => {
        started.push(i);
        return c.promise;
      }),
    );
    await flush();
    expect(started).toEqual([0, 1]);
    campaigns[0]!.resolve("won");
    await expect(runs[0]).resolves.toBe("won");
    await flush();
    expect(started).toEqual([0, 1, 2]);
    // Nothing settles: 1 and 2 give their places back once they are 1 s old, and 3 starts.
    await clock.advance(999);
    expect(started).toEqual([0, 1, 2]);
    await clock.advance(1);
    expect(started).toEqual([0, 1, 2, 3]);
    for (const c of campaigns) c.resolve("won");
    await Promise.all(runs);
    expect(clock.pending).toBe(0); // no timer left behind
  });

  it("a waiter whose signal aborts leaves the line and rejects with the reason, never starting", async () => {
    const clock = new FakeClock();
    const pacer = new CampaignPacer(1, 1000, clock);
    const first = pending();
    const running = pacer.run(new AbortController().signal, () => first.promise);
    const stop = new AbortController();
    let started = false;
    const waiting = pacer.run(stop.signal, () => {
      started = true;
      return Promise.resolve("x");
    });
    stop.abort(new Error("stopped"));
    await expect(waiting).rejects.toThrow("stopped");
    first.resolve("won");
    await running;
    await flush();
    expect(started).toBe(false);
  });
});
