import { describe, expect, it } from "vitest";
import { getEventListeners } from "node:events";
import { LocalLine } from "../../src/queue/local-line.js";

describe("LocalLine", () => {
  it("grants in FIFO order and reports idle once everyone left", async () => {
    let idle = 0;
    const line = new LocalLine(() => idle++);
    const first = line.tryEnter()!;
    const order: number[] = [];
    const waiting = [1, 2, 3].map((n) => line.enter().then((leave) => (order.push(n), leave)));
    expect(line.tryEnter()).toBeUndefined();
    first();
    (await waiting[0]!)();
    (await waiting[1]!)();
    (await waiting[2]!)();
    expect(order).toEqual([1, 2, 3]);
    expect(idle).toBe(1);
    expect(line.tryEnter()).toBeDefined(); // free again
  });

  it("an aborted waiter leaves the queue and its listener", async () => {
    const line = new LocalLine(() => {});
    const leave = line.tryEnter()!;
    const ac = new AbortController();
    const pending = line.enter(ac.signal);
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(1);
    ac.abort(new Error("gone"));
    await expect(pending).rejects.toThrow("gone");
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(0);
    leave();
    expect(line.tryEnter()).toBeDefined(); // the aborted waiter was not granted the line
  });

  it("leaving twice is harmless", () => {
    const line = new LocalLine(() => {});
    const leave = line.tryEnter()!;
    leave();
    leave();
    expect(line.tryEnter()).toBeDefined();
  });
});
