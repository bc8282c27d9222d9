/**
 * A library user whose session is lost (its lease revoked elsewhere) and that closes only its etcd3
 * client 2 s later (once what the loss started, the revoke of the lost lease, is over): the process must
 * still exit by itself.
 * ETCD_ENDPOINTS and TTL come from the environment; it prints "closed" once the client is closed.
 */
import { Etcd3 } from "etcd3";
import { Mutex, Session } from "../../src/index.js";

const endpoints = (process.env.ETCD_ENDPOINTS ?? "").split(",");
const client = new Etcd3({ hosts: endpoints });
const session = await Session.create(client, { ttl: Number(process.env.TTL ?? 3) });
const lock = await new Mutex(session, process.env.NAME ?? "lost-then-close-client").lock();
await lock.unlock();
session.on("lost", () =>
  setTimeout(() => {
    client.close();
    process.stdout.write("closed\n");
  }, 2000),
);
const other = new Etcd3({ hosts: endpoints });
await other.leaseClient.leaseRevoke({ ID: session.leaseId });
other.close();
