import { toValueBuffer } from "./common/validate.js";
import type { SessionContext } from "./session/context.js";
import { txn } from "./etcd/kv.js";
import { NotLeaderError } from "./errors.js";
import { Holding } from "./holding.js";
import type { Ticket } from "./queue/queue.js";

/** One term of leadership: from the campaign that won until resign, loss of the session, or loss of the key. */
export class Term extends Holding {
  private constructor(ctx: SessionContext, ticket: Ticket, leaveLine: () => void) {
    super(ctx, ticket, (message, cause) => new NotLeaderError(`not the leader: ${message}`, { cause }), leaveLine);
    this.predecessorGoneAt = ticket.blockerGoneAt;
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
}
