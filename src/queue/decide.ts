import type { Endpoint } from "../etcd/internals.js";
import type { QueueEntry } from "./policies.js";

/** Where a waiter learned that the last key blocking it went: the delete's revision, and the member that told it. */
export interface EventPoint {
  revision: bigint;
  /** It has applied `revision`: a serializable read there sees the delete, served from its own store. */
  endpoint: Endpoint;
}

/**
 * How a read of the queue was made: linearizable (now), or serializable on the member that told the
 * delete, at its latest revision (at least the delete's, maybe behind the cluster's).
 */
export type ReadKind = "linearizable" | "serializable";

/** What a read of the queue up to our own key tells. */
export type ReadVerdict =
  /** Our key, with our create revision, and what was ahead of it at the read's revision. */
  | { kind: "ours"; ahead: QueueEntry[] }
  /** A linearizable read without our key: it is gone now (deleted, or its lease expired). */
  | { kind: "vanished" }
  /** A serializable read without our key: only a linearizable read may say what that means. */
  | { kind: "undecided" };

/**
 * Judges a read of the queue up to our create revision (`entries`: the queue's own keys, any order).
 *
 * A serializable read at a member's revision H (design: Decide at the event's revision): a snapshot that
 * holds our key with our create revision was read at H >= that revision, so every key created after H
 * queues behind us; keys ahead of us can only disappear. Every policy's "blocked" only ever turns to "free"
 * as keys ahead go (`blocking` of a subset of a free queue is free), so "nothing blocks us at H" stays true
 * for as long as our key lives, which our own-key watch (from H) and re-reads tell from then on. A snapshot
 * without our key proves nothing of now: the linearizable read decides.
 */
export function judgeRead(
  own: { key: string; createRevision: bigint },
  entries: QueueEntry[],
  kind: ReadKind,
): ReadVerdict {
  const exists = entries.some((e) => e.createRevision === own.createRevision && e.key === own.key);
  if (!exists) return kind === "linearizable" ? { kind: "vanished" } : { kind: "undecided" };
  return { kind: "ours", ahead: entries.filter((e) => e.createRevision < own.createRevision) };
}

/** Why a serializable read on the event's member was not used. */
export type FallbackReason = "behind" | "leaderless" | "notInSnapshot" | "failed";

/**
 * How this process's waiters ended their waits (tests, the fault suite, benchmarks). Only reads made after
 * a wait count: the read that completes a join's limited look ahead is none of these.
 */
export interface DecisionCounts {
  /** Turns decided by a serializable read on the member that told the delete that woke the waiter (nothing blocked it there). */
  decidedSerializable: number;
  /** Turns decided by a linearizable read (no event revision known, or the serializable read could not be used). */
  decidedLinearizable: number;
  /** Reads after a wait (either kind) that still found keys blocking us: the waiter waited again. */
  stillBlocked: number;
  /** Linearizable reads after a wait without our key: the wait ended without the turn. */
  vanished: number;
  /** Serializable reads that were not used, by reason (each followed by a linearizable read). */
  fellBack: Record<FallbackReason, number>;
}

/** How a read after a wait ended: the turn (by which read), blocked again, or our key gone. */
export type ReadOutcome = ReadKind | "stillBlocked" | "vanished";

const zero = (): DecisionCounts => ({
  decidedSerializable: 0,
  decidedLinearizable: 0,
  stillBlocked: 0,
  vanished: 0,
  fellBack: { behind: 0, leaderless: 0, notInSnapshot: 0, failed: 0 },
});

const counts = zero();
/** The same counts per session (keyed by its context): a test counts one session's waiters, undisturbed by others. */
const bySession = new WeakMap<object, DecisionCounts>();

const copy = (c: DecisionCounts): DecisionCounts => ({ ...c, fellBack: { ...c.fellBack } });

/** A copy of the counts so far: this process's, or (given a session's context) that session's. */
export function decisionCounts(session?: object): DecisionCounts {
  if (session === undefined) return copy(counts);
  return copy(bySession.get(session) ?? zero());
}

function both(session: object, add: (c: DecisionCounts) => void): void {
  add(counts);
  let own = bySession.get(session);
  if (!own) bySession.set(session, (own = zero()));
  add(own);
}

/** Counts how a read made after a wait ended it (or did not). */
export function countDecision(session: object, outcome: ReadOutcome): void {
  both(session, (c) => {
    if (outcome === "serializable") c.decidedSerializable++;
    else if (outcome === "linearizable") c.decidedLinearizable++;
    else c[outcome]++;
  });
}

export function countFallback(session: object, reason: FallbackReason): void {
  both(session, (c) => c.fellBack[reason]++);
}
