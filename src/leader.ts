import type { SessionContext } from "./session/context.js";
import { readQueue } from "./queue/queue.js";

/** The current leader as etcd stores it. */
export interface Leader {
  /** The leader's candidate key (relative to the client's namespace). */
  key: string;
  /** The leader's value: what it campaigned or last proclaimed with. */
  value: Buffer;
  /** The leader's fencing token: the create revision of its key. */
  token: bigint;
  /** The lease the key is attached to, as a decimal string. */
  leaseId: string;
}

/** The leader of `name` (the oldest key of its queue) and the revision it was read at, linearizably. */
export async function readLeader(
  ctx: SessionContext,
  name: string,
): Promise<{ leader: Leader | undefined; revision: bigint }> {
  const { entries, revision } = await readQueue(ctx, name, { limit: 1, values: true });
  const head = entries[0];
  return {
    leader: head && { key: head.key, value: head.value!, token: head.createRevision, leaseId: head.lease! },
    revision,
  };
}

/** Same leader, same value: nothing to tell. */
export const sameLeader = (a: Leader | undefined, b: Leader | undefined): boolean =>
  a === b || (!!a && !!b && a.key === b.key && a.token === b.token && a.value.equals(b.value));
