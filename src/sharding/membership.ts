import { assertUsable, contextOf } from "../session/context.js";
import { toValueBuffer } from "../common/validate.js";
import { NameConflictError, NotLeaderError } from "../errors.js";
import type { QueuePolicy } from "../queue/policies.js";
import { acquire } from "../queue/queue.js";
import type { Session } from "../session.js";
import { Term } from "../term.js";

/** Members never wait on one another: every member of the group is in at once. */
const memberPolicy: QueuePolicy = { lookahead: 1, readValues: false, nearest: 0, blocking: () => undefined };

/**
 * Announces this session in the group `name` (a sharded elector's `<name>/members`): the queue key
 * `<name>/members/<lease hex>`, put if absent on the session's lease, with `identity` as its value. The
 * same queue and hold as an election's (safe to retry, leftovers replaced, rule 2), with a policy that
 * never waits: the returned hold's signal aborts if the key is deleted or the session is lost, and its
 * `resign()` removes the key, confirmed.
 */
export async function joinGroup(session: Session, name: string, identity: string, signal: AbortSignal): Promise<Term> {
  const ctx = contextOf(session);
  const value = toValueBuffer(identity, "identity", ctx.maxValueBytes);
  signal.throwIfAborted();
  assertUsable(ctx);
  const leave = ctx.names.line(name, "election").tryEnter();
  if (!leave) throw new NameConflictError(`already a member of "${name}" through this session`);
  try {
    const ticket = await acquire(ctx, name, value, memberPolicy, {
      signal,
      vanished: (m) => new NotLeaderError(`joining failed: ${m}`),
    });
    return Term.of(ctx, ticket, leave);
  } catch (err) {
    leave();
    throw err;
  }
}
