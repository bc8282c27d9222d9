/**
 * Live failover demo: three worker processes (examples/worker.ts) elect a leader; the leader is killed
 * (SIGKILL: another takes over once its lease runs out), then the next one is stopped (SIGTERM: it
 * resigns and another takes over at once).
 *
 *   npm run demo                                 # with a throwaway etcd from the local binary
 *   ETCD_ENDPOINTS=127.0.0.1:2379 npm run demo   # or yours
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startLocalEtcd } from "./local-etcd.js";

const TTL = 3;
const t0 = Date.now();
const log = (msg: string): void => console.log(`${((Date.now() - t0) / 1000).toFixed(2).padStart(6)}s  ${msg}`);
const WORKER = fileURLToPath(new URL("./worker.ts", import.meta.url));

interface Worker {
  id: string;
  child: ChildProcess;
  leading: boolean;
}

async function main(): Promise<void> {
  const etcd = process.env.ETCD_ENDPOINTS ? undefined : await startLocalEtcd(log);
  const endpoints = process.env.ETCD_ENDPOINTS ?? etcd!.endpoint;
  const election = `demo/${Date.now().toString(36)}`;
  const changes: (() => void)[] = [];
  const workers = ["alpha", "bravo", "charlie"].map((id) => startWorker(id, endpoints, election, () => changes.forEach((f) => f())));
  const leader = (): Worker | undefined => workers.find((w) => w.leading);
  const nextLeader = (notThis: Worker | undefined, timeoutMs: number): Promise<Worker> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no new leader within ${timeoutMs} ms`)), timeoutMs);
      const check = (): void => {
        const w = leader();
        if (w && w !== notThis) {
          clearTimeout(timer);
          changes.splice(changes.indexOf(check), 1);
          resolve(w);
        }
      };
      changes.push(check);
      check();
    });

  try {
    log(`three workers campaign for "${election}" (session TTL ${TTL} s)`);
    const first = await nextLeader(undefined, 20_000);
    log(`==> ${first.id} leads`);

    log(`--- SIGKILL ${first.id}: it cannot resign; its lease must run out`);
    let at = Date.now();
    first.child.kill("SIGKILL");
    first.leading = false;
    const second = await nextLeader(first, 20_000);
    log(`==> ${second.id} took over after SIGKILL in ${Date.now() - at} ms (TTL ${TTL} s)`);

    log(`--- SIGTERM ${second.id}: it resigns before it exits`);
    at = Date.now();
    second.child.kill("SIGTERM");
    const third = await nextLeader(second, 20_000);
    log(`==> ${third.id} took over after SIGTERM in ${Date.now() - at} ms`);
  } finally {
    for (const w of workers) w.child.kill("SIGTERM");
    const running = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
    await Promise.all(running.map((w) => new Promise((resolve) => w.child.once("exit", resolve))));
    etcd?.stop();
  }
  log("demo done");
}

function startWorker(id: string, endpoints: string, election: string, changed: () => void): Worker {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER], {
    env: { ...process.env, WORKER_ID: id, ETCD_ENDPOINTS: endpoints, ELECTION: election, TTL: String(TTL) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const worker: Worker = { id, child, leading: false };
  let buffered = "";
  child.stdout.on("data", (d: Buffer) => {
    buffered += d.toString();
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) {
      let entry: { msg?: string; worker?: string; [k: string]: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        entry = { msg: line };
      }
      const { msg, worker: who, time: _time, level: _level, ...rest } = entry;
      log(`   [${who ?? id}] ${msg ?? ""} ${Object.keys(rest).length ? JSON.stringify(rest) : ""}`);
      if (msg === "started leading") worker.leading = true;
      if (msg === "stopped leading" || msg === "run() resolved") worker.leading = false;
      changed();
    }
  });
  child.once("exit", () => {
    worker.leading = false;
    changed();
  });
  return worker;
}

await main();
