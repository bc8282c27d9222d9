import { toValueBuffer, validateSignal } from "./common/validate.js";
import { NameConflictError, NotLeaderError } from "./errors.js";
import { readLeader, type Leader } from "./leader.js";
import { observeLeader } from "./observe.js";
import { acquire, type QueuePolicy } from "./queue.js";
import { Primitive } from "./primitive.js";
import type { Session } from "./session.js";
import { Term } from "./term.js";

/** Elections wait only on the immediate predecessor: a release wakes the next in line, nobody else. */
export const predecessorPolicy: QueuePolicy = {
  lookahead: 1,
  readValues: false,
  blocking: (ahead) => {
    const last = ahead.at(-1);
    return last ? { keys: [last], needed: 1 } : undefined;
  },
};

/**
 * Leader election on `<name>/`, compatible with etcd's Go `concurrency` package and `etcdctl elect`:
 * candidates queue by the create revision of `<name>/<lease hex>`; the lowest leads.
 */
export class Election extends Primitive {

  constructor(session: Session, name: string) {
    super(session, name, "election");
  }

  /**
   * Resolves once this candidate leads. Abort, timeout or session loss while waiting removes our key
   * and rejects; a campaign never resolves after that. A second campaign on the same name through the
   * same session, while one is pending or leading, rejects with NameConflictError (rule 6).
   */
  async campaign(value: string | Buffer | Uint8Array, options: { signal?: AbortSignal } = {}): Promise<Term> {
    const buf = toValueBuffer(value, "candidate value");
    const signal = validateSignal(options.signal);
    signal?.throwIfAborted();
    this.session.assertUsable();
    const leave = this.session.line(this.name, "election").tryEnter();
    if (!leave) throw new NameConflictError(`already campaigning or leading "${this.name}" through this session`);
    try {
      const ticket = await acquire(this.session, this.name, buf, predecessorPolicy, {
        signal,
        vanished: (m) => new NotLeaderError(`campaign failed: ${m}`),
      });
      return new Term(this.session, ticket!, leave);
    } catch (err) {
      leave();
      throw err;
    }
  }

  /** The current leader (lowest create revision under the name), read linearizably; undefined if none. */
  async leader(): Promise<Leader | undefined> {
    return (await readLeader(this.session, this.name)).leader;
  }

  /**
   * A latest-state stream of the leader: the current one first (or undefined), then the newest state
   * after each change of leader or value. Changes it could not see may be merged; an item never repeats
   * and a leader's token never decreases. Survives reconnects, member restarts and compaction. Ends
   * (throwing the reason) when `signal` aborts or the session is closed; it needs no lease, so it goes
   * on through a lost session.
   */
  observe(options: { signal?: AbortSignal } = {}): AsyncGenerator<Leader | undefined, void, undefined> {
    return observeLeader(this.session, this.name, validateSignal(options.signal));
  }
}

export type { Leader };
