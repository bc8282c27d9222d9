import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { untilWoken } from "../../src/common/abort.js";

describe("untilWoken", () => {
  it("resolves when woken, and leaves no abort listener behind", async () => {
    const controller = new AbortController();
    let wake: (() => void) | undefined;
    const sleeping = untilWoken(controller.signal, (w) => (wake = w));
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(1);
    wake!();
    await sleeping;
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("resolves (never rejects) when the signal aborts, and at once when it already had", async () => {
    const controller = new AbortController();
    const sleeping = untilWoken(controller.signal, () => {});
    controller.abort(new Error("stop"));
    await expect(sleeping).resolves.toBeUndefined();
    await expect(untilWoken(controller.signal, () => {})).resolves.toBeUndefined();
  });
});
