import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import type { WorkerCommand, WorkerConfig } from "./worker.js";

const WORKER = fileURLToPath(new URL("./worker.ts", import.meta.url));

export interface WorkerEvent {
  type: string;
  /** Wall-clock ms when the worker emitted it (same machine, so comparable with Date.now()). */
  at: number;
  [field: string]: unknown;
}

/** A library user in its own process, so tests can SIGSTOP or SIGKILL it for real. */
export class Worker {
  readonly #child: ChildProcess;
  readonly #events: WorkerEvent[] = [];
  readonly #waiters = new Set<() => void>();
  #stderr = "";

  private constructor(child: ChildProcess) {
    this.#child = child;
    createInterface({ input: child.stdout! }).on("line", (line) => {
      this.#events.push(JSON.parse(line) as WorkerEvent);
      for (const w of this.#waiters) w();
    });
    child.stderr!.on("data", (d: Buffer) => (this.#stderr += d.toString()));
  }

  static start(config: WorkerConfig): Worker {
    return Worker.startScript(WORKER, config);
  }

  /** Another worker script (same protocol: JSON lines out, commands in), its config in WORKER_CONFIG. */
  static startScript(script: string, config: unknown): Worker {
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      env: { ...process.env, WORKER_CONFIG: JSON.stringify(config) },
      stdio: ["pipe", "pipe", "pipe"],
    });
    return new Worker(child);
  }

  /** Events seen so far. */
  get events(): readonly WorkerEvent[] {
    return this.#events;
  }

  /** The first event of `type` (already seen or coming), within `timeoutMs`. */
  next(type: string, timeoutMs = 20_000): Promise<WorkerEvent> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.#events.find((e) => e.type === type);
        if (!found) return false;
        this.#waiters.delete(onEvent);
        clearTimeout(timer);
        resolve(found);
        return true;
      };
      const onEvent = (): void => void check();
      const timer = setTimeout(() => {
        this.#waiters.delete(onEvent);
        reject(
          new Error(
            `worker: no "${type}" event within ${timeoutMs} ms; events ${JSON.stringify(this.#events)}; stderr ${this.#stderr}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(onEvent);
      check();
    });
  }

  send(cmd: WorkerCommand): void {
    this.#child.stdin!.write(`${JSON.stringify(cmd)}\n`);
  }

  pause(): void {
    this.#child.kill("SIGSTOP");
  }

  resume(): void {
    this.#child.kill("SIGCONT");
  }

  /** Kills the process (resuming it first so the kill is not held up) and waits for it to exit. */
  async kill(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((r) => this.#child.once("exit", r));
    this.#child.kill("SIGCONT");
    this.#child.kill("SIGKILL");
    await exited;
  }
}
