import { describe, expect, it } from "vitest";
import type { KeyEvent } from "../../src/etcd/key-watch.js";
import { GroupState } from "../../src/sharding/shard-view.js";

const kv = (key: string, createRevision: number, identity: string) => ({
  key,
  createRevision: BigInt(createRevision),
  identity,
});
const event = (
  type: "put" | "delete",
  key: string,
  createRevision: number,
  modRevision: number,
  value = "",
): KeyEvent => ({
  type,
  key,
  createRevision: BigInt(createRevision),
  modRevision: BigInt(modRevision),
  value: Buffer.from(value),
});

describe("the group's state (members and shard holders)", () => {
  it("drops a watch event the last read already has: a lagging watch does not put back what the read says is gone", () => {
    const state = new GroupState("g", 4);
    // Shard 1 was held by lease a1 (put at 10) and handed to b2 (a1's key deleted at 12); read at 20.
    state.reset(20n, [
      kv("g/members/a1", 5, "node-a"),
      kv("g/members/b2", 6, "node-b"),
      kv("g/shards/1/b2", 11, "node-b"),
    ]);
    expect(state.holders[1]?.identity).toBe("node-b");
    // The watch, behind, now tells the events the read already has.
    expect(state.apply(event("put", "g/shards/1/a1", 10, 10, "node-a"))).toBeUndefined();
    expect(state.holders[1]?.identity).toBe("node-b");
    expect(state.apply(event("delete", "g/shards/1/b2", 11, 20))).toBeUndefined();
    expect(state.holders[1]?.identity).toBe("node-b");
    // A member event the read has: no reason to read again.
    expect(state.apply(event("put", "g/members/a1", 5, 5, "node-a"))).toBeUndefined();
    expect(state.revision).toBe(20n);
    // Newer events apply.
    expect(state.apply(event("delete", "g/shards/1/b2", 11, 21))).toBe("holders");
    expect(state.holders[1]).toBeUndefined();
    expect(state.apply(event("put", "g/shards/1/a1", 22, 22, "node-a"))).toBe("holders");
    expect(state.holders[1]).toEqual({ identity: "node-a", token: 22n, key: "g/shards/1/a1" });
    expect(state.apply(event("delete", "g/members/b2", 6, 23))).toBe("members");
    expect(state.revision).toBe(23n);
  });

  it("after a member event, holds the holders until the group is read again: a view never mixes members from before a change with holders from after it", () => {
    const state = new GroupState("g", 2);
    state.reset(10n, [kv("g/members/a1", 5, "node-a"), kv("g/shards/0/a1", 7, "node-a")]);
    expect(state.apply(event("put", "g/members/b2", 11, 11, "node-b"))).toBe("members"); // b2 joins
    // b2 takes shard 1 (it computed with itself as a member): the members here are still the read's.
    expect(state.apply(event("put", "g/shards/1/b2", 12, 12, "node-b"))).toBeUndefined();
    expect(state.holders.map((h) => h?.identity)).toEqual(["node-a", undefined]);
    expect(state.apply(event("delete", "g/shards/0/a1", 7, 13))).toBeUndefined();
    expect(state.holders[0]?.identity).toBe("node-a");
    expect(state.revision).toBe(11n); // the state is the group as of the member event
    // The read after the change has both; holder events after it apply again.
    state.reset(13n, [
      kv("g/members/a1", 5, "node-a"),
      kv("g/members/b2", 11, "node-b"),
      kv("g/shards/1/b2", 12, "node-b"),
    ]);
    expect(state.members.map((m) => m.id)).toEqual(["a1", "b2"]);
    expect(state.apply(event("put", "g/shards/0/a1", 14, 14, "node-a"))).toBe("holders");
    expect(state.holders.map((h) => h?.identity)).toEqual(["node-a", "node-b"]);
  });

  it("keeps each shard's holder the oldest candidate, in place, and ignores deeper keys and other names", () => {
    const state = new GroupState("g", 2);
    state.reset(10n, [kv("g/shards/0/b2", 8, "node-b"), kv("g/shards/0/a1", 7, "node-a"), kv("g/shards/7/a1", 9, "x")]);
    const holders = state.holders;
    expect(holders.map((h) => h?.identity)).toEqual(["node-a", undefined]);
    expect(state.apply(event("delete", "g/shards/0/a1", 7, 11))).toBe("holders");
    expect(holders[0]?.identity).toBe("node-b");
    expect(state.apply(event("put", "g/shards/0/x/a1", 12, 12))).toBeUndefined();
    expect(state.apply(event("put", "g/other/a1", 13, 13))).toBeUndefined();
    expect(state.holders).toBe(holders);
  });
});
