/**
 * The worker's HTTP side, one port: the elector's health endpoints (/healthz, /readyz, /leader,
 * /metrics.json) and Prometheus metrics on /metrics (the elector's, through registerMetrics, and the
 * process's own), all served by healthHandler.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import { registerMetrics } from "../src/adapters/prometheus.js";
import { healthHandler, healthPaths, type LeaderElector } from "../src/index.js";

/** Where Prometheus scrapes the worker (the Deployment's annotations name it too). */
export const METRICS_PATH = healthPaths.prometheus;

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
  const server = createServer(healthHandler(elector, { metrics: registry }));
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
