import { toValueBuffer, validateSignal, validateTimeout } from "./common/validate.js";
import { handOverTerm } from "./election/handover.js";
import type { Leader } from "./leader.js";
import type { SessionContext } from "./session/context.js";
import { txn } from "./etcd/kv.js";
import { HandoverFailedError, NotLeaderError, type ElectionError } from "./errors.js";
import { Holding } from "./holding.js";
import type { Ticket } from "./queue/queue.js";

/** Whom {@link Term.handOver} hands the lead to, and how long it may take. */
export interface HandOverOptions {
  /**
   * The value (identity) of a waiting candidate to hand the lead to. If several share it, the newest (the
   * last to join: a restarted process's live key, not the dead key of its previous run). The candidates of
   * this library ahead of it step aside (they join again behind it). Default: whoever is next in line.
   */
  to?: string | Buffer | Uint8Array;
  /** How long the hand-over may take before it fails with HANDOVER_FAILED, the term still held (ms, default 10000). */
  timeoutMs?: number;
  /** Cancels the hand-over: it rejects with the signal's reason, the term still held (unless it already resigned). */
  signal?: AbortSignal;
}

/** A hand-over's options, checked (INVALID_ARGUMENT) before anything else is looked at. */
export function validateHandOver(
  options: HandOverOptions,
  maxValueBytes: number,
): { to: Buffer | undefined; timeoutMs: number; signal: AbortSignal | undefined } {
  const to = options.to === undefined ? undefined : toValueBuffer(options.to, "to", maxValueBytes);
  const timeoutMs = validateTimeout(options.timeoutMs, "timeoutMs") ?? 10_000;
  const signal = validateSignal(options.signal);
  return { to, timeoutMs, signal };
}

/** One term of leadership: from the campaign that won until resign, loss of the session, or loss of the key. */
export class Term extends Holding {
  private constructor(ctx: SessionContext, ticket: Ticket, leaveLine: () => void) {
    super(ctx, ticket, (message, cause) => new NotLeaderError(`not the leader: ${message}`, { cause }), leaveLine);
    this.predecessorGoneAt = ticket.blockerGoneAt;
    this.#name = ticket.name;
  }

  readonly #name: string;
  #handingOver = false;
  #handedOver = false;

  /** @internal A hand-over of this term is under way (one at a time). */
  get handingOver(): boolean {
    return this.#handingOver;
  }

  /** @internal This term ended by a hand-over: it resigned for one (its end is no loss). */
  get handedOver(): boolean {
    return this.#handedOver;
  }

  /** @internal When (monotonic ms) the campaign saw its predecessor's key go; undefined if it never waited. */
  readonly predecessorGoneAt: number | undefined;

  /** @internal */
  static of(ctx: SessionContext, ticket: Ticket, leaveLine: () => void): Term {
    return new Term(ctx, ticket, leaveLine);
  }

  /** The value last proclaimed (or campaigned with). */
  get value(): Buffer {
    return this.currentValue;
  }

  /**
   * Replaces the leader's value, guarded by the fencing token, keeping the key on the session lease.
   * Rejects with NotLeaderError when the term is gone. Safe to retry: the same put again changes nothing.
   */
  async proclaim(value: string | Buffer | Uint8Array): Promise<void> {
    const buf = toValueBuffer(value, "proclaimed value", this.context.maxValueBytes);
    this.assertHeld();
    const ctx = this.context;
    const full = ctx.keyspace.full(this.key);
    const res = await txn(
      ctx,
      {
        compare: [{ key: full, result: "Equal", target: "Create", create_revision: this.token.toString() }],
        success: [{ request_put: { key: full, value: buf, lease: ctx.lease.leaseId } }],
        failure: [],
      },
      `proclaim on ${this.key}`,
    );
    if (!res.succeeded) {
      const err = new NotLeaderError(
        "not the leader: proclaim refused by etcd, the key is gone or belongs to a newer term",
      );
      this.abandon(err);
      throw err;
    }
    this.currentValue = buf;
  }

  /**
   * Gives up leadership: aborts `signal` and deletes our key if it is still ours. Resolves once etcd
   * confirmed the key gone (retrying through outages), or the session ended. Idempotent.
   */
  resign(): Promise<void> {
    return this.release();
  }

  /**
   * Hands the lead over and resolves with the new leader, read from etcd once our key is gone: to the next
   * in line, or to the waiting candidate `to` names (those of this library ahead of it step aside and join
   * again behind it; nobody's key is deleted). Rejects with HANDOVER_FAILED, the term still held, when
   * there is no such candidate, one ahead of it cannot step aside (an `etcdctl elect` process, an older
   * version, a dead one), it went away, or `timeoutMs` passed; with the term's loss error if the term ends
   * meanwhile; with `options.signal`'s reason if it aborts first; with INVALID_ARGUMENT for bad options
   * (checked first). `timeoutMs` bounds the wait for candidates to step aside, the checks, the resign and
   * the read of the new leader. Once the resign has begun the term is over: a resign or read not confirmed
   * within `timeoutMs` is HANDOVER_FAILED with the term's signal aborted (the resign goes on in the
   * background until etcd confirms or the session ends). Every answer comes within `timeoutMs` + 1 s
   * however slow etcd is: the withdrawal of the request is waited for at most 1 s, then goes on in the
   * background (a request left meanwhile moves nobody once this term is over). The term's `signal` aborts
   * before our key goes, as with {@link resign}; a NOT_LEADER rejection ends the term too. One at a time.
   */
  async handOver(options: HandOverOptions = {}): Promise<Leader> {
    return this.handOverTo(validateHandOver(options, this.context.maxValueBytes));
  }

  /** @internal A hand-over to `to` (a value) or `toKey` (a candidate key): the elector's preferred leaders. */
  async handOverTo(target: {
    to?: Buffer | undefined;
    toKey?: string | undefined;
    timeoutMs: number;
    signal?: AbortSignal | undefined;
  }): Promise<Leader> {
    this.assertHeld();
    if (this.#handingOver)
      throw new HandoverFailedError(`a hand-over of this term of "${this.#name}" is already under way`);
    this.#handingOver = true;
    try {
      // The signal is made once and kept: reading it now is reading it always.
      const { context: ctx, key, token, signal } = this;
      const release = (): Promise<void> => {
        this.#handedOver = true; // before the signal aborts: whoever watches it sees a hand-over
        return this.release();
      };
      const lost = (err: ElectionError): void => this.abandon(err);
      return await handOverTerm({ ctx, name: this.#name, key, token, signal, release, lost }, target);
    } finally {
      this.#handingOver = false;
    }
  }
}
