/**
 * The chaos checker's rules on hand-made histories (test/chaos/checker.ts): what passes, what is a
 * violation, and what is set apart as etcd #15247. And the seeded schedule.
 */
import { describe, expect, it } from "vitest";
import { check } from "../chaos/checker.js";
import { faultFigures } from "../chaos/figures.js";
import { FAULT_KINDS, type History, type HistoryEvent, type LogEntry, type RegisterData } from "../chaos/history.js";
import { everyFaultOnce, soak } from "../chaos/schedule.js";

/** A log of `entries` (token, worker, op), committed in order, each written once; the counter matches. */
function register(entries: [string, string, string][]): RegisterData {
  return {
    counter: entries.length
      ? { value: entries.length, version: entries.length, modRevision: 100 + entries.length }
      : null,
    log: entries.map(([token, worker, op], i) => ({
      seq: i + 1,
      version: 1,
      modRevision: 101 + i,
      entry: { token, worker, op, value: i + 1 } satisfies LogEntry,
    })),
  };
}

/** An op issued (and, unless told otherwise, acknowledged) by `w` under `token`, at `t`. */
function write(w: string, token: string, op: string, value: number, t: number, outcome?: HistoryEvent): HistoryEvent[] {
  return [
    { t, w, e: "op", kind: "election", op, token, value },
    outcome ?? { t: t + 1, w, e: "ok", kind: "election", op },
  ];
}

const hold = (
  w: string,
  token: string,
  start: number,
  end?: number,
  message = "not the leader: released",
): HistoryEvent[] => [
  { t: start, w, e: "start", kind: "election", token, key: `n/${w}` },
  ...(end === undefined
    ? []
    : [{ t: end, w, e: "end", kind: "election", token, code: "NOT_LEADER", message } as HistoryEvent]),
];

function history(events: HistoryEvent[], election = register([]), endedAt = 100_000): History {
  return {
    seed: 7,
    replay: "npm run chaos -- --seed 7",
    etcdVersion: "3.5.16",
    image: "etcd-election/etcd:3.5.16-local",
    workers: 2,
    ttlMs: 3000,
    electionTimeoutMs: 1000,
    recoveryBoundMs: 7500,
    startedAt: 0,
    endedAt,
    events: [...events].sort((a, b) => a.t - b.t),
    data: { election, mutex: register([]) },
  };
}

/** a leads with token 10 from 1000 to 5000 and writes once; b leads with 20 from `bStart` and writes once. */
function handOver(bStart: number, aEnd = 5000, aMessage?: string): { events: HistoryEvent[]; data: RegisterData } {
  return {
    events: [
      ...hold("a", "10", 1000, aEnd, aMessage),
      ...write("a", "10", "a-1", 1, 1100),
      ...hold("b", "20", bStart),
      ...write("b", "20", "b-1", 2, bStart + 100),
    ],
    data: register([
      ["10", "a", "a-1"],
      ["20", "b", "b-1"],
    ]),
  };
}

describe("the chaos checker", () => {
  it("passes a clean hand-over, and counts the committed increments", () => {
    const { events, data } = handOver(6000);
    const verdict = check(history(events, data));
    expect(verdict.violations).toEqual([]);
    expect(verdict.ok).toBe(true);
    expect(verdict.committed.election).toBe(2);
  });

  it("fails two holds that overlap with nobody paused, naming both", () => {
    const { events, data } = handOver(4000);
    const verdict = check(history(events, data));
    expect(verdict.ok).toBe(false);
    expect(verdict.violations[0]?.rule).toBe("election: holds overlap");
    expect(verdict.violations[0]?.message).toMatch(/a \(token 10.*b \(token 20/);
  });

  it("checks each shard as a kind of its own: holds of two shards may overlap, two holds of one shard may not", () => {
    // One shard's hand-over, its ops named apart (op ids are unique per worker in a run).
    const shard = (kind: "shard/0" | "shard/1", bStart: number): { events: HistoryEvent[]; data: RegisterData } => {
      const { events, data } = handOver(bStart);
      return {
        events: events.map((e) =>
          "kind" in e ? ({ ...e, kind, ...("op" in e ? { op: `${kind}:${e.op}` } : {}) } as HistoryEvent) : e,
        ),
        data: { ...data, log: data.log.map((l) => ({ ...l, entry: { ...l.entry, op: `${kind}:${l.entry.op}` } })) },
      };
    };
    const run = (
      s0: { events: HistoryEvent[]; data: RegisterData },
      s1: { events: HistoryEvent[]; data: RegisterData },
    ): History => ({
      ...history([...s0.events, ...s1.events]),
      data: { election: register([]), mutex: register([]), "shard/0": s0.data, "shard/1": s1.data },
    });
    // The same two workers hold shard 0 and shard 1 at once: fine.
    const both = run(shard("shard/0", 6000), shard("shard/1", 6000));
    expect(check(both).violations).toEqual([]);
    expect(check(both).committed["shard/1"]).toBe(2);
    const bad = run(shard("shard/0", 6000), shard("shard/1", 4000));
    expect(check(bad).violations.map((v) => v.rule)).toEqual(["shard/1: holds overlap"]);
  });

  it("excuses an overlap while the earlier holder was SIGSTOPped and up to 100 ms after SIGCONT, not later", () => {
    const paused = (endAfterContMs: number): History => {
      const { events, data } = handOver(4000, 8000 + endAfterContMs);
      return history([...events, { t: 2000, w: "a", e: "sigstop" }, { t: 8000, w: "a", e: "sigcont" }], data);
    };
    expect(check(paused(90)).violations).toEqual([]);
    expect(check(paused(150)).violations.map((v) => v.rule)).toEqual(["election: holds overlap"]);
  });

  it("ends a SIGKILLed worker's hold at the kill", () => {
    const { events, data } = handOver(6000, Infinity);
    const verdict = check(
      history(
        [
          ...events.filter((e) => e.e !== "end"),
          { t: 3000, w: "a", e: "sigkill" },
          { t: 3010, w: "a", e: "exit", code: null, signal: "SIGKILL" },
        ],
        data,
      ),
    );
    expect(verdict.violations).toEqual([]);
    expect(verdict.intervals.find((i) => i.w === "a")?.end).toBe(3000);
  });

  it("sets etcd #15247 apart: told by etcd, right after a raft-leader resume, fencing intact", () => {
    const told = "not the leader: lost with the session (session lost: etcd reports the lease expired or revoked)";
    const { events, data } = handOver(4000, 4300, told);
    const verdict = check(history([...events, { t: 3900, e: "raft-resume", member: "m0" }], data));
    expect(verdict.violations).toEqual([]);
    expect(verdict.etcdBugs).toHaveLength(1);
    expect(verdict.etcdBugs[0]).toMatchObject({ overlapMs: 300, afterResumeMs: 100 });
    expect(verdict.etcdRevokes).toMatchObject([{ hold: { w: "a", token: "10" }, afterResumeMs: 400 }]);
  });

  it("does not excuse as etcd #15247 an overlap without a resume, one the holder's own clock ended, or one where fencing failed", () => {
    const told = "our key n/a was deleted";
    const noResume = handOver(4000, 4300, told);
    expect(check(history(noResume.events, noResume.data)).ok).toBe(false);
    const ownClock = handOver(
      4000,
      4300,
      "session lost: no keepalive acknowledged within the 3s TTL less a 250 ms margin",
    );
    expect(check(history([...ownClock.events, { t: 3900, e: "raft-resume", member: "m0" }], ownClock.data)).ok).toBe(
      false,
    );
    const unfenced = handOver(4000, 4300, told);
    unfenced.data.log[1]!.version = 2;
    const verdict = check(history([...unfenced.events, { t: 3900, e: "raft-resume", member: "m0" }], unfenced.data));
    expect(verdict.etcdBugs).toEqual([]);
    expect(verdict.violations.map((v) => v.rule)).toContain("election: holds overlap");
  });

  it("finds lost updates, gaps, decreasing tokens, phantoms and refused writes that committed", () => {
    const rules = (events: HistoryEvent[], data: RegisterData): string[] =>
      check(history(events, data)).violations.map((v) => v.rule);
    const { events, data } = handOver(6000);

    const overwritten = structuredClone(data);
    overwritten.counter!.version = 3;
    expect(rules(events, overwritten)).toContain("election: lost update");

    const gap = structuredClone(data);
    gap.log.shift();
    expect(rules(events, gap)).toEqual(
      expect.arrayContaining(["election: gap", "election: lost update", "election: count"]),
    );

    const backwards = register([
      ["20", "b", "b-1"],
      ["10", "a", "a-1"],
    ]);
    expect(
      rules(
        [
          ...hold("a", "10", 1000, 5000),
          ...write("a", "10", "a-1", 2, 1100),
          ...hold("b", "20", 6000),
          ...write("b", "20", "b-1", 1, 6100),
        ],
        backwards,
      ),
    ).toContain("election: token decreased");

    const phantom = register([["10", "a", "a-99"]]);
    expect(rules(events.slice(0, 4), phantom)).toContain("election: phantom");

    const refused = write("a", "10", "a-1", 1, 1100, {
      t: 1101,
      w: "a",
      e: "rejected",
      kind: "election",
      op: "a-1",
      stale: true,
      code: "NOT_LEADER",
    });
    expect(rules([...hold("a", "10", 1000, 5000), ...refused], register([["10", "a", "a-1"]]))).toContain(
      "election: refused write committed",
    );
  });

  it("resolves a write of unknown outcome by the log", () => {
    const unknown = (op: string, t: number): HistoryEvent => ({
      t,
      w: "a",
      e: "unknown",
      kind: "election",
      op,
      code: "ETCD_UNAVAILABLE",
      message: "deadline",
    });
    const events = [
      ...hold("a", "10", 1000, 5000),
      ...write("a", "10", "a-1", 1, 1100, unknown("a-1", 1101)),
      ...write("a", "10", "a-2", 2, 1200, unknown("a-2", 1201)),
    ];
    const verdict = check(history(events, register([["10", "a", "a-1"]])));
    expect(verdict.violations).toEqual([]);
    expect(verdict.ops.map((o) => [o.op, o.outcome, o.committed])).toEqual([
      ["a-1", "unknown", true],
      ["a-2", "unknown", false],
    ]);
  });

  it("fails an unhealthy follower, a failed recovery check and a worker that exits unasked", () => {
    const verdict = check(
      history([
        { t: 10, w: "a", e: "status", leader: false, healthy: false },
        { t: 20, e: "check", n: 1, rule: "leader-again", ok: false, ms: 7500, detail: "nobody leads" },
        { t: 30, w: "b", e: "exit", code: 1, signal: null, stderr: "boom" },
      ]),
    );
    expect(verdict.violations.map((v) => v.rule)).toEqual(["healthy", "recovery: leader-again", "worker exit"]);
  });

  it("fails an error the library logs that no fault explains, and a Node warning; passes a lost session and a step-down during a fault", () => {
    const stepDown = "write w1-7 outcome unknown (DEADLINE_EXCEEDED): stepping down";
    const verdict = check(
      history([
        { t: 5, e: "fault", n: 1, kind: "cut-worker", phase: "start", detail: "" },
        { t: 9, e: "fault", n: 1, kind: "cut-worker", phase: "heal", detail: "" },
        { t: 10, w: "a", e: "log", level: "error", msg: "session lost", code: "SESSION_LOST" },
        { t: 11, w: "a", e: "log", level: "error", msg: "onAcquired threw; releasing the shard", err: stepDown },
        { t: 12, w: "a", e: "log", level: "error", msg: "onAcquired threw; releasing the shard", err: "TypeError: x" },
        { t: 13, w: "b", e: "log", level: "error", msg: "shard slot failed", code: "ERROR", err: "boom" },
        { t: 14, w: "b", e: "log", level: "warn", msg: "watch stream broke; re-opening it (watchers read again)" },
        { t: 15, w: "b", e: "log", level: "node-warning", msg: "(node:42) MaxListenersExceededWarning: ..." },
        // Long after the heal (TTL + election timeout + call deadline): no fault explains a lost session.
        { t: 9 + 3000 + 1000 + 5000 + 1, w: "a", e: "log", level: "error", msg: "session lost" },
      ]),
    );
    expect(verdict.violations.map((v) => [v.rule, v.at])).toEqual([
      ["library error", 12],
      ["library error", 13],
      ["node warning", 15],
      ["library error", 9010],
    ]);
  });
});

describe("the sharded workload's figures", () => {
  const shardHold = (w: string, shard: number, token: string, start: number, end: number): HistoryEvent[] => [
    { t: start, w, e: "start", kind: `shard/${shard}`, token, key: `g/shards/${shard}/${w}` },
    { t: end, w, e: "end", kind: `shard/${shard}`, token, code: "NOT_LEADER", message: "not the leader" },
  ];
  const run = (kind: "pause-worker" | "cut-worker", events: HistoryEvent[]): History => ({
    ...history([
      { t: 2000, e: "fault", n: 1, kind, phase: "start", detail: "", shardTarget: "s1" },
      { t: 7000, e: "fault", n: 1, kind, phase: "heal", detail: "" },
      { t: 7600, e: "check", n: 1, rule: "shards-balanced", ok: true, ms: 600, detail: "" },
      ...events,
    ]),
    shardedWorkers: 2,
  });

  it("times a paused sharded worker's shards taken over by the last of them, and its notice by its last term's end", () => {
    const events = [
      { t: 2000, w: "w1", e: "sigstop" }, // the election's leader, stopped first
      { t: 2400, w: "s1", e: "sigstop" },
      { t: 6000, w: "s1", e: "sigcont" },
      ...shardHold("s1", 0, "10", 1000, 6005),
      ...shardHold("s1", 1, "11", 1000, 6008),
      ...shardHold("s2", 0, "20", 5000, 9000),
      ...shardHold("s2", 1, "21", 5200, 9000),
      ...shardHold("s2", 2, "22", 1000, 9000), // not the target's: no part of its figures
    ] as HistoryEvent[];
    const h = run("pause-worker", events);
    const [f] = faultFigures(h, check(h));
    // Timed from its own SIGSTOP, not the fault's start (the first SIGSTOP).
    expect(f?.shards).toMatchObject({ takenOverMs: 2800, noticeAfterResumeMs: 8, balancedMs: 600 });
  });

  it("gives a cut-off sharded worker's least gap before a shard's next term, and no take-over time while a shard was not taken", () => {
    const taken = run("cut-worker", [
      ...shardHold("s1", 0, "10", 1000, 4500),
      ...shardHold("s1", 1, "11", 1000, 4600),
      ...shardHold("s2", 0, "20", 5000, 9000),
      ...shardHold("s2", 1, "21", 4900, 9000),
    ]);
    expect(faultFigures(taken, check(taken))[0]?.shards).toMatchObject({ takenOverMs: 3000, gapBeforeNextMs: 300 });
    const notTaken = run("cut-worker", [
      ...shardHold("s1", 0, "10", 1000, 4500),
      ...shardHold("s1", 1, "11", 1000, 4600),
      ...shardHold("s2", 0, "20", 5000, 9000),
    ]);
    expect(faultFigures(notTaken, check(notTaken))[0]?.shards?.takenOverMs).toBeUndefined();
  });
});

describe("the chaos schedule", () => {
  it("has every fault once, in an order the seed fixes", () => {
    const a = everyFaultOnce(42);
    expect(a.map((p) => p.kind).sort()).toEqual([...FAULT_KINDS].sort());
    expect(everyFaultOnce(42)).toEqual(a);
    expect(everyFaultOnce(43).map((p) => p.kind)).not.toEqual(a.map((p) => p.kind));
  });

  it("soaks in rounds of every fault, starting with the CI schedule of the same seed", () => {
    const plans = soak(42);
    const k = FAULT_KINDS.length;
    const first = Array.from({ length: 3 * k }, () => plans.next().value);
    expect(first.slice(0, k)).toEqual(everyFaultOnce(42));
    for (let round = 0; round < 3; round++)
      expect(new Set(first.slice(round * k, round * k + k).map((p) => p.kind)).size).toBe(k);
  });
});
