import { EventEmitter } from "node:events";
import type { Etcd3 } from "etcd3";

/**
 * Makes `client`'s LeaseKeepAlive streams open but never answer (a stalled stream, as a hung member or
 * proxy gives), while every other call, lease revoke included, still reaches the real etcd. Returns the
 * number of keepalives written so far, and the undo.
 */
export function stallKeepAlives(client: Etcd3): { writes: () => number; restore: () => void } {
  const pool = (client as unknown as { pool: { withConnection: (service: string, fn: (c: { client: object }) => unknown, ...rest: unknown[]) => unknown } }).pool;
  const original = pool.withConnection.bind(pool);
  let writes = 0;
  pool.withConnection = (service, fn, ...rest) =>
    original(
      service,
      (conn) =>
        fn({
          ...conn,
          client: new Proxy(conn.client, {
            get: (target, prop, receiver) =>
              prop === "leaseKeepAlive"
                ? () => Object.assign(new EventEmitter(), { write: () => void writes++, cancel: () => {}, end: () => {} })
                : (Reflect.get(target, prop, receiver) as unknown),
          }),
        }),
      ...rest,
    );
  return { writes: () => writes, restore: () => (pool.withConnection = original) };
}
