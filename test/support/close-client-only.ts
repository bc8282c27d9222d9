/**
 * A library user that locks, unlocks and then closes only its etcd3 client, never its session: the
 * process must still exit by itself. ETCD_ENDPOINTS and TTL come from the environment; it prints
 * "closed" once the client is closed.
 */
import { Etcd3 } from "etcd3";
import { Mutex, Session } from "../../src/index.js";

const client = new Etcd3({ hosts: (process.env.ETCD_ENDPOINTS ?? "").split(",") });
const session = await Session.create(client, { ttl: Number(process.env.TTL ?? 3) });
const lock = await new Mutex(session, process.env.NAME ?? "close-client-only").lock();
await lock.unlock();
client.close();
process.stdout.write("closed\n");
