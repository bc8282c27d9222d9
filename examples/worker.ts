/**
 * A worker process that does a job only while it leads, and steps down cleanly on SIGTERM.
 *
 *   ETCD_ENDPOINTS=127.0.0.1:2379 WORKER_ID=a npx tsx examples/worker.ts
 *   ETCD_ENDPOINTS=127.0.0.1:2379 WORKER_ID=b PORT=8080 npx tsx examples/worker.ts   # with HTTP
 *
 * Run two or three; stop the leader (Ctrl-C, or `kill <pid>`) and watch another take over at once;
 * kill it with SIGKILL and another takes over within the TTL. A second Ctrl-C (or SIGTERM) while it
 * hands over exits at once. It logs JSON lines on stdout.
 *
 * Environment: ETCD_ENDPOINTS (comma-separated), WORKER_ID, ELECTION, TTL (seconds, default 5);
 * PORT to serve /healthz, /readyz, /leader, /metrics.json and Prometheus /metrics (unset: no HTTP, so
 * several workers on one machine need no ports); ETCD_CA_FILE, and ETCD_CERT_FILE with ETCD_KEY_FILE,
 * for TLS (and client certificates) to etcd.
 */
import { readFileSync } from "node:fs";
import { constants } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { Etcd3, type IOptions } from "etcd3";
import { LeaderElector, type Logger } from "../src/index.js";
import { serveWorkerHttp, type WorkerHttp } from "./worker-http.js";

const id = process.env.WORKER_ID ?? `worker-${process.pid}`;
const hosts = (process.env.ETCD_ENDPOINTS ?? "127.0.0.1:2379").split(",");
const name = process.env.ELECTION ?? "examples/worker";
const ttl = Number(process.env.TTL ?? 5);
const port = process.env.PORT ? Number(process.env.PORT) : undefined;

/** One JSON object a line, pino's shape: what log collectors in Kubernetes expect. */
const line = (level: string) => (fields: object, msg: string) =>
  process.stdout.write(
    `${JSON.stringify({ time: new Date().toISOString(), level, worker: id, msg, ...fields }, jsonSafe)}\n`,
  );
const jsonSafe = (_key: string, value: unknown): unknown =>
  typeof value === "bigint"
    ? value.toString()
    : value instanceof Error
      ? { message: value.message, code: (value as { code?: unknown }).code, stack: value.stack }
      : value;
const logger: Logger = { debug: () => {}, info: line("info"), warn: line("warn"), error: line("error") };

const file = (variable: string): Buffer | undefined =>
  process.env[variable] ? readFileSync(process.env[variable]) : undefined;
const ca = file("ETCD_CA_FILE");
const credentials: IOptions["credentials"] = ca && {
  rootCertificate: ca,
  certChain: file("ETCD_CERT_FILE"),
  privateKey: file("ETCD_KEY_FILE"),
};
const client = new Etcd3({
  hosts,
  credentials,
  grpcOptions: { "grpc.keepalive_time_ms": 10_000, "grpc.keepalive_timeout_ms": 5_000 },
});

// The first SIGTERM (what Kubernetes sends) or Ctrl-C hands over: resign, let the work return, exit.
// A second one exits at once, for an operator who will not wait (the lease then runs out on its own).
const stop = new AbortController();
let signals = 0;
const onSignal = (signal: NodeJS.Signals): void => {
  if (++signals === 1) {
    logger.info({ signal }, "handing over (send the signal again to exit at once)");
    stop.abort();
    return;
  }
  logger.warn({ signal }, "second signal: exiting now, without waiting for the hand-over");
  process.exit(128 + constants.signals[signal]);
};
process.on("SIGTERM", onSignal);
process.on("SIGINT", onSignal);

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

// Before run(), so that the metrics see every term.
let http: WorkerHttp | undefined;
if (port !== undefined) {
  http = await serveWorkerHttp(elector, port);
  logger.info({ port: http.port }, "serving health and metrics");
}

logger.info({ election: name, ttl }, "campaigning");
try {
  await elector.run({ signal: stop.signal });
  logger.info({}, "run() resolved");
} catch (err) {
  logger.error({ err }, "run() failed: this error does not go away by trying again");
  process.exitCode = 1;
} finally {
  // Nothing may keep the process alive now: it exits by itself once these are closed.
  await http?.close();
  client.close();
}
