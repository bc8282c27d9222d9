import { describe, expect, it } from "vitest";
import { inQueue, Keyspace, queueKey } from "../../src/etcd/keyspace.js";
import { queueRange, toEntries } from "../../src/queue/queue.js";

const kv = (key: string, rev: number, value = "") =>
  ({
    key: Buffer.from(key),
    value: Buffer.from(value),
    create_revision: String(rev),
    mod_revision: String(rev),
    version: "1",
    lease: "7",
  }) as never;

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

describe("the queue of a name is exactly <name>/<lease hex> (design: Names are exact)", () => {
  it("a session's key, as etcd's Go concurrency package writes it", () => {
    expect(queueKey("jobs", "694d8a5c1f0e3b21")).toBe("jobs/694d8a5c1f0e3b21");
  });

  it("keys of the name count; deeper keys, other names and non-lease segments do not", () => {
    expect(inQueue("jobs", "jobs/694d8a5c1f0e3b21")).toBe(true);
    expect(inQueue("jobs", "jobs/cleanup/694d8a5c1f0e3b21")).toBe(false);
    expect(inQueue("jobs", "jobs2/694d")).toBe(false);
    expect(inQueue("jobs", "jobs/")).toBe(false);
    expect(inQueue("jobs", "jobs/not-a-lease")).toBe(false);
    expect(inQueue("jobs", "jobs/ABC")).toBe(false); // lease ids are written in lowercase hex
    expect(inQueue("jobs", "jobs/0123456789abcdef0")).toBe(false); // longer than an int64
  });

  it("the range covers <name>/ sorted by create revision; entries keep the queue's own keys", () => {
    const ks = new Keyspace(Buffer.from("ns/"));
    const req = queueRange(ks, "jobs", { limit: 1, values: false, maxCreateRevision: 9n });
    expect(req).toMatchObject({
      sort_order: "Ascend",
      sort_target: "Create",
      keys_only: true,
      limit: 1,
      max_create_revision: "9",
    });
    expect(req.key?.toString()).toBe("ns/jobs/");
    expect(req.range_end?.toString()).toBe("ns/jobs0");
    const entries = toEntries(
      ks,
      "jobs",
      [kv("ns/jobs/a1", 3, "x"), kv("ns/jobs/sub/b2", 4), kv("ns/jobs/c3", 5, "y")],
      true,
    );
    expect(entries).toEqual([
      { key: "jobs/a1", createRevision: 3n, value: Buffer.from("x"), lease: "7", modRevision: 3n },
      { key: "jobs/c3", createRevision: 5n, value: Buffer.from("y"), lease: "7", modRevision: 5n },
    ]);
  });
});
