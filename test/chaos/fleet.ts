/**
 * The chaos runner's worker processes: each is a real child process (worker.ts) that reaches every etcd
 * member through proxies of its own, so one worker can be cut off while the others are not. The fleet
 * records what the runner does to them and what they report, and keeps a live view of who holds what
 * for the nemeses and the recovery checks.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { EtcdEnv } from "../support/api.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import {
  mono,
  type HistoryEvent,
  type HoldKind,
  type SessionKind,
  type WorkerReport,
  type WorkerRole,
} from "./history.js";
import { CALL_TIMEOUT_MS } from "./settings.js";
import type { WorkerConfig } from "./worker.js";

const WORKER = fileURLToPath(new URL("./worker.ts", import.meta.url));

type WorkerSettings = Omit<WorkerConfig, "id" | "hosts" | "role">;

/** How long a new worker process may take to report ready (it compiles its TypeScript on a loaded machine). */
const READY_TIMEOUT_MS = 60_000;

export class ChaosWorker {
  /** What it believes it holds now, by kind; and when it last began to hold each. */
  readonly holds = new Map<HoldKind, { token: string; key: string }>();
  readonly lastStart = new Map<HoldKind, number>();
  /** Its current, live session lease by kind (a lost or replaced one is dead). */
  readonly leases = new Map<SessionKind, string>();
  /** The last leader its elector observed (onNewLeader). */
  observed: { key: string | null } | undefined;
  paused = false;
  readonly exited: Promise<{ code: number | null; signal: string | null; at: number }>;
  #exitedAt: number | undefined;
  #stderr = "";
  #listeners = new Set<(r: WorkerReport) => void>();

  /** Sends a command line to the worker (its stdin). */
  command(cmd: object): void {
    this.child.stdin?.write(`${JSON.stringify(cmd)}\n`);
  }

  constructor(
    readonly id: string,
    readonly role: WorkerRole,
    readonly proxies: TcpProxy[],
    private readonly child: ChildProcess,
    record: (e: HistoryEvent) => void,
  ) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let report: WorkerReport & { t: number };
      try {
        report = JSON.parse(line) as WorkerReport & { t: number };
      } catch {
        this.#stderr += `${line}\n`; // not ours (a stray console line): keep it for diagnostics
        return;
      }
      this.#apply(report);
      record({ ...report, w: id });
      for (const listener of this.#listeners) listener(report);
    });
    child.stderr!.on("data", (d: Buffer) => (this.#stderr = (this.#stderr + d.toString()).slice(-4000)));
    // A Node warning (MaxListenersExceededWarning, a deprecation...) is a finding of its own.
    createInterface({ input: child.stderr! }).on("line", (line) => {
      if (/^\(node:\d+\) .*Warning/.test(line))
        record({ t: mono(), e: "log", w: id, level: "node-warning", msg: line });
    });
    this.exited = new Promise((resolve) =>
      child.once("exit", (code, signal) => {
        this.#exitedAt = mono();
        for (const p of proxies) void p.close(); // no proxy outlives its worker
        this.holds.clear();
        resolve({ code, signal, at: this.#exitedAt });
      }),
    );
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return this.#exitedAt === undefined;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Calls `fn` with each report (until the returned undo). */
  onReport(fn: (r: WorkerReport) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  signal(signal: "SIGSTOP" | "SIGCONT" | "SIGKILL" | "SIGTERM"): void {
    if (this.alive) this.child.kill(signal);
  }

  #apply(r: WorkerReport & { t: number }): void {
    if (r.e === "start") {
      this.holds.set(r.kind, { token: r.token, key: r.key });
      this.lastStart.set(r.kind, r.t);
    } else if (r.e === "end" && this.holds.get(r.kind)?.token === r.token) this.holds.delete(r.kind);
    else if (r.e === "observed") this.observed = { key: r.key };
    else if (r.e === "session" && !r.lost) this.leases.set(r.kind, r.lease);
    else if (r.e === "session" && this.leases.get(r.kind) === r.lease) this.leases.delete(r.kind);
  }
}

export class Fleet {
  readonly workers: ChaosWorker[] = [];
  #next = 1;

  constructor(
    private readonly env: EtcdEnv,
    private readonly settings: WorkerSettings,
    private readonly record: (e: HistoryEvent) => void,
  ) {}

  /** Starts a worker with a proxy of its own to each member. */
  async spawn(role: WorkerRole = "election"): Promise<ChaosWorker> {
    const id = `${role === "sharded" ? "s" : "w"}${this.#next++}`;
    const proxies = await Promise.all(
      this.env.members.map((m) => TcpProxy.start({ targetPort: Number(m.directClientUrl.split(":")[1]) })),
    );
    const config: WorkerConfig = { ...this.settings, id, role, hosts: proxies.map((p) => p.url) };
    const child = spawn(process.execPath, ["--import", "tsx", WORKER], {
      env: { ...process.env, CHAOS_WORKER: JSON.stringify(config) },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const worker = new ChaosWorker(id, role, proxies, child, this.record);
    this.workers.push(worker);
    this.record({ t: mono(), e: "spawn", w: id });
    void worker.exited.then(({ code, signal, at }) =>
      this.record({
        t: at,
        e: "exit",
        w: id,
        code,
        signal,
        stderr: code === 0 || signal === "SIGKILL" ? undefined : worker.stderr.slice(-1500),
      }),
    );
    return worker;
  }

  /** The live workers (of `role`, if given). */
  live(role?: WorkerRole): ChaosWorker[] {
    return this.workers.filter((w) => w.alive && (role === undefined || w.role === role));
  }

  /**
   * Starts a replacement of `role` and waits (bounded) until it reports ready: the fault it replaces a
   * worker for heals once the replacement runs, so that the recovery bounds measure the library, not how
   * long a process takes to start.
   */
  async replace(role: WorkerRole): Promise<ChaosWorker> {
    const w = await this.spawn(role);
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error): void => {
        undo();
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      const undo = w.onReport((r) => r.e === "ready" && done());
      const timer = setTimeout(() => {
        void this.kill(w); // it would count as a live worker that holds nothing
        done(new Error(`${w.id} not ready ${READY_TIMEOUT_MS} ms after its start`));
      }, READY_TIMEOUT_MS);
      void w.exited.then(() => done(new Error(`${w.id} exited before it was ready: ${w.stderr.slice(-500)}`)));
    });
    return w;
  }

  /** The live worker that believes it holds `kind` now (the first, if, wrongly, several do). */
  holder(kind: HoldKind = "election"): ChaosWorker | undefined {
    return this.live().find((w) => !w.paused && w.holds.has(kind));
  }

  /**
   * The recorded times are the conservative ones for the checker, which excuses a paused worker from
   * SIGSTOP to 100 ms after SIGCONT: SIGSTOP is timed once sent, SIGCONT before it is sent.
   */
  pause(w: ChaosWorker): number {
    w.signal("SIGSTOP");
    w.paused = true;
    const t = mono();
    this.record({ t, e: "sigstop", w: w.id });
    return t;
  }

  /**
   * SIGSTOPs `w` the moment it reports that it is about to commit a write of a kind `of` accepts (or after
   * `timeoutMs`), as a GC pause in the middle of a request would: the write may not have left yet, and
   * then goes out after the resume, late. Resolves with the op id it caught, if any, and when it stopped `w`.
   */
  pauseAtNextWrite(
    w: ChaosWorker,
    of: (kind: HoldKind) => boolean,
    timeoutMs: number,
  ): Promise<{ op: string | undefined; at: number }> {
    return new Promise((resolve) => {
      const stop = (op: string | undefined): void => {
        undo();
        clearTimeout(timer);
        resolve({ op, at: this.pause(w) });
      };
      const undo = w.onReport((r) => {
        if (r.e === "op" && of(r.kind)) stop(r.op);
      });
      const timer = setTimeout(() => stop(undefined), timeoutMs);
    });
  }

  /**
   * Asks `w`'s elector to hand the lead over to worker `to` (over its stdin) and resolves with the outcome
   * it reports: "ok", or the error code (HANDOVER_FAILED, NOT_LEADER...); "no answer" after `timeoutMs`.
   */
  handOver(w: ChaosWorker, to: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve) => {
      const done = (outcome: string): void => {
        undo();
        clearTimeout(timer);
        resolve(outcome);
      };
      const undo = w.onReport((r) => {
        if (r.e === "log" && r.msg.startsWith("handover ")) done(r.code ?? "ok");
      });
      const timer = setTimeout(() => done("no answer"), timeoutMs);
      w.command({ cmd: "handover", to, timeoutMs: Math.max(1000, timeoutMs - 1000) });
    });
  }

  resume(w: ChaosWorker): void {
    this.record({ t: mono(), e: "sigcont", w: w.id });
    w.signal("SIGCONT");
    w.paused = false;
  }

  /** SIGKILL; its believed holds end now (it cannot act after). */
  async kill(w: ChaosWorker): Promise<void> {
    this.record({ t: mono(), e: "sigkill", w: w.id });
    w.signal("SIGKILL");
    if (w.paused) w.signal("SIGCONT");
    await w.exited;
  }

  /** SIGTERM: the worker hands over and should exit by itself. */
  terminate(w: ChaosWorker): void {
    this.record({ t: mono(), e: "sigterm", w: w.id });
    w.signal("SIGTERM");
  }

  /**
   * SIGTERM, then the check that the worker exits by itself, with code 0, within run()'s bound of
   * max(TTL, 2 x call deadline) plus 2 s (the ShardedElector's, max(TTL, call deadline) + call deadline,
   * is no longer); killed if it has not. `n`: the fault it belongs to (-1: the end).
   */
  async stop(w: ChaosWorker, n: number): Promise<void> {
    this.terminate(w);
    const sentAt = mono();
    const boundMs = Math.max(this.settings.ttl * 1000, 2 * (this.settings.callTimeoutMs ?? CALL_TIMEOUT_MS)) + 2000;
    const exited = await Promise.race([w.exited, sleep(boundMs).then(() => undefined)]);
    const ms = Math.round(mono() - sentAt);
    this.record({
      t: mono(),
      e: "check",
      n,
      rule: "worker-exits",
      ok: exited?.code === 0,
      ms,
      detail: exited
        ? `${w.id} exited with ${exited.code ?? exited.signal} ${ms} ms after SIGTERM`
        : `${w.id} still running ${boundMs} ms after SIGTERM`,
    });
    if (!exited) await this.kill(w);
  }

  /**
   * Cuts the worker off from the given members (all by default): "cut" resets every connection (calls fail
   * at once), "blackhole" drops every byte (calls hang until their deadlines, as on a dead network path).
   */
  cut(w: ChaosWorker, members: number[] = w.proxies.map((_, i) => i), how: "cut" | "blackhole" = "cut"): void {
    for (const i of members) w.proxies[i]?.[how]();
  }

  open(w: ChaosWorker): void {
    for (const p of w.proxies) p.open();
  }

  /** Kills whatever still runs (an interrupted run). */
  async close(): Promise<void> {
    await Promise.all(this.live().map((w) => this.kill(w)));
  }
}
