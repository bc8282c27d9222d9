import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type DataPoint,
  type Histogram,
} from "@opentelemetry/sdk-metrics";
import { Gauge, Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { instrument } from "../../src/adapters/opentelemetry.js";
import { registerMetrics } from "../../src/adapters/prometheus.js";
import { LeaderElector } from "../../src/index.js";
import { parseSamples, sampleValue, type Sample } from "../support/prometheus-text.js";
import { freePort, startEtcd, waitFor, type EtcdEnv } from "../support/index.js";

interface Running {
  elector: LeaderElector;
  stop: AbortController;
  done: Promise<void>;
}

const EVENTS = ["elected", "failure", "renewed", "steppedDown", "newLeader", "state"] as const;
const listeners = (e: LeaderElector): number[] => EVENTS.map((event) => e.listenerCount(event));

describe("metrics adapters, fed by real electors against real etcd", () => {
  let etcd: EtcdEnv;
  const all: Running[] = [];

  /** An elector (not yet running: adapters attach first, as a service would). Its work waits for the term's end. */
  function elector(
    name: string,
    identity: string,
    options: { failFirst?: boolean; hosts?: string[] } = {},
  ): LeaderElector {
    let failures = options.failFirst ? 1 : 0;
    return new LeaderElector({
      client: etcd.client({}, options.hosts),
      name,
      identity,
      // Keepalives every TTL/3: round trips show up within a second or two.
      ttl: 3,
      callTimeoutMs: 1000,
      logger: false,
      onStartedLeading: async (term) => {
        if (failures-- > 0) throw new Error("the job failed");
        await new Promise((resolve) => term.signal.addEventListener("abort", resolve, { once: true }));
      },
    });
  }
  function run(e: LeaderElector): Running {
    const stop = new AbortController();
    const r = { elector: e, stop, done: e.run({ signal: stop.signal }) };
    all.push(r);
    return r;
  }

  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    for (const r of all) r.stop.abort();
    await Promise.all(all.map((r) => r.done.catch(() => {})));
    await etcd?.close();
  });

  describe("prometheus: registerMetrics", () => {
    const scrape = async (registry: Registry): Promise<Sample[]> => parseSamples(await registry.metrics());

    it("the leader gauge flips 1 -> 0 on a stop and 0 -> 1 on the follower; terms, waits and round trips are counted; dispose removes it all", async () => {
      const name = `${etcd.prefix()}prom`;
      const n = { name };
      const [ea, eb] = [elector(name, "a"), elector(name, "b")];
      const [baseA, baseB] = [listeners(ea), listeners(eb)];
      const [regA, regB] = [new Registry(), new Registry()]; // one registry a process
      const disposeA = registerMetrics(ea, { registry: regA });
      const disposeB = registerMetrics(eb, { registry: regB });
      expect(listeners(ea)).not.toEqual(baseA);

      const a = run(ea);
      await waitFor(() => ea.isLeader());
      const b = run(eb);
      await waitFor(() => eb.metrics().state === "campaigning");

      let sa = await scrape(regA);
      expect(sampleValue(sa, "etcd_election_leader_status", n)).toBe(1);
      expect(sampleValue(sa, "etcd_election_terms_total", n)).toBe(1);
      expect(sampleValue(sa, "etcd_election_campaign_wait_seconds_count", n)).toBe(1);
      expect(sampleValue(sa, "etcd_election_state", { ...n, state: "leading" })).toBe(1);
      expect(sampleValue(sa, "etcd_election_state", { ...n, state: "campaigning" })).toBe(0);
      expect(sampleValue(sa, "etcd_election_session_state", { ...n, state: "connected" })).toBe(1);
      expect(sampleValue(sa, "etcd_election_work_failures_total", n)).toBe(0);
      const sb = await scrape(regB);
      expect(sampleValue(sb, "etcd_election_leader_status", n)).toBe(0);
      expect(sampleValue(sb, "etcd_election_terms_total", n)).toBe(0);
      expect(sampleValue(sb, "etcd_election_campaign_wait_seconds_count", n)).toBe(0);
      expect(sampleValue(sb, "etcd_election_state", { ...n, state: "campaigning" })).toBe(1);
      // Keepalive round trips, from the `renewed` events.
      await waitFor(
        async () => (sampleValue(await scrape(regA), "etcd_election_keepalive_round_trip_seconds_count", n) ?? 0) >= 1,
      );
      sa = await scrape(regA);
      expect(
        sampleValue(sa, "etcd_election_keepalive_round_trip_seconds_bucket", { ...n, le: "+Inf" }),
      ).toBeGreaterThanOrEqual(1);
      expect(sampleValue(sa, "etcd_election_keepalive_round_trip_seconds_sum", n)).toBeGreaterThan(0);

      // Stop the leader: its gauge drops to 0 and the follower's rises to 1.
      a.stop.abort();
      await a.done;
      sa = await scrape(regA);
      expect(sampleValue(sa, "etcd_election_leader_status", n)).toBe(0);
      expect(sampleValue(sa, "etcd_election_state", { ...n, state: "stopped" })).toBe(1);
      expect(sampleValue(sa, "etcd_election_session_state", { ...n, state: "connected" })).toBe(0); // no session any more
      await waitFor(async () => sampleValue(await scrape(regB), "etcd_election_leader_status", n) === 1);
      expect(sampleValue(await scrape(regB), "etcd_election_terms_total", n)).toBe(1);
      expect(sampleValue(await scrape(regB), "etcd_election_campaign_wait_seconds_count", n)).toBe(1);

      // Dispose: no listener and no metric is left behind.
      disposeA();
      disposeA(); // idempotent
      expect(listeners(ea)).toEqual(baseA);
      expect(regA.getMetricsAsArray()).toEqual([]);
      expect(await regA.metrics()).not.toContain("etcd_election_");
      b.stop.abort();
      await b.done;
      disposeB();
      expect(listeners(eb)).toEqual(baseB);
      expect(regB.getMetricsAsArray()).toEqual([]);
    });

    it("counts work that throws apart from failures to reach etcd, which are labelled by code", async () => {
      const registry = new Registry();
      const thrower = elector(`${etcd.prefix()}prom-throws`, "t", { failFirst: true });
      const lonely = elector(`${etcd.prefix()}prom-lonely`, "l", { hosts: [`127.0.0.1:${await freePort()}`] });
      const disposers = [registerMetrics(thrower, { registry }), registerMetrics(lonely, { registry })];
      run(thrower);
      run(lonely);
      const t = { name: thrower.name };
      const l = { name: lonely.name };
      await waitFor(async () => sampleValue(await scrape(registry), "etcd_election_terms_total", t) === 2);
      await waitFor(
        async () =>
          (sampleValue(await scrape(registry), "etcd_election_failures_total", { ...l, code: "ETCD_UNAVAILABLE" }) ??
            0) >= 1,
      );
      const s = await scrape(registry);
      expect(sampleValue(s, "etcd_election_work_failures_total", t)).toBe(1);
      expect(s.filter((x) => x.name === "etcd_election_failures_total" && x.labels.name === thrower.name)).toEqual([]);
      expect(sampleValue(s, "etcd_election_work_failures_total", l)).toBe(0);
      expect(sampleValue(s, "etcd_election_leader_status", l)).toBe(0);
      expect(sampleValue(s, "etcd_election_leader_status", t)).toBe(1);
      for (const dispose of disposers) dispose();
      expect(registry.getMetricsAsArray()).toEqual([]);
    });

    it("electors share a registry: disposing one removes only its series; conflicts are refused", async () => {
      const registry = new Registry();
      const [e1, e2] = [elector(`${etcd.prefix()}shared-1`, "x"), elector(`${etcd.prefix()}shared-2`, "x")];
      const labels = { service: "billing" };
      const dispose1 = registerMetrics(e1, { registry, labels });
      const dispose2 = registerMetrics(e2, { registry, labels });
      expect(() => registerMetrics(e1, { registry, labels })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT" }),
      );
      const e3 = elector(`${etcd.prefix()}shared-3`, "x");
      expect(() => registerMetrics(e3, { registry, labels: { other: "x" } })).toThrow(/need the same label names/);
      expect(() => registerMetrics(e3, { registry, labels: { name: "x" } })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT" }),
      );
      run(e1);
      run(e2);
      await waitFor(() => e1.isLeader() && e2.isLeader());
      let s = await scrape(registry);
      for (const e of [e1, e2]) {
        expect(sampleValue(s, "etcd_election_leader_status", { name: e.name, service: "billing" })).toBe(1);
        expect(sampleValue(s, "etcd_election_terms_total", { name: e.name })).toBe(1);
      }
      dispose1();
      s = await scrape(registry);
      expect(s.filter((x) => x.labels.name === e1.name)).toEqual([]);
      expect(sampleValue(s, "etcd_election_leader_status", { name: e2.name })).toBe(1);
      expect(sampleValue(s, "etcd_election_terms_total", { name: e2.name })).toBe(1);
      dispose2();
      expect(registry.getMetricsAsArray()).toEqual([]);
      // A prefix whose names are taken by someone else's metrics is refused.
      const taken = new Registry();
      registerMetrics(e1, { registry: taken, prefix: "mine_" })();
      new Gauge({ name: "mine_leader_status", help: "not ours", registers: [taken] });
      expect(() => registerMetrics(e1, { registry: taken, prefix: "mine_" })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT" }),
      );
    });
  });

  describe("opentelemetry: instrument", () => {
    let provider: MeterProvider;
    let exporter: InMemoryMetricExporter;
    let reader: PeriodicExportingMetricReader;

    beforeAll(() => {
      exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
      // Exports only when flushed by the test (the interval is longer than any test).
      reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
      provider = new MeterProvider({ readers: [reader] });
    });
    afterAll(() => provider?.shutdown());

    /** Collects now: each metric's data points by name. */
    async function collect(): Promise<Map<string, DataPoint<number | Histogram>[]>> {
      exporter.reset();
      await reader.forceFlush();
      const points = new Map<string, DataPoint<number | Histogram>[]>();
      for (const resource of exporter.getMetrics()) {
        for (const scope of resource.scopeMetrics) {
          for (const metric of scope.metrics)
            points.set(metric.descriptor.name, [
              ...(points.get(metric.descriptor.name) ?? []),
              ...(metric.dataPoints as DataPoint<number | Histogram>[]),
            ]);
        }
      }
      return points;
    }
    /** The value of the one data point of `metric` whose attributes include `attrs`. */
    function point(
      points: Map<string, DataPoint<number | Histogram>[]>,
      metric: string,
      attrs: Record<string, string>,
    ): number | Histogram | undefined {
      const found = (points.get(metric) ?? []).filter((p) =>
        Object.entries(attrs).every(([k, v]) => p.attributes[k] === v),
      );
      if (found.length > 1) throw new Error(`${found.length} points of ${metric} match ${JSON.stringify(attrs)}`);
      return found[0]?.value;
    }

    it("exports leader status, states, terms, campaign waits and round trips; dispose stops recording and removes listeners", async () => {
      const meter = provider.getMeter("etcd-election-test");
      const name = `${etcd.prefix()}otel`;
      const [ea, eb] = [elector(name, "a"), elector(name, "b")];
      const [baseA, baseB] = [listeners(ea), listeners(eb)];
      // Two candidates of one election in one process: an attribute tells them apart.
      const disposeA = instrument(ea, { meter, attributes: { "service.instance.id": "a" } });
      const disposeB = instrument(eb, { meter, attributes: { "service.instance.id": "b" } });
      const A = { "etcd_election.name": name, "service.instance.id": "a" };
      const B = { "etcd_election.name": name, "service.instance.id": "b" };

      const a = run(ea);
      await waitFor(() => ea.isLeader());
      run(eb);
      await waitFor(() => eb.metrics().state === "campaigning");
      let p = await collect();
      expect(point(p, "etcd_election.leader.status", A)).toBe(1);
      expect(point(p, "etcd_election.leader.status", B)).toBe(0);
      expect(point(p, "etcd_election.state", { ...A, "etcd_election.state": "leading" })).toBe(1);
      expect(point(p, "etcd_election.state", { ...B, "etcd_election.state": "campaigning" })).toBe(1);
      expect(point(p, "etcd_election.session.state", { ...A, "etcd_election.session.state": "connected" })).toBe(1);
      expect(point(p, "etcd_election.terms", A)).toBe(1);
      expect(point(p, "etcd_election.terms", B)).toBe(0);
      expect((point(p, "etcd_election.campaign.wait", A) as Histogram).count).toBe(1);
      await waitFor(
        async () =>
          ((point(await collect(), "etcd_election.keepalive.round_trip", A) as Histogram | undefined)?.count ?? 0) >= 1,
      );

      // B's instrumentation is disposed: when it takes over, nothing records its term.
      disposeB();
      expect(listeners(eb)).toEqual(baseB);
      a.stop.abort();
      await a.done;
      await waitFor(() => eb.isLeader());
      p = await collect();
      expect(point(p, "etcd_election.leader.status", A)).toBe(0);
      expect(point(p, "etcd_election.state", { ...A, "etcd_election.state": "stopped" })).toBe(1);
      expect(point(p, "etcd_election.terms", B)).toBe(0);
      disposeA();
      expect(listeners(ea)).toEqual(baseA);
    });

    it("counts failures to reach etcd by error.type, and work that throws apart", async () => {
      const meter = provider.getMeter("etcd-election-test-failures");
      const thrower = elector(`${etcd.prefix()}otel-throws`, "t", { failFirst: true });
      const lonely = elector(`${etcd.prefix()}otel-lonely`, "l", { hosts: [`127.0.0.1:${await freePort()}`] });
      const disposers = [instrument(thrower, { meter }), instrument(lonely, { meter })];
      run(thrower);
      run(lonely);
      const T = { "etcd_election.name": thrower.name };
      const L = { "etcd_election.name": lonely.name };
      await waitFor(async () => point(await collect(), "etcd_election.terms", T) === 2);
      await waitFor(
        async () =>
          ((point(await collect(), "etcd_election.failures", { ...L, "error.type": "ETCD_UNAVAILABLE" }) as
            number | undefined) ?? 0) >= 1,
      );
      const p = await collect();
      expect(point(p, "etcd_election.work_failures", T)).toBe(1);
      expect(point(p, "etcd_election.work_failures", L)).toBe(0);
      expect(
        (p.get("etcd_election.failures") ?? []).filter((x) => x.attributes["etcd_election.name"] === thrower.name),
      ).toEqual([]);
      for (const dispose of disposers) dispose();
    });
  });
});
