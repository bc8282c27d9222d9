/**
 * The seeded schedule of faults. Everything random the runner decides (which fault, how long, which
 * member, which side of a partition) comes from here, so a seed names the schedule; what etcd and the
 * workers do in between is timing, which no seed fixes.
 */
import { prng, shuffled } from "../support/prng.js";
import { FAULT_KINDS, type FaultKind } from "./history.js";

/** One fault and the random choices it needs; the nemesis resolves "the leader" when it runs. */
export interface FaultPlan {
  kind: FaultKind;
  /** Extra length of the fault beyond its minimum (ms): pauses, cuts and outages vary in length. */
  extraMs: number;
  /** A member index (restart, isolate, the partition's minority), or -1 for "the raft leader". */
  member: number;
  /** For each worker slot, a draw in [0, 1): who goes to the partition's minority, which follower is cut. */
  draws: number[];
}

function plan(kind: FaultKind, random: () => number): FaultPlan {
  return {
    kind,
    extraMs: Math.round(random() * 1000),
    // Half the time the member faults hit the raft leader, where they hurt most.
    member: random() < 0.5 ? -1 : Math.floor(random() * 3),
    draws: Array.from({ length: 8 }, () => random()),
  };
}

/** Every fault kind once, in a seeded order: the CI schedule. */
export function everyFaultOnce(seed: number): FaultPlan[] {
  const random = prng(seed);
  return shuffled(FAULT_KINDS, random).map((kind) => plan(kind, random));
}

/**
 * An endless seeded schedule for soak runs: rounds of every fault kind in a fresh seeded order, so
 * each kind comes up as often as the others. The runner takes faults from it until its time is up.
 */
export function* soak(seed: number): Generator<FaultPlan, never> {
  for (let round = 0; ; round++) yield* everyFaultOnce((seed + Math.imul(round, 0x9e3779b1)) >>> 0);
}
