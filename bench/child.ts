/** A bench worker in its own process, so the benchmark can SIGKILL or SIGTERM it for real. */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { WorkerConfig, WorkerEventType } from "./workers/protocol.js";

export type Impl = "ours" | "etcd3";

type Script = Impl | "scale" | "candidate";

const SCRIPTS: Record<Script, string> = {
  ours: fileURLToPath(new URL("./workers/ours.ts", import.meta.url)),
  etcd3: fileURLToPath(new URL("./workers/etcd3.ts", import.meta.url)),
  scale: fileURLToPath(new URL("./workers/scale.ts", import.meta.url)),
  candidate: fileURLToPath(new URL("./workers/candidate.ts", import.meta.url)),
};

export interface WorkerEvent {
  type: WorkerEventType;
  /** Wall-clock ms (sub-millisecond) when the worker emitted it. */
  at: number;
  [field: string]: unknown;
}

/** Everything any worker reported as a process warning: the benchmark fails on them. */
export const workerWarnings: string[] = [];

const live = new Set<ChildProcess>();

/** SIGKILLs every worker still running (the benchmark is ending, however it ends). */
export function killWorkers(): void {
  for (const child of live) child.kill("SIGKILL");
}

export class BenchWorker {
  readonly impl: Script;
  readonly #child: ChildProcess;
  readonly #events: WorkerEvent[] = [];
  readonly #waiters = new Set<() => void>();
  readonly #exited: Promise<void>;
  #stderr = "";

  private constructor(impl: Script, child: ChildProcess) {
    this.impl = impl;
    this.#child = child;
    live.add(child);
    this.#exited = new Promise((resolve) =>
      child.once("exit", () => {
        live.delete(child);
        resolve();
        for (const w of this.#waiters) w();
      }),
    );
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let event: WorkerEvent;
      try {
        event = JSON.parse(line) as WorkerEvent;
      } catch {
        return; // not ours (a library printing to stdout would show in the report as missing events)
      }
      if (event.type === "warning")
        workerWarnings.push(`${impl} worker: ${String(event.name)}: ${String(event.message)}`);
      this.#events.push(event);
      for (const w of this.#waiters) w();
    });
    child.stderr!.on("data", (d: Buffer) => (this.#stderr = (this.#stderr + d.toString()).slice(-4000)));
  }

  /** Starts a worker with the same Node flags as this process (tsx's loader included). */
  static start(impl: Script, config: WorkerConfig): BenchWorker {
    const child = spawn(process.execPath, [...process.execArgv, SCRIPTS[impl]], {
      env: { ...process.env, BENCH_WORKER: JSON.stringify(config) },
      stdio: ["pipe", "pipe", "pipe"],
    });
    return new BenchWorker(impl, child);
  }

  /** The first event of `type` after the `after`-th one of that type (already seen or coming); rejects if the worker exits first. */
  next(type: WorkerEventType, timeoutMs = 30_000, after = 0): Promise<WorkerEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (): void => {
        const found = this.#events.filter((e) => e.type === type)[after];
        if (!found) {
          if (this.#child.exitCode !== null || this.#child.signalCode !== null) {
            this.#waiters.delete(onEvent);
            clearTimeout(timer);
            reject(
              new Error(
                `${this.impl} worker exited (${this.#child.exitCode ?? this.#child.signalCode}) before "${type}"; stderr: ${this.#stderr}`,
              ),
            );
          }
          return;
        }
        this.#waiters.delete(onEvent);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(onEvent);
        reject(
          new Error(
            `${this.impl} worker: no "${type}" within ${timeoutMs} ms; events ${JSON.stringify(this.#events)}; stderr: ${this.#stderr}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(onEvent);
      onEvent();
    });
  }

  /** How many events of `type` the worker sent so far. */
  count(type: WorkerEventType): number {
    return this.#events.filter((e) => e.type === type).length;
  }

  /** A command on the worker's stdin, one JSON line (workers that take commands read them). */
  send(command: Record<string, unknown>): void {
    this.#child.stdin!.write(`${JSON.stringify(command)}\n`);
  }

  /** Sends `signal` and waits for the process to exit (SIGKILL after `graceMs`). */
  async stop(signal: "SIGKILL" | "SIGTERM", graceMs = 15_000): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill(signal);
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }

  /** Sends `signal` without waiting. */
  signal(signal: "SIGKILL" | "SIGTERM"): void {
    this.#child.kill(signal);
  }

  get exited(): Promise<void> {
    return this.#exited;
  }

  get stderr(): string {
    return this.#stderr;
  }
}
