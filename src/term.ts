import { deadlineIn } from "./common/client.js";
import { toValueBuffer } from "./common/validate.js";
import { NotLeaderError } from "./errors.js";
import { Holding } from "./holding.js";
import type { Ticket } from "./queue.js";
import type { Session } from "./session.js";

/** One term of leadership: from the campaign that won until resign, loss of the session, or loss of the key. */
export class Term extends Holding {
  /** @internal */
  constructor(session: Session, ticket: Ticket, leaveLine: () => void) {
    super(session, ticket, (message, cause) => new NotLeaderError(`not the leader: ${message}`, { cause }), leaveLine);
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
    const buf = toValueBuffer(value);
    this.assertHeld();
    const full = this.session.keyspace.full(this.key);
    const res = await this.session.client.kv.txn(
      {
        compare: [{ key: full, result: "Equal", target: "Create", create_revision: this.token.toString() }],
        success: [{ request_put: { key: full, value: buf, lease: this.session.leaseId } }],
        failure: [],
      },
      deadlineIn(this.session.callTimeoutMs),
    );
    if (!res.succeeded) {
      const err = new NotLeaderError("not the leader: proclaim refused by etcd, the key is gone or belongs to a newer term");
      this.abandon(err);
      throw err;
    }
    this.currentValue = buf;
  }

  /** Gives up leadership: deletes our key if it is still ours and aborts `signal`. Idempotent. */
  resign(): Promise<void> {
    return this.release();
  }
}
