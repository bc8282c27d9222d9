import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { healthHandler, healthPaths, type ElectorMetrics, type HealthSource } from "../../src/index.js";

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
