/**
 * Quick start: three candidates elect a leader, the leader crashes, another takes over.
 *
 *   npm run example                              # starts a throwaway etcd from the local binary
 *   ETCD_ENDPOINTS=127.0.0.1:2379 npm run example  # or uses yours
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { Election, Session, type Term } from "../src/index.js";

const NAME = "quickstart/scheduler";
const t0 = Date.now();
const log = (msg: string): void => console.log(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${msg}`);

async function main(): Promise<void> {
  const etcd = process.env.ETCD_ENDPOINTS ? undefined : await startLocalEtcd();
  const hosts = process.env.ETCD_ENDPOINTS?.split(",") ?? [etcd!.endpoint];
  const clients = ["node-a", "node-b", "node-c"].map(() => new Etcd3({ hosts }));
  try {
    // Someone watching who leads (a dashboard, a load balancer...).
    const watcher = await Session.create(clients[2]!, { ttl: 5 });
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
      terms.set(id, new Election(session, NAME).campaign(id));
    }
    const first = await Promise.race([...terms].map(([id, p]) => p.then((term) => ({ id, term }))));
    log(`${first.id} leads with fencing token ${first.term.token}`);

    // Writes made under the term are fenced: they commit only while this term still holds.
    await first.term.txn().then(clients[0]!.put("quickstart/config").value(`written by ${first.id}`)).commit();
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
    for (const c of clients) c.close();
    etcd?.stop();
  }
  log("done");
}

/** A single etcd member on free loopback ports, in a temporary directory. */
async function startLocalEtcd(): Promise<{ endpoint: string; stop: () => void }> {
  const [client, peer] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), "etcd-quickstart-"));
  const proc: ChildProcess = spawn(
    process.env.ETCD_BIN ?? "etcd",
    [
      `--data-dir=${dir}`,
      `--listen-client-urls=http://127.0.0.1:${client}`,
      `--advertise-client-urls=http://127.0.0.1:${client}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=default=http://127.0.0.1:${peer}`,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = "";
    proc.once("error", reject);
    proc.stderr!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("ready to serve client requests")) resolve();
    });
    proc.once("exit", (code) => reject(new Error(`etcd exited with ${code}: ${out.slice(-500)}`)));
  });
  log(`started a throwaway etcd on 127.0.0.1:${client}`);
  return {
    endpoint: `127.0.0.1:${client}`,
    stop: () => {
      proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.once("error", reject);
  });
}

await main();
