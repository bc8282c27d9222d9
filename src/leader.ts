import type { IKeyValue } from "etcd3";
import { deadlineIn } from "./common/client.js";
import { queueRange } from "./queue.js";
import type { Session } from "./session.js";

/** The current leader as etcd stores it. */
export interface Leader {
  /** The leader's candidate key (relative to the client's namespace). */
  key: string;
  value: Buffer;
  /** The leader's fencing token: the create revision of its key. */
  token: bigint;
  /** The lease the key is attached to, as a decimal string. */
  leaseId: string;
}

/** @internal The leader and the revision it was read at. */
export async function readLeader(session: Session, name: string): Promise<{ leader: Leader | undefined; revision: bigint }> {
  const res = await session.client.kv.range(queueRange(session, name, { limit: 1, values: true }), deadlineIn(session.callTimeoutMs));
  const kv = res.kvs[0];
  return { leader: kv && toLeader(session, kv), revision: BigInt(res.header.revision) };
}

const toLeader = (session: Session, kv: IKeyValue): Leader => ({
  key: session.keyspace.relative(kv.key),
  value: kv.value,
  token: BigInt(kv.create_revision),
  leaseId: kv.lease,
});
