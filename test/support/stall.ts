import { EventEmitter } from "node:events";
import type { Session } from "../../src/index.js";
import { contextOf } from "../../src/session/context.js";

/**
 * Makes `session`'s LeaseKeepAlive streams open but never answer (a stalled stream, as a hung member or
 * proxy gives), while every other call, the lease revoke included, still reaches the real etcd. Returns
 * the number of keepalives written so far, and the undo.
 */
export function stallKeepAlives(session: Session): { writes: () => number; restore: () => void } {
  const conn = contextOf(session).conn;
  const original = conn.stream.bind(conn);
  let writes = 0;
  conn.stream = async (service: string, method: string, timeoutMs: number) => {
    if (service !== "Lease") return original(service as "KV", method, timeoutMs);
    const stream = Object.assign(new EventEmitter(), {
      write: () => (writes++, true),
      cancel: () => {},
      end: () => {},
    });
    return { stream, endpoint: conn.endpoint };
  };
  return { writes: () => writes, restore: () => (conn.stream = original) };
}
