/**
 * The worker's HTTP side: the elector's health endpoints (healthHandler: /healthz, /readyz, /leader,
 * /metrics.json) and Prometheus metrics on /metrics (the elector's, through registerMetrics, and the
 * process's own).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import { registerMetrics } from "../src/adapters/prometheus.js";
import { healthHandler, type LeaderElector } from "../src/index.js";

/** Where Prometheus scrapes the worker (the Deployment's annotations name it too). */
export const METRICS_PATH = "/metrics";

export interface WorkerHttp {
  port: number;
  /** Stops listening, ends open (keep-alive) connections and unregisters the metrics. */
  close(): Promise<void>;
}

/** Serves health and metrics on `port` (0: any free port). Call before `run()`, so no event goes uncounted. */
export async function serveWorkerHttp(elector: LeaderElector, port: number): Promise<WorkerHttp> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const unregister = registerMetrics(elector, { registry });
  const health = healthHandler(elector);

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (path !== METRICS_PATH || (req.method !== "GET" && req.method !== "HEAD")) return health(req, res);
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { "Content-Type": registry.contentType, "Content-Length": Buffer.byteLength(text) });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (err: unknown) => {
        res.writeHead(500, { "Content-Type": "text/plain" });
        res.end(String(err));
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, () => resolve());
  });

  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      unregister();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Probes and scrapers keep connections alive; the process must not wait for them to go away.
      server.closeAllConnections();
      await closed;
    },
  };
}
