import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { READY_LOG, START_TIMEOUT_MS, type Runtime } from "./runtime.js";

// Global setup (select-etcd.ts) publishes the binary of the release under test.
const ETCD_BINARY = process.env.ETCD_BINARY ?? "/usr/bin/etcd";

// Children die with this worker even if a test forgot close().
const liveChildren = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of liveChildren) child.kill("SIGKILL");
});

export class ProcessRuntime implements Runtime {
  private child: ChildProcess | undefined;
  private readonly logTail: string[] = [];

  /** dir holds the data dir and etcd.pid (global teardown kills leftovers by that pid). */
  constructor(
    private readonly name: string,
    private readonly args: string[],
    private readonly dir: string,
    private readonly binary = ETCD_BINARY,
  ) {}

  start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const child = spawn(this.binary, this.args, { stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    liveChildren.add(child);
    if (child.pid !== undefined) writeFileSync(join(this.dir, "etcd.pid"), String(child.pid));
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        reject(new Error(`etcd ${this.name} ${why}; last log lines:\n${this.logTail.join("\n")}`));
      };
      const timer = setTimeout(() => fail(`not ready after ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
      let partial = "";
      // Keep reading stderr for the whole life of the process: a full pipe would block etcd.
      child.stderr?.setEncoding("utf8").on("data", (text: string) => {
        const lines = (partial + text).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) {
          this.logTail.push(line);
          if (READY_LOG.test(line)) {
            clearTimeout(timer);
            resolve();
          }
        }
        this.logTail.splice(0, Math.max(0, this.logTail.length - 30));
      });
      child.once("error", (error) => fail(`failed to spawn: ${error.message}`));
      child.once("exit", (code, signal) => {
        liveChildren.delete(child);
        fail(`exited (${code ?? signal})`); // no-op once started
      });
    });
  }

  private signal(signal: NodeJS.Signals): void {
    if (!this.child?.kill(signal)) throw new Error(`etcd ${this.name}: could not send ${signal}`);
  }

  async pause(): Promise<void> {
    this.signal("SIGSTOP");
  }

  async unpause(): Promise<void> {
    this.signal("SIGCONT");
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  }

  restart(): Promise<void> {
    return this.start();
  }

  async remove(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
