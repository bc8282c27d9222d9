import { describe, expect, it } from "vitest";
import { Etcd3 } from "etcd3";
import { Election, Mutex, RWLock, Semaphore, Session } from "../../src/index.js";
import { Keyspace } from "../../src/common/client.js";
import { MAX_TTL_SECONDS } from "../../src/common/validate.js";

// A client pointed at a port nothing listens on: every check below must fail before any RPC.
const offline = new Etcd3({ hosts: "127.0.0.1:1" });
const fakeSession = {} as Session;

describe("Session.create rejects bad input before any RPC", () => {
  it.each([0, -1, 1.5, Number.NaN, MAX_TTL_SECONDS + 1, "10"])("ttl %s", async (ttl) => {
    await expect(Session.create(offline, { ttl: ttl as number })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", name: "InvalidArgumentError" });
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

  it("a negative callTimeoutMs", async () => {
    await expect(Session.create(offline, { ttl: 5, callTimeoutMs: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});

describe("primitives reject bad input", () => {
  it("a value that is not a Session", () => {
    expect(() => new Election(fakeSession, "x")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => new Mutex(null as never, "x")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it.each(["", "a/", "x".repeat(1025), 42 as unknown as string])("name %#", (name) => {
    const session = { leaseHex: "1", line: () => undefined, keyspace: new Keyspace(Buffer.alloc(0)) } as unknown as Session;
    expect(() => new Election(session, name)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => new Mutex(session, name)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => new RWLock(session, name)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it.each([0, -1, 2.5, undefined])("semaphore limit %s", (limit) => {
    const session = { leaseHex: "1", line: () => undefined, keyspace: new Keyspace(Buffer.alloc(0)) } as unknown as Session;
    expect(() => new Semaphore(session, "s", { limit: limit as number })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});

describe("Keyspace", () => {
  it("prefixes keys for raw RPCs and strips them for users", () => {
    const ks = new Keyspace(Buffer.from("app/"));
    expect(ks.full("jobs/1").toString()).toBe("app/jobs/1");
    expect(ks.relative(Buffer.from("app/jobs/1"))).toBe("jobs/1");
    expect(ks.rangeEnd("jobs/").toString()).toBe("app/jobs0");
  });

  it("range end of a prefix ending in 0xff bytes", () => {
    const ks = new Keyspace(Buffer.from([0x61, 0xff]));
    expect([...ks.rangeEnd("")]).toEqual([0x62]);
  });
});
