import { EtcdError } from "../errors.js";
import type { QueueEntry } from "./policies.js";

/** What the join transaction (put-if-absent of our key, plus a look at the head of the queue) told us. */
export interface JoinAnswer {
  /** The put happened (our key was absent). */
  succeeded: boolean;
  /** The store revision of the transaction. */
  revision: bigint;
  /** Our key as found, when the put did not happen. */
  own?: { createRevision: bigint; value: Buffer } | undefined;
  /** The head of the queue, as read in the transaction (only the queue's own keys). */
  entries: QueueEntry[];
  /** How many keys the range returned before deeper names were filtered out. */
  rangeCount: number;
  /** How many entries the range was limited to (0: all). */
  lookahead: number;
}

export type JoinOutcome =
  /** We are in the queue at `createRevision`; `complete`: `ahead` is everything ahead of us. */
  | { kind: "queued"; createRevision: bigint; ahead: QueueEntry[]; complete: boolean }
  /**
   * Our key is there with another value (a reader's key for a writer), or an ended hold left it behind: a
   * leftover to delete first.
   */
  | { kind: "leftover"; createRevision: bigint };

/**
 * Decides what the join transaction means. A failed put-if-absent that finds our key with our value is
 * an earlier attempt of this very call, sent again: ours (design: Safe to retry), unless it is the key of
 * an ended hold (`leftBehind`, its create revision): adopting that would hand its token out again. The
 * lookahead saw
 * everything ahead of us when it reached our own key or the end of the queue, and no deeper key of
 * another name took a place in it (design: Names are exact).
 */
export function judgeJoin(answer: JoinAnswer, value: Buffer, leftBehind?: bigint): JoinOutcome {
  let createRevision = answer.revision;
  if (!answer.succeeded) {
    if (!answer.own) throw new EtcdError("etcd answered a failed put-if-absent without the key");
    createRevision = answer.own.createRevision;
    if (!answer.own.value.equals(value) || createRevision === leftBehind) return { kind: "leftover", createRevision };
  }
  const { entries, rangeCount, lookahead } = answer;
  const ahead = entries.filter((e) => e.createRevision < createRevision);
  const complete =
    lookahead === 0 ||
    (entries.length === rangeCount &&
      (rangeCount < lookahead || entries.some((e) => e.createRevision >= createRevision)));
  return { kind: "queued", createRevision, ahead, complete };
}
