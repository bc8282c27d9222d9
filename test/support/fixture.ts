import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll } from "vitest";
import { Session, type EtcdClient } from "../../src/index.js";
import type { EtcdEnv } from "./api.js";
import { startEtcd } from "./etcd.js";

export interface EtcdFixture {
  readonly etcd: EtcdEnv;
  /** A client of the file's etcd, through the proxies. */
  readonly client: Etcd3;
  /** A session closed when the file's tests are done. */
  newSession(options?: { ttl?: number; client?: EtcdClient }): Promise<Session>;
}

/**
 * The set-up most test files share: one etcd for the file (a single node unless `start` says otherwise),
 * one client, and sessions that are closed, with the etcd, after the file's last test.
 */
export function useEtcd(start: () => Promise<EtcdEnv> = startEtcd): EtcdFixture {
  let etcd: EtcdEnv | undefined;
  let client: Etcd3 | undefined;
  const sessions: Session[] = [];
  beforeAll(async () => {
    etcd = await start();
    client = etcd.client();
  });
  afterAll(async () => {
    await Promise.all(sessions.map((s) => s.close()));
    await etcd?.close();
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("useEtcd(): etcd is not started yet (use it inside tests)");
    return value;
  };
  return {
    get etcd() {
      return ready(etcd);
    },
    get client() {
      return ready(client);
    },
    async newSession(options = {}) {
      const session = await Session.create(options.client ?? ready(client), { ttl: options.ttl ?? 10 });
      sessions.push(session);
      return session;
    },
  };
}
