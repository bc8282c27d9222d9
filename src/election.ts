import { toValueBuffer, validateSignal } from "./common/validate.js";
import { assertUsable } from "./session/context.js";
import { NameConflictError, NotLeaderError } from "./errors.js";
import { readLeader, type Leader } from "./leader.js";
import { observeLeader } from "./election/observe.js";
import { campaignOrStepAside } from "./election/handover.js";
import { Primitive } from "./queue/primitive.js";
import type { Session } from "./session.js";
import { Term } from "./term.js";

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
   * (confirmed by etcd, or gone with the session) and then rejects; a campaign never resolves after
   * that. A second campaign on the same name through the same session, while one is pending or
   * leading, rejects with NameConflictError (one key per name per session).
   */
  async campaign(value: string | Buffer | Uint8Array, options: { signal?: AbortSignal } = {}): Promise<Term> {
    const buf = toValueBuffer(value, "candidate value", this.context.maxValueBytes);
    const signal = validateSignal(options.signal);
    signal?.throwIfAborted();
    assertUsable(this.context);
    const leave = this.context.names.line(this.name, this.kind).tryEnter();
    if (!leave) throw new NameConflictError(`already campaigning or leading "${this.name}" through this session`);
    try {
      // A waiter ahead of a hand-over's target steps aside (joins again behind it) within this one call.
      const ticket = await campaignOrStepAside(
        this.context,
        this.name,
        buf,
        signal,
        (m) => new NotLeaderError(`campaign failed: ${m}`),
      );
      return Term.of(this.context, ticket, leave);
    } catch (err) {
      leave();
      throw err;
    }
  }

  /** The current leader (oldest candidate of the name), read linearizably; undefined if none. */
  async leader(): Promise<Leader | undefined> {
    return (await readLeader(this.context, this.name)).leader;
  }

  /**
   * A latest-state stream of the leader: the current one first (or undefined), then the newest state
   * after each change of leader or value. Changes it could not see may be merged; an item never repeats
   * and a leader's token never decreases. Survives reconnects, member restarts and compaction. Ends
   * (throwing the reason) when `signal` aborts or the session is closed; it needs no lease, so it goes
   * on through a lost session.
   */
  observe(options: { signal?: AbortSignal } = {}): AsyncGenerator<Leader | undefined, void, undefined> {
    return observeLeader(this.context, this.name, validateSignal(options.signal));
  }
}
