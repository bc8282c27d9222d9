import { describe, expect, it } from "vitest";
import { Etcd3 } from "etcd3";
import { Election, LeaderElector, Mutex, RWLock, Session } from "../../src/index.js";
import { MAX_TTL_SECONDS, validateLimit } from "../../src/common/validate.js";

// A client pointed at a port nothing listens on: every check below must fail before any RPC.
const offline = new Etcd3({ hosts: "127.0.0.1:1" });
const fakeSession = {} as Session;

describe("Session.create rejects bad input before any RPC", () => {
  it.each([0, -1, 1.5, Number.NaN, MAX_TTL_SECONDS + 1, "10"])("ttl %s", async (ttl) => {
    await expect(Session.create(offline, { ttl: ttl as number })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      name: "InvalidArgumentError",
    });
  });

  it("a value that is not an etcd3 client", async () => {
    for (const bad of [undefined, null, {}, { kv: {} }, "127.0.0.1:2379"]) {
      await expect(Session.create(bad as never, { ttl: 5 })).rejects.toMatchObject({ code: "INVALID_CLIENT" });
    }
  });

  it("an already aborted signal rejects with its reason", async () => {
    const reason = new Error("stop");
    await expect(Session.create(offline, { ttl: 5, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  it.each([-1, 0])("callTimeoutMs %s (every call would fail at once, forever)", async (callTimeoutMs) => {
    await expect(Session.create(offline, { ttl: 5, callTimeoutMs })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/callTimeoutMs must be .*> 0/),
    });
    expect(
      () => new LeaderElector({ client: offline, name: "e", identity: "i", callTimeoutMs, onStartedLeading: () => {} }),
    ).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/callTimeoutMs/) }));
  });
});

describe("primitives reject bad input", () => {
  it("a value that is not a Session", () => {
    expect(() => new Election(fakeSession, "x")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => new Mutex(null as never, "x")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it.each(["", "a/", "x".repeat(1025), 42 as unknown as string])("name %#", (name) => {
    // The name is checked first, so even a fake session gets the name's error.
    const named = expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/name/) });
    expect(() => new Election(fakeSession, name)).toThrow(named);
    expect(() => new Mutex(fakeSession, name)).toThrow(named);
    expect(() => new RWLock(fakeSession, name)).toThrow(named);
  });

  it.each([0, -1, 2.5, undefined, 10_001])("semaphore limit %s", (limit) => {
    expect(() => validateLimit(limit)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/limit/) }),
    );
  });
});
