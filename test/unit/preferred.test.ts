/**
 * Preferred leaders and hand-over requests: the pure decisions (whom to prefer, when, and against
 * flapping) on a fake clock. The hand-overs themselves run against etcd in test/integration/handover.test.ts.
 */
import { describe, expect, it } from "vitest";
import { mustStepAside, parseRequest, encodeRequest, handoverKey } from "../../src/election/handover.js";
import {
  choosePreferred,
  priorityPrefix,
  PreemptionPlanner,
  type PriorityCandidate,
} from "../../src/election/preferred.js";
import { inQueue } from "../../src/etcd/keyspace.js";
import { isElectionError } from "../../src/errors.js";
import { LeaderElector } from "../../src/leader-elector.js";
import { FakeBackend, FakeClock } from "../support/fake-elector.js";

const cand = (key: string, createRevision: number, priority: number): PriorityCandidate => ({
  key,
  createRevision: BigInt(createRevision),
  priority,
});

describe("choosePreferred", () => {
  it("keeps the lead among equals and lower priorities; else picks the highest, the first in line among equals", () => {
    expect(choosePreferred(1, [cand("n/b", 11, 1), cand("n/c", 12, 0)])).toBeUndefined();
    expect(choosePreferred(1, [cand("n/b", 11, 2), cand("n/c", 12, 3), cand("n/d", 13, 3)])?.key).toBe("n/c");
    expect(choosePreferred(0, [cand("n/d", 13, 5), cand("n/b", 11, 5)])?.key).toBe("n/b");
    expect(choosePreferred(0, [])).toBeUndefined();
  });
});

describe("PreemptionPlanner", () => {
  const rules = { priority: 1, preemptAfterMs: 0, holdDownMs: 10_000 };

  it("never picks again a target whose hand-over failed (same key and create revision); its next join is new", async () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    const planner = new PreemptionPlanner(clock, rules, (k) => fired.push(k));
    planner.update([cand("n/b", 11, 1), cand("n/c", 12, 2)]);
    await clock.advance(10_000);
    expect(fired).toEqual(["n/c"]);
    planner.failed({ key: "n/c", createRevision: 12n }); // stuck behind an etcdctl candidate, say
    await clock.advance(100_000);
    expect(fired).toEqual(["n/c"]);
    planner.update([cand("n/b", 11, 1), cand("n/c", 12, 2), cand("n/d", 13, 2)]);
    await clock.advance(0);
    expect(fired).toEqual(["n/c", "n/d"]); // another candidate is tried
    planner.failed({ key: "n/d", createRevision: 13n });
    planner.update([cand("n/b", 11, 1), cand("n/c", 20, 2)]); // c left and came back: a new key
    await clock.advance(10_000);
    expect(fired).toEqual(["n/c", "n/d", "n/c"]);
    planner.close();
  });

  it("hands over only once the term is past its hold-down, then at once", async () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    const planner = new PreemptionPlanner(clock, rules, (k) => fired.push(k));
    planner.update([cand("n/b", 11, 1), cand("n/c", 12, 2)]);
    await clock.advance(9_999);
    expect(fired).toEqual([]);
    await clock.advance(1);
    expect(fired).toEqual(["n/c"]);
    planner.close();
  });

  it("waits preemptAfterMs from when the better candidate was first seen, and never for an equal one", async () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    const planner = new PreemptionPlanner(clock, { ...rules, preemptAfterMs: 5_000 }, (k) => fired.push(k));
    planner.update([cand("n/b", 11, 1)]);
    await clock.advance(20_000);
    expect(fired).toEqual([]);
    planner.update([cand("n/b", 11, 1), cand("n/c", 12, 2)]);
    await clock.advance(4_999);
    expect(fired).toEqual([]);
    await clock.advance(1);
    expect(fired).toEqual(["n/c"]);
    planner.close();
  });

  it("a flapping candidate starts its wait again each time it comes back (a new create revision)", async () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    const planner = new PreemptionPlanner(clock, { ...rules, preemptAfterMs: 5_000, holdDownMs: 0 }, (k) =>
      fired.push(k),
    );
    for (let i = 0; i < 5; i++) {
      planner.update([cand("n/h", 20 + i, 9)]);
      await clock.advance(4_000);
      planner.update([]); // gone again before its wait was over
      await clock.advance(1_000);
    }
    expect(fired).toEqual([]);
    planner.update([cand("n/h", 30, 9)]);
    await clock.advance(5_000);
    expect(fired).toEqual(["n/h"]);
    planner.close();
  });

  it("after a failed hand-over it waits another hold-down; close leaves no timer", async () => {
    const clock = new FakeClock();
    const fired: number[] = [];
    const planner = new PreemptionPlanner(clock, rules, () => fired.push(clock.now()));
    const start = clock.now();
    planner.update([cand("n/c", 12, 2)]);
    await clock.advance(10_000);
    expect(fired).toEqual([start + 10_000]);
    planner.failed();
    await clock.advance(9_000);
    expect(fired.length).toBe(1);
    await clock.advance(1_000);
    expect(fired).toEqual([start + 10_000, start + 20_000]);
    planner.failed();
    expect(clock.pending).toBe(1);
    planner.close();
    expect(clock.pending).toBe(0);
  });
});

describe("hand-over requests", () => {
  it("live beside the queue: never a queue key of any name, nor under <name>/", () => {
    for (const name of ["jobs/scheduler", "a", "a/b/c", "deadbeef"]) {
      for (const key of [handoverKey(name), `${priorityPrefix(name)}694d8a5c1f0e3b21`]) {
        expect(key.startsWith(`${name}/`)).toBe(false);
        const slash = key.lastIndexOf("/");
        if (slash > 0) expect(inQueue(key.slice(0, slash), key)).toBe(false);
      }
    }
  });

  it("a waiter steps aside only when it is ahead of the target and is not the target; stray values are ignored", () => {
    const from = { key: "n/a", token: 10n };
    const req = parseRequest(encodeRequest({ to: "n/c", token: 30n, from }));
    expect(req).toEqual({ to: "n/c", token: 30n, from });
    // Each attempt's value is its own (a withdrawal judges "ours" by it), and reads the same.
    const again = encodeRequest({ to: "n/c", token: 30n, from });
    expect(again.equals(encodeRequest({ to: "n/c", token: 30n, from }))).toBe(false);
    expect(parseRequest(again)).toEqual(req);
    expect(mustStepAside({ key: "n/b", createRevision: 20n }, req)).toBe(true);
    expect(mustStepAside({ key: "n/c", createRevision: 30n }, req)).toBe(false);
    expect(mustStepAside({ key: "n/b", createRevision: 31n }, req)).toBe(false); // already behind it
    const strays = [
      ...["", "x", "{}", '{"to":"n/c","token":30}', '{"to":1,"token":"30"}'],
      '{"to":"n/c","token":"30"}', // names no asker: obeyed by nobody
      '{"to":"n/c","token":"30","from":{"key":"n/a","token":10}}',
    ];
    for (const stray of strays)
      expect(mustStepAside({ key: "n/b", createRevision: 20n }, parseRequest(Buffer.from(stray)))).toBe(false);
  });
});

describe("LeaderElector's priority options", () => {
  it("bad priority or preemptAfterMs fails first, with INVALID_ARGUMENT", () => {
    const clock = new FakeClock();
    const make = (extra: object) => () =>
      LeaderElector.withSeam(
        { client: {} as never, name: "n", identity: "a", onStartedLeading: () => {}, logger: false, ...extra },
        { backend: new FakeBackend(clock), clock },
      );
    for (const bad of [{ priority: Number.NaN }, { priority: "1" }, { preemptAfterMs: -1 }]) {
      let caught: unknown;
      try {
        make(bad)();
      } catch (err) {
        caught = err;
      }
      expect(isElectionError(caught, "INVALID_ARGUMENT")).toBe(true);
    }
    expect(make({ priority: -2.5, preemptAfterMs: 0 })()).toBeInstanceOf(LeaderElector);
  });
});
