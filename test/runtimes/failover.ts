/**
 * A worker failover under a given runtime, as CI runs it for Bun and Deno (README, "Runtimes"): a throwaway
 * etcd, three copies of examples/worker.ts with health and metrics, the leader SIGKILLed (ROUNDS times,
 * a copy started again each time), then a leader stopped with SIGTERM, which must hand over and exit 0.
 *
 *   npx tsx test/runtimes/failover.ts node|bun|deno [ROUNDS]     (bun and deno from PATH)
 *
 * This driver runs on Node; only the workers run on the runtime under test. It splits each SIGKILL
 * failover in two, from its own watch on the election: the kill until etcd deletes the dead leader's key
 * (the lease runs out: at most the TTL after its last acknowledged keepalive, which is sent every TTL/3),
 * and the deletion until another worker logs that it leads (the runtime's part: the watch event reaching
 * a candidate, which then reads that it leads).
 * Fails (exit 1) on a missing takeover, a failover past the bounds below, or a worker that does not exit 0
 * on SIGTERM.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Etcd3 } from "etcd3";
import { startLocalCluster } from "../support/local-cluster.js";

const WORKER = fileURLToPath(new URL("../../examples/worker.ts", import.meta.url));
const TTL = 5;
// Correctness bounds, not speed targets: a lease outlives the kill by at most its TTL (plus etcd's
// 500 ms expiry sweep); a stopped leader resigns within max(TTL, 2 x callTimeoutMs) = 10 s.
const KILL_BOUND_MS = TTL * 1000 + 3000;
const TERM_BOUND_MS = 10_000;

const runtime = process.argv[2] ?? "node";
const rounds = Number(process.argv[3] ?? 3);
const command: Record<string, string[]> = {
  node: [process.execPath, "--import", "tsx", WORKER],
  bun: ["bun", WORKER],
  // The examples import ../src/index.js, which is a .ts file: Deno maps it only with --sloppy-imports.
  deno: ["deno", "run", "--allow-all", "--sloppy-imports", WORKER],
};
const argv = command[runtime];
if (!argv) throw new Error(`unknown runtime ${runtime}: node, bun or deno`);

const t0 = performance.now();
const log = (msg: string): void => console.log(`[failover ${runtime}] ${msg}`);

interface Worker {
  id: string;
  child: ChildProcess;
  lines: { msg: string; at: number; [field: string]: unknown }[];
  out: string;
  exited: Promise<number | null>;
}

function startWorker(id: string, endpoint: string, election: string): Worker {
  const [bin = "", ...args] = argv!;
  const child = spawn(bin, args, {
    env: { ...process.env, ETCD_ENDPOINTS: endpoint, WORKER_ID: id, ELECTION: election, TTL: String(TTL), PORT: "0" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const w: Worker = { id, child, lines: [], out: "", exited: new Promise((resolve) => child.once("exit", resolve)) };
  let partial = "";
  child.stdout.on("data", (d: Buffer) => {
    w.out += d.toString();
    const chunks = (partial + d.toString()).split("\n");
    partial = chunks.pop() ?? "";
    for (const chunk of chunks)
      if (chunk.startsWith("{")) w.lines.push({ ...(JSON.parse(chunk) as { msg: string }), at: performance.now() });
  });
  child.stderr.on("data", (d: Buffer) => (w.out += d.toString()));
  return w;
}

const logged = (w: Worker, msg: string, after = 0) => w.lines.find((l) => l.msg === msg && l.at >= after);

async function until<T>(what: string, timeoutMs: number, check: () => T | undefined | false): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const etcd = await startLocalCluster(1, log);
const endpoint = etcd.endpoints[0]!;
const client = new Etcd3({ hosts: [endpoint] });
const election = `runtimes/${runtime}-${process.pid}`;
const workers: Worker[] = [];
const deletes: number[] = [];
const watcher = await client.watch().prefix(`${election}/`).create();
watcher.on("delete", () => deletes.push(performance.now()));
const seconds = (ms: number): string => (ms / 1000).toFixed(2);
let ok = false;
try {
  let count = 0;
  const spawnOne = (): Worker => {
    const w = startWorker(`${runtime}-${count++}`, endpoint, election);
    workers.push(w);
    return w;
  };
  const alive = (): Worker[] => workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
  const leaderSince = (after: number) => alive().find((w) => logged(w, "started leading", after));
  for (let i = 0; i < 3; i++) spawnOne();

  // Health and metrics of the first leader, over HTTP.
  let leader = await until("a leader", 30_000, () => leaderSince(0));
  const port = Number((await until("its HTTP port", 5000, () => logged(leader, "serving health and metrics"))).port);
  const get = (path: string) => fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
  if ((await get("/leader")).status !== 200) throw new Error("the leader's /leader is not 200");
  if ((await get("/healthz")).status !== 200) throw new Error("the leader's /healthz is not 200");
  if (!/^etcd_election_leader_status\{[^}]*\} 1$/m.test(await (await get("/metrics")).text()))
    throw new Error("the leader's /metrics has no etcd_election_leader_status 1");
  log(`${leader.id} leads; /leader, /healthz and /metrics answer`);

  const results: string[] = [];
  for (let round = 1; round <= rounds; round++) {
    // Every worker has campaigned (so the next leader is already queued) and the lease is some way
    // into its keepalive cycle.
    await until("every worker campaigning", 30_000, () => alive().every((w) => logged(w, "leader is")));
    const killedAt = performance.now();
    const deletesBefore = deletes.length;
    leader.child.kill("SIGKILL");
    await leader.exited;
    const next = await until("a new leader after SIGKILL", KILL_BOUND_MS, () => leaderSince(killedAt));
    const ledAt = logged(next, "started leading", killedAt)!.at;
    const deletedAt = deletes[deletesBefore] ?? ledAt;
    results.push(
      `${seconds(ledAt - killedAt)} s (lease ${seconds(deletedAt - killedAt)} + takeover ${seconds(ledAt - deletedAt)})`,
    );
    log(`round ${round}: SIGKILL of ${leader.id}; ${next.id} leads after ${results.at(-1)}`);
    leader = next;
    spawnOne();
  }

  await until("every worker campaigning", 30_000, () => alive().every((w) => logged(w, "leader is")));
  const termAt = performance.now();
  leader.child.kill("SIGTERM");
  const next = await until("a new leader after SIGTERM", TERM_BOUND_MS, () => leaderSince(termAt));
  const handover = logged(next, "started leading", termAt)!.at - termAt;
  const code = await leader.exited;
  if (code !== 0) throw new Error(`${leader.id} exited with ${code} after SIGTERM:\n${leader.out}`);
  log(`SIGTERM of ${leader.id}: ${next.id} leads after ${seconds(handover)} s; ${leader.id} exited 0`);

  for (const w of alive()) w.child.kill("SIGTERM");
  for (const w of workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null)) {
    const exitCode = await w.exited;
    if (exitCode !== 0) throw new Error(`${w.id} exited with ${exitCode} after SIGTERM:\n${w.out}`);
  }
  console.log(
    `[failover ${runtime}] TTL ${TTL} s: SIGKILL failovers ${results.join(", ")}; SIGTERM hand-over ${seconds(handover)} s; ${seconds(performance.now() - t0)} s in all`,
  );
  ok = true;
} catch (error) {
  console.error(`[failover ${runtime}] FAILED: ${(error as Error).message}`);
  for (const w of workers) console.error(`--- ${w.id}\n${w.out.split("\n").slice(-15).join("\n")}`);
} finally {
  for (const w of workers) w.child.kill("SIGKILL");
  await Promise.all(workers.map((w) => w.exited));
  await watcher.cancel();
  client.close();
  await etcd.stop();
}
process.exit(ok ? 0 : 1);
