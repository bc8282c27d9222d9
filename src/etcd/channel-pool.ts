import type { Logger } from "../common/logger.js";
import { Connection } from "./connection.js";
import type { Etcd3Internals } from "./internals.js";
import { WatchStream } from "./watch-stream.js";

/** The channels and the watch stream sessions of one client share, while any of them is open. */
export interface Channels {
  readonly conn: Connection;
  readonly watches: WatchStream;
  /** This session is done with them: the last one to go closes them. */
  release: () => void;
}

interface Entry {
  conn: Connection;
  watches: WatchStream;
  users: number;
}

const pools = new WeakMap<Etcd3Internals, Map<unknown, Entry>>();

/**
 * Sessions made from one client (with one logger) share one connection per endpoint and one watch
 * stream: a thousand waiters in one process cost a thousand keepalive streams on one TCP connection,
 * not a thousand connections and watch streams. `loggerKey` is the logger option as given: sessions
 * logging elsewhere get channels of their own, so every line reaches the logger of its session.
 */
export function acquireChannels(
  etcd3: Etcd3Internals,
  loggerKey: unknown,
  logger: Logger,
  openTimeoutMs: number,
): Channels {
  let byLogger = pools.get(etcd3);
  if (!byLogger) pools.set(etcd3, (byLogger = new Map<unknown, Entry>()));
  const pool = byLogger;
  let entry = pool.get(loggerKey);
  if (!entry || entry.conn.closed) {
    const conn = new Connection(etcd3, logger);
    entry = { conn, watches: new WatchStream(conn, logger, openTimeoutMs), users: 0 };
    pool.set(loggerKey, entry);
  }
  const current = entry;
  current.users++;
  let released = false;
  return {
    conn: current.conn,
    watches: current.watches,
    release: () => {
      if (released) return;
      released = true;
      if (--current.users > 0) return;
      current.watches.close();
      current.conn.close();
      if (pool.get(loggerKey) === current) pool.delete(loggerKey);
    },
  };
}
