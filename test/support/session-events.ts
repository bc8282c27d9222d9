import type { Etcd3 } from "etcd3";
import type { Session } from "../../src/index.js";

/** The TTL etcd reports for a lease now (-1 once it is gone). */
export const serverTtl = async (client: Etcd3, leaseId: string): Promise<number> =>
  Number((await client.leaseClient.leaseTimeToLive({ ID: leaseId })).TTL);

/** Resolves with the first emission of `event` (rejects after `timeoutMs`). */
export function once(
  session: Session,
  event: "suspended" | "reconnected" | "lost" | "closed",
  timeoutMs = 30_000,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no "${event}" within ${timeoutMs} ms (state ${session.state})`)),
      timeoutMs,
    );
    session.once(event, () => {
      clearTimeout(timer);
      resolve(Date.now());
    });
  });
}

/** Counts a session's state events from now on. */
export function countEvents(session: Session): Record<string, number> {
  const counts: Record<string, number> = { suspended: 0, reconnected: 0, lost: 0 };
  for (const e of ["suspended", "reconnected", "lost"] as const) session.on(e, () => counts[e]!++);
  return counts;
}
