/**
 * Live failover demo, on a throwaway 3-member etcd cluster (the deployed cluster of the chapter), with
 * three worker processes (examples/worker.ts) in line for one election:
 *   1. once both standbys are queued, the leader is SIGKILLed: it cannot resign, so the next in line
 *      takes over when etcd expires its lease (a replacement worker joins the line);
 *   2. the new leader gets SIGTERM: it resigns, and the next takes over at once;
 *   3. an etcd member (a raft follower) is killed and restarted: the leader keeps its term throughout.
 * It ends with a summary (terms, tokens, failover times) and leaves no process or directory behind.
 *
 *   npm run demo                                  # throwaway cluster from the local etcd binary
 *   npm run demo -- --json                        # and the summary as JSON on the last line
 *   ETCD_ENDPOINTS=127.0.0.1:2379 npm run demo    # your etcd (no member is killed then)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Etcd3 } from "etcd3";
import { startLocalCluster, type LocalCluster } from "../test/support/local-cluster.js";

const TTL = 3;
const WORKER = fileURLToPath(new URL("./worker.ts", import.meta.url));
const json = process.argv.includes("--json");
const t0 = Date.now();
const at = (): number => Date.now() - t0;
const log = (msg: string): void => console.log(`${(at() / 1000).toFixed(2).padStart(6)}s  ${msg}`);

interface Term {
  worker: string;
  token: string;
  fromMs: number;
  toMs?: number;
  ended?: string;
}

interface Worker {
  id: string;
  child: ChildProcess;
  term: Term | undefined;
  exited: Promise<void>;
}

interface Summary {
  etcd: string;
  /** The throwaway cluster's data directory (gone when the demo ends). */
  dataDir: string | undefined;
  ttlSeconds: number;
  terms: Term[];
  failovers: { after: string; ms: number }[];
  memberRestart: { member: string; leaderKeptTerm: boolean } | undefined;
}

const terms: Term[] = [];
const changed = new Set<() => void>();

async function main(): Promise<void> {
  const cluster: LocalCluster | undefined = process.env.ETCD_ENDPOINTS ? undefined : await startLocalCluster(3, log);
  const endpoints = process.env.ETCD_ENDPOINTS?.split(",") ?? cluster!.endpoints;
  const client = new Etcd3({ hosts: endpoints });
  const election = `demo/${Date.now().toString(36)}`;
  const workers: Worker[] = [];
  const summary: Summary = {
    etcd: cluster?.version ?? "yours",
    dataDir: cluster?.dataDir,
    ttlSeconds: TTL,
    terms,
    failovers: [],
    memberRestart: undefined,
  };
  const queued = async (n: number): Promise<void> => {
    for (;;) {
      if ((await client.getAll().prefix(`${election}/`).keys()).length >= n) return;
      await sleep(100); // polling etcd for the line to fill up: the demo's own pace
    }
  };
  try {
    log(`three workers campaign for "${election}" (session TTL ${TTL} s)`);
    for (const id of ["alpha", "bravo", "charlie"]) workers.push(startWorker(id, endpoints, election));
    const first = await nextLeader(workers, undefined);
    await queued(3);
    log(`==> ${first.id} leads (token ${first.term?.token}); both standbys are in line`);

    log(`--- SIGKILL ${first.id}: it cannot resign; etcd must expire its lease first`);
    let since = Date.now();
    first.child.kill("SIGKILL");
    const second = await nextLeader(workers, first);
    summary.failovers.push({ after: "SIGKILL", ms: Date.now() - since });
    log(`==> ${second.id} took over after SIGKILL in ${Date.now() - since} ms (TTL ${TTL} s)`);
    workers.push(startWorker("delta", endpoints, election));
    await queued(3);
    log(`    delta joined the line`);

    log(`--- SIGTERM ${second.id}: it resigns before it exits`);
    since = Date.now();
    second.child.kill("SIGTERM");
    const third = await nextLeader(workers, second);
    summary.failovers.push({ after: "SIGTERM", ms: Date.now() - since });
    log(`==> ${third.id} took over after SIGTERM in ${Date.now() - since} ms`);

    if (cluster) {
      // A follower: losing the raft leader stalls every write and keepalive for an election timeout
      // (1-2 s), which at TTL 3 s can cost the term; the fault suite covers that case.
      const member = await aFollower(cluster);
      const token = third.term?.token;
      const termsBefore = terms.length;
      log(`--- etcd member ${member.name} (a raft follower) killed, and restarted 3 s later (with its data)`);
      await member.kill();
      await sleep(3000); // the outage's length is the scenario
      await member.restart();
      await sleep(2000); // let the leader renew through the restarted cluster before we look
      const kept = terms.length === termsBefore && third.term?.token === token && third.term?.toMs === undefined;
      summary.memberRestart = { member: member.name, leaderKeptTerm: kept };
      log(
        kept
          ? `==> ${third.id} kept its term (token ${token}) through the member's restart`
          : `!!! the leader changed during the member's restart`,
      );
    }
  } finally {
    log("stopping the workers (SIGTERM once each) and etcd");
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGTERM");
    await Promise.all(workers.map((w) => w.exited));
    client.close();
    await cluster?.stop();
  }
  printSummary(summary);
  log("demo done");
  if (json) console.log(JSON.stringify(summary));
}

/** A member that is not etcd's raft leader, as the members themselves report it. */
async function aFollower(cluster: LocalCluster): Promise<LocalCluster["members"][number]> {
  for (const member of cluster.members) {
    const one = new Etcd3({ hosts: member.endpoint });
    try {
      const status = await one.maintenance.status();
      if (status.leader !== status.header.member_id) return member;
    } finally {
      one.close();
    }
  }
  throw new Error("every member says it leads raft");
}

/** Resolves with the first worker other than `previous` that leads (within 20 s). */
function nextLeader(workers: Worker[], previous: Worker | undefined): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      changed.delete(check);
      reject(new Error("no new leader within 20 s"));
    }, 20_000);
    function check(): void {
      const leader = workers.find((w) => w !== previous && w.term && w.term.toMs === undefined);
      if (!leader) return;
      clearTimeout(timer);
      changed.delete(check);
      resolve(leader);
    }
    changed.add(check);
    check();
  });
}

function startWorker(id: string, endpoints: string[], election: string): Worker {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER], {
    env: {
      ...process.env,
      WORKER_ID: id,
      ETCD_ENDPOINTS: endpoints.join(","),
      ELECTION: election,
      TTL: String(TTL),
      PORT: "",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const worker: Worker = {
    id,
    child,
    term: undefined,
    exited: new Promise((resolve) => child.once("exit", () => resolve())),
  };
  const end = (how: string): void => {
    if (!worker.term || worker.term.toMs !== undefined) return;
    worker.term.toMs = at();
    worker.term.ended = how;
  };
  createInterface({ input: child.stdout }).on("line", (line) => {
    let entry: { msg?: string; token?: string; [k: string]: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      entry = { msg: line };
    }
    const { msg, worker: _w, time: _t, level, election: _e, identity: _i, ...rest } = entry;
    if (rest.err && typeof rest.err === "object") rest.err = (rest.err as { message?: unknown }).message; // the demo shows what, not where
    if (msg !== "leader is")
      log(
        `   [${id}] ${level === "warn" || level === "error" ? `${String(level)}: ` : ""}${msg ?? ""}${Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : ""}`,
      );
    if (msg === "started leading") {
      worker.term = { worker: id, token: String(entry.token), fromMs: at() };
      terms.push(worker.term);
    }
    if (msg === "stopped leading") end("stepped down");
    for (const f of [...changed]) f();
  });
  child.once("exit", (code, signal) => {
    end(signal === "SIGKILL" ? "killed" : "exited");
    log(`   [${id}] exited (${signal ?? code})`);
    for (const f of [...changed]) f();
  });
  return worker;
}

function printSummary(summary: Summary): void {
  const seconds = (ms: number | undefined): string => (ms === undefined ? "" : (ms / 1000).toFixed(2));
  console.log("\nTerms (one leader at a time; tokens rise):\n");
  console.log("| worker | token | from s | to s | ended |\n| --- | ---: | ---: | ---: | --- |");
  for (const t of summary.terms)
    console.log(
      `| ${t.worker} | ${t.token} | ${seconds(t.fromMs)} | ${seconds(t.toMs)} | ${t.ended ?? "leading at the end"} |`,
    );
  console.log("\n| failover after | ms |\n| --- | ---: |");
  for (const f of summary.failovers) console.log(`| ${f.after} | ${f.ms} |`);
  if (summary.memberRestart)
    console.log(
      `\netcd member ${summary.memberRestart.member} restarted; the leader kept its term: ${summary.memberRestart.leaderKeptTerm ? "yes" : "no"}\n`,
    );
}

await main();
