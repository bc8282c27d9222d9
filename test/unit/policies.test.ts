import { describe, expect, it } from "vitest";
import {
  predecessorPolicy,
  READ,
  readerPolicy,
  semaphorePolicy,
  WRITE,
  type QueueEntry,
} from "../../src/queue/policies.js";
import { checkLimits } from "../../src/semaphore.js";

const entry = (n: number, value?: Buffer): QueueEntry => ({
  key: `q/${n.toString(16)}`,
  createRevision: BigInt(n),
  ...(value ? { value } : {}),
});

describe("who waits on whom (design: No herd)", () => {
  it("an election, mutex or writer waits on its immediate predecessor only", () => {
    expect(predecessorPolicy.blocking([])).toBeUndefined();
    expect(predecessorPolicy.blocking([entry(1), entry(2), entry(3)])).toEqual({ keys: [entry(3)], needed: 1 });
    expect(predecessorPolicy.lookahead).toBe(1); // the uncontended case is decided by one entry
  });

  it("a reader waits only on the last writer ahead of it; keys of unknown mode count as writers", () => {
    expect(readerPolicy.blocking([entry(1, READ), entry(2, READ)])).toBeUndefined();
    expect(readerPolicy.blocking([entry(1, WRITE), entry(2, READ), entry(3, WRITE), entry(4, READ)])).toEqual({
      keys: [entry(3, WRITE)],
      needed: 1,
    });
    expect(readerPolicy.blocking([entry(1, Buffer.from("???")), entry(2, READ)])).toEqual({
      keys: [entry(1, Buffer.from("???"))],
      needed: 1,
    });
    expect(readerPolicy.readValues).toBe(true);
  });

  it("a semaphore participant with n ahead needs n - limit + 1 of them gone", () => {
    const policy = semaphorePolicy(3, () => {});
    expect(policy.blocking([entry(1), entry(2)])).toBeUndefined();
    expect(policy.blocking([entry(1), entry(2), entry(3)])).toEqual({
      keys: [entry(1), entry(2), entry(3)],
      needed: 1,
    });
    expect(policy.blocking([1, 2, 3, 4, 5].map((n) => entry(n)))?.needed).toBe(3);
    expect(policy.lookahead).toBe(3);
  });

  it("a semaphore refuses entries queued with another limit, naming the key", () => {
    const limit = (n: unknown): Buffer => Buffer.from(JSON.stringify({ limit: n }));
    expect(() => checkLimits("gpu", 3, [entry(1, limit(3)), entry(2, limit(3))])).not.toThrow();
    expect(() => checkLimits("gpu", 3, [entry(1, limit(3)), entry(2, limit(4))])).toThrow(
      expect.objectContaining({ code: "LIMIT_MISMATCH", message: expect.stringContaining("q/2") }),
    );
    expect(() => checkLimits("gpu", 3, [entry(1, Buffer.from("not json"))])).toThrow(
      expect.objectContaining({ code: "LIMIT_MISMATCH" }),
    );
  });
});
