import { spawn } from "node:child_process";
import { waitFor } from "./wait.js";

/** A running `etcdctl` (Debian's etcd-client, built on Go's concurrency package): a real peer to interoperate with. */
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
  const child = spawn("etcdctl", args, {
    // Endpoints by environment (etcdctl refuses a flag and the variable together), so that an etcdctl
    // it runs itself (`etcdctl lock NAME etcdctl put ...`) finds them too.
    env: { ...process.env, ETCDCTL_API: "3", ETCDCTL_ENDPOINTS: endpoints.join(",") },
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
