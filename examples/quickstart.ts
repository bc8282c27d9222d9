/**
 * Quick start: three candidates elect a leader, the leader crashes, another takes over.
 *
 *   npm run example                              # starts a throwaway etcd from the local binary
 *   ETCD_ENDPOINTS=127.0.0.1:2379 npm run example  # or uses yours
 */
import { Etcd3 } from "etcd3";
import { Election, Session, type Term } from "../src/index.js";
import { startLocalCluster } from "../test/support/local-cluster.js";

const NAME = "quickstart/scheduler";
const t0 = Date.now();
const log = (msg: string): void => console.log(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${msg}`);

async function main(): Promise<void> {
  const etcd = process.env.ETCD_ENDPOINTS ? undefined : await startLocalCluster(1, log);
  const hosts = process.env.ETCD_ENDPOINTS?.split(",") ?? etcd!.endpoints;
  const clients = ["node-a", "node-b", "node-c"].map(() => new Etcd3({ hosts }));
  const sessions: Session[] = [];
  try {
    // Someone watching who leads (a dashboard, a load balancer...).
    const watcher = await Session.create(clients[2]!, { ttl: 5 });
    sessions.push(watcher);
    const stopObserving = new AbortController();
    const observing = (async () => {
      for await (const leader of new Election(watcher, NAME).observe({ signal: stopObserving.signal })) {
        log(`observer: leader is ${leader ? `${leader.value.toString()} (token ${leader.token})` : "nobody"}`);
      }
    })().catch(() => {});

    // Three candidates; each session's lease has a 2 s TTL, so a crashed leader is replaced in ~2 s.
    const terms = new Map<string, Promise<Term>>();
    for (const [i, id] of ["node-a", "node-b", "node-c"].entries()) {
      const session = await Session.create(clients[i]!, { ttl: 2 });
      sessions.push(session);
      terms.set(id, new Election(session, NAME).campaign(id));
    }
    const first = await Promise.race([...terms].map(([id, p]) => p.then((term) => ({ id, term }))));
    log(`${first.id} leads with fencing token ${first.term.token}`);

    // Writes made under the term are fenced: they commit only while this term still holds.
    await first.term
      .txn()
      .then(clients[0]!.put("quickstart/config").value(`written by ${first.id}`))
      .commit();
    log(`${first.id} wrote quickstart/config under its term`);

    // Crash the leader: its client goes away without resigning, keepalives stop, the lease expires.
    log(`${first.id} crashes (its client closes without resigning)`);
    clients[["node-a", "node-b", "node-c"].indexOf(first.id)]!.close();
    terms.delete(first.id);
    const second = await Promise.race([...terms].map(([id, p]) => p.then((term) => ({ id, term }))));
    log(`${second.id} took over with token ${second.term.token} (> ${first.term.token})`);

    await second.term.resign();
    terms.delete(second.id);
    const third = await [...terms.values()][0]!;
    log(`after a graceful resign, ${third.value.toString()} leads with token ${third.token}`);
    await third.resign();

    stopObserving.abort();
    await observing;
  } finally {
    // Closing a session revokes its lease (the crashed one's is already lost: nothing to do).
    await Promise.all(sessions.map((s) => s.close()));
    for (const c of clients) c.close();
    await etcd?.stop();
  }
  log("done");
}

await main();
