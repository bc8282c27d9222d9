/**
 * A ShardedElector in its own process, for tests that SIGKILL or SIGSTOP a member for real. Config comes
 * in WORKER_CONFIG; it reports events as JSON lines on stdout (as worker.ts) and stops gracefully, every shard handed over, then exits
 * by itself on `{"cmd":"exit"}` or on SIGTERM (as a pod is stopped).
 */
import { createInterface } from "node:readline";
import { Etcd3 } from "etcd3";
import { ShardedElector } from "../../src/index.js";

export interface ShardedWorkerConfig {
  hosts: string[];
  ttl: number;
  name: string;
  shards: number;
  identity: string;
}

const config = JSON.parse(process.env.WORKER_CONFIG ?? "{}") as ShardedWorkerConfig;
const emit = (event: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...event, at: Date.now() })}\n`);
};
const client = new Etcd3({ hosts: config.hosts });
const stop = new AbortController();
const elector = new ShardedElector({
  client,
  name: config.name,
  shards: config.shards,
  identity: config.identity,
  ttl: config.ttl,
  logger: false,
  onAcquired: async (shard, term) => {
    emit({ type: "acquired", shard, token: term.token.toString() });
    await new Promise((resolve) => term.signal.addEventListener("abort", resolve, { once: true }));
    emit({ type: "ended", shard, token: term.token.toString() });
  },
});
elector.on("renewed", () => emit({ type: "renewed" }));
elector.on("assigned", (shards) => emit({ type: "assigned", shards }));
const done = elector.run({ signal: stop.signal });
emit({ type: "started", pid: process.pid });

let exiting: Promise<never> | undefined;
const exit = (): Promise<never> =>
  (exiting ??= (async () => {
    stop.abort();
    await done;
    client.close();
    emit({ type: "exited", at: Date.now() }); // wall clock: the parent times the exit from its signal
    process.exit(0);
  })());
process.once("SIGTERM", () => void exit());

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as { cmd: string };
  if (cmd.cmd === "exit") await exit();
}
// Our parent is gone (stdin closed): stop as on SIGTERM rather than run on alone.
await exit();
