import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerMetrics } from "../../src/adapters/prometheus.js";
import { LeaderElector, healthHandler, healthPaths, type HealthHandlerOptions } from "../../src/index.js";
import { parseSamples, sampleValue } from "../support/prometheus-text.js";
import { freePort, startEtcd, waitFor, type EtcdEnv } from "../support/index.js";

interface Served {
  elector: LeaderElector;
  stop: AbortController;
  done: Promise<void>;
  /** Lets the leader's work return: until then a stopped elector stays in "stopping". */
  finishWork: () => void;
  base: string;
  server: Server;
}

describe("healthHandler over real HTTP, with real electors against real etcd", () => {
  let etcd: EtcdEnv;
  const all: Served[] = [];

  /** An elector serving its health on a loopback port; its work returns when told to (or at the end). */
  async function serve(
    name: string,
    identity: string,
    hosts?: string[],
    options?: (elector: LeaderElector) => HealthHandlerOptions,
  ): Promise<Served> {
    let finishWork!: () => void;
    const workMayEnd = new Promise<void>((resolve) => (finishWork = resolve));
    const stop = new AbortController();
    const elector = new LeaderElector({
      client: etcd.client({}, hosts),
      name,
      identity,
      // A stop waits up to max(TTL, 2 x callTimeoutMs) for the work: long enough to look at "stopping".
      ttl: 10,
      callTimeoutMs: 1000,
      logger: false,
      onStartedLeading: async (term) => {
        await new Promise((resolve) => term.signal.addEventListener("abort", resolve, { once: true }));
        await workMayEnd; // work that is slow to wind down keeps the elector "stopping"
      },
    });
    const server = createServer(healthHandler(elector, options?.(elector)));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const done = elector.run({ signal: stop.signal });
    const served = { elector, stop, done, finishWork, base: `http://127.0.0.1:${port}`, server };
    all.push(served);
    return served;
  }

  const get = async (s: Served, path: string, method = "GET") => {
    const res = await fetch(s.base + path, { method, signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    return {
      status: res.status,
      text,
      body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined,
      headers: res.headers,
    };
  };

  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    for (const s of all) {
      s.stop.abort();
      s.finishWork();
    }
    await Promise.all(all.map((s) => s.done.catch(() => {})));
    await Promise.all(all.map((s) => new Promise((resolve) => s.server.close(resolve))));
    await etcd?.close();
  });

  it("the leader gets 200 on /leader and the follower 503; both are live and ready; stopping turns /readyz to 503", async () => {
    const name = `${etcd.prefix()}health`;
    const a = await serve(name, "a");
    await waitFor(() => a.elector.isLeader());
    const b = await serve(name, "b");
    await waitFor(() => b.elector.metrics().state === "campaigning");

    const leader = await get(a, healthPaths.leader);
    expect(leader.status).toBe(200);
    expect(leader.body).toMatchObject({ leader: true, state: "leading", token: a.elector.metrics().token });
    expect(leader.headers.get("content-type")).toMatch(/^application\/json/);
    expect(leader.headers.get("cache-control")).toBe("no-store");
    const follower = await get(b, healthPaths.leader);
    expect(follower.status).toBe(503);
    expect(follower.body).toMatchObject({ leader: false, state: "campaigning" });
    for (const s of [a, b]) {
      expect((await get(s, healthPaths.liveness)).status).toBe(200);
      expect(await get(s, healthPaths.readiness)).toMatchObject({ status: 200, body: { ready: true } });
    }

    // HEAD answers like GET, without a body.
    const head = await get(a, healthPaths.leader, "HEAD");
    expect(head.status).toBe(200);
    expect(head.text).toBe("");
    expect((await get(b, healthPaths.leader, "HEAD")).status).toBe(503);

    // metrics() as JSON, with who and what.
    const metrics = await get(a, healthPaths.metrics);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatchObject({
      name,
      identity: "a",
      state: "leading",
      termsLed: 1,
      sessions: 1,
      sessionState: "connected",
    });

    // Stop the leader. Its work takes its time to return, so it stays "stopping": not ready, not leading.
    a.stop.abort();
    await waitFor(async () => (await get(a, healthPaths.readiness)).status === 503);
    expect(a.elector.metrics().state).toBe("stopping");
    expect(await get(a, healthPaths.readiness)).toMatchObject({ body: { ready: false, state: "stopping" } });
    expect((await get(a, healthPaths.leader)).status).toBe(503);
    expect((await get(a, healthPaths.liveness)).status).toBe(200); // it renews until the session closes
    // It resigned: the follower takes over while the old leader's work still winds down.
    await waitFor(async () => (await get(b, healthPaths.leader)).status === 200);

    a.finishWork();
    await a.done;
    expect(await get(a, healthPaths.readiness)).toMatchObject({
      status: 503,
      body: { ready: false, state: "stopped" },
    });
    expect((await get(a, healthPaths.leader)).status).toBe(503);
    expect((await get(a, healthPaths.liveness)).status).toBe(200);
  });

  it("a follower that cannot reach etcd stays live (client-go semantics) and ready, never the leader", async () => {
    const nobody = `127.0.0.1:${await freePort()}`; // nothing listens there
    const lonely = await serve(`${etcd.prefix()}unreachable`, "lonely", [nobody]);
    await waitFor(() => lonely.elector.metrics().failures >= 1);
    expect(await get(lonely, healthPaths.liveness)).toMatchObject({ status: 200, body: { healthy: true } });
    expect((await get(lonely, healthPaths.readiness)).status).toBe(200);
    expect((await get(lonely, healthPaths.leader)).status).toBe(503);
    const metrics = await get(lonely, healthPaths.metrics);
    expect(metrics.body).toMatchObject({ identity: "lonely", lastError: { code: "ETCD_UNAVAILABLE" } });
  });

  it("serves Prometheus /metrics on the same port when given a prom-client registry", async () => {
    const name = `${etcd.prefix()}one-port`;
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    let unregister = (): void => {};
    const s = await serve(name, "one", undefined, (elector) => {
      unregister = registerMetrics(elector, { registry });
      return { metrics: registry };
    });
    try {
      await waitFor(() => s.elector.isLeader());
      const scrape = await fetch(s.base + healthPaths.prometheus, { signal: AbortSignal.timeout(5000) });
      expect(scrape.status).toBe(200);
      expect(scrape.headers.get("content-type")).toBe(registry.contentType);
      const samples = parseSamples(await scrape.text());
      expect(sampleValue(samples, "etcd_election_leader_status", { name })).toBe(1);
      expect(sampleValue(samples, "process_cpu_seconds_total")).toBeGreaterThan(0);
      // The health endpoints still answer on that port.
      expect((await get(s, healthPaths.leader)).status).toBe(200);
      expect((await get(s, healthPaths.metrics)).body).toMatchObject({ name, identity: "one", state: "leading" });
    } finally {
      unregister();
    }
  });

  it("answers 404 for other paths and 405 for other methods; a query string does not matter", async () => {
    const s = await serve(`${etcd.prefix()}paths`, "p");
    await waitFor(() => s.elector.isLeader());
    expect((await get(s, "/nope")).status).toBe(404);
    expect((await get(s, "/")).status).toBe(404);
    expect((await get(s, healthPaths.prometheus)).status).toBe(404); // no registry given
    expect((await get(s, `${healthPaths.leader}?verbose=1`)).status).toBe(200);
    const post = await get(s, healthPaths.readiness, "POST");
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });
});
