import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Gauge, Registry } from "prom-client";
import {
  healthHandler,
  healthPaths,
  type ElectorMetrics,
  type HealthHandler,
  type HealthHandlerOptions,
  type HealthSource,
} from "../../src/index.js";

/**
 * The branches a real elector reaches only when wedged (a leader that has not renewed for 2 x TTL) or
 * broken, with an elector stand-in; test/integration/health.test.ts covers the rest with real electors.
 */
describe("healthHandler: liveness fails only for a wedged leader; a throwing elector still gets an answer", () => {
  let server: Server;
  let base: string;
  const source = {
    name: "jobs/x",
    identity: "me",
    healthy: () => false,
    ready: () => true,
    isLeader: () => true,
    metrics: () => ({ state: "leading", token: "42" }) as ElectorMetrics,
  } satisfies HealthSource;

  beforeAll(async () => {
    server = createServer(healthHandler(source));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  it("a leader that has not renewed gets 503 on /healthz, with a JSON body", async () => {
    const res = await fetch(base + healthPaths.liveness);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ healthy: false, state: "leading" });
  });

  it("an elector that throws gets a 500 with the message, not a hung probe", async () => {
    source.isLeader = () => {
      throw new Error("boom");
    };
    const res = await fetch(base + healthPaths.leader);
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: "boom" });
  });
});

describe("healthHandler: Prometheus /metrics on the same port", () => {
  const source = {
    name: "jobs/x",
    identity: "me",
    healthy: () => true,
    ready: () => true,
    isLeader: () => false,
    metrics: () => ({ state: "campaigning" }) as ElectorMetrics,
  } satisfies HealthSource;

  async function serving<T>(options: HealthHandlerOptions, fn: (base: string) => Promise<T>): Promise<T> {
    const server = createServer(healthHandler(source, options));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      return await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  }

  it("a prom-client registry is scraped on /metrics (GET and HEAD); other methods get 405", async () => {
    const registry = new Registry();
    new Gauge({ name: "answer", help: "the answer", registers: [registry] }).set(42);
    await serving({ metrics: registry }, async (base) => {
      const res = await fetch(base + healthPaths.prometheus);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe(registry.contentType);
      expect(await res.text()).toBe(await registry.metrics());
      const head = await fetch(base + healthPaths.prometheus, { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(await head.text()).toBe("");
      expect((await fetch(base + healthPaths.prometheus, { method: "POST" })).status).toBe(405);
      expect((await fetch(base + healthPaths.readiness)).status).toBe(200); // the health paths still answer
    });
  });

  it("a registry that fails gets the scraper a 500 with the message", async () => {
    const broken = { contentType: "text/plain", metrics: () => Promise.reject(new Error("collector broke")) };
    await serving({ metrics: broken, logger: false }, async (base) => {
      const res = await fetch(base + healthPaths.prometheus);
      expect(res.status).toBe(500);
      expect(await res.text()).toContain("collector broke");
    });
  });

  it("a request handler (an OpenTelemetry PrometheusExporter's getMetricsRequestHandler) answers /metrics itself", async () => {
    const seen: string[] = [];
    const exporterHandler: HealthHandler = (req, res) => {
      seen.push(req.url ?? "");
      res.statusCode = 200;
      res.setHeader("content-type", "text/plain");
      res.end("# exported by the handler\n");
    };
    await serving({ metrics: exporterHandler }, async (base) => {
      const res = await fetch(`${base}${healthPaths.prometheus}?x=1`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("# exported by the handler\n");
      expect(seen).toEqual([`${healthPaths.prometheus}?x=1`]);
      expect((await fetch(base + "/nope")).status).toBe(404);
    });
  });

  it("an async request handler that rejects gets the scraper a 500, is logged, and leaves no unhandled rejection", async () => {
    const logged: { fields: object; message: string }[] = [];
    const logger = {
      debug() {},
      info() {},
      warn: () => {},
      error: (fields: object, message: string) => void logged.push({ fields, message }),
    };
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const failing: HealthHandlerOptions["metrics"] = async (_req, res) => {
        res.end(await Promise.reject<string>(new Error("registry went away")));
      };
      await serving({ metrics: failing, logger }, async (base) => {
        const res = await fetch(base + healthPaths.prometheus);
        expect(res.status).toBe(500);
        expect(await res.text()).toContain("registry went away");
      });
      // Headers already sent when it rejects: the response is cut, never left hanging.
      const halfway: HealthHandlerOptions["metrics"] = async (_req, res) => {
        res.writeHead(200, { "Content-Type": "text/plain" });
        res.write("# partial\n");
        await Promise.reject(new Error("died mid-scrape"));
      };
      await serving({ metrics: halfway, logger }, async (base) => {
        await expect(fetch(base + healthPaths.prometheus).then((r) => r.text())).rejects.toThrow();
      });
      await new Promise((resolve) => setImmediate(resolve)); // a rejection left unhandled is reported by now
      expect(unhandled).toEqual([]);
      expect(logged.map((l) => (l.fields as { err?: Error }).err?.message)).toEqual([
        "registry went away",
        "died mid-scrape",
      ]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("without metrics, /metrics is 404; a metrics option of the wrong shape fails at once", async () => {
    await serving({}, async (base) => expect((await fetch(base + healthPaths.prometheus)).status).toBe(404));
    expect(() => healthHandler(source, { metrics: {} as Registry })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
  });
});
