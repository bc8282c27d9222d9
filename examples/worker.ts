/**
 * A worker process that does a job only while it leads, and steps down cleanly on SIGTERM.
 *
 *   ETCD_ENDPOINTS=127.0.0.1:2379 WORKER_ID=a npx tsx examples/worker.ts
 *
 * Run two or three; stop the leader (Ctrl-C, or `kill <pid>`) and watch another take over at once;
 * kill it with SIGKILL and another takes over within the TTL. It logs JSON lines on stdout.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Etcd3 } from "etcd3";
import { LeaderElector, type Logger } from "../src/index.js";

const id = process.env.WORKER_ID ?? `worker-${process.pid}`;
const hosts = (process.env.ETCD_ENDPOINTS ?? "127.0.0.1:2379").split(",");
const name = process.env.ELECTION ?? "examples/worker";
const ttl = Number(process.env.TTL ?? 5);

/** One JSON object a line, pino's shape: what log collectors in Kubernetes expect. */
const line = (level: string) => (fields: object, msg: string) =>
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level, worker: id, msg, ...fields }, jsonSafe)}\n`);
const jsonSafe = (_key: string, value: unknown): unknown =>
  typeof value === "bigint" ? value.toString() : value instanceof Error ? { message: value.message, code: (value as { code?: unknown }).code, stack: value.stack } : value;
const logger: Logger = { debug: () => {}, info: line("info"), warn: line("warn"), error: line("error") };

const client = new Etcd3({ hosts, grpcOptions: { "grpc.keepalive_time_ms": 10_000, "grpc.keepalive_timeout_ms": 5_000 } });
const stop = new AbortController();
for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => stop.abort());

const elector = new LeaderElector({
  client,
  name,
  identity: id,
  ttl,
  logger,
  onStartedLeading: async (term) => {
    // The job: a heartbeat only the current leader can write, fenced by its term.
    while (!term.signal.aborted) {
      await term
        .txn()
        .then(client.put(`${name}-heartbeat`).value(`${id} ${new Date().toISOString()}`))
        .commit()
        .catch(() => {}); // a refused write means the term is over: the loop ends with it
      await sleep(1000, undefined, { signal: term.signal }).catch(() => {});
    }
  },
  onStoppedLeading: () => logger.info({}, "stopped leading"),
  onNewLeader: (leader) => logger.info({ leader: leader?.value.toString() ?? null, token: leader?.token }, "leader is"),
});

logger.info({ election: name, ttl }, "campaigning");
await elector.run({ signal: stop.signal });
logger.info({}, "run() resolved");
client.close();
