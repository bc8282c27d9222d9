import { spawn } from "node:child_process";
import { delimiter, dirname } from "node:path";
import { waitFor } from "./wait.js";

/**
 * A running `etcdctl` (built on Go's concurrency package): a real peer to interoperate with. It is the
 * etcdctl of the etcd under test (global setup publishes it in ETCDCTL_BINARY): each release's
 * `elect` and `lock` are what its users run.
 */
export interface Etcdctl {
  /** Everything it printed so far. */
  readonly output: string;
  /** Waits until its output contains `text`. */
  printed(text: string, timeoutMs?: number): Promise<void>;
  /** SIGINT (etcdctl resigns or unlocks on it) and waits for it to exit. */
  interrupt(): Promise<void>;
  kill(): void;
}

export function etcdctl(endpoints: string[], ...args: string[]): Etcdctl {
  const binary = process.env.ETCDCTL_BINARY || "etcdctl";
  // Its directory first on PATH, so that an etcdctl it runs itself (`etcdctl lock NAME etcdctl put ...`)
  // is the same one.
  const path = binary.includes("/") ? `${dirname(binary)}${delimiter}${process.env.PATH ?? ""}` : process.env.PATH;
  const child = spawn(binary, args, {
    // Endpoints by environment (etcdctl refuses a flag and the variable together), so that the etcdctl
    // it runs itself finds them too.
    env: { ...process.env, PATH: path, ETCDCTL_API: "3", ETCDCTL_ENDPOINTS: endpoints.join(",") },
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  return {
    get output() {
      return output;
    },
    printed: async (text, timeoutMs = 15_000) => {
      await waitFor(() => output.includes(text), { timeoutMs, description: `etcdctl printing ${text}` });
    },
    interrupt: async () => {
      child.kill("SIGINT");
      await exited;
    },
    kill: () => void child.kill("SIGKILL"),
  };
}
