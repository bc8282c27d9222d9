import { describe, expect, it } from "vitest";
import { shardOf } from "../../src/index.js";
import { assignShards, countMoves, type Member } from "../../src/sharding/assignment.js";
import { prng } from "../support/prng.js";

const GOLDEN_FRESH = "1000,1000,1000,1000,1001,1001,1001,1001,1002,1002,1002,1002";
// 1000 held 6 of a quota of 4: it keeps its best-scored 4; shards 0 and 4 go where there is room.
const GOLDEN_HELD = "1002,1000,1000,1000,1001,1000,1001,1001,1001,1002,1002,1002";
// S = 13, M = 3: one ceil quota (5). None at ceil: it goes by identity hash, to 1000 (holding 1), not to
// 1001 (holding 3, the most: the rule before), which keeps its 3 and gets 1 more.
const GOLDEN_CEIL_BY_HASH = "1001,1001,1001,1000,1001,1000,1002,1002,1000,1000,1000,1002,1002";
// 1001 at ceil (holding 5): it keeps the ceil quota and all 5, although 1000 comes first by hash.
const GOLDEN_CEIL_HELD = "1001,1001,1001,1001,1001,1000,1002,1002,1000,1000,1000,1002,1002";

const members = (n: number, from = 0): Member[] =>
  Array.from({ length: n }, (_, i) => ({ id: (0x1000 + i + from).toString(16), identity: `node-${i + from}` }));

const loads = (owners: string[]): Map<string, number> => {
  const m = new Map<string, number>();
  for (const o of owners) m.set(o, (m.get(o) ?? 0) + 1);
  return m;
};

/**
 * Plays a transition from `start` to rest as members do: each step computes the owners from the holders
 * of the moment; a holder told to let a shard go does (irrevocably, as a hand-over once begun); a shard
 * with no live holder is taken by one of the members it was assigned to since it became free (a
 * campaign started under an earlier assignment can still win). Steps in random order. Counts the terms
 * started per shard.
 */
function transition(
  set: readonly Member[],
  shards: number,
  start: readonly (string | undefined)[],
  random: () => number,
) {
  const ids = new Set(set.map((m) => m.id));
  const holders = [...start];
  const started = new Array<number>(shards).fill(0);
  const campaigning = Array.from({ length: shards }, () => new Set<string>());
  const releasing = new Set<number>();
  for (;;) {
    const owners = assignShards(set, shards, holders);
    const steps: (() => void)[] = [];
    for (let s = 0; s < shards; s++) {
      const holder = holders[s];
      if (holder === undefined || !ids.has(holder)) {
        campaigning[s]!.add(owners[s]!);
        for (const winner of campaigning[s]!)
          steps.push(() => {
            holders[s] = winner;
            campaigning[s]!.clear();
            started[s]!++;
          });
      } else {
        if (owners[s] !== holder) releasing.add(s);
        if (releasing.has(s))
          steps.push(() => {
            holders[s] = undefined;
            releasing.delete(s);
          });
      }
    }
    if (steps.length === 0) return { holders: holders as string[], started }; // at rest: every shard held
    steps[Math.floor(random() * steps.length)]!();
  }
}

describe("shard assignment", () => {
  it("gives each of M members floor(S/M) or ceil(S/M) shards, every shard exactly one owner", () => {
    for (const shards of [1, 7, 64, 256, 10_000]) {
      for (let m = 1; m <= 8; m++) {
        const owners = assignShards(members(m), shards);
        expect(owners).toHaveLength(shards);
        const counts = [...loads(owners).values()];
        const lo = Math.floor(shards / m);
        const hi = Math.ceil(shards / m);
        for (const c of counts) expect(c === lo || c === hi).toBe(true);
        expect(counts.reduce((x, y) => x + y, 0)).toBe(shards);
        expect(loads(owners).size).toBe(Math.min(m, shards));
      }
    }
  });

  it("is a pure function of the member set: every member computes the same, whatever the order", () => {
    const set = members(5);
    const owners = assignShards(set, 64);
    expect(assignShards([...set].reverse(), 64)).toEqual(owners);
    expect(assignShards([set[2]!, set[0]!, set[4]!, set[1]!, set[3]!], 64)).toEqual(owners);
    expect(assignShards([], 64)).toEqual([]);
  });

  it("a join moves exactly the newcomer's share (floor or ceil of S/(M+1)), a leave exactly the leaver's shards, over random histories", () => {
    for (let seed = 1; seed <= 24; seed++) {
      const random = prng(seed);
      const shards = [1, 7, 64, 100, 256, 1000][seed % 6]!;
      let next = 0;
      const fresh = (): Member => {
        next++;
        return { id: `${seed}-${next}`.padStart(8, "0"), identity: `pod-${Math.floor(random() * 1e9)}` };
      };
      let set: Member[] = [fresh()];
      let owners = assignShards(set, shards);
      for (let step = 0; step < 30; step++) {
        const join = set.length < 2 || (set.length < 25 && random() < 0.5);
        const before = owners;
        if (join) {
          const newcomer = fresh();
          set = [...set, newcomer];
          owners = assignShards(set, shards, before);
          const share = owners.filter((o) => o === newcomer.id).length;
          expect([Math.floor(shards / set.length), Math.ceil(shards / set.length)]).toContain(share);
          expect(countMoves(before, owners)).toBe(share);
        } else {
          const leaver = set[Math.floor(random() * set.length)]!;
          set = set.filter((x) => x !== leaver);
          owners = assignShards(set, shards, before);
          expect(countMoves(before, owners)).toBe(before.filter((o) => o === leaver.id).length);
        }
        const counts = set.map((x) => owners.filter((o) => o === x.id).length);
        for (const c of counts) expect([Math.floor(shards / set.length), Math.ceil(shards / set.length)]).toContain(c);
        // At rest: computing again from what it gave moves nothing.
        expect(assignShards(set, shards, owners)).toEqual(owners);
      }
    }
  });

  it("a join or a leave starts exactly the minimum of terms, none twice, whatever order the hand-overs take", () => {
    for (let seed = 1; seed <= 150; seed++) {
      const random = prng(seed);
      const shards = [7, 10, 64, 100][seed % 4]!;
      let next = 0;
      const fresh = (): Member => ({ id: `${seed}-${++next}`, identity: `pod-${Math.floor(random() * 1e9)}` });
      let set: Member[] = [fresh(), fresh()];
      let holders = transition(set, shards, [], random).holders;
      for (let step = 0; step < 8; step++) {
        const before = holders;
        let minimum: number;
        if (set.length < 3 || (set.length < 7 && random() < 0.5)) {
          set = [...set, fresh()];
          minimum = countMoves(before, assignShards(set, shards, before));
        } else {
          const leaver = set[Math.floor(random() * set.length)]!;
          set = set.filter((x) => x !== leaver);
          minimum = before.filter((o) => o === leaver.id).length;
        }
        const { started, holders: after } = transition(set, shards, before, random);
        expect({ seed, step, started: started.reduce((x, y) => x + y, 0) }).toEqual({ seed, step, started: minimum });
        expect(started.filter((n) => n > 1)).toEqual([]);
        expect(countMoves(before, after)).toBe(minimum);
        holders = after;
      }
    }
  });

  it("M = 20 members, S = 64 or 1,000: a join or a leave moves the minimum, not twice it", () => {
    for (const shards of [64, 1000]) {
      const set = members(21);
      const before = assignShards(set.slice(0, 20), shards);
      const joined = assignShards(set, shards, before);
      expect(countMoves(before, joined)).toBeLessThanOrEqual(Math.ceil(shards / 21));
      for (const leaver of set.slice(0, 20)) {
        const after = assignShards(
          set.slice(0, 20).filter((x) => x !== leaver),
          shards,
          before,
        );
        expect(countMoves(before, after)).toBe(before.filter((o) => o === leaver.id).length);
      }
    }
  });

  it("shards in flight (no holder, or held by one that is no longer a member) go where there is room", () => {
    const set = members(3);
    const before = assignShards(set, 9);
    const inFlight = before.map((o, s) => (s % 4 === 0 ? undefined : s === 1 ? "gone" : o));
    const after = assignShards(set, 9, inFlight);
    for (const x of set) expect(after.filter((o) => o === x.id)).toHaveLength(3);
    expect(after.filter((o, s) => inFlight[s] !== undefined && inFlight[s] !== "gone" && o !== inFlight[s])).toEqual(
      [],
    );
  });

  it("a member that comes back under its identity gets its shards back", () => {
    const set = members(4);
    const before = assignShards(set, 64);
    const restarted = set.map((x, i) => (i === 2 ? { id: "ffff", identity: x.identity } : x));
    const after = assignShards(restarted, 64, before);
    expect(after.map((o) => (o === "ffff" ? set[2]!.id : o))).toEqual(before);
    // From nothing too: placement is by identity.
    expect(assignShards(restarted, 64).map((o) => (o === "ffff" ? set[2]!.id : o))).toEqual(before);
  });

  it("is pinned: the same members and holders give the same owners in every version (a change must be seen)", () => {
    const set = members(3);
    expect(assignShards(set, 12).join(",")).toBe(GOLDEN_FRESH);
    const held = ["1000", "1000", "1000", "1000", "1000", "1000", "1001", "1001", "1001", undefined, undefined, "1002"];
    expect(assignShards(set, 12, held).join(",")).toBe(GOLDEN_HELD);
    expect(assignShards(set, 13, ["1001", "1001", "1001", "1000"]).join(",")).toBe(GOLDEN_CEIL_BY_HASH);
    expect(assignShards(set, 13, ["1001", "1001", "1001", "1001", "1001", "1000"]).join(",")).toBe(GOLDEN_CEIL_HELD);
  });

  it("members of one identity still split the shards (ties broken by id)", () => {
    const twins: Member[] = [
      { id: "a1", identity: "same" },
      { id: "b2", identity: "same" },
    ];
    expect([...loads(assignShards(twins, 64)).values()]).toEqual([32, 32]);
  });
});

describe("shardOf", () => {
  it("maps a key to the same shard in every process, spread evenly", () => {
    expect(shardOf("customer-42", 64)).toBe(shardOf("customer-42", 64));
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 16_000; i++) counts[shardOf(`customer-${i}`, 16)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(800);
    for (const c of counts) expect(c).toBeLessThan(1200);
    for (let i = 0; i < 100; i++) expect(shardOf(`k${i}`, 7)).toBeLessThan(7);
  });

  it("pins the hash: a new version must not move work items between shards", () => {
    const pinned = [shardOf("customer-42", 64), shardOf("", 64), shardOf("é", 1000), shardOf("tenant-7", 10_000)];
    expect(pinned).toEqual([12, 11, 943, 2060]);
  });

  it("refuses a bad shard count or key with INVALID_ARGUMENT", () => {
    for (const bad of [0, -1, 1.5, Number.NaN, 100_001, "64"]) {
      expect(() => shardOf("x", bad as number)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
    expect(() => shardOf(42 as unknown as string, 8)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});
