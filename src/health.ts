import type { IncomingMessage, ServerResponse } from "node:http";
import { consoleLogger, toLogger, type Logger } from "./common/logger.js";
import { InvalidArgumentError } from "./errors.js";
import type { LeaderElector } from "./leader-elector.js";

/** The paths `healthHandler` serves, for probes and checks to refer to. */
export const healthPaths = {
  /** Liveness: 503 only for a wedged leader (no keepalive acknowledged for 2 × TTL), as client-go's. */
  liveness: "/healthz",
  /** Readiness: 200 while `run()` runs and is not stopping. */
  readiness: "/readyz",
  /** 200 only while this process leads: for checks that must reach the leader, never for liveness. */
  leader: "/leader",
  /** `metrics()` as JSON, with the election's name and this candidate's identity. */
  metrics: "/metrics.json",
  /** Prometheus's text format, when `healthHandler` is given `metrics` (404 otherwise). */
  prometheus: "/metrics",
} as const;

/** What the health handler reads of an elector (any object of this shape will do). */
export type HealthSource = Pick<LeaderElector, "name" | "identity" | "healthy" | "ready" | "isLeader" | "metrics">;

/** A `node:http` request listener (also fits Express and Connect as a plain handler). */
export type HealthHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** What `healthHandler` needs of a prom-client `Registry` (the library does not load prom-client). */
export interface PrometheusRegistry {
  /** The Content-Type of the text it renders (Prometheus's text format). */
  readonly contentType: string;
  /** Renders every metric it holds, in that format. */
  metrics(): Promise<string> | string;
}

/** Options of `healthHandler`. */
export interface HealthHandlerOptions {
  /**
   * Serve Prometheus metrics on `/metrics` too, so one port does health and scraping: a prom-client
   * `Registry` (give it to `registerMetrics` from `etcd-election/prometheus` as well), or a request
   * handler that answers the scrape itself, such as
   * `(req, res) => exporter.getMetricsRequestHandler(req, res)` of an OpenTelemetry `PrometheusExporter`
   * made with `preventServerStart: true`. The handler may be async: its rejection answers 500.
   */
  metrics?:
    PrometheusRegistry | ((req: IncomingMessage, res: ServerResponse) => void | PromiseLike<unknown>) | undefined;
  /**
   * Where a failed scrape is logged (pino's shape), or `false`; default: warnings and errors on the
   * console, as a LeaderElector's.
   */
  logger?: Logger | false | undefined;
}

/**
 * A `node:http` request listener serving the elector's health: `GET` or `HEAD` `/healthz` (liveness),
 * `/readyz` (readiness), `/leader` (200 only while leading) with 200 or 503 and a small JSON body, and
 * `/metrics.json`; with `metrics`, Prometheus's `/metrics` as well. 404 for other paths, 405 for other
 * methods.
 *
 * ```ts
 * http.createServer(healthHandler(elector, { metrics: registry })).listen(8080);
 * ```
 */
export function healthHandler(elector: HealthSource, options: HealthHandlerOptions = {}): HealthHandler {
  const logger = toLogger(options.logger, consoleLogger);
  const scrape = prometheusRoute(options.metrics, logger);
  const routes: Record<string, () => [status: number, body: object]> = {
    [healthPaths.liveness]: () => {
      const healthy = elector.healthy();
      return [healthy ? 200 : 503, { healthy, state: elector.metrics().state }];
    },
    [healthPaths.readiness]: () => {
      const ready = elector.ready();
      return [ready ? 200 : 503, { ready, state: elector.metrics().state }];
    },
    [healthPaths.leader]: () => {
      const leader = elector.isLeader();
      const { state, token } = elector.metrics();
      return [leader ? 200 : 503, { leader, state, token }];
    },
    [healthPaths.metrics]: () => [200, { name: elector.name, identity: elector.identity, ...elector.metrics() }],
  };

  return (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0]!;
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    const prometheus = scrape && path === healthPaths.prometheus;
    if (!route && !prometheus) return send(req, res, 404, { error: `not found: ${path}` });
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      return send(req, res, 405, { error: `method not allowed: ${req.method}` });
    }
    if (!route) return scrape!(req, res);
    let answer: [number, object];
    try {
      answer = route();
    } catch (err) {
      // A probe must get an answer; a throwing elector is a bug to see, not a hung probe.
      answer = [500, { error: err instanceof Error ? err.message : String(err) }];
    }
    send(req, res, ...answer);
  };
}

/** The `/metrics` responder for a registry or a handler of the caller's; undefined without one. */
function prometheusRoute(metrics: HealthHandlerOptions["metrics"], logger: Logger): HealthHandler | undefined {
  if (metrics === undefined) return undefined;
  if (typeof metrics === "function") {
    const fail = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
      logger.error({ err }, "the metrics handler failed; the scrape is answered 500 (or cut short)");
      if (!res.headersSent) failed(req, res, err);
      else res.destroy();
    };
    return (req, res) => {
      try {
        // An async handler rejects instead of throwing: left alone, that rejection would be unhandled.
        const out: unknown = metrics(req, res);
        if (typeof (out as PromiseLike<unknown> | undefined)?.then === "function")
          (out as PromiseLike<unknown>).then(undefined, (err: unknown) => fail(req, res, err));
      } catch (err) {
        fail(req, res, err);
      }
    };
  }
  const registry = metrics as Partial<PrometheusRegistry> | null;
  if (
    typeof registry !== "object" ||
    typeof registry?.metrics !== "function" ||
    typeof registry.contentType !== "string"
  )
    throw new InvalidArgumentError(
      "healthHandler's metrics must be a prom-client Registry (contentType and metrics()) or a request handler",
    );
  const { contentType } = registry;
  const collect = registry.metrics.bind(registry);
  return (req, res) => {
    Promise.resolve()
      .then(collect)
      .then(
        (text) => {
          res.writeHead(200, {
            "Content-Type": contentType,
            "Content-Length": Buffer.byteLength(text),
            "Cache-Control": "no-store",
          });
          res.end(req.method === "HEAD" ? undefined : text);
        },
        (err: unknown) => {
          logger.error({ err }, "collecting metrics failed; the scrape is answered 500");
          failed(req, res, err);
        },
      );
  };
}

/** A scrape that failed: the scraper sees why (Prometheus marks the target down). */
function failed(req: IncomingMessage, res: ServerResponse, err: unknown): void {
  const text = `collecting metrics failed: ${err instanceof Error ? err.message : String(err)}\n`;
  res.writeHead(500, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
  res.end(req.method === "HEAD" ? undefined : text);
}

function send(req: IncomingMessage, res: ServerResponse, status: number, body: object): void {
  const text = `${JSON.stringify(body, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value))}\n`;
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
    // Probes and load balancers must see the state now, never a cached one.
    "Cache-Control": "no-store",
  });
  res.end(req.method === "HEAD" ? undefined : text);
}
