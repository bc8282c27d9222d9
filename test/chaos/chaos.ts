/**
 * One chaos run: a 3-member cluster, worker processes (LeaderElector + Mutex loop, each through its own
 * proxies; with the sharded workload as many again running a ShardedElector), a seeded schedule of faults
 * with recovery checked after each heal, then every worker stopped, what is left checked, etcd's data
 * read, the history checked, and the report written.
 * Used by `npm run chaos` (run.ts) and by CI (chaos.test.ts).
 */
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3 } from "etcd3";
import { tryDocker } from "../support/docker-cli.js";
import { PID_LABEL, TEST_LABEL } from "../support/etcd-image.js";
import { startCluster } from "../support/etcd.js";
import { deadline } from "../support/probe.js";
import { isAlive } from "../support/process-alive.js";
import { OWNER_PID } from "../support/runtime.js";
import { waitFor } from "../support/wait.js";
import { check, type Verdict } from "./checker.js";
import { decisionLine, decisionTotals } from "./figures.js";
import { Fleet, type ChaosWorker } from "./fleet.js";
import {
  ALL_KINDS,
  HOLD_KINDS,
  SHARDS,
  mono,
  type FaultKind,
  type History,
  type HistoryEvent,
  type HoldKind,
  type LogEntry,
  type RegisterData,
} from "./history.js";
import { applyFault, type NemesisContext } from "./nemesis.js";
import { startPostgresStore, type PostgresStore } from "./postgres-store.js";
import { checkRecovery, type RecoveryContext } from "./recovery.js";
import { writeReport } from "./report.js";
import { everyFaultOnce, soak, type FaultPlan } from "./schedule.js";
import { DEFAULT_TTL, ELECTION_TIMEOUT_MS, recoveryBoundMs as boundFor } from "./settings.js";

export interface ChaosOptions {
  seed: number;
  /** Soak: faults from the endless schedule until this much time has passed. Omitted: every fault once. */
  durationMs?: number;
  /** Worker processes at a time (default 3); with the sharded workload, as many sharded ones besides. */
  workers?: number;
  /** Session TTL of every worker, seconds (default DEFAULT_TTL). */
  ttl?: number;
  /** Where the report goes. */
  out: string;
  /** The command that replays this run, for the report and failure messages. */
  replay: string;
  /** Where the workers write (default etcd, guarded by txn()); "postgres": through withFence. */
  store?: "etcd" | "postgres";
  /**
   * The sharded workload: worker processes of their own (as many as the election's) run a ShardedElector
   * of SHARDS shards, each shard's term writing its own counter and log (checked per shard, and
   * shards-balanced after each heal); each worker fault hits one of them beside the election's leader.
   */
  sharded?: boolean;
  /** Only these kinds of fault, in the seed's order (a short run); omitted: all of them. */
  faults?: readonly FaultKind[];
  log?: (line: string) => void;
}

export interface ChaosResult {
  verdict: Verdict;
  history: History;
  report: string;
}

async function readRegister(client: Etcd3, prefix: string): Promise<RegisterData> {
  const counter = await client.get(`${prefix}counter`).options(deadline(5000)).exec();
  const log = await client.getAll().prefix(`${prefix}log/`).options(deadline(5000)).exec();
  const c = counter.kvs[0];
  return {
    counter: c
      ? { value: Number(c.value.toString()), version: Number(c.version), modRevision: Number(c.mod_revision) }
      : null,
    log: log.kvs.map((kv) => ({
      seq: Number(kv.key.toString().slice(`${prefix}log/`.length)),
      version: Number(kv.version),
      modRevision: Number(kv.mod_revision),
      entry: JSON.parse(kv.value.toString()) as LogEntry,
    })),
  };
}

const ourContainers = async (): Promise<string[]> =>
  (
    (await tryDocker(
      [
        "ps",
        "--all",
        "--filter",
        `label=${TEST_LABEL}=true`,
        "--filter",
        `label=${PID_LABEL}=${OWNER_PID}`,
        "--format",
        "{{.Names}}",
      ],
      30_000,
    )) ?? ""
  )
    .split("\n")
    .filter(Boolean);

const portClosed = (url: string): Promise<boolean> =>
  new Promise((resolve) => {
    const [host, port] = url.split(":");
    const socket = connect({ host, port: Number(port) });
    socket.once("connect", () => (socket.destroy(), resolve(false)));
    socket.once("error", () => resolve(true));
  });

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const ttl = options.ttl ?? DEFAULT_TTL;
  const ttlMs = ttl * 1000;
  const recoveryBoundMs = boundFor(ttlMs);
  const events: HistoryEvent[] = [];
  const record = (e: HistoryEvent): void => void events.push(e);
  const startedAt = mono();
  const say = (line: string): void => log(`[chaos ${((mono() - startedAt) / 1000).toFixed(1).padStart(6)} s] ${line}`);
  const base = `chaos/${options.seed}-${randomBytes(3).toString("hex")}/`;
  const names = { election: `${base}leader`, mutex: `${base}lock`, sharded: `${base}sharded` };
  const data = { election: `${base}data/election/`, mutex: `${base}data/mutex/` };
  const shardData = `${base}data/shard/`;
  const kinds = options.sharded ? ALL_KINDS : HOLD_KINDS;
  const workers = options.workers ?? 3;
  const dataOf = (kind: HoldKind): string =>
    kind === "election" || kind === "mutex" ? data[kind] : `${shardData}${kind.slice("shard/".length)}/`;
  const docker = process.env.ETCD_BACKEND !== "process";

  const store = options.store ?? "etcd";
  const history: History = {
    seed: options.seed,
    replay: options.replay,
    store,
    etcdVersion: "unknown",
    image: docker ? (process.env.ETCD_IMAGE ?? "") : `binary ${process.env.ETCD_BINARY ?? "etcd"}`,
    workers,
    shardedWorkers: options.sharded ? workers : undefined,
    ttlMs,
    electionTimeoutMs: ELECTION_TIMEOUT_MS,
    recoveryBoundMs,
    startedAt,
    endedAt: startedAt,
    events: [],
    data: Object.fromEntries(kinds.map((k) => [k, { counter: null, log: [] }])) as unknown as History["data"],
  };

  say(`seed ${options.seed}; replay: ${options.replay}`);
  const before = docker ? new Set(await ourContainers()) : new Set<string>();
  const env = await startCluster(3);
  const mine = docker ? (await ourContainers()).filter((c) => !before.has(c)) : [];
  const client = env.client();
  let pgStore: PostgresStore | undefined;
  try {
    pgStore = store === "postgres" ? await startPostgresStore() : undefined;
  } catch (error) {
    await env.close();
    throw error;
  }
  const fleet = new Fleet(
    env,
    {
      ttl,
      election: names.election,
      mutex: names.mutex,
      data,
      sharded: options.sharded ? { name: names.sharded, shards: SHARDS, data: shardData } : undefined,
      writeEveryMs: 100,
      postgres: pgStore && { port: pgStore.port },
    },
    record,
  );
  const nothingLeft = (ok: boolean, detail: string): void =>
    record({ t: mono(), e: "check", n: -1, rule: "nothing-left", ok, ms: 0, detail });
  try {
    history.etcdVersion = (await client.maintenance.status()).version;
    say(
      `etcd ${history.etcdVersion}, ${workers} workers${options.sharded ? ` and ${workers} sharded ones` : ""}, TTL ${ttl} s, recovery bound ${recoveryBoundMs} ms, writes into ${store === "postgres" ? "Postgres through withFence" : "etcd through txn()"}`,
    );
    for (let i = 0; i < workers; i++) await fleet.spawn("election");
    if (options.sharded) for (let i = 0; i < workers; i++) await fleet.spawn("sharded");
    // An election worker has two sessions (the elector's, the mutex loop's), a sharded one one.
    const up = (w: ChaosWorker): boolean => w.leases.size === (w.role === "election" ? 2 : 1);
    // Every shard held too: a first fault on a sharded worker that holds nothing yet would test nothing.
    const shardsHeld = (): boolean =>
      !options.sharded || new Set(fleet.live("sharded").flatMap((w) => [...w.holds.keys()])).size === SHARDS;
    await waitFor(() => fleet.holder("election") && fleet.live().every(up) && shardsHeld(), {
      timeoutMs: 60_000,
      description: "workers up (each with its sessions), a leader, and every shard held",
    });
    await sleep(1000); // calm before the first fault: the baseline the figures compare with

    const nemesis: NemesisContext = {
      env,
      fleet,
      record,
      ttlMs,
      electionTimeoutMs: ELECTION_TIMEOUT_MS,
      recoveryBoundMs,
      missed: (n, rule, what) => record({ t: mono(), e: "check", n, rule, ok: false, ms: 0, detail: what }),
    };
    const recovery: RecoveryContext = {
      client,
      fleet,
      names,
      record,
      ttlMs,
      electionTimeoutMs: ELECTION_TIMEOUT_MS,
      recoveryBoundMs,
      sharded: options.sharded ?? false,
    };
    const every: Iterable<FaultPlan> =
      options.durationMs === undefined ? everyFaultOnce(options.seed) : soak(options.seed);
    const only = options.faults;
    const plans: Iterable<FaultPlan> = only
      ? [...everyFaultOnce(options.seed)].filter((p) => only.includes(p.kind))
      : every;
    const endAt = startedAt + (options.durationMs ?? Infinity);
    let n = 0;
    for (const plan of plans) {
      if (mono() >= endAt) break;
      n++;
      try {
        await applyFault(nemesis, plan, n);
      } catch (error) {
        record({
          t: mono(),
          e: "check",
          n,
          rule: "nemesis",
          ok: false,
          ms: 0,
          detail: `the nemesis failed: ${String(error)}`,
        });
      }
      const fault = events.filter((e) => e.e === "fault" && e.n === n);
      const healedAt = fault.find((e) => e.e === "fault" && e.phase === "heal")?.t ?? mono();
      await checkRecovery(recovery, n, healedAt);
      const checks = events.filter((e): e is Extract<HistoryEvent, { e: "check" }> => e.e === "check" && e.n === n);
      say(
        `fault ${n} ${plan.kind} ${fault[0]?.e === "fault" ? fault[0].detail : ""}: ${checks.map((c) => `${c.rule} ${c.ok ? `${c.ms} ms` : "FAILED"}`).join(", ")}`,
      );
      // Calm between faults, so that each starts from a working system: every member serving again
      // (bounded by the harness), then a second of normal work.
      await env.waitHealthy().catch((error: unknown) =>
        record({
          t: mono(),
          e: "check",
          n,
          rule: "members-serving",
          ok: false,
          ms: 0,
          detail: `etcd members not all serving after the fault: ${String(error)}`,
        }),
      );
      await sleep(1000);
    }

    // The end: every worker stopped (they hand over and exit by themselves), then nothing may be left.
    say("stopping the workers");
    const live = fleet.live();
    await Promise.all(live.map((w) => fleet.stop(w, -1)));
    const leftovers = async (): Promise<string[]> => {
      const leases = (await client.leaseClient.leaseLeases(deadline(5000))).leases.map((l) => `lease ${l.ID}`);
      const keys = (
        await Promise.all(
          Object.values(names).map((name) => client.getAll().prefix(`${name}/`).options(deadline(5000)).keys()),
        )
      ).flat();
      return [...leases, ...keys];
    };
    try {
      await waitFor(async () => (await leftovers()).length === 0, {
        timeoutMs: ttlMs + ELECTION_TIMEOUT_MS + 1000,
        description: "no lease or key left",
      });
      nothingLeft(true, "no lease, no key under our names");
    } catch {
      nothingLeft(false, `left in etcd after every worker stopped: ${(await leftovers().catch(() => [])).join(", ")}`);
    }
    history.endedAt = mono();
    for (const kind of kinds)
      history.data[kind] = pgStore ? await pgStore.read(dataOf(kind)) : await readRegister(client, dataOf(kind));
    await client.delete().prefix(base).options(deadline(5000)).exec();
  } finally {
    if (history.endedAt === startedAt) history.endedAt = mono();
    await fleet.close();
    await env.close();
    await pgStore?.close();
  }

  const gone = await Promise.all(fleet.workers.flatMap((w) => w.proxies.map((p) => portClosed(p.url))));
  nothingLeft(gone.every(Boolean), `${gone.filter((g) => !g).length} worker proxies still listening`);
  const alive = fleet.workers.filter((w) => w.pid !== undefined && isAlive(w.pid)).map((w) => w.id);
  nothingLeft(
    alive.length === 0,
    alive.length ? `worker processes still running: ${alive.join(", ")}` : "no worker process left",
  );
  if (docker) {
    const still = (await ourContainers()).filter((c) => mine.includes(c));
    nothingLeft(
      still.length === 0,
      still.length ? `containers left: ${still.join(", ")}` : `the ${mine.length} etcd containers are gone`,
    );
  }

  history.events = [...events].sort((a, b) => a.t - b.t);
  const verdict = check(history);
  const report = writeReport(options.out, history, verdict);
  say(decisionLine(decisionTotals(history)));
  say(
    `${verdict.ok ? "no violation" : `${verdict.violations.length} VIOLATION(S)`}; etcd #15247: ${verdict.etcdRevokes.length} revoke(s), ${verdict.etcdBugs.length} overlap(s); report in ${options.out}`,
  );
  return { verdict, history, report };
}
